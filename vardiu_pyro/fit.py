"""Distil a teacher into a one-step generator:  ``python -m vardiu_pyro.fit [overrides]``.

With no arguments: the exact MoG-40 teacher, VarDiU with the diagonal-Gaussian guide, on the
CPU (or CUDA when available). Every option is a Hydra override (see ``configs/`` and the
README); the run directory holds ``metrics.jsonl``, ``summary.json``, ``samples.png``,
``metrics.png`` and ``checkpoint.safetensors`` (and ``checkpoint.prev.safetensors``).

``trainer.iterations=auto`` (the default) sizes the run to ``trainer.time_budget`` seconds on this
machine (see ``vardiu_pyro.budget``). ``trainer.resume=RUN_DIR`` continues an interrupted run in
RUN_DIR, exactly, with that run's own configuration. Invalid settings are rejected before any
work with one line and exit status 2; SIGINT/SIGTERM checkpoint and exit with 130/143 and the
command that resumes.
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub: set before diffusers is imported

import hydra  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from .bound_gap import bound_gap_summary  # noqa: E402
from .budget import BudgetRefit, fit_to_budget  # noqa: E402
from .build import build_objective, build_problem, hidden_dtype_of, resolve_device  # noqa: E402
from .code_version import code_version  # noqa: E402
from .compiled import CompileError  # noqa: E402
from .distributed import DataParallel, secondary_rank_overrides, torchrun_world_size  # noqa: E402
from .evaluation import Evaluator, metric_lines  # noqa: E402
from .host_memory import retain_freed_memory  # noqa: E402
from .nn import precision_name  # noqa: E402
from .teacher_metrics import evaluate_teacher  # noqa: E402
from .interrupt import TrainingInterrupted  # noqa: E402
from .resume import CHECKPOINT, check_compatible, load_resume_state, resume_command, resumed_config  # noqa: E402
from .sweep import record_exit, record_resumed  # noqa: E402
from .training import TooManySkippedSteps, Trainer  # noqa: E402
from .validation import (ConfigError, check_command_line, exit_with_message, unused_overrides,  # noqa: E402
                         validate_config, validate_problem)

__all__ = ["main", "fit"]


def fit(cfg: DictConfig, run_dir: str | Path | None = None) -> dict:
    """Train as configured, write the run's files into ``run_dir``, return the summary.

    With ``trainer.distributed=true`` (under torchrun) every rank trains, rank 0's ``run_dir`` is
    used, only rank 0 writes, and every rank returns rank 0's summary.

    With ``cfg.trainer.resume`` set, the run continues in that directory (``run_dir`` may then be
    omitted) from its newest usable checkpoint; ``cfg`` must be the run's own configuration up to
    the keys in ``vardiu_pyro.resume.RESUMABLE_KEYS``. Raises ``ConfigError`` (a ``ValueError``)
    on invalid settings, before any work.
    """
    distributed = bool(cfg.trainer.get("distributed", False))
    if not distributed and torchrun_world_size() > 1:
        raise ConfigError(f"launched by torchrun with WORLD_SIZE={torchrun_world_size()} but trainer.distributed=false: "
                          "every process would train its own copy; add trainer.distributed=true")
    if not distributed:
        return _fit(cfg, run_dir, parallel=None)
    parallel = DataParallel.start(resolve_device(cfg.device))  # joins the process group of the torchrun launch
    try:
        return _fit(cfg, parallel.broadcast_object(None if run_dir is None else str(run_dir)), parallel)
    finally:
        parallel.close()


def _fit(cfg: DictConfig, run_dir: str | Path | None, parallel: DataParallel | None) -> dict:
    started = time.perf_counter()
    if not cfg.trainer.resume and run_dir is not None and (parallel is None or parallel.is_main):
        # another run's result in this directory (a sweep directory used again): gone, whatever becomes of this run
        (Path(run_dir) / "summary.json").unlink(missing_ok=True)
    validate_config(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    state = None
    if cfg.trainer.resume:
        resume_dir = Path(cfg.trainer.resume)
        if run_dir is not None and Path(run_dir).resolve() != resume_dir.resolve():
            raise ConfigError(f"trainer.resume={resume_dir}: a resumed run continues in its own directory, "
                              f"not in {run_dir}")
        state = load_resume_state(resume_dir)
        check_compatible(json.loads(state["config"]), config, resume_dir)
        processes = len(state.get("rank_rng") or [None])  # a data-parallel run keeps every rank's random state
        if parallel is not None and processes != parallel.world_size:
            raise ConfigError(f"trainer.resume={resume_dir}: that run had {processes} processes, this launch has "
                              f"{parallel.world_size}; resume it with torchrun --nproc_per_node={processes} "
                              "(each process continues its own noise)")
        run_dir = resume_dir
    if run_dir is None:
        raise ValueError("fit() needs a run directory (or trainer.resume)")
    run_dir = Path(run_dir)
    main_process = parallel is None or parallel.is_main
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device) if parallel is None else parallel.device
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    if cfg.trainer.get("retain_freed_memory", False):  # before the budget's measurement: it times the steps the run takes
        retain_freed_memory()
    pyro.enable_validation(bool(cfg.trainer.pyro_validation))
    calibration = None
    if cfg.trainer.iterations == "auto":  # a fresh run sized to trainer.time_budget (a resumed one has its number)
        cfg = copy.deepcopy(cfg)  # the caller's configuration stays as given
        calibration = fit_to_budget(cfg, device)
        config = OmegaConf.to_container(cfg, resolve=True)
        if main_process:
            print(budget_line(calibration.as_dict()), flush=True)
    pyro.set_rng_seed(int(cfg.seed))

    problem = build_problem(cfg, device)
    validate_problem(problem)
    objective = build_objective(cfg, problem)
    if parallel is not None:  # identical networks, averaged gradients, this rank's own noise
        parallel.prepare(objective, int(cfg.seed))
    evaluator = Evaluator(problem.target, num_samples=cfg.trainer.eval_samples,
                          bandwidths=list(cfg.trainer.mmd_bandwidths)) if main_process else None
    refit = None if calibration is None else BudgetRefit(calibration.time_budget, calibration.eval_seconds)
    trainer = Trainer(objective, evaluator, run_dir, iterations=cfg.trainer.iterations,
                      eval_every=cfg.trainer.eval_every, ema_decay=cfg.trainer.ema_decay,
                      checkpoint_every=cfg.trainer.checkpoint_every,
                      max_consecutive_skips=cfg.trainer.max_consecutive_skips,
                      progress=cfg.trainer.progress, config=config, parallel=parallel,
                      elapsed=time.perf_counter() - started if calibration is not None else 0.0,
                      schedule_length=config["trainer"].get("schedule_iterations"),  # absent from runs saved before
                      refits=config["trainer"].get("refits"), refit=refit,              # 2026-12-05
                      calibration=None if calibration is None else calibration.as_dict())
    if state is not None:
        trainer.load_state_dict(state)
    final = trainer.fit()
    summary = None
    if main_process:
        summary = dict(final, device=str(device), hidden_precision=precision_name(hidden_dtype_of(cfg, device)),
                       reference=evaluator.reference_metrics, config=trainer.config)  # hidden_precision: what precision=auto chose
        summary["code"] = code_version()  # which code produced it (a report reading runs back names it)
        if trainer.calibration is not None:  # this session's, or a resumed run's from its checkpoint
            summary["calibration"] = trainer.calibration
        if parallel is not None:
            summary["world_size"] = parallel.world_size
        summary.update(bound_gap_summary(objective, problem, iteration=trainer.position))  # 2-D, with a guide
        if hasattr(problem.teacher, "sample"):  # a teacher that is not the target: its own quality is the ceiling
            summary["teacher"] = evaluate_teacher(problem.teacher, evaluator)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(format_summary(summary, run_dir))
    return summary if parallel is None else parallel.broadcast_object(summary)


def budget_line(c: dict) -> str:
    """What ``trainer.iterations=auto`` measured and chose at the start (``Calibration.as_dict()``), in one line."""
    return (f"  time budget    {c['time_budget']:8.0f} s (trainer.time_budget): {c['iterations']} iterations fitted, "
            f"measuring {1000 * c['step_seconds']:.2f} ms a step and {c['eval_seconds']:.2f} s an evaluation")


def repeat_overrides(trainer_config: dict) -> str:
    """The overrides that repeat a finished run's count and schedules exactly (``vardiu_pyro.schedule_clock``)."""
    refits = trainer_config.get("refits") or []
    words = [f"trainer.iterations={trainer_config['iterations']}"]
    if refits:
        knots = ",".join(f"[{at},{count}]" for at, count in refits)
        words += [f"trainer.schedule_iterations={trainer_config['schedule_iterations']}", f"'trainer.refits=[{knots}]'"]
    return " ".join(words)


