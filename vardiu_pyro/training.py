"""The training loop: generic over objectives (it only calls ``objective.step``).

Reliability lives here too, without any branch on the method: a step the objective reports as
``skipped`` (non-finite loss or gradient; nothing was stepped) is counted and leaves the EMA
alone, and too many in a row stop the run; SIGINT/SIGTERM stop it after a checkpoint; and
``state_dict``/``load_state_dict`` carry everything needed to continue a run exactly
(``vardiu_pyro.resume``).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .evaluation import Evaluator
from .interrupt import StopSignals, TrainingInterrupted
from .objectives import Objective
from .optim import PerNetworkOptim
from .plotting import plot_metrics, plot_samples
from .resume import CHECKPOINT, METRICS, rng_state, save_run_checkpoint, set_rng_state, write_metrics
from .schedule_clock import check_refits, schedule_position

__all__ = ["Trainer", "TooManySkippedSteps", "CHECKPOINT", "METRICS", "WALL_CLOCK_KEYS"]

WALL_CLOCK_KEYS = ("seconds", "train_seconds", "total_seconds")  # the only record fields a resumed run may change


class TooManySkippedSteps(RuntimeError):
    """Training stopped because too many consecutive steps had a non-finite loss or gradient."""


class Trainer:
    """Runs ``iterations`` steps of an objective, evaluating and checkpointing as it goes.

    Evaluations (every ``eval_every`` iterations and at the end) use the exponential moving
    average of the generator's weights when ``ema_decay > 0`` (else the generator itself); each
    one appends a line to ``metrics.jsonl``. Checkpoints go to ``checkpoint.safetensors`` every
    ``checkpoint_every`` iterations (0: at the end only), the one before kept as
    ``checkpoint.prev.safetensors``; no periodic checkpoint is written while steps are being skipped
    (one written on a signal may fall among skipped steps, which changed no parameter). After
    ``max_consecutive_skips`` skipped steps in a row the run stops with ``TooManySkippedSteps``; on
    SIGINT/SIGTERM it checkpoints and raises ``TrainingInterrupted``.

    ``parallel`` (a ``vardiu_pyro.distributed.DataParallel``) makes it one rank of a data-parallel
    run: every rank runs the same loop and takes the same decisions (checkpoint, stop on a signal,
    stop after too many skips), but only rank 0 evaluates, writes files and shows progress; the
    others need no ``evaluator`` and their ``fit`` returns ``{"iteration": ...}``. A checkpoint
    then also holds every rank's random state (``rank_rng``), so that each continues its own noise.

    The objective's schedules (σ curriculum, learning rate) are laid out over ``schedule_length``
    iterations (default ``iterations``): ``objective.step`` gets the iteration's position on them
    (``vardiu_pyro.schedule_clock``), and so does every ``PerNetworkOptim`` of the objective. ``refit``
    (``vardiu_pyro.budget.BudgetRefit``, a run sized to a time budget) may change ``iterations`` at each
    evaluation; each change is appended to ``refits`` and to the configuration the run saves.
    """

    def __init__(self, objective: Objective, evaluator: Evaluator | None, run_dir: str | Path, iterations: int,
                 eval_every: int = 5000, ema_decay: float = 0.0, checkpoint_every: int = 0,
                 max_consecutive_skips: int = 20, progress: bool = True, config: dict | None = None,
                 parallel=None, elapsed: float = 0.0, schedule_length: int | None = None,
                 refits: list[list[int]] | None = None, refit=None, calibration: dict | None = None):
        self.objective, self.evaluator = objective, evaluator
        self.calibration = calibration  # a budgeted run's measurement (budget.Calibration.as_dict()): kept for its summary
        self.run_dir = Path(run_dir)
        self.iterations, self.eval_every = int(iterations), int(eval_every)
        self.schedule_length = self.iterations if schedule_length is None else int(schedule_length)
        self.refits = [list(knot) for knot in refits or []]
        check_refits(self.refits, self.iterations, self.schedule_length)
        if refit is not None and parallel is not None:
            raise ValueError("a data-parallel run cannot re-fit its iteration count (every rank must run one schedule)")
        self.refit = refit
        self.optimizers = [o for o in objective.optimizers().values() if isinstance(o, PerNetworkOptim)]
        self.checkpoint_every, self.config = int(checkpoint_every), config
        self.max_consecutive_skips = int(max_consecutive_skips)
        self.parallel = parallel
        self.main_process = parallel is None or parallel.is_main
        self.progress = progress and self.main_process
        ema_decay = ema_decay if self.main_process else 0.0
        generator = objective.generator
        self.ema = (AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
                    if ema_decay > 0 else None)
        self.iteration = 0
        self.records: list[dict] = []
        self.pending_losses: list[float] = []  # losses of the steps taken since the last evaluation
        self.skipped_steps = 0
        self.consecutive_skips = 0
        self.train_seconds = 0.0  # time inside objective steps, over all sessions of the run
        # ``seconds`` counts what the run spent before the trainer existed (``elapsed``: sizing it to a time
        # budget) and, after a resume, the earlier sessions
        self._clock_start = time.perf_counter() - float(elapsed)
        self._checkpoint: tuple[int, Path] | None = None  # (iteration, path) of the last checkpoint written

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The generator used for evaluation and samples: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.objective.generator

    @property
    def position(self) -> float:
        """Where the current iteration falls on the schedules (``vardiu_pyro.schedule_clock``)."""
        return schedule_position(self.iteration, self.iterations, self.schedule_length, self.refits)

    @property
    def seconds(self) -> float:
        """Wall-clock seconds of the run so far, evaluations and earlier sessions included."""
        return time.perf_counter() - self._clock_start

    def state_dict(self) -> dict:
        """Everything a resumed run needs to continue exactly as this one would have.

        In a data-parallel run every rank must call it at the same iteration (it gathers the
        ranks' random states); rank 0's is the one to save.
        """
        state = {"iteration": self.iteration, "objective": self.objective.state_dict(),
                 "ema": self.ema.state_dict() if self.ema is not None else None,
                 "config": json.dumps(self.config) if self.config is not None else None,
                 "records": self.records, "pending_losses": self.pending_losses,
                 "skipped_steps": self.skipped_steps, "consecutive_skips": self.consecutive_skips,
                 "clock": {"seconds": self.seconds, "train_seconds": self.train_seconds},
                 "calibration": self.calibration, "rng": rng_state()}
        if self.parallel is not None:
            state["rank_rng"] = self.parallel.gather_object(state["rng"])
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state``; the random states are restored last, after everything that draws."""
        self.objective.load_state_dict(state["objective"])
        if self.main_process and (state["ema"] is None) != (self.ema is None):
            raise ValueError("the checkpoint and this trainer disagree on whether there is an EMA")
        rng = state["rng"]
        if self.parallel is not None:  # this rank's own random state
            ranks = state.get("rank_rng") or []
            if len(ranks) != self.parallel.world_size:
                raise ValueError(f"the checkpoint holds the random states of {len(ranks)} process(es), this run "
                                 f"has {self.parallel.world_size}")
            rng = ranks[self.parallel.rank]
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.iteration = int(state["iteration"])
        self.records = [dict(r) for r in state["records"]]
        self.pending_losses = [float(x) for x in state["pending_losses"]]
        self.skipped_steps, self.consecutive_skips = int(state["skipped_steps"]), int(state["consecutive_skips"])
        self.train_seconds = float(state["clock"]["train_seconds"])
        self._clock_start = time.perf_counter() - float(state["clock"]["seconds"])
        self.calibration = state.get("calibration", self.calibration)  # absent from checkpoints before 2026-12-07
        set_rng_state(rng)

    def save_checkpoint(self) -> Path:
        """Write the checkpoint (rank 0 only; every rank of a data-parallel run must call this)."""
        state = self.state_dict()
        path = save_run_checkpoint(self.run_dir, state) if self.main_process else self.run_dir / CHECKPOINT
        self._checkpoint = (self.iteration, path)
        return path

    def _stop_signal(self, stop: StopSignals) -> int | None:
        """The signal that asks the run to stop, if any (in a data-parallel run: on any rank)."""
        if self.parallel is None:
            return stop.signal
        return self.parallel.max_over_ranks(stop.signal or 0) or None

    def _evaluate(self) -> dict:
        losses = self.pending_losses
        record = {"iteration": self.iteration, "seconds": None, "train_seconds": self.train_seconds,
                  "loss": sum(losses) / len(losses) if losses else math.nan, "skipped_steps": self.skipped_steps}
        record.update(self.evaluator(self.sampling_generator))
        record["seconds"] = self.seconds  # wall clock, evaluation included
        self.records.append(record)
        self.pending_losses = []
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def _step(self) -> None:
        """One objective step, with the EMA and the skip counters."""
        tick = time.perf_counter()
        position = self.position
        for optimizer in self.optimizers:  # their learning-rate schedules follow the same clock
            optimizer.follow(position, self.schedule_length)
        stats = self.objective.step(position)
        if stats.get("skipped", False):
            self.skipped_steps += 1
            self.consecutive_skips += 1
        else:
            self.consecutive_skips = 0
            if self.ema is not None:
                self.ema.update_parameters(self.objective.generator)
            if self.main_process:  # only rank 0 logs them
                self.pending_losses.append(stats["loss"])
        self.train_seconds += time.perf_counter() - tick
        self.iteration += 1

    def _refit(self, started: tuple[int, float], bar) -> None:
        """Ask ``refit`` for the count that fits the time left; record a change (``vardiu_pyro.schedule_clock``)."""
        iterations = int(self.refit(iteration=self.iteration, iterations=self.iterations, seconds=self.seconds,
                                    started=started))
        if iterations == self.iterations:
            return
        if iterations <= self.iteration:
            raise ValueError(f"a re-fit must leave iterations to run: {iterations} at iteration {self.iteration}")
        self.refits.append([self.iteration, self.iterations])
        self.iterations = iterations
        if self.config is not None:  # what the run saves: its configuration repeats it
            self.config["trainer"]["iterations"], self.config["trainer"]["refits"] = iterations, self.refits
        bar.total = iterations
        bar.refresh()

    def _too_many_skips(self) -> TooManySkippedSteps:
        first = self.iteration - self.consecutive_skips + 1
        if self._checkpoint is not None:
            kept = f"the last checkpoint ({self._checkpoint[1]}, iteration {self._checkpoint[0]}) is intact"
        else:
            kept = "no checkpoint had been written yet"
        return TooManySkippedSteps(
            f"{self.consecutive_skips} consecutive steps (iterations {first}-{self.iteration}) had a non-finite loss "
            f"or gradient and were skipped, so training stopped (trainer.max_consecutive_skips="
            f"{self.max_consecutive_skips}); {kept}")

    def fit(self) -> dict:
        """Train to ``iterations``; return the final record (with total seconds).

        A resumed trainer (``load_state_dict``) first rewrites ``metrics.jsonl`` with the
        checkpoint's records, dropping what was logged after the checkpoint, then appends.
        """
        if self.main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_metrics(self.run_dir / METRICS, self.records)
        bar = tqdm(total=self.iterations, initial=self.iteration, disable=not self.progress,
                   desc="distilling", dynamic_ncols=True, mininterval=0.5)
        record, shown = None, {}  # shown: the last evaluation's metrics on the progress bar
        started = (self.iteration, self.seconds)  # the pace a re-fit goes by: this session's, evaluations included
        try:
            with StopSignals() as stop:
                while self.iteration < self.iterations:
                    self._step()
                    bar.update(1)
                    if self.consecutive_skips >= self.max_consecutive_skips:
                        raise self._too_many_skips()
                    if self.main_process and (self.iteration % self.eval_every == 0
                                              or self.iteration == self.iterations):
                        record = self._evaluate()
                        shown = {"log_mmd": f"{record['log_mmd']:.2f}",  # kept beside the loss until the next one
                                 **({"modes": record["modes_covered"]} if "modes_covered" in record else {})}
                        bar.set_postfix(loss=f"{record['loss']:.3g}", **shown)
                        if self.refit is not None and self.iteration < self.iterations:
                            self._refit(started, bar)
                    elif self.iteration % 100 == 0 and self.pending_losses:
                        recent = self.pending_losses[-100:]
                        bar.set_postfix(loss=f"{sum(recent) / len(recent):.3g}", **shown, refresh=False)
                    if (self.checkpoint_every and self.iteration % self.checkpoint_every == 0
                            and self.consecutive_skips == 0):
                        self.save_checkpoint()
                    signum = self._stop_signal(stop)
                    if signum is not None:
                        if self._checkpoint is None or self._checkpoint[0] != self.iteration:
                            self.save_checkpoint()
                        raise TrainingInterrupted(signum, self.iteration, self._checkpoint[1], self.run_dir)
                if self._checkpoint is None or self._checkpoint[0] != self.iteration:
                    self.save_checkpoint()
        finally:
            bar.close()
        if not self.main_process:
            return {"iteration": self.iteration}
        if record is None:  # resumed a run that had already finished
            last = self.records[-1] if self.records else None
            record = last if last is not None and last["iteration"] == self.iteration else self._evaluate()
        self._plot()
        return dict(record, total_seconds=self.seconds)

    def _plot(self) -> None:
        samples = self.evaluator.samples(self.sampling_generator)
        plot_samples(self.run_dir / "samples.png", self.evaluator.target, samples, reference=self.evaluator.reference)
        plot_metrics(self.run_dir / "metrics.png", self.records, references=self.evaluator.reference_metrics)
