"""Randomised quasi-Monte Carlo latents: a batch of z ~ N(0, I) that covers the latent space evenly.

A batch of n i.i.d. latents puts a binomial number of them in each region of z-space: the student's
mode behind a region of probability 1/40 gets n/40 ± sqrt(n/40) of a batch of n. This batch instead
maps the first n points of a Sobol sequence, randomised by a digital shift, through the normal
inverse CDF:

    z_i = Φ⁻¹(u_i),   u_i = ((s_i XOR c) + v_i) / 2^30,   c ~ U{0, ..., 2^30 - 1}^d,  v_i ~ U(0, 1)^d

with s_i the Sobol points as 30-bit integers (``torch.quasirandom.SobolEngine``, unscrambled). A
digital shift keeps the net structure of the points: for n = 2^m and d = 2 every cell of an
elementary 2^-a × 2^-(m-a) grid of the unit square holds exactly one u_i. Each u_i is uniform on
(0, 1)^d (the shift c makes its 30-bit part uniform, v_i the rest), so each z_i is exactly N(0, I):
``log_prob`` is the Normal's and a batch mean of f(z_i) stays an unbiased estimate of E f(z). Only the
joint draw of a batch changes, as for antithetic pairs and stratified σ (``joint_draws.py``).
"""

from __future__ import annotations

import math

import torch
from pyro.distributions import TorchDistribution
from torch.quasirandom import SobolEngine

from .joint_draws import JointDraws

__all__ = ["QuasiRandomNormal", "sobol_integers", "shifted_sobol_uniform"]

BITS = 30  # torch's SobolEngine gives points on the grid k / 2^30
# the smallest and largest u: keep Φ⁻¹(u) finite where v_i rounds to an end of (0, 1) (probability ~2^-53);
# 1 - 2^-60 would round to 1 in float64, so the largest is the float64 just below 1, 1 - 2^-53
_U_MIN, _U_MAX = 2.0 ** -60, math.nextafter(1.0, 0.0)


def sobol_integers(n: int, dimension: int) -> torch.Tensor:
    """The first n points of the unscrambled Sobol sequence in ``dimension`` dimensions, as (n, d) 30-bit integers."""
    points = SobolEngine(dimension, scramble=False).draw(n, dtype=torch.float64)
    return torch.round(points * 2.0 ** BITS).long()


def shifted_sobol_uniform(integers: torch.Tensor, blocks: int = 1) -> torch.Tensor:
    """``blocks`` digitally shifted copies of ``integers`` (n, d): uniforms of shape (blocks, n, d), one shift per block."""
    n, d = integers.shape
    shift = torch.randint(0, 2 ** BITS, (blocks, 1, d), device=integers.device)  # c, one per block
    jitter = torch.rand((blocks, n, d), dtype=torch.float64, device=integers.device)  # v_i
    u = (torch.bitwise_xor(integers, shift).double() + jitter) / 2.0 ** BITS  # u = ((s XOR c) + v) / 2^30
    return u.clamp(_U_MIN, _U_MAX)


class QuasiRandomNormal(JointDraws):
    """``base``, a standard Normal with batch shape (B,) and any event shape, drawn as one shifted Sobol batch.

    A batch whose size is a power of two covers the latent space best; any size is allowed. The points'
    integers are built once per (B, dimension, device). Sobol sequences reach 21,201 dimensions.
    """

    def __init__(self, base: TorchDistribution):
        if len(base.batch_shape) != 1:
            raise ValueError(f"QuasiRandomNormal needs one batch dimension, got batch shape {tuple(base.batch_shape)}")
        loc, scale = base.mean, base.variance.sqrt()
        if not (torch.all(loc == 0) and torch.all(scale == 1)):
            raise ValueError("QuasiRandomNormal draws N(0, I) only: its base must be a standard Normal")
        dimension = math.prod(base.event_shape)
        if not 1 <= dimension <= SobolEngine.MAXDIM:
            raise ValueError(f"a Sobol sequence has 1 to {SobolEngine.MAXDIM} dimensions, got {dimension}")
        super().__init__(base)
        self.dimension = dimension
        self._integers: torch.Tensor | None = None

    def _points(self, device: torch.device) -> torch.Tensor:
        if self._integers is None or self._integers.device != device:
            self._integers = sobol_integers(self.batch_shape[0], self.dimension).to(device)
        return self._integers

    def rsample(self, sample_shape=torch.Size()):
        sample_shape = torch.Size(sample_shape)
        like = self.base.mean
        u = shifted_sobol_uniform(self._points(like.device), blocks=sample_shape.numel())
        z = torch.special.ndtri(u)  # z = Φ⁻¹(u), in float64, then in the base's dtype
        return z.to(like.dtype).reshape(sample_shape + self.batch_shape + self.event_shape)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _expanded(self, batch_shape):
        raise ValueError("a quasi-random batch cannot be expanded: build it on the expanded Normal instead")
