"""The diagonal-Gaussian guide of the paper: standard deviation scaled by σ."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor

from vardiu_pyro.nn import mlp

from .base import Guide, NoiseConditioning

__all__ = ["DiagonalGaussianGuide"]


class DiagonalGaussianGuide(Guide):
    """q_φ(z | x_t, σ) = N(μ_φ(x_t, σ), diag(σ · softplus(ρ_φ(x_t, σ)))²).

    The posterior of z given x_t = g(z) + σε narrows like σ/|g'(z)| as σ → 0; scaling the
    standard deviation by σ builds that in, so the network only learns the O(1) factor.
    """

    def __init__(self, latent_shape: Sequence[int], data_shape: Sequence[int], data_std: float = 1.0,
                 width: int = 256, depth: int = 3, activation: str = "silu", embedding: str = "raw"):
        super().__init__(latent_shape, data_shape, data_std)
        self.conditioning = NoiseConditioning(data_std, embedding)
        self.net = mlp(self.context_dim, 2 * self.latent_dim, width, depth, activation)

    def forward(self, x_t: Tensor, sigma: Tensor) -> dist.TorchDistribution:
        loc, rho = self.net(self.conditioning(x_t, sigma)).chunk(2, dim=-1)
        scale = F.softplus(rho) * sigma.unsqueeze(-1)
        shape = (x_t.shape[0], *self.latent_shape)
        return dist.Normal(loc.reshape(shape), scale.reshape(shape)).to_event(len(self.latent_shape))
