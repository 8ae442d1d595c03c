"""Sample-quality metrics as torchmetrics ``Metric`` classes.

- ``MultiBandwidthMMD``: the biased squared MMD with Gaussian kernels averaged over bandwidths
  (the evaluation of FAB, DiKL and VarDiU; reported as log-MMD = log of this value).
- ``MeanLogDensity``: the mean target log-density of samples.
- ``ModesCovered``: how many mixture components receive at least a fair share of the samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from vardiu_pyro.models.targets import EXP_FLOOR

__all__ = ["MultiBandwidthMMD", "MeanLogDensity", "ModesCovered", "kernel_sums", "mmd_squared"]

# Kernel arguments below EXP_FLOOR = -80 are clamped before exp. The largest change to a kernel sum is
# n·m·1.8e-35, far below float64 resolution of any sum that matters, and it spares the CPU the very slow
# underflow path of exp (13x faster on the far pairs, which are most pairs).


def _squared_distances(x: Tensor, y: Tensor, out: Tensor) -> Tensor:
    """||x_i - y_j||², written into ``out`` (n, m).

    Low dimensions: coordinate differences, exact in float32. High dimensions: the matrix-product
    expansion ||x||² + ||y||² - 2 x·y, in float64 because its cancellation would otherwise cost
    float32 several digits (the caller also centres the data).
    """
    if x.shape[1] <= 16:
        torch.sub(x[:, None, 0], y[None, :, 0], out=out).square_()
        for d in range(1, x.shape[1]):
            out.add_((x[:, None, d] - y[None, :, d]).square_())
        return out
    x64, y64 = x.double(), y.double()
    d2 = torch.addmm(x64.square().sum(1, keepdim=True), x64, y64.T, beta=1.0, alpha=-2.0)
    return out.copy_(d2.add_(y64.square().sum(1)).clamp_(min=0.0))


def kernel_sums(x: Tensor, y: Tensor, bandwidths: Sequence[float], chunk_size: int = 128,
                symmetric: bool = False) -> Tensor:
    """Σ_ij exp(-||x_i - y_j||² / (2 h²)) for every bandwidth h, in float64, shape (len(h),).

    Each block of squared distances is computed once and shared by all bandwidths; blocks of
    ``chunk_size`` rows keep the working set in cache. With ``symmetric=True`` (x is y) only the
    blocks on and above the diagonal are computed.
    """
    x, y = x.flatten(1), y.flatten(1)
    coeffs = [-0.5 / h**2 for h in bandwidths]
    totals = torch.zeros(len(coeffs), dtype=torch.float64, device=x.device)
    d2_buf = x.new_empty(min(chunk_size, x.shape[0]), y.shape[0])
    k_buf = torch.empty_like(d2_buf)
    for start in range(0, x.shape[0], chunk_size):
        xc = x[start:start + chunk_size]
        cols = slice(start, None) if symmetric else slice(None)
        yc = y[cols]
        d2 = _squared_distances(xc, yc, d2_buf[: xc.shape[0], : yc.shape[0]])
        k = k_buf[: xc.shape[0], : yc.shape[0]]
        if symmetric:  # block [start:start+c, start:]: the diagonal square counts once, the rest twice
            c = xc.shape[0]
            for i, coeff in enumerate(coeffs):
                torch.mul(d2, coeff, out=k).clamp_(min=EXP_FLOOR).exp_()
                totals[i] += k[:, :c].sum(dtype=torch.float64) + 2 * k[:, c:].sum(dtype=torch.float64)
        else:
            for i, coeff in enumerate(coeffs):
                torch.mul(d2, coeff, out=k).clamp_(min=EXP_FLOOR).exp_()
                totals[i] += k.sum(dtype=torch.float64)
    return totals


def mmd_squared(x: Tensor, y: Tensor, bandwidths: Sequence[float], chunk_size: int = 128) -> Tensor:
    """Biased MMD² per bandwidth:  mean_ij k(x_i,x_j) + mean_ij k(y_i,y_j) - 2 mean_ij k(x_i,y_j)."""
    shift = y.flatten(1).mean(0)
    x, y = x.flatten(1) - shift, y.flatten(1) - shift
    kxx = kernel_sums(x, x, bandwidths, chunk_size, symmetric=True) / x.shape[0] ** 2
    kyy = kernel_sums(y, y, bandwidths, chunk_size, symmetric=True) / y.shape[0] ** 2
    kxy = kernel_sums(x, y, bandwidths, chunk_size) / (x.shape[0] * y.shape[0])
    return kxx + kyy - 2 * kxy


class MultiBandwidthMMD(Metric):
    """Biased squared MMD with Gaussian kernels exp(-||x-y||²/(2h²)), averaged over bandwidths h.

    Used like torchmetrics' FID: ``update(samples, real=True)`` for reference samples,
    ``update(samples, real=False)`` for model samples, ``compute()`` for the value (MMD², not its
    log). With ``reset_real_features=False`` the reference samples survive ``reset()`` and their
    kernel term is computed once and cached, so repeated evaluations cost only the model-side
    blocks.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, bandwidths: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
                 reset_real_features: bool = True, chunk_size: int = 128, **kwargs):
        super().__init__(**kwargs)
        if len(bandwidths) == 0 or any(h <= 0 for h in bandwidths):
            raise ValueError(f"bandwidths must be positive and non-empty, got {list(bandwidths)}")
        self.bandwidths = [float(h) for h in bandwidths]
        self.reset_real_features = reset_real_features
        self.chunk_size = chunk_size
        self.add_state("real", default=[], dist_reduce_fx="cat")
        self.add_state("fake", default=[], dist_reduce_fx="cat")
        self._real_cache: tuple[int, Tensor, Tensor] | None = None  # (n, shift, mean k(y, y'))

    def forward(self, *args, **kwargs):
        """Not supported: a batch's MMD needs both sample sets, and torchmetrics' forward would merge the batch's
        state into the kept reference set, duplicating it. Call ``update`` for each set, then ``compute``."""
        raise TypeError("MultiBandwidthMMD compares two sample sets: call update(samples, real=True/False) for each, "
                        "then compute()")

    def _apply(self, fn, *args, **kwargs):
        self._real_cache = None  # computed on the old device or dtype; ``.to()`` moves the states, not this cache
        return super()._apply(fn, *args, **kwargs)

    def update(self, samples: Tensor, real: bool) -> None:
        samples = samples.detach().flatten(1)
        if real:
            self.real.append(samples)
            self._real_cache = None
        else:
            self.fake.append(samples)

    def _real_term(self, y: Tensor) -> tuple[Tensor, Tensor]:
        if self._real_cache is None or self._real_cache[0] != y.shape[0]:
            shift = y.mean(0)
            kyy = kernel_sums(y - shift, y - shift, self.bandwidths, self.chunk_size, symmetric=True)
            self._real_cache = (y.shape[0], shift, kyy / y.shape[0] ** 2)
        return self._real_cache[1], self._real_cache[2]

    def compute(self) -> Tensor:
        x, y = dim_zero_cat(self.fake), dim_zero_cat(self.real)
        if x.shape[0] < 2 or y.shape[0] < 2:
            raise RuntimeError("MultiBandwidthMMD needs at least two real and two fake samples")
        shift, kyy = self._real_term(y)
        x, y = x - shift, y - shift
        kxx = kernel_sums(x, x, self.bandwidths, self.chunk_size, symmetric=True) / x.shape[0] ** 2
        kxy = kernel_sums(x, y, self.bandwidths, self.chunk_size) / (x.shape[0] * y.shape[0])
        return (kxx + kyy - 2 * kxy).mean()

    def reset(self) -> None:
        if not self.reset_real_features:
            real, cache = list(self.real), self._real_cache  # reset() clears list states in place
            super().reset()
            self.real.extend(real)
            self._real_cache = cache
        else:
            super().reset()
            self._real_cache = None


