"""A law whose batch is drawn jointly: every element keeps the base law's marginal, the draws are coupled.

Antithetic pairs (``antithetic.py``) and stratified batches (``stratified.py``) are such laws. As
each element's marginal is the base's, so are ``log_prob``, ``mean``, ``variance`` and ``support``:
only how a batch is drawn changes, and a batch mean stays unbiased.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

__all__ = ["JointDraws"]


class JointDraws(TorchDistribution):
    """Base class: ``base`` with coupled draws along its batch; subclasses define ``rsample`` and ``_expanded``."""

    arg_constraints: dict = {}

    def __init__(self, base: TorchDistribution):
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @constraints.dependent_property
    def support(self):
        return self.base.support

    @property
    def has_rsample(self) -> bool:
        return self.base.has_rsample

    def log_prob(self, value):
        return self.base.log_prob(value)

    @property
    def mean(self):
        return self.base.mean

    @property
    def variance(self):
        return self.base.variance

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) == self.batch_shape:  # Pyro's plates expand every site, mostly to its own shape
            return self
        return self._expanded(torch.Size(batch_shape))

    def _expanded(self, batch_shape: torch.Size) -> TorchDistribution:
        raise NotImplementedError
