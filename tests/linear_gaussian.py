"""A linear generator with a Gaussian target: every quantity of VarDiU in closed form.

    z ~ N(0, I_d),  x0 = A z + b,  x_t = x0 + σ ε          =>  p_θ^σ = N(b, A Aᵀ + σ² I)
    p_d = N(μ, S)                                           =>  p_d^σ = N(μ, S + σ² I)
    p_θ(z | x_t) = N(M (x_t - b), C),  C = (I + AᵀA/σ²)⁻¹,  M = C Aᵀ / σ²
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn

from vardiu_pyro.guides import Guide
from vardiu_pyro.models import Teacher


class LinearGenerator(nn.Module):
    def __init__(self, A: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.A, self.b = nn.Parameter(A.clone()), nn.Parameter(b.clone())
        self.data_shape = torch.Size([A.shape[0]])

    @property
    def latent_shape(self):
        return torch.Size([self.A.shape[1]])

    def forward(self, z):
        return z @ self.A.T + self.b


class GaussianTeacher(Teacher):
    has_log_prob = True

    def __init__(self, mu: torch.Tensor, S: torch.Tensor):
        super().__init__()
        self.register_buffer("mu", mu)
        self.register_buffer("S", S)

    def noised(self, sigma):
        eye = torch.eye(self.mu.shape[0], dtype=self.mu.dtype)
        return dist.MultivariateNormal(self.mu, self.S + sigma[:, None, None] ** 2 * eye)

    def score(self, x_t, sigma):
        eye = torch.eye(self.mu.shape[0], dtype=self.mu.dtype)
        cov = self.S + sigma[:, None, None] ** 2 * eye
        return -torch.linalg.solve(cov, (x_t - self.mu).unsqueeze(-1)).squeeze(-1)

    def log_prob(self, x_t, sigma):
        return self.noised(sigma).log_prob(x_t)


class AffineGaussianGuide(Guide):
    """q(z | x_t) = N(M x_t + c, L Lᵀ): contains the exact posterior of a linear generator (fixed σ)."""

    def __init__(self, latent_dim: int, data_dim: int):
        super().__init__((latent_dim,), (data_dim,))
        self.M = nn.Parameter(torch.zeros(latent_dim, data_dim))
        self.c = nn.Parameter(torch.zeros(latent_dim))
        self.L = nn.Parameter(torch.eye(latent_dim))

    def forward(self, x_t, sigma):
        return dist.MultivariateNormal(x_t @ self.M.T + self.c, scale_tril=torch.tril(self.L))

    @torch.no_grad()
    def set_exact_posterior(self, A, b, sigma: float):
        d = A.shape[1]
        C = torch.linalg.inv(torch.eye(d, dtype=A.dtype) + A.T @ A / sigma**2)
        M = C @ A.T / sigma**2
        self.M.copy_(M)
        self.c.copy_(-M @ b)
        self.L.copy_(torch.linalg.cholesky(C))


def gaussian_kl(m1, C1, m2, C2):
    """KL(N(m1, C1) || N(m2, C2))."""
    k = m1.shape[-1]
    C2_inv = torch.linalg.inv(C2)
    diff = m2 - m1
    return 0.5 * (torch.trace(C2_inv @ C1) + diff @ C2_inv @ diff - k
                  + torch.logdet(C2) - torch.logdet(C1))


def diffusive_kl(A, b, mu, S, sigma: float):
    """KL(p_θ^σ || p_d^σ) for the linear generator, differentiable in (A, b)."""
    eye = torch.eye(A.shape[0], dtype=A.dtype)
    return gaussian_kl(b, A @ A.T + sigma**2 * eye, mu, S + sigma**2 * eye)


def make_problem(seed: int = 0, d: int = 2, D: int = 2):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, d, generator=g, dtype=torch.float64) * 0.8 + torch.eye(D, d, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    mu = torch.randn(D, generator=g, dtype=torch.float64) * 2
    R = torch.randn(D, D, generator=g, dtype=torch.float64)
    S = R @ R.T * 0.5 + torch.eye(D, dtype=torch.float64)
    return A, b, mu, S


def exact_posterior(A, b, sigma: float):
    """p_θ(z | x_t) = N(M (x_t - b), C): returns (M, C)."""
    d = A.shape[1]
    C = torch.linalg.inv(torch.eye(d, dtype=A.dtype) + A.T @ A / sigma**2)
    return C @ A.T / sigma**2, C


def expected_posterior_kl(A, b, sigma: float, M_q, c_q, cov_q):
    """The bound gap of an affine Gaussian guide q(z | x_t) = N(M_q x_t + c_q, cov_q), in closed form:

        E_{x_t ~ N(b, AAᵀ + σ²I)} KL( N(M (x_t - b), C) || N(M_q x_t + c_q, cov_q) ).
    The mean difference Δ = (M_q - M) x_t + c_q + M b is affine in x_t, so E ΔᵀPΔ = tr(P ΔM Σ ΔMᵀ) + μᵀPμ.
    """
    M, C = exact_posterior(A, b, sigma)
    cov_x = A @ A.T + sigma**2 * torch.eye(A.shape[0], dtype=A.dtype)
    P = torch.linalg.inv(cov_q)
    dM = M_q - M
    mu = dM @ b + c_q + M @ b
    quad = torch.trace(P @ dM @ cov_x @ dM.T) + mu @ P @ mu
    return 0.5 * (torch.trace(P @ C) + quad - A.shape[1] + torch.logdet(cov_q) - torch.logdet(C))
