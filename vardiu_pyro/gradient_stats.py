"""Statistics of R independent gradient estimates against a reference gradient, with bootstrap intervals.

g_1 .. g_R in R^P are independent estimates (each from one batch of B samples), g* the reference
gradient with its own Monte Carlo variance v* = tr Cov(g*), m their mean:

    variance  V     = 1/(R-1) Σ_r ||g_r - m||²                 tr Cov(g), the variance of ONE estimate
    bias²           = ||m - g*||² - V/R - v*                    debiased: E||m - g*||² = ||E g - ∇D||² + V/R + v*
    MSE             = 1/R Σ_r ||g_r - g*||² - v*                E||g - ∇D||² = bias² + V
    SNR             = sqrt(||m||² - V/R) / sqrt(V)              ||E g|| / sqrt(tr Cov g)
    cosine          = 1/R Σ_r cos(g_r, g*)                      the direction one optimiser step follows
    cosine_of_mean  = cos(m, g*)
    resolution      = sqrt(V/R + v*)                            a bias below this is not resolved

Every statistic is a function of the Gram matrix G_rs = g_r · g_s, of h_r = g_r · g* and of
||g*||², so the bootstrap (resampling the R estimates with replacement, i.e. integer counts c_r
with Σ c_r = R) costs O(R²) per resample instead of O(R P).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro.ops.welford import WelfordCovariance
from torch import Tensor

__all__ = ["STATISTICS", "GramSummary", "gram_summary", "statistics_from_counts", "gradient_statistics",
           "StreamingMoments", "moment_statistics"]

STATISTICS = ("bias", "variance", "mse", "snr", "cosine", "cosine_of_mean", "resolution")


@dataclass
class GramSummary:
    """What the statistics need of R estimates: G (R, R), h (R,), ||g*||² and v* (float64, CPU)."""

    gram: Tensor
    dots: Tensor
    ref_sq: float
    ref_var: float

    @property
    def repeats(self) -> int:
        return self.dots.shape[0]


def gram_summary(samples: Tensor, reference: Tensor, reference_variance: float = 0.0) -> GramSummary:
    """Summarise estimates ``samples`` (R, P) against ``reference`` (P,) with variance tr Cov = ``reference_variance``."""
    g = samples.detach().to("cpu", torch.float64)
    ref = reference.detach().to("cpu", torch.float64)
    return GramSummary(g @ g.T, g @ ref, float(ref @ ref), float(reference_variance))


def statistics_from_counts(s: GramSummary, counts: Tensor) -> dict[str, Tensor]:
    """Every statistic for each row of ``counts`` (n, R): multiplicities of the R estimates (ones: the data itself)."""
    c = counts.to(torch.float64)
    R = c.sum(-1)  # = R for every resample
    diag = s.gram.diagonal()
    mm = torch.einsum("nr,rs,ns->n", c, s.gram, c) / R**2  # ||m||²
    mr = c @ s.dots / R  # m · g*
    variance = (c @ diag - R * mm) / (R - 1)  # 1/(R-1) Σ c_r ||g_r - m||²
    bias_sq = mm - 2 * mr + s.ref_sq - variance / R - s.ref_var
    mse = c @ (diag - 2 * s.dots + s.ref_sq) / R - s.ref_var
    ref_norm = math.sqrt(s.ref_sq)
    cosine = c @ (s.dots / (diag.clamp_min(1e-300).sqrt() * ref_norm)) / R
    return {"bias": bias_sq.clamp_min(0).sqrt(),
            "variance": variance,
            "mse": mse,
            "snr": ((mm - variance / R).clamp_min(0) / variance).sqrt(),
            "cosine": cosine,
            "cosine_of_mean": mr / (mm.clamp_min(1e-300).sqrt() * ref_norm),
            "resolution": (variance / R + s.ref_var).sqrt()}


def gradient_statistics(samples: Tensor, reference: Tensor, reference_variance: float = 0.0,
                        resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{statistic: {"value", "lo", "hi"}}``: point estimates and percentile-bootstrap intervals over the R estimates."""
    s = gram_summary(samples, reference, reference_variance)
    R = s.repeats
    if R < 2:
        raise ValueError(f"need at least 2 gradient estimates, got {R}")
    point = statistics_from_counts(s, torch.ones(1, R, dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, R, (resamples, R), generator=gen)
    counts = torch.zeros(resamples, R, dtype=torch.float64).scatter_add_(1, draws, torch.ones(resamples, R, dtype=torch.float64))
    boot = statistics_from_counts(s, counts)
    alpha = (1 - confidence) / 2
    out = {}
    for name in STATISTICS:
        b = boot[name][torch.isfinite(boot[name])]
        lo, hi = (torch.quantile(b, torch.tensor([alpha, 1 - alpha], dtype=torch.float64)).tolist()
                  if b.numel() else (math.nan, math.nan))
        out[name] = {"value": point[name].item(), "lo": lo, "hi": hi}
    return out


class StreamingMoments:
    """Mean and trace-variance of a stream of tensors of one shape (n groups × P), by Welford's scheme
    (``pyro.ops.welford``, diagonal): for statistics per σ bin without keeping every estimate."""

    def __init__(self):
        self.welford = WelfordCovariance(diagonal=True)
        self.shape: torch.Size | None = None

    def update(self, sample: Tensor) -> None:
        self.shape = sample.shape
        self.welford.update(sample.detach().to("cpu", torch.float64).flatten())

    @property
    def count(self) -> int:
        return self.welford.n_samples

    def mean(self) -> Tensor:
        return torch.as_tensor(self.welford._mean).view(self.shape)

    def variance_trace(self) -> Tensor:
        """tr Cov of each group (the last dimension summed), shape ``shape[:-1]``."""
        return self.welford.get_covariance(regularize=False).view(self.shape).sum(-1)


def moment_statistics(mean: Tensor, variance: Tensor, repeats: int, reference: Tensor,
                      reference_variance: Tensor) -> dict[str, Tensor]:
    """Point estimates of bias, variance and MSE from streamed moments (each group: last dimension is P)."""
    ref = reference.to("cpu", torch.float64)
    ref_var = torch.as_tensor(reference_variance, dtype=torch.float64)
    bias_sq = (mean - ref).square().sum(-1) - variance / repeats - ref_var
    return {"bias": bias_sq.clamp_min(0).sqrt(), "variance": variance, "mse": bias_sq + variance,
            "resolution": (variance / repeats + ref_var).sqrt(), "ref_norm": ref.square().sum(-1).sqrt()}
