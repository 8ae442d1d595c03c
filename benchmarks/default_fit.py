"""Quality and time of the default run, `python -m vardiu_pyro.fit`, over seeds.

Runs the command once per seed, one after the other (each run gets the whole machine), and
reports log-MMD, log-density, modes covered and wall-clock seconds per seed, with mean ± sd,
against the targets of issue 2 (log-MMD <= -6.9, log-density >= -7.3, >= 39 of 40 modes,
<= 15 minutes on a 2-core CPU).

    python benchmarks/default_fit.py                       # seeds 0 1 2, writes outputs/default_fit/
    python benchmarks/default_fit.py --seeds 0 --out /tmp/quick -- trainer.iterations=2000
    python benchmarks/default_fit.py --jobs 3 --reuse      # seeds side by side (1 thread each); keep finished runs

With ``--jobs N`` the seeds run N at a time with ``trainer.threads=1`` each: faster for the
quality numbers, but then the seconds are not those of a run that has the machine to itself (the
table says so). ``--reuse`` keeps a run whose directory already holds a ``summary.json`` of the same settings
(``quality.check_read_back``; one of other settings stops the script).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

from provenance import git_commit, machine_line

KEYS = ("log_mmd", "log_density", "modes_covered", "total_seconds", "train_seconds")
TARGETS = {"log_mmd": ("<=", -6.9), "log_density": (">=", -7.3), "modes_covered": (">=", 39),
           "total_seconds": ("<=", 900)}


def run(seed: int, run_dir: Path, overrides: list[str], reuse: bool = False) -> dict:
    if reuse and (run_dir / "summary.json").exists():
        from quality import check_read_back  # here: quality imports this module's TARGETS
        from vardiu_pyro.validation import compose_config

        summary = json.loads((run_dir / "summary.json").read_text())
        check_read_back(run_dir, summary, compose_config([f"seed={seed}", "trainer.progress=false", *overrides]))
        print(f"reusing {run_dir}", flush=True)
        return summary
    cmd = [sys.executable, "-m", "vardiu_pyro.fit", f"seed={seed}", f"hydra.run.dir={run_dir}",
           "trainer.progress=false", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((run_dir / "summary.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="outputs/default_fit",
                        help="folder for default_fit.md / default_fit.json and the runs "
                             "(not docs/, whose default_fit.md is written by hand)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once (each with trainer.threads=1 if > 1)")
    parser.add_argument("--reuse", action="store_true", help="keep runs that already have a summary.json (of the same settings)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every run")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = args.overrides + (["trainer.threads=1"] if args.jobs > 1 else [])
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {s: pool.submit(run, s, out / "runs" / f"default_seed{s}", overrides, args.reuse) for s in args.seeds}
        runs = {s: f.result() for s, f in futures.items()}

    lines = [f"# Default run: `python -m vardiu_pyro.fit {' '.join(args.overrides)}`".rstrip(), "",
             f"{datetime.date.today()}, commit {git_commit()}, {machine_line()}, "
             f"command `python benchmarks/default_fit.py {' '.join(sys.argv[1:])}`".rstrip(), "",
             *(["Seeds ran side by side (`--jobs`), one thread each: the seconds are not those of a run "
                "that has the machine to itself.", ""] if args.jobs > 1 else []),
             *(["Runs were reused where their directory held a `summary.json` (`--reuse`): see each run's "
                "`summary.json` for its own configuration and timing.", ""] if args.reuse else []),
             "| seed | iterations | log-MMD | log-density | modes | seconds (total) | seconds (training) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for s, r in runs.items():
        refits = len(r["config"]["trainer"].get("refits") or [])
        fitted = (f" (time budget: {r['calibration']['iterations']} planned, {refits} re-fits)"
                  if "calibration" in r else "")
        lines.append(f"| {s} | {r['iteration']}{fitted} | {r['log_mmd']:.3f} | {r['log_density']:.3f} | "
                     f"{r['modes_covered']} | {r['total_seconds']:.0f} | {r['train_seconds']:.0f} |")
    summary = {}
    for k in KEYS:
        vals = [float(r[k]) for r in runs.values()]
        summary[k] = {"mean": statistics.mean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                      "worst": max(vals) if TARGETS.get(k, ("<=",))[0] == "<=" else min(vals)}
    lines.append("| mean ± sd | | " + " | ".join(
        f"{summary[k]['mean']:.3f} ± {summary[k]['sd']:.3f}" if k != "modes_covered" else
        f"{summary[k]['mean']:.1f} ± {summary[k]['sd']:.1f}" for k in KEYS[:3]) +
        f" | {summary['total_seconds']['mean']:.0f} | {summary['train_seconds']['mean']:.0f} |")
    lines += ["", "Targets (every seed): " + ", ".join(f"{k} {op} {v}" for k, (op, v) in TARGETS.items())]
    met = {k: all((float(r[k]) <= v) if op == "<=" else (float(r[k]) >= v) for r in runs.values())
           for k, (op, v) in TARGETS.items()}
    lines.append("Met: " + ", ".join(f"{k}: {'yes' if ok else 'NO'}" for k, ok in met.items()))
    text = "\n".join(lines) + "\n"
    (out / "default_fit.md").write_text(text)
    (out / "default_fit.json").write_text(json.dumps({"runs": runs, "summary": summary, "met": met,
                                                      "argv": sys.argv[1:]}, indent=2, default=str))
    print(text)


if __name__ == "__main__":
    main()
