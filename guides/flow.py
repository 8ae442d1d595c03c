"""A conditional normalizing flow on z, with (x_t, σ) features as context (Pyro's coupling transforms)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.distributions import constraints
from pyro.distributions.conditional import ConditionalTransformModule
from pyro.distributions.transforms import (AffineTransform, ConditionalAffineCoupling, ConditionalSpline,
                                           Permute)
from pyro.nn import ConditionalDenseNN, DenseNN
from torch import Tensor, nn
from torch.distributions.transforms import Transform

from vardiu_pyro.nn import ACTIVATIONS, mlp

from .base import Guide, NoiseConditioning, with_event_shape

__all__ = ["FlowGuide", "ConditionalSplineCoupling", "SplineCouplingLayer"]

SOFTPLUS_INVERSE_OF_ONE = 0.5413248546129181  # log(e - 1): softplus of it is 1


class FlowGuide(Guide):
    """q_φ(z | x_t, σ): a normalizing flow on z conditioned on features of (x_t, σ).

        u ~ N(0, I),   v = T_L ∘ P ∘ ... ∘ P ∘ T_1(u; h),   z = μ + σ · softplus(ρ) ⊙ v,
        (μ, ρ, h) = trunk(NoiseConditioning(x_t, σ))

    The trunk is the diagonal-Gaussian guide's network with ``features`` extra outputs h, the
    context every layer reads; the last step is that family's σ-scaled affine map, so the layers
    T_l only model the non-Gaussian shape of the posterior in standardised coordinates (where the
    splines' box [-bound, bound] makes sense). Layers are coupling layers (``coupling="spline"``:
    monotone rational-quadratic splines, Durkan et al. 2019; ``"affine"``: RealNVP), each with its
    own small hypernetwork of (the untouched half of v, h); P reverses the coordinates between
    layers so that every coordinate is transformed. A latent of one dimension cannot be split:
    there every layer is an elementwise spline whose knots depend on h only (Pyro's
    ``ConditionalSpline``), whatever ``coupling`` says.

    **Direction.** Training only *scores* the guide at the model's z, so what must be cheap is
    ``log_prob(z)``: it runs the flow backwards, z → u, one hypernetwork pass per layer, and adds
    every layer's log |det ∂T/∂u| (coupling layers have triangular Jacobians, so it is exact and
    free). Coupling layers are just as cheap forwards, so ``rsample`` (U_K's proposals, analysis) also costs
    one pass per layer; an autoregressive flow would have made one of the two directions cost
    ``latent_dim`` passes. Every Jacobian term is included: ``log_prob`` integrates to one
    (``tests/test_guides.py`` checks it on a grid), unlike the published spline guide.

    The hypernetworks' last layers start near zero (identity splines, unit affine scales), so the
    flow starts as the diagonal-Gaussian family and learns departures from it.
    """

    def __init__(self, latent_shape: Sequence[int], data_shape: Sequence[int], data_std: float = 1.0,
                 layers: int = 4, coupling: str = "spline", bins: int = 8, bound: float = 4.0,
                 hidden: int = 64, hidden_depth: int = 2, features: int = 32, width: int = 256, depth: int = 3,
                 activation: str = "silu", embedding: str = "raw"):
        super().__init__(latent_shape, data_shape, data_std)
        if layers < 1:
            raise ValueError(f"guide.layers must be >= 1, got {layers}")
        if coupling not in ("spline", "affine"):
            raise ValueError(f"guide.coupling must be 'spline' or 'affine', got {coupling!r}")
        if bins < 2:
            raise ValueError(f"guide.bins must be >= 2, got {bins}")
        if not bound > 0:
            raise ValueError(f"guide.bound must be positive, got {bound}")
        d = self.latent_dim
        self.features = int(features)
        self.conditioning = NoiseConditioning(data_std, embedding)
        self.trunk = mlp(self.context_dim, 2 * d + self.features, width, depth, activation)
        hidden_dims = [int(hidden)] * int(hidden_depth)
        act = ACTIVATIONS[activation]()
        if d == 1:
            make = partial(elementwise_spline, features, hidden_dims, bins, bound, act)
        elif coupling == "spline":
            make = partial(ConditionalSplineCoupling, d, d // 2, features, hidden_dims, bins, bound, act)
        else:
            make = partial(affine_coupling, d, d // 2, features, hidden_dims, act)
        self.layers = nn.ModuleList(make() for _ in range(layers))
        self.register_buffer("reverse", torch.arange(d - 1, -1, -1), persistent=False)

    def forward(self, x_t: Tensor, sigma: Tensor) -> dist.TorchDistribution:
        d = self.latent_dim
        loc, rho, h = self.trunk(self.conditioning(x_t, sigma)).split([d, d, self.features], dim=-1)
        transforms = []
        for i, layer in enumerate(self.layers):
            if i > 0 and d > 1:
                transforms.append(Permute(self.reverse))
            transforms.append(layer.condition(h))
        transforms.append(AffineTransform(loc, F.softplus(rho) * sigma[:, None], event_dim=1))
        base = dist.Normal(loc.new_zeros(()), 1.0).expand(loc.shape).to_event(1)
        return with_event_shape(dist.TransformedDistribution(base, transforms), self.latent_shape)


# ---------------------------------------------------------------------------------------------- layers
def _spline_param_dims(n: int, bins: int) -> list[int]:
    """Widths, heights (n · bins each) and inner-knot derivatives (n · (bins - 1)) of n quadratic splines."""
    return [n * bins, n * bins, n * (bins - 1)]


def _start_near_identity(net: ConditionalDenseNN, derivative_slice: slice | None = None) -> None:
    """Shrink the last layer (outputs ≈ 0: uniform bins, zero shift and log-scale); derivatives ≈ 1."""
    last = net.layers[-1]
    with torch.no_grad():
        last.weight.mul_(1e-2)
        last.bias.zero_()
        if derivative_slice is not None:
            last.bias[derivative_slice] = SOFTPLUS_INVERSE_OF_ONE


def elementwise_spline(features: int, hidden_dims: list[int], bins: int, bound: float,
                       activation: nn.Module) -> ConditionalSpline:
    """v ↦ spline(v; θ(h)) coordinate-wise, for a one-dimensional latent (Pyro's ``ConditionalSpline``)."""
    dims = _spline_param_dims(1, bins)
    net = DenseNN(features, hidden_dims, param_dims=dims, nonlinearity=activation)
    _start_near_identity(net, slice(2 * bins, 3 * bins - 1))
    return ConditionalSpline(net, 1, bins, bound, order="quadratic")


def affine_coupling(input_dim: int, split_dim: int, features: int, hidden_dims: list[int],
                    activation: nn.Module) -> ConditionalAffineCoupling:
    """RealNVP: v₂ ↦ exp(s(v₁, h)) ⊙ v₂ + t(v₁, h) (Pyro's ``ConditionalAffineCoupling``)."""
    n = input_dim - split_dim
    net = ConditionalDenseNN(split_dim, features, hidden_dims, param_dims=[n, n], nonlinearity=activation)
    _start_near_identity(net)
    return ConditionalAffineCoupling(split_dim, net)


class ConditionalSplineCoupling(ConditionalTransformModule):
    """Spline coupling conditioned on a context h: v₁ unchanged, v₂ ↦ spline(v₂; θ(v₁, h)).

    Pyro's ``SplineCoupling`` takes a hypernetwork of v₁ alone and builds an unused learnable
    spline for v₁ at construction; this conditional version feeds (v₁, h) to a
    ``ConditionalDenseNN`` and reuses Pyro's ``ConditionalSpline`` for the spline itself
    (knots, inverse, log-derivative).
    """

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, input_dim: int, split_dim: int, context_dim: int, hidden_dims: list[int], bins: int = 8,
                 bound: float = 4.0, activation: nn.Module | None = None):
        super().__init__()
        if not 0 < split_dim < input_dim:
            raise ValueError(f"a coupling needs 0 < split_dim < input_dim, got {split_dim} and {input_dim}")
        self.split_dim, self.bins, self.bound = split_dim, bins, float(bound)
        self.transformed_dim = input_dim - split_dim
        self.nn = ConditionalDenseNN(split_dim, context_dim, hidden_dims,
                                     param_dims=_spline_param_dims(self.transformed_dim, bins),
                                     nonlinearity=activation if activation is not None else nn.ReLU())
        n = self.transformed_dim
        _start_near_identity(self.nn, slice(2 * n * bins, 2 * n * bins + n * (bins - 1)))

    def condition(self, context: Tensor) -> "SplineCouplingLayer":
        spline = ConditionalSpline(partial(self.nn, context=context), self.transformed_dim, self.bins,
                                   self.bound, order="quadratic")
        return SplineCouplingLayer(self.split_dim, spline)


class SplineCouplingLayer(Transform):
    """One conditioned coupling layer y = [x₁, spline(x₂; θ(x₁))]; Jacobian triangular, log-det Σ log spline'."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, split_dim: int, spline: ConditionalSpline):
        super().__init__(cache_size=1)
        self.split_dim, self.spline = split_dim, spline
        self._log_det: Tensor | None = None

    def _call(self, x: Tensor) -> Tensor:
        x1, x2 = x[..., : self.split_dim], x[..., self.split_dim:]
        spline = self.spline.condition(x1)
        y2 = spline(x2)
        self._log_det = spline._cache_log_detJ.sum(-1)  # log |∂y₂/∂x₂| at x₂
        return torch.cat([x1, y2], dim=-1)

    def _inverse(self, y: Tensor) -> Tensor:
        y1, y2 = y[..., : self.split_dim], y[..., self.split_dim:]
        spline = self.spline.condition(y1)
        x2 = spline.inv(y2)
        self._log_det = spline._cache_log_detJ.sum(-1)  # Pyro stores the forward log-derivative here too
        return torch.cat([y1, x2], dim=-1)

    def log_abs_det_jacobian(self, x: Tensor, y: Tensor) -> Tensor:
        x_old, y_old = self._cached_x_y
        if x is not x_old or y is not y_old:
            self(x)  # recompute (and re-cache) at this x
        return self._log_det
