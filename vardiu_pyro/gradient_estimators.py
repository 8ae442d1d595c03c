"""Generator-gradient estimators behind one interface, for the gradient analysis (``vardiu_pyro.variance``).

Each estimator draws a fresh batch and returns one estimate of the gradient, with respect to the
generator's parameters θ, of the weighted diffusive KL D(θ) = E_π w(σ) KL(p_θ^σ || p_d^σ) — the
gradient its method would follow in training. Every estimator is a per-sample surrogate whose
batch mean has that gradient, so splitting the batch by σ bin splits the estimate into the
contributions of each noise range (which sum to the whole):

- ``VarDiUEstimator``: VarDiU's surrogate  -w (log q_φ(z | x_t, σ) + s_d · x0)  at a fixed guide
  (``VarDiUELBO``; with ``importance_samples=K``, that of the importance-weighted bound U_K, as the run trained);
  unbiased for ∇_θ of the bound, whose gap to D is the guide's posterior error;
- ``FakeScoreEstimator``: Diff-Instruct's surrogate  w (s_fake - s_d) · x0  with a given fake score
  (``DiffInstructLoss``): unbiased for ∇_θ D when s_fake is the student's exact score, biased by
  E[w (s_fake - s_θ) · ∂x_t/∂θ] otherwise;
- ``DiffInstructEstimator``: the same with the fake score trained as in training: before each
  estimate, ``inner_steps`` DSM steps (``DiffInstruct.fake_score_step``, fresh student samples)
  from one warm state, so both the fake score's error and its training noise are in the estimate.

``estimator_kind(name)`` parses the names the command line uses: ``vardiu_<guide family>`` and
``diff_instruct_k<K>``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vardiu_pyro.bound_gap import bound_gap, gap_terms
from vardiu_pyro.guides import pyro_guide
from vardiu_pyro.models import ForwardDiffusion
from vardiu_pyro.objectives import DiffInstruct, Problem
from vardiu_pyro.objectives.diff_instruct import DiffInstructLoss, no_guide
from vardiu_pyro.objectives.vardiu_elbo import VarDiUELBO

__all__ = ["GradientEstimate", "GradientEstimator", "VarDiUEstimator", "FakeScoreEstimator",
           "DiffInstructEstimator", "estimator_kind", "sigma_bins", "flat_grad"]


def flat_grad(output: Tensor, params: list[Tensor], retain_graph: bool = False) -> Tensor:
    """∂ output / ∂ params, flattened into one vector (zeros for parameters output does not depend on)."""
    grads = torch.autograd.grad(output, params, retain_graph=retain_graph, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])


def sigma_bins(sigma: Tensor, edges: Tensor) -> Tensor:
    """Index of each σ's bin for bin ``edges`` (n+1 increasing values); σ outside the edges goes to the end bins."""
    return (torch.bucketize(sigma.contiguous(), edges.to(sigma), right=True) - 1).clamp(0, edges.numel() - 2)


@dataclass
class GradientEstimate:
    total: Tensor  # (P,): the estimate of ∇_θ D from one batch
    per_bin: Tensor | None  # (n_bins, P): the contribution of each σ bin (their sum is ``total``)


def estimator_kind(name: str) -> tuple[str, str | int]:
    """``("vardiu", family)`` or ``("diff_instruct", K)``; ``ValueError`` for any other name."""
    if m := re.fullmatch(r"vardiu_(\w+)", name):
        return "vardiu", m.group(1)
    if m := re.fullmatch(r"diff_instruct_k(\d+)", name):
        if int(m.group(1)) < 1:
            raise ValueError(f"estimator {name!r}: K (inner steps) must be >= 1")
        return "diff_instruct", int(m.group(1))
    raise ValueError(f"unknown estimator {name!r}: use vardiu_<guide family> (e.g. vardiu_gaussian) "
                     "or diff_instruct_k<K> (e.g. diff_instruct_k10)")


