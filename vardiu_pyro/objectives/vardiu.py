"""VarDiU: the generator and the guide minimise one bound, jointly, under ``pyro.infer.SVI``."""

from __future__ import annotations

from pyro.infer import SVI

from vardiu_pyro.compiled import CompiledELBO
from vardiu_pyro.guides import pyro_guide
from vardiu_pyro.models import ForwardDiffusion

from .base import Objective, Problem
from .vardiu_elbo import VarDiUELBO

__all__ = ["VarDiU"]


class VarDiU(Objective):
    """One SVI step on the VarDiU bound per iteration.

    :param problem: the distillation problem (generator, teacher, σ law, weight, guide, optimiser).
    :param antithetic: use each (z, σ) with ε and -ε (halves the independent draws per batch).
    :param importance_samples: K guide proposals per x_t for the tighter bound U_K (``VarDiUELBO``); 0: the
        paper's bound U.
    :param quasi_random: draw a batch's z as a randomised quasi-Monte Carlo batch (``QuasiRandomNormal``).
    :param compile: run each step's forward and backward passes as one compiled graph (``CompiledELBO``): the same
        bound, gradients and draws, a faster step after a compilation of seconds at the first.
    """

    network_names = ("generator", "guide")

    def __init__(self, problem: Problem, antithetic: bool = True, importance_samples: int = 0,
                 quasi_random: bool = False, compile: bool = False):
        self.guide = problem.make_guide()
        self.model = ForwardDiffusion(problem.generator, problem.sigma_law, antithetic=antithetic, name="generator",
                                      quasi_random=quasi_random)
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be true or false, got {compile!r}")
        self.networks = {"generator": problem.generator, "guide": self.guide}
        self.elbo = VarDiUELBO(problem.teacher, problem.weight, importance_samples=importance_samples)
        if compile:
            self.elbo = CompiledELBO(self.elbo, self.networks)
        self.optim = problem.make_optim(self.networks)
        self.svi = SVI(self.model, pyro_guide(self.guide, name="guide"), self.optim, self.elbo)
        self.batch_size = problem.batch_size

    def step(self, iteration: int) -> dict[str, float]:
        loss = self.svi.step(self.batch_size, iteration=iteration)
        return {"loss": loss, "skipped": self.optim.last_step_skipped}

    def optimizers(self):
        return {"optim": self.optim}
