"""The default run against the published recipe on this machine, side by side, over seeds.

For each seed the two recipes run at the same time, one torch thread each, so that whatever else the
machine does slows both alike (A/B): ``python -m vardiu_pyro.fit`` as a user runs it, and the same
command with the published recipe's overrides (``PAPER_RECIPE``, DESIGN.md §1: the paper's bound,
σ curriculum from p = 0.1, w = (σ/σ_max)², Adam at 1e-4, batch 1024, width 400). Both get the
default's time budget (``trainer.iterations=auto``: 840 s for the whole run, the count fitted to each
run's own pace), so this is an equal wall-clock comparison: what a user of a 2-core CPU gets from
each recipe in 15 minutes.

Reported (``--report PATH.md``, with ``PATH.json`` and ``PATH.png`` beside it; default
``OUT/recipes.md``): each run's final log-MMD, log-density and modes covered against issue 2's
targets; per recipe the mean ± half-width of the 95% t-interval over seeds, at the end and at fixed
training times (the last evaluation at or before each); and the three metrics against training
seconds and against iterations, one line per run.

    python benchmarks/recipes.py --report docs/recipes.md      # seeds 0 1 2: about 45 min on 2 cores
    python benchmarks/recipes.py --quick --out /tmp/recipes    # a minute: checks the pipeline only

Runs are kept under ``OUT/runs/<recipe>_seed<k>`` (each run's output in ``<run>.log`` beside it); a
run whose ``summary.json`` exists is read back, so an interrupted benchmark resumes; a run of other settings
than this invocation's stops it (``quality.check_read_back`` names what differs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
from pathlib import Path

from provenance import git_commit, machine_line
from quality import (METRICS, check_read_back, meets_targets, plot, read_back_note, read_curve,
                     run_commit, targets_line, time_table)
from vardiu_pyro.validation import compose_config

# The published recipe (DESIGN.md §1): the paper's bound (no importance samples), σ curriculum from p = 0.1,
# w = (σ/σ_max)², Adam lr 1e-4, batch 1024, per-network clip 10, width-400 SiLU networks, constant learning rate.
PAPER_RECIPE = ["objective.importance_samples=0", "sigma=paper", "optim.lr=1e-4", "optim.schedule=constant",
                "optim.max_grad_norm=10", "trainer.batch_size=1024", "generator.width=400", "guide.width=400",
                "generator.depth=3",  # 3 hidden layers, as both networks had in the default until 2026-12-02
                "generator.activation=silu", "guide.activation=silu"]
RECIPES = {"default": [], "published recipe": PAPER_RECIPE}
QUICK = ["trainer.iterations=40", "trainer.eval_every=20", "trainer.eval_samples=1000"]


def run_dir(out: Path, recipe: str, seed: int) -> Path:
    return out / "runs" / f"{recipe.replace(' ', '_')}_seed{seed}"


def run_side_by_side(out: Path, seed: int, extra: list[str]) -> list[str]:
    """Both recipes of one seed at once, one thread each; finished runs (their ``summary.json``) are kept.
    Returns the recipes whose run was read back instead of run."""
    running, read_back = [], []
    for recipe, overrides in RECIPES.items():
        folder = run_dir(out, recipe, seed)
        settings = [f"seed={seed}", "trainer.threads=1", "trainer.progress=false", *overrides, *extra]
        if (folder / "summary.json").exists():
            check_read_back(folder, json.loads((folder / "summary.json").read_text()), compose_config(settings))
            print(f"read back: {folder}", flush=True)
            read_back.append(recipe)
            continue
        cmd = [sys.executable, "-m", "vardiu_pyro.fit", f"hydra.run.dir={folder}", *settings]
        print("$", shlex.join(cmd[1:]), flush=True)
        log = folder.with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as f:
            running.append((subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), log))
    for process, log in running:  # wait for both before reporting a failure: no run is left behind
        process.wait()
    for process, log in running:
        if process.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-20:])
            raise RuntimeError(f"{shlex.join(process.args[1:])} failed (exit {process.returncode}); its log ends:\n{tail}")
    return read_back


def read_run(folder: Path) -> dict:
    summary = json.loads((folder / "summary.json").read_text())
    return {"iterations": summary["iteration"], "train_seconds": summary["train_seconds"], "commit": run_commit(summary),
            "total_seconds": summary["total_seconds"], **{k: summary[k] for k in METRICS}, "curve": read_curve(folder)}


def tables(runs: dict[str, dict[int, dict]], times: list[float]) -> list[str]:
    lines = ["| recipe | seed | iterations | training s | total s | log-MMD | log-density | modes | every target |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for recipe, by_seed in runs.items():
        for seed, r in by_seed.items():
            lines.append(f"| {recipe} | {seed} | {r['iterations']:,} | {r['train_seconds']:.0f} | {r['total_seconds']:.0f} | "
                         f"{r['log_mmd']:.3f} | {r['log_density']:.3f} | {r['modes_covered']} | "
                         f"{'yes' if meets_targets(r) else 'no'} |")
    lines += ["", targets_line(), "", *time_table(runs, times)]
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/recipes"))
    parser.add_argument("--report", type=Path, default=None,
                        help="where the report goes (default OUT/recipes.md); the plot and the JSON go beside it")
    parser.add_argument("--times", type=float, nargs="+", default=[200, 400, 600],
                        help="training seconds at which the table compares the recipes")
    parser.add_argument("--quick", action="store_true", help="a few iterations per run: checks the pipeline only")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run of both recipes")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    extra = [*QUICK, *args.overrides] if args.quick else list(args.overrides)
    commit = git_commit()  # the code the runs of this invocation use
    read_back = [(recipe, seed) for seed in args.seeds for recipe in run_side_by_side(args.out, seed, extra)]
    runs = {recipe: {s: read_run(run_dir(args.out, recipe, s)) for s in args.seeds} for recipe in RECIPES}

    report = args.report or args.out / "recipes.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    plot(runs, report.with_suffix(".png"), "The default run and the published recipe, side by side (one line per seed)")
    lines = ["# The default run against the published recipe, side by side", "",
             f"{datetime.date.today()}, commit {commit}, {machine_line()}", "",
             *read_back_note([runs[recipe][seed]["commit"] for recipe, seed in read_back], 2 * len(args.seeds)),
             f"Command: `python benchmarks/recipes.py {' '.join(argv)}`".rstrip(), "",
             "Each seed's two runs ran at the same time, one torch thread each (A/B: the machine's load hits both "
             "alike), "
             + ("each with the iterations the overrides below fix. "
                if any(o.startswith("trainer.iterations=") for o in extra) else
                f"each with the default's time budget, `trainer.iterations=auto` "
                f"({compose_config(list(extra)).trainer.time_budget:g} s for the whole run): equal "
                "wall-clock. A run beside another is slower than a run alone, so both get fewer iterations than a "
                "user's lone run would. ")
             + "Published recipe: `" + " ".join(PAPER_RECIPE) + "`."
             + (f" Overrides for both: `{' '.join(extra)}`." if extra else ""), "",
             *tables(runs, args.times), "", f"![default vs published recipe]({report.with_suffix('.png').name})"]
    text = "\n".join(lines) + "\n"
    report.write_text(text)
    data = {"argv": argv, "commit": commit, "recipes": RECIPES, "runs": runs}
    report.with_suffix(".json").write_text(json.dumps(data, indent=2))
    print(text)
    return data


if __name__ == "__main__":
    main()
