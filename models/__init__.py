"""Pyro models: targets and teachers, the one-step generator, the σ law and weight, and the
model program (student + forward diffusion)."""

from .denoiser import EDMDenoiser
from .diffusion import ForwardDiffusion
from .generator import MLPGenerator
from .sigma import FixedSigma, LogNormalSigma, LogUniformSigma, PowerLawSigma, PowerWeight, Ramp, SigmaLaw
from .targets import GaussianMixture, mog9, mog40
from .teachers import EmpiricalTeacher, ExactTeacher, LearnedTeacher, Teacher

__all__ = [
    "EDMDenoiser", "EmpiricalTeacher", "ExactTeacher", "FixedSigma", "ForwardDiffusion", "GaussianMixture",
    "LearnedTeacher", "LogNormalSigma", "LogUniformSigma", "MLPGenerator", "PowerLawSigma", "PowerWeight", "Ramp",
    "SigmaLaw", "Teacher", "mog9", "mog40",
]
