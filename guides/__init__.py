"""Guide families: amortised variational posteriors q_φ(z | x_t, σ) behind one interface."""

from .base import Guide, NoiseConditioning, pyro_guide
from .gaussian import DiagonalGaussianGuide

__all__ = ["DiagonalGaussianGuide", "Guide", "NoiseConditioning", "pyro_guide"]
