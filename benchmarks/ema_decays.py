"""Several EMA decays of one training run, side by side: which average of the generator's weights to evaluate.

``trainer.ema_decay`` only changes which generator is evaluated, never the training itself, so every
decay can be scored on one and the same run: this script trains one configuration exactly as
``python -m vardiu_pyro.fit`` does (same seed, same draws: the first decay that equals the
configuration's own ``trainer.ema_decay`` reproduces that run's metrics) and keeps one exponential
moving average of the generator per decay, all evaluated at every ``--eval-every`` iterations with the
fit's own evaluator. The comparison between decays is then free of seed-to-seed noise.

    python benchmarks/ema_decays.py --seed 2 --decays 0.999 0.9995 0.9998 0.9999 -- trainer.iterations=51100
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from provenance import git_commit, machine_line  # noqa: E402 (benchmarks/ is on the path when run as a script)
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.evaluation import Evaluator
from vardiu_pyro.optim import PerNetworkOptim
from vardiu_pyro.schedule_clock import check_refits, schedule_position
from vardiu_pyro.validation import compose_config


def run(overrides: list[str], seed: int, decays: list[float], eval_every: int) -> list[dict]:
    """Train once; at every evaluation point, the metrics of each decay's average (0: the generator itself)."""
    cfg = compose_config([f"seed={seed}", *overrides])
    if cfg.trainer.iterations == "auto":
        raise SystemExit("give trainer.iterations=N: the run's length sets its schedules")
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    device = torch.device("cpu")
    pyro.enable_validation(bool(cfg.trainer.pyro_validation))
    pyro.set_rng_seed(seed)  # as vardiu_pyro.fit: the same run, draw for draw
    problem = build_problem(cfg, device)
    objective = build_objective(cfg, problem)
    evaluator = Evaluator(problem.target, num_samples=cfg.trainer.eval_samples,
                          bandwidths=list(cfg.trainer.mmd_bandwidths))
    generator = objective.generator
    averages = {d: AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True)
                for d in decays if d > 0}
    iterations, rows = int(cfg.trainer.iterations), []
    # the fit's clock (vardiu_pyro.training.Trainer): the schedules' position, which a budget run's printed overrides
    # (trainer.schedule_iterations, trainer.refits) set apart from the iteration, drives the learning rate and σ
    length, refits = int(cfg.trainer.schedule_iterations or iterations), [list(r) for r in (cfg.trainer.refits or [])]
    check_refits(refits, iterations, length)
    optimizers = [o for o in objective.optimizers().values() if isinstance(o, PerNetworkOptim)]
    for i in tqdm(range(iterations), desc=f"seed {seed}", mininterval=5):
        position = schedule_position(i, iterations, length, refits)
        for optimizer in optimizers:
            optimizer.follow(position, length)
        out = objective.step(position)
        if not out.get("skipped", False):
            for average in averages.values():
                average.update_parameters(generator)
        done = i + 1
        if done % eval_every == 0 or done == iterations:
            for d in decays:
                model = averages[d].module if d > 0 else generator
                rows.append({"iteration": done, "decay": d, **evaluator(model)})
            tqdm.write(" ".join(f"{r['decay']}: {r['log_mmd']:.3f}/{r['log_density']:.3f}/{r['modes_covered']}"
                                for r in rows[-len(decays):]) + f"  @ {done}")
    return rows


def report(rows: list[dict], decays: list[float], command: str) -> str:
    last = max(r["iteration"] for r in rows)
    lines = ["# EMA decays of one run (`benchmarks/ema_decays.py`)", "",
             f"{time.strftime('%Y-%m-%d')}, commit {git_commit()}, {machine_line()}, "
             f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); command `{command}`", "",
             "| iteration | " + " | ".join(f"{d}" for d in decays) + " |",
             "|---:|" + "---|" * len(decays)]
    for it in sorted({r["iteration"] for r in rows}):
        cells = [next(r for r in rows if r["iteration"] == it and r["decay"] == d) for d in decays]
        mark = "**" if it == last else ""
        lines.append(f"| {mark}{it}{mark} | " + " | ".join(
            f"{c['log_mmd']:.3f} / {c['log_density']:.3f} / {c['modes_covered']}" for c in cells) + " |")
    lines += ["", "Each cell: log-MMD / log-density / modes covered of that decay's average (0: no average)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides (must include trainer.iterations=N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--decays", type=float, nargs="+", default=[0.999, 0.9995, 0.9998, 0.9999])
    parser.add_argument("--eval-every", type=int, default=5000)
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmarks/ema_decays"))
    args = parser.parse_args()
    if any(not 0 <= d < 1 for d in args.decays):
        parser.error("every decay must lie in [0, 1)")
    rows = run(args.overrides, args.seed, args.decays, args.eval_every)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/ema_decays.py " + " ".join(
        [f"--seed {args.seed}", "--decays", *map(str, args.decays), "--eval-every", str(args.eval_every),
         "--out", str(args.out), *args.overrides])
    stem = args.out / f"seed{args.seed}"
    stem.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    text = report(rows, args.decays, command)
    stem.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
