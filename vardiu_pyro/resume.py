"""What it takes to stop a run and continue it exactly: random states, the run's checkpoint files,
the configuration a run resumes with, and its metrics log.

A run directory keeps its last two checkpoints, ``checkpoint.safetensors`` and
``checkpoint.prev.safetensors``; resuming reads the newest one that loads cleanly. What a
checkpoint holds (see ``Trainer.state_dict``): every network and optimiser through
``objective.state_dict()``, the EMA, the iteration, the metric records, the losses since the last
evaluation, the skip counters, the elapsed clock, the configuration and every random state below.
The σ law and the weight need nothing: they are pure functions of the iteration
(``models/sigma.py``), so the iteration counter is their whole state.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint_metadata, save_checkpoint
from .validation import ConfigError, hydra_value

try:
    import numpy as np
except ImportError:  # numpy is optional for torch; without it there is no numpy state to keep
    np = None

__all__ = ["CHECKPOINT", "PREVIOUS_CHECKPOINT", "METRICS", "RESUMABLE_KEYS", "rng_state", "set_rng_state",
           "save_run_checkpoint", "load_run_checkpoint", "first_difference", "check_compatible",
           "resumed_config", "write_metrics", "resume_command", "path_command"]

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"
PREVIOUS_CHECKPOINT = "checkpoint.prev.safetensors"
METRICS = "metrics.jsonl"

# Keys a resumed run may set differently from the run it continues: how often to checkpoint, how to show
# progress, where and on how many threads to run, how the process allocates memory. None changes the mathematics;
# the thread count and the device change the floating-point rounding (and ``precision=auto`` follows the device),
# so a resume is bit-identical to the uninterrupted run only with the run's own ``trainer.threads`` and ``device``.
RESUMABLE_KEYS = ("trainer.resume", "trainer.progress", "trainer.checkpoint_every", "trainer.threads",
                  "trainer.retain_freed_memory",
                  "trainer.max_consecutive_skips", "trainer.pyro_validation", "device")


# ---------------------------------------------------------------------------------------------
# random states


def rng_state() -> dict:
    """Every random state a run draws from: torch (CPU and each CUDA device), Python's ``random``
    and numpy's global state (``pyro.set_rng_seed`` seeds all three; Pyro samples from torch's)."""
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(), "python": [version, list(internal), gauss_next],
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    if np is not None:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    return state


def set_rng_state(state: Mapping) -> None:
    """Restore what ``rng_state`` returned (CUDA states only where CUDA is present)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))
    if np is not None and state.get("numpy") is not None:
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# ---------------------------------------------------------------------------------------------
# checkpoint files of a run


