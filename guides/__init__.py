"""Guide families: amortised variational posteriors q_φ(z | x_t, σ) behind one interface."""

from .base import Guide, NoiseConditioning, pyro_guide, with_event_shape
from .flow import FlowGuide
from .full_gaussian import FullGaussianGuide
from .gaussian import DiagonalGaussianGuide
from .mixture import MixtureGuide

__all__ = ["DiagonalGaussianGuide", "FlowGuide", "FullGaussianGuide", "Guide", "MixtureGuide", "NoiseConditioning",
           "pyro_guide", "with_event_shape"]
