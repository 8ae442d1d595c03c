"""The guide interface: an amortised variational posterior q_φ(z | x_t, σ).

A guide family is an ``nn.Module`` whose ``forward(x_t, sigma)`` returns a Pyro distribution over
z with batch shape (B,) and event shape ``latent_shape`` (a conditional distribution factory, as
zuko's ``LazyDistribution``). Training only *scores* the guide at the model's z, so a family needs
a cheap, exact ``log_prob``; ``rsample`` is used by the importance-weighted bound
(``objective.importance_samples > 0``) and by analysis tools.

Every family is built as ``Family(latent_shape=..., data_shape=..., data_std=..., **hyperparameters)``
(hyperparameters come from ``configs/guide/<family>.yaml``), which is what lets
``guide=<family>`` swap families from the command line.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.distributions.transforms import ReshapeTransform

from vardiu_pyro.param_store import register_network
from vardiu_pyro.plates import BatchPlates

__all__ = ["Guide", "pyro_guide", "NoiseConditioning", "with_event_shape"]


class NoiseConditioning(nn.Module):
    """Features of (x_t, σ) fed to a guide network, shape (B, D + 2).

    ``"log"``: [x_t / √(σ² + σ_data²), log(σ) / 4, σ / √(σ² + σ_data²)] — inputs of unit scale at every σ
    (EDM's c_in and c_noise). ``"raw"`` (the default): [x_t, σ, 0] as in the published code; on MoG-40 it trains the
    student markedly faster than ``"log"`` (1500 steps: log-MMD -4.4 against -2.0).
    """

    def __init__(self, data_std: float = 1.0, embedding: str = "raw"):
        super().__init__()
        if embedding not in ("log", "raw"):
            raise ValueError(f"unknown sigma embedding {embedding!r}; choose 'log' or 'raw'")
        self.data_std, self.embedding = float(data_std), embedding

    def forward(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        x = x_t.flatten(1)
        s = sigma.unsqueeze(-1)
        if self.embedding == "raw":
            return torch.cat([x, s, torch.zeros_like(s)], dim=-1)
        c_in = torch.rsqrt(s.square() + self.data_std**2)
        return torch.cat([x * c_in, s.log() / 4, s * c_in], dim=-1)


class Guide(nn.Module):
    """Base class of guide families: q_φ(z | x_t, σ) as ``forward(x_t, sigma) -> Distribution``.

    ``reparameterized``: the family's distributions have ``rsample`` (pathwise draws), which the
    importance-weighted bound (``objective.importance_samples > 0``) needs.
    """

    reparameterized = True

    def __init__(self, latent_shape: Sequence[int], data_shape: Sequence[int], data_std: float = 1.0):
        super().__init__()
        self.latent_shape = torch.Size(latent_shape)
        self.data_shape = torch.Size(data_shape)
        self.data_std = float(data_std)

    @property
    def latent_dim(self) -> int:
        return math.prod(self.latent_shape)

    @property
    def context_dim(self) -> int:
        """Size of the ``NoiseConditioning`` features."""
        return math.prod(self.data_shape) + 2

    def forward(self, x_t: Tensor, sigma: Tensor) -> pyro.distributions.TorchDistribution:
        raise NotImplementedError


def with_event_shape(flat: dist.TorchDistribution, event_shape: Sequence[int]) -> dist.TorchDistribution:
    """A distribution over flat vectors (event (D,)) seen with event shape ``event_shape`` (a reshape: same density)."""
    event_shape = torch.Size(event_shape)
    if flat.event_shape == event_shape:
        return flat
    return dist.TransformedDistribution(flat, [ReshapeTransform(flat.event_shape, event_shape)])


def pyro_guide(guide: Guide, name: str = "guide") -> Callable[[Tensor, Tensor], Tensor]:
    """The Pyro guide program of an amortised posterior: site ``z`` ~ q_φ(z | x_t, σ) in the batch plate.

    The guide is registered with Pyro's param store under ``name`` once, here, not at every call
    (see ``vardiu_pyro.param_store``).
    """
    register_network(name, guide)
    plates = BatchPlates("batch", dim=-1)

    def program(x_t: Tensor, sigma: Tensor) -> Tensor:
        with plates(x_t.shape[0]):
            return pyro.sample("z", guide(x_t, sigma))

    program.guide = guide  # type: ignore[attr-defined]
    return program
