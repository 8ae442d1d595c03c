"""A reference gradient of the true diffusive KL, with its own Monte Carlo error.

    ∇_θ D = E_{z, σ, ε}[ w(σ) (s_θ(x_t, σ) - s_d(x_t, σ)) · ∂x_t/∂θ ],     x_t = g_θ(z) + σ ε

(the term E[∂_θ log p_θ^σ(x)] at fixed x vanishes). The student's score s_θ = ∇ log p_θ^σ is
intractable in general; in low dimension it is estimated almost exactly by self-normalised
importance sampling over a large pool of prior draws z_j (DESIGN §4, Tweedie's formula):

    s_θ(x_t, σ) = E_{p_θ(z | x_t)}[g_θ(z) - x_t] / σ²,   p_θ(z | x_t) ∝ N(z) N(x_t; g_θ(z), σ²I)
               ≈ Σ_j w_j (g_θ(z_j) - x_t) / σ²,         w_j ∝ N(x_t; g_θ(z_j), σ²I),  z_j ~ N(0, I)

Two errors are reported: the outer Monte Carlo error of the mean over (z, σ, ε) (``variance``,
tr Cov of the reference), and the error of the inner estimate, measured by repeating the whole
computation on the same outer draws with the first half of the pool (``inner_error`` = ||ref(M)
- ref(M/2)||: the self-normalised estimate's bias falls as 1/M, so ref(M/2)'s is about twice ref(M)'s and their
difference about ref(M)'s own, give or take the half pool's noise; it is systematic, so the gradient analysis adds
it to the resolution of a bias rather than subtracting it). ``ess`` is the mean effective sample size of the
weights per σ bin: where it is
small (tiny σ) the inner estimate is the weakest. Any object with ``score(x_t, sigma)`` can
replace the Monte Carlo score (the tests use the exact score of a linear generator).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .gradient_estimators import flat_grad, sigma_bins
from .gradient_stats import StreamingMoments

__all__ = ["SelfNormalisedScore", "ReferenceGradient", "reference_gradient"]


class SelfNormalisedScore:
    """The student's noised score by self-normalised importance sampling over ``num_z`` prior draws.

    The pool g_θ(z_j) is drawn once (``refresh``); ``score_and_diagnostics`` returns the score from
    the whole pool and from its first half, and the effective sample size of the weights.
    """

    def __init__(self, generator: nn.Module, num_z: int = 65_536, max_pairs: int = 1 << 23):
        if num_z < 2:
            raise ValueError(f"num_z must be >= 2, got {num_z}")
        self.generator, self.num_z, self.max_pairs = generator, int(num_z), int(max_pairs)
        self.pool: Tensor | None = None

    @torch.no_grad()
    def refresh(self) -> None:
        param = next(self.generator.parameters())
        chunks = []
        for i in range(0, self.num_z, 65_536):
            z = torch.randn((min(65_536, self.num_z - i), *self.generator.latent_shape), device=param.device,
                            dtype=param.dtype)
            chunks.append(self.generator(z).flatten(1).double())  # distances in float64: |x - g(z)| << |x| at small σ
        self.pool = torch.cat(chunks)

    @torch.no_grad()
    def score_and_diagnostics(self, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(score from M draws, score from the first M/2, effective sample size), for x_t (B, *data_shape)."""
        if self.pool is None:
            self.refresh()
        pool, half = self.pool, self.num_z // 2
        x = x_t.flatten(1).double()
        s2 = sigma.double().square()
        rows = max(1, self.max_pairs // self.num_z)
        full, halves, ess = [], [], []
        for i in range(0, x.shape[0], rows):
            xc, sc = x[i:i + rows], s2[i:i + rows, None]
            log_w = -(xc[:, None, :] - pool[None]).square().sum(-1) / (2 * sc)  # (rows, M)
            w = torch.softmax(log_w, -1)
            w_half = torch.softmax(log_w[:, :half], -1)
            full.append((w @ pool - xc) / sc)
            halves.append((w_half @ pool[:half] - xc) / sc)
            ess.append(1.0 / w.square().sum(-1))
        shape = x_t.shape
        return (torch.cat(full).to(x_t.dtype).view(shape), torch.cat(halves).to(x_t.dtype).view(shape),
                torch.cat(ess))

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.score_and_diagnostics(x_t, sigma)[0]


@dataclass
class ReferenceGradient:
    mean: Tensor  # (P,) the reference ∇_θ D
    variance: float  # tr Cov of ``mean`` (outer Monte Carlo)
    per_bin: Tensor  # (n_bins, P): each σ bin's contribution (they sum to ``mean``)
    per_bin_variance: Tensor  # (n_bins,)
    inner_error: float  # ||ref(M) - ref(M/2)||; 0 for an exact student score
    per_bin_inner_error: Tensor  # (n_bins,)
    ess: list[float] = field(default_factory=list)  # mean effective sample size per σ bin (nan: no draw there)
    num_samples: int = 0

    @property
    def standard_error(self) -> float:
        return math.sqrt(self.variance)


def reference_gradient(generator: nn.Module, teacher, student_score, sigma_law, weight, iteration: int,
                       edges: Tensor, num_samples: int = 32_768, chunk: int = 2048,
                       progress: bool = False) -> ReferenceGradient:
    """E[w (s_θ - s_d) · ∂x_t/∂θ] over ``num_samples`` independent draws (z, σ, ε), in chunks of ``chunk``.

    ``student_score``: a ``SelfNormalisedScore`` (then the inner error and ESS are measured) or any
    object with ``score(x_t, sigma)`` taken as exact. Each chunk's mean is one draw of the estimate
    the variance is computed from (pyro.ops.welford), so ``num_samples // chunk`` should be >= 8.
    """
    params = [p for p in generator.parameters() if p.requires_grad]
    n_bins = edges.numel() - 1
    chunks = max(2, num_samples // chunk)
    moments, halves, totals = StreamingMoments(), StreamingMoments(), StreamingMoments()
    ess_sum, ess_count = torch.zeros(n_bins, dtype=torch.float64), torch.zeros(n_bins, dtype=torch.float64)
    snis = isinstance(student_score, SelfNormalisedScore)
    anchor = params[0]
    for _ in tqdm(range(chunks), desc="reference gradient", disable=not progress, leave=False):
        z = torch.randn((chunk, *generator.latent_shape), device=anchor.device, dtype=anchor.dtype)
        sigma = sigma_law.distribution(iteration).sample((chunk,)).to(anchor.dtype)
        x0 = generator(z)
        x_t = (x0 + sigma.view(-1, *[1] * (x0.dim() - 1)) * torch.randn_like(x0)).detach()
        w = weight(sigma, iteration).detach().view(-1, *[1] * (x0.dim() - 1))
        with torch.no_grad():
            s_d = teacher.score(x_t, sigma)
            if snis:
                s_full, s_half, ess = student_score.score_and_diagnostics(x_t, sigma)
            else:
                s_full = s_half = student_score.score(x_t, sigma)
        index = sigma_bins(sigma, edges)
        if snis:
            ess_sum += torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index.cpu(), ess.cpu())
            ess_count += torch.bincount(index.cpu(), minlength=n_bins).double()
        grads = []
        for s in (s_full, s_half) if snis else (s_full,):
            coeff = w * (s - s_d)  # ∂/∂θ of Σ coeff · x0 is the chunk's Σ w (s_θ - s_d) · ∂x0/∂θ
            grads.append(torch.stack([
                flat_grad((coeff * x0 * (index == k).view(-1, *[1] * (x0.dim() - 1))).sum() / chunk, params,
                          retain_graph=True) for k in range(n_bins)]))
        del x0
        moments.update(grads[0])
        totals.update(grads[0].sum(0, keepdim=True))  # the whole gradient: bins are not independent
        halves.update(grads[-1])
    per_bin = moments.mean()
    per_bin_var = moments.variance_trace() / moments.count
    total_var = (totals.variance_trace() / totals.count).item()
    diff = per_bin - halves.mean()
    ess = (ess_sum / ess_count).tolist() if snis else []
    return ReferenceGradient(mean=per_bin.sum(0), variance=total_var, per_bin=per_bin, per_bin_variance=per_bin_var,
                             inner_error=diff.sum(0).norm().item(), per_bin_inner_error=diff.norm(dim=-1),
                             ess=ess, num_samples=chunks * chunk)
