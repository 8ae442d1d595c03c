"""The VarDiU bound as a Pyro ``ELBO``.

For every σ the chain rule of KL bounds the intractable diffusive KL by a joint KL:

    KL(p_θ^σ(x_t) || p_d^σ(x_t)) <= E_{z, ε} [log N(z) + log N(x_t; g_θ(z), σ²I) - log q_φ(z | x_t, σ) - log p_d^σ(x_t)]
                                  =: U(θ, φ; σ)

with gap E KL(p_θ(z | x_t) || q_φ(z | x_t, σ)) >= 0. The objective is the weighted bound
E_{σ ~ π} w(σ) U(θ, φ; σ) >= D(θ) = E_π w(σ) KL_σ.

Unlike ``Trace_ELBO`` (the guide samples, the model replays), here the MODEL runs first and the
guide is only SCORED at the model's z, like the sleep phase of reweighted wake-sleep, but without
detaching the model trace: x_t = g_θ(z) + σε enters log q_φ with its gradient, so the generator
is also trained through ∇_{x_t} log q_φ. With the reparameterisation the first two terms of U do
not depend on (θ, φ), and -∇ log p_d^σ(x_t) = -s_d(x_t, σ) ∂x_t/∂θ needs only the teacher's score.
The gradient of the bound is therefore that of the surrogate

    L = -E[ w(σ) (log q_φ(z | x_t, σ) + stopgrad(s_d(x_t, σ)) · x0) ]          (x0 = g_θ(z); ∂x0/∂θ = ∂x_t/∂θ)

an unbiased Monte Carlo estimate over (z, ε, σ) for θ and φ alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.util import torch_item
from torch import Tensor

__all__ = ["VarDiUELBO", "VarDiUTerms", "vardiu_surrogate_terms"]


def vardiu_surrogate_terms(log_q: Tensor, score: Tensor, x0: Tensor, weight: Tensor) -> Tensor:
    """Per-sample surrogate  -w(σ) (log q_φ(z | x_t, σ) + s_d(x_t, σ) · x0),  shape (B,)."""
    return -weight * (log_q + (score.detach() * x0).flatten(1).sum(-1))


@dataclass
class VarDiUTerms:
    """Per-sample quantities of one VarDiU estimate (all shape (B,) unless noted)."""

    surrogate: Tensor  # -w (log q + s_d · x0), differentiable
    bound: Tensor  # w · U, detached; excludes -log p_d^σ(x_t) when the teacher has no density
    sigma: Tensor
    weight: Tensor
    log_q: Tensor  # differentiable
    z: Tensor  # (B, *latent_shape)
    x0: Tensor  # (B, *data_shape), differentiable
    x_t: Tensor  # (B, *data_shape), differentiable
    has_teacher_density: bool


class VarDiUELBO(ELBO):
    """The Variational Diffusive Upper Bound.

    ``loss`` returns the Monte Carlo estimate of the weighted bound E_π w(σ) U(θ, φ; σ), including
    -log p_d^σ(x_t) when the teacher has a log-density (else that term, constant in (θ, φ) up to the
    score term, is left out and ``last_terms.has_teacher_density`` is False); ``loss_and_grads``
    also backpropagates the surrogate into the generator and the guide; ``differentiable_loss``
    returns a tensor whose value is the bound and whose gradient is the surrogate's.

    The model is called as ``model(*args, **kwargs)`` and must have sites ``z``, ``sigma``,
    ``x0`` and ``x_t``; the guide as ``guide(x_t, sigma)`` with a site ``z``. The weight is read
    at ``kwargs["iteration"]`` (default 0), so curricula on w(σ) follow the training clock.
    """

    def __init__(self, teacher, weight, **kwargs):
        super().__init__(**kwargs)
        if self.num_particles != 1:
            raise ValueError("VarDiUELBO averages over the batch plate; use a larger batch instead of num_particles")
        self.teacher, self.weight = teacher, weight
        self.last_terms: VarDiUTerms | None = None

    def _get_trace(self, model, guide, args, kwargs):
        """The model runs first; the guide is then run at (x_t, σ) with its ``z`` fixed to the model's."""
        model_trace = poutine.trace(model).get_trace(*args, **kwargs)
        nodes = model_trace.nodes
        data = {"z": nodes["z"]["value"]}
        guide_trace = poutine.trace(poutine.condition(guide, data=data)).get_trace(
            nodes["x_t"]["value"], nodes["sigma"]["value"])
        return model_trace, guide_trace

    def terms(self, model, guide, *args, **kwargs) -> VarDiUTerms:
        """Run the model, score the guide at the model's z, and return the per-sample terms."""
        model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
        nodes = model_trace.nodes
        z, sigma = nodes["z"]["value"], nodes["sigma"]["value"]
        x0, x_t = nodes["x0"]["value"], nodes["x_t"]["value"]
        log_q = guide_trace.nodes["z"]["fn"].log_prob(z)

        iteration = kwargs.get("iteration", 0)
        weight = self.weight(sigma, iteration).detach()
        score = self.teacher.score(x_t.detach(), sigma)
        surrogate = vardiu_surrogate_terms(log_q, score, x0, weight)
        with torch.no_grad():
            # U = log N(z) + log N(x_t; x0, σ²I) - log q(z | x_t, σ) - log p_d^σ(x_t)
            u = nodes["z"]["fn"].log_prob(z) + nodes["x_t"]["fn"].log_prob(x_t) - log_q
            if self.teacher.has_log_prob:
                u = u - self.teacher.log_prob(x_t, sigma)
        terms = VarDiUTerms(surrogate, weight * u, sigma, weight, log_q, z, x0, x_t, self.teacher.has_log_prob)
        self.last_terms = terms
        return terms

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        t = self.terms(model, guide, *args, **kwargs)
        surrogate = t.surrogate.mean()
        return t.bound.mean() + (surrogate - surrogate.detach())

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return torch_item(self.terms(model, guide, *args, **kwargs).bound.mean())

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The bound estimate; its surrogate's gradient is accumulated only when the estimate is finite
        (so the optimiser, seeing no gradient, skips the step: see ``PerNetworkOptim``)."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        value = torch_item(loss)
        if math.isfinite(value):
            loss.backward()
        return value
