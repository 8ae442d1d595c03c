"""Checks of a run's configuration, made before any work, with errors a user can act on.

Every check raises ``ConfigError`` with one line that names the field and the reason
(``sigma.min=0.0: must be > 0``); the command line prints that line and exits with status 2,
no traceback. What is checked:

- the command line itself (``check_command_line``): unknown config-group options (``guide=nope``
  lists the valid ones), unknown keys (a typo is answered with the nearest key) and unparsable
  overrides, before Hydra sees them;
- values (``validate_config``): seed, device (``cuda`` needs CUDA), precision, iterations (or ``auto`` with
  a time budget), batch size (even with antithetic pairs), evaluation, checkpoint and EMA
  settings, the σ range and law (powers, spread), Diff-Instruct's inner steps, VarDiU's importance
  samples (a guide with ``rsample``), the networks' sizes and choices (generator, guide, fake score),
  the empirical teacher's sample, the optimiser (its name, schedule, betas, no argument it does not
  take), the learning rate and its per-network overrides (naming the objective's networks), every
  yes/no setting (a word such as ``no`` would read as true), that every ``_target_`` imports, and a
  teacher directory (any teacher with a ``path``);
- the built problem (``validate_problem``): the teacher's score has the target's shape.

Resuming adds its own checks (``vardiu_pyro.resume``): the directory, its checkpoint, and that the
configuration matches the run's.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import io
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra._internal.utils import _locate  # what instantiate uses; hydra.utils.get_object also logs an error
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException
from safetensors import safe_open

from .checkpoint import PICKLE_SUFFIXES, CheckpointError, load_torch_file
from .nn import ACTIVATIONS, resolve_precision
from .optim import OPTIMIZERS, SCHEDULES, PerNetworkOptim
from .schedule_clock import check_refits

__all__ = ["ConfigError", "compose_config", "exit_with_message", "validate_config", "validate_teacher_training",
           "unused_overrides", "hydra_value",
           "validate_teacher_dir", "validate_problem", "check_command_line",
           "CONFIG_MODULE"]

CONFIG_MODULE = "vardiu_pyro.configs"
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


class ConfigError(ValueError):
    """An invalid setting; the message is one line naming the field and the reason."""


# ---------------------------------------------------------------------------------------------
# values


def _fail(field: str, value: Any, reason: str) -> None:
    raise ConfigError(f"{field}={value}: {reason}")


def _select(config: Mapping, field: str, default: Any = None) -> Any:
    node: Any = config
    for part in field.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(config: Mapping, field: str, minimum: int, optional: bool = False) -> None:
    value = _select(config, field)
    if value is None and optional:
        return
    if not _is_int(value):
        _fail(field, value, "must be an integer")
    if value < minimum:
        _fail(field, value, f"must be >= {minimum}")


def _boolean(config: Mapping, field: str) -> None:
    value = _select(config, field)
    if value is not None and not isinstance(value, bool):  # a YAML word such as `no` or `off` is a string: true
        _fail(field, value, "must be true or false")


def _choice(config: Mapping, field: str, choices: Sequence[str]) -> None:
    value = _select(config, field)
    if value is not None and value not in choices:
        _fail(field, value, f"choose one of {', '.join(choices)}")


def _number(config: Mapping, field: str, above: float | None = None, at_least: float | None = None,
            reason: str = "") -> None:
    """An optional number, > ``above`` or >= ``at_least`` when given."""
    value = _select(config, field)
    if value is None:
        return
    if (not _is_number(value) or (above is not None and not value > above)
            or (at_least is not None and not value >= at_least)):
        bound = f" > {above}" if above is not None else f" >= {at_least}" if at_least is not None else ""
        _fail(field, value, f"must be a number{bound}{reason}")


# the networks' hyperparameters (generator, guide families, Diff-Instruct's fake score): sizes and their minimum
NETWORK_NODES = ("generator", "guide", "objective.fake_score")
NETWORK_SIZES = {"width": 1, "depth": 1, "components": 1, "layers": 1, "hidden": 1, "hidden_depth": 1,
                 "features": 1, "bins": 2}


def _shipped(values: Any) -> bool:
    """A network node built by one of this library's classes (a user's own ``_target_`` may mean other things by the
    same keys: ``activation=elu``, ``hidden=[64, 64]``)."""
    return isinstance(values, Mapping) and str(values.get("_target_", "")).startswith("vardiu_pyro.")


def _check_network(config: Mapping, node: str) -> None:
    """A network of this library's (``node``: generator, guide, fake score, denoiser): sizes are integers >= their
    minimum, names one of their choices; a bad one otherwise fails deep inside torch. Others are left to their class."""
    values = _select(config, node)
    if not _shipped(values):
        return
    for key, minimum in NETWORK_SIZES.items():
        if key in values:
            _integer(config, f"{node}.{key}", minimum)
    for key in ("noise_features", "data_features"):  # sine and cosine pairs
        if key in values:
            _integer(config, f"{node}.{key}", 0)
            if values[key] % 2:
                _fail(f"{node}.{key}", values[key], "must be even (sine and cosine pairs)")
    _choice(config, f"{node}.activation", sorted(ACTIVATIONS))
    _choice(config, f"{node}.embedding", ["log", "raw"])
    _choice(config, f"{node}.coupling", ["affine", "spline"])
    _number(config, f"{node}.bound", above=0)
    _number(config, f"{node}.data_frequency", above=0)
    _number(config, f"{node}.sigma_score", at_least=0)


def _check_optimizer(config: Mapping) -> None:
    """``optim``: a known optimiser and schedule, a learning rate, clipping and schedule settings in range, and no
    argument the optimiser does not take (Adam's ``betas`` with ``optim.optimizer=sgd``)."""
    for key, choices in (("optim.optimizer", sorted(OPTIMIZERS)), ("optim.schedule", list(SCHEDULES))):
        _choice(config, key, choices)
    _number(config, "optim.lr", above=0)
    max_norm = _select(config, "optim.max_grad_norm")
    if max_norm is not None and (not _is_number(max_norm) or max_norm <= 0):
        _fail("optim.max_grad_norm", max_norm, "must be a number > 0, or null (no clipping)")
    _integer(config, "optim.warmup", minimum=0, optional=True)
    end_factor = _select(config, "optim.end_factor")
    if end_factor is not None and (not _is_number(end_factor) or not 0 <= end_factor <= 1):
        _fail("optim.end_factor", end_factor, "must be a number in [0, 1] (the last learning rate over the first)")
    for key in ("optim.fused", "optim.foreach"):
        _boolean(config, key)
    betas = _select(config, "optim.betas")
    if betas is not None and (not isinstance(betas, Sequence) or isinstance(betas, str) or len(betas) != 2
                              or not all(_is_number(b) and 0 <= b < 1 for b in betas)):
        _fail("optim.betas", betas, "must be two numbers in [0, 1)")
    optim, name = _select(config, "optim"), _select(config, "optim.optimizer")
    if not isinstance(optim, Mapping) or name not in OPTIMIZERS or not str(optim.get("_target_", "")).endswith(
            "PerNetworkOptim"):
        return
    own = set(inspect.signature(PerNetworkOptim).parameters) | {"_target_"}
    takes = set(inspect.signature(OPTIMIZERS[name]).parameters)
    for key, value in optim.items():
        if key not in own and key not in takes:
            _fail(f"optim.{key}", value, f"not an argument of torch.optim.{OPTIMIZERS[name].__name__} "
                  f"(optim.optimizer={name}); leave it out with ~optim.{key}")


def _check_bandwidths(config: Mapping) -> None:
    bandwidths = _select(config, "trainer.mmd_bandwidths")
    if bandwidths is not None and (isinstance(bandwidths, (str, Mapping)) or not isinstance(bandwidths, Sequence)
                                   or not bandwidths or not all(_is_number(h) and h > 0 for h in bandwidths)):
        _fail("trainer.mmd_bandwidths", bandwidths, "must be a non-empty list of numbers > 0")


def _check_device(name: Any) -> None:
    from .build import resolve_device

    try:
        device = resolve_device(str(name))
    except ValueError as e:  # resolve_device's own one-line message
        raise ConfigError(str(e)) from None
    except RuntimeError:
        _fail("device", name, "not a device; use auto, cpu, cuda or cuda:N")
    if device.type not in ("cpu", "cuda"):
        _fail("device", name, "not supported here; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        _fail("device", name, f"this machine has {torch.cuda.device_count()} CUDA device(s)")


def _check_targets(config: Any, prefix: str = "") -> None:
    """Every ``_target_`` names something importable."""
    if isinstance(config, Mapping):
        target = config.get("_target_")
        if target is not None:
            try:
                _locate(str(target))
            except Exception as e:
                cause = e.__cause__ or e
                _fail(f"{prefix}._target_" if prefix else "_target_", target,
                      f"cannot be imported ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})")
        for key, value in config.items():
            if key != "_target_":
                _check_targets(value, f"{prefix}.{key}" if prefix else str(key))


def _check_lr_overrides(overrides: Any, objective_target: Any) -> None:
    """``optim.lr_overrides``: null or {network: lr > 0}, naming networks the objective trains."""
    if overrides is None:
        return
    if not isinstance(overrides, Mapping):
        _fail("optim.lr_overrides", overrides, "must be a mapping of network names to learning rates, "
              "e.g. optim.lr_overrides='{guide: 1e-3}'")
    names = getattr(_locate(str(objective_target)), "network_names", ()) if objective_target else ()
    for name, lr in overrides.items():
        if names and name not in names:
            _fail(f"optim.lr_overrides.{name}", lr, f"no such network in {objective_target} (its networks: {', '.join(names)})")
        if not _is_number(lr) or lr <= 0:
            _fail(f"optim.lr_overrides.{name}", lr, "must be a number > 0")


def _check_schedule(config: Mapping) -> None:
    """``trainer.schedule_iterations`` and ``trainer.refits`` (``vardiu_pyro.schedule_clock``): a run sized to a
    time budget sets both itself; otherwise a positive length and re-fits consistent with it."""
    iterations, refits = _select(config, "trainer.iterations"), _select(config, "trainer.refits", [])
    length = _select(config, "trainer.schedule_iterations", iterations)
    if iterations == "auto":
        if length != "auto" or refits:
            _fail("trainer.schedule_iterations" if length != "auto" else "trainer.refits", length if length != "auto"
                  else refits, "is set by the run itself with trainer.iterations=auto (leave it out)")
        return
    if not _is_int(length) or length < 1:
        _fail("trainer.schedule_iterations", length, "must be an integer >= 1 (the schedules' length; by default "
              "trainer.iterations)")
    if not isinstance(refits, Sequence) or isinstance(refits, str):
        _fail("trainer.refits", refits, "must be a list of [iteration, count before]")
    try:
        check_refits([list(knot) if isinstance(knot, Sequence) else [knot] for knot in refits], iterations, length)
    except ValueError as e:
        _fail("trainer.refits", refits, str(e))


def _container(cfg: DictConfig | Mapping) -> Mapping:
    """The configuration as plain containers, resolved (a missing mandatory value is a ``ConfigError``)."""
    if not isinstance(cfg, DictConfig):
        return cfg
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{getattr(e, 'full_key', '') or 'config'}: {str(e).splitlines()[0]}") from None


def validate_config(cfg: DictConfig | Mapping) -> None:
    """Reject an invalid configuration of a distillation run with a ``ConfigError`` (see the module docstring)."""
    config = _container(cfg)
    _check_targets(config)
    _integer(config, "seed", minimum=0)
    _check_device(config.get("device", "auto"))
    try:
        resolve_precision(str(config.get("precision", "float32")), torch.device("cpu"))
    except ValueError as e:  # resolve_precision's own one-line message
        raise ConfigError(str(e)) from None

    for key in ("objective.antithetic", "objective.quasi_random", "objective.compile", "trainer.progress",
                "trainer.distributed", "trainer.pyro_validation", "trainer.retain_freed_memory", "sigma.stratified"):
        _boolean(config, key)

    if _select(config, "trainer.iterations") == "auto":  # sized to the time budget (vardiu_pyro.budget)
        budget = _select(config, "trainer.time_budget")
        if not _is_number(budget) or budget <= 0:
            _fail("trainer.time_budget", budget, "must be a number of seconds > 0 with trainer.iterations=auto")
        if _select(config, "trainer.distributed", False):
            _fail("trainer.iterations", "auto", "give a number with trainer.distributed=true (every process "
                  "must run the same schedule)")
    elif not _is_int(_select(config, "trainer.iterations")):
        _fail("trainer.iterations", _select(config, "trainer.iterations"), "must be an integer, or auto (as many as "
              "fit in trainer.time_budget seconds)")
    else:
        _integer(config, "trainer.iterations", minimum=1)
    _check_schedule(config)
    _integer(config, "trainer.batch_size", minimum=1)
    batch = _select(config, "trainer.batch_size")
    if _select(config, "objective.antithetic", False) and batch % 2:
        _fail("trainer.batch_size", batch, "must be even with objective.antithetic=true (each draw is used with ε and -ε)")
    _integer(config, "objective.inner_steps", minimum=1, optional=True)  # Diff-Instruct's fake-score steps
    _integer(config, "objective.importance_samples", minimum=0, optional=True)  # VarDiU's U_K
    importance_samples, guide_target = _select(config, "objective.importance_samples"), _select(config, "guide._target_")
    if importance_samples and guide_target and not getattr(_locate(str(guide_target)), "reparameterized", True):
        _fail("objective.importance_samples", importance_samples,
              f"needs a guide with rsample; {guide_target} has none (use 0, or a family with rsample)")
    if (_select(config, "objective.compile", False) is True and guide_target == "vardiu_pyro.guides.flow.FlowGuide"
            and _select(config, "guide.coupling") == "spline"):  # (a 1-D latent's flow is a spline too: it fails
        # at its first step, with its own one-line message, vardiu_pyro/compiled.py)
        _fail("objective.compile", "true", "cannot compile the flow guide's splines (Pyro's spline checks its values in "
              "Python): use guide.coupling=affine, or objective.compile=false")
    _integer(config, "trainer.eval_every", minimum=1)
    _integer(config, "trainer.eval_samples", minimum=2)
    _integer(config, "trainer.checkpoint_every", minimum=0)
    _integer(config, "trainer.max_consecutive_skips", minimum=1)
    _integer(config, "trainer.threads", minimum=1, optional=True)
    decay = _select(config, "trainer.ema_decay")
    if not _is_number(decay) or not 0 <= decay < 1:
        _fail("trainer.ema_decay", decay, "must be a number in [0, 1) (0: no EMA)")

    for lo, hi in (("sigma.min", "sigma.max"), ("sigma.law.sigma_min", "sigma.law.sigma_max")):
        sigma_min, sigma_max = _select(config, lo), _select(config, hi)
        if (sigma_min is None and sigma_max is None) or isinstance(sigma_max, Mapping):  # a Ramp: checked when built
            continue
        if not _is_number(sigma_min) or sigma_min <= 0:
            _fail(lo, sigma_min, "must be a number > 0")
        if not _is_number(sigma_max):
            _fail(hi, sigma_max, "must be a number")
        if sigma_min >= sigma_max:
            _fail(lo, sigma_min, f"must be < {hi}={sigma_max}")
    max_start, sigma_min = _select(config, "sigma.max_start"), _select(config, "sigma.min")
    if max_start is not None and (not _is_number(max_start) or not max_start > (sigma_min if _is_number(sigma_min) else 0)):
        _fail("sigma.max_start", max_start, f"must be a number > sigma.min={sigma_min} (σ_max at the start of the ramps)")
    curriculum = _select(config, "sigma.curriculum")
    if curriculum is not None and (not _is_number(curriculum) or not 0 < curriculum <= 1):
        _fail("sigma.curriculum", curriculum, "must be a number in (0, 1] (the fraction of the run the σ ramps take)")
    for key in ("sigma.power_start", "sigma.power_end"):  # the σ law's power ramps from one to the other
        _number(config, key, above=0, reason=" (the power of the σ law)")
    for key in ("sigma.weight_start", "sigma.weight_end"):
        _number(config, key)
    mean = _select(config, "sigma.mean")  # the log-normal law's: a number, or a ramp (models/sigma.py, checked when built)
    if not (isinstance(mean, Mapping) and str(mean.get("_target_", "")).endswith("models.sigma.Ramp")):
        _number(config, "sigma.mean", reason=" (or a vardiu_pyro.models.sigma.Ramp)")
    _number(config, "sigma.std", above=0)
    _integer(config, "teacher.num_samples", minimum=1, optional=True)
    _integer(config, "teacher.seed", minimum=0, optional=True)
    for node in NETWORK_NODES:
        _check_network(config, node)
    if _shipped(_select(config, "generator")):
        _integer(config, "generator.latent_dim", minimum=1, optional=True)  # null: the data dimension
    _check_optimizer(config)
    _check_lr_overrides(_select(config, "optim.lr_overrides"), _select(config, "objective._target_"))
    _check_bandwidths(config)
    teacher_path = _select(config, "teacher.path")
    if teacher_path is not None:
        validate_teacher_dir(teacher_path)


def unused_overrides(cfg: DictConfig | Mapping, overrides: Sequence[str]) -> list[str]:
    """The overrides of the guide when the objective trains none (Diff-Instruct's fake score replaces it): they change
    nothing, and a sweep over them repeats one run under several names."""
    target = OmegaConf.select(cfg, "objective._target_", default=None) if isinstance(cfg, DictConfig) else \
        _select(cfg, "objective._target_")
    try:
        names = getattr(_locate(str(target)), "network_names", ()) if target else ()
    except Exception:  # an objective that does not import: validate_config says so
        return []
    if not names or "guide" in names:  # no names declared: whether it trains a guide is unknown
        return []
    return [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] == "guide"]


def validate_teacher_training(cfg: DictConfig | Mapping) -> None:
    """Reject an invalid configuration of ``python -m vardiu_pyro.train_teacher`` with a ``ConfigError``, before any
    work: a sampler setting, say, is otherwise first used at the first evaluation, after thousands of iterations."""
    from .models.sampling import SOLVERS

    config = _container(cfg)
    _check_targets(config)
    _integer(config, "seed", minimum=0)
    _check_device(config.get("device", "auto"))
    for key, minimum in (("trainer.iterations", 1), ("trainer.batch_size", 1), ("trainer.eval_every", 1),
                         ("trainer.eval_samples", 2), ("data.num_samples", 1), ("sampler.num_steps", 1),
                         ("score_error.num_samples", 1)):
        _integer(config, key, minimum)
    _integer(config, "trainer.schedule_iterations", minimum=1, optional=True)
    _integer(config, "trainer.threads", minimum=1, optional=True)
    for key in ("trainer.progress", "trainer.retain_freed_memory"):
        _boolean(config, key)
    decay = _select(config, "trainer.ema_decay")
    if not _is_number(decay) or not 0 <= decay < 1:
        _fail("trainer.ema_decay", decay, "must be a number in [0, 1) (0: the weights themselves)")
    _check_bandwidths(config)
    _check_optimizer(config)
    _check_network(config, "denoiser")
    if _shipped(_select(config, "denoiser")):
        _number(config, "denoiser.sigma_data", above=0, reason=" (or null: the target's standard deviation)")
    _choice(config, "sampler.solver", sorted(SOLVERS))
    for lo, hi in (("noise.sigma_min", "noise.sigma_max"), ("sampler.sigma_min", "sampler.sigma_max")):
        _number(config, lo, above=0)
        _number(config, hi, above=0)
        low, high = _select(config, lo), _select(config, hi)
        if _is_number(low) and _is_number(high) and low >= high:
            _fail(lo, low, f"must be < {hi}={high}")
    sigmas = _select(config, "score_error.sigmas")
    if sigmas is not None and (not isinstance(sigmas, Sequence) or isinstance(sigmas, str) or not sigmas
                               or not all(_is_number(x) and x > 0 for x in sigmas)):
        _fail("score_error.sigmas", sigmas, "must be a non-empty list of numbers > 0")


def validate_teacher_dir(path: str | os.PathLike, field: str = "teacher.path") -> None:
    """A teacher directory exists and holds readable weights and well-formed JSON.

    Weights are ``*.safetensors`` (their headers must read cleanly, which catches truncation) or
    torch pickles, which are read with ``weights_only=True``: a pickle that would run code is
    refused, never executed.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        _fail(field, path, "no such directory")
    if not folder.is_dir():
        _fail(field, path, "not a directory (a teacher is a directory holding its weights)")
    weights = sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    if not weights:
        _fail(field, path, f"holds no weights (no {', '.join('*' + s for s in WEIGHT_SUFFIXES)} file)")
    for f in weights:
        name = f.relative_to(folder)
        if f.suffix == ".safetensors":
            try:
                with safe_open(str(f), framework="pt") as handle:
                    handle.keys()
            except Exception as e:
                _fail(field, path, f"{name} is truncated or not a safetensors file ({e})")
        else:
            try:
                load_torch_file(f)
            except CheckpointError as e:
                _fail(field, path, str(e).replace(str(f), str(name)))
    for f in sorted(folder.rglob("*.json")):
        try:
            json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            _fail(field, path, f"{f.relative_to(folder)} is not valid JSON ({e})")


# ---------------------------------------------------------------------------------------------
# the built problem


def validate_problem(problem) -> None:
    """The teacher's score has the target's shape (one call on two zero inputs, no random draw)."""
    shape = tuple(problem.target.event_shape)
    param = next(problem.generator.parameters())
    x_t = torch.zeros(2, *shape, device=param.device, dtype=param.dtype)
    sigma = torch.full((2,), float(getattr(problem.sigma_law, "sigma_max", 1.0)), device=param.device, dtype=param.dtype)
    teacher = type(problem.teacher).__name__
    try:
        with torch.no_grad():
            score = problem.teacher.score(x_t, sigma)
    except (RuntimeError, ValueError, IndexError) as e:
        raise ConfigError(f"teacher={teacher}: fails on inputs of the target's shape {shape} "
                          f"({str(e).splitlines()[0]})") from None
    if not isinstance(score, torch.Tensor) or tuple(score.shape) != (2, *shape):
        got = tuple(score.shape[1:]) if isinstance(score, torch.Tensor) else type(score).__name__
        raise ConfigError(f"teacher={teacher}: its score has shape {got} per sample, the target's samples "
                          f"have shape {shape}")


# ---------------------------------------------------------------------------------------------
# the command line


def check_command_line(args: Sequence[str], config_name: str = "config",
                       validate: Callable[[DictConfig], None] | None = None) -> None:
    """Compose and validate (``validate``, by default ``validate_config``) the configuration a command line asks for,
    as Hydra would, but report problems as one-line ``ConfigError``s (Hydra's own reports are multi-line).

    With ``--multirun``, each value of each sweep is checked (with the other fixed overrides).
    Help, completion and custom config paths are left to Hydra.
    """
    from hydra._internal.utils import get_args_parser  # Hydra's own parser of its command line
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            parsed = get_args_parser().parse_args(list(args))
    except SystemExit:  # a usage error: Hydra reports it (once) when it parses the same line
        return
    if (parsed.help or parsed.hydra_help or parsed.shell_completion or parsed.config_path or parsed.config_dir
            or parsed.info or parsed.experimental_rerun):
        return
    config_name = parsed.config_name or config_name
    overrides = [o for o in parsed.overrides]
    try:
        parsed_overrides = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise ConfigError(f"cannot parse the override {getattr(e, 'override', '')!s}: {str(e).splitlines()[0]}") from None

    fixed = [o.input_line for o in parsed_overrides if not o.is_sweep_override()]
    sweeps = [o for o in parsed_overrides if o.is_sweep_override()]
    if sweeps and not parsed.multirun:
        raise ConfigError(f"{sweeps[0].input_line}: a sweep over several values needs --multirun (-m)")
    candidates = [fixed]
    for sweep in sweeps:
        try:
            values = list(sweep.sweep_string_iterator())
        except Exception:  # interval sweeps (for optimisers) have no finite list of values
            continue
        candidates += [fixed + [f"{sweep.get_key_element()}={v}"] for v in values]
    for candidate in candidates:
        cfg = compose_config(candidate, config_name)
        if OmegaConf.select(cfg, "trainer.resume"):
            from .resume import resumed_config

            cfg = resumed_config(cfg, candidate)
        (validate or validate_config)(cfg)


def compose_config(overrides: Sequence[str], config_name: str = "config") -> DictConfig:
    """The configuration ``python -m vardiu_pyro.fit`` (``config_name="config"``) or another entry point of
    ``vardiu_pyro.configs`` would run with these Hydra overrides: ``hydra.compose``, with composition errors turned
    into one-line ``ConfigError``s."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException, MissingConfigException

    try:
        with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
            return compose(config_name, overrides=list(overrides))
    except MissingConfigException as e:
        missing = str(e.missing_cfg_file or "")
        if e.options and "/" in missing:
            group, option = missing.rsplit("/", 1)
            raise ConfigError(f"{group}={option}: no such {group.replace('/', '.')} option "
                              f"(choose one of: {', '.join(sorted(e.options))})") from None
        raise ConfigError(" ".join(str(e).split("\n\n")[0].split())) from None
    except (HydraException, OmegaConfBaseException) as e:
        cause = e.__cause__
        if "Could not override" in str(e) and isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
            line = str(e).splitlines()[-1].removeprefix("To append to your config use +")
            raise ConfigError(f"{line}: no such key in the configuration ({_key_hint(line, overrides, config_name)})"
                              ) from None
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        cause = [line.strip() for line in str(e.__cause__ or "").splitlines() if line.strip()]
        detail = "; ".join(dict.fromkeys(lines[:1] + cause[:1]))
        raise ConfigError(detail or type(e).__name__) from None


def _key_hint(line: str, overrides: Sequence[str], config_name: str) -> str:
    """For ``key=value`` whose key does not exist: the nearest key of its parent (a typo), else how a key is added."""
    from hydra import compose, initialize_config_module

    key = line.split("=", 1)[0]
    parent, _, leaf = key.rpartition(".")
    others = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key]
    try:
        with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
            node = OmegaConf.select(compose(config_name, overrides=others), parent) if parent else \
                compose(config_name, overrides=others)
    except Exception:  # another override fails too: it is reported once this one is mended
        node = None
    close = difflib.get_close_matches(leaf, [str(k) for k in node.keys()], n=1) if isinstance(node, DictConfig) else []
    if close:
        return f"did you mean {parent + '.' if parent else ''}{close[0]}?"
    return f"a new argument to a _target_ is added with +{line}"


def hydra_value(text: str, always: bool = False) -> str:
    """``text`` as a string value of a Hydra override: quoted (a backslash escapes only a quote, or backslashes before
    a quote), unless ``always`` is false and it is a path Hydra reads as that string unquoted (a ``/`` and no
    character of its grammar: ``=``, ``,``, brackets, quotes, spaces, ...; ``2026`` alone would be a number)."""
    if not always and "/" in text and re.fullmatch(r"[\w/.\-+@%:]+", text):
        return text
    return "'" + re.sub(r"(\\*)('|$)", lambda m: 2 * m.group(1) + ("\\'" if m.group(2) else ""), text) + "'"


def exit_with_message(message: str, code: int) -> None:
    """End a command-line run with one line on stderr and ``code`` (2: bad input), no traceback."""
    print(f"vardiu-pyro: {message}", file=sys.stderr)
    sys.exit(code)
