"""Stratified σ (or quasi-random z) against iid draws: the variance of VarDiU's training gradient at one trained state.

At a fit run's checkpoint (``--run RUN_DIR``; without it, the default trained ``--iterations`` steps
first), draws ``--repeats`` fresh training batches with iid σ and as many with stratified σ
(``sigma.stratified``, ``models/stratified.py``), interleaved, and computes for each the gradient
of the training surrogate (the objective's own ``VarDiUELBO`` terms: U_K with antithetic pairs, as
``python -m vardiu_pyro.fit`` steps on it) with respect to the generator and to the guide. Both are
unbiased for the same gradient, so the comparison is of spreads: the trace of the covariance (the
mean squared deviation from the mean), and, because single batches with very large gradients
dominate that trace, the median and upper quantiles of the squared deviation. ``--draws z`` compares
iid z with quasi-random z instead (``objective.quasi_random``, ``models/quasi_random.py``), σ as the run's.

    python benchmarks/stratified_sigma.py --run RUN_DIR       # at a trained run's checkpoint
    python benchmarks/stratified_sigma.py --run RUN_DIR --draws z   # iid against quasi-random z
    python benchmarks/stratified_sigma.py                     # trains the default 12,000 steps first
    python benchmarks/stratified_sigma.py --quick             # a few steps and repeats: checks that it runs

Writes ``stratified_sigma.md`` and ``stratified_sigma.json`` into ``--out`` (default
``outputs/benchmarks/stratified_sigma``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyro
import torch
from omegaconf import OmegaConf
from tqdm.auto import tqdm

from provenance import git_commit, machine_line
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.fit import fit
from vardiu_pyro.gradient_estimators import flat_grad
from vardiu_pyro.objectives import VarDiU
from vardiu_pyro.resume import load_run_checkpoint
from vardiu_pyro.validation import compose_config

QUANTILES = (0.5, 0.9, 0.99)
NETWORKS = ("generator", "guide")
# the draw compared: its name in the tables, and the name of the joint draw against iid
DRAWS = {"sigma": ("σ", "stratified"), "z": ("z", "quasi-random")}


def train_default(run_dir: Path, iterations: int, overrides: list[str]) -> None:
    """The default configuration trained ``iterations`` steps into ``run_dir`` (its checkpoint is the state)."""
    cfg = compose_config([f"trainer.iterations={iterations}", f"trainer.eval_every={iterations}", *overrides])
    pyro.clear_param_store()
    fit(cfg, run_dir=run_dir)


def load_state(run_dir: Path):
    """The objective of a run, at its checkpoint, and the iteration it stopped at."""
    state, _ = load_run_checkpoint(run_dir)
    cfg = OmegaConf.create(json.loads(state["config"]))
    pyro.clear_param_store()
    problem = build_problem(cfg, torch.device("cpu"))
    objective = build_objective(cfg, problem)
    if not isinstance(objective, VarDiU):
        raise SystemExit(f"{run_dir} is a {type(objective).__name__} run; this benchmark compares VarDiU's gradients")
    objective.load_state_dict(state["objective"])
    return objective, problem, int(state["iteration"])


def gradients(objective: VarDiU, iteration: int) -> dict[str, torch.Tensor]:
    """One training batch's surrogate gradient, per network, flattened."""
    terms = objective.elbo.terms(objective.model, objective.svi.guide, objective.batch_size, iteration=iteration)
    loss = terms.surrogate.mean()
    params = {name: [p for p in objective.networks[name].parameters() if p.requires_grad] for name in NETWORKS}
    return {name: flat_grad(loss, params[name], retain_graph=name != NETWORKS[-1]) for name in NETWORKS}


def squared_deviations(samples: torch.Tensor) -> torch.Tensor:
    """||g_r - mean||² of each of R gradients (R, P), shape (R,)."""
    return (samples - samples.mean(0)).square().sum(1).double()


def spread(samples: torch.Tensor) -> dict:
    """Trace of the covariance and quantiles of the squared deviation from the mean, of (R, P) gradients."""
    d2 = squared_deviations(samples)
    out = {"variance_trace": float(d2.sum() / (len(d2) - 1))}
    out.update({f"q{round(100 * q)}": float(torch.quantile(d2, q)) for q in QUANTILES})
    out["squared_norm_of_mean"] = float(samples.mean(0).double().square().sum())
    return out


