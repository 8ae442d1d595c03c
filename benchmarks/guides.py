"""Guide families compared on MoG-40 with the exact teacher, at the default budget of ``python -m vardiu_pyro.fit``.

For every family and seed, one run of ``fit`` (the default configuration with ``guide=<family>``
and ``seed=<seed>``) gives log-MMD, log-density, modes covered and the bound gap; the seconds per
step are then measured separately, A/B interleaved in one process (every family's step in turn,
the order rotated each round) and reported as medians and median ratios to the diagonal Gaussian.
Each family's mean over seeds comes with the half-width of its 95% t-interval, at the end and at
fixed training times (``--times``), and the runs' evaluations are plotted against training seconds
and against iterations (``guides.png``).

    python benchmarks/guides.py                       # the full benchmark: 4 families x 3 seeds, default budget
    python benchmarks/guides.py --quick               # a tiny budget, one seed: checks that it all runs

The runs can be split over processes (``--seeds 0 --no-timing``, ``--seeds 1 --no-timing``, ... with
the same ``--out``); a last ``python benchmarks/guides.py`` then reads them back and does the timing
alone on the machine.

Writes ``guides.md`` (the tables), ``guides.png`` (the curves) and ``guides.json`` (every run's summary,
curve and timing) into ``--out`` (default ``docs/benchmarks``; ``outputs/benchmarks/guides-quick`` with ``--quick``).
Runs are kept under ``<out>/runs/<family>/seed<k>``; a run whose ``summary.json`` exists is read
back instead of repeated, so an interrupted benchmark resumes where it stopped; a run of other settings than
this invocation's stops it (``quality.check_read_back`` names what differs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import pyro
import torch
from omegaconf import OmegaConf

from provenance import git_commit, machine_line
from quality import check_read_back, interval, read_back_note, read_curve, run_commit, targets_line, time_table
from quality import plot as plot_curves
from vardiu_pyro.bound_gap import bound_gap
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.checkpoint import load_checkpoint
from vardiu_pyro.fit import fit
from vardiu_pyro.validation import compose_config

FAMILIES = ["gaussian", "full_gaussian", "mixture", "flow"]
QUICK = ["trainer.iterations=100", "trainer.eval_every=100", "trainer.eval_samples=2000"]
PAPER = "published (1M GPU iterations, spline flow vs diagonal Gaussian): log-MMD -7.33 ± 0.18 vs -6.87 ± 0.29"


def precise_bound_gap(cfg, run_dir: Path, iteration: int, num_outer: int, num_inner: int) -> dict:
    """The trained run's bound gap re-estimated from its checkpoint with many more draws than ``summary.json``'s."""
    pyro.clear_param_store()
    problem = build_problem(cfg, torch.device("cpu"))
    objective = build_objective(cfg, problem)
    objective.load_state_dict(load_checkpoint(run_dir / "checkpoint.safetensors")["objective"])
    est = bound_gap(objective.generator, objective.guide, problem.sigma_law, problem.weight, iteration,
                    num_outer=num_outer, num_inner=num_inner, teacher=problem.teacher)
    return {"bound_gap_precise": est.as_dict()}


def quality_runs(families, seeds, overrides, out: Path, progress: bool, gap_draws: tuple[int, int],
                 only_finished: bool = False) -> list[dict]:
    """One ``fit`` per (seed, family), seeds outermost so that a partial benchmark covers every family.
    ``only_finished``: read back the runs that exist, train none."""
    records, n, k = [], len(families) * len(seeds), 0
    for seed in seeds:
        for family in families:
            k += 1
            run_dir = out / "runs" / family / f"seed{seed}"
            done = run_dir / "summary.json"
            if only_finished and not done.exists():
                print(f"[{k}/{n}] {family} seed {seed}: not run (--only-finished)")
                continue
            cfg = compose_config([f"guide={family}", f"seed={seed}", f"trainer.progress={str(progress).lower()}",
                                  *overrides])
            read_back = done.exists()
            if read_back:
                summary = json.loads(done.read_text())
                check_read_back(run_dir, summary, cfg)
                print(f"[{k}/{n}] {family} seed {seed}: read back from {done}")
            else:
                print(f"[{k}/{n}] {family} seed {seed}")
                summary = fit(cfg, run_dir)
            iterations = summary["iteration"]
            precise = run_dir / "bound_gap_precise.json"
            if not precise.exists():
                print(f"[{k}/{n}] {family} seed {seed}: bound gap from {gap_draws[0]} x {gap_draws[1]} draws")
                run_cfg = OmegaConf.create(summary["config"])  # with its iteration count (trainer.iterations=auto)
                precise.write_text(json.dumps(precise_bound_gap(run_cfg, run_dir, iterations, *gap_draws)))
            records.append({"family": family, "seed": seed, "iterations": iterations, "read_back": read_back,
                            "commit": run_commit(summary),
                            "log_mmd": summary["log_mmd"], "log_density": summary.get("log_density"),
                            "modes_covered": summary.get("modes_covered"), "bound_gap": summary.get("bound_gap"),
                            "bound_gap_se": summary.get("bound_gap_se"),
                            "bound_gap_per_sigma": summary.get("bound_gap_per_sigma"),
                            "seconds_per_step": summary["train_seconds"] / max(iterations, 1),
                            "train_seconds": summary["train_seconds"], "total_seconds": summary["total_seconds"],
                            "curve": read_curve(run_dir),  # every evaluation: (iteration, training s, metrics)
                            **json.loads(precise.read_text())})
    return records


def interleaved_step_times(families, overrides, rounds: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step of each family's objective, measured in turn (order rotated every round)."""
    pyro.enable_validation(False)
    objectives = {}
    for family in families:
        pyro.clear_param_store()
        cfg = compose_config([f"guide={family}", "trainer.iterations=50000", *overrides])  # any count: a step costs the same
        problem = build_problem(cfg, torch.device("cpu"))
        objectives[family] = build_objective(cfg, problem)
        for i in range(warmup):
            objectives[family].step(i)
    times: dict[str, list[float]] = {f: [] for f in families}
    for r in range(rounds):
        order = families[r % len(families):] + families[: r % len(families)]
        for family in order:
            objectives[family].step(warmup + r * steps)  # untimed: the family's caches warm again
            tick = time.perf_counter()
            for i in range(steps):
                objectives[family].step(warmup + r * steps + i)
            times[family].append((time.perf_counter() - tick) / steps)
    return times


