"""The report of a sweep:  ``python -m vardiu_pyro.report SWEEP_DIR``  (or ``sweep_dir=SWEEP_DIR``).

Reads every run directory of a sweep (its ``summary.json``, ``metrics.jsonl``, ``job.json`` and
Hydra's ``.hydra/overrides.yaml``), groups the runs by the overridden keys that vary (the seed
excepted, so seeds are pooled), and writes into the sweep directory (or ``out_dir``):

- ``report.md``: per group, the number of runs and, for each metric, the mean over the group's
  completed runs with a percentile-bootstrap interval; then every run that failed or did not
  finish (no ``summary.json``), with its error, and every job of the sweep that has no run
  directory (the sweep stopped before it; known from the sweep's ``multirun.yaml``);
- ``report.json``: the same numbers, for scripts;
- ``log_mmd.png``: log-MMD against wall-clock time, per group (the mean over its runs at each
  evaluation, the runs themselves faint).

Options are Hydra overrides of ``configs/report.yaml`` (``group_by``, ``exclude``, ``metrics``,
``confidence``, ``resamples``, ``bootstrap_seed``, ``out_dir``); a single positional path is
read as ``sweep_dir=PATH``.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from .sweep import Run, not_started, read_runs
from .validation import hydra_value

__all__ = ["bootstrap_interval", "parse_overrides", "varying_keys", "Group", "group_runs", "write_report", "main"]

MISSING = "(default)"  # the value of a key a run did not override


def bootstrap_interval(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean: the (α/2, 1-α/2) quantiles of resampled means, α = 1 - confidence.

    Deterministic (its own seeded generator). One value gives the degenerate interval [v, v].
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    x = torch.as_tensor(list(values), dtype=torch.float64)
    if x.numel() == 0:
        return math.nan, math.nan
    rng = torch.Generator().manual_seed(int(seed))
    means = x[torch.randint(x.numel(), (int(resamples), x.numel()), generator=rng)].mean(1)  # mean of n draws with replacement
    alpha = 1.0 - confidence
    lo, hi = torch.quantile(means, torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)).tolist()
    return lo, hi


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """``["a.b=1", "+c=x"]`` -> ``{"a.b": "1", "c": "x"}`` (``~key`` deletions map to ``"~"``)."""
    out = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+")
        if key.startswith("~"):
            key, value = key[1:], "~"
        out[key] = value if sep or value == "~" else ""
    return out


def varying_keys(runs: Sequence[Run], exclude: Sequence[str] = ("seed",)) -> list[str]:
    """Overridden keys whose value is not the same in every run (in first-seen order), minus ``exclude``."""
    parsed = [parse_overrides(r.overrides) for r in runs]
    keys = list(dict.fromkeys(k for p in parsed for k in p))
    return [k for k in keys if k not in exclude and len({p.get(k, MISSING) for p in parsed}) > 1]


@dataclass
class Group:
    """The runs that share the values of the grouping keys."""

    values: dict[str, str]
    runs: list[Run] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items()) or "all runs"

    @property
    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.status == "completed"]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)


def group_runs(runs: Sequence[Run], keys: Sequence[str]) -> list[Group]:
    """Runs grouped by their values of ``keys``, in order of first appearance."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        parsed = parse_overrides(run.overrides)
        values = {k: parsed.get(k, MISSING) for k in keys}
        groups.setdefault(tuple(values.values()), Group(values)).runs.append(run)
    return list(groups.values())


def summarise(group: Group, metrics: Sequence[str], confidence: float, resamples: int, seed: int) -> dict:
    """Mean and bootstrap interval of each metric over the group's completed runs."""
    out = {}
    for metric in metrics:
        values = [float(r.summary[metric]) for r in group.completed if metric in r.summary]
        lo, hi = bootstrap_interval(values, confidence, resamples, seed)
        out[metric] = {"n": len(values), "mean": sum(values) / len(values) if values else math.nan,
                       "low": lo, "high": hi, "values": values}
    return out


