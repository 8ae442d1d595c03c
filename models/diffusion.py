"""The Pyro model: the one-step student followed by the variance-exploding forward diffusion.

    z ~ N(0, I),   x0 = g_θ(z),   σ ~ π,   x_t ~ N(x0, σ² I)   (pathwise: x_t = x0 + σ ε)

One plate over the batch; every site has batch shape (B,). ``x_t`` is drawn by ``rsample``
(``Normal(x0, σ).rsample() = x0 + σ ε``), so gradients reach θ through it. With ``antithetic=True``
each (z, σ) is used twice, with ε and -ε, and g runs once per pair (``generate_once_per_pair``).
With ``quasi_random=True`` a batch's z are a randomised quasi-Monte Carlo draw (``QuasiRandomNormal``):
each z is still N(0, I), the batch covers z-space evenly.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from vardiu_pyro.param_store import register_network
from vardiu_pyro.plates import BatchPlates

from .antithetic import AntitheticPairs, generate_once_per_pair
from .quasi_random import QuasiRandomNormal
from .sigma import SigmaLaw

__all__ = ["ForwardDiffusion"]


def _batch_view(sigma: torch.Tensor, event_dims: int) -> torch.Tensor:
    """σ of shape (B,) viewed as (B, 1, ..., 1) to broadcast against (B, *event_shape)."""
    return sigma.reshape(sigma.shape + (1,) * event_dims)


class ForwardDiffusion:
    """The model program ``model(batch_size, iteration=0)``; sites ``z``, ``sigma``, ``x0``, ``x_t``.

    The generator is registered with Pyro's param store under ``name`` once, here, not at every
    call (see ``vardiu_pyro.param_store``); the teacher never is.
    """

    def __init__(self, generator: nn.Module, sigma_law: SigmaLaw, antithetic: bool = False,
                 name: str = "generator", quasi_random: bool = False):
        if not isinstance(quasi_random, bool):
            raise ValueError(f"quasi_random must be true or false, got {quasi_random!r}")
        self.generator, self.sigma_law = generator, sigma_law
        self.antithetic, self.name, self.quasi_random = bool(antithetic), name, quasi_random
        self._plates = BatchPlates("batch", dim=-1)
        self._prior_cache: tuple | None = None  # (key, p(z)) of the last batch size, device, dtype and way of drawing
        register_network(name, generator)

    @property
    def latent_shape(self) -> torch.Size:
        return self.generator.latent_shape

    def _pairs(self, base: dist.TorchDistribution, sign: float) -> dist.TorchDistribution:
        return AntitheticPairs(base, sign) if self.antithetic else base

    def _prior(self, batch_size: int, anchor: torch.Tensor) -> dist.TorchDistribution:
        """p(z) = N(0, I) with batch shape (B,); built once per batch size, device, dtype and way of drawing (it is
        immutable; ``antithetic`` and ``quasi_random`` may be switched between calls, as a benchmark does)."""
        key = (batch_size, anchor.device, anchor.dtype, self.antithetic, self.quasi_random)
        if self._prior_cache is None or self._prior_cache[0] != key:
            latent = self.latent_shape
            # N(0, 1) is valid by construction; a fresh zero, not one derived from the anchor (a parameter: a compiled
            # step's trace would then hold the traced parameter in this cache)
            zero = torch.zeros((), dtype=anchor.dtype, device=anchor.device)
            prior = dist.Normal(zero, 1.0, validate_args=False).expand((batch_size, *latent)).to_event(len(latent))
            if self.quasi_random:  # with pairs the batch repeats its first half: the first B/2 Sobol points, a net too
                prior = QuasiRandomNormal(prior)
            self._prior_cache = (key, self._pairs(prior, +1.0))
        return self._prior_cache[1]

    def __call__(self, batch_size: int, iteration: int = 0) -> torch.Tensor:
        if self.antithetic and batch_size % 2:
            raise ValueError(f"antithetic pairs need an even batch size, got {batch_size}")
        prior = self._prior(batch_size, next(self.generator.parameters()))
        with self._plates(batch_size):
            z = pyro.sample("z", prior)
            # a stratified law stratifies each half of the batch on its own: pairs repeat the first half
            law = self.sigma_law.batch(iteration, batch_size, blocks=2 if self.antithetic else 1)
            sigma = pyro.sample("sigma", self._pairs(law, +1.0))
            x0 = generate_once_per_pair(self.generator, z) if self.antithetic else self.generator(z)
            event_dims = x0.dim() - 1
            pyro.deterministic("x0", x0, event_dim=event_dims)
            # x_t = x0 + σ ε by Normal.rsample; with pairs the second draw of each pair is x0 - σ ε
            noised = dist.Normal(x0, _batch_view(sigma, event_dims)).to_event(event_dims)
            return pyro.sample("x_t", self._pairs(noised, -1.0))
