"""Stratified draws of a scalar law along the batch: one draw in each of n equal-probability strata.

For a law with inverse CDF F⁻¹, a batch of n draws σ_i = F⁻¹(u_i) with

    u_i = (π(i) + v_i) / n,   v_i ~ U(0, 1),  π a uniformly random permutation of 0..n-1

puts exactly one σ in each stratum [F⁻¹(k/n), F⁻¹((k+1)/n)). Every σ_i still has the law's
marginal (π(i) is uniform over the strata), so ``log_prob`` is the base's and a batch mean of
f(σ_i) is still unbiased for E f(σ); its variance is that of iid draws less the spread of the
strata's means (never more, for n strata of equal probability). The batch can hold several
independent stratified blocks of n (``blocks``): with antithetic pairs, whose second half repeats
the first, each half must be stratified on its own.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution

from .joint_draws import JointDraws

__all__ = ["Stratified", "stratified_uniform"]


def stratified_uniform(blocks: int, n: int, sample_shape: torch.Size = torch.Size(), dtype=None,
                       device=None) -> torch.Tensor:
    """u of shape (*sample_shape, blocks · n): each block of n holds one point of U(k/n, (k+1)/n) per k, in random order."""
    shape = (*sample_shape, blocks, n)
    order = torch.rand(shape, dtype=dtype, device=device).argsort(-1)  # a uniformly random permutation per block
    u = (order + torch.rand(shape, dtype=dtype, device=device)) / n  # u = (π(i) + v) / n
    return u.flatten(-2)


class Stratified(JointDraws):
    """``base`` (batch shape (B,), scalar event, with ``icdf``) drawn stratified in ``blocks`` blocks of B / blocks.

    ``anchor``: a tensor whose dtype and device the uniforms take (a ``SigmaLaw``'s buffer).
    """

    def __init__(self, base: TorchDistribution, blocks: int = 1, anchor: torch.Tensor | None = None,
                 validate_args=None):
        if len(base.batch_shape) != 1 or base.event_shape != torch.Size():
            raise ValueError(f"Stratified needs a scalar law with one batch dimension, got batch shape "
                             f"{tuple(base.batch_shape)} and event shape {tuple(base.event_shape)}")
        size = base.batch_shape[0]
        if blocks < 1 or size % blocks:
            raise ValueError(f"a batch of {size} does not split into {blocks} equal stratified blocks")
        super().__init__(base)
        self.blocks = int(blocks)
        self.anchor = torch.zeros(()) if anchor is None else anchor

    def rsample(self, sample_shape=torch.Size()):
        u = stratified_uniform(self.blocks, self.batch_shape[0] // self.blocks, torch.Size(sample_shape),
                               dtype=self.anchor.dtype, device=self.anchor.device)
        return self.base.icdf(u)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.rsample(sample_shape)

    def _expanded(self, batch_shape):
        raise ValueError("a stratified batch cannot be expanded: stratify the expanded law instead")
