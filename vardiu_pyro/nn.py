"""Small network building blocks shared by generators, guides and score networks."""

from __future__ import annotations

from torch import nn

__all__ = ["mlp", "ACTIVATIONS"]

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def mlp(in_features: int, out_features: int, width: int, depth: int, activation: str = "silu") -> nn.Sequential:
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
    return nn.Sequential(*layers)