def _fmt(x: float) -> str:
    return "—" if x is None or math.isnan(x) else f"{x:.4g}"


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


def plot_log_mmd(path: Path, groups: Sequence[Group]) -> Path | None:
    """log-MMD against seconds per group: the mean over runs at each evaluation (bold), each run (faint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = [(g, [r.metrics for r in g.completed if any("log_mmd" in m for m in r.metrics)]) for g in groups]
    curves = [(g, runs) for g, runs in curves if runs]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (group, runs) in enumerate(curves):
        color = f"C{i % 10}"
        for records in runs:
            rows = [m for m in records if "log_mmd" in m]
            ax.plot([m["seconds"] for m in rows], [m["log_mmd"] for m in rows], color=color, alpha=0.25, lw=0.8)
        common = sorted(set.intersection(*({m["iteration"] for m in records if "log_mmd" in m} for records in runs)))
        by_iteration = [[{m["iteration"]: m for m in records}[it] for records in runs] for it in common]
        ax.plot([sum(m["seconds"] for m in ms) / len(ms) for ms in by_iteration],
                [sum(m["log_mmd"] for m in ms) / len(ms) for ms in by_iteration],
                color=color, marker="o", ms=3, lw=1.8, label=f"{group.label} (n={len(runs)})")
    ax.set(xlabel="wall-clock seconds", ylabel="log-MMD", title="log-MMD against time (mean over runs; runs faint)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(sweep_dir: str | Path, out_dir: str | Path | None = None, group_by: Sequence[str] | None = None,
                 exclude: Sequence[str] = ("seed",), metrics: Sequence[str] = ("log_mmd", "log_density", "modes_covered", "seconds"),
                 confidence: float = 0.95, resamples: int = 2000, bootstrap_seed: int = 0) -> dict:
    """Aggregate the sweep in ``sweep_dir``; write ``report.md``, ``report.json``, ``log_mmd.png``; return the report."""
    sweep_dir = Path(sweep_dir)
    runs = read_runs(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"sweep_dir={sweep_dir}: no run directories (none holds .hydra/overrides.yaml)")
    runs = sorted(runs + not_started(sweep_dir, runs), key=lambda r: (r.num is None, r.num or 0, str(r.path)))
    out_dir = Path(out_dir) if out_dir is not None else sweep_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = list(group_by) if group_by is not None else varying_keys(runs, exclude)
    groups = group_runs(runs, keys)
    all_overrides = [parse_overrides(r.overrides) for r in runs]
    constant = {k: v for k, v in all_overrides[0].items()
                if k not in keys and k not in exclude and all(p.get(k) == v for p in all_overrides)}

    report = {"sweep_dir": str(sweep_dir), "group_by": keys, "constant_overrides": constant,
              "confidence": confidence, "groups": [], "not_completed": []}
    for group in groups:
        report["groups"].append({"values": group.values, "runs": len(group.runs),
                                 "completed": group.count("completed"), "failed": group.count("failed"),
                                 "incomplete": group.count("incomplete"), "not_started": group.count("not started"),
                                 "metrics": summarise(group, metrics, confidence, resamples, bootstrap_seed)})
    for run in runs:
        if run.status != "completed":
            report["not_completed"].append({"num": run.num, "status": run.status,
                                            "run_dir": _relative(run.path, sweep_dir) if run.path else None,
                                            "overrides": run.overrides, "error": run.error})

    plot = plot_log_mmd(out_dir / "log_mmd.png", groups)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(format_report(report, metrics, plot.name if plot else None))
    return report


def format_report(report: dict, metrics: Sequence[str], plot: str | None) -> str:
    pct = f"{100 * report['confidence']:g}%"
    lines = [f"# Sweep report: {report['sweep_dir']}", ""]
    n_runs = sum(g["runs"] for g in report["groups"])
    n_done = sum(g["completed"] for g in report["groups"])
    lines.append(f"{n_runs} run{'s' * (n_runs != 1)}, {n_done} completed, {n_runs - n_done} failed, incomplete or not started "
                 f"(listed below). "
                 f"Each cell: mean over a group's completed runs [{pct} percentile-bootstrap interval of the mean].")
    if report["constant_overrides"]:
        lines += ["", "Overrides common to all runs: " + " ".join(f"`{k}={v}`" for k, v in report["constant_overrides"].items())]
    keys = report["group_by"]
    lines += ["", "| " + " | ".join([*keys, "runs", "failed", "incomplete", "not started", *metrics]) + " |",
              "|" + "---|" * (len(keys) + 4 + len(metrics))]
    for g in report["groups"]:
        cells = [g["values"][k] for k in keys] + [f"{g['completed']}/{g['runs']}", str(g["failed"]), str(g["incomplete"]),
                                                  str(g["not_started"])]
        for m in metrics:
            s = g["metrics"][m]
            cells.append("—" if s["n"] == 0 else f"{_fmt(s['mean'])} [{_fmt(s['low'])}, {_fmt(s['high'])}]")
        lines.append("| " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![log-MMD against time]({plot})"]
    lines += ["", "## Runs that failed, did not finish or did not start", ""]
    if not report["not_completed"]:
        lines.append("None.")
    else:
        lines += ["| job | status | run dir | overrides | error |", "|---|---|---|---|---|"]
        for r in report["not_completed"]:
            error = (r["error"] or {"incomplete": "no summary.json (interrupted or still running)",
                                    "not started": "no run directory (the sweep stopped before this job, or its launcher "
                                                   "has not run it yet)"}.get(r["status"], ""))
            error = error.replace("|", "\\|").replace("\n", " ")
            overrides = " ".join(f"`{o}`" for o in r["overrides"]
                                 if parse_overrides([o]).keys() - report["constant_overrides"].keys())
            lines.append(f"| {r['num'] if r['num'] is not None else '?'} | {r['status']} | {r['run_dir'] or '—'} | {overrides} "
                         f"| {error} |")
    return "\n".join(lines) + "\n"


@hydra.main(version_base="1.3", config_path="pkg://vardiu_pyro.configs", config_name="report")
def _hydra_main(cfg: DictConfig) -> None:
    report = write_report(cfg.sweep_dir, out_dir=cfg.out_dir,
                          group_by=list(cfg.group_by) if cfg.group_by is not None else None,
                          exclude=list(cfg.exclude), metrics=list(cfg.metrics), confidence=float(cfg.confidence),
                          resamples=int(cfg.resamples), bootstrap_seed=int(cfg.bootstrap_seed))
    out_dir = Path(cfg.out_dir) if cfg.out_dir is not None else Path(cfg.sweep_dir)
    print((out_dir / "report.md").read_text())
    print(f"written: {out_dir / 'report.md'}, {out_dir / 'report.json'}"
          + (f", {out_dir / 'log_mmd.png'}" if (out_dir / "log_mmd.png").exists() else ""))
    if report["not_completed"]:
        print(f"{len(report['not_completed'])} run(s) failed or did not finish (listed in the report)")


HYDRA_FLAGS_WITH_VALUE = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun"}


def positional_to_override(args: Sequence[str]) -> list[str]:
    """Read a lone positional path (no ``=``, not a flag) as ``sweep_dir=PATH`` (quoted for Hydra)."""
    args, out, found = list(args), [], None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in HYDRA_FLAGS_WITH_VALUE:
            out += args[i:i + 2]
            i += 2
            continue
        if not arg.startswith("-") and "=" not in arg:
            if found is not None:
                raise SystemExit(f"vardiu_pyro.report: one sweep directory at a time, got {found!r} and {arg!r}")
            found = arg
            out.append(f"sweep_dir={hydra_value(arg, always=True)}")
        else:
            out.append(arg)
        i += 1
    return out


def main() -> None:
    """``python -m vardiu_pyro.report SWEEP_DIR [overrides]`` or ``... sweep_dir=SWEEP_DIR [overrides]``."""
    sys.argv[1:] = positional_to_override(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
