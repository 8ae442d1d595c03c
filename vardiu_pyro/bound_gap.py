"""The bound gap of VarDiU, estimated by importance sampling (for low-dimensional latents).

For one σ the bound exceeds the diffusive KL by the guide's posterior error:

    U(σ) - KL(p_θ^σ || p_d^σ) = E_{z, ε}[ log p_θ(z, x_t) - log q_φ(z | x_t, σ) - log p_θ^σ(x_t) ]
                              = E_{x_t ~ p_θ^σ} KL( p_θ(z | x_t) || q_φ(z | x_t, σ) )  >= 0,

with p_θ(z, x_t) = N(z; 0, I) N(x_t; g_θ(z), σ²I) and x_t = g_θ(z) + σε. The teacher's
log-density cancels (U and KL contain the same -log p_d^σ(x_t)), so the gap needs none; only the
student's marginal log p_θ^σ(x_t) is intractable. It is estimated by importance sampling with
``num_inner`` draws z'_k from the defensive proposal r(z' | x_t) = (1 - α) q_φ(z' | x_t, σ) + α N(z'; 0, I)
(the guide alone misses mass where it is too narrow; the prior alone almost never lands in the
posterior at small σ; the mixture keeps every weight below N(x_t; g(z'), σ²I) / α):

    w_k = p_θ(z'_k, x_t) / r(z'_k | x_t),
    log p̂_lo = log (1/K) Σ_k w_k                  E[log p̂_lo] <= log p_θ^σ(x_t)      (Jensen)
    log p̂_hi = log (1/(K+1)) (w_0 + Σ_k w_k)      E[log p̂_hi] >= log p_θ^σ(x_t)

where w_0 is the weight of the z that generated x_t, an exact posterior draw (the second bound is
the importance-weighted bound read backwards: including one posterior sample among the proposals
over-estimates the marginal in expectation). The gap estimates built from them therefore
sandwich the true gap in expectation, ``gap_lower`` <= gap <= ``gap``, and both converge as K grows;
a wide sandwich says the proposal is poor. ``standard_error`` is the Monte Carlo error over the
outer draws (z, ε, σ).

The training objective weights σ: ``bound_gap`` reports E_{σ ~ π} w(σ) (U - KL_σ), the gap of the
weighted bound actually minimised, with π and w read at the given iteration; ``bound_gap_at``
reports the unweighted gap at one σ.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from .seeding import seeded

__all__ = ["BoundGap", "bound_gap", "bound_gap_at", "gap_terms", "log_joint", "log_marginal_bounds",
           "bound_gap_summary"]

LOG_2PI = math.log(2 * math.pi)


@dataclass
class BoundGap:
    """A Monte Carlo estimate of the (weighted) bound gap; ``gap_lower`` <= true gap <= ``gap`` in expectation."""

    gap: float  # E w (U - KL) with log p_θ^σ estimated from below (over-estimates the gap)
    gap_lower: float  # the same with the posterior draw among the proposals (under-estimates it)
    standard_error: float  # Monte Carlo standard error of ``gap`` over the outer draws
    bound: float | None  # E w U (None without a teacher log-density)
    kl: float | None  # E w KL, from the same estimate of log p_θ^σ as ``gap`` (None without one)
    num_outer: int
    num_inner: int

    def as_dict(self) -> dict:
        return asdict(self)


def log_joint(generator: nn.Module, z: Tensor, x_t: Tensor, sigma: Tensor) -> Tensor:
    """log p_θ(z, x_t) = log N(z; 0, I) + log N(x_t; g_θ(z), σ²I), shape (B,)."""
    x0 = generator(z)
    d = x_t[0].numel()
    log_prior = _log_prior(z, z.dim() - 1)
    resid = ((x_t - x0).flatten(1) / sigma[:, None]).square().sum(-1)
    return log_prior - 0.5 * (resid + d * LOG_2PI) - d * sigma.log()


def _log_prior(z: Tensor, event_dims: int) -> Tensor:
    """log N(z; 0, I) over the last ``event_dims`` dimensions."""
    z = z.flatten(-event_dims)
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * LOG_2PI)


@torch.no_grad()
def log_marginal_bounds(generator: nn.Module, guide: nn.Module, x_t: Tensor, sigma: Tensor, z_post: Tensor,
                        num_inner: int = 128, prior_fraction: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """Importance-sampling estimates (lo, hi) of log p_θ^σ(x_t), and log q_φ(z_post | x_t, σ); each (B,).

    ``z_post`` is a draw of p_θ(z | x_t) (the z that generated x_t); ``lo`` leaves it out of the
    proposals (E lo <= log p), ``hi`` includes it (E hi >= log p).
    """
    if num_inner < 1 or not 0 <= prior_fraction < 1:
        raise ValueError(f"need num_inner >= 1 and 0 <= prior_fraction < 1, got {num_inner} and {prior_fraction}")
    B, K = x_t.shape[0], int(num_inner)
    log_mix = (math.log1p(-prior_fraction), math.log(prior_fraction) if prior_fraction > 0 else -math.inf)

    event_dims = z_post.dim() - 1

    def log_proposal(q, z):  # log r(z | x_t) = log[(1 - α) q(z | x_t) + α N(z; 0, I)]
        return torch.logaddexp(log_mix[0] + q.log_prob(z), log_mix[1] + _log_prior(z, event_dims))

    q = guide(x_t, sigma)
    log_q_post = q.log_prob(z_post)
    log_w0 = log_joint(generator, z_post, x_t, sigma) - log_proposal(q, z_post)

    z = q.sample((K,))  # (K, B, *latent_shape): the guide network runs once per x_t
    from_prior = torch.rand(K, B, device=z.device) < prior_fraction
    z = torch.where(from_prior.view(K, B, *[1] * (z.dim() - 2)), torch.randn_like(z), z)
    log_r = log_proposal(q, z)  # (K, B)
    x_rep = x_t.unsqueeze(0).expand(K, *x_t.shape).reshape(K * B, *x_t.shape[1:])
    s_rep = sigma.unsqueeze(0).expand(K, B).reshape(K * B)
    log_w = log_joint(generator, z.reshape(K * B, *z.shape[2:]), x_rep, s_rep).view(K, B) - log_r
    lo = torch.logsumexp(log_w, 0) - math.log(K)
    hi = torch.logsumexp(torch.cat([log_w, log_w0.unsqueeze(0)]), 0) - math.log(K + 1)
    return lo, hi, log_q_post


@torch.no_grad()
def gap_terms(generator: nn.Module, guide: nn.Module, z: Tensor, x_t: Tensor, sigma: Tensor,
              num_inner: int = 128, prior_fraction: float = 0.1, chunk_rows: int = 65_536) -> dict[str, Tensor]:
    """Per-draw terms for joint draws (z, x_t) at σ (each (B,)): ``gap`` (log p̂ from below),
    ``gap_lower`` (from above), ``log_p`` (the lower estimate of log p_θ^σ(x_t)), ``log_joint``, ``log_q``."""
    out: dict[str, list[Tensor]] = {"gap": [], "gap_lower": [], "log_p": [], "log_joint": [], "log_q": []}
    step = max(1, chunk_rows // int(num_inner))
    for i in range(0, z.shape[0], step):
        zc, xc, sc = z[i:i + step], x_t[i:i + step], sigma[i:i + step]
        lo, hi, log_q = log_marginal_bounds(generator, guide, xc, sc, zc, num_inner, prior_fraction)
        lj = log_joint(generator, zc, xc, sc)
        for key, value in (("gap", lj - log_q - lo), ("gap_lower", lj - log_q - hi), ("log_p", lo),
                           ("log_joint", lj), ("log_q", log_q)):
            out[key].append(value)
    return {key: torch.cat(values) for key, values in out.items()}


def _joint_draws(generator: nn.Module, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """(z, x_t) ~ p_θ(z, x_t | σ): z ~ N(0, I), x_t = g_θ(z) + σ ε."""
    param = next(generator.parameters())
    z = torch.randn((sigma.shape[0], *generator.latent_shape), device=param.device, dtype=param.dtype)
    x0 = generator(z)
    return z, x0 + sigma.view(-1, *[1] * (x0.dim() - 1)) * torch.randn_like(x0)


def _estimate(generator, guide, sigma: Tensor, weight: Tensor, num_inner: int, prior_fraction: float,
              teacher) -> BoundGap:
    z, x_t = _joint_draws(generator, sigma)
    t = gap_terms(generator, guide, z, x_t, sigma, num_inner, prior_fraction)
    wg = weight * t["gap"]
    n = wg.shape[0]
    se = wg.std().item() / math.sqrt(n) if n > 1 else math.nan
    bound = kl = None
    if teacher is not None and getattr(teacher, "has_log_prob", False):
        log_d = teacher.log_prob(x_t, sigma)
        bound = (weight * (t["log_joint"] - t["log_q"] - log_d)).mean().item()
        kl = (weight * (t["log_p"] - log_d)).mean().item()
    return BoundGap(gap=wg.mean().item(), gap_lower=(weight * t["gap_lower"]).mean().item(), standard_error=se,
                    bound=bound, kl=kl, num_outer=n, num_inner=int(num_inner))


@torch.no_grad()
def bound_gap(generator: nn.Module, guide: nn.Module, sigma_law, weight, iteration: int = 0, num_outer: int = 1024,
              num_inner: int = 128, prior_fraction: float = 0.1, teacher=None, seed: int = 0) -> BoundGap:
    """E_{σ ~ π} w(σ) (U(σ) - KL_σ): the gap of the weighted bound, π and w taken at ``iteration``.

    Draws its own random numbers from ``seed`` (the global RNG state is restored afterwards).
    """
    param = next(generator.parameters())
    with seeded(seed, param.device):
        sigma = sigma_law.distribution(iteration).sample((num_outer,)).to(param.dtype)
        w = weight(sigma, iteration).to(sigma)
        return _estimate(generator, guide, sigma, w, num_inner, prior_fraction, teacher)


@torch.no_grad()
def bound_gap_at(generator: nn.Module, guide: nn.Module, sigma: float, num_outer: int = 1024, num_inner: int = 128,
                 prior_fraction: float = 0.1, teacher=None, seed: int = 0) -> BoundGap:
    """U(σ) - KL_σ at one noise level (unweighted)."""
    param = next(generator.parameters())
    with seeded(seed, param.device):
        s = torch.full((num_outer,), float(sigma), device=param.device, dtype=param.dtype)
        return _estimate(generator, guide, s, torch.ones_like(s), num_inner, prior_fraction, teacher)


def bound_gap_summary(objective, problem, iteration: int, num_outer: int = 512, num_inner: int = 64,
                      sigmas: int = 5, per_sigma_outer: int = 128) -> dict:
    """Entries for ``summary.json`` when the target is 2-D and the objective has a guide; else ``{}``.

    ``bound_gap`` (weighted, at the final π and w), its lower estimate and standard error, and
    ``bound_gap_per_sigma`` (the same three, unweighted, at ``sigmas`` noise levels spaced
    geometrically over π's range). The gap is that of the trained generator (not its EMA): the
    guide was trained to match its posterior. The defaults keep it to a few seconds on a CPU
    (about 70,000 generator evaluations); with a poor guide at small σ the estimate is then
    coarse, which the distance between ``bound_gap`` and ``bound_gap_lower`` shows. For precise
    values call ``bound_gap`` with more draws (``benchmarks/guides.py`` does, from the checkpoint).
    """
    guide = getattr(objective, "guide", None)
    if guide is None or math.prod(problem.target.event_shape) != 2:
        return {}
    law, generator = problem.sigma_law, objective.generator
    est = bound_gap(generator, guide, law, problem.weight, iteration, num_outer, num_inner, teacher=problem.teacher)
    low, high = law.range_at(iteration)  # π's range at the final iteration (σ_max may ramp: sigma.max_start)
    levels = torch.logspace(math.log10(low), math.log10(high), sigmas).tolist()
    per_sigma = {}
    for s in levels:
        at = bound_gap_at(generator, guide, s, per_sigma_outer, num_inner)
        per_sigma[f"{s:.4g}"] = {"gap": at.gap, "gap_lower": at.gap_lower, "se": at.standard_error}
    return {"bound_gap": est.gap, "bound_gap_lower": est.gap_lower, "bound_gap_se": est.standard_error,
            "bound_gap_per_sigma": per_sigma}
