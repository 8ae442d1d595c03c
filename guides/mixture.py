"""A mixture of diagonal Gaussians: multimodal posteriors with closed-form log-density."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from vardiu_pyro.nn import mlp

from .base import Guide, NoiseConditioning, with_event_shape

__all__ = ["MixtureGuide", "DiagNormalMixture", "diag_normal_mixture"]


class MixtureGuide(Guide):
    """q_φ(z | x_t, σ) = Σ_k π_k N(z; μ_k, diag(σ · softplus(ρ_k))²),  π = softmax(a_φ(x_t, σ)).

    One network outputs every component's mean, scale and logit. Scales are multiplied by σ as
    in the diagonal family (the posterior narrows like σ/|g'(z)| as σ → 0). At large σ the
    posterior of a multimodal generator is itself multimodal in z, which a single Gaussian
    cannot follow; ``components`` sets how many modes the guide can represent.

    The distribution is ``DiagNormalMixture``: exact ``log_prob`` (a log-sum-exp over components) and
    ``rsample`` with an exact pathwise gradient for the means, scales and weights alike, which the
    importance-weighted bound needs, for latents of any dimension.
    """

    def __init__(self, latent_shape: Sequence[int], data_shape: Sequence[int], data_std: float = 1.0,
                 components: int = 8, width: int = 256, depth: int = 3, activation: str = "silu",
                 embedding: str = "raw"):
        super().__init__(latent_shape, data_shape, data_std)
        if components < 1:
            raise ValueError(f"guide.components must be >= 1, got {components}")
        self.components = int(components)
        self.conditioning = NoiseConditioning(data_std, embedding)
        k, d = self.components, self.latent_dim
        self.net = mlp(self.context_dim, k * (2 * d + 1), width, depth, activation)

    def forward(self, x_t: Tensor, sigma: Tensor) -> dist.TorchDistribution:
        k, d = self.components, self.latent_dim
        out = self.net(self.conditioning(x_t, sigma))
        logits, params = out.split([k, 2 * k * d], dim=-1)
        loc, rho = params.unflatten(-1, (k, 2 * d)).chunk(2, dim=-1)  # (B, K, d) each
        scale = F.softplus(rho) * sigma[:, None, None]
        return with_event_shape(diag_normal_mixture(loc, scale, logits), self.latent_shape)


def diag_normal_mixture(loc: Tensor, scale: Tensor, logits: Tensor) -> DiagNormalMixture:
    """Σ_k softmax(logits)_k N(z; loc_k, diag(scale_k²)): ``loc`` and ``scale`` (..., K, d), ``logits`` (..., K)."""
    return DiagNormalMixture(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))


class DiagNormalMixture(dist.MixtureSameFamily):
    """A mixture of diagonal Gaussians (``diag_normal_mixture``) whose draws carry an exact pathwise gradient.

    A draw is a component k ~ π and z = μ_k + s_k η, as ``sample`` makes it. Its gradient is that of the
    distributional transform (Graves 2016, "Stochastic backpropagation through mixture density distributions";
    implicit reparameterisation, Figurnov et al. 2018): coordinate by coordinate, u_i = F_i(z_i | z_<i) is held
    fixed, where F_i is the CDF of z_i given the earlier coordinates, a one-dimensional mixture with the posterior
    weights w_ik ∝ π_k Π_{j<i} N(z_j; μ_kj, s_kj), so that

        ∂z_i/∂θ = -(∂F_i/∂θ + Σ_{j<i} ∂F_i/∂z_j ∂z_j/∂θ) / q_i(z_i | z_<i).          (implicit function theorem)

    Unbiased for every f and every parameter, weights included. (Pyro's ``MixtureOfDiagNormals``, which this
    guide used until 2026-12-07, gives the weights a gradient that is right for f linear or quadratic in z but
    not in general: for E exp(a · z) in 2 and 3 dimensions it is off by about 30% of the largest entry, over a
    hundred standard errors; ``python benchmarks/mixture_gradient.py``.)
    """

    has_rsample = True

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        normal = self.component_distribution.base_dist  # Normal(loc, scale), batch (..., K, d)
        with torch.no_grad():
            drawn = self.sample(sample_shape)  # (*sample_shape, ..., d): the values, as ``sample`` draws them
        log_w = self.mixture_distribution.logits  # log π_k, then log π_k + Σ_{j<i} log N(z_j; μ_kj, s_kj)
        tiny = torch.finfo(drawn.dtype).tiny
        coordinates = []
        for i in range(drawn.shape[-1]):
            component = torch.distributions.Normal(normal.loc[..., i], normal.scale[..., i], validate_args=False)
            value = drawn[..., i, None]  # (..., 1) against the K components
            weights = log_w.log_softmax(-1)  # log w_ik
            cdf = (weights.exp() * component.cdf(value)).sum(-1)  # F_i(z_i | z_<i)
            density = torch.logsumexp(weights + component.log_prob(value), -1).exp()  # q_i(z_i | z_<i)
            z_i = drawn[..., i] - (cdf - cdf.detach()) / density.detach().clamp_min(tiny)  # value z_i; ∂z_i = -∂F_i / q_i
            coordinates.append(z_i)
            log_w = log_w + component.log_prob(z_i.unsqueeze(-1))
        return torch.stack(coordinates, -1)
