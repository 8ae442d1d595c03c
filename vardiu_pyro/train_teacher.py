"""Train a learned teacher:  ``python -m vardiu_pyro.train_teacher target=mog40 [overrides]``.

An EDM-preconditioned denoiser (``EDMDenoiser``) is fitted by denoising score matching to a fixed
set of target samples, with σ drawn log-uniformly over [σ_min, σ_max]. The run directory then holds
the teacher in diffusers format (``config.json``, ``diffusion_pytorch_model.safetensors``: pass the
directory as ``teacher.path`` to ``python -m vardiu_pyro.fit teacher=learned``) and

    metrics.jsonl     one line per evaluation: DSM loss, the teacher's many-step sample metrics
    summary.json      the final values, the score-error table, the resolved config
    samples.png       the teacher's many-step samples over the target density
    metrics.png       the metrics against wall-clock time
    score_error.md    relative error of the score against the exact score per σ (analytic targets),
    score_error.json  also as JSON and as a plot
    score_error.png
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub: set before diffusers is imported

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from .build import data_std_of, resolve_device  # noqa: E402
from .checkpoint import with_umask_permissions  # noqa: E402
from .code_version import code_version  # noqa: E402
from .evaluation import Evaluator, metric_lines  # noqa: E402
from .host_memory import retain_freed_memory  # noqa: E402
from .models.teachers import LearnedTeacher  # noqa: E402
from .plotting import plot_metrics, plot_samples, plot_score_error  # noqa: E402
from .score_matching import dsm_loss_terms  # noqa: E402
from .teacher_metrics import evaluate_teacher, score_error_markdown, score_error_table  # noqa: E402
from .validation import ConfigError, check_command_line, exit_with_message, validate_teacher_training  # noqa: E402

__all__ = ["main", "train_teacher", "save_denoiser"]

METRICS = "metrics.jsonl"


def save_denoiser(denoiser, run_dir: Path) -> None:
    """``save_pretrained`` into ``run_dir``, each file replaced atomically (an interruption leaves the last good one)."""
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".denoiser-") as tmp:
        denoiser.save_pretrained(tmp, safe_serialization=True)
        for name in os.listdir(tmp):
            with_umask_permissions(os.path.join(tmp, name))  # readable like any other output file
            os.replace(os.path.join(tmp, name), run_dir / name)


def train_teacher(cfg: DictConfig, run_dir: str | Path) -> dict:
    """Train as configured, write the run's files into ``run_dir``, return the summary. An invalid setting raises
    ``ConfigError`` before any work (``validate_teacher_training``)."""
    validate_teacher_training(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    if cfg.trainer.get("retain_freed_memory", False):
        retain_freed_memory()
    torch.manual_seed(int(cfg.seed))
    config = OmegaConf.to_container(cfg, resolve=True)

    target = instantiate(cfg.target).to(device)
    sigma_data = cfg.denoiser.sigma_data if cfg.denoiser.sigma_data is not None else data_std_of(target)
    noise = instantiate(cfg.noise).to(device)
    denoiser = instantiate(cfg.denoiser, _partial_=True)(  # called, not merged: config.json needs plain values
        data_shape=list(target.event_shape), sigma_data=float(sigma_data),
        sigma_min=noise.sigma_min, sigma_max=noise.sigma_max).to(device)
    optim = instantiate(cfg.optim, networks={"denoiser": denoiser})
    params = [p for p in denoiser.parameters() if p.requires_grad]
    ema = (AveragedModel(denoiser, multi_avg_fn=get_ema_multi_avg_fn(cfg.trainer.ema_decay), use_buffers=True)
           if cfg.trainer.ema_decay > 0 else None)
    sampler = OmegaConf.to_container(cfg.sampler, resolve=True)
    trained = (lambda: ema.module) if ema is not None else (lambda: denoiser)

    def snapshot() -> LearnedTeacher:  # a frozen copy: the teacher as it is now, training untouched
        return LearnedTeacher(copy.deepcopy(trained()), target=target, sampler=sampler)

    data = target.sample(int(cfg.data.num_samples)).to(device)

    evaluator = Evaluator(target, num_samples=cfg.trainer.eval_samples, bandwidths=list(cfg.trainer.mmd_bandwidths))
    records: list[dict] = []
    (run_dir / METRICS).unlink(missing_ok=True)

    def evaluate(iteration: int, losses: list[float], start: float) -> dict:
        save_denoiser(trained(), run_dir)  # first: the teacher is kept whatever its evaluation does
        record = {"iteration": iteration, "loss": sum(losses) / len(losses) if losses else math.nan}
        record.update(evaluate_teacher(snapshot(), evaluator))
        record["seconds"] = time.perf_counter() - start
        records.append(record)
        with open(run_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    iterations, batch_size = int(cfg.trainer.iterations), int(cfg.trainer.batch_size)
    start, losses, record = time.perf_counter(), [], None
    bar = tqdm(range(iterations), disable=not cfg.trainer.progress, desc="training teacher", dynamic_ncols=True,
               mininterval=0.5)
    for iteration in bar:
        x0 = data[torch.randint(len(data), (batch_size,), device=device)]
        sigma = noise.distribution(iteration).sample((batch_size,))
        x_t = x0 + sigma.view(-1, *([1] * (x0.dim() - 1))) * torch.randn_like(x0)
        loss = dsm_loss_terms(denoiser, x0, x_t, sigma).mean()
        loss.backward()
        optim(params)
        if ema is not None:
            ema.update_parameters(denoiser)
        losses.append(loss.item())
        done = iteration + 1
        if done % cfg.trainer.eval_every == 0 or done == iterations:
            record = evaluate(done, losses, start)
            losses = []
            bar.set_postfix(loss=f"{record['loss']:.3g}", log_mmd=f"{record['log_mmd']:.2f}")
        elif done % 100 == 0:
            bar.set_postfix(loss=f"{sum(losses[-100:]) / len(losses[-100:]):.3g}", refresh=False)
    bar.close()
    if record is None:
        record = evaluate(iterations, losses, start)

    teacher = snapshot()
    summary = dict(record, total_seconds=time.perf_counter() - start, device=str(device),
                   reference=evaluator.reference_metrics, config=config, code=code_version())
    if hasattr(target, "score"):
        rows = score_error_table(teacher, target, list(cfg.score_error.sigmas), int(cfg.score_error.num_samples))
        summary["score_error"] = rows
        (run_dir / "score_error.json").write_text(json.dumps(rows, indent=2))
        (run_dir / "score_error.md").write_text(score_error_markdown(rows))
        plot_score_error(run_dir / "score_error.png", rows)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    samples = teacher.sample(evaluator.num_samples, generator=torch.Generator(device=device).manual_seed(0))
    title = f"teacher ({sampler['solver']}, {sampler['num_steps']} steps)"
    plot_samples(run_dir / "samples.png", target, samples, reference=evaluator.reference, title=title)
    plot_metrics(run_dir / "metrics.png", records, keys=("loss", "log_mmd", "log_density", "modes_covered"),
                 references=evaluator.reference_metrics)
    print(format_summary(summary, run_dir))
    return summary


def format_summary(summary: dict, run_dir: Path) -> str:
    lines = [f"\nteacher: {summary['iteration']} iterations in {summary['total_seconds']:.0f} s on {summary['device']}",
             f"  samples ({summary.get('solver')}, {summary.get('nfe')} function evaluations)",
             *metric_lines(summary)]
    if "score_error" in summary:
        errors = "  ".join(f"{r['sigma']:g}: {r['relative_error']:.2f}" for r in summary["score_error"])
        lines.append(f"  score relative error per σ   {errors}")
    lines.append(f"  run directory  {run_dir}  (the teacher: teacher=learned teacher.path={run_dir})")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path="pkg://vardiu_pyro.configs", config_name="train_teacher")
def hydra_main(cfg: DictConfig) -> float:
    summary = train_teacher(cfg, HydraConfig.get().runtime.output_dir)
    return summary["log_mmd"]


def main() -> None:
    """The command line: check it first (one-line errors, exit status 2), then let Hydra run it."""
    try:
        check_command_line(sys.argv[1:], config_name="train_teacher", validate=validate_teacher_training)
    except ConfigError as e:
        exit_with_message(f"error: {e}", 2)
    hydra_main()


if __name__ == "__main__":
    main()
