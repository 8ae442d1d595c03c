"""The cost of handing freed memory back to the OS: training steps with and without ``retain_freed_memory``.

glibc's allocator settings hold for a whole process and cannot be put back, so each measurement is
a process of its own: it builds the configuration's step (as ``benchmarks/step_cost.py`` does),
sets ``vardiu_pyro.host_memory.retain_freed_memory`` or leaves glibc's defaults, runs ``--warmup``
steps, then times ``--steps`` steps and counts the page faults and kernel time they cost. The two
settings alternate over ``--rounds`` rounds (the order alternating too, so that the machine's drift
hits both alike); the headline is the median over rounds of retained / returned step time.

    python benchmarks/host_memory.py                                  # the default configuration, 2 threads
    python benchmarks/host_memory.py --threads 1 --rounds 10 trainer.batch_size=1024
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from provenance import git_commit, machine_line  # noqa: E402 (benchmarks/ is on the path when run as a script)
from step_cost import ratio_summary  # noqa: E402

SETTINGS = ("returned", "retained")  # glibc's defaults; retain_freed_memory()


def child(setting: str, steps: int, warmup: int, threads: int, overrides: list[str]) -> dict:
    """In this process: the setting, the configuration's step, and the cost of ``steps`` of them."""
    import torch

    from step_cost import make_step
    from vardiu_pyro.budget import time_steps
    from vardiu_pyro.host_memory import retain_freed_memory

    applied = retain_freed_memory() if setting == "retained" else False
    torch.set_num_threads(threads)
    step = make_step(overrides)
    time_steps(step, 0, warmup)
    before = resource.getrusage(resource.RUSAGE_SELF)
    seconds = time_steps(step, warmup, steps)  # mean seconds a step
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"setting": setting, "applied": applied, "ms_per_step": 1e3 * seconds,
            "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
            "kernel_ms_per_step": 1e3 * (after.ru_stime - before.ru_stime) / steps}


def run_child(setting: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", setting, "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--threads", str(args.threads), *args.overrides]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args: argparse.Namespace) -> dict:
    """Every round's measurement of both settings and the median ratios."""
    rows = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            rows[setting].append(run_child(setting, args))
    ratios = [k["ms_per_step"] / d["ms_per_step"] for k, d in zip(rows["retained"], rows["returned"])]
    median = {s: {key: statistics.median(row[key] for row in rows[s])
                  for key in ("ms_per_step", "page_faults_per_step", "kernel_ms_per_step")} for s in SETTINGS}
    return {"threads": args.threads, "steps": args.steps, "warmup": args.warmup, "overrides": args.overrides,
            "applied": all(row["applied"] for row in rows["retained"]), "rounds": rows, "ratios": ratios,
            **ratio_summary(ratios), "median": median}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the configuration (e.g. trainer.batch_size=1024)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=500, help="timed steps a process")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument("--child", choices=SETTINGS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("need --threads, --rounds and --steps >= 1 and --warmup >= 0")
    if args.child:
        row = child(args.child, args.steps, args.warmup, args.threads, args.overrides)
        print(json.dumps(row))
        return row
    result = measure(args)
    result.update(machine=machine_line(), commit=git_commit())
    print(f"{result['machine']}, commit {result['commit']}; {args.threads} thread(s), {args.rounds} rounds of "
          f"{args.warmup} + {args.steps} steps a process, interleaved; overrides: {' '.join(args.overrides) or 'none'}")
    if not result["applied"]:
        print("retain_freed_memory() did not apply here (not glibc): both settings are glibc's defaults")
    print("| freed memory | ms/step | page faults/step | kernel ms/step |")
    print("|---|---:|---:|---:|")
    for s in SETTINGS:
        m = result["median"][s]
        print(f"| {s} | {m['ms_per_step']:.2f} | {m['page_faults_per_step']:.1f} | {m['kernel_ms_per_step']:.2f} |")
    print(f"retained / returned, median over rounds: {result['ratio_median']:.3f} "
          f"(IQR {result['ratio_q1']:.3f}–{result['ratio_q3']:.3f})")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
