"""The batch plate of a model or guide program, built once per batch size and entered at every call.

A ``pyro.plate`` object may be entered any number of times (Pyro's docs). Building one is not free:
it runs a sample site of its own (the subsample indices, an ``arange`` over the batch) through every
handler on the stack, which a training step pays twice, once in the model and once in the guide.
"""

from __future__ import annotations

import pyro
from pyro import poutine

__all__ = ["BatchPlates"]


class BatchPlates:
    """``plates(size)``: the plate ``pyro.plate(name, size, dim=dim)``, kept for the last size asked for.

    The plate is built under ``poutine.block``, so its subsample site is in no trace (built inside a
    trace it would be in that one only); the plate's frame is on every site inside it as before.
    """

    def __init__(self, name: str = "batch", dim: int = -1):
        self.name, self.dim = name, dim
        self._kept: tuple[int, pyro.plate] | None = None

    def __call__(self, size: int) -> pyro.plate:
        if self._kept is None or self._kept[0] != size:
            with poutine.block():
                self._kept = (size, pyro.plate(self.name, size, dim=self.dim))
        return self._kept[1]