class MeanLogDensity(Metric):
    """Mean of log p(x) over samples, for any ``log_prob(x) -> (N,)`` (e.g. a target).

    Non-finite log-densities (samples that overflowed) are counted as -inf, so a broken model
    cannot hide behind a NaN.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, log_prob, **kwargs):
        super().__init__(**kwargs)
        self.log_prob = log_prob
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        lp = self.log_prob(samples.detach()).to(torch.float64)
        lp = torch.where(torch.isnan(lp), torch.full_like(lp, -torch.inf), lp)
        self.total += lp.sum()
        self.count += lp.numel()

    def compute(self) -> Tensor:
        return self.total / self.count


class ModesCovered(Metric):
    """Number of mixture components that receive at least ``min_share`` of their fair share.

    A sample is credited to a component only when it lies in that component's core
    (``target.assign``, within a few standard deviations), so samples on bridges between modes
    cover nothing. Component k is covered when count_k >= min_share · N · w_k.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, target, min_share: float = 0.5, radius: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.target = target
        self.min_share = min_share
        self.radius = radius
        k = target.num_components
        self.add_state("counts", default=torch.zeros(k, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: Tensor) -> None:
        idx = self.target.assign(samples.detach(), radius=self.radius)
        idx = idx[idx >= 0]
        self.counts += torch.bincount(idx, minlength=self.counts.numel())
        self.total += samples.shape[0]

    def compute(self) -> Tensor:
        fair = self.total * self.target.log_weights.exp()
        return (self.counts >= self.min_share * fair).sum()
