"""Diff-Instruct (Luo et al. 2023): distillation with a learned "fake" score of the student.

The gradient of the weighted diffusive KL D(θ) = E_π w(σ) KL(p_θ^σ || p_d^σ) is

    ∇_θ D = E_{z, σ, ε}[ w(σ) (s_θ(x_t, σ) - s_d(x_t, σ)) · ∂x_t/∂θ ],    x_t = g_θ(z) + σε

(the term E[∂_θ log p_θ^σ(x)] at fixed x vanishes). The student's score s_θ is intractable;
Diff-Instruct replaces it by a network s_fake trained by denoising score matching on the
student's own (detached) samples, ``inner_steps`` steps per generator step. Any error of s_fake
biases the generator's gradient; VarDiU has no such network (its only approximation is the guide).

For a fair comparison everything else is VarDiU's: the same model program (``ForwardDiffusion``:
σ law, antithetic pairs, generator conditioning z ~ N(0, I) as in evaluation), the same weight
w(σ) and loss scale (the surrogate below has VarDiU's gradient with s_fake in place of the
guide's term), the same batch size and the same per-network clipping optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import ELBO, SVI
from pyro.infer.util import torch_item
from torch import Tensor

from vardiu_pyro.models import ForwardDiffusion
from vardiu_pyro.score_matching import dsm_loss_terms

from .base import Objective, Problem

__all__ = ["DiffInstruct", "DiffInstructLoss", "DiffInstructTerms", "diff_instruct_surrogate_terms"]


def diff_instruct_surrogate_terms(fake: Tensor, score: Tensor, x0: Tensor, weight: Tensor) -> Tensor:
    """Per-sample surrogate  w(σ) stopgrad(s_fake(x_t, σ) - s_d(x_t, σ)) · x0,  shape (B,)  (∂x0/∂θ = ∂x_t/∂θ)."""
    return weight * ((fake - score).detach() * x0).flatten(1).sum(-1)


@dataclass
class DiffInstructTerms:
    """Per-sample quantities of one Diff-Instruct estimate (shape (B,) unless noted)."""

    surrogate: Tensor  # w (s_fake - s_d) · x0, differentiable in θ
    fisher: Tensor  # w ||s_fake - s_d||², detached: the reported loss
    sigma: Tensor
    weight: Tensor
    x0: Tensor  # (B, *data_shape), differentiable
    x_t: Tensor  # (B, *data_shape), differentiable


class DiffInstructLoss(ELBO):
    """The generator's loss of Diff-Instruct as a Pyro ``ELBO`` (driven by ``SVI`` like VarDiU's).

    ``fake_score`` and ``teacher`` are anything with ``score(x_t, sigma)``; neither is trained by
    this loss. Its value is the weighted Fisher divergence estimate E[w ||s_fake - s_d||²] between
    the fake score and the teacher at the student's x_t (zero when they agree); its gradient is the
    surrogate's, i.e. Diff-Instruct's estimate of ∇_θ E_π w KL(p_θ^σ || p_d^σ). The model must have
    sites ``sigma``, ``x0`` and ``x_t``; the guide is not used.
    """

    def __init__(self, teacher, fake_score, weight, **kwargs):
        super().__init__(**kwargs)
        self.teacher, self.fake_score, self.weight = teacher, fake_score, weight
        self.last_terms: DiffInstructTerms | None = None

    def _get_trace(self, model, guide, args, kwargs):
        """The model's trace (sites ``sigma``, ``x0``, ``x_t``); there is no guide to trace."""
        return poutine.trace(model).get_trace(*args, **kwargs), None

    def terms(self, model, guide, *args, **kwargs) -> DiffInstructTerms:
        nodes = self._get_trace(model, guide, args, kwargs)[0].nodes
        sigma, x0, x_t = nodes["sigma"]["value"], nodes["x0"]["value"], nodes["x_t"]["value"]
        weight = self.weight(sigma, kwargs.get("iteration", 0)).detach()
        with torch.no_grad():
            x = x_t.detach()
            fake, score = self.fake_score.score(x, sigma), self.teacher.score(x, sigma)
        surrogate = diff_instruct_surrogate_terms(fake, score, x0, weight)
        fisher = weight * (fake - score).square().flatten(1).sum(-1)
        self.last_terms = DiffInstructTerms(surrogate, fisher, sigma, weight, x0, x_t)
        return self.last_terms

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        t = self.terms(model, guide, *args, **kwargs)
        surrogate = t.surrogate.mean()
        return t.fisher.mean() + (surrogate - surrogate.detach())

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return torch_item(self.terms(model, guide, *args, **kwargs).fisher.mean())

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return torch_item(loss)


