"""A run sized to a wall-clock budget: ``trainer.iterations=auto trainer.time_budget=SECONDS``.

The σ curriculum and the learning-rate schedule are laid out over the run's iterations, so a run
cannot simply stop when its time is up: it would stop in the middle of its schedule. Instead the
iteration count is chosen before the run starts, from this machine's measured cost of a step and
of an evaluation of this very configuration (``calibrate``), and the schedules are laid out over it
(``trainer.schedule_iterations``).

A shared machine's speed swings by 15-30% within a run (a 2-core EPYC VM, 2026-12-05: three
measurements in a row, a few seconds each, gave 13.8, 13.1 and 16.9 ms a step, and the steps after them 16-17 ms),
so a few seconds of measurement can miss by that much: a run then leaves a fifth of its budget
unused, or overruns it. So the run re-fits its count at every evaluation from its own pace so far
(``BudgetRefit``), and the schedules still ahead stretch over the iterations still ahead
(``vardiu_pyro.schedule_clock``). The configuration records the count, the schedule length and
every re-fit, so ``trainer.iterations=N trainer.schedule_iterations=L trainer.refits=[...]`` with the
same seed repeats the run exactly, on any machine (the summary prints it), and a resumed run keeps
its count.

The cost model (``iterations_for_budget``): the budget pays for the measurement itself, one step per
iteration, one evaluation every ``eval_every`` iterations plus the final one, and the plots and
checkpoint at the end (counted as one more evaluation); a safety margin absorbs the noise of the
measurement, and at a re-fit the same share of the time still ahead.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from omegaconf import DictConfig

from .build import build_objective, build_problem
from .evaluation import Evaluator
from .seeding import seeded

__all__ = ["Calibration", "calibrate", "iterations_for_budget", "timed_step_count", "time_steps", "median_step_seconds",
           "fit_to_budget", "BudgetRefit", "round_count", "MARGIN", "ROUND_TO", "WARMUP_STEPS", "TIMED_STEPS"]

MARGIN = 0.10  # the share of the budget (at a re-fit: of the time left) kept free for what the measurement does not
               # see: a shared VM's speed drifts within a run (a 2-core Xeon, 2026-12-03: measured 13.67 ms a step,
               # then 14.2-15.2 ms)
PROBE_LENGTH = 100  # the measurement's schedule is this many times its steps: they lie in its first 1%
ROUND_TO = 100  # iteration counts are rounded down to a multiple of this (readable, and the measurement is not finer)
MEASURE_SHARE = 0.02  # the timed steps take at most about this share of the budget: 200 steps of a 90 ms step (the flow
                      # guide, Diff-Instruct K = 10) would be 12% of a 150 s budget, taken from the run; the default's
                      # 200 steps of 12 ms are 0.3% of its 840 s
WARMUP_STEPS, TIMED_STEPS = 20, 200  # the measurement's untimed and timed steps (``calibrate``)
MIN_TIMED_STEPS = 20  # but never fewer than this (the re-fits at every evaluation correct a rough first count)
WINDOWS = 10  # the timed steps are timed in this many windows and the step is the median window's: a few seconds of
              # other work on a 2-core machine (a command typed beside the run) once made the mean of 200 steps 2x too high


@dataclass(frozen=True)
class Calibration:
    """What the measurement found and what it chose (recorded in ``summary.json`` as ``calibration``)."""

    time_budget: float  # seconds the whole run may take
    step_seconds: float  # one training iteration (the median over windows of the measured steps' mean)
    eval_seconds: float  # one evaluation of the generator (the shorter of two)
    spent_seconds: float  # the measurement itself (building, warm-up, timed steps, two evaluations)
    iterations: int  # what fits
    timed_steps: int = 0  # how many steps the measurement timed (``timed_step_count``; 0: not recorded)

    def as_dict(self) -> dict:
        return asdict(self)


def round_count(n: int, round_to: int = ROUND_TO) -> int:
    """An iteration count rounded down to a multiple of ``round_to``; a count below ``round_to`` is kept as it is
    (rounding it would leave nothing of a budget that short)."""
    return n - n % round_to if n >= round_to else n


def iterations_for_budget(budget: float, step_seconds: float, eval_seconds: float, eval_every: int,
                          spent_seconds: float = 0.0, margin: float = MARGIN, round_to: int = ROUND_TO) -> int:
    """The largest N (a multiple of ``round_to`` when N >= ``round_to``) with
    N step + (N / eval_every + 2) eval <= (1 - margin) budget - spent; 0 when nothing fits."""
    available = (1.0 - margin) * budget - spent_seconds - 2.0 * eval_seconds  # the final evaluation, the plots
    per_iteration = step_seconds + eval_seconds / eval_every
    n = math.floor(available / per_iteration) if available > 0 else 0
    return round_count(n, round_to)


def timed_step_count(budget: float, step_seconds: float, steps: int, share: float = MEASURE_SHARE,
                     minimum: int = MIN_TIMED_STEPS) -> int:
    """How many steps the measurement times: ``steps``, unless that many would take more than ``share`` of the
    budget at ``step_seconds`` (the warm-up's pace); then what takes that share, but at least ``minimum``."""
    fits = math.floor(share * budget / step_seconds) if step_seconds > 0 else steps
    return min(steps, max(minimum, fits))


def time_steps(step: Callable[[int], object], first: int, n: int, sync: Callable[[], object] = lambda: None) -> float:
    """Mean seconds of ``step(i)`` for i = first .. first + n - 1 (``sync`` waits for a device before each clock read)."""
    sync()
    tick = time.perf_counter()
    for i in range(first, first + n):
        step(i)
    sync()
    return (time.perf_counter() - tick) / n


def median_step_seconds(step: Callable[[int], object], first: int, steps: int, windows: int = WINDOWS,
                        sync: Callable[[], object] = lambda: None) -> float:
    """Seconds a step: ``step(i)`` for i = first .. first + steps - 1, timed in ``windows`` consecutive windows of
    (nearly) equal length; the median over windows of each window's mean. A burst of other work hits one window."""
    windows = max(1, min(windows, steps))
    bounds = [first + round(w * steps / windows) for w in range(windows + 1)]
    return statistics.median(time_steps(step, lo, hi - lo, sync) for lo, hi in zip(bounds, bounds[1:]))


def calibrate(cfg: DictConfig, device: torch.device, warmup: int = WARMUP_STEPS, steps: int = TIMED_STEPS) -> Calibration:
    """Measure one iteration and an evaluation of ``cfg`` on ``device`` and choose the iteration count.

    The measurement builds the configured problem and objective, takes ``warmup`` untimed steps and
    ``steps`` timed ones (``median_step_seconds``; fewer where they would take more than ``MEASURE_SHARE`` of
    the budget at the warm-up's pace: ``timed_step_count``), and evaluates the generator twice, all with random
    states of their own (the run's draws are not touched); what it builds is thrown away.
    """
    tick = time.perf_counter()
    budget = float(cfg.trainer.time_budget)
    probe = copy.deepcopy(cfg)
    # The timed steps must see what a run's steps see. A run's step time is flat from start to end (the default on a
    # 2-core Xeon: 13.2-14.2 ms in every 5,000 iterations), but the untrained networks at the END of the σ schedule
    # (small σ) cost 10-25% more a step; a probe as long as its own steps ended its ramps at once and overestimated
    # the step by about 10% (docs/default_fit.md). So the probe's schedule is long and the timed steps lie in its start.
    probe.trainer.iterations = PROBE_LENGTH * (warmup + steps)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with seeded(int(cfg.seed), device):
        problem = build_problem(probe, device)
        objective = build_objective(probe, problem)
        settled = warmup // 2  # the first steps allocate and are slow; the warm-up's second half gives its pace
        for i in range(settled):
            objective.step(i)
        pace = time_steps(objective.step, settled, warmup - settled, sync) if warmup > settled else 0.0
        timed = timed_step_count(budget, pace, steps)
        step_seconds = median_step_seconds(objective.step, warmup, timed, sync=sync)
        evaluator = Evaluator(problem.target, num_samples=int(cfg.trainer.eval_samples),
                              bandwidths=list(cfg.trainer.mmd_bandwidths))
        # two evaluations, the shorter counts: the first also computes the reference set's own term once, and a burst
        # of other work on the machine seldom hits both
        eval_seconds = min(_timed(lambda: evaluator(problem.generator), sync) for _ in range(2))
    spent = time.perf_counter() - tick
    iterations = iterations_for_budget(budget, step_seconds, eval_seconds, int(cfg.trainer.eval_every), spent)
    return Calibration(budget, step_seconds, eval_seconds, spent, iterations, timed)


def _timed(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


@dataclass(frozen=True)
class BudgetRefit:
    """The iteration count that fits the time left, from the run's own pace (the trainer asks at each evaluation).

    pace = (seconds - seconds at start) / (iterations since start), evaluations included;
    count = iteration + (1 - margin) (time_budget - seconds - 2 eval_seconds) / pace, rounded down to a
    multiple of ``round_to``. A gain smaller than ``min_change`` of the count is not made (the count then
    stays as it is); a cut always is, so that the budget holds; the run always goes on to the next multiple of
    ``round_to``, so that the schedules can end. A count below ``round_to`` (a budget that short) is neither
    rounded nor raised to it, as ``iterations_for_budget`` leaves it; then at least one more iteration is left.
    """

    time_budget: float
    eval_seconds: float  # the final evaluation, and the plots and checkpoint (one more)
    margin: float = MARGIN
    round_to: int = ROUND_TO
    min_change: float = 0.01

    def __call__(self, iteration: int, iterations: int, seconds: float, started: tuple[int, float]) -> int:
        done, spent = iteration - started[0], seconds - started[1]
        if done <= 0:
            return iterations
        left = (1.0 - self.margin) * (self.time_budget - seconds - 2.0 * self.eval_seconds)
        count = iteration + max(0, math.floor(left * done / spent))  # iteration + left / pace
        if count >= self.round_to:
            count = max(round_count(count, self.round_to), iteration - iteration % self.round_to + self.round_to)
        else:  # raising it to round_to would overrun a budget that short (a 47-iteration plan ran 100, 60% over)
            count = max(count, iteration + 1)
        return count if count < iterations or count >= (1.0 + self.min_change) * iterations else iterations


def fit_to_budget(cfg: DictConfig, device: torch.device) -> Calibration:
    """Set ``cfg.trainer.iterations`` (``auto``) to what fits in ``cfg.trainer.time_budget``; the calibration."""
    from .validation import ConfigError

    calibration = calibrate(cfg, device)
    if calibration.iterations < 1:
        raise ConfigError(f"trainer.time_budget={cfg.trainer.time_budget}: not even one iteration fits (one step "
                          f"takes {calibration.step_seconds:.3g} s, one evaluation {calibration.eval_seconds:.3g} s, "
                          f"the measurement took {calibration.spent_seconds:.3g} s)")
    cfg.trainer.iterations = calibration.iterations
    cfg.trainer.schedule_iterations = calibration.iterations  # the schedules' length: it stays when a re-fit changes the count
    return calibration
