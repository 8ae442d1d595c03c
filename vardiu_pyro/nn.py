"""Small network building blocks shared by generators, guides and score networks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["mlp", "MLP", "ACTIVATIONS", "PRECISIONS", "native_bfloat16", "resolve_precision", "precision_name",
           "set_hidden_dtype"]

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
PRECISIONS = ("auto", "float32", "bfloat16")


class MLP(nn.Sequential):
    """Linear layers with activations between them: [Linear, act] * depth, then a linear output.

    With ``hidden_dtype`` set (``set_hidden_dtype``), the products between hidden layers run in that
    dtype under ``torch.autocast``, forward and backward; the first layer (which sees the inputs at
    full precision) and the output layer (which writes them) stay float32, as do the parameters,
    their gradients and the optimiser. A Sequential underneath, so the parameter names (and
    checkpoints) do not depend on the setting.
    """

    hidden_dtype: torch.dtype | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.hidden_dtype is None or len(self) < 4:  # float32 throughout, or no hidden-to-hidden layer
            return super().forward(x)
        h = self[1](self[0](x))
        with torch.autocast(device_type=h.device.type, dtype=self.hidden_dtype):
            for layer in list(self)[2:-1]:  # (a slice of a Sequential would build a new module every call)
                h = layer(h)
        return self[-1](h.float())


def mlp(in_features: int, out_features: int, width: int, depth: int, activation: str = "silu") -> MLP:
    """``depth`` hidden layers of ``width`` units with the given activation, then a linear output."""
    if depth < 1 or width < 1:
        raise ValueError(f"an MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = [nn.Linear(in_features, width), act()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), act()]
    layers.append(nn.Linear(width, out_features))
    return MLP(*layers)


def native_bfloat16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products are native (faster than float32) here: a CPU with AVX512-BF16 or AMX."""
    if device.type != "cpu":
        return False  # CUDA: the networks here are small enough that kernel launches, not products, set the pace
    cpu = torch.cpu
    return any(getattr(cpu, probe, lambda: False)() for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """``precision`` → the hidden layers' dtype: None (float32), or bfloat16 (``auto``: where it is native)."""
    if name not in PRECISIONS:
        raise ValueError(f"precision={name}: choose one of {', '.join(PRECISIONS)}")
    if name == "bfloat16" or (name == "auto" and native_bfloat16(device)):
        return torch.bfloat16
    return None


def precision_name(dtype: torch.dtype | None) -> str:
    """What ``resolve_precision`` returned, as a word: ``float32`` (None) or ``bfloat16``."""
    return str(dtype or torch.float32).removeprefix("torch.")


def set_hidden_dtype(module: nn.Module, dtype: torch.dtype | None) -> int:
    """Run the hidden layers of every ``MLP`` inside ``module`` in ``dtype`` (None: float32); returns how many."""
    found = [m for m in module.modules() if isinstance(m, MLP)]
    for m in found:
        m.hidden_dtype = dtype
    return len(found)
