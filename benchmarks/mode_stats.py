"""Where a student's samples fall short of a Gaussian-mixture target, mode by mode.

The three metrics of a run (log-MMD, mean log-density, modes covered) say how far a student is
from the target, not why. This script splits the shortfall: samples far from every mode (bridges
between modes, strays), the spread of the samples of each mode against the target's, how far each
mode's sample mean sits from the component's mean, and how unevenly the mass is shared between
modes; and how much of log-MMD the shares explain (the log-MMD of perfect modes at the student's
shares, and of the student's modes resampled to fair shares). Every number is printed for the
target's own samples too (the floor: with finitely many samples even the target is not perfect).

    python benchmarks/mode_stats.py RUN_DIR [--samples 40000] [--seed 1] [--json OUT.json]
    python benchmarks/mode_stats.py RUN_DIR RUN_DIR ...      # which modes lose mass across runs

RUN_DIR is a ``python -m vardiu_pyro.fit`` run directory (its EMA generator when it kept one); the
target must be a ``GaussianMixture`` with one isotropic scale (MoG-40, MoG-9). With several run
directories (of one target) it prints, mode by mode, the share of mass over the runs (mean, smallest,
how many runs gave it less than half a fair share) beside the distance to its nearest mode: whether
the same modes lose in every run, and whether they are the crowded ones.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from run import load_student

RADIUS = 3.0  # a sample belongs to a mode within this many component standard deviations of its mean
MMD_SAMPLES = 10_000  # the fit's evaluation size (trainer.eval_samples)
BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)  # the fit's (trainer.mmd_bandwidths)


def mode_shares(samples: torch.Tensor, locs: torch.Tensor, scale: float) -> tuple[torch.Tensor, ...]:
    """(each mode's share, 1: fair; each sample's nearest mode; whether it lies within RADIUS std of it)."""
    distance, nearest = torch.cdist(samples, locs).min(dim=1)
    inside = distance < RADIUS * scale
    shares = torch.bincount(nearest[inside], minlength=locs.shape[0]).double() * locs.shape[0] / samples.shape[0]
    return shares, nearest, inside


def mode_stats(samples: torch.Tensor, locs: torch.Tensor, scale: float, log_prob) -> dict:
    """Statistics of ``samples`` (N, D) against the mixture of N(locs[k], scale² I), equal weights."""
    n, k = samples.shape[0], locs.shape[0]
    shares, nearest, inside = mode_shares(samples, locs, scale)
    spreads, offsets = [], []
    for j in range(k):
        own = samples[inside & (nearest == j)] - locs[j]
        if own.shape[0] >= 20:  # too few samples say nothing about a mode's shape
            spreads.append(own.var(dim=0).mean().sqrt().item() / scale)  # rms per-axis std over the component's
            offsets.append(own.mean(dim=0).norm().item() / scale)
    log_density = log_prob(samples)
    return {"samples": n, "outside_modes": 1.0 - inside.double().mean().item(),
            "share_min": shares.min().item(), "share_max": shares.max().item(),
            "modes_below_half_share": int((shares < 0.5).sum().item()),
            "spread_median": torch.tensor(spreads).median().item() if spreads else float("nan"),
            "offset_median": torch.tensor(offsets).median().item() if offsets else float("nan"),
            "log_density_mean": log_density.mean().item(), "log_density_median": log_density.median().item(),
            "log_density_below_-12": (log_density < -12).double().mean().item(),
            "log_density_mean_above_-12": log_density[log_density >= -12].mean().item()}


def shares_against_shape(samples: torch.Tensor, reference: torch.Tensor, locs: torch.Tensor, scale: float) -> dict:
    """How much of log-MMD the shares of mass between modes explain, and how much the modes' shapes.

    ``log_mmd``: the fit's metric of ``samples`` against ``reference`` (the first ``MMD_SAMPLES`` of each);
    ``log_mmd_shares_only``: the target's own components weighted by the samples' shares (each sample counts for
    its nearest mode): perfect modes, the samples' shares; ``log_mmd_fair_shares``: the samples resampled so that
    every mode has its fair share: the samples' modes, perfect shares.
    """
    from vardiu_pyro.metrics import mmd_squared
    from vardiu_pyro.models.targets import GaussianMixture

    x, y = samples[:MMD_SAMPLES], reference[:MMD_SAMPLES]
    k, n = locs.shape[0], x.shape[0]
    nearest = torch.cdist(x, locs).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=k).double()
    shares_only = GaussianMixture(locs, scale, weights=(counts / n).float()).sample(n)
    # each mode's own samples, drawn with replacement so that every mode gets 1/k of the draws
    fair = x[torch.multinomial((1.0 / counts[nearest]).float(), n, replacement=True)]
    log_mmd = lambda a: math.log(mmd_squared(a, y, BANDWIDTHS).mean().item())  # noqa: E731
    return {"log_mmd": log_mmd(x), "log_mmd_shares_only": log_mmd(shares_only), "log_mmd_fair_shares": log_mmd(fair)}


def poorest_modes(samples: torch.Tensor, locs: torch.Tensor, scale: float, count: int = 5) -> list[dict]:
    """The ``count`` modes with the smallest shares: index, share (1: fair), distance to the nearest other mode."""
    shares = mode_shares(samples, locs, scale)[0]
    apart = nearest_mode_distance(locs)
    return [{"mode": int(j), "share": shares[j].item(), "nearest_mode_distance": apart[j].item()}
            for j in shares.argsort()[:count]]


def nearest_mode_distance(locs: torch.Tensor) -> torch.Tensor:
    """Each component's distance to its nearest other component."""
    return (torch.cdist(locs, locs) + torch.diag(torch.full((locs.shape[0],), math.inf))).min(dim=1).values