def no_guide(*args, **kwargs) -> None:
    """Diff-Instruct has no variational posterior: SVI's guide program is empty."""


class DiffInstruct(Objective):
    """Per iteration: ``inner_steps`` DSM steps of the fake score on fresh student samples, then one
    generator step (SVI on ``DiffInstructLoss``).

    :param problem: the distillation problem (the same ``Problem`` VarDiU is built from).
    :param inner_steps: K, fake-score steps per generator step.
    :param antithetic: use each (z, σ) with ε and -ε, in both the fake-score and the generator steps.
    :param fake_score: a factory ``fake_score(data_shape=..., sigma_data=...)`` of the fake score's
        ``EDMDenoiser`` (from ``configs/objective/diff_instruct.yaml``).
    :param quasi_random: draw a batch's z as a randomised quasi-Monte Carlo batch (``QuasiRandomNormal``).
    """

    network_names = ("generator", "fake_score")

    def __init__(self, problem: Problem, fake_score, inner_steps: int = 10, antithetic: bool = True,
                 quasi_random: bool = False):
        if inner_steps < 1:
            raise ValueError(f"objective.inner_steps must be >= 1, got {inner_steps}")
        generator = problem.generator
        anchor = next(generator.parameters())
        self.fake_score = fake_score(data_shape=list(generator.data_shape),
                                     sigma_data=float(getattr(generator, "data_std", 1.0))).to(anchor.device)
        self.inner_steps, self.batch_size = int(inner_steps), problem.batch_size
        self.model = ForwardDiffusion(generator, problem.sigma_law, antithetic=antithetic, name="generator",
                                      quasi_random=quasi_random)
        self.loss = DiffInstructLoss(problem.teacher, self.fake_score, problem.weight)
        self.networks = {"generator": generator, "fake_score": self.fake_score}
        self.generator_optim = problem.make_optim({"generator": generator})
        self.fake_optim = problem.make_optim({"fake_score": self.fake_score})
        # the fake score steps K times per iteration: stretch its learning-rate schedule to the same clock
        self.fake_optim.iterations *= self.inner_steps
        self.fake_optim.warmup *= self.inner_steps
        self.fake_params = [p for p in self.fake_score.parameters() if p.requires_grad]
        self.svi = SVI(self.model, no_guide, self.generator_optim, self.loss)

    def fake_score_step(self, iteration: int) -> Tensor:
        """One DSM step of the fake score on a fresh batch of the student's samples (detached); its loss."""
        with torch.no_grad():
            nodes = poutine.trace(self.model).get_trace(self.batch_size, iteration=iteration).nodes
        loss = dsm_loss_terms(self.fake_score, nodes["x0"]["value"], nodes["x_t"]["value"],
                              nodes["sigma"]["value"]).mean()
        loss.backward()
        self.fake_optim(self.fake_params)
        return loss.detach()

    def step(self, iteration: int) -> dict[str, float]:
        """K fake-score steps, then the generator's; ``skipped`` when the generator's step was dropped
        (a non-finite loss or gradient: the generator and its optimiser are left as they were). A
        fake-score step with a non-finite gradient is dropped on its own by its optimiser."""
        dsm = torch.stack([self.fake_score_step(iteration) for _ in range(self.inner_steps)]).mean()
        loss = self.svi.step(self.batch_size, iteration=iteration)
        return {"loss": loss, "fake_dsm": dsm.item(), "skipped": self.generator_optim.last_step_skipped}

    def optimizers(self):
        return {"generator": self.generator_optim, "fake_score": self.fake_optim}
