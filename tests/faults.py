"""Test-only teachers that inject faults into a run, given by ``teacher._target_=tests.faults.X``,
a guide family without ``rsample`` (``guide._target_=tests.faults.ScoreOnlyGuide``), and a fixed
stand-in for a time budget's re-fits (``FixedRefits``).

The library has no test hooks: these are ordinary teachers (the exact MoG score) that misbehave
on purpose. Each counts its own ``score`` calls in this process; call 1 is the shape check made
before training (``validate_problem``), call j >= 2 is the (j-1)-th training step of the process.
"""

from __future__ import annotations

import os
import signal

import pyro.distributions as dist
import torch
from torch import Tensor

from vardiu_pyro.guides import DiagonalGaussianGuide
from vardiu_pyro.models import ExactTeacher

KILL_ENV = "VARDIU_PYRO_TEST_SIGNAL_AT"  # "KILL:12" sends SIGKILL to this process on score call 12


class SignallingTeacher(ExactTeacher):
    """Sends its own process a signal on one score call, read from ``$VARDIU_PYRO_TEST_SIGNAL_AT``
    (``NAME:k``, e.g. ``KILL:40`` or ``TERM:25``); unset, it is the exact teacher. The signal is
    read from the environment, not the config, so that the interrupted and the resumed runs have
    the same configuration."""

    def __init__(self, target):
        super().__init__(target)
        spec = os.environ.get(KILL_ENV)
        self.signal, self.at = (None, None)
        if spec:
            name, at = spec.split(":")
            self.signal, self.at = getattr(signal, f"SIG{name}"), int(at)
        self.calls = 0

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), self.signal)
        return super().score(x_t, sigma)


class FlakyTeacher(ExactTeacher):
    """Returns a NaN score on the score calls listed in ``nan_scores`` (gradients go NaN), and a
    NaN log-density on the log_prob calls listed in ``nan_log_probs`` (the loss goes NaN)."""

    def __init__(self, target, nan_scores=(), nan_log_probs=()):
        super().__init__(target)
        self.nan_scores, self.nan_log_probs = set(nan_scores), set(nan_log_probs)
        self.score_calls = self.log_prob_calls = 0

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        self.score_calls += 1
        s = super().score(x_t, sigma)
        return torch.full_like(s, float("nan")) if self.score_calls in self.nan_scores else s

    def log_prob(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        self.log_prob_calls += 1
        lp = super().log_prob(x_t, sigma)
        return torch.full_like(lp, float("nan")) if self.log_prob_calls in self.nan_log_probs else lp


class WrongShapeTeacher(ExactTeacher):
    """A teacher for 3-D data put in front of a 2-D target."""

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return torch.zeros(x_t.shape[0], 3, device=x_t.device, dtype=x_t.dtype)


class PathTeacher(ExactTeacher):
    """Stands for a learned teacher read from a directory (``teacher.path``); it only keeps the path."""

    def __init__(self, target, path: str):
        super().__init__(target)
        self.path = path


class ScoreOnlyGuide(DiagonalGaussianGuide):
    """A user's own family that can only be scored: the diagonal Gaussian as a one-component mixture (same
    density, no ``rsample``), declared by ``reparameterized = False``."""

    reparameterized = False

    def forward(self, x_t: Tensor, sigma: Tensor) -> dist.TorchDistribution:
        gaussian = super().forward(x_t, sigma)
        one = dist.Categorical(logits=x_t.new_zeros(x_t.shape[0], 1))
        return dist.MixtureSameFamily(one, dist.Normal(gaussian.base_dist.loc.unsqueeze(1),
                                                       gaussian.base_dist.scale.unsqueeze(1)).to_event(1))


class FixedRefits:
    """A stand-in for ``vardiu_pyro.budget.BudgetRefit`` (patched over ``vardiu_pyro.fit.BudgetRefit``) whose
    answers do not depend on how loaded the machine is: 30 -> 50 iterations at iteration 10, 50 -> 40 at
    iteration 30 (a stretch, then a squeeze)."""

    def __init__(self, time_budget, eval_seconds):
        pass

    def __call__(self, iteration, iterations, seconds, started):
        return {10: 50, 30: 40}.get(iteration, iterations)
