"""A Gaussian guide with a full covariance matrix, parametrised by its Cholesky factor."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from vardiu_pyro.nn import mlp

from .base import Guide, NoiseConditioning, with_event_shape

__all__ = ["FullGaussianGuide"]


class FullGaussianGuide(Guide):
    """q_φ(z | x_t, σ) = N(μ_φ(x_t, σ), L Lᵀ),  L = σ · (diag(softplus(ρ_φ)) + strictly-lower(ℓ_φ)).

    L is lower-triangular with a positive diagonal, so it is the Cholesky factor of a valid
    covariance and every covariance is reachable. The whole factor is scaled by σ, as in the
    diagonal family: for a locally linear generator g(z) ≈ g(z₀) + J (z - z₀) the exact posterior
    covariance is (I + JᵀJ/σ²)⁻¹ = σ² (σ²I + JᵀJ)⁻¹, so with the factor σ the network learns the
    Cholesky factor of (σ²I + JᵀJ)⁻¹, of order 1/|J| at small σ instead of the vanishing σ/|J|.
    The family contains the exact posterior of a linear generator (``tests/test_guides.py``).
    """

    def __init__(self, latent_shape: Sequence[int], data_shape: Sequence[int], data_std: float = 1.0,
                 width: int = 256, depth: int = 3, activation: str = "silu", embedding: str = "raw"):
        super().__init__(latent_shape, data_shape, data_std)
        d = self.latent_dim
        self.conditioning = NoiseConditioning(data_std, embedding)
        # outputs: mean (d), raw diagonal (d), strictly-lower entries (d (d - 1) / 2)
        self.net = mlp(self.context_dim, 2 * d + d * (d - 1) // 2, width, depth, activation)

    def forward(self, x_t: Tensor, sigma: Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        loc, rho, off = self.net(self.conditioning(x_t, sigma)).split([d, d, d * (d - 1) // 2], dim=-1)
        scale_tril = cholesky_factor(rho, off) * sigma[:, None, None]  # L = σ (diag(softplus ρ) + tril(ℓ, -1))
        return with_event_shape(dist.MultivariateNormal(loc, scale_tril=scale_tril), self.latent_shape)


def cholesky_factor(rho: Tensor, off: Tensor) -> Tensor:
    """diag(softplus(ρ)) + the strictly lower triangle filled row by row with ℓ: shape (..., d, d).

    The triangle is an ``index_add`` at fixed positions (``vec_to_tril_matrix``'s values): torch's own writes through
    a boolean mask, whose backward pass inductor cannot compile (``objective.compile=true``)."""
    d = rho.shape[-1]
    rows, cols = torch.tril_indices(d, d, offset=-1, device=rho.device)  # row by row
    lower = rho.new_zeros(*rho.shape[:-1], d * d).index_add(-1, rows * d + cols, off).unflatten(-1, (d, d))
    return torch.diag_embed(F.softplus(rho)) + lower