def bootstrap_ratio(a: torch.Tensor, b: torch.Tensor, statistic, resamples: int, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of statistic(b) / statistic(a), resampling each set's repeats."""
    g = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(resamples):
        ia = torch.randint(len(a), (len(a),), generator=g)
        ib = torch.randint(len(b), (len(b),), generator=g)
        ratios.append(statistic(b[ib]) / statistic(a[ia]))
    r = torch.tensor(ratios)
    return float(torch.quantile(r, 0.025)), float(torch.quantile(r, 0.975))


def set_joint(objective: VarDiU, problem, draws: str, on: bool) -> None:
    """Switch the compared draw: stratified σ (``draws="sigma"``) or quasi-random z (``"z"``) on or off."""
    if draws == "sigma":
        problem.sigma_law.stratified = on
    else:
        objective.model.quasi_random = on  # the model builds its prior again for the other setting


def compare(objective: VarDiU, problem, iteration: int, repeats: int, seed: int, progress: bool = True,
            draws: str = "sigma") -> dict:
    joint = DRAWS[draws][1]
    before = problem.sigma_law.stratified if draws == "sigma" else objective.model.quasi_random
    grads = {mode: {name: [] for name in NETWORKS} for mode in ("iid", joint)}
    torch.manual_seed(seed)
    try:
        for _ in tqdm(range(repeats), desc=f"gradients (iid and {joint} {DRAWS[draws][0]}, interleaved)",
                      disable=not progress):
            for mode in grads:
                set_joint(objective, problem, draws, mode == joint)
                for name, g in gradients(objective, iteration).items():
                    grads[mode][name].append(g)
    finally:
        set_joint(objective, problem, draws, before)
    result = {}
    for name in NETWORKS:
        iid, strat = (torch.stack(grads[mode][name]) for mode in ("iid", joint))
        row = {"iid": spread(iid), joint: spread(strat)}
        for key in ("variance_trace", "q50"):
            row[f"ratio_{key}"] = row[joint][key] / row["iid"][key]
        row["ratio_q50_interval"] = bootstrap_ratio(squared_deviations(iid), squared_deviations(strat), torch.median,
                                                    1000)
        result[name] = row
    return result


def table(result: dict, draws: str = "sigma") -> str:
    symbol, joint = DRAWS[draws]
    lines = [f"| network | {symbol} | variance trace | median squared deviation | 90% | 99% | squared norm of the mean |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, row in result.items():
        for mode in ("iid", joint):
            s = row[mode]
            lines.append(f"| {name} | {mode} | {s['variance_trace']:.3g} | {s['q50']:.3g} | {s['q90']:.3g} | "
                         f"{s['q99']:.3g} | {s['squared_norm_of_mean']:.3g} |")
    lines.append("")
    for name, row in result.items():
        lo, hi = row["ratio_q50_interval"]
        lines.append(f"- {name}: {joint} / iid, variance trace {row['ratio_variance_trace']:.2f}, median squared "
                     f"deviation {row['ratio_q50']:.2f} (bootstrap 95%: {lo:.2f}-{hi:.2f})")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a fit run directory with a checkpoint (default: train one first)")
    parser.add_argument("--iterations", type=int, default=12_000, help="steps of the default trained without --run")
    parser.add_argument("--repeats", type=int, default=400, help="batches per σ mode")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=1, help="seed of the compared draws")
    parser.add_argument("--draws", choices=sorted(DRAWS), default="sigma",
                        help="sigma: iid against stratified σ; z: iid against quasi-random z")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="a tiny run and few repeats: checks that it all runs")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the run trained without --run")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stem = "stratified_sigma" if args.draws == "sigma" else "quasi_random_z"
    out = args.out or Path("outputs/benchmarks") / (stem + ("-quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    run_dir = args.run
    if run_dir is None:
        run_dir = out / "run"
        iterations = 60 if args.quick else args.iterations
        overrides = ["trainer.eval_samples=1000", "trainer.batch_size=64"] if args.quick else []
        train_default(run_dir, iterations, overrides + list(args.overrides))
    objective, problem, iteration = load_state(run_dir)
    repeats = 8 if args.quick else args.repeats
    result = compare(objective, problem, iteration, repeats, args.seed, draws=args.draws)
    symbol, joint = DRAWS[args.draws]
    command = "python benchmarks/stratified_sigma.py" + (f" --run {args.run}" if args.run else "") + (
        f" --draws {args.draws}" if args.draws != "sigma" else "")
    header = (f"{joint.capitalize()} against iid {symbol}: spread of the training gradient, {repeats} batches of "
              f"{objective.batch_size} each, at iteration {iteration} of {run_dir} (commit {git_commit()}; "
              f"{machine_line()}; `{command}`)")
    text = header + "\n\n" + table(result, args.draws) + "\n"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(
        {"run": str(run_dir), "iteration": iteration, "repeats": repeats, "batch_size": objective.batch_size,
         "draws": args.draws, "commit": git_commit(), "machine": machine_line(), "result": result}, indent=2))
    print(text)


if __name__ == "__main__":
    main()
