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

Importance-weighted bound (``importance_samples=K > 0``; 0 here, 3 in ``configs/objective/vardiu.yaml``). With K proposals
z_1..z_K ~ q_φ(z | x_t, σ) beside the model's z_0 ~ p_θ(z | x_t) and weights
w_k = N(z_k) N(x_t; g_θ(z_k), σ²I) / q_φ(z_k | x_t, σ),

    U_K = E [log (1/(K+1)) Σ_{k=0}^K w_k - log p_d^σ(x_t)]

is again an upper bound on KL_σ, U_0 = U, and it decreases with K to KL_σ as K → ∞ (the upper-bound
twin of IWAE: Sobolev & Vetrov 2019, "Importance Weighted Hierarchical Variational Inference").
Every draw is reparameterised (z_k = μ_φ + s_φ η_k for the diagonal Gaussian), so its gradient is
that of the surrogate  w(σ) (U_K-term - stopgrad(s_d) · x0), again unbiased; each proposal costs one
more generator forward and backward, and the guide family must have ``rsample``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro import poutine
from pyro.infer import ELBO
from pyro.infer.util import torch_item
from torch import Tensor

from vardiu_pyro.bound_gap import log_joint

__all__ = ["VarDiUELBO", "VarDiUTerms", "vardiu_surrogate_terms", "importance_weighted_log_mean",
           "importance_surrogate_terms"]


def vardiu_surrogate_terms(log_q: Tensor, score: Tensor, x0: Tensor, weight: Tensor) -> Tensor:
    """Per-sample surrogate  -w(σ) (log q_φ(z | x_t, σ) + s_d(x_t, σ) · x0),  shape (B,)."""
    return -weight * (log_q + (score.detach() * x0).flatten(1).sum(-1))


def importance_weighted_log_mean(log_w: Tensor) -> Tensor:
    """log (1/(K+1)) Σ_{k=0}^K w_k over the leading dimension of log_w, shape (K+1, B) -> (B,)."""
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])


def importance_surrogate_terms(log_mean_w: Tensor, score: Tensor, x0: Tensor, weight: Tensor) -> Tensor:
    """Per-sample surrogate of U_K  w(σ) (log (1/(K+1)) Σ_k w_k - s_d(x_t, σ) · x0),  shape (B,)."""
    return weight * (log_mean_w - (score.detach() * x0).flatten(1).sum(-1))


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
    proposals: Tensor | None = None  # (K, B, *latent_shape): the guide's z_1..z_K when importance_samples = K > 0


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

    With ``importance_samples=K > 0`` the bound is U_K (module docstring): the guide also draws K
    proposals per x_t, and the model must expose its ``generator`` (``ForwardDiffusion`` does).
    """

    def __init__(self, teacher, weight, importance_samples: int = 0, **kwargs):
        super().__init__(**kwargs)
        if self.num_particles != 1:
            raise ValueError("VarDiUELBO averages over the batch plate; use a larger batch instead of num_particles")
        if isinstance(importance_samples, bool) or not isinstance(importance_samples, int) or importance_samples < 0:
            raise ValueError(f"importance_samples must be an integer >= 0, got {importance_samples!r}")
        self.teacher, self.weight = teacher, weight
        self.importance_samples = importance_samples
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
        q = guide_trace.nodes["z"]["fn"]
        log_q = q.log_prob(z)

        iteration = kwargs.get("iteration", 0)
        weight = self.weight(sigma, iteration).detach()
        score, log_p_d = self.teacher.score_and_log_prob(x_t.detach(), sigma)  # log p_d: None without a density
        with torch.no_grad():
            log_joint_0 = nodes["z"]["fn"].log_prob(z) + nodes["x_t"]["fn"].log_prob(x_t)  # log N(z) + log N(x_t; x0, σ²I)
        proposals = None
        if self.importance_samples:
            proposals, log_w = self._proposal_log_weights(model, q, x_t, sigma)
            # log w_0 varies with (θ, φ) only through log q (x_t - g(z_0) = σ ε)
            log_mean_w = importance_weighted_log_mean(torch.cat([(log_joint_0 - log_q).unsqueeze(0), log_w]))
            surrogate = importance_surrogate_terms(log_mean_w, score, x0, weight)
            u = log_mean_w.detach()
        else:
            surrogate = vardiu_surrogate_terms(log_q, score, x0, weight)
            u = log_joint_0 - log_q.detach()  # U = log N(z) + log N(x_t; x0, σ²I) - log q(z | x_t, σ) - log p_d^σ(x_t)
        if log_p_d is not None:
            u = u - log_p_d
        terms = VarDiUTerms(surrogate, weight * u, sigma, weight, log_q, z, x0, x_t, self.teacher.has_log_prob,
                            proposals)
        self.last_terms = terms
        return terms

    def _proposal_log_weights(self, model, q, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """K proposals z_k ~ q(z | x_t, σ) (reparameterised) and their log weights, each (K, B, ...).

        log w_k = log N(z_k) + log N(x_t; g(z_k), σ²I) - log q(z_k | x_t, σ)
        """
        if not q.has_rsample:
            raise ValueError(f"importance_samples > 0 needs a guide family with rsample; its {type(q).__name__} has none")
        generator = getattr(model, "generator", None)
        if generator is None:
            raise ValueError("importance_samples > 0 needs a model with a `generator` attribute (as ForwardDiffusion)")
        k, b = self.importance_samples, x_t.shape[0]
        z_k = q.rsample((k,))

        def k_copies(t: Tensor) -> Tensor:  # (B, ...) -> (K B, ...), copy k of row i at k B + i
            return t.expand(k, *t.shape).flatten(0, 1)

        log_p = log_joint(generator, z_k.flatten(0, 1), k_copies(x_t), k_copies(sigma)).unflatten(0, (k, b))
        return z_k, log_p - q.log_prob(z_k)

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
