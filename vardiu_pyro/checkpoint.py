"""Checkpoints in safetensors form, written atomically, checked on reading.

A checkpoint is a nested state (dicts, lists, numbers, strings, tensors): every tensor goes into
the safetensors payload, and the structure around them (with the non-tensor values) into the
file's metadata as JSON. Nothing is pickled, so loading a checkpoint cannot execute code.

Writing goes to a temporary file in the same folder, flushed to disk, then renamed over the
target (``os.replace`` is atomic), optionally after moving the current file aside as the previous
checkpoint: a kill at any moment leaves a complete checkpoint behind. The metadata holds a
SHA-256 digest of the tensors; a truncated or corrupted file fails to load with a
``CheckpointError`` that says why.

The only other weight files the project reads are pickles (``.pt``/``.pth``/``.bin``/``.ckpt``
from elsewhere): ``load_torch_file`` reads them with ``torch.load(weights_only=True)``, which
refuses any pickle that would run code.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, safe_open, save_file

__all__ = ["save_checkpoint", "load_checkpoint", "read_checkpoint_metadata", "load_torch_file", "CheckpointError",
           "flatten_state", "unflatten_state", "tensors_digest", "with_umask_permissions", "FORMAT"]

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


class CheckpointError(ValueError):
    """A file that is not a readable vardiu-pyro checkpoint (missing, truncated, corrupted, foreign)."""


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{t.dtype}|{tuple(tensors[key].shape)}|".encode())
        h.update(t.view(torch.uint8).numpy())
    return h.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make renames in ``folder`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def with_umask_permissions(path: str | os.PathLike) -> None:
    """Give ``path`` the permissions ``open`` gives a new file: 0o666 less the process's umask (read by setting it,
    then restoring it). A file made by ``mkstemp`` or in a ``TemporaryDirectory`` is its owner's alone until then."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def save_checkpoint(path: str | os.PathLike, state: dict, previous: str | os.PathLike | None = None) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    With ``previous``, an existing ``path`` is first moved there, so the last two checkpoints are
    kept; the new one is complete on disk before either rename happens.
    """
    path = Path(path)
    skeleton, tensors = flatten_state(state)
    metadata = {"format": FORMAT, "skeleton": json.dumps(skeleton), "sha256": tensors_digest(tensors)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        with_umask_permissions(tmp)  # a checkpoint is read like the run's other files (by a group, on a cluster)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _metadata(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as e:  # safetensors reports truncation and garbage as a deserialisation error
        raise CheckpointError(f"{path} is truncated or is not a safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vardiu-pyro checkpoint (format {metadata.get('format')!r})")
    return metadata


def _skeleton(path: Path, metadata: dict) -> Any:
    try:
        return json.loads(metadata["skeleton"])
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} has a corrupted structure record ({e})") from None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by ``save_checkpoint`` (tensors land on ``device``).

    Raises ``CheckpointError`` if the file is missing, truncated, foreign, or its tensors do not
    match the digest recorded when it was written.
    """
    path = Path(path)
    metadata = _metadata(path)
    skeleton = _skeleton(path, metadata)
    try:
        tensors = load_file(str(path), device="cpu")
    except Exception as e:
        raise CheckpointError(f"{path}: its tensors cannot be read ({e})") from None
    if "sha256" in metadata and tensors_digest(tensors) != metadata["sha256"]:
        raise CheckpointError(f"{path} is corrupted: its tensors do not match the checksum written with them")
    if torch.device(device).type != "cpu":
        tensors = {k: v.to(device) for k, v in tensors.items()}
    try:
        return unflatten_state(skeleton, tensors)
    except KeyError as e:
        raise CheckpointError(f"{path} is corrupted: tensor {e} is missing") from None


def read_checkpoint_metadata(path: str | os.PathLike) -> dict:
    """The non-tensor part of a checkpoint (tensors read as None), without reading the payload."""
    path = Path(path)
    metadata = _metadata(path)
    return unflatten_state(_skeleton(path, metadata), _NoTensors())


class _NoTensors(dict):
    """Stands in for the payload when only the metadata is read: every tensor reads as None."""

    def __missing__(self, key):
        return None


PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


def load_torch_file(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Read a pickled torch file with ``weights_only=True``: tensors and plain containers only.

    A pickle that would import or call anything else (code execution on load) is refused with a
    ``CheckpointError``; nothing in it runs.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"refusing to load {path}: torch.load(weights_only=True) rejected it "
                              f"({_unpickling_reason(str(e))}); it is not plain weights, and unpickling it "
                              "fully could run arbitrary code") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{path} cannot be read as torch weights ({e})") from None


def _unpickling_reason(message: str) -> str:
    """The specific line of torch's weights-only error (its preamble suggests weights_only=False)."""
    lines = [line.strip() for line in message.splitlines()[1:] if line.strip()]
    lines = [line.split("WeightsUnpickler error:", 1)[-1].strip() for line in lines
             if not line.startswith("Check the documentation")]
    return " ".join(line for line in lines if line) or "not plain weights"
