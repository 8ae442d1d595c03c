"""Quality over seeds and over training time: what the quality benchmarks share.

``recipes.py`` (the default against the published recipe), ``guides.py`` (the guide families) and
``teachers_vs_diff_instruct.py`` (VarDiU against Diff-Instruct) each run several settings over
seeds. Every run keeps its evaluations (``metrics.jsonl``: iteration, training seconds, log-MMD,
log-density, modes covered), its *curve*. From those runs this module gives the mean over seeds
with the half-width of its 95% t-interval, a table at fixed training times, and plots against
training seconds and against iterations. A setting's runs are passed as ``{setting: {seed: run}}``,
a run being a dict with its final metrics, ``iterations``, ``train_seconds`` and ``curve``.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from default_fit import TARGETS  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

METRICS = {"log_mmd": "log-MMD", "log_density": "log-density", "modes_covered": "modes covered"}
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
       21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042}


def t95(df: int) -> float:
    """t(0.975, df): the table to 30 degrees of freedom, then its expansion in 1/df about the normal quantile z
    (Cornish-Fisher: z + (z³ + z)/(4 df) + (5z⁵ + 16z³ + 3z)/(96 df²), within 0.001 from df = 30 on)."""
    if df in T95:
        return T95[df]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, sd, half-width of the 95% t-interval); sd and half-width are NaN for one value."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    sd = statistics.stdev(values)
    return mean, sd, t95(len(values) - 1) * sd / math.sqrt(len(values))  # t · sd / √n


def cell(values: list[float], digits: int) -> str:
    """'mean ± half-width' (the mean alone for one value)."""
    mean, _, half = interval(values)
    return f"{mean:.{digits}f}" + ("" if math.isnan(half) else f" ± {half:.{digits}f}")


def read_curve(folder: Path) -> list[dict]:
    """A run's evaluations (``metrics.jsonl``): iteration, training seconds and the metrics of each."""
    curve = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{k: c[k] for k in ("iteration", "train_seconds", *METRICS)} for c in curve]


def run_commit(summary: dict) -> str:
    """The commit of the code that produced a run, as its ``summary.json`` records it (``code``; runs saved before
    2026-12-06 did not record it)."""
    return summary.get("code", {}).get("commit", "not recorded")


RUN_ONLY = frozenset({"trainer.threads", "trainer.progress", "trainer.resume", "trainer.checkpoint_every",  # how a
                      "teacher.path"})  # run ran, not what it computes; and where its teacher's files were (a work
# folder may be moved or copied: the learned teacher is trained once into OUT/teacher and read back from there)
FITTED = frozenset({"trainer.schedule_iterations", "trainer.refits"})  # what a run sized to a time budget
# (trainer.iterations=auto) chose for itself, besides every count of iterations that is "auto" in the request (the
# schedules' lengths); other "auto" values (device, precision) are compared as they are (a run stores them as given)


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested configuration as {dotted key: value}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def settings_differences(stored: dict, requested: dict) -> list[str]:
    """How a finished run's configuration (``summary.json``'s ``config``) differs from the one an invocation would run
    in its place: ``"key: stored → requested"`` for every setting both have whose values differ. How the run ran
    (``RUN_ONLY``) is no difference, nor is, for a run sized to a time budget, the count it fitted (``FITTED``); a
    key the run's (older) code did not have is left to its recorded commit."""
    have, want = _flat(stored), _flat(requested)
    budget = want.get("trainer.iterations") == "auto"
    fitted = {k for k in want if budget and (k in FITTED or (want[k] == "auto" and k.rsplit(".", 1)[-1] == "iterations"))}
    return [f"{k}: {have[k]!r} → {want[k]!r}" for k in sorted(have.keys() & want.keys())
            if k not in RUN_ONLY and k not in fitted and have[k] != want[k]]


def check_read_back(run_dir: Path, summary: dict, cfg: DictConfig) -> None:
    """Read a finished run back only when it is the run asked for: ``cfg``, what the invocation would run in its place,
    must match the configuration it ran with (``settings_differences``); otherwise stop, rather than report a run of
    other settings."""
    requested = OmegaConf.to_container(cfg, resolve=True)
    differences = settings_differences(summary["config"], requested)
    if requested.get("trainer", {}).get("iterations") == "auto" and "calibration" not in summary:
        differences.insert(0, f"trainer.iterations: {summary['config']['trainer']['iterations']!r} (a fixed count) → 'auto'")
    if differences:
        shown = "; ".join(differences[:5]) + ("; ..." if len(differences) > 5 else "")
        raise SystemExit(f"{run_dir} holds a finished run of other settings than this invocation asks for ({shown}): "
                         "remove it, or give another --out")


def read_back_note(commits: list[str], total: int) -> list[str]:
    """A report's lines on the runs read back instead of run (``commits``: each one's ``run_commit``): how many, and
    which code produced them; nothing when every run was run by this invocation."""
    if not commits:
        return []
    code = ", ".join(f"{'commit ' if c != 'not recorded' else ''}{c} ({n} run{'s' if n > 1 else ''})"
                     for c, n in Counter(commits).items())
    return [f"{len(commits)} of the {total} runs were read back from an earlier invocation (their directories' "
            f"`summary.json`, which holds each run's own configuration and timing), not run by this one; their code: "
            f"{code}.", ""]


def targets_line() -> str:
    """Issue 2's targets, as the reports state them under their tables."""
    return "Targets (issue 2, every run): " + ", ".join(f"{k} {op} {v}" for k, (op, v) in TARGETS.items())


def meets_targets(run: dict) -> bool:
    return all(run[k] <= v if op == "<=" else run[k] >= v for k, (op, v) in TARGETS.items())


