"""Build the parts of a run from its Hydra configuration.

Every part is a ``_target_`` in ``configs/``; the values only known at run time (the target's
shape and scale, the device, the networks an optimiser steps) are passed in here, by calling
the partially-instantiated config. A user's own target, teacher, generator, guide or objective
is therefore just another ``_target_``.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, MissingMandatoryValue, OmegaConf

from .evaluation import device_of
from .nn import resolve_precision, set_hidden_dtype
from .objectives import Objective, Problem
from .seeding import seeded

__all__ = ["resolve_device", "hidden_dtype_of", "build_problem", "build_objective", "data_std_of"]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name}: CUDA is not available on this machine (use device=cpu or device=auto)")
    return device


def hidden_dtype_of(cfg: DictConfig, device: torch.device) -> torch.dtype | None:
    """The dtype of the networks' hidden products (``precision``); a run saved before the key existed ran float32."""
    return resolve_precision(str(cfg.get("precision", "float32")), device)


def data_std_of(target, n: int = 10_000, seed: int = 0) -> float:
    """The target's overall scale: ``target.data_std`` if it defines one, else estimated from samples."""
    if hasattr(target, "data_std"):
        return float(target.data_std)
    device = device_of(target)
    with seeded(seed, device):
        return target.sample(n).std().item()


def build_problem(cfg: DictConfig, device: torch.device) -> Problem:
    """Target, teacher, generator, σ law and weight, and factories for the guide and the optimiser."""
    if cfg.trainer.get("iterations") == "auto":  # the schedules are laid out over the iteration count
        raise ValueError("trainer.iterations=auto: fix the count first (vardiu_pyro.budget.fit_to_budget, as fit "
                         "does) or give a number")
    target = instantiate(cfg.target).to(device)
    if OmegaConf.is_missing(cfg.teacher, "path"):
        raise MissingMandatoryValue("teacher.path is required: the directory of a trained teacher (train_teacher's run)")
    teacher = instantiate(cfg.teacher, _partial_=True)(target=target).to(device)
    data_shape = tuple(target.event_shape)
    data_std = data_std_of(target)
    generator = instantiate(cfg.generator, _partial_=True)(data_shape=data_shape, data_std=data_std).to(device)
    hidden_dtype = hidden_dtype_of(cfg, device)
    set_hidden_dtype(generator, hidden_dtype)
    sigma_law = instantiate(cfg.sigma.law).to(device)
    weight = instantiate(cfg.sigma.weight).to(device)
    guide_factory = instantiate(cfg.guide, _partial_=True)
    optim_factory = instantiate(cfg.optim, _partial_=True)
    lr_overrides = cfg.optim.get("lr_overrides")

    def make_optim(networks):
        if not lr_overrides:
            return optim_factory(networks=networks)
        # an objective may give its networks to several optimisers (Diff-Instruct: one for the generator, one
        # for the fake score), so each gets the overrides of its own networks; validate_config checks the names
        return optim_factory(networks=networks, lr_overrides={k: v for k, v in lr_overrides.items() if k in networks})

    def make_guide():
        guide = guide_factory(latent_shape=tuple(generator.latent_shape), data_shape=data_shape, data_std=data_std)
        set_hidden_dtype(guide, hidden_dtype)
        return guide.to(device)

    return Problem(target=target, teacher=teacher, generator=generator, sigma_law=sigma_law, weight=weight,
                   make_guide=make_guide, make_optim=make_optim,
                   batch_size=int(cfg.trainer.batch_size))


def build_objective(cfg: DictConfig, problem: Problem) -> Objective:
    return instantiate(cfg.objective, _partial_=True)(problem=problem)
