"""How much slower code runs straight after a matrix product, on this machine, and for how long.

    python benchmarks/after_products.py                  # 1 thread and torch's default count
    python benchmarks/after_products.py --threads 2 --samples 300 --json after.json

The SVI step runs Pyro's sites between the networks' matrix products; on some machines code that runs right after
such products is several times slower than the same code run back to back (docs/step_time.md), which is what makes
the overhead ratio of ``step_overhead.py`` depend on the machine. This script times three pieces of code, each the
first thing after something else and then once more (its second call):

- python: 200 dict lookups in a loop, no torch;
- torch ops: the twin's ``x_t = x0 + σ ε`` on (1024, 2) tensors;
- Pyro site: the model's ``x0`` site (``pyro.deterministic`` in a kept batch plate under ``poutine.trace``), batch 1024;

after: nothing but the same code (back to back), a 1024 × 1024 float32 matrix product, and a copy of as many bytes as
that product reads (8 MiB: memory traffic without arithmetic). Medians over ``--samples`` rounds, every combination
in every round (so the machine's drift hits all alike), in microseconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import pyro
import torch

from provenance import machine_line
from step_overhead import x0_site

CODES = ("python", "torch ops", "Pyro site")
BEFORE = ("nothing", "matmul", "copy")


def probes(size: int = 1024) -> tuple[dict, dict]:
    """(code to time by name, what runs before it by name)."""
    table = {i: i for i in range(200)}

    def python() -> int:
        total = 0
        for i in range(200):
            total += table[i]
        return total

    x0, sigma, eps = torch.randn(1024, 2), torch.rand(1024, 1), torch.randn(1024, 2)
    a, b, product = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
    source, sink = torch.randn(2 * size * size), torch.empty(2 * size * size)
    codes = {"python": python, "torch ops": lambda: x0 + sigma * eps, "Pyro site": x0_site(x0, event_dims=1)}
    before = {"nothing": None, "matmul": lambda: torch.mm(a, b, out=product), "copy": lambda: sink.copy_(source)}
    return codes, before


def measure(threads: int, samples: int) -> dict:
    """Microseconds of each code's first and second call after each ``before`` (nothing: the code itself), with
    ``threads`` torch threads (the count before is restored)."""
    codes, before = probes()
    times = {(code, prior, call): [] for code in CODES for prior in BEFORE for call in ("first", "second")}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(samples):
            for code in CODES:
                fn = codes[code]
                for prior in BEFORE:
                    (before[prior] or fn)()
                    for call in ("first", "second"):
                        tick = time.perf_counter()
                        fn()
                        times[(code, prior, call)].append(time.perf_counter() - tick)
    finally:
        torch.set_num_threads(previous)
    return {"threads": threads, "samples": samples,
            "us": {code: {prior: {call: 1e6 * statistics.median(times[(code, prior, call)]) for call in ("first", "second")}
                          for prior in BEFORE} for code in CODES}}


def table(rows: list[dict]) -> list[str]:
    lines = ["| threads | code | back to back | after a matmul: first call | second call | after a copy: first call |"
             " second call |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for code in CODES:
            us = r["us"][code]
            lines.append(f"| {r['threads']} | {code} | {us['nothing']['first']:.1f} | {us['matmul']['first']:.1f} | "
                         f"{us['matmul']['second']:.1f} | {us['copy']['first']:.1f} | {us['copy']['second']:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="the thread count measured beside 1 (default: torch's)")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    if args.threads < 1 or args.samples < 1:
        parser.error("--threads and --samples must be at least 1")
    pyro.enable_validation(False)  # as `python -m vardiu_pyro.fit` runs (trainer.pyro_validation)
    rows = [measure(t, args.samples) for t in sorted({1, args.threads})]
    meta = {"machine": machine_line(), "torch": torch.__version__, "pyro": pyro.__version__}
    print(f"Microseconds, medians of {args.samples} rounds ({meta['machine']}, torch {meta['torch']}, pyro {meta['pyro']})")
    print("\n".join(table(rows)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
