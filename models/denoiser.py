"""An EDM-preconditioned denoiser D(x, σ) ≈ E[x0 | x_t = x], as a diffusers model.

Preconditioning (Karras et al. 2022, NVlabs/edm ``EDMPrecond``) is owned by ``EDMDenoiser``; the
raw network ``DenoiserMLP`` never sees σ or x at their natural scales:

    D(x, σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ))

With a denoiser, Tweedie's formula gives the score of the noised data: s(x, σ) = (D(x, σ) - x) / σ².
``EDMDenoiser`` is a diffusers ``ModelMixin`` + ``ConfigMixin``: ``save_pretrained(dir)`` writes
``config.json`` and ``diffusion_pytorch_model.safetensors``, ``EDMDenoiser.from_pretrained(dir)``
reads them back from a local directory (no network access).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import Tensor, nn

from vardiu_pyro.nn import mlp

__all__ = ["edm_scalings", "score_from_denoised", "DenoiserMLP", "EDMDenoiser"]


def edm_scalings(sigma: Tensor, sigma_data: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """EDM's (c_skip, c_out, c_in, c_noise) at σ:  σ_d²/(σ²+σ_d²),  σσ_d/√(σ²+σ_d²),  1/√(σ²+σ_d²),  log(σ)/4."""
    total = sigma.square() + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data * total.rsqrt(), total.rsqrt(), sigma.log() / 4


def score_from_denoised(denoised: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """Tweedie:  s(x, σ) = (D(x, σ) - x) / σ²  (σ of shape (B,), x of shape (B, ...))."""
    return (denoised - x) / _column(sigma, x).square()


class DenoiserMLP(nn.Module):
    """The raw network F(x_in, c_noise): an MLP on [x_in, Fourier features of x_in and of c_noise].

    ``noise_features`` sinusoids of c_noise at geometrically spaced frequencies let the MLP
    resolve σ over several decades (c_noise alone is one slowly varying input).
    ``data_features`` random Fourier features sin/cos(2π B x_in), B ~ N(0, data_frequency²), let it
    represent structure much finer than the data's overall scale (an MLP on raw low-dimensional
    coordinates learns high frequencies very slowly; Tancik et al. 2020). B is drawn from a fixed
    seed and saved with the weights.
    """

    def __init__(self, dim: int, width: int = 256, depth: int = 3, activation: str = "silu",
                 noise_features: int = 8, data_features: int = 0, data_frequency: float = 1.0):
        super().__init__()
        if noise_features % 2 or data_features % 2:
            raise ValueError(f"noise_features and data_features must be even (sine and cosine pairs), "
                             f"got {noise_features} and {data_features}")
        freqs = 2.0 ** torch.arange(noise_features // 2, dtype=torch.get_default_dtype())
        self.register_buffer("noise_freqs", freqs * math.pi)
        g = torch.Generator().manual_seed(0)
        proj = torch.randn(dim, data_features // 2, generator=g) * (2 * math.pi * data_frequency)
        self.register_buffer("data_proj", proj.to(torch.get_default_dtype()))
        self.net = mlp(dim + 1 + noise_features + data_features, dim, width, depth, activation)

    def forward(self, x_in: Tensor, c_noise: Tensor) -> Tensor:
        c = c_noise.unsqueeze(-1)
        noise_angles = c * self.noise_freqs
        data_angles = x_in @ self.data_proj
        features = torch.cat([x_in, c, noise_angles.sin(), noise_angles.cos(), data_angles.sin(), data_angles.cos()], -1)
        return self.net(features)


class EDMDenoiser(ModelMixin, ConfigMixin):
    """D(x, σ) = c_skip x + c_out F(c_in x, c_noise) for data of shape ``data_shape``.

    :param data_shape: shape of one data point (e.g. ``[2]``).
    :param sigma_data: the data's standard deviation (EDM's σ_data; sets the preconditioning).
    :param width, depth, activation, noise_features, data_features, data_frequency: the raw MLP
        (``DenoiserMLP``).
    :param sigma_min, sigma_max: the σ range it was trained on (recorded for samplers and users).
    :param sigma_score: σ_s > 0 scales the raw network's output by g(σ) = σ/√(σ² + σ_s²) (see ``raw``);
        0 (the default): plain EDM.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(self, data_shape: Sequence[int] = (2,), sigma_data: float = 1.0, width: int = 256,
                 depth: int = 3, activation: str = "silu", noise_features: int = 8, data_features: int = 0,
                 data_frequency: float = 1.0, sigma_min: float | None = None, sigma_max: float | None = None,
                 sigma_score: float = 0.0):
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data}")
        if not sigma_score >= 0:
            raise ValueError(f"sigma_score must be >= 0, got {sigma_score}")
        self.sigma_score = float(sigma_score)
        self.data_shape = torch.Size(data_shape)
        self.sigma_data = float(sigma_data)
        self.net = DenoiserMLP(math.prod(self.data_shape), width, depth, activation, noise_features,
                               data_features, data_frequency)

    def raw(self, x: Tensor, sigma: Tensor) -> Tensor:
        """EDM's raw output F = g(σ) F_net(c_in x, c_noise), shape x.shape;  g(σ) = σ/√(σ² + σ_s²)  (1 if σ_s = 0).

        Why g: the score is s = -x/(σ² + σ_d²) + (c_out/σ²) F, and c_out/σ² ≈ 1/σ at small σ, so any
        error of F is magnified 1/σ times, while the DSM regression target of F has unit variance at
        every σ: an error of F the size of SGD noise makes the score useless at small σ. With g,
        (c_out g/σ²) F_net tends to F_net/σ_s: below σ_s the network's output is the score itself
        (up to the known -x/(σ² + σ_d²)), which barely changes with σ there, and it is fitted mostly by
        the samples at σ ≈ σ_s, whose DSM targets are far less noisy relative to the score. The loss
        (``score_matching.dsm_loss_terms``) and ``forward`` are EDM's, unchanged.
        """
        _, _, c_in, c_noise = edm_scalings(sigma, self.sigma_data)
        out = self.net(x.flatten(1) * c_in.unsqueeze(-1), c_noise).view_as(x)
        if self.sigma_score > 0:
            out = out * _column(sigma * (sigma.square() + self.sigma_score**2).rsqrt(), x)
        return out

    def forward(self, x: Tensor, sigma: Tensor) -> Tensor:
        """D(x, σ) for x of shape (B, *data_shape) and σ of shape (B,)."""
        c_skip, c_out, _, _ = edm_scalings(_column(sigma, x), self.sigma_data)
        return c_skip * x + c_out * self.raw(x, sigma)

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """s(x, σ) = (D - x)/σ² = -x/(σ² + σ_d²) + c_out F/σ², without forming D - x.

        D - x is O(σ²) while x is O(data scale): subtracting them in float32 would lose the score
        at small σ. The two terms here are computed separately and are both O(score).
        """
        s = _column(sigma, x)
        _, c_out, _, _ = edm_scalings(s, self.sigma_data)
        return -x / (s.square() + self.sigma_data**2) + (c_out / s.square()) * self.raw(x, sigma)


def _column(sigma: Tensor, x: Tensor) -> Tensor:
    """σ of shape (B,) viewed as (B, 1, ..., 1) to broadcast against x of shape (B, ...)."""
    return sigma.reshape(-1, *([1] * (x.dim() - 1)))