def at_time(run: dict, seconds: float) -> dict | None:
    """The last evaluation at or before ``seconds`` of training (None if the run had none by then)."""
    before = [c for c in run["curve"] if c["train_seconds"] <= seconds]
    return before[-1] if before else None


def time_table(runs: dict[str, dict[int, dict]], times: list[float], label: str = "recipe") -> list[str]:
    """Per setting (a recipe, a guide family, ...; ``label`` heads the column), the mean ± half-width of the 95%
    t-interval over seeds at fixed training times (the last evaluation at or before each) and at the end."""
    lines = ["Mean ± half-width of the 95% t-interval over seeds, at fixed training times (the last evaluation at or "
             "before each, so the iteration counts differ) and at the end:", "",
             f"| {label} | training s | iterations | log-MMD | log-density | modes | runs meeting every target |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for setting, by_seed in runs.items():
        for seconds in times:
            points = [p for p in (at_time(r, seconds) for r in by_seed.values()) if p is not None]
            if len(points) < len(by_seed) or seconds >= min(r["train_seconds"] for r in by_seed.values()):
                continue  # a run without an evaluation by then (no fair mean), or past a run's end (the end row)
            lines.append(f"| {setting} | ≤ {seconds:g} | {cell([p['iteration'] for p in points], 0)} | "
                         f"{cell([p['log_mmd'] for p in points], 2)} | {cell([p['log_density'] for p in points], 2)} | "
                         f"{cell([p['modes_covered'] for p in points], 1)} | |")
        final = list(by_seed.values())
        lines.append(f"| {setting} | end ({cell([r['train_seconds'] for r in final], 0)}) | "
                     f"{cell([r['iterations'] for r in final], 0)} | **{cell([r['log_mmd'] for r in final], 2)}** | "
                     f"**{cell([r['log_density'] for r in final], 2)}** | **{cell([r['modes_covered'] for r in final], 1)}** | "
                     f"{sum(map(meets_targets, final))} of {len(final)} |")
    return lines


def plot(runs: dict[str, dict[int, dict]], path: Path, title: str) -> None:
    """Each metric against training seconds (top) and iterations (bottom), one line per run, one colour per
    setting; targets dashed."""
    fig, axes = plt.subplots(2, len(METRICS), figsize=(4.2 * len(METRICS), 6.4), squeeze=False)
    for i_setting, (setting, by_seed) in enumerate(runs.items()):
        color = f"C{i_setting}"
        for i, r in enumerate(by_seed.values()):
            for col, key in enumerate(METRICS):
                for row, x in enumerate(("train_seconds", "iteration")):
                    axes[row][col].plot([c[x] for c in r["curve"]], [c[key] for c in r["curve"]], color=color,
                                        marker=".", alpha=0.8, label=setting if i == 0 else None)
    for col, key in enumerate(METRICS):
        op, target = TARGETS[key]
        for row, xlabel in enumerate(("training seconds", "iterations")):
            ax = axes[row][col]
            ax.axhline(target, color="k", ls="--", lw=1, label=f"target ({op} {target})")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(METRICS[key])
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def mean_curve(by_seed: dict[int, dict], x: str, key: str) -> tuple[list[float], list[float], list[float]]:
    """A setting's curve averaged over seeds: (mean x, mean metric, half-width of its 95% t-interval) per point.

    The evaluations that every run made at the same iteration are averaged point by point; the last point is every
    run's own last evaluation, its end. Runs sized by a time budget share their spacing but not their length (one
    ends at 6,900 iterations, another at 7,300 after an evaluation at 7,170): their ends are averaged with each other,
    not with another run's evaluation on the way.
    """
    curves = [r["curve"] for r in by_seed.values()]
    points = []
    for k in range(min(len(c) - 1 for c in curves)):  # evaluations before the end, while they line up
        if len({c[k]["iteration"] for c in curves}) > 1:
            break
        points.append([c[k] for c in curves])
    points.append([c[-1] for c in curves])
    xs, means, halves = [], [], []
    for evaluations in points:
        mean, _, half = interval([float(e[key]) for e in evaluations])
        xs.append(statistics.mean(e[x] for e in evaluations))
        means.append(mean)
        halves.append(0.0 if math.isnan(half) else half)
    return xs, means, halves


def plot_mean_curves(panels: list[tuple[str, str, dict[str, dict[int, dict]], dict]], path: Path, title: str) -> None:
    """One row per panel ``(row title, x: "train_seconds" or "iteration", runs, reference lines {metric: value})``,
    one column per metric: each setting's mean over seeds with its 95% band, reference values dashed."""
    fig, axes = plt.subplots(len(panels), len(METRICS), figsize=(4.4 * len(METRICS), 3.0 * len(panels)),
                             squeeze=False)
    xlabels = {"train_seconds": "training seconds", "iteration": "iterations"}
    for row, (name, x, runs, references) in enumerate(panels):
        for col, key in enumerate(METRICS):
            ax = axes[row][col]
            for i, (setting, by_seed) in enumerate(runs.items()):
                xs, means, halves = mean_curve(by_seed, x, key)
                ax.plot(xs, means, color=f"C{i}", marker=".", label=setting)
                ax.fill_between(xs, [m - h for m, h in zip(means, halves)], [m + h for m, h in zip(means, halves)],
                                color=f"C{i}", alpha=0.2, lw=0)
            if key in references:
                ax.axhline(references[key], color="k", ls="--", lw=1, label="teacher, many-step")
            ax.set_title(f"{name}: {METRICS[key]}", fontsize=9)
            ax.set_xlabel(xlabels[x])
            ax.grid(alpha=0.3)
            if col == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
