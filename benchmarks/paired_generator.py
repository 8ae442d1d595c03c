"""What running the generator once per antithetic pair saves: the training step A/B, interleaved.

With antithetic pairs the batch's latents repeat (z = [z', z']), so the model computes x0 = g(z') once
per pair and repeats it (``generate_once_per_pair``), instead of running g over the whole batch. This
script times the same configuration both ways in one process, in interleaved rounds (the order
alternates), and reports the median over rounds of the per-round ratio once-per-pair / whole-batch.

    python benchmarks/paired_generator.py                                    # the default step
    python benchmarks/paired_generator.py objective.importance_samples=0     # the paper's bound
    python benchmarks/paired_generator.py --threads 1 --rounds 30
"""

from __future__ import annotations

import argparse
import statistics
from unittest import mock

import pyro
import torch

# benchmarks/ is on the path when run as a script
from step_cost import add_timing_arguments, make_step, parse_timing_arguments, ratio_summary  # noqa: E402
from step_overhead import time_steps
from provenance import machine_line
from vardiu_pyro.models import diffusion


def whole_batch(step):
    """``step`` with the model's generator run over every row of the batch (the pre-2026-12-02 model)."""
    def run(iteration: int) -> None:
        with mock.patch.object(diffusion, "generate_once_per_pair", lambda generator, z: generator(z)):
            step(iteration)
    return run


def measure(overrides: list[str], rounds: int, steps: int, warmup: int) -> dict:
    pyro.clear_param_store()
    steps_by_name = {"whole batch": whole_batch(make_step(overrides)), "once per pair": make_step(overrides)}
    for fn in steps_by_name.values():
        time_steps(fn, 0, warmup)
    times = {name: [] for name in steps_by_name}
    for r in range(rounds):
        names = list(steps_by_name) if r % 2 == 0 else list(reversed(steps_by_name))
        for name in names:
            times[name].append(time_steps(steps_by_name[name], warmup + r * steps, steps))
    ratios = [p / w for p, w in zip(times["once per pair"], times["whole batch"])]
    return {"overrides": overrides, "ms_whole_batch": 1e3 * statistics.median(times["whole batch"]),
            "ms_once_per_pair": 1e3 * statistics.median(times["once per pair"]), **ratio_summary(ratios)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the configuration to time")
    add_timing_arguments(parser, rounds=30, steps=10, warmup=10)
    args = parse_timing_arguments(parser, argv)
    row = measure(args.overrides, args.rounds, args.steps, args.warmup)
    print(f"{machine_line()}, torch {torch.__version__}, {torch.get_num_threads()} "
          f"thread(s), {args.rounds} rounds x {args.steps} steps, interleaved; "
          f"overrides: {' '.join(args.overrides) or '(none)'}")
    print(f"whole batch {row['ms_whole_batch']:.2f} ms, once per pair {row['ms_once_per_pair']:.2f} ms a step; "
          f"ratio {row['ratio_median']:.3f} (median; IQR {row['ratio_q1']:.3f}–{row['ratio_q3']:.3f})")
    return row


if __name__ == "__main__":
    main()
