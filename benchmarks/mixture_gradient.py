"""The pathwise gradient of a Gaussian mixture's draws against its closed form: ours and Pyro's.

The mixture guide's proposals (``objective.importance_samples > 0``) are reparameterised draws, and the
importance-weighted bound is unbiased only if their gradient is. For a mixture of diagonal Gaussians and
f(z) = exp(a · z) the expectation has a closed form,

    E_q f = Σ_j π_j exp(a · μ_j + ½ Σ_i a_i² s_ji²),

so the Monte Carlo gradient of mean f(z) over draws can be compared with the exact one, for the means, the
scales and the logits. Two ways of drawing, each over ``--estimates`` independent estimates of ``--draws``:

- *ours*: ``guides.mixture.DiagNormalMixture`` (the distributional transform's implicit gradient);
- *Pyro*: ``pyro.distributions.MixtureOfDiagNormals`` (Jankowiak & Karaletsos 2019), which this guide used
  until 2026-12-07.

The table gives, for each parameter group, the largest error over its entries in Monte Carlo standard errors
and relative to the largest exact entry. An unbiased estimator stays within a few standard errors.

    python benchmarks/mixture_gradient.py
    python benchmarks/mixture_gradient.py --dims 1 2 4 --draws 100000
"""

from __future__ import annotations

import argparse

import pyro.distributions as dist
import torch
from provenance import git_commit  # noqa: E402 (benchmarks/ is on the path when run as a script)

from vardiu_pyro.guides.mixture import diag_normal_mixture

GROUPS = ("means", "scales", "logits")


def mixture(d: int, components: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fixed, well-separated parameters in ``d`` dimensions (float64) and the direction a."""
    g = torch.Generator().manual_seed(d)
    loc = 1.5 * torch.randn(components, d, generator=g, dtype=torch.float64)
    scale = 0.5 + 0.5 * torch.rand(components, d, generator=g, dtype=torch.float64)
    logits = torch.randn(components, generator=g, dtype=torch.float64)
    a = torch.linspace(0.7, -0.4, d, dtype=torch.float64)
    return loc, scale, logits, a


def exact_gradient(loc, scale, logits, a) -> list[torch.Tensor]:
    """∇ E_q exp(a · z) of the closed form, per group."""
    params = [t.clone().requires_grad_() for t in (loc, scale, logits)]
    m, s, lg = params
    value = (lg.softmax(-1) * ((m * a).sum(-1) + 0.5 * (s * a).square().sum(-1)).exp()).sum()
    return list(torch.autograd.grad(value, params))


def estimates(draw, loc, scale, logits, a, draws: int, n: int) -> list[torch.Tensor]:
    """``n`` Monte Carlo gradients of mean exp(a · z) over ``draws`` draws of ``draw(loc, scale, logits)``, per group
    (each stacked over the estimates)."""
    out = [[] for _ in GROUPS]
    for _ in range(n):
        params = [t.clone().requires_grad_() for t in (loc, scale, logits)]
        z = draw(*params).rsample((draws,))
        for group, grad in zip(out, torch.autograd.grad((z * a).sum(-1).exp().mean(), params)):
            group.append(grad)
    return [torch.stack(group) for group in out]


DRAWS = {"ours": diag_normal_mixture, "Pyro": dist.MixtureOfDiagNormals}


def measure(d: int, draws: int, n: int, seed: int = 0) -> list[dict]:
    """One row per (way of drawing, group): the largest |error| / standard error and |error| / max |exact|."""
    loc, scale, logits, a = mixture(d)
    exact = exact_gradient(loc, scale, logits, a)
    rows = []
    for name, draw in DRAWS.items():
        if name == "Pyro" and d == 1:  # Pyro's class rejects one-dimensional latents
            continue
        torch.manual_seed(seed)
        for group, e, x in zip(GROUPS, estimates(draw, loc, scale, logits, a, draws, n), exact):
            error = (e.mean(0) - x).abs()
            standard_error = e.std(0) / n**0.5
            rows.append({"way": name, "dims": d, "group": group, "errors_in_se": (error / standard_error).max().item(),
                         "relative_error": (error.max() / x.abs().max()).item()})
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--draws", type=int, default=50_000, help="draws per estimate")
    parser.add_argument("--estimates", type=int, default=10, help="independent estimates (for the standard error)")
    args = parser.parse_args(argv)
    rows = [row for d in args.dims for row in measure(d, args.draws, args.estimates)]
    print(f"∇ E exp(a · z) for a 3-component diagonal Gaussian mixture, commit {git_commit()}, {args.estimates} "
          f"estimates × {args.draws} draws; largest error over a group's entries")
    print("| dims | way | group | error / standard error | error / largest exact entry |")
    print("|---:|---|---|---:|---:|")
    for r in rows:
        print(f"| {r['dims']} | {r['way']} | {r['group']} | {r['errors_in_se']:.1f} | {r['relative_error']:.1%} |")
    return rows


if __name__ == "__main__":
    main()
