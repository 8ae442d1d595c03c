"""VarDiU against Diff-Instruct on MoG-40, with the exact and with a learned teacher.

For each teacher (exact noised score; an EDM denoiser trained by ``vardiu_pyro.train_teacher``)
and each method (VarDiU with the Gaussian guide and with the flow guide; Diff-Instruct with
K = 1, 5, 10 fake-score steps per generator step), over seeds, two budgets:

- equal generator iterations: every method runs ``--iterations`` generator steps;
- equal wall-clock: every run gets ``--seconds`` for the whole run, sized as a user's run of
  ``python -m vardiu_pyro.fit`` is (``trainer.iterations=auto trainer.time_budget=SECONDS``): it
  measures its own step where it runs (beside the other runs of ``--jobs``), plans its iteration
  count, and re-fits it to its own pace at every evaluation (``vardiu_pyro.budget``). Each run
  follows its full schedules (σ law, weight, learning rate) within its own budget.

The cost of one iteration of each (teacher, method) is measured first, interleaved in one process
(medians of rounds). It is reported, and it spaces the evaluations of the equal-wall-clock runs
(about ``--evals`` of them); it does not set their length.

All runs share the configuration of ``python -m vardiu_pyro.fit`` (σ law, weight, batch, antithetic
pairs, generator, optimiser); only ``objective`` (and ``teacher``) differ. Each run is evaluated
``--evals`` times (log-MMD, log-density and modes covered of the EMA generator, evenly spaced, the
last at its end). Reported: per (teacher, method, budget) the final values, mean over seeds with the
half-width of the 95% t-interval, plus iterations and training seconds; the equal-wall-clock runs at
fixed training times (``--times``); and the curves, each method's mean over seeds with its 95% band,
against training seconds (equal wall-clock) and against iterations (equal iterations). The learned
teacher's own many-step values (DPM-Solver, 32 function evaluations) are the ceiling of its rows.

    python benchmarks/teachers_vs_diff_instruct.py --quick                 # minutes: checks the pipeline
    python benchmarks/teachers_vs_diff_instruct.py --report docs/teachers_vs_diff_instruct.md
    python benchmarks/teachers_vs_diff_instruct.py --teacher-dir outputs/teachers/DATE/TIME --jobs 2

Writes ``results.md``, ``results.json`` and ``results.png`` (every metric, per teacher, method and budget)
into ``--out`` (or ``--report PATH.md`` and its ``.json`` and ``.png`` beside it), and every run's
directory under ``--out``. The cost of an iteration is measured once (``step_costs.json``); an
interrupted benchmark resumes with the same evaluation spacing, finished runs read back (the report
names the commit each one recorded); a run of other settings than this invocation's stops it
(``quality.check_read_back`` names what differs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import multiprocessing
import os
import re
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pyro  # noqa: E402
import torch  # noqa: E402
from provenance import git_commit, machine_line  # noqa: E402
from quality import (METRICS, cell, check_read_back, plot_mean_curves, read_back_note,  # noqa: E402
                     read_curve, run_commit, targets_line, time_table)

from vardiu_pyro.budget import (MARGIN, MEASURE_SHARE, MIN_TIMED_STEPS, TIMED_STEPS, WARMUP_STEPS,  # noqa: E402
                                iterations_for_budget, timed_step_count)
from vardiu_pyro.validation import compose_config  # noqa: E402

METHODS = {  # name -> Hydra overrides
    "VarDiU (Gaussian guide)": ["objective=vardiu", "guide=gaussian"],
    "VarDiU (flow guide)": ["objective=vardiu", "guide=flow"],
    "Diff-Instruct K=1": ["objective=diff_instruct", "objective.inner_steps=1"],
    "Diff-Instruct K=5": ["objective=diff_instruct", "objective.inner_steps=5"],
    "Diff-Instruct K=10": ["objective=diff_instruct", "objective.inner_steps=10"],
}

QUICK = {"iterations": 40, "seconds": 4.0, "seeds": [0, 1], "extra": [
    "trainer.eval_samples=2000", "trainer.batch_size=128", "generator.width=64", "guide.width=64",
    "objective.fake_score.width=64"], "teacher": [
    "trainer.iterations=200", "trainer.eval_every=200", "trainer.batch_size=256", "trainer.eval_samples=2000",
    "denoiser.width=64", "score_error.num_samples=1024"]}


def method_overrides(method: str, extra: list[str]) -> list[str]:
    """Overrides of one method; keys of other objectives (e.g. objective.fake_score.*) are dropped."""
    objective = "diff_instruct" if "diff_instruct" in " ".join(METHODS[method]) else "vardiu"
    kept = [o for o in extra if not (o.startswith("objective.fake_score") and objective != "diff_instruct")]
    return [*METHODS[method], *kept]


def teacher_overrides(teacher_dir: Path | None) -> list[str]:
    return ["teacher=exact"] if teacher_dir is None else ["teacher=learned", f"teacher.path={teacher_dir}"]


# ---------------------------------------------------------------- the learned teacher
def train_teacher(out: Path, overrides: list[str]) -> Path:
    from vardiu_pyro.train_teacher import train_teacher as train

    run_dir = out / "teacher"
    if not (run_dir / "summary.json").exists():
        train(compose_config(["trainer.progress=false", *overrides], "train_teacher"), run_dir)
    return run_dir


# ---------------------------------------------------------------- cost of one iteration, interleaved
def step_costs(settings: list[tuple[str, Path | None]], extra: list[str], rounds: int = 7, steps: int = 5) -> dict:
    """Median seconds per training iteration of each (method, teacher), measured round-robin."""
    from vardiu_pyro.build import build_objective, build_problem

    with pyro.validation_enabled(False):  # as in the runs (trainer.pyro_validation=false)
        objectives = {}
        for method, teacher_dir in settings:
            cfg = compose_config([*teacher_overrides(teacher_dir), *method_overrides(method, extra),
                                            "trainer.iterations=1000", "device=cpu"])
            objective = build_objective(cfg, build_problem(cfg, torch.device("cpu")))
            objective.step(0)  # warm-up
            objectives[(method, teacher_dir)] = objective
        times = {key: [] for key in objectives}
        for _ in range(rounds):
            for key, objective in objectives.items():
                tick = time.perf_counter()
                for i in range(steps):
                    objective.step(i)
                times[key].append((time.perf_counter() - tick) / steps)
    return {key: statistics.median(t) for key, t in times.items()}


def read_costs(path: Path, settings: list[tuple[str, Path | None]], name_of: dict) -> dict | None:
    """The costs an earlier invocation measured into ``path`` (so that a resumed benchmark gives every run the
    budget its first invocation gave it), or None when they do not cover ``settings``."""
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    keys = {(m, d): f"{name_of[d]} / {m}" for m, d in settings}
    return {setting: saved[key] for setting, key in keys.items()} if all(k in saved for k in keys.values()) else None


def expected_iterations(seconds: float, step_seconds: float) -> int:
    """About how many iterations a run with ``trainer.time_budget=seconds`` plans at ``step_seconds`` a step: the
    budget's own cost model, its measurement included, evaluations left out (what spaces the evaluations)."""
    measured = WARMUP_STEPS + timed_step_count(seconds, step_seconds, TIMED_STEPS)
    return max(1, iterations_for_budget(seconds, step_seconds, 0.0, 1, measured * step_seconds, round_to=1))