def save_run_checkpoint(run_dir: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` as the run's checkpoint, keeping the one it replaces as the previous."""
    run_dir = Path(run_dir)
    return save_checkpoint(run_dir / CHECKPOINT, state, previous=run_dir / PREVIOUS_CHECKPOINT)


def load_run_checkpoint(run_dir: str | os.PathLike, metadata_only: bool = False) -> tuple[dict, Path]:
    """The newest checkpoint of ``run_dir`` that loads cleanly, and its path (tensors on the CPU).

    A missing, truncated or corrupted ``checkpoint.safetensors`` is reported (a logged warning)
    and the previous checkpoint used instead; ``CheckpointError`` when neither is usable. With
    ``metadata_only`` the tensors are not read (nor checked against their digest), and nothing is
    logged: a look before the real load.
    """
    run_dir = Path(run_dir)
    problems = []
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = read_checkpoint_metadata(path) if metadata_only else load_checkpoint(path)
        except CheckpointError as e:
            problems.append(str(e))
            continue
        if problems and not metadata_only:
            log.warning("%s; resuming from %s (iteration %s) instead", "; ".join(problems), path, state.get("iteration"))
        return state, path
    if not problems:
        raise CheckpointError(f"{run_dir} holds no checkpoint ({CHECKPOINT})")
    raise CheckpointError("no usable checkpoint: " + "; ".join(problems))


# ---------------------------------------------------------------------------------------------
# the configuration of a resumed run


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        out = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
        return out if out or not prefix else {prefix: {}}
    return {prefix: tree}


def first_difference(a: Mapping, b: Mapping, ignore: Iterable[str] = ()) -> tuple[str, Any, Any] | None:
    """The first dotted key (sorted) whose value differs between two nested configs, else None.

    Keys in ``ignore`` (and everything under them) are skipped; a key missing on one side reads
    as ``<absent>``.
    """
    ignore = tuple(ignore)
    left, right = _leaves(a), _leaves(b)
    for key in sorted(set(left) | set(right)):
        if any(key == k or key.startswith(k + ".") for k in ignore):
            continue
        x, y = left.get(key, "<absent>"), right.get(key, "<absent>")
        if x != y or type(x) is not type(y) and not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            return key, x, y
    return None


def check_compatible(saved: Mapping, current: Mapping, resume_dir: str | os.PathLike) -> None:
    """``ConfigError`` naming the first setting (outside ``RESUMABLE_KEYS``) that differs from the run's own."""
    diff = first_difference(saved, current, ignore=RESUMABLE_KEYS)
    if diff is not None:
        key, old, new = diff
        raise ConfigError(f"trainer.resume={resume_dir}: that run was made with {key}={_show(old)}, this "
                          f"configuration has {key}={_show(new)}; a run resumes with its own configuration "
                          f"(only {', '.join(RESUMABLE_KEYS)} may change)")


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def resumed_config(cfg: DictConfig, overrides: Iterable[str]) -> DictConfig:
    """The configuration of ``trainer.resume=DIR`` given on a command line: the run's own (from its
    checkpoint), with the command line's ``RESUMABLE_KEYS`` applied.

    Any other override must repeat the run's own value (a ``ConfigError`` names the first that
    does not), so ``python -m vardiu_pyro.fit trainer.resume=DIR`` alone is the full command.
    """
    resume_dir = cfg.trainer.resume
    saved = json.loads(load_resume_state(resume_dir, metadata_only=True)["config"])
    current = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    merged = OmegaConf.create(saved)
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group.replace("/", ".")
        if key == "hydra" or key.startswith("hydra."):
            continue
        new = _plain(OmegaConf.select(current, key, default="<absent>"))
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS):
            if not override.is_delete():
                OmegaConf.update(merged, key, new, force_add=True)
            continue
        diff = first_difference({key: _plain(OmegaConf.select(merged, key, default="<absent>"))}, {key: new})
        if diff is not None:
            k, old, new = diff
            raise ConfigError(f"trainer.resume={resume_dir}: that run was made with {k}={_show(old)}, the command "
                              f"line asks for {k}={_show(new)}; a run resumes with its own configuration "
                              f"(only {', '.join(RESUMABLE_KEYS)} may change)")
    return merged


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def load_resume_state(resume_dir: str | os.PathLike, metadata_only: bool = False) -> dict:
    """The checkpoint to resume from, with problems reported as a ``ConfigError`` on ``trainer.resume``."""
    if not Path(resume_dir).is_dir():
        raise ConfigError(f"trainer.resume={resume_dir}: no such directory")
    try:
        state, _ = load_run_checkpoint(resume_dir, metadata_only=metadata_only)
    except CheckpointError as e:
        raise ConfigError(f"trainer.resume={resume_dir}: {e}") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), str) or "rng" not in state:
        raise ConfigError(f"trainer.resume={resume_dir}: its checkpoint was not written by a resumable run "
                          "(no configuration or random state in it)")
    return state


# ---------------------------------------------------------------------------------------------
# the metrics log


def write_metrics(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Replace ``metrics.jsonl`` with ``records``: on resume, the checkpoint's records, which drops
    whatever the interrupted run logged after its checkpoint (and any half-written last line). A
    kill during this write loses nothing: the next resume writes the same lines again."""
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def resume_command(run_dir: str | os.PathLike) -> str:
    """The shell command that continues the run in ``run_dir``."""
    return path_command("vardiu_pyro.fit", "trainer.resume", run_dir)


def path_command(module: str, key: str, path: str | os.PathLike) -> str:
    """``python -m MODULE KEY=PATH`` as a shell command: the path quoted for Hydra where it needs it (a sweep's
    ``hydra.sweep.subdir=${hydra.job.override_dirname}`` puts = and , in it), then the override for the shell."""
    override = f"{key}={hydra_value(str(path))}"
    if shlex.quote(override) != override and not re.search(r'["$`\\!]', override):
        return f'python -m {module} "{override}"'  # the shell leaves Hydra's single quotes alone in these
    return f"python -m {module} {shlex.quote(override)}"
