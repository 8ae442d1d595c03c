"""Distil a teacher into a one-step generator:  ``python -m vardiu_pyro.fit [overrides]``.

With no arguments: the exact MoG-40 teacher, VarDiU with the diagonal-Gaussian guide, on the
CPU (or CUDA when available). Every option is a Hydra override (see ``configs/`` and the
README); the run directory holds ``metrics.jsonl``, ``summary.json``, ``samples.png``,
``metrics.png`` and ``checkpoint.safetensors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub: set before diffusers is imported

import hydra  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from .bound_gap import bound_gap_summary  # noqa: E402
from .build import build_objective, build_problem, resolve_device  # noqa: E402
from .evaluation import Evaluator  # noqa: E402
from .teacher_metrics import evaluate_teacher  # noqa: E402
from .training import Trainer  # noqa: E402

__all__ = ["main", "fit"]


def fit(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as configured, write the run's files into ``run_dir``, return the summary."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    pyro.enable_validation(bool(cfg.trainer.pyro_validation))
    pyro.set_rng_seed(int(cfg.seed))
    config = OmegaConf.to_container(cfg, resolve=True)

    problem = build_problem(cfg, device)
    objective = build_objective(cfg, problem)
    evaluator = Evaluator(problem.target, num_samples=cfg.trainer.eval_samples,
                          bandwidths=list(cfg.trainer.mmd_bandwidths))
    trainer = Trainer(objective, evaluator, run_dir, iterations=cfg.trainer.iterations,
                      eval_every=cfg.trainer.eval_every, ema_decay=cfg.trainer.ema_decay,
                      checkpoint_every=cfg.trainer.checkpoint_every, progress=cfg.trainer.progress, config=config)
    final = trainer.fit()
    summary = dict(final, device=str(device), reference=evaluator.reference_metrics, config=config)
    summary.update(bound_gap_summary(objective, problem, iteration=trainer.iteration))  # 2-D targets with a guide
    if hasattr(problem.teacher, "sample"):  # a teacher that is not the target: its own quality is the ceiling
        summary["teacher"] = evaluate_teacher(problem.teacher, evaluator)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(format_summary(summary, run_dir))
    return summary


def format_summary(summary: dict, run_dir: Path) -> str:
    ref = summary.get("reference", {})
    lines = [f"\nvardiu-pyro: {summary['iteration']} iterations in {summary['total_seconds']:.0f} s on {summary['device']}",
             f"  log-MMD        {summary['log_mmd']:8.3f}   (two independent target sample sets: about -8.7)"]
    if "log_density" in summary:
        lines.append(f"  log-density    {summary['log_density']:8.3f}   (target samples: {ref.get('log_density', float('nan')):.3f})")
    if "modes_covered" in summary:
        lines.append(f"  modes covered  {summary['modes_covered']:8d}   (of {ref.get('modes_covered', '?')})")
    if "bound_gap" in summary:
        lines.append(f"  bound gap      {summary['bound_gap']:8.3f}   (± {summary['bound_gap_se']:.3f}; E w(σ) (U - KL), 0 for the exact posterior)")
    if "teacher" in summary:
        teacher = summary["teacher"]
        how = f" ({teacher['solver']}, {teacher['nfe']} function evaluations)" if "nfe" in teacher else ""
        lines.append(f"  teacher log-MMD {teacher['log_mmd']:7.3f}   (the teacher's own samples{how})")
    lines.append(f"  run directory  {run_dir}  (summary.json, metrics.jsonl, samples.png, metrics.png, checkpoint.safetensors)")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="pkg://vardiu_pyro.configs", config_name="config")
def main(cfg: DictConfig) -> float:
    summary = fit(cfg, HydraConfig.get().runtime.output_dir)
    return summary["log_mmd"]


if __name__ == "__main__":
    main()