def shares_across_runs(shares: torch.Tensor, locs: torch.Tensor) -> list[dict]:
    """Per mode, from ``shares`` (runs, modes; 1: fair): mean and smallest share over the runs, how many
    runs gave it less than half a fair share, its distance to the nearest mode; poorest mean first."""
    apart = nearest_mode_distance(locs)
    mean, low, below = shares.mean(dim=0), shares.min(dim=0).values, (shares < 0.5).sum(dim=0)
    return [{"mode": int(j), "share_mean": mean[j].item(), "share_min": low[j].item(), "runs_below_half": int(below[j]),
             "nearest_mode_distance": apart[j].item()} for j in mean.argsort()]


LABELS = {"outside_modes": "samples farther than 3 std from every mode",
          "modes_below_half_share": "modes with less than half a fair share",
          "share_min": "smallest share of a mode (1: fair)", "share_max": "largest share of a mode",
          "spread_median": "spread within a mode / the component's (median over modes)",
          "offset_median": "distance of a mode's sample mean from its component's, in std (median)",
          "log_density_mean": "mean target log-density", "log_density_median": "median target log-density",
          "log_density_below_-12": "share of samples with log-density below -12 (strays)",
          "log_density_mean_above_-12": "mean target log-density of the others",
          "log_mmd": "log-MMD against an independent target set (10,000 each, the fit's metric)",
          "log_mmd_shares_only": "... of the target's components at these shares of mass",
          "log_mmd_fair_shares": "... of these samples resampled to fair shares"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    parser.add_argument("--samples", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    if len(args.run_dirs) > 1:
        return across_runs(parser, args)
    run_dir = args.run_dirs[0]
    student, target = load_student(run_dir)
    locs, scale = mixture_of(parser, target)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        z = torch.randn(args.samples, *student.latent_shape)
        samples, own, reference = student(z), target.sample(args.samples), target.sample(MMD_SAMPLES)
        result = {"student": mode_stats(samples, locs, scale, target.log_prob),
                  "target": mode_stats(own, locs, scale, target.log_prob)}
        result["student"].update(shares_against_shape(samples, reference, locs, scale))
        result["target"].update(shares_against_shape(own, reference, locs, scale))
        result["poorest_modes"] = poorest_modes(samples, locs, scale)
    print(f"{run_dir}: {args.samples} samples each (seed {args.seed})")
    print(f"{'':72s} {'student':>9s} {'target':>9s}")
    for key, label in LABELS.items():
        print(f"{label:72s} {result['student'][key]:9.3f} {result['target'][key]:9.3f}")
    print(f"poorest modes of the student (component std {scale:.2f}): " + ", ".join(
        f"{m['mode']} ({m['share']:.2f} of a fair share, {m['nearest_mode_distance']:.1f} from its nearest mode)"
        for m in result["poorest_modes"]))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))


def mixture_of(parser: argparse.ArgumentParser, target) -> tuple[torch.Tensor, float]:
    """The target's component means and scale, or a clear error."""
    if not (hasattr(target, "locs") and hasattr(target, "scale")):
        parser.error(f"{type(target).__name__} is not a Gaussian mixture with locs and one scale")
    return target.locs, float(target.scale)


def across_runs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The per-mode table of ``shares_across_runs`` over the runs in ``args.run_dirs``."""
    rows, locs = [], None
    for run_dir in args.run_dirs:
        student, target = load_student(run_dir)
        run_locs, scale = mixture_of(parser, target)
        if locs is not None and not torch.equal(run_locs, locs):
            parser.error(f"{run_dir} has another target than {args.run_dirs[0]}")
        locs = run_locs
        torch.manual_seed(args.seed)
        with torch.no_grad():
            rows.append(mode_shares(student(torch.randn(args.samples, *student.latent_shape)), locs, scale)[0])
    table = shares_across_runs(torch.stack(rows), locs)
    print(f"{len(rows)} runs, {args.samples} samples each (seed {args.seed}); shares of mass (1: fair), poorest mean first")
    print("| mode | mean share | smallest | runs below 1/2 | nearest mode at |")
    print("|---:|---:|---:|---:|---:|")
    for r in table:
        print(f"| {r['mode']} | {r['share_mean']:.2f} | {r['share_min']:.2f} | {r['runs_below_half']} | "
              f"{r['nearest_mode_distance']:.1f} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": [str(d) for d in args.run_dirs], "modes": table}, indent=2))


if __name__ == "__main__":
    main()