# ---------------------------------------------------------------- one run
def run_one(job: dict) -> dict:
    """One fit in this process (called in worker processes with --jobs > 1)."""
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    from vardiu_pyro.fit import fit

    run_dir = Path(job["run_dir"])
    length = ([f"trainer.iterations={job['iterations']}"] if job["time_budget"] is None else  # equal iterations
              ["trainer.iterations=auto", f"trainer.time_budget={job['time_budget']}"])  # equal wall-clock
    cfg = compose_config([*job["overrides"], f"seed={job['seed']}", *length, f"trainer.eval_every={job['eval_every']}",
                          "trainer.progress=false"])
    read_back = (run_dir / "summary.json").exists()
    if read_back:  # resumable: finished runs are kept
        summary = json.loads((run_dir / "summary.json").read_text())
        check_read_back(run_dir, summary, cfg)
    else:
        summary = fit(cfg, run_dir)
    return {**{k: job[k] for k in ("teacher", "method", "budget", "axis", "seed")},
            "iterations": summary["iteration"],  # what the run did (a run read back may predate this invocation's costs)
            "read_back": read_back, "commit": run_commit(summary),
            **{k: summary[k] for k in (*METRICS, "train_seconds", "total_seconds")},
            "teacher_metrics": summary.get("teacher"),
            "curve": read_curve(run_dir)}  # every evaluation: iteration, training s, metrics


