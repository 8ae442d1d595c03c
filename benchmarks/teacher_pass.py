"""The exact MoG-40 teacher's work in a VarDiU step: its score and log-density at a batch of noised points.

Two ways, timed in interleaved rounds (A B, B A, ...) on the same points:

- *direct*: ``torch.softmax`` and ``torch.logsumexp`` of the logits, each from its own logits pass, with
  the squared distances as one broadcast difference reduced over the last dimension (how the teacher
  computed them until 2026-12-06);
- *library*: ``ExactTeacher.score_and_log_prob``, what the objective calls (``models/targets.py``: one
  logits pass, distances summed coordinate by coordinate, one exp floored at ``EXP_FLOOR``).

The points: x ~ N(0, 20² I), spread over MoG-40's square [-40, 40]², and σ log-uniform on [0.1, 14], the
default σ law's range; at small σ most components lie thousands of log-units from a point.

    python benchmarks/teacher_pass.py                    # batch 512 and 1024, 2 threads or torch's default
    python benchmarks/teacher_pass.py --batch-sizes 4096 --rounds 30
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from provenance import git_commit, machine_line  # noqa: E402 (benchmarks/ is on the path when run as a script)

from vardiu_pyro.models import ExactTeacher, mog40


def direct_score_and_log_prob(target, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: softmax and logsumexp of the logits, computed twice, distances by one reduction."""
    var = target._var(sigma)

    def logits():
        sq = (x.unsqueeze(-2) - target.locs).square().sum(-1)
        return target.log_weights - 0.5 * sq / var - 0.5 * x.shape[-1] * torch.log(2 * math.pi * var)

    r = torch.softmax(logits(), -1)
    return (r @ target.locs - x) / var, torch.logsumexp(logits(), -1)


def seconds_per_call(fn, calls: int) -> float:
    tick = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - tick) / calls


def measure(batch_size: int, rounds: int, calls: int) -> dict:
    target = mog40()
    teacher = ExactTeacher(target)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 2, generator=g) * 20
    sigma = torch.exp(torch.empty(batch_size).uniform_(math.log(0.1), math.log(14.0), generator=g))
    sides = {"direct": lambda: direct_score_and_log_prob(target, x, sigma),
             "library": lambda: teacher.score_and_log_prob(x, sigma)}
    (s0, l0), (s1, l1) = sides["direct"](), sides["library"]()
    agree = {"score": (s1 - s0).abs().max().item(), "log_prob": (l1 - l0).abs().max().item()}
    times = {name: [] for name in sides}
    for name, fn in sides.items():  # warm-up
        seconds_per_call(fn, calls)
    for r in range(rounds):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            times[name].append(seconds_per_call(sides[name], calls))
    ratios = [d / lib for d, lib in zip(times["direct"], times["library"])]
    q = statistics.quantiles(ratios, n=4, method="inclusive")  # within the values' range
    return {"batch_size": batch_size, "direct_us": 1e6 * statistics.median(times["direct"]),
            "library_us": 1e6 * statistics.median(times["library"]), "speedup": statistics.median(ratios),
            "speedup_q1": q[0], "speedup_q3": q[2], "max_abs_difference": agree}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=50, help="calls per side per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2 (the quartiles of the per-round ratios)")
    torch.set_num_threads(args.threads)
    rows = [measure(b, args.rounds, args.calls) for b in args.batch_sizes]
    print(f"MoG-40 teacher, score and log-density: commit {git_commit()}, {machine_line()}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; medians of {args.rounds} interleaved rounds")
    print("| batch | direct µs | library µs | direct / library (median) | IQR | max |Δ score|, |Δ log p| |")
    print("|---:|---:|---:|---:|---|---|")
    for r in rows:
        d = r["max_abs_difference"]
        print(f"| {r['batch_size']} | {r['direct_us']:.0f} | {r['library_us']:.0f} | {r['speedup']:.2f} | "
              f"{r['speedup_q1']:.2f}–{r['speedup_q3']:.2f} | {d['score']:.1e}, {d['log_prob']:.1e} |")


if __name__ == "__main__":
    main()
