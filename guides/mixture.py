"""A mixture of diagonal Gaussians: multimodal posteriors with closed-form log-density."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from vardiu_pyro.nn import mlp

from .base import Guide, NoiseConditioning, with_event_shape

__all__ = ["MixtureGuide", "DiagNormalMixture"]


class MixtureGuide(Guide):
    """q_φ(z | x_t, σ) = Σ_k π_k N(z; μ_k, diag(σ · softplus(ρ_k))²),  π = softmax(a_φ(x_t, σ)).

    One network outputs every component's mean, scale and logit. Scales are multiplied by σ as
    in the diagonal family (the posterior narrows like σ/|g'(z)| as σ → 0). At large σ the
    posterior of a multimodal generator is itself multimodal in z, which a single Gaussian
    cannot follow; ``components`` sets how many modes the guide can represent.

    The distribution is Pyro's ``MixtureOfDiagNormals`` (exact ``log_prob`` by a log-sum-exp over
    components, and ``rsample`` with the pathwise gradient of Jankowiak & Karaletsos 2019, which the
    importance-weighted bound needs; ``DiagNormalMixture`` below works around a shape bug of its
    draws). That class rejects one-dimensional latents; for those the guide is a ``MixtureSameFamily``,
    the same density without ``rsample`` (training with the paper's bound only scores the guide).
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
        if d > 1:
            mixture = DiagNormalMixture(loc, scale, logits)
        else:
            mixture = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
        return with_event_shape(mixture, self.latent_shape)


class DiagNormalMixture(dist.MixtureOfDiagNormals):
    """Pyro's ``MixtureOfDiagNormals``, whose draws with a ``sample_shape`` also work on batched parameters.

    In pyro 1.9.2 ``rsample(sample_shape)`` gathers each draw's component from parameters of batch
    shape only, which fails once the sample shape is larger than one: the parameters are expanded to
    ``sample_shape + batch_shape`` first, and that mixture is drawn from once (the same law).
    """

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        if not sample_shape:
            return super().rsample()
        return self.expand(sample_shape + self.batch_shape).rsample()
