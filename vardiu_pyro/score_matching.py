"""Denoising score matching for EDM-preconditioned denoisers (the teacher's and Diff-Instruct's loss).

For x_t = x0 + σε the minimiser of E ||D(x_t, σ) - x0||² at every σ is the posterior mean
E[x0 | x_t], whose Tweedie score (D - x_t)/σ² is the score of the noised data. EDM weights the
squared error by λ(σ) = 1/c_out(σ)², which makes it the plain squared error of the raw network:

    λ(σ) ||D(x_t, σ) - x0||² = ||F(c_in x_t, c_noise) - (x0 - c_skip x_t) / c_out||²

(NVlabs/edm ``EDMLoss``). ``weight`` multiplies that per sample.
"""

from __future__ import annotations

from torch import Tensor

from vardiu_pyro.models.denoiser import EDMDenoiser, edm_scalings

__all__ = ["raw_target", "dsm_loss_terms"]


def raw_target(x0: Tensor, x_t: Tensor, sigma: Tensor, sigma_data: float) -> Tensor:
    """The raw network's regression target (x0 - c_skip x_t) / c_out  (σ of shape (B,))."""
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    c_skip, c_out, _, _ = edm_scalings(s, sigma_data)
    return (x0 - c_skip * x_t) / c_out


def dsm_loss_terms(denoiser: EDMDenoiser, x0: Tensor, x_t: Tensor, sigma: Tensor,
                   weight: Tensor | None = None) -> Tensor:
    """Per-sample EDM denoising loss  w · λ(σ) ||D(x_t, σ) - x0||²,  shape (B,)."""
    error = denoiser.raw(x_t, sigma) - raw_target(x0, x_t, sigma, denoiser.sigma_data)
    terms = error.square().flatten(1).sum(-1)
    return terms if weight is None else weight * terms
