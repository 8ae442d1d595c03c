"""The optimiser used under ``pyro.infer.SVI``: one torch optimiser per network, each network's
gradient clipped to a maximum global norm, and a learning-rate schedule.

Why not Pyro's own: ``pyro.optim.ClippedAdam`` clamps every gradient *element* to
[-clip, clip], and ``PyroOptim(..., clip_args={"clip_norm": c})`` clips the norm of each
parameter *tensor* separately. The published recipe clips the norm of each *network's* whole
gradient (``torch.nn.utils.clip_grad_norm_(net.parameters(), 10)``): that preserves the
direction of the gradient of the network, which per-element or per-tensor clipping does not.
This class does exactly that (our default norm is 100, not 10: ``configs/optim/adam.yaml`` says
why), and keeps Pyro's interface (``__call__(params)``, ``get_state``/``set_state``) so that
``SVI`` can drive it.

It is also the non-finite guard: it sees every gradient of every network before any of them is
stepped, so when one is NaN/Inf (or no gradient arrived at all, which is how an objective drops a
step whose loss was non-finite) it steps nothing: parameters, moments, step counters and the
learning-rate schedule stay as they were, and ``last_step_skipped`` is set for the objective to
report.

Its learning-rate schedule counts its own steps, unless told where the run is: the training loop
calls ``follow(position, length)`` before every step, so that the schedule moves with the σ
curriculum on one clock (``vardiu_pyro.schedule_clock``: a run that re-fits its iteration count to
a time budget stretches both alike). Then a skipped step does not hold the schedule back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
from pyro.optim import PyroOptim
from torch import nn

__all__ = ["PerNetworkOptim", "clipped_step", "lr_factor"]

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(step: int, schedule: str, iterations: int, warmup: int = 0, end_factor: float = 0.0) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up, then constant / cosine / linear decay to ``end_factor``."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant" or iterations <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / (iterations - warmup))
    if schedule == "cosine":
        return end_factor + (1 - end_factor) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0 - (1.0 - end_factor) * t  # linear


def _all_finite(norms: Iterable[torch.Tensor]) -> bool:
    """Whether every gradient norm is finite (a NaN or Inf anywhere in a gradient makes its norm so)."""
    norms = list(norms)
    return bool(torch.stack([n.to(norms[0].device) for n in norms]).isfinite().all())  # one device sync


def clipped_step(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], max_grad_norm: float | None,
                 total_norm: torch.Tensor | None) -> None:
    """``optimizer.step()`` with the gradients of ``params``, of global norm ``total_norm``, clipped to ``max_grad_norm``.

    g <- g min(1, c / (|g| + 1e-6))  (torch's ``clip_grad_norm_``; None for either: no clipping). A fused optimiser
    (``fused=True``) divides every gradient by max(1, (|g| + 1e-6) / c) inside its own kernel instead, through the
    ``grad_scale`` it reads from the optimiser (the hook torch's ``GradScaler`` uses to unscale): the same update
    without a pass over the gradients of its own.
    """
    if max_grad_norm is None or total_norm is None:
        optimizer.step()
    elif all(group.get("fused") for group in optimizer.param_groups):
        optimizer.grad_scale = ((total_norm + 1e-6) / max_grad_norm).clamp(min=1.0).float()  # fused kernels read float32
        try:
            optimizer.step()
        finally:
            del optimizer.grad_scale
    else:
        nn.utils.clip_grads_with_norm_(params, max_grad_norm, total_norm, foreach=True)
        optimizer.step()


class PerNetworkOptim(PyroOptim):
    """A ``PyroOptim`` that steps whole networks, with per-network gradient-norm clipping.

    :param networks: the trained networks by name (e.g. ``{"generator": g, "guide": q}``).
    :param optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
    :param lr: base learning rate; ``lr_overrides`` sets it per network by name.
    :param max_grad_norm: clip each network's global gradient norm to this (``None``: no clipping).
    :param schedule: ``"constant"``, ``"cosine"`` or ``"linear"`` decay over ``iterations`` steps,
        after ``warmup`` linear warm-up steps, down to ``lr * end_factor``.
    """

    def __init__(self, networks: Mapping[str, nn.Module], optimizer: str = "adam", lr: float = 1e-3,
                 lr_overrides: Mapping[str, float] | None = None, max_grad_norm: float | None = 10.0,
                 schedule: str = "constant", iterations: int = 0, warmup: int = 0, end_factor: float = 0.0,
                 **optimizer_kwargs):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; choose one of {sorted(OPTIMIZERS)}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {list(SCHEDULES)}")
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if max_grad_norm is not None and not max_grad_norm > 0:  # a negative norm would flip the step, 0 would zero it
            raise ValueError(f"max_grad_norm must be positive (or None: no clipping), got {max_grad_norm}")
        lr_overrides = dict(lr_overrides or {})
        unknown = set(lr_overrides) - set(networks)
        if unknown:
            raise ValueError(f"lr_overrides names unknown networks {sorted(unknown)}; networks are {sorted(networks)}")
        if "betas" in optimizer_kwargs:  # Hydra passes lists
            optimizer_kwargs["betas"] = tuple(optimizer_kwargs["betas"])
        super().__init__(OPTIMIZERS[optimizer], dict(optimizer_kwargs, lr=lr))
        self.networks = dict(networks)
        self.max_grad_norm = max_grad_norm
        self.schedule, self.iterations, self.warmup, self.end_factor = schedule, int(iterations), int(warmup), float(end_factor)
        self.params = {name: [p for p in net.parameters() if p.requires_grad] for name, net in self.networks.items()}
        self.optimizers = {
            name: OPTIMIZERS[optimizer](params, lr=lr_overrides.get(name, lr), **optimizer_kwargs)
            for name, params in self.params.items()
        }
        self.base_lrs = {name: opt.param_groups[0]["lr"] for name, opt in self.optimizers.items()}
        self._owned = {p for params in self.params.values() for p in params}
        self.num_steps = 0  # steps taken (skipped ones excluded): the learning-rate schedule's clock, unless follow()
        self.schedule_step: float | None = None  # set by follow(): where the run is, in this schedule's steps
        self.last_grad_norms: dict[str, torch.Tensor] = {}  # before clipping; tensors, to avoid a device sync
        self.last_step_skipped = False
        # called with every owned parameter (networks by name, then module order) before clipping:
        # data-parallel training averages the gradients over processes here (vardiu_pyro.distributed)
        self.reduce_gradients: Callable[[list[torch.Tensor]], None] | None = None

    def follow(self, position: float, length: int) -> None:
        """Take the learning rate at ``position`` of a run's schedules of ``length`` iterations: this schedule's
        step position * iterations / length (its ``iterations`` may count several steps an iteration)."""
        self.schedule_step = position * self.iterations / length

    def current_lr_factor(self) -> float:
        step = self.num_steps if self.schedule_step is None else self.schedule_step
        return lr_factor(step, self.schedule, self.iterations, self.warmup, self.end_factor)

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        """Clip and step every network. ``params`` (what SVI captured) must all belong to them."""
        stray = [p for p in params if p not in self._owned]
        if stray:
            raise RuntimeError(
                f"SVI captured {len(stray)} parameter(s) that belong to none of the networks "
                f"{sorted(self.networks)}: Pyro's global param store holds stale entries under the same "
                "names (from another model in this process). Call pyro.clear_param_store() first.")
        if self.reduce_gradients is not None:  # before the finiteness check, so that every rank skips alike
            self.reduce_gradients([p for name in sorted(self.params) for p in self.params[name]])
        self.last_grad_norms = {name: nn.utils.get_total_norm([p.grad for p in group if p.grad is not None], foreach=True)
                                for name, group in self.params.items() if any(p.grad is not None for p in group)}
        self.last_step_skipped = not self.last_grad_norms or not _all_finite(self.last_grad_norms.values())
        if not self.last_step_skipped:
            factor = self.current_lr_factor()
            for name, optimizer in self.optimizers.items():
                group = self.params[name]
                for g in optimizer.param_groups:
                    g["lr"] = self.base_lrs[name] * factor
                clipped_step(optimizer, group, self.max_grad_norm, self.last_grad_norms.get(name))
            self.num_steps += 1
        for group in self.params.values():
            for p in group:  # SVI's zero_grads then skips these instead of allocating zeros
                p.grad = None

    def get_state(self) -> dict:
        return {"num_steps": self.num_steps,
                "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()}}

    def set_state(self, state: dict) -> None:
        self.num_steps = int(state["num_steps"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
