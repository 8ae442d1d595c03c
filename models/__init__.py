"""Pyro models: targets and teachers, the one-step generator, the σ law and weight, and the
model program (student + forward diffusion)."""

from .diffusion import ForwardDiffusion
from .generator import MLPGenerator
from .sigma import FixedSigma, LogNormalSigma, PowerLawSigma, PowerWeight, Ramp, SigmaLaw
from .targets import GaussianMixture, mog9, mog40
from .teachers import ExactTeacher, Teacher

__all__ = [
    "ExactTeacher", "FixedSigma", "ForwardDiffusion", "GaussianMixture", "LogNormalSigma", "MLPGenerator",
    "PowerLawSigma", "PowerWeight", "Ramp", "SigmaLaw", "Teacher", "mog9", "mog40",
]
