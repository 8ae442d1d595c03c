"""The cost of a training step under several configurations, measured side by side in one process.

Each argument is one set of Hydra overrides (quoted, space-separated; "" for the default). Every
configuration is built once; their steps are then timed in interleaved rounds (the order rotates
from round to round) so that machine noise hits all alike. The headline is the median over rounds
of each configuration's step time divided by the first's, with its interquartile range: the factor
by which ``trainer.iterations=auto`` will give that configuration fewer iterations.

    python benchmarks/step_cost.py "" "objective.importance_samples=1" "guide=flow"
    python benchmarks/step_cost.py "" "generator.depth=4" --threads 1 --rounds 20 --steps 50
"""

from __future__ import annotations

import argparse
import json
import statistics

import pyro
import torch

from step_overhead import quartiles, time_steps  # noqa: E402 (benchmarks/ is on the path when run as a script)
from provenance import machine_line
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.host_memory import retain_freed_memory
from vardiu_pyro.validation import compose_config


def make_step(overrides: list[str]):
    """The ``step(iteration)`` of the objective a configuration builds (CPU, seed 0)."""
    cfg = compose_config(["trainer.iterations=50000", "device=cpu", *overrides])  # any count
    pyro.set_rng_seed(0)
    pyro.enable_validation(bool(cfg.trainer.pyro_validation))  # as `python -m vardiu_pyro.fit` runs
    problem = build_problem(cfg, torch.device("cpu"))
    return build_objective(cfg, problem).step


def ratio_summary(ratios: list[float]) -> dict:
    """The median of per-round ratios and its quartiles: ``ratio_median``, ``ratio_q1``, ``ratio_q3``."""
    q1, median, q3 = quartiles(ratios)
    return {"ratio_median": median, "ratio_q1": q1, "ratio_q3": q3}


def measure(configs: list[str], rounds: int, steps: int, warmup: int) -> list[dict]:
    """Median step seconds of each configuration and the median over rounds of its ratio to the first's."""
    pyro.clear_param_store()
    step_fns = [make_step(c.split()) for c in configs]
    for fn in step_fns:
        time_steps(fn, 0, warmup)
    times = [[] for _ in configs]
    for r in range(rounds):
        order = [(r + j) % len(configs) for j in range(len(configs))]
        for i in order:
            times[i].append(time_steps(step_fns[i], warmup + r * steps, steps))
    rows = []
    for c, t in zip(configs, times):
        ratios = [a / b for a, b in zip(t, times[0])]
        rows.append({"overrides": c, "ms_per_step": 1e3 * statistics.median(t), **ratio_summary(ratios)})
    return rows


def add_timing_arguments(parser: argparse.ArgumentParser, rounds: int, steps: int, warmup: int) -> None:
    """--rounds, --steps (per configuration per round), --warmup and --threads, shared by the step-timing scripts."""
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--steps", type=int, default=steps, help="steps per configuration per round")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def parse_timing_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse, check the timing arguments, set torch's thread count when --threads is given, and keep
    freed memory for reuse as ``python -m vardiu_pyro.fit`` does (``trainer.retain_freed_memory``)."""
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
        parser.error("--rounds and --steps must be >= 1, --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", help='override sets, each quoted ("" for the default); the first is the reference')
    add_timing_arguments(parser, rounds=15, steps=40, warmup=20)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parse_timing_arguments(parser, argv)
    rows = measure(args.configs, args.rounds, args.steps, args.warmup)
    print(f"{machine_line()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{args.rounds} rounds x {args.steps} steps, interleaved")
    print("| overrides | ms/step (median) | × first (median) | IQR |")
    print("|---|---:|---:|---|")
    for row in rows:
        print(f"| `{row['overrides'] or '(default)'}` | {row['ms_per_step']:.2f} | {row['ratio_median']:.3f} | "
              f"{row['ratio_q1']:.3f}–{row['ratio_q3']:.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
