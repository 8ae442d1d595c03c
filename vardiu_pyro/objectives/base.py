"""The objective interface: what the training loop calls, whatever the method.

An objective owns its networks and optimisers and performs one optimisation step per call of
``step(iteration)``. The training loop knows nothing else about it, so VarDiU, Diff-Instruct or
a user's method plug into the same loop with no branch on the method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyro
from torch import nn

__all__ = ["Objective", "Problem"]


@dataclass
class Problem:
    """The parts of a distillation problem an objective is built from (see ``vardiu_pyro.build``)."""

    target: nn.Module  # the data distribution (samples and metrics)
    teacher: nn.Module  # score of p_d^σ (frozen)
    generator: nn.Module  # the one-step student g_θ
    sigma_law: nn.Module  # π: ``distribution(iteration)``
    weight: nn.Module  # w(σ): ``weight(sigma, iteration)``
    make_guide: Callable[[], nn.Module]  # builds q_φ(z | x_t, σ) (only objectives that need one call it)
    make_optim: Callable[[Mapping[str, nn.Module]], pyro.optim.PyroOptim]  # optimiser over named networks
    batch_size: int


class Objective:
    """Interface of a distillation method.

    ``networks``: every trained network by name (the generator is ``networks["generator"]``), its
    keys listed in the class attribute ``network_names`` (so a configuration can be checked before
    anything is built);
    ``step(iteration)``: one optimisation step at ``iteration``, the position on the run's schedules (the
    iteration itself unless the run re-fitted its count: ``vardiu_pyro.schedule_clock``; a float), returns
    scalars to log (at least ``loss``), and
    ``skipped=True`` when the step was dropped because its loss or a gradient was not finite (then
    no parameter and no optimiser state may have changed: ``PerNetworkOptim`` guarantees it);
    ``state_dict()``/``load_state_dict()``: everything needed to resume (networks and optimisers).
    """

    network_names: tuple[str, ...] = ()  # the keys of ``networks`` (what ``optim.lr_overrides`` may name)
    networks: dict[str, nn.Module]

    @property
    def generator(self) -> nn.Module:
        return self.networks["generator"]

    def step(self, iteration: float) -> dict[str, float]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, pyro.optim.PyroOptim]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {"networks": {name: net.state_dict() for name, net in self.networks.items()},
                "optim": {name: opt.get_state() for name, opt in self.optimizers().items()}}

    def load_state_dict(self, state: Mapping) -> None:
        for name, net in self.networks.items():
            net.load_state_dict(state["networks"][name])
        for name, opt in self.optimizers().items():
            opt.set_state(state["optim"][name])