def mean_interval(values) -> str:
    """Mean ± half-width of the 95% t-interval over seeds (the value alone for one seed)."""
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3g}"
    mean, _, half = interval(values)
    return f"{mean:.3g} ± {half:.2g}"


def by_family(records: list[dict], families: list[str]) -> dict[str, dict[int, dict]]:
    """The runs as ``quality.time_table`` and ``quality.plot`` take them: family -> seed -> run (with its curve)."""
    runs = {family: {r["seed"]: r for r in records if r["family"] == family} for family in families}
    return {family: by_seed for family, by_seed in runs.items() if by_seed}


def table(records: list[dict], times: dict[str, list[float]], families: list[str], header: str) -> str:
    base = times.get("gaussian")
    lines = [header, "",
             "| guide | seeds | log-MMD | log-density | modes covered | bound gap [lower] | s/step (in fit) | s/step (interleaved) | × Gaussian |",
             "|---|---|---|---|---|---|---|---|---|"]
    for family in families:
        rs = [r for r in records if r["family"] == family]
        t = times.get(family, [])
        ratio = f"{statistics.median(a / b for a, b in zip(t, base)):.2f}" if base and t else "n/a"
        interleaved = f"{statistics.median(t):.4f}" if t else "n/a"
        lines.append(f"| {family} | {', '.join(str(r['seed']) for r in rs)} | {mean_interval([r['log_mmd'] for r in rs])} "
                     f"| {mean_interval([r['log_density'] for r in rs])} "
                     f"| {mean_interval([r['modes_covered'] for r in rs])} "
                     f"| {mean_interval([r['bound_gap_precise']['gap'] for r in rs])} "
                     f"[{mean_interval([r['bound_gap_precise']['gap_lower'] for r in rs])}] "
                     f"| {statistics.median(r['seconds_per_step'] for r in rs):.4f} "
                     f"| {interleaved} | {ratio} |" if rs else f"| {family} | (none) ||||||||")
    lines += ["", "Mean ± half-width of the 95% t-interval over seeds; bound gap = E_π w(σ)(U − KL) at the final σ law, re-estimated from each "
              "checkpoint by importance sampling (`vardiu_pyro/bound_gap.py`; the true gap lies between the two "
              "estimates in expectation); s/step in fit = training seconds / iterations (median over seeds); "
              "interleaved = median over rounds of the step time measured family after family in one process; "
              "× Gaussian = median of per-round ratios.", "", PAPER]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=FAMILIES)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 0 1 2 (0 with --quick)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny budget, one seed, few timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (trainer.threads)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 20; 3 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per family per round (default 50; 5 with --quick)")
    parser.add_argument("--no-timing", action="store_true",
                        help="skip the interleaved timing (for runs split over parallel processes: time in a final run)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--times", type=float, nargs="+", default=[200, 400, 600],
                        help="training seconds at which the second table compares the families")
    parser.add_argument("--only-finished", action="store_true",
                        help="train nothing: tabulate the runs under --out that exist (the seeds column says which)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run, e.g. trainer.iterations=20000")
    args = parser.parse_args()

    seeds = args.seeds if args.seeds is not None else ([0] if args.quick else [0, 1, 2])
    out = args.out or Path("outputs/benchmarks/guides-quick" if args.quick else "docs/benchmarks")
    out.mkdir(parents=True, exist_ok=True)
    overrides = (QUICK if args.quick else []) + list(args.overrides)
    if args.threads:
        overrides.append(f"trainer.threads={args.threads}")
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 20)
    steps = args.steps or (5 if args.quick else 50)

    gap_draws = (256, 64) if args.quick else (2048, 1024)
    records = quality_runs(args.families, seeds, overrides, out, progress=not args.no_progress, gap_draws=gap_draws,
                           only_finished=args.only_finished)
    times: dict[str, list[float]] = {}
    if not args.no_timing:
        print(f"timing: {rounds} rounds x {steps} steps per family, interleaved")
        times = interleaved_step_times(args.families, overrides, rounds, steps, warmup=5)

    label = "QUICK (tiny budget; not results)" if args.quick else "default budget of `python -m vardiu_pyro.fit`"
    seeds_note = (f"Seeds {' '.join(map(str, seeds))} where run (--only-finished)" if args.only_finished
                  else f"{len(seeds)} seed(s) per family")
    header = (f"# Guide families on MoG-40, exact teacher: {label}\n\n"
              f"{time.strftime('%Y-%m-%d')}, commit {git_commit()}, {machine_line()}. "
              f"{seeds_note}; overrides: {' '.join(overrides) or 'none'}; "
              f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), pyro {pyro.__version__}.")
    header = "\n\n".join([header, *read_back_note([r["commit"] for r in records if r["read_back"]], len(records))[:1]])
    report = table(records, times, args.families, header)
    runs = by_family(records, args.families)
    if runs:
        plot_curves(runs, out / "guides.png", title="Guide families, exact teacher (one line per seed)")
        report += "\n\n" + "\n".join([*time_table(runs, args.times, label="guide"), "", targets_line(), "",
                                       "![guide families](guides.png)"])
    (out / "guides.md").write_text(report + "\n")
    (out / "guides.json").write_text(json.dumps({"overrides": overrides, "seeds": seeds, "runs": records,
                                                 "step_seconds": times, "rounds": rounds, "steps": steps}, indent=2))
    print(report)
    print(f"\nwritten: {out / 'guides.md'}, {out / 'guides.json'}")


if __name__ == "__main__":
    main()