def format_summary(summary: dict, run_dir: Path) -> str:
    lines = [f"\nvardiu-pyro: {summary['iteration']} iterations in {summary['total_seconds']:.0f} s on {summary['device']}"
             f" ({summary.get('hidden_precision', 'float32')} hidden products)",
             *metric_lines(summary)]
    if "calibration" in summary:
        refits = summary["config"]["trainer"].get("refits") or []
        lines += [budget_line(summary["calibration"]),
                  f"  re-fitted      {len(refits):8d} times to the pace of the run; "
                  f"{repeat_overrides(summary['config']['trainer'])} repeats it"]
    if "bound_gap" in summary:
        lines.append(f"  bound gap      {summary['bound_gap']:8.3f}   (± {summary['bound_gap_se']:.3f}, lower estimate "
                     f"{summary['bound_gap_lower']:.3f}; E w(σ) (U - KL), 0 for the exact posterior; the two estimates "
                     "bracket it, a wide bracket means too few importance draws)")
    if "teacher" in summary:
        teacher = summary["teacher"]
        how = f" ({teacher['solver']}, {teacher['nfe']} function evaluations)" if "nfe" in teacher else ""
        lines.append(f"  teacher log-MMD {teacher['log_mmd']:7.3f}   (the teacher's own samples{how})")
    if summary.get("skipped_steps"):
        lines.append(f"  skipped steps  {summary['skipped_steps']:8d}   (non-finite loss or gradient; nothing stepped)")
    lines.append(f"  run directory  {run_dir}  (summary.json, metrics.jsonl, samples.png, metrics.png, checkpoint.safetensors)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="pkg://vardiu_pyro.configs", config_name="config")
def hydra_main(cfg: DictConfig) -> float:
    """One run (or one job of a multirun): resume or start, report failures without a traceback.

    A run's failure is one line and an exit status (2: bad configuration, 1: too many skipped steps). A job of a
    sweep that fails raises instead, so that Hydra records it (``job.json``: ``failed``, with the traceback) and
    runs the other jobs. An interruption stops the run, or the whole sweep, after its checkpoint (``interrupted``);
    Ctrl-C outside the training loop stops it where it is, with one line saying whether there is a checkpoint to
    resume from.
    """
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    if cfg.trainer.get("distributed", False) and multirun:
        exit_with_message("error: trainer.distributed=true is one run over the processes of a torchrun launch; "
                          "sweep (-m) without torchrun, with one launcher job per run", 2)
    unused = unused_overrides(cfg, HydraConfig.get().overrides.task)
    if unused:
        print(f"vardiu-pyro: note: {' '.join(unused)} changes nothing: {cfg.objective._target_.rsplit('.', 1)[-1]} "
              "trains no guide (its fake score takes the guide's place)", file=sys.stderr)
    try:
        if cfg.trainer.resume:
            cfg = resumed_config(cfg, HydraConfig.get().overrides.task)
            summary = fit(cfg)
            record_resumed(cfg.trainer.resume)  # the run's own job.json (and its sweep's index): completed
        else:
            summary = fit(cfg, HydraConfig.get().runtime.output_dir)
    except (ConfigError, CompileError, TooManySkippedSteps) as e:
        if multirun:
            raise
        record_exit("failed", e)
        exit_with_message(f"error: {e}", 2 if isinstance(e, (ConfigError, CompileError)) else 1)
    except TrainingInterrupted as e:
        record_exit("interrupted", e)
        exit_with_message(str(e), e.exit_code)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (the budget's measurement, building, the final plots)
        run_dir = Path(cfg.trainer.resume or HydraConfig.get().runtime.output_dir)
        message = (f"interrupted; the run's checkpoint is in {run_dir}. Resume with:\n    {resume_command(run_dir)}"
                   if (run_dir / CHECKPOINT).exists() else "interrupted before the run's first checkpoint: nothing to "
                   "resume (run the command again)")
        record_exit("interrupted", KeyboardInterrupt(message))
        exit_with_message(message, 130)
    return summary["log_mmd"]


def main() -> None:
    """The command line: check it first (one-line errors, exit status 2), then let Hydra run it."""
    try:
        check_command_line(sys.argv[1:])
    except ConfigError as e:
        exit_with_message(f"error: {e}", 2)
    if torchrun_world_size() > 1 and {"-m", "--multirun"} & set(sys.argv[1:]):
        exit_with_message("error: a torchrun launch is one data-parallel run; sweep (-m) without torchrun", 2)
    sys.argv.extend(secondary_rank_overrides())
    hydra_main()


if __name__ == "__main__":
    main()
