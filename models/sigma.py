"""The noise-level law σ ~ π and the weight w(σ) of the diffusive KL D(θ) = E_π w(σ) KL_σ.

Both may change over training (the published recipe's curriculum): their parameters are
``Ramp`` schedules, pure functions of the iteration, so a run resumed at iteration k sees
exactly the law it would have seen. The iteration may also be a 0-d tensor (a compiled step,
``vardiu_pyro/compiled.py``, passes it so): the ramps and the laws then compute with torch ops, and
nothing here reads the value back into Python.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ExpTransform
from torch import Tensor, nn
from torch.distributions import constraints
from torch.distributions.transforms import CumulativeDistributionTransform

from .stratified import Stratified

__all__ = ["Ramp", "SigmaLaw", "PowerLawSigma", "PowerLaw", "LogNormalSigma", "LogUniformSigma", "FixedSigma", "PowerWeight"]


class Ramp:
    """A value that moves linearly from ``start`` to ``end`` over ``iterations`` iterations.

    ``every`` quantises the ramp (the published recipe adds 0.01 to its power every 1000
    iterations: ``Ramp(0.1, 2.0, iterations=190_000, every=1000)``). ``end=None`` is a constant.
    ``fraction`` < 1 ends the ramp early, at ``fraction * iterations``, and holds ``end`` for the
    rest (a training run's curriculum that leaves its last part at the final setting).
    """

    def __init__(self, start: float, end: float | None = None, iterations: int = 0, every: int = 1,
                 fraction: float = 1.0):
        self.start = float(start)
        self.end = self.start if end is None else float(end)
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"Ramp.fraction must be in (0, 1], got {fraction}")
        self.iterations = max(1, round(int(iterations) * fraction)) if iterations else 0
        self.every = int(every)
        if self.every < 1:
            raise ValueError(f"Ramp.every must be >= 1, got {every}")
        if self.end != self.start and self.iterations <= 0:
            raise ValueError(f"a Ramp from {start} to {end} needs iterations > 0, got {iterations}")

    def __call__(self, iteration: int | float | Tensor) -> float | Tensor:
        if self.end == self.start:
            return self.start
        k = (iteration // self.every) * self.every
        fraction = k / self.iterations
        fraction = fraction.clamp(max=1.0) if isinstance(fraction, Tensor) else min(1.0, fraction)
        return self.start + (self.end - self.start) * fraction  # a 0-d tensor for a tensor iteration

    def __repr__(self) -> str:
        return f"Ramp({self.start}, {self.end}, iterations={self.iterations}, every={self.every})"


def as_ramp(value: Ramp | float) -> Ramp:
    return value if isinstance(value, Ramp) else Ramp(float(value))


def on_anchor(anchor: Tensor, value: float | Tensor) -> Tensor:
    """``anchor + value`` in the anchor's dtype and device (a ramp's value is a float, or a float64 0-d tensor)."""
    return anchor + (value.to(anchor.dtype) if isinstance(value, Tensor) else value)


def _check_range(sigma_min: float, sigma_max: float) -> None:
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


class SigmaLaw(nn.Module):
    """Base class: ``distribution(iteration)`` is a Pyro distribution over σ (scalar event);
    ``batch(iteration, batch_size, blocks)`` the law of a training batch's σ.

    ``stratified``: a batch's σ are drawn one per stratum of equal probability (``Stratified``), in
    ``blocks`` independent blocks, instead of independently: the same marginal law, a batch mean of
    lower variance. The law's distributions must then have an inverse CDF (``icdf``).
    """

    def __init__(self, sigma_min: float, sigma_max: float, stratified: bool = False):
        super().__init__()
        _check_range(sigma_min, sigma_max)
        if not isinstance(stratified, bool):
            raise ValueError(f"stratified must be true or false, got {stratified!r}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.stratified = stratified
        # a buffer gives the law a device: .to(device) moves every distribution it builds
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)

    def distribution(self, iteration: int = 0) -> dist.TorchDistribution:
        raise NotImplementedError

    def range_at(self, iteration: int = 0) -> tuple[float, float]:
        """(σ_min, σ_max) of the law at ``iteration``: the whole range, unless the range ramps."""
        return self.sigma_min, self.sigma_max

    def batch(self, iteration: int, batch_size: int, blocks: int = 1) -> dist.TorchDistribution:
        """The law of ``batch_size`` σ at ``iteration``: iid, or stratified in ``blocks`` blocks."""
        law = self.distribution(iteration).expand((batch_size,))
        return Stratified(law, blocks, self._anchor) if self.stratified else law


class PowerLawSigma(SigmaLaw):
    """σ = σ_min + u^p (σ_max - σ_min),  u ~ U(0, 1)  (the published recipe's law).

    p < 1 puts most mass near σ_max (coarse structure), p > 1 near σ_min (fine detail); a
    ``Ramp`` on p gives the coarse-to-fine curriculum. σ_max may be a ``Ramp`` too (a range that
    shrinks, or grows, with the curriculum); ``sigma_max`` is then the largest value it takes.
    """

    def __init__(self, sigma_min: float, sigma_max: Ramp | float, power: Ramp | float = 1.0, stratified: bool = False):
        top = as_ramp(sigma_max)
        _check_range(sigma_min, min(top.start, top.end))
        super().__init__(sigma_min, max(top.start, top.end), stratified)
        self.top = top  # σ_max at each iteration
        self.power = as_ramp(power)
        if min(self.power.start, self.power.end) <= 0:  # a ramp is linear: positive at both ends, positive throughout
            raise ValueError(f"PowerLawSigma needs a positive power, got {self.power}")

    def distribution(self, iteration: int | float | Tensor = 0) -> dist.TorchDistribution:
        p = self.power(iteration)
        low, high = self.range_at(iteration)
        return PowerLaw(self._anchor + low, high - low, p)

    def range_at(self, iteration: int = 0) -> tuple[float, float]:
        return self.sigma_min, self.top(iteration)


class PowerLaw(dist.TorchDistribution):
    """σ = low + u^p · span, u ~ U(0, 1): the law of ``PowerLawSigma`` at one power p.

    The same draws as ``TransformedDistribution(Uniform(0, 1), [PowerTransform(p),
    AffineTransform(low, span)])`` (one ``torch.rand`` per value, same arithmetic), written out:
    the training step builds it every iteration (p follows the curriculum), and the transform
    stack's construction and shape checks took about 0.5 ms of each step (cProfile, batch 16).
    """

    arg_constraints: dict = {}  # low, span and p are checked by PowerLawSigma
    has_rsample = True

    def __init__(self, low: Tensor, span: float | Tensor, power: float | Tensor, batch_shape=torch.Size(),
                 validate_args=None):
        # span and p: floats, or 0-d tensors (ramps at a tensor iteration)
        self.low = low
        self.span, self.power = (v if isinstance(v, Tensor) else float(v) for v in (span, power))
        super().__init__(torch.Size(batch_shape), validate_args=validate_args)

    @constraints.dependent_property
    def support(self):
        return constraints.interval(self.low, self.low + self.span)

    def expand(self, batch_shape, _instance=None):
        return PowerLaw(self.low, self.span, self.power, batch_shape, validate_args=False)

    def rsample(self, sample_shape=torch.Size()):
        shape = self._extended_shape(sample_shape)
        return self.icdf(torch.rand(shape, dtype=self.low.dtype, device=self.low.device))

    def icdf(self, value):
        return self.low + self.span * value.pow(self.power)  # σ = low + span u^p

    def cdf(self, value):
        return ((value - self.low) / self.span).clamp(0, 1).pow(1 / self.power)  # F(σ) = ((σ - low) / span)^(1/p)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        r = (value - self.low) / self.span
        # π(σ) = r^(1/p - 1) / (p · span),  r = (σ - low) / span
        scale = self.power * self.span
        return (1 / self.power - 1) * r.log() - (scale.log() if isinstance(scale, Tensor) else math.log(scale))


class LogNormalSigma(SigmaLaw):
    """log σ ~ N(mean, std²) truncated to [σ_min, σ_max] (EDM's training law; exact truncation).

    Sampled by the inverse CDF: u ~ U(Φ(a), Φ(b)), σ = exp(mean + std Φ⁻¹(u)), with
    a, b the standardised log σ_min, log σ_max.
    """

    def __init__(self, sigma_min: float, sigma_max: float, mean: Ramp | float = 0.0, std: float = 1.2,
                 stratified: bool = False):
        super().__init__(sigma_min, sigma_max, stratified)
        if not std > 0:
            raise ValueError(f"LogNormalSigma needs std > 0, got {std}")
        self.mean, self.std = as_ramp(mean), float(std)

    def distribution(self, iteration: int = 0) -> dist.TorchDistribution:
        zero = self._anchor
        log_normal = dist.Normal(on_anchor(zero, self.mean(iteration)), zero + self.std)
        lo = log_normal.cdf(zero + math.log(self.sigma_min))
        hi = log_normal.cdf(zero + math.log(self.sigma_max))
        return dist.TransformedDistribution(
            dist.Uniform(lo, hi), [CumulativeDistributionTransform(log_normal).inv, ExpTransform()])


class LogUniformSigma(SigmaLaw):
    """log σ ~ U(log σ_min, log σ_max): equal mass per decade (a teacher's training law)."""

    def distribution(self, iteration: int = 0) -> dist.TorchDistribution:
        zero = self._anchor
        return dist.TransformedDistribution(
            dist.Uniform(zero + math.log(self.sigma_min), zero + math.log(self.sigma_max)), [ExpTransform()])


class FixedSigma(SigmaLaw):
    """A point mass at one σ (per-σ analysis, tests)."""

    def __init__(self, sigma: float):
        if not sigma > 0:
            raise ValueError(f"FixedSigma needs sigma > 0, got {sigma}")
        super().__init__(sigma / 2, sigma)  # the range only has to contain σ
        self.sigma = float(sigma)

    def distribution(self, iteration: int = 0) -> dist.TorchDistribution:
        return dist.Delta(self._anchor + self.sigma)


class PowerWeight(nn.Module):
    """w(σ) = (σ / σ_max)^k;  k = 0 is the uniform weight, k = 2 the published one."""

    def __init__(self, sigma_max: float, exponent: Ramp | float = 2.0):
        super().__init__()
        if not sigma_max > 0:
            raise ValueError(f"PowerWeight needs sigma_max > 0, got {sigma_max}")
        self.sigma_max = float(sigma_max)
        self.exponent = as_ramp(exponent)

    def forward(self, sigma: Tensor, iteration: int | float | Tensor = 0) -> Tensor:
        k = self.exponent(iteration)
        if isinstance(k, float) and k == 0:
            return torch.ones_like(sigma)
        return (sigma / self.sigma_max) ** k  # a tensor k (a ramp at a tensor iteration) is never compared in Python
