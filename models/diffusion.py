"""The Pyro model: the one-step student followed by the variance-exploding forward diffusion.

    z ~ N(0, I),   x0 = g_θ(z),   σ ~ π,   x_t ~ N(x0, σ² I)   (pathwise: x_t = x0 + σ ε)

One plate over the batch; every site has batch shape (B,). ``x_t`` is drawn by ``rsample``, so
gradients reach θ through it. With ``antithetic=True`` each (z, σ) is used twice, with ε and -ε.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions.transforms import AffineTransform
from torch import nn

from .antithetic import AntitheticPairs
from .sigma import SigmaLaw

__all__ = ["ForwardDiffusion"]


def _batch_view(sigma: torch.Tensor, event_dims: int) -> torch.Tensor:
    """σ of shape (B,) viewed as (B, 1, ..., 1) to broadcast against (B, *event_shape)."""
    return sigma.reshape(sigma.shape + (1,) * event_dims)


class ForwardDiffusion:
    """The model program ``model(batch_size, iteration=0)``; sites ``z``, ``sigma``, ``x0``, ``x_t``.

    The generator is registered with Pyro under ``name`` (``pyro.module``); the teacher never is.
    """

    def __init__(self, generator: nn.Module, sigma_law: SigmaLaw, antithetic: bool = False,
                 name: str = "generator"):
        self.generator, self.sigma_law = generator, sigma_law
        self.antithetic, self.name = bool(antithetic), name

    @property
    def latent_shape(self) -> torch.Size:
        return self.generator.latent_shape

    def _pairs(self, base: dist.TorchDistribution, sign: float) -> dist.TorchDistribution:
        return AntitheticPairs(base, sign) if self.antithetic else base

    def __call__(self, batch_size: int, iteration: int = 0) -> torch.Tensor:
        if self.antithetic and batch_size % 2:
            raise ValueError(f"antithetic pairs need an even batch size, got {batch_size}")
        pyro.module(self.name, self.generator)
        zero = next(self.generator.parameters()).new_zeros(())
        latent = self.latent_shape
        with pyro.plate("batch", batch_size, dim=-1):
            prior = dist.Normal(zero, 1.0).expand((batch_size, *latent)).to_event(len(latent))
            z = pyro.sample("z", self._pairs(prior, +1.0))
            law = self.sigma_law.distribution(iteration).expand((batch_size,))
            sigma = pyro.sample("sigma", self._pairs(law, +1.0))
            x0 = self.generator(z)
            event_dims = x0.dim() - 1
            pyro.deterministic("x0", x0, event_dim=event_dims)
            noise = dist.Normal(zero, 1.0).expand(x0.shape).to_event(event_dims)
            # the scale is expanded to the full event shape: AffineTransform sums log|scale| over its elements
            diffusion = AffineTransform(x0, _batch_view(sigma, event_dims).expand_as(x0), event_dim=event_dims)
            return pyro.sample("x_t", dist.TransformedDistribution(self._pairs(noise, -1.0), diffusion))