class GradientEstimator:
    """Interface: ``prepare()`` once (train what the estimator needs at this generator), then
    ``estimate(batch_size, edges)`` per draw; ``summary()`` adds estimator-specific scalars.

    Subclasses implement ``surrogate(batch_size) -> (terms, sigma)``: per-sample terms (B,) whose
    mean has the estimator's gradient in θ, and the σ of each sample.
    """

    name: str

    def __init__(self, problem: Problem, iteration: float = 0):
        self.problem, self.iteration = problem, float(iteration)  # a position on the run's schedules
        self.params = [p for p in problem.generator.parameters() if p.requires_grad]

    def prepare(self, progress: bool = False) -> None:
        """Nothing to train by default."""

    def surrogate(self, batch_size: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def estimate(self, batch_size: int, edges: Tensor | None = None) -> GradientEstimate:
        """One estimate from a fresh batch; with bin ``edges``, also each σ bin's contribution."""
        terms, sigma = self.surrogate(batch_size)
        if edges is None:
            return GradientEstimate(flat_grad(terms.mean(), self.params), None)
        index = sigma_bins(sigma.detach(), edges)
        n = edges.numel() - 1
        per_bin = torch.stack([flat_grad((terms * (index == k)).sum() / batch_size, self.params, retain_graph=k < n - 1)
                               for k in range(n)])
        return GradientEstimate(per_bin.sum(0), per_bin)

    def summary(self, edges: Tensor | None = None) -> dict:
        return {}


class VarDiUEstimator(GradientEstimator):
    """VarDiU's generator gradient at a fixed guide.

    :param guide: the amortised posterior q_φ (a ``Guide``); trained here only by ``guide_steps``
        guide-only steps in ``prepare`` (0 for a guide trained with this generator, e.g. a checkpoint's).
    :param importance_samples: K of the bound U_K (0: the paper's U), and ``quasi_random`` the draw of z, as in the
        run's ``objective``: the gradient the run follows.
    """

    def __init__(self, problem: Problem, guide: nn.Module, iteration: float = 0, antithetic: bool = True,
                 guide_steps: int = 0, name: str = "vardiu", gap_draws: tuple[int, int] = (1024, 128),
                 importance_samples: int = 0, quasi_random: bool = False):
        super().__init__(problem, iteration)
        self.name, self.guide, self.guide_steps, self.gap_draws = name, guide, int(guide_steps), gap_draws
        self.model = ForwardDiffusion(problem.generator, problem.sigma_law, antithetic=antithetic, name="generator",
                                      quasi_random=quasi_random)
        self.elbo = VarDiUELBO(problem.teacher, problem.weight, importance_samples=int(importance_samples))
        self.program = pyro_guide(guide, name=f"{name}_guide")

    def prepare(self, progress: bool = False) -> None:
        """``guide_steps`` steps of the guide alone on the bound (the generator does not move)."""
        if self.guide_steps == 0:
            return
        optim = self.problem.make_optim({"guide": self.guide})
        params = [p for p in self.guide.parameters() if p.requires_grad]
        for _ in tqdm(range(self.guide_steps), desc=f"{self.name}: guide", disable=not progress, leave=False):
            t = self.elbo.terms(self.model, self.program, self.problem.batch_size, iteration=self.iteration)
            for p, g in zip(params, torch.autograd.grad(t.surrogate.mean(), params, allow_unused=True)):
                p.grad = g
            optim(params)

    def surrogate(self, batch_size: int) -> tuple[Tensor, Tensor]:
        t = self.elbo.terms(self.model, self.program, batch_size, iteration=self.iteration)
        return t.surrogate, t.sigma

    def summary(self, edges: Tensor | None = None) -> dict:
        """The bound gap E_π w (U - KL) of this guide (2-D data only): beside the bias it causes.

        With ``edges``, also each σ bin's contribution ``bound_gap_bins`` (they sum to the gap).
        """
        gen = self.problem.generator
        if sum(gen.data_shape) != 2 or len(gen.data_shape) != 1:
            return {"importance_samples": self.elbo.importance_samples}
        num_outer, num_inner = self.gap_draws
        est = bound_gap(gen, self.guide, self.problem.sigma_law, self.problem.weight, self.iteration,
                        num_outer=num_outer, num_inner=num_inner)
        out = {"importance_samples": self.elbo.importance_samples, "bound_gap": est.gap, "bound_gap_lower": est.gap_lower,
               "bound_gap_se": est.standard_error}
        if edges is not None:
            out["bound_gap_bins"] = self._gap_per_bin(edges, num_outer, num_inner)
        return out

    @torch.no_grad()
    def _gap_per_bin(self, edges: Tensor, num_outer: int, num_inner: int) -> list[float]:
        gen = self.problem.generator
        sigma = self.problem.sigma_law.distribution(self.iteration).sample((num_outer,))
        z = torch.randn((num_outer, *gen.latent_shape), device=sigma.device, dtype=sigma.dtype)
        x0 = gen(z)
        x_t = x0 + sigma.view(-1, *[1] * (x0.dim() - 1)) * torch.randn_like(x0)
        wg = self.problem.weight(sigma, self.iteration) * gap_terms(gen, self.guide, z, x_t, sigma, num_inner)["gap"]
        index = sigma_bins(sigma, edges)
        return [(wg * (index == k)).sum().item() / num_outer for k in range(edges.numel() - 1)]


class FakeScoreEstimator(GradientEstimator):
    """Diff-Instruct's generator gradient with a given fake score (anything with ``score(x_t, sigma)``)."""

    def __init__(self, problem: Problem, fake_score: nn.Module, iteration: float = 0, antithetic: bool = True,
                 name: str = "fake_score"):
        super().__init__(problem, iteration)
        self.name = name
        self.model = ForwardDiffusion(problem.generator, problem.sigma_law, antithetic=antithetic, name="generator")
        self.loss = DiffInstructLoss(problem.teacher, fake_score, problem.weight)

    def surrogate(self, batch_size: int) -> tuple[Tensor, Tensor]:
        t = self.loss.terms(self.model, no_guide, batch_size, iteration=self.iteration)
        return t.surrogate, t.sigma


class DiffInstructEstimator(GradientEstimator):
    """Diff-Instruct with its fake score trained as in training (``vardiu_pyro.objectives.DiffInstruct``).

    The fake score starts from a warm state: a trained one (``state``: a Diff-Instruct checkpoint's
    fake score and its optimiser), or else a fresh one trained ``inner_steps × warmup_iterations``
    DSM steps at this generator in ``prepare`` (the steps K inner steps per iteration would have given
    it over ``warmup_iterations`` iterations, with the generator held still). Each estimate then
    restores the warm state, takes ``inner_steps`` DSM steps on fresh student samples (batch: the
    training batch size), and computes the generator gradient on a fresh batch of ``batch_size``.
    The inner steps take the learning rate training gives the fake score at ``iteration`` (the position on the run's
    schedules) of schedules that span ``schedule_length`` iterations (None: the optimiser's own step count); a fresh
    fake score's warm-up, standing for its training from the start, takes its optimiser's own rate.
    """

    def __init__(self, problem: Problem, fake_score_factory, inner_steps: int, iteration: float = 0,
                 antithetic: bool = True, warmup_iterations: int = 100, state: dict | None = None,
                 name: str | None = None, schedule_length: int | None = None, quasi_random: bool = False):
        super().__init__(problem, iteration)
        self.name = name or f"diff_instruct_k{inner_steps}"
        self.objective = DiffInstruct(problem, fake_score_factory, inner_steps=inner_steps, antithetic=antithetic,
                                      quasi_random=quasi_random)
        self.schedule_length = None if schedule_length is None else int(schedule_length)
        self.warmup_iterations = int(warmup_iterations)
        self.warm = None
        if state is not None:
            self.objective.fake_score.load_state_dict(state["network"])
            self.objective.fake_optim.set_state(copy.deepcopy(state["optim"]))
            self.warmup_iterations = 0

    def prepare(self, progress: bool = False) -> None:
        steps = self.objective.inner_steps * self.warmup_iterations
        for _ in tqdm(range(steps), desc=f"{self.name}: fake score", disable=not progress, leave=False):
            self.objective.fake_score_step(self.iteration)
        if self.schedule_length is not None:  # the inner steps: as the training loop sets it before a step (Trainer._step)
            self.objective.fake_optim.follow(self.iteration, self.schedule_length)
        # optimiser states hold references to live tensors: keep deep copies
        self.warm = (copy.deepcopy(self.objective.fake_score.state_dict()),
                     copy.deepcopy(self.objective.fake_optim.get_state()))

    def surrogate(self, batch_size: int) -> tuple[Tensor, Tensor]:
        if self.warm is None:
            raise RuntimeError(f"{self.name}: call prepare() before estimate()")
        network, optim = self.warm
        self.objective.fake_score.load_state_dict(network)
        self.objective.fake_optim.set_state(copy.deepcopy(optim))
        for _ in range(self.objective.inner_steps):
            self.objective.fake_score_step(self.iteration)
        t = self.objective.loss.terms(self.objective.model, no_guide, batch_size, iteration=self.iteration)
        return t.surrogate, t.sigma
