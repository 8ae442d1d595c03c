"""Data-parallel training against threads on one machine: the same iterations, the same samples per step.

Runs, in interleaved rounds (the order alternates, so the machine's drift hits both alike):

- threads: ``python -m vardiu_pyro.fit`` in one process with ``--nproc`` torch threads, batch B;
- data-parallel: ``torchrun --nproc_per_node=N -m vardiu_pyro.fit trainer.distributed=true`` with one
  thread a process and batch B / N each (``trainer.batch_size`` is per process), so each step sees B
  samples either way;

each for ``--iterations`` iterations with no evaluation before the final one, and reads the training
time each run records (``train_seconds`` in ``summary.json``: steps only, no start-up, no evaluation).
The headline is the median over rounds of data-parallel's time over the threads' time (below 1:
data-parallel runs more iterations in the same time).

    python benchmarks/data_parallel.py                          # the default: 2 processes, 2000 iterations, 3 rounds
    python benchmarks/data_parallel.py --iterations 5000 --rounds 5 generator.width=256
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import git_commit, machine_line  # noqa: E402 (benchmarks/ is on the path when run as a script)


def fit_command(mode: str, nproc: int, batch: int, iterations: int, run_dir: Path, overrides: list[str]) -> list[str]:
    """The command of one run: ``threads`` (one process, ``nproc`` threads) or ``data-parallel`` (``nproc`` processes)."""
    common = [f"trainer.iterations={iterations}", f"trainer.eval_every={iterations}", "trainer.progress=false",
              "device=cpu", f"hydra.run.dir={run_dir}", *overrides]
    if mode == "threads":
        return [sys.executable, "-m", "vardiu_pyro.fit", f"trainer.threads={nproc}", f"trainer.batch_size={batch}",
                *common]
    logs = run_dir.with_name(run_dir.name + "_torchrun")  # the agent's logs, beside the run (else a new /tmp folder)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            f"--log-dir={logs}", "-m", "vardiu_pyro.fit", "trainer.distributed=true", "trainer.threads=1",
            f"trainer.batch_size={batch // nproc}", *common]


def run_once(command: list[str], run_dir: Path) -> float:
    """Run one fit; its ``train_seconds``."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return json.loads((run_dir / "summary.json").read_text())["train_seconds"]


def measure(nproc: int, batch: int, iterations: int, rounds: int, overrides: list[str], root: Path) -> dict:
    """Every round's seconds of both modes (alternating which goes first) and the median ratio."""
    seconds = {"threads": [], "data-parallel": []}
    for r in range(rounds):
        for mode in (("threads", "data-parallel") if r % 2 == 0 else ("data-parallel", "threads")):
            run_dir = root / f"{mode}_{r}"
            seconds[mode].append(run_once(fit_command(mode, nproc, batch, iterations, run_dir, overrides), run_dir))
    ratios = [d / t for d, t in zip(seconds["data-parallel"], seconds["threads"])]
    return {"nproc": nproc, "batch_size": batch, "iterations": iterations, "overrides": overrides,
            "seconds": seconds, "ratios": ratios, "ratio_median": statistics.median(ratios),
            "ms_per_step": {mode: 1e3 * statistics.median(s) / iterations for mode, s in seconds.items()}}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both modes (e.g. generator.width=256)")
    parser.add_argument("--nproc", type=int, default=2, help="processes of the data-parallel run, threads of the other")
    parser.add_argument("--batch-size", type=int, default=512, help="samples per step (split over the processes)")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the result to this file")
    args = parser.parse_args(argv)
    if args.nproc < 2 or args.batch_size % args.nproc or args.iterations < 1 or args.rounds < 1:
        parser.error("need --nproc >= 2 dividing --batch-size, --iterations >= 1 and --rounds >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.nproc, args.batch_size, args.iterations, args.rounds, args.overrides, Path(tmp))
    result.update(machine=machine_line(), commit=git_commit())
    print(f"{result['machine']}, commit {result['commit']}; {args.iterations} iterations, batch {args.batch_size}, "
          f"{args.rounds} rounds interleaved")
    print("| round | threads (s) | data-parallel (s) | data-parallel / threads |")
    print("|---:|---:|---:|---:|")
    for r, (t, d, q) in enumerate(zip(result["seconds"]["threads"], result["seconds"]["data-parallel"], result["ratios"])):
        print(f"| {r} | {t:.2f} | {d:.2f} | {q:.3f} |")
    print(f"median: {result['ratio_median']:.3f} (ms a step: {result['ms_per_step']['threads']:.2f} with {args.nproc} "
          f"threads, {result['ms_per_step']['data-parallel']:.2f} over {args.nproc} processes)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
