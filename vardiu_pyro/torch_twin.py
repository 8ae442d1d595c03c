"""A plain-torch twin of the VarDiU step, written without Pyro.

It is the reference the Pyro objective is tested against (same draws, same gradients) and the
baseline of the framework-overhead benchmark (same networks, batch and optimiser: its clipped step is
``vardiu_pyro.optim.clipped_step``, plain torch, as the Pyro side's). It covers the diagonal-Gaussian
guide, whose log-density it writes out by hand.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from vardiu_pyro.models.quasi_random import QuasiRandomNormal
from vardiu_pyro.optim import clipped_step

__all__ = ["diagonal_gaussian_log_q", "paired_generator_output", "vardiu_twin_loss", "vardiu_importance_twin_loss",
           "TorchVarDiUStep"]


def diagonal_gaussian_log_q(guide, z: Tensor, x_t: Tensor, sigma: Tensor) -> Tensor:
    """log q(z | x_t, σ) of a ``DiagonalGaussianGuide``:  Σ_i log N(z_i; μ_i, (σ softplus(ρ_i))²)."""
    loc, rho = guide.net(guide.conditioning(x_t, sigma)).chunk(2, dim=-1)
    scale = F.softplus(rho) * sigma[:, None]
    z = z.flatten(1)
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def paired_generator_output(generator: nn.Module, z: Tensor) -> Tensor:
    """x0 = g(z) for antithetic draws z = [z', z']: g runs on z' alone and its output is repeated."""
    half = generator(z[: z.shape[0] // 2])
    return torch.cat([half, half])


def vardiu_twin_loss(generator: nn.Module, guide, teacher, weight, z: Tensor, sigma: Tensor, eps: Tensor,
                     iteration: int = 0, paired: bool = False) -> tuple[Tensor, Tensor]:
    """(surrogate, weighted bound) for given draws: x0 = g(z), x_t = x0 + σ ε (``paired``: z = [z', z'],
    g run once per pair).

    surrogate = mean -w(σ) [log q(z | x_t, σ) + s_d(x_t, σ) · x0]
    bound     = mean  w(σ) [log N(z) + log N(x_t; x0, σ²) - log q(z | x_t, σ) - log p_d^σ(x_t)]
    """
    x0 = paired_generator_output(generator, z) if paired else generator(z)
    s = sigma.view(-1, *([1] * (x0.dim() - 1)))
    x_t = x0 + s * eps
    log_q = diagonal_gaussian_log_q(guide, z, x_t, sigma)
    w = weight(sigma, iteration)
    with torch.no_grad():
        score, log_p_d = teacher.score_and_log_prob(x_t, sigma)  # log p_d: None without a density
    surrogate = -(w * (log_q + (score * x0).flatten(1).sum(-1))).mean()
    with torch.no_grad():
        d, k = eps[0].numel(), z[0].numel()
        log_prior = -0.5 * z.flatten(1).square().sum(-1) - 0.5 * k * math.log(2 * math.pi)
        log_lik = -0.5 * eps.flatten(1).square().sum(-1) - d * sigma.log() - 0.5 * d * math.log(2 * math.pi)
        u = log_prior + log_lik - log_q
        if log_p_d is not None:
            u = u - log_p_d
        bound = (w * u).mean()
    return surrogate, bound


def vardiu_importance_twin_loss(generator: nn.Module, guide, teacher, weight, z: Tensor, sigma: Tensor, eps: Tensor,
                                eta: Tensor, iteration: int = 0, paired: bool = False) -> tuple[Tensor, Tensor]:
    """(surrogate, weighted bound) of the importance-weighted bound U_K for given draws (2-D tensors only):
    x0 = g(z), x_t = x0 + σ ε, proposals z_k = μ(x_t, σ) + s(x_t, σ) η_k with η of shape (K, B, latent_dim)
    (``paired``: z = [z', z'], g(z) run once per pair; the proposals differ between partners).

    log w_0 = log N(z) + log N(ε σ; 0, σ²) - log q(z | x_t),  log w_k = log N(z_k) + log N(x_t; g(z_k), σ²) - log q(z_k | x_t)
    surrogate = mean  w(σ) [log mean_k w_k - s_d(x_t, σ) · x0]
    bound     = mean  w(σ) [log mean_k w_k - log p_d^σ(x_t)]
    """
    k, b, d = eta.shape[0], z.shape[0], z.shape[1]
    x0 = paired_generator_output(generator, z) if paired else generator(z)
    x_t = x0 + sigma[:, None] * eps
    loc, rho = guide.net(guide.conditioning(x_t, sigma)).chunk(2, dim=-1)
    scale = F.softplus(rho) * sigma[:, None]
    half_log_2pi = 0.5 * math.log(2 * math.pi)

    def log_q(v: Tensor) -> Tensor:
        return (-0.5 * ((v - loc) / scale) ** 2 - scale.log() - half_log_2pi).sum(-1)

    def log_prior(v: Tensor) -> Tensor:
        return (-0.5 * v**2 - half_log_2pi).sum(-1)

    z_k = loc + scale * eta
    x0_k = generator(z_k.reshape(k * b, d)).reshape(k, b, -1)
    n = x_t.shape[1]
    log_lik_0 = (-0.5 * eps**2).sum(-1) - n * sigma.log() - n * half_log_2pi
    log_lik_k = (-0.5 * (x_t - x0_k) ** 2).sum(-1) / sigma**2 - n * sigma.log() - n * half_log_2pi
    log_w = torch.cat([(log_prior(z) + log_lik_0 - log_q(z))[None], log_prior(z_k) + log_lik_k - log_q(z_k)])
    log_mean_w = torch.logsumexp(log_w, 0) - math.log(k + 1)
    w = weight(sigma, iteration)
    with torch.no_grad():
        score, log_p_d = teacher.score_and_log_prob(x_t, sigma)
    surrogate = (w * (log_mean_w - (score * x0).sum(-1))).mean()
    with torch.no_grad():
        u = log_mean_w - (0.0 if log_p_d is None else log_p_d)
        bound = (w * u).mean()
    return surrogate, bound


class TorchVarDiUStep:
    """One VarDiU training step in plain torch: draws, loss, backward, per-network clip, Adam.

    ``importance_samples=K > 0``: the step of the importance-weighted bound U_K (``vardiu_importance_twin_loss``).
    ``quasi_random``: z as a shifted Sobol net mapped to N(0, I) (``models/quasi_random.py``), as the model draws it.
    """

    def __init__(self, generator, guide, teacher, sigma_law, weight, batch_size: int, lr: float = 1e-3,
                 max_grad_norm: float = 10.0, antithetic: bool = True, importance_samples: int = 0,
                 quasi_random: bool = False, **adam_kwargs):
        self.generator, self.guide, self.teacher = generator, guide, teacher
        self.sigma_law, self.weight = sigma_law, weight
        self.batch_size, self.max_grad_norm, self.antithetic = batch_size, max_grad_norm, antithetic
        self.importance_samples = importance_samples
        self.quasi_random = quasi_random
        self._latent: QuasiRandomNormal | None = None  # with quasi_random: the law of a batch's z, built at the first draw
        self.optimizers = [torch.optim.Adam(net.parameters(), lr=lr, **adam_kwargs) for net in (generator, guide)]

    def draws(self, iteration: int) -> tuple[Tensor, Tensor, Tensor]:
        p = next(self.generator.parameters())
        n = self.batch_size // 2 if self.antithetic else self.batch_size
        if self.quasi_random:  # the model's law of z (models/quasi_random.py), on the generator's device and dtype
            if self._latent is None:
                latent = self.generator.latent_shape
                normal = Normal(p.new_zeros(()), 1.0).expand((n, *latent))
                self._latent = QuasiRandomNormal(Independent(normal, len(latent)))
            z = self._latent.sample()
        else:
            z = torch.randn(n, *self.generator.latent_shape, device=p.device, dtype=p.dtype)
        sigma = self.sigma_law.batch(iteration, n).sample()  # stratified over the n draws if the law is
        eps = torch.randn(n, *self.generator.data_shape, device=p.device, dtype=p.dtype)
        if self.antithetic:
            z, sigma, eps = torch.cat([z, z]), torch.cat([sigma, sigma]), torch.cat([eps, -eps])
        return z, sigma, eps

    def loss(self, iteration: int) -> tuple[Tensor, Tensor]:
        """(surrogate, weighted bound) of one batch of fresh draws: the step's forward pass."""
        z, sigma, eps = self.draws(iteration)
        if self.importance_samples:
            eta = torch.randn(self.importance_samples, *z.shape, device=z.device, dtype=z.dtype)
            return vardiu_importance_twin_loss(self.generator, self.guide, self.teacher, self.weight, z, sigma, eps, eta,
                                               iteration, paired=self.antithetic)
        return vardiu_twin_loss(self.generator, self.guide, self.teacher, self.weight, z, sigma, eps, iteration,
                                paired=self.antithetic)

    def apply_gradients(self) -> None:
        """Per-network clip and optimiser step with the accumulated gradients, then clear them."""
        for net, opt in zip((self.generator, self.guide), self.optimizers):
            params = [p for p in net.parameters() if p.grad is not None]
            clipped_step(opt, params, self.max_grad_norm, nn.utils.get_total_norm([p.grad for p in params], foreach=True))
            opt.zero_grad(set_to_none=True)

    def __call__(self, iteration: int) -> float:
        surrogate, bound = self.loss(iteration)
        surrogate.backward()
        self.apply_gradients()
        return bound.item()
