"""Registering networks with Pyro's global param store: once, when a program is built.

Pyro's idiom calls ``pyro.module(name, net)`` inside the model or guide, so that every run of the
program re-registers the network: one ``pyro.param`` message per parameter tensor, through every
handler on the stack. Our programs do not: nothing in training reads the store (the optimiser,
``vardiu_pyro.optim.PerNetworkOptim``, owns and steps the networks themselves), and re-registering
the generator and the guide cost 1.5–2.5 ms per SVI step on a 2-core CPU (32 param messages), about
half of the framework's overhead over plain torch (``benchmarks/step_overhead.py``). The networks are
registered here once, so that ``pyro.get_param_store()`` still shows them (to save, inspect or
reuse them the Pyro way); ``SVI`` then captures no param sites, and a parameter it does capture (a
custom guide's own ``pyro.param``) must belong to a network the optimiser owns.
"""

from __future__ import annotations

import pyro
from torch import nn

__all__ = ["forget_pyro_params", "register_network"]


def forget_pyro_params(*module_names: str) -> None:
    """Drop entries of Pyro's global param store registered under these module names.

    ``pyro.module(name, net)`` keeps an existing store entry of the same name instead of
    ``net``'s own parameter; a stale entry (left by another model in this process) would then
    stand in the store for ``net``.
    """
    store = pyro.get_param_store()
    for key in list(store.keys()):
        if key.split("$$$", 1)[0] in module_names:
            del store[key]


def register_network(name: str, net: nn.Module) -> nn.Module:
    """Register ``net``'s parameters under ``name`` (replacing any earlier entries of that name)."""
    forget_pyro_params(name)
    return pyro.module(name, net)
