"""Analytic targets: mixtures of isotropic Gaussians.

A mixture of Gaussians convolved with N(0, σ²I) is again a mixture of Gaussians, with every
component variance s² grown to s² + σ². The noised density p_d^σ, its score and its samples are
therefore exact at every σ, which makes these targets perfect teachers (`ExactTeacher`) and
perfect references for metrics.

Nothing here assumes 2-D data: a mixture lives in R^D for any D.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GaussianMixture", "mog40", "mog9", "noised_variance", "squared_distances", "mixture_logits", "normalise_logits",
           "mixture_score", "mixture_log_prob", "mixture_score_and_log_prob"]


def noised_variance(scale: float, sigma: Tensor | float) -> Tensor | float:
    """Component variance of p_d^σ = p_d * N(0, σ²I):  v = s² + σ²."""
    return scale**2 + sigma**2


# exp(-80) ≈ 1.8e-35: a term this far below the largest cannot change a float32 (or float64) sum that holds
# exp(0) = 1. Arguments are clamped to it before exp, whose underflow path is very slow on CPU (also in metrics.py).
EXP_FLOOR = -80.0


def squared_distances(x: Tensor, locs: Tensor) -> Tensor:
    """|x - μ_k|²,  shape (..., K), for ``x`` of shape (..., D) and ``locs`` (K, D).

    Differences are taken directly (no ||x||² - 2x·μ + ||μ||² expansion), so float32 stays
    accurate however far x is from the modes. With few coordinates the sum runs over them one
    (..., K) difference at a time: a reduction over a last dimension of 2 is several times slower on CPU.
    """
    d = x.shape[-1]
    if d > 4:
        return (x.unsqueeze(-2) - locs).square().sum(-1)
    sq = (x[..., 0, None] - locs[:, 0]).square()
    for i in range(1, d):
        sq = sq + (x[..., i, None] - locs[:, i]).square()
    return sq


def mixture_logits(x: Tensor, locs: Tensor, log_weights: Tensor, var: Tensor) -> Tensor:
    """Unnormalised log responsibilities  log w_k + log N(x; μ_k, v I),  shape (..., K).

    ``x`` has shape (..., D), ``locs`` (K, D), ``var`` broadcasts against (..., 1).
    Accurate however small v is (``squared_distances``).
    """
    d = x.shape[-1]
    return log_weights - 0.5 * squared_distances(x, locs) / var - 0.5 * d * torch.log(2 * math.pi * var)


def normalise_logits(logits: Tensor) -> tuple[Tensor, Tensor]:
    """softmax(ℓ) and logsumexp(ℓ) over the last dimension, from one exp:  e = exp(max(ℓ - max ℓ, -80)),
    r = e / Σe,  log Σ exp ℓ = max ℓ + log Σe.

    The same values as ``torch.softmax`` and ``torch.logsumexp`` (the floor moves a responsibility below
    2e-35 by less than that, and a log-sum not at all: ``EXP_FLOOR``), and faster on CPU, where exp of a
    far-negative argument (a component thousands of log-units away) is slow (``benchmarks/teacher_pass.py``).
    """
    top = logits.amax(-1, keepdim=True)
    e = (logits - top).clamp_min_(EXP_FLOOR).exp_()
    total = e.sum(-1, keepdim=True)
    return e / total, (top + total.log()).squeeze(-1)


def mixture_score(x: Tensor, locs: Tensor, log_weights: Tensor, var: Tensor) -> Tensor:
    """Score of a Gaussian mixture:  ∇ log p(x) = (Σ_k r_k(x) μ_k - x) / v,  r = softmax(logits)."""
    return mixture_score_and_log_prob(x, locs, log_weights, var)[0]


def mixture_log_prob(x: Tensor, locs: Tensor, log_weights: Tensor, var: Tensor) -> Tensor:
    """Log-density of a Gaussian mixture:  log p(x) = logsumexp_k logits_k."""
    return normalise_logits(mixture_logits(x, locs, log_weights, var))[1]


def mixture_score_and_log_prob(x: Tensor, locs: Tensor, log_weights: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """(score, log-density) of a Gaussian mixture from one pass over its logits."""
    r, log_p = normalise_logits(mixture_logits(x, locs, log_weights, var))
    return (r @ locs - x) / var, log_p


class GaussianMixture(nn.Module):
    """Mixture of K isotropic Gaussians N(μ_k, s²I) in R^D with weights w_k.

    Every method takes an optional noise level ``sigma`` (a float, or a tensor broadcastable to
    the batch shape ``x.shape[:-1]``); ``sigma=None`` means the clean target.
    """

    def __init__(self, locs: Tensor, scale: float, weights: Tensor | None = None):
        super().__init__()
        locs = torch.as_tensor(locs, dtype=torch.get_default_dtype())
        if locs.ndim != 2:
            raise ValueError(f"locs must have shape (K, D), got {tuple(locs.shape)}")
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        k = locs.shape[0]
        weights = torch.full((k,), 1.0 / k) if weights is None else torch.as_tensor(weights)
        self.register_buffer("locs", locs)
        self.register_buffer("log_weights", torch.log(weights / weights.sum()).to(locs.dtype))
        self.scale = float(scale)

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size(self.locs.shape[-1:])

    @property
    def num_components(self) -> int:
        return self.locs.shape[0]

    def _var(self, sigma: Tensor | float | None) -> Tensor:
        """Component variance s² + σ², shaped (..., 1) to broadcast against (..., K)."""
        sigma = 0.0 if sigma is None else sigma
        sigma = torch.as_tensor(sigma, dtype=self.locs.dtype, device=self.locs.device)
        return noised_variance(self.scale, sigma).unsqueeze(-1)

    def distribution(self, sigma: Tensor | float | None = None) -> dist.MixtureSameFamily:
        """p_d^σ as a Pyro distribution: the same mixture with component variance s² + σ²."""
        std = self._var(sigma).sqrt().unsqueeze(-1)  # (..., 1, 1)
        components = dist.Normal(self.locs, std).to_event(1)  # batch (..., K)
        mixing = dist.Categorical(logits=self.log_weights.expand(components.batch_shape))
        return dist.MixtureSameFamily(mixing, components)

    def sample(self, n: int) -> Tensor:
        """n exact samples of the clean target, shape (n, D)."""
        return self.distribution().sample((n,))

    def log_prob(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        """log p_d^σ(x), shape x.shape[:-1]."""
        return mixture_log_prob(x, self.locs, self.log_weights, self._var(sigma))

    def score(self, x: Tensor, sigma: Tensor | float | None = None) -> Tensor:
        """∇_x log p_d^σ(x), exact, shape x.shape."""
        return mixture_score(x, self.locs, self.log_weights, self._var(sigma))

    def score_and_log_prob(self, x: Tensor, sigma: Tensor | float | None = None) -> tuple[Tensor, Tensor]:
        """(``score``, ``log_prob``) from one pass over the mixture's logits."""
        return mixture_score_and_log_prob(x, self.locs, self.log_weights, self._var(sigma))

    def assign(self, x: Tensor, radius: float = 3.0) -> Tensor:
        """Index of the component whose core holds x, or -1 when x lies in none.

        x belongs to component k when it is the most responsible component and x lies within
        ``radius`` standard deviations of μ_k (so samples on a bridge between modes count for none).
        """
        logits = mixture_logits(x, self.locs, self.log_weights, self._var(None))
        k = logits.argmax(-1)
        dist_sq = (x - self.locs[k]).square().sum(-1)
        return torch.where(dist_sq <= (radius * self.scale) ** 2, k, torch.full_like(k, -1))

    def extra_repr(self) -> str:
        return f"components={self.num_components}, dim={self.locs.shape[-1]}, scale={self.scale:.4f}"


def mog40(seed: int = 0, num_components: int = 40, loc_range: float = 40.0) -> GaussianMixture:
    """MoG-40, the benchmark of FAB, DiKL and VarDiU.

    ``torch.manual_seed(0)`` then ``locs = (torch.rand(40, 2) - 0.5) * 2 * 40``, equal weights,
    component scale softplus(1) ≈ 1.3133. Drawn from a private generator, so building the target
    does not disturb the global random state.
    """
    g = torch.Generator().manual_seed(seed)
    locs = (torch.rand(num_components, 2, generator=g) - 0.5) * 2 * loc_range
    return GaussianMixture(locs, scale=F.softplus(torch.tensor(1.0)).item())


def mog9(spacing: float = 5.0, scale: float = 0.5) -> GaussianMixture:
    """MoG-9: a 3x3 grid of equal-weight Gaussians at {-spacing, 0, spacing}², scale 0.5."""
    axis = torch.tensor([-spacing, 0.0, spacing])
    locs = torch.cartesian_prod(axis, axis)
    return GaussianMixture(locs, scale=scale)
