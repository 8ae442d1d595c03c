"""Statistics of R independent gradient estimates against a reference gradient, with bootstrap intervals.

g_1 .. g_R in R^P are independent estimates (each from one batch of B samples), g* the reference
gradient with its own Monte Carlo variance v* = tr Cov(g*), m their mean:

    variance  V     = 1/(R-1) Σ_r ||g_r - m||²                 tr Cov(g), the variance of ONE estimate
    bias²           = ||m - g*||² - V/R - v*                    debiased: E||m - g*||² = ||E g - ∇D||² + V/R + v*
    MSE             = 1/R Σ_r ||g_r - g*||² - v*                E||g - ∇D||² = bias² + V
    SNR             = sqrt(||m||² - V/R) / sqrt(V)              ||E g|| / sqrt(tr Cov g)
    cosine          = 1/R Σ_r cos(g_r, g*)                      the direction one optimiser step follows
    cosine_of_mean  = m · g* / sqrt((||m||² - V/R)(||g*||² - v*))   cos(E g, ∇D), the norms debiased as bias² is
    resolution      = sqrt(V/R + v* + e*²)                      a bias below this is not resolved

where e* is the reference's inner error (its self-normalised score's: ``reference_gradient``), systematic, so it is
not subtracted from bias² but only widens the resolution.

Every statistic is a function of the Gram matrix G_rs = g_r · g_s, of h_r = g_r · g* and of
||g*||², so the bootstrap (resampling the R estimates with replacement, i.e. integer counts c_r
with Σ c_r = R) costs O(R²) per resample instead of O(R P). Its intervals are bias-corrected
(``gradient_statistics``): the resamples are centred on the point estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pyro.ops.welford import WelfordCovariance
from torch import Tensor

__all__ = ["STATISTICS", "GramSummary", "gram_summary", "raw_statistics_from_counts", "finish", "gradient_statistics",
           "StreamingMoments", "moment_statistics"]

STATISTICS = ("bias", "variance", "mse", "snr", "cosine", "cosine_of_mean", "resolution")


@dataclass
class GramSummary:
    """What the statistics need of R estimates: G (R, R), h (R,), ||g*||², v* and e*² (float64, CPU)."""

    gram: Tensor
    dots: Tensor
    ref_sq: float
    ref_var: float
    ref_inner_sq: float = 0.0

    @property
    def repeats(self) -> int:
        return self.dots.shape[0]


def gram_summary(samples: Tensor, reference: Tensor, reference_variance: float = 0.0,
                 reference_inner_error: float = 0.0) -> GramSummary:
    """Summarise estimates ``samples`` (R, P) against ``reference`` (P,) with variance tr Cov = ``reference_variance``
    and inner error ``reference_inner_error``."""
    g = samples.detach().to("cpu", torch.float64)
    ref = reference.detach().to("cpu", torch.float64)
    return GramSummary(g @ g.T, g @ ref, float(ref @ ref), float(reference_variance), float(reference_inner_error) ** 2)


def raw_statistics_from_counts(s: GramSummary, counts: Tensor) -> dict[str, Tensor]:
    """The statistics before their last, monotone step (``finish``): bias², SNR² and resolution² unclamped, the rest
    as they are; for each row of ``counts`` (n, R), the multiplicities of the R estimates (ones: the data itself)."""
    c = counts.to(torch.float64)
    R = c.sum(-1)  # = R for every resample
    diag = s.gram.diagonal()
    mm = torch.einsum("nr,rs,ns->n", c, s.gram, c) / R**2  # ||m||²
    mr = c @ s.dots / R  # m · g*
    variance = (c @ diag - R * mm) / (R - 1)  # 1/(R-1) Σ c_r ||g_r - m||²
    ref_norm = math.sqrt(s.ref_sq)
    return {"bias": mm - 2 * mr + s.ref_sq - variance / R - s.ref_var,  # bias²
            "variance": variance,
            "mse": c @ (diag - 2 * s.dots + s.ref_sq) / R - s.ref_var,
            "snr": (mm - variance / R) / variance,  # SNR²
            "cosine": c @ (s.dots / (diag.clamp_min(1e-300).sqrt() * ref_norm)) / R,
            "cosine_of_mean": mr / ((mm - variance / R) * (s.ref_sq - s.ref_var)).clamp_min(1e-300).sqrt(),
            "resolution": variance / R + s.ref_var + s.ref_inner_sq}  # resolution²


FINISH = {"bias": lambda t: t.clamp_min(0).sqrt(), "snr": lambda t: t.clamp_min(0).sqrt(),
          "resolution": lambda t: t.clamp_min(0).sqrt(), "cosine": lambda t: t.clamp(-1, 1),
          "cosine_of_mean": lambda t: t.clamp(-1, 1)}  # monotone: quantiles pass through them


def finish(name: str, raw: Tensor) -> Tensor:
    """A raw statistic (``raw_statistics_from_counts``) as reported: square roots of the squared ones (negative
    estimates of a square read as 0), cosines within [-1, 1]."""
    return FINISH.get(name, lambda t: t)(raw)


def gradient_statistics(samples: Tensor, reference: Tensor, reference_variance: float = 0.0,
                        resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
                        reference_inner_error: float = 0.0) -> dict[str, dict[str, float]]:
    """``{statistic: {"value", "lo", "hi"}}``: point estimates and bias-corrected bootstrap intervals over the R estimates.

    A resample repeats some estimates and leaves others out, which moves a statistic's resampled values off the
    point estimate: its variance reads about (R-1)/R of the data's, its mean carries resampling noise that the
    debiased bias² does not subtract, and with many parameters against few estimates the percentile interval
    can miss the point estimate and the true value altogether. So each raw statistic's resamples are shifted by the
    point estimate minus their mean (the bootstrap's bias correction), and the interval is their percentiles,
    taken before the square roots.
    """
    s = gram_summary(samples, reference, reference_variance, reference_inner_error)
    R = s.repeats
    if R < 2:
        raise ValueError(f"need at least 2 gradient estimates, got {R}")
    point = raw_statistics_from_counts(s, torch.ones(1, R, dtype=torch.float64))
    gen = torch.Generator().manual_seed(seed)
    draws = torch.randint(0, R, (resamples, R), generator=gen)
    counts = torch.zeros(resamples, R, dtype=torch.float64).scatter_add_(1, draws, torch.ones(resamples, R, dtype=torch.float64))
    boot = raw_statistics_from_counts(s, counts)
    alpha = (1 - confidence) / 2
    out = {}
    for name in STATISTICS:
        b = boot[name][torch.isfinite(boot[name])]
        if b.numel() and torch.isfinite(point[name]).all():
            b = b + (point[name] - b.mean())  # centred on the point estimate
            lo, hi = finish(name, torch.quantile(b, torch.tensor([alpha, 1 - alpha], dtype=torch.float64))).tolist()
        else:
            lo, hi = math.nan, math.nan
        out[name] = {"value": finish(name, point[name]).item(), "lo": lo, "hi": hi}
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
                      reference_variance: Tensor, reference_inner_error: Tensor | float = 0.0) -> dict[str, Tensor]:
    """Point estimates of bias, variance and MSE from streamed moments (each group: last dimension is P)."""
    ref = reference.to("cpu", torch.float64)
    ref_var = torch.as_tensor(reference_variance, dtype=torch.float64)
    inner_sq = torch.as_tensor(reference_inner_error, dtype=torch.float64).square()
    bias_sq = (mean - ref).square().sum(-1) - variance / repeats - ref_var
    return {"bias": bias_sq.clamp_min(0).sqrt(), "variance": variance, "mse": bias_sq + variance,
            "resolution": (variance / repeats + ref_var + inner_sq).sqrt(), "ref_norm": ref.square().sum(-1).sqrt()}
