"""Seeded draws that leave the caller's random state as it was.

Evaluation sets, the teacher's sample points, the budget probe and the bound-gap estimate draw their own random
numbers from seeds of their own, so that they are the same in every run and do not move the run's noise.
``seeded(seed, device)`` is the one way they do it:

    with seeded(seed, device):
        x = target.sample(n)       # the same x for the same seed, whatever happened before

It forks torch's random state (``torch.random.fork_rng``) and seeds exactly the generators it forked: the CPU's,
and ``device``'s when that is a CUDA device. ``torch.manual_seed`` would not do: it seeds every CUDA device, of
which the fork restores only the one named (a CPU-only fork restores none, which once made every run with
``teacher=empirical`` on a GPU draw the same training noise), and before CUDA is initialised it queues the seed
for every device, to be applied when CUDA starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["seeded"]


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Inside: the CPU generator, and ``device``'s if it is a CUDA device, start from ``seed``. After: every random
    state is as it was before."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.random.default_generator.manual_seed(int(seed))
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(int(seed))  # this device only
        yield
