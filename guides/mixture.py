"""A mixture of diagonal Gaussians: multimodal posteriors with closed-form log-density."""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
import torch.nn.functional as F
from torch import Tensor

from vardiu_pyro.nn import mlp

from .base import Guide, NoiseConditioning, with_event_shape

__all__ = ["MixtureGuide"]


class MixtureGuide(Guide):
    """q_φ(z | x_t, σ) = Σ_k π_k N(z; μ_k, diag(σ · softplus(ρ_k))²),  π = softmax(a_φ(x_t, σ)).

    One network outputs every component's mean, scale and logit. Scales are multiplied by σ as
    in the diagonal family (the posterior narrows like σ/|g'(z)| as σ → 0). At large σ the
    posterior of a multimodal generator is itself multimodal in z, which a single Gaussian
    cannot follow; ``components`` sets how many modes the guide can represent.

    The distribution is ``MixtureSameFamily`` (exact ``log_prob`` by a log-sum-exp over
    components; ``sample`` without pathwise gradients, which training never needs: it only scores
    the guide). Pyro's ``MixtureOfDiagNormals`` has ``rsample`` but rejects one-dimensional latents
    and, in pyro 1.9.2, fails to ``rsample`` a batched mixture with a ``sample_shape``.
    """

    reparameterized = False  # no rsample: the choice of component is discrete

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
        mixture = dist.MixtureSameFamily(dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1))
        return with_event_shape(mixture, self.latent_shape)
