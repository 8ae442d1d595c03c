"""Gradient-estimator analysis:  ``python -m vardiu_pyro.variance [checkpoint=RUN_DIR] [overrides]``.

At a fixed generator (a fit run's checkpoint, or, with no checkpoint, the configured run trained
briefly first), compares each estimator's gradient with respect to the generator's parameters
with a reference gradient of the diffusive KL D(θ) = E_π w(σ) KL(p_θ^σ || p_d^σ)
(``vardiu_pyro.reference_gradient``): R independent estimates per estimator and batch size give
bias, variance, MSE, SNR and cosine to the reference, with bootstrap intervals
(``vardiu_pyro.gradient_stats``); at one batch size, also per σ bin; for VarDiU, the bound gap
beside the bias. Estimators are names (``configs/variance.yaml``): ``vardiu_<guide family>`` and
``diff_instruct_k<K>`` (``vardiu_pyro.gradient_estimators``).

The run directory gets ``gradient_stats.csv``, ``gradient_stats.md`` (also printed),
``reference.json``, ``variance_vs_batch.png``, ``bias_mse.png`` and ``per_sigma.png``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from importlib.resources import files
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the Hub: set before diffusers is imported

import hydra  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from .build import build_problem, data_std_of, resolve_device  # noqa: E402
from .checkpoint import CheckpointError  # noqa: E402
from .fit import fit  # noqa: E402
from .gradient_estimators import (DiffInstructEstimator, GradientEstimator, VarDiUEstimator,  # noqa: E402
                                  estimator_kind)
from .gradient_plots import plot_bias_and_mse, plot_per_sigma, plot_variance_vs_batch  # noqa: E402
from .gradient_stats import STATISTICS, StreamingMoments, gradient_statistics, moment_statistics  # noqa: E402
from .interrupt import TrainingInterrupted  # noqa: E402
from .reference_gradient import ReferenceGradient, SelfNormalisedScore, reference_gradient  # noqa: E402
from .resume import load_run_checkpoint, path_command, resume_command  # noqa: E402
from .schedule_clock import schedule_position  # noqa: E402
from .validation import ConfigError, check_command_line, exit_with_message  # noqa: E402

__all__ = ["variance_study", "main", "FIT_KEYS"]

FIT_KEYS = ("teacher", "generator", "guide", "objective", "sigma", "optim", "trainer", "target", "seed", "device")
CONFIGS = files("vardiu_pyro.configs")


# ---------------------------------------------------------------------------------------------
# checks


def guide_families() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in CONFIGS.joinpath("guide").iterdir() if p.name.endswith(".yaml"))


def validate_study(cfg: DictConfig) -> None:
    """One-line ``ConfigError`` for a bad study setting, before any work."""
    for key in ("estimators", "batch_sizes"):
        if cfg[key] is not None and not OmegaConf.is_list(cfg[key]):
            raise ConfigError(f"{key}={cfg[key]}: must be a list, e.g. {key}='[{cfg[key]}]'")
    threads = cfg.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"threads={threads}: must be an integer >= 1, or null (torch's default)")
    names = list(cfg.estimators or [])
    if not names:
        raise ConfigError("estimators=[]: name at least one estimator (vardiu_<guide family>, diff_instruct_k<K>)")
    for name in names:
        try:
            kind, arg = estimator_kind(str(name))
        except ValueError as e:
            raise ConfigError(f"estimators: {e}") from None
        if kind == "vardiu" and arg not in guide_families():
            raise ConfigError(f"estimators: {name}: no guide family {arg!r} (choose one of: {', '.join(guide_families())})")
    if len(set(names)) != len(names):
        raise ConfigError(f"estimators={names}: a name appears twice")
    sizes = list(cfg.batch_sizes or [])
    if not sizes or any(not isinstance(b, int) or isinstance(b, bool) or b < 2 or b % 2 for b in sizes):
        raise ConfigError(f"batch_sizes={sizes}: must be a non-empty list of even integers >= 2 (antithetic pairs)")
    if cfg.per_sigma_batch_size is not None and cfg.per_sigma_batch_size not in sizes:
        raise ConfigError(f"per_sigma_batch_size={cfg.per_sigma_batch_size}: must be one of batch_sizes={sizes}")
    for key, minimum in (("repeats", 2), ("sigma_bins", 1), ("guide_steps", 0), ("fake_score.warmup_iterations", 0),
                         ("reference.num_samples", 2), ("reference.chunk", 1), ("reference.num_z", 2),
                         ("bound_gap.num_outer", 2), ("bound_gap.num_inner", 1), ("bootstrap.resamples", 10)):
        value = OmegaConf.select(cfg, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{key}={value}: must be an integer >= {minimum}")
    if cfg.reference.num_samples < 2 * cfg.reference.chunk:
        raise ConfigError(f"reference.num_samples={cfg.reference.num_samples}: must be at least 2 x reference.chunk "
                          f"({cfg.reference.chunk}): the reference's error comes from its chunk means")
    if not 0 < cfg.bootstrap.confidence < 1:
        raise ConfigError(f"bootstrap.confidence={cfg.bootstrap.confidence}: must be in (0, 1)")
    if cfg.checkpoint is not None and not Path(str(cfg.checkpoint)).is_dir():
        raise ConfigError(f"checkpoint={cfg.checkpoint}: no such directory (a fit run directory)")
    if cfg.iteration is not None and (not isinstance(cfg.iteration, int) or cfg.iteration < 0):
        raise ConfigError(f"iteration={cfg.iteration}: must be an integer >= 0 (or null: the checkpoint's)")


# ---------------------------------------------------------------------------------------------
# the analysed run


def load_run(run_dir: Path, device: torch.device, device_name: str):
    """(the run's configuration, its problem with the checkpoint's generator, the checkpoint's state)."""
    try:
        state, path = load_run_checkpoint(run_dir)
    except CheckpointError as e:
        raise ConfigError(f"checkpoint={run_dir}: {e}") from None
    if not isinstance(state.get("config"), str) or "objective" not in state:
        raise ConfigError(f"checkpoint={run_dir}: {path.name} was not written by vardiu_pyro.fit (no configuration)")
    run_cfg = OmegaConf.create(json.loads(state["config"]))
    run_cfg.device = device_name
    pyro.clear_param_store()
    problem = build_problem(run_cfg, device)
    problem.generator.load_state_dict(state["objective"]["networks"]["generator"])
    return run_cfg, problem, state


def _family_config(family: str) -> DictConfig:
    return OmegaConf.load(CONFIGS.joinpath("guide", f"{family}.yaml"))


def build_estimator(name: str, cfg: DictConfig, run_cfg: DictConfig, problem, state: dict,
                    iteration: float) -> GradientEstimator:
    """The estimator a name stands for, at the run's generator, with the run's trained guide or fake
    score when it has one of that kind (else a fresh one, trained at the generator in ``prepare``)."""
    kind, arg = estimator_kind(name)
    antithetic = bool(run_cfg.objective.get("antithetic", True))
    quasi_random = bool(run_cfg.objective.get("quasi_random", False))
    objective = str(run_cfg.objective._target_)
    networks = state["objective"]["networks"]
    gen = problem.generator
    if kind == "vardiu":
        # the bound the run trained (a Diff-Instruct run: VarDiU's configured one, configs/objective/vardiu.yaml)
        vardiu = run_cfg.objective if objective.endswith("VarDiU") else OmegaConf.load(CONFIGS.joinpath("objective",
                                                                                                        "vardiu.yaml"))
        family = _family_config(arg)
        trained = objective.endswith("VarDiU") and run_cfg.guide._target_ == family._target_ and "guide" in networks
        guide_cfg = run_cfg.guide if trained else family
        guide = instantiate(guide_cfg, _partial_=True)(latent_shape=tuple(gen.latent_shape),
                                                       data_shape=tuple(gen.data_shape),
                                                       data_std=data_std_of(problem.target))
        guide = guide.to(next(gen.parameters()).device)
        if trained:
            guide.load_state_dict(networks["guide"])
        return VarDiUEstimator(problem, guide, iteration, antithetic=antithetic,
                               guide_steps=0 if trained else cfg.guide_steps, name=name,
                               gap_draws=(cfg.bound_gap.num_outer, cfg.bound_gap.num_inner),
                               importance_samples=int(vardiu.get("importance_samples", 0)), quasi_random=quasi_random)
    trained = objective.endswith("DiffInstruct") and "fake_score" in networks
    source = run_cfg.objective.fake_score if trained else \
        OmegaConf.load(CONFIGS.joinpath("objective", "diff_instruct.yaml")).fake_score
    network_cfg = OmegaConf.merge(source, cfg.fake_score.network)
    warm = {"network": networks["fake_score"], "optim": state["objective"]["optim"]["fake_score"]} if trained else None
    return DiffInstructEstimator(problem, instantiate(network_cfg), inner_steps=arg, iteration=iteration,
                                 antithetic=antithetic, warmup_iterations=cfg.fake_score.warmup_iterations,
                                 state=warm, name=name, quasi_random=quasi_random,
                                 schedule_length=run_cfg.trainer.get("schedule_iterations") or run_cfg.trainer.iterations)


def run_position(run_cfg: DictConfig, iteration: int) -> float:
    """Where ``iteration`` lies on the run's schedules (``vardiu_pyro.schedule_clock``): the iteration itself, unless
    the run was sized to a time budget and re-fitted its count (then its schedules stretched or shrank)."""
    trainer = run_cfg.trainer
    refits = [list(knot) for knot in trainer.get("refits") or []]
    return schedule_position(iteration, int(trainer.iterations), trainer.get("schedule_iterations"), refits)


def check_estimators(cfg: DictConfig, objective: str) -> None:
    """What the estimators ask of the analysed run (``objective``: its ``_target_``), checked before the reference
    gradient and, without a checkpoint, before the run is trained."""
    di = [str(n) for n in cfg.estimators if estimator_kind(str(n))[0] == "diff_instruct"]
    if di and objective.endswith("DiffInstruct") and OmegaConf.to_container(cfg.fake_score.network):
        raise ConfigError(f"fake_score.network: the analysed Diff-Instruct run has a trained fake score, which "
                          f"{', '.join(di)} use{'s' * (len(di) == 1)}; its architecture is fixed (leave fake_score.network out)")


def check_latent(dim: int) -> None:
    if dim > 4:
        raise ConfigError(f"generator latent dimension {dim}: the Monte Carlo reference gradient (self-normalised "
                          "importance sampling over prior draws) needs a latent of dimension <= 4")


def ignored_with_checkpoint(cfg: DictConfig, overrides) -> list[str]:
    """Overrides of the run's groups given with ``checkpoint=``: the checkpoint's own configuration is analysed, so
    they would change nothing (``device`` and ``seed`` are the study's own)."""
    if cfg.checkpoint is None:
        return []
    keys = [(o, o.lstrip("+~").split("=", 1)[0].split(".", 1)[0]) for o in overrides]
    return [o for o, key in keys if key in FIT_KEYS and key not in ("device", "seed")]


# ---------------------------------------------------------------------------------------------
# the study


def sigma_edges(sigma_law, n: int, iteration: float) -> torch.Tensor:
    """``n`` bins spaced geometrically over the σ law's range at ``iteration``."""
    low, high = sigma_law.range_at(iteration)
    return torch.logspace(math.log10(low), math.log10(high), n + 1, dtype=torch.float64)


def measure(estimator: GradientEstimator, ref: ReferenceGradient, cfg: DictConfig, edges: torch.Tensor,
            per_sigma_batch: int, bar) -> list[dict]:
    """R estimates at each batch size: one overall row per batch size, plus one row per σ bin at ``per_sigma_batch``."""
    summary = estimator.summary(edges)
    gap_bins = summary.pop("bound_gap_bins", None)
    ref_norm = ref.mean.norm().item()
    rows = []
    for batch in cfg.batch_sizes:
        binned = batch == per_sigma_batch
        samples, moments = [], StreamingMoments()
        for _ in range(cfg.repeats):
            est = estimator.estimate(batch, edges if binned else None)
            samples.append(est.total.detach().cpu())
            if binned:
                moments.update(est.per_bin)
            bar.update()
        stats = gradient_statistics(torch.stack(samples), ref.mean, ref.variance, cfg.bootstrap.resamples,
                                    cfg.bootstrap.confidence, seed=cfg.seed, reference_inner_error=ref.inner_error)
        row = {"estimator": estimator.name, "batch_size": batch, "sigma_bin": "all", "sigma_lo": float(edges[0]),
               "sigma_hi": float(edges[-1]), "repeats": cfg.repeats, "ref_norm": ref_norm,
               "ref_bin_norm": ref_norm, "ref_se": ref.standard_error, "ref_inner_error": ref.inner_error}
        for name in STATISTICS:
            row.update({name: stats[name]["value"], f"{name}_lo": stats[name]["lo"], f"{name}_hi": stats[name]["hi"]})
        rows.append(dict(row, **summary))
        if binned:
            m = moment_statistics(moments.mean(), moments.variance_trace(), moments.count, ref.per_bin,
                                  ref.per_bin_variance, ref.per_bin_inner_error)
            for k in range(edges.numel() - 1):
                rows.append({"estimator": estimator.name, "batch_size": batch, "sigma_bin": str(k),
                             "sigma_lo": float(edges[k]), "sigma_hi": float(edges[k + 1]), "repeats": cfg.repeats,
                             "ref_norm": ref_norm, "ref_bin_norm": m["ref_norm"][k].item(),
                             "ref_se": ref.per_bin_variance[k].sqrt().item(),
                             "ref_inner_error": ref.per_bin_inner_error[k].item(),
                             **{key: m[key][k].item() for key in ("bias", "variance", "mse", "resolution")},
                             "bound_gap": gap_bins[k] if gap_bins is not None else None})
    return rows


def variance_study(cfg: DictConfig, run_dir: str | Path) -> list[dict]:
    """Run the study as configured, write its files into ``run_dir``, return the rows of ``gradient_stats.csv``."""
    validate_study(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    source = Path(str(cfg.checkpoint)) if cfg.checkpoint is not None else None
    if source is None:  # the configured run, trained briefly here
        check_estimators(cfg, str(cfg.objective._target_))
        check_latent(int(cfg.generator.get("latent_dim") or math.prod(instantiate(cfg.target).event_shape)))
        source = run_dir / "pretrain"
        fit_cfg = OmegaConf.masked_copy(cfg, list(FIT_KEYS))
        fit_cfg.trainer.progress = bool(cfg.progress)
        fit(fit_cfg, source)
    run_cfg, problem, state = load_run(source, device, str(cfg.device))
    check_estimators(cfg, str(run_cfg.objective._target_))
    iteration = int(state["iteration"] if cfg.iteration is None else cfg.iteration)
    position = run_position(run_cfg, iteration)  # the σ law, the weight and the learning rates go by it, as in training
    pyro.set_rng_seed(int(cfg.seed))
    gen = problem.generator
    check_latent(math.prod(gen.latent_shape))
    edges = sigma_edges(problem.sigma_law, cfg.sigma_bins, position)
    per_sigma_batch = cfg.per_sigma_batch_size or max(cfg.batch_sizes)

    ref = reference_gradient(gen, problem.teacher, SelfNormalisedScore(gen, cfg.reference.num_z), problem.sigma_law,
                             problem.weight, position, edges, cfg.reference.num_samples, cfg.reference.chunk,
                             progress=cfg.progress)
    reference = {"source": str(source), "iteration": iteration, "position": position, "parameters": ref.mean.numel(),
                 "norm": ref.mean.norm().item(), "standard_error": ref.standard_error,
                 "inner_error": ref.inner_error, "num_samples": ref.num_samples, "num_z": cfg.reference.num_z,
                 "sigma_edges": edges.tolist(), "ess_per_bin": ref.ess,
                 "per_bin_norm": ref.per_bin.norm(dim=-1).tolist(),
                 "per_bin_inner_error": ref.per_bin_inner_error.tolist()}
    (run_dir / "reference.json").write_text(json.dumps(reference, indent=2))

    rows = []
    for name in cfg.estimators:
        estimator = build_estimator(str(name), cfg, run_cfg, problem, state, position)
        estimator.prepare(progress=cfg.progress)
        with tqdm(total=cfg.repeats * len(cfg.batch_sizes), desc=str(name), disable=not cfg.progress) as bar:
            rows += measure(estimator, ref, cfg, edges, per_sigma_batch, bar)
        write_csv(rows, run_dir / "gradient_stats.csv")  # after each estimator: a partial study is kept

    table = format_table(rows, reference, per_sigma_batch, float(cfg.bootstrap.confidence))
    (run_dir / "gradient_stats.md").write_text(table + "\n")
    print(table)
    plot_variance_vs_batch(rows, run_dir / "variance_vs_batch.png")
    plot_bias_and_mse(rows, run_dir / "bias_mse.png")
    plot_per_sigma(rows, run_dir / "per_sigma.png")
    print(f"\nvardiu-pyro: gradient analysis in {run_dir} (gradient_stats.csv, gradient_stats.md, reference.json, "
          "variance_vs_batch.png, bias_mse.png, per_sigma.png)")
    return rows


# ---------------------------------------------------------------------------------------------
# outputs

COLUMNS = ["estimator", "batch_size", "sigma_bin", "sigma_lo", "sigma_hi", "repeats", "ref_norm", "ref_bin_norm",
           "ref_se", "ref_inner_error"] + [f"{s}{suffix}" for s in STATISTICS for suffix in ("", "_lo", "_hi")] + \
          ["importance_samples", "bound_gap", "bound_gap_lower", "bound_gap_se"]


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)


def _g(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"


def _ci(r: dict, key: str, scale: float) -> str:
    return f"{_g(r[key] / scale)} [{_g(r[key + '_lo'] / scale)}, {_g(r[key + '_hi'] / scale)}]"


def format_table(rows: list[dict], reference: dict, per_sigma_batch: int, confidence: float = 0.95) -> str:
    """The markdown report: reference, one row per estimator and batch size, the lowest MSE per B, per-σ rows."""
    ref = reference["norm"]
    ess = ", ".join(_g(e) for e in reference["ess_per_bin"])
    position = reference.get("position", reference["iteration"])
    moved = "" if position == reference["iteration"] else f"; position {position:.6g} on its schedules, which its time " \
        "budget re-fitted"
    lines = [f"# Gradient analysis at {reference['source']} (iteration {reference['iteration']}{moved})", "",
             f"Reference ∇D: norm {_g(ref)} over {reference['parameters']} generator parameters; Monte Carlo standard "
             f"error {_g(reference['standard_error'])} ({_g(reference['standard_error'] / ref)} relative, "
             f"{reference['num_samples']} draws); inner (self-normalised score, {reference['num_z']} prior draws) error "
             f"{_g(reference['inner_error'])} ({_g(reference['inner_error'] / ref)} relative); effective sample "
             f"size per σ bin: {ess}.", "",
             f"Relative to ‖∇D‖ (variance and MSE to ‖∇D‖²); {100 * confidence:g}% bootstrap intervals over the repeats "
             "(bias-corrected: centred on the estimate). Bias is "
             "debiased for the noise of the mean and of the reference; `resolution` is that noise with the reference's "
             "inner error beside it (a bias below it is not resolved). Bound gap: E_π w (U - KL) of VarDiU's guide, "
             "for the paper's bound U (the importance-weighted U_K's is smaller).", "",
             "| estimator | B | bias | resolution | variance | MSE | SNR | E cos(g, ∇D) | bound gap |",
             "|---|---|---|---|---|---|---|---|---|"]
    overall = [r for r in rows if r["sigma_bin"] == "all"]
    for r in overall:
        gap = f"{_g(r['bound_gap'])} ± {_g(r['bound_gap_se'])}" if r.get("bound_gap") is not None else ""
        bound = f" (U_{r['importance_samples']})" if r.get("importance_samples") is not None else ""
        lines.append(f"| {r['estimator']}{bound} | {r['batch_size']} | {_ci(r, 'bias', ref)} | {_g(r['resolution'] / ref)} "
                     f"| {_ci(r, 'variance', ref**2)} | {_ci(r, 'mse', ref**2)} | {_ci(r, 'snr', 1)} "
                     f"| {_ci(r, 'cosine', 1)} | {gap} |")
    lines += ["", "Lowest MSE per batch size (estimators whose MSE interval overlaps the best one's in brackets):", ""]
    for batch in sorted({r["batch_size"] for r in overall}):
        rs = sorted((r for r in overall if r["batch_size"] == batch), key=lambda r: r["mse"])
        tied = [r["estimator"] for r in rs[1:] if r["mse_lo"] <= rs[0]["mse_hi"]]
        lines.append(f"- B = {batch}: {rs[0]['estimator']}" + (f" [{', '.join(tied)}]" if tied else ""))
    binned = [r for r in rows if r["sigma_bin"] != "all"]
    if binned:
        lines += ["", f"Per σ bin at B = {per_sigma_batch} (each bin's contribution to the gradient; relative to the "
                      "whole ‖∇D‖):", "",
                  "| estimator | σ bin | ‖∇D bin‖ | bias | resolution | variance | MSE | bound gap |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in binned:
            lines.append(f"| {r['estimator']} | [{r['sigma_lo']:.3g}, {r['sigma_hi']:.3g}) | {_g(r['ref_bin_norm'] / ref)} "
                         f"| {_g(r['bias'] / ref)} | {_g(r['resolution'] / ref)} | {_g(r['variance'] / ref**2)} "
                         f"| {_g(r['mse'] / ref**2)} | {_g(r.get('bound_gap'))} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# the command line


@hydra.main(version_base="1.3", config_path="pkg://vardiu_pyro.configs", config_name="variance")
def hydra_main(cfg: DictConfig) -> None:
    """The study; a bad setting is one line (exit status 2), and so is an interruption: during the run trained first
    (SIGINT, SIGTERM), with how to resume it and analyse it; later (Ctrl-C), with what was kept."""
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        ignored = ignored_with_checkpoint(cfg, HydraConfig.get().overrides.task)
        if ignored:
            raise ConfigError(f"{' '.join(ignored)}: with checkpoint=, the run's own configuration is analysed; "
                              "leave these out (or train such a run first)")
        variance_study(cfg, run_dir)
    except ConfigError as e:
        exit_with_message(f"error: {e}", 2)
    except TrainingInterrupted as e:
        exit_with_message(f"{e}\nthen analyse it:\n    {path_command('vardiu_pyro.variance', 'checkpoint', e.run_dir)}",
                          e.exit_code)
    except KeyboardInterrupt:
        exit_with_message(interrupted_message(Path(run_dir)), 130)


def interrupted_message(run_dir: Path) -> str:
    """What a study stopped by Ctrl-C leaves, and how to go on."""
    kept = [name for name in ("reference.json", "gradient_stats.csv") if (run_dir / name).exists()]
    words = ["interrupted"]
    if kept:
        words.append(f"{run_dir} keeps {' and '.join(kept)}" + (" (the estimators that had finished)" if
                                                                 "gradient_stats.csv" in kept else ""))
    pretrain = run_dir / "pretrain"
    if (pretrain / "checkpoint.safetensors").exists():
        words.append(f"the run it trained can be analysed with: {path_command('vardiu_pyro.variance', 'checkpoint', pretrain)}"
                     f" (after {resume_command(pretrain)} if it had not finished)")
    return "; ".join(words)


def main() -> None:
    """The command line: check it first (one-line errors, exit status 2), then let Hydra run it."""
    try:
        check_command_line(sys.argv[1:], config_name="variance")
    except ConfigError as e:
        exit_with_message(f"error: {e}", 2)
    hydra_main()


if __name__ == "__main__":
    main()
