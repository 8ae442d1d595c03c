"""Checkpoints in safetensors form, written atomically.

A checkpoint is a nested state (dicts, lists, numbers, strings, tensors): every tensor goes into
the safetensors payload, and the structure around them (with the non-tensor values) into the
file's metadata as JSON. Nothing is pickled, so loading a checkpoint cannot execute code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

__all__ = ["save_checkpoint", "load_checkpoint", "flatten_state", "unflatten_state", "FORMAT"]

FORMAT = "vardiu-pyro-checkpoint/1"


def flatten_state(state: Any, tensors: dict[str, torch.Tensor] | None = None, prefix: str = "") -> tuple[Any, dict]:
    """Split a nested state into a JSON-able skeleton and a flat ``{key: tensor}`` dict.

    Dict keys keep their type (optimiser states are keyed by int), tuples stay tuples.
    """
    tensors = {} if tensors is None else tensors
    if isinstance(state, torch.Tensor):
        key = prefix or "tensor"
        tensors[key] = state.detach().contiguous()
        return {"__tensor__": key}, tensors
    if isinstance(state, dict):
        items = [[k, flatten_state(v, tensors, f"{prefix}/{k}" if prefix else str(k))[0]] for k, v in state.items()]
        return {"__dict__": items}, tensors
    if isinstance(state, (list, tuple)):
        items = [flatten_state(v, tensors, f"{prefix}/{i}")[0] for i, v in enumerate(state)]
        return {"__tuple__" if isinstance(state, tuple) else "__list__": items}, tensors
    if state is None or isinstance(state, (bool, int, float, str)):
        return state, tensors
    raise TypeError(f"cannot checkpoint a value of type {type(state).__name__} at {prefix!r}")


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``flatten_state``."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__dict__" in skeleton:
            return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            return [unflatten_state(v, tensors) for v in skeleton["__list__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    skeleton, tensors = flatten_state(state)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": FORMAT, "skeleton": json.dumps(skeleton)})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save_checkpoint`` (tensors land on ``device``)."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not a vardiu-pyro checkpoint (format {metadata.get('format')!r})")
    tensors = load_file(str(path), device=str(device))
    return unflatten_state(json.loads(metadata["skeleton"]), tensors)
