"""How good is a teacher? Its score against the exact one per σ, and its own many-step samples.

- ``score_error_table``: for each σ, x_t = x0 + σε with x0 from the target, the relative error
  √(E|ŝ(x_t, σ) - s(x_t, σ)|² / E|s(x_t, σ)|²) of the teacher's score ŝ against the target's exact
  noised score s (analytic targets only).
- ``evaluate_teacher``: the sample metrics (log-MMD, ...) of the teacher's own samples, e.g. its
  many-step ODE samples at a given number of function evaluations: the ceiling of any student
  distilled from it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .evaluation import Evaluator, device_of
from .seeding import seeded

__all__ = ["SCORE_ERROR_SIGMAS", "score_error_table", "score_error_markdown", "evaluate_teacher"]

SCORE_ERROR_SIGMAS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 80.0)


@torch.no_grad()
def score_error_table(teacher: nn.Module, target: nn.Module, sigmas: Sequence[float] = SCORE_ERROR_SIGMAS,
                      num_samples: int = 4096, seed: int = 0) -> list[dict]:
    """Rows ``{sigma, relative_error, rmse, score_rms}`` of the teacher's score against ``target.score``.

    Every σ uses the same x0 and ε (drawn from a private seed, so the global RNG is untouched).
    """
    if not hasattr(target, "score"):
        raise ValueError(f"the target {type(target).__name__} has no exact score to compare against")
    device = device_of(target)
    with seeded(seed, device):
        x0 = target.sample(num_samples)
        eps = torch.randn_like(x0)
    rows = []
    for s in sigmas:
        sigma = torch.full((num_samples,), float(s), device=x0.device, dtype=x0.dtype)
        x_t = x0 + s * eps
        exact, estimate = target.score(x_t, sigma), teacher.score(x_t, sigma)
        mse = (estimate - exact).square().flatten(1).sum(-1).mean().item()
        power = exact.square().flatten(1).sum(-1).mean().item()
        rows.append({"sigma": float(s), "relative_error": math.sqrt(mse / power), "rmse": math.sqrt(mse),
                     "score_rms": math.sqrt(power)})
    return rows


def score_error_markdown(rows: Sequence[dict]) -> str:
    """The table as markdown: σ, relative error, RMSE, RMS of the exact score."""
    lines = ["| σ | relative error | RMSE | RMS exact score |", "|---:|---:|---:|---:|"]
    lines += [f"| {r['sigma']:g} | {r['relative_error']:.3f} | {r['rmse']:.4g} | {r['score_rms']:.4g} |" for r in rows]
    return "\n".join(lines) + "\n"


def evaluate_teacher(teacher: nn.Module, evaluator: Evaluator, seed: int = 0) -> dict:
    """Metrics of ``evaluator.num_samples`` draws of ``teacher.sample``, plus how they were drawn."""
    device = device_of(evaluator.target)
    rng = torch.Generator(device=device).manual_seed(seed)
    samples = teacher.sample(evaluator.num_samples, generator=rng)
    out = evaluator.score(samples)
    settings = getattr(teacher, "sampler_settings", None)
    if settings:  # a many-step sampler: one function evaluation per step
        out.update(nfe=int(settings["num_steps"]), solver=settings["solver"])
    return out
