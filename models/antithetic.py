"""Antithetic pairs: draws that come in pairs along the batch dimension.

The published estimator uses each (z, σ) twice, with ε and with -ε. Wrapping the sample sites'
distributions keeps the model an ordinary Pyro program: every site still has batch shape (B,),
every draw is marginally distributed as before (so ``log_prob`` is the base's), only the joint
draw is paired: the second half of the batch repeats (``sign=+1``) or mirrors (``sign=-1``, for
a base symmetric about its mean) the first half. A mirrored draw reflects its partner's deviation
from the mean: x_{n+i} = μ_{n+i} - (x_i - μ_i), so that N(x0, σ²) with paired x0 gives x0 ± σ ε.
A Normal base (the forward diffusion's) mirrors the standard noise instead, x = μ + σ [ε, -ε]:
pairs of the same law when σ is paired (half as many random numbers), fewer ops to backpropagate
through, and exact marginals even where σ is not paired.

Paired latents also halve the student's work: ``generate_once_per_pair`` evaluates g once per pair
(z = [z', z'] gives g(z) = [g(z'), g(z')]), which the forward diffusion uses for x0.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import Independent, Normal

from vardiu_pyro.compiled import structural

from .joint_draws import JointDraws

__all__ = ["AntitheticPairs", "generate_once_per_pair"]


class AntitheticPairs(JointDraws):
    """``base`` with batch shape (B, ...), B even, drawn as [x, sign · x] along the first batch dim."""

    def __init__(self, base: TorchDistribution, sign: float = 1.0, validate_args=None):
        if len(base.batch_shape) == 0 or base.batch_shape[0] % 2:
            raise ValueError(f"antithetic pairs need an even leading batch size, got batch shape {tuple(base.batch_shape)}")
        if sign not in (1.0, -1.0):
            raise ValueError(f"sign must be +1 (repeat) or -1 (mirror), got {sign}")
        super().__init__(base)
        self.sign = float(sign)

    def _pair(self, x: torch.Tensor, sample_dims: int) -> torch.Tensor:
        n = self.batch_shape[0] // 2
        half = x.narrow(sample_dims, 0, n)
        if self.sign > 0:
            return torch.cat([half, half], dim=sample_dims)
        mean = self.base.mean  # batch + event shape: broadcasts over the sample dimensions
        return torch.cat([half, mean.narrow(0, n, n) - (half - mean.narrow(0, 0, n))], dim=sample_dims)

    def _mirrored_normal(self, normal: Normal, sample_shape: torch.Size) -> torch.Tensor:
        """x = μ + σ [ε, -ε] for a Normal base: half the noise and two differentiable ops (the
        generic path draws a full batch and builds the mirror from it, which costs the backward
        pass more nodes). Every draw has the base's marginal; with σ paired, the pairs have the law
        of ``_pair(base.rsample())``'s."""
        shape = normal._extended_shape(sample_shape)
        dim = len(sample_shape)
        half = list(shape)
        half[dim] //= 2
        eps = torch.randn(half, dtype=normal.loc.dtype, device=normal.loc.device)
        return normal.loc + normal.scale * torch.cat([eps, -eps], dim=dim)

    def rsample(self, sample_shape=torch.Size()):
        sample_shape = torch.Size(sample_shape)
        base = self.base.base_dist if isinstance(self.base, Independent) else self.base
        if self.sign < 0 and isinstance(base, Normal):
            return self._mirrored_normal(base, sample_shape)
        return self._pair(self.base.rsample(sample_shape), len(sample_shape))

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self._pair(self.base.sample(sample_shape), len(sample_shape))

    def _expanded(self, batch_shape):
        return AntitheticPairs(self.base.expand(batch_shape), self.sign)


def generate_once_per_pair(generator: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """x0 = g(z), with g run once per pair when the batch repeats itself: z = [z', z']  =>  g(z) = [g(z'), g(z')].

    The same values and gradients as ``generator(z)`` for any row-wise generator (and for batch statistics: a
    repeated batch has its half's), at half the generator's cost. A batch whose halves differ (e.g. z conditioned
    to other values) is generated whole. The comparison of the halves is one device sync a step on CUDA; a compiled
    step (``vardiu_pyro/compiled.py``) makes it once, when it is traced.
    """
    n = z.shape[0] // 2
    if n == 0 or z.shape[0] % 2 or not structural(lambda: torch.equal(z[:n], z[n:])):
        return generator(z)
    half = generator(z[:n])
    return torch.cat([half, half])
