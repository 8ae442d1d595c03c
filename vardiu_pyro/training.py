"""The training loop: generic over objectives (it only calls ``objective.step``)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .checkpoint import save_checkpoint
from .evaluation import Evaluator
from .objectives import Objective
from .plotting import plot_metrics, plot_samples

__all__ = ["Trainer"]

CHECKPOINT = "checkpoint.safetensors"
METRICS = "metrics.jsonl"


class Trainer:
    """Runs ``iterations`` steps of an objective, evaluating and checkpointing as it goes.

    Evaluations (every ``eval_every`` iterations and at the end) use the exponential moving
    average of the generator's weights when ``ema_decay > 0`` (else the generator itself); each
    one appends a line to ``metrics.jsonl``.

    ``main_process=False`` (ranks > 0 of a data-parallel run) only steps the objective: no
    evaluation, files or progress bar (``evaluator`` may then be None); ``fit`` returns
    ``{"iteration": ...}``.
    """

    def __init__(self, objective: Objective, evaluator: Evaluator | None, run_dir: str | Path, iterations: int,
                 eval_every: int = 5000, ema_decay: float = 0.0, checkpoint_every: int = 0,
                 progress: bool = True, config: dict | None = None, main_process: bool = True):
        self.objective, self.evaluator = objective, evaluator
        self.run_dir = Path(run_dir)
        self.iterations, self.eval_every = int(iterations), int(eval_every)
        self.checkpoint_every, self.config = int(checkpoint_every), config
        self.main_process = bool(main_process)
        self.progress = progress and self.main_process
        ema_decay = ema_decay if self.main_process else 0.0
        generator = objective.generator
        self.ema = (AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
                    if ema_decay > 0 else None)
        self.iteration = 0
        self.records: list[dict] = []

    @property
    def sampling_generator(self) -> torch.nn.Module:
        """The generator used for evaluation and samples: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.objective.generator

    def state_dict(self) -> dict:
        return {"iteration": self.iteration, "objective": self.objective.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "config": json.dumps(self.config) if self.config is not None else None}

    def save_checkpoint(self) -> Path:
        return save_checkpoint(self.run_dir / CHECKPOINT, self.state_dict())

    def _evaluate(self, start: float, train_seconds: float, losses: list[float]) -> dict:
        record = {"iteration": self.iteration, "seconds": time.perf_counter() - start,
                  "train_seconds": train_seconds,
                  "loss": sum(losses) / len(losses) if losses else math.nan}
        record.update(self.evaluator(self.sampling_generator))
        record["seconds"] = time.perf_counter() - start  # wall clock, evaluation included
        self.records.append(record)
        with open(self.run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def fit(self) -> dict:
        """Train to ``iterations``; return the final record (with total seconds)."""
        if not self.main_process:
            return self._step_only()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start, train_seconds, losses = time.perf_counter(), 0.0, []
        bar = tqdm(total=self.iterations, initial=self.iteration, disable=not self.progress,
                   desc="distilling", dynamic_ncols=True, mininterval=0.5)
        record = None
        while self.iteration < self.iterations:
            tick = time.perf_counter()
            stats = self.objective.step(self.iteration)
            if self.ema is not None:
                self.ema.update_parameters(self.objective.generator)
            train_seconds += time.perf_counter() - tick
            self.iteration += 1
            losses.append(stats["loss"])
            bar.update(1)
            if self.iteration % self.eval_every == 0 or self.iteration == self.iterations:
                record = self._evaluate(start, train_seconds, losses)
                losses = []
                bar.set_postfix(loss=f"{record['loss']:.3g}", log_mmd=f"{record['log_mmd']:.2f}",
                                **({"modes": record["modes_covered"]} if "modes_covered" in record else {}))
            elif self.iteration % 100 == 0:
                bar.set_postfix(loss=f"{sum(losses[-100:]) / len(losses[-100:]):.3g}", refresh=False)
            if self.checkpoint_every and self.iteration % self.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        if record is None:  # resumed a finished run
            record = self._evaluate(start, train_seconds, losses)
        self._plot()
        return dict(record, total_seconds=time.perf_counter() - start)

    def _step_only(self) -> dict:
        while self.iteration < self.iterations:
            self.objective.step(self.iteration)
            self.iteration += 1
        return {"iteration": self.iteration}

    def _plot(self) -> None:
        samples = self.evaluator.samples(self.sampling_generator)
        plot_samples(self.run_dir / "samples.png", self.evaluator.target, samples, reference=self.evaluator.reference)
        plot_metrics(self.run_dir / "metrics.png", self.records, references=self.evaluator.reference_metrics)