def table(results: list[dict], ceilings: dict) -> list[str]:
    lines = ["| teacher | method | budget | iterations (median) | training s (mean) | log-MMD | log-density | modes covered |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["teacher"], r["budget"], r["method"]), []).append(r)
    for teacher in dict.fromkeys(r["teacher"] for r in results):
        if teacher in ceilings:
            c = ceilings[teacher]
            lines.append(f"| {teacher} | the teacher itself ({c['solver']}, {c['nfe']} NFE): ceiling | | | | "
                         f"{c['log_mmd']:.2f} | {c['log_density']:.2f} | {c['modes_covered']} |")
        for (t, budget, method), rows in groups.items():
            if t != teacher:
                continue
            cells = [cell([float(r[key]) for r in rows], 1 if key == "modes_covered" else 2) for key in METRICS]
            its = statistics.median(r["iterations"] for r in rows)
            secs = statistics.mean(r["train_seconds"] for r in rows)
            lines.append(f"| {teacher} | {method} | {budget} | {its:.0f} | {secs:.0f} | " + " | ".join(cells) + " |")
    return lines


def by_method(results: list[dict], teacher: str, axis: str) -> dict[str, dict[int, dict]]:
    """The runs of one teacher and one budget (``axis``: "iteration" for equal iterations, "train_seconds" for equal
    wall-clock) as ``quality`` takes them: method -> seed -> run."""
    runs = {m: {r["seed"]: r for r in results if (r["teacher"], r["axis"], r["method"]) == (teacher, axis, m)}
            for m in METHODS}
    return {m: by_seed for m, by_seed in runs.items() if by_seed}


def plot(results: list[dict], ceilings: dict, path: Path) -> None:
    """Per teacher two rows: the equal-wall-clock runs against training seconds, the equal-iteration runs against
    iterations; one column per metric; each method's mean over seeds with its 95% band; the learned teacher's
    own many-step values dashed."""
    panels = []
    for teacher in dict.fromkeys(r["teacher"] for r in results):
        for axis in ("train_seconds", "iteration"):
            runs = by_method(results, teacher, axis)
            if runs:
                budget = next(r["budget"] for r in results if (r["teacher"], r["axis"]) == (teacher, axis))
                panels.append((f"{teacher} teacher, {budget}", axis, runs, ceilings.get(teacher, {})))
    plot_mean_curves(panels, path, "VarDiU vs Diff-Instruct: mean over seeds, 95% band")


def caveats(args, extra: list[str], threads: int) -> str:
    """What the numbers are and are not: the budgets against the default's, how the runs shared the machine."""
    teacher = ("" if "learned" not in args.teachers else
               f" The learned teacher is `{args.teacher_dir}`, given by `--teacher-dir`." if args.teacher_dir else
               " The learned teacher was trained by this invocation (`vardiu_pyro.train_teacher` with its defaults, "
               "into `OUT/teacher`, unless read back from there); its ceiling row is its own many-step sampler.")
    default_budget = compose_config([]).trainer.time_budget
    return ("**Read with care.** The budgets are "
            f"{args.iterations:,} generator iterations, and {args.seconds:g} s for the whole run, sized as the default "
            f"run's {default_budget:g} s are (`trainer.iterations=auto trainer.time_budget={args.seconds:g}`: the run "
            f"measures its step where it runs, beside the others, plans its count with {MARGIN:.0%} of the budget kept "
            "free, and "
            "re-fits it to its own pace at every evaluation). Every run is the default configuration of "
            "`python -m vardiu_pyro.fit` at the commit below with only `objective` and `teacher` changed"
            + (f" (and `{' '.join(extra)}`)" if extra else "")
            + ", and lays its schedules (σ curriculum, weight, learning rate) over its own length: at budgets this "
            "much shorter than the default's these are early-training numbers. "
            f"{args.jobs} run{'s' if args.jobs > 1 else ''} at a time, {threads} torch thread{'s' if threads > 1 else ''} "
            "each. The \"training s\" of an equal-wall-clock run is what its budget left after the measurement "
            f"({WARMUP_STEPS} warm-up steps, then {MIN_TIMED_STEPS} to {TIMED_STEPS} timed ones, at most about "
            f"{MEASURE_SHARE:.0%} of the budget), the evaluations and the "
            f"margin. Each equal-iterations run was evaluated {args.evals} times, evenly spaced, the last at its end; "
            f"each equal-wall-clock run about {args.evals} times, spaced by the cost per iteration listed below, and at "
            "its end (the EMA generator; the curves in the plot)." + teacher)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny budgets, 2 seeds: checks the pipeline only")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=10_000, help="the equal-iterations budget")
    parser.add_argument("--seconds", type=float, default=300.0, help="the equal-wall-clock budget: trainer.time_budget, the whole run's seconds (its training is shorter)")
    parser.add_argument("--teacher-dir", type=Path, default=None,
                        help="a train_teacher run directory (default: train one into OUT/teacher)")
    parser.add_argument("--teachers", nargs="+", default=["exact", "learned"], choices=["exact", "learned"])
    parser.add_argument("--evals", type=int, default=6,
                        help="evaluations per run, evenly spaced (the last at the end): the curves against time")
    parser.add_argument("--times", type=float, nargs="+", default=None,
                        help="training seconds at which a table compares the equal-wall-clock runs "
                             "(default: a third and two thirds of --seconds)")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (each with --threads threads)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: 1 if jobs > 1)")
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/teachers_vs_diff_instruct"))
    parser.add_argument("--report", type=Path, default=None,
                        help="where the table goes (default OUT/results.md); the plot and the JSON go beside it, "
                             "e.g. --report docs/teachers_vs_diff_instruct.md")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every distillation run")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if args.evals < 1:
        parser.error(f"--evals must be at least 1 (got {args.evals})")
    extra, teacher_extra = list(args.overrides), []
    if args.quick:
        args.iterations, args.seconds = QUICK["iterations"], QUICK["seconds"]
        args.seeds = args.seeds if args.seeds != [0, 1, 2] else QUICK["seeds"]
        extra, teacher_extra = [*QUICK["extra"], *extra], QUICK["teacher"]
    commit = git_commit()  # the code the runs of this invocation use
    threads = args.threads or (1 if args.jobs > 1 else None)
    if threads:
        torch.set_num_threads(threads)  # the cost of an iteration is measured as the runs will see it
    args.out.mkdir(parents=True, exist_ok=True)

    teachers: dict[str, Path | None] = {}
    ceilings: dict[str, dict] = {}
    if "exact" in args.teachers:
        teachers["exact"] = None
    if "learned" in args.teachers:
        teacher_dir = args.teacher_dir or train_teacher(args.out, teacher_extra)
        teachers["learned"] = teacher_dir.resolve()
        print(f"learned teacher: {teacher_dir}", flush=True)

    settings = [(m, d) for d in teachers.values() for m in METHODS]
    name_of = {d: t for t, d in teachers.items()}
    costs = read_costs(args.out / "step_costs.json", settings, name_of)
    if costs is None:
        print("measuring the cost of one iteration of each method (interleaved) ...", flush=True)
        costs = step_costs(settings, extra)
        (args.out / "step_costs.json").write_text(json.dumps(
            {f"{name_of[d]} / {m}": c for (m, d), c in costs.items()}, indent=2))
    else:
        print(f"cost of one iteration of each method: read back from {args.out / 'step_costs.json'}", flush=True)
    for (m, d), c in costs.items():
        print(f"  {name_of[d]:8s} {m:26s} {1e3 * c:8.1f} ms/iteration", flush=True)

    jobs = []
    for teacher, teacher_dir in teachers.items():
        for method in METHODS:
            # (label, curve axis): (iterations, time budget, iterations expected, which space the evaluations)
            budgets = {(f"{args.iterations} iterations", "iteration"): (args.iterations, None, args.iterations),
                       (f"{args.seconds:g} s", "train_seconds"):
                           (None, args.seconds, expected_iterations(args.seconds, costs[(method, teacher_dir)]))}
            for (budget, axis), (iterations, time_budget, expected) in budgets.items():
                for seed in args.seeds:
                    slug = f"{teacher}_{re.sub(r'[^a-z0-9]+', '_', method.lower()).strip('_')}"
                    run_dir = args.out / "runs" / f"{slug}_{budget.replace(' ', '')}_seed{seed}"
                    jobs.append({"teacher": teacher, "method": method, "budget": budget, "axis": axis, "seed": seed,
                                 "iterations": iterations, "time_budget": time_budget,
                                 "eval_every": max(1, math.ceil(expected / args.evals)),  # and at the end: the curve
                                 "run_dir": str(run_dir), "threads": threads,
                                 "overrides": [*teacher_overrides(teacher_dir), *method_overrides(method, extra),
                                               "device=cpu"]})
    print(f"{len(jobs)} runs", flush=True)
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(run_one, jobs))
    else:
        results = [run_one(job) for job in jobs]
    for r in results:  # the teacher's own samples, scored by the same evaluator as the students
        if r["teacher"] == "learned" and r["teacher_metrics"]:
            ceilings["learned"] = r["teacher_metrics"]

    threads = threads or torch.get_num_threads()
    header = ["# VarDiU vs Diff-Instruct on MoG-40, exact and learned teacher", "", caveats(args, extra, threads), "",
              f"{datetime.date.today()}, commit {commit}, {machine_line()}, "
              f"torch threads per run: {threads}, jobs: {args.jobs}", "",
              *read_back_note([r["commit"] for r in results if r["read_back"]], len(results)),
              f"Command: `python benchmarks/teachers_vs_diff_instruct.py {' '.join(argv)}`".rstrip(), "",
              f"Seeds {args.seeds}; mean ± half-width of the 95% t-interval over seeds. The cost of one iteration of "
              "each method, measured interleaved in one process before the runs (it spaces the evaluations of the "
              "equal-wall-clock runs; their length is their own time budget's):", ""]
    header += [f"- {name_of[d]} teacher, {m}: {1e3 * c:.1f} ms/iteration" for (m, d), c in costs.items()]
    report = args.report or args.out / "results.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    plot(results, ceilings, report.with_suffix(".png"))
    figure = report.with_suffix(".png").name  # beside the report, linked by name (it also reads from docs/results.md)
    times = args.times or [round(args.seconds / 3), round(2 * args.seconds / 3)]
    at_times = {f"{t}, {m}": by_seed for t in teachers for m, by_seed in by_method(results, t, "train_seconds").items()}
    along_the_way = time_table(at_times, times, label="teacher, method")  # its first line says what it holds
    text = "\n".join([*header, "", *table(results, ceilings), "",
                      f"The equal-wall-clock runs ({args.seconds:g} s) along the way. {along_the_way[0]}",
                      *along_the_way[1:], "", targets_line(), "", f"![VarDiU vs Diff-Instruct]({figure})"]) + "\n"
    report.write_text(text)
    data = {"argv": argv, "costs_ms": {f"{name_of[d]} / {m}": 1e3 * c for (m, d), c in costs.items()},
            "ceilings": ceilings, "runs": results}
    report.with_suffix(".json").write_text(json.dumps(data, indent=2))
    print(text)
    return data


if __name__ == "__main__":
    main()
