"""Distil a teacher into a one-step generator:  ``python -m vardiu_pyro.fit [overrides]``.

With no arguments: the exact MoG-40 teacher, VarDiU with the diagonal-Gaussian guide, on the
CPU (or CUDA when available). Every option is a Hydra override (see ``configs/`` and the
README); the run directory holds ``metrics.jsonl``, ``summary.json``, ``samples.png``,
``metrics.png`` and ``checkpoint.safetensors``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
import pyro
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .build import build_objective, build_problem, resolve_device
from .distributed import DataParallel, secondary_rank_overrides, torchrun_world_size
from .evaluation import Evaluator
from .training import Trainer

__all__ = ["main", "fit"]


def fit(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as configured, write the run's files into ``run_dir``, return the summary.

    With ``trainer.distributed=true`` (under torchrun) every rank trains, rank 0's ``run_dir`` is
    used, only rank 0 writes, and every rank returns rank 0's summary.
    """
    distributed = bool(cfg.trainer.get("distributed", False))
    if not distributed and torchrun_world_size() > 1:
        raise ValueError(f"launched by torchrun with WORLD_SIZE={torchrun_world_size()} but trainer.distributed=false: "
                         "every process would train its own copy; add trainer.distributed=true")
    if not distributed:
        return _fit(cfg, Path(run_dir), parallel=None)
    parallel = DataParallel.start(resolve_device(cfg.device))  # joins the process group of the torchrun launch
    try:
        return _fit(cfg, Path(parallel.broadcast_object(str(run_dir))), parallel)
    finally:
        parallel.close()


def _fit(cfg: DictConfig, run_dir: Path, parallel: DataParallel | None) -> dict:
    main_process = parallel is None or parallel.is_main
    if main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device) if parallel is None else parallel.device
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    pyro.enable_validation(bool(cfg.trainer.pyro_validation))
    pyro.set_rng_seed(int(cfg.seed))
    config = OmegaConf.to_container(cfg, resolve=True)

    problem = build_problem(cfg, device)
    objective = build_objective(cfg, problem)
    if parallel is not None:  # identical networks, averaged gradients, this rank's own noise
        parallel.prepare(objective, int(cfg.seed))
    evaluator = Evaluator(problem.target, num_samples=cfg.trainer.eval_samples,
                          bandwidths=list(cfg.trainer.mmd_bandwidths)) if main_process else None
    trainer = Trainer(objective, evaluator, run_dir, iterations=cfg.trainer.iterations,
                      eval_every=cfg.trainer.eval_every, ema_decay=cfg.trainer.ema_decay,
                      checkpoint_every=cfg.trainer.checkpoint_every, progress=cfg.trainer.progress, config=config,
                      main_process=main_process)
    final = trainer.fit()
    summary = None
    if main_process:
        summary = dict(final, device=str(device), reference=evaluator.reference_metrics, config=config)
        if parallel is not None:
            summary["world_size"] = parallel.world_size
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        print(format_summary(summary, run_dir))
    return summary if parallel is None else parallel.broadcast_object(summary)


def format_summary(summary: dict, run_dir: Path) -> str:
    ref = summary.get("reference", {})
    lines = [f"\nvardiu-pyro: {summary['iteration']} iterations in {summary['total_seconds']:.0f} s on {summary['device']}",
             f"  log-MMD        {summary['log_mmd']:8.3f}   (two independent target sample sets: about -8.7)"]
    if "log_density" in summary:
        lines.append(f"  log-density    {summary['log_density']:8.3f}   (target samples: {ref.get('log_density', float('nan')):.3f})")
    if "modes_covered" in summary:
        lines.append(f"  modes covered  {summary['modes_covered']:8d}   (of {ref.get('modes_covered', '?')})")
    lines.append(f"  run directory  {run_dir}  (summary.json, metrics.jsonl, samples.png, metrics.png, checkpoint.safetensors)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="pkg://vardiu_pyro.configs", config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    if cfg.trainer.get("distributed", False) and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ValueError("trainer.distributed=true is one run over the processes of a torchrun launch; "
                         "sweep (-m) without torchrun, with one launcher job per run")
    summary = fit(cfg, HydraConfig.get().runtime.output_dir)
    return summary["log_mmd"]


def main() -> None:
    """``python -m vardiu_pyro.fit [overrides]`` (under torchrun, ranks > 0 write nothing)."""
    if torchrun_world_size() > 1 and {"-m", "--multirun"} & set(sys.argv[1:]):
        sys.exit("vardiu_pyro.fit: a torchrun launch is one data-parallel run; sweep (-m) without torchrun")
    sys.argv.extend(secondary_rank_overrides())
    _hydra_main()


if __name__ == "__main__":
    main()
