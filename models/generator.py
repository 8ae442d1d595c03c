"""The one-step student x0 = g_θ(z)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from vardiu_pyro.nn import mlp

__all__ = ["MLPGenerator"]


class MLPGenerator(nn.Module):
    """x0 = data_std · MLP(z): a one-step generator from a Gaussian latent to data space.

    Shapes are explicit so that nothing assumes 2-D data: ``z`` has shape (B, latent_dim) and the
    output (B, *data_shape). ``data_std`` (the target's scale) preconditions the output layer, so
    the network itself works at unit scale (as EDM's c_out does for denoisers).
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int | None = None, width: int = 256,
                 depth: int = 3, activation: str = "relu", data_std: float = 1.0):
        super().__init__()
        self.data_shape = torch.Size(data_shape)
        self.latent_dim = int(latent_dim or math.prod(self.data_shape))
        self.data_std = float(data_std)
        self.net = mlp(self.latent_dim, math.prod(self.data_shape), width, depth, activation)

    @property
    def latent_shape(self) -> torch.Size:
        return torch.Size([self.latent_dim])

    def forward(self, z: Tensor) -> Tensor:
        return (self.data_std * self.net(z)).view(z.shape[0], *self.data_shape)
