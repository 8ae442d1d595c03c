"""Every guide family, parametrised (as zuko tests its flows): a normalised density, samples that agree
with it, gradients, shapes, dtypes and devices; and on the linear-Gaussian case, the exact posterior."""

import json
import math

import pyro
import pytest
import torch
from pyro import poutine

from tests.test_fit import TINY, config
from tests.linear_gaussian import GaussianTeacher, LinearGenerator, exact_posterior, make_problem
from vardiu_pyro.bound_gap import bound_gap_at
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.checkpoint import load_checkpoint
from vardiu_pyro.fit import fit
from vardiu_pyro.guides import (DiagonalGaussianGuide, FlowGuide, FullGaussianGuide, Guide, MixtureGuide,
                                pyro_guide)
from vardiu_pyro.guides.flow import SplineCouplingLayer
from vardiu_pyro.guides.mixture import diag_normal_mixture
from vardiu_pyro.models import ExactTeacher, FixedSigma, ForwardDiffusion, MLPGenerator, PowerLawSigma, PowerWeight, mog40
from vardiu_pyro.objectives import VarDiUELBO

FAMILIES = {
    "gaussian": (DiagonalGaussianGuide, {}),
    "full_gaussian": (FullGaussianGuide, {}),
    "mixture": (MixtureGuide, {"components": 3}),
    "flow": (FlowGuide, {"layers": 3, "hidden": 16, "features": 8}),
    "flow_affine": (FlowGuide, {"layers": 3, "hidden": 16, "features": 8, "coupling": "affine"}),
}
DATA_STD = 3.0


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny operations (conftest.py)


def make_guide(name: str, latent_dim: int = 2, data_dim: int = 2, perturb: float = 0.25, seed: int = 0) -> Guide:
    """A small guide with randomised parameters (the flow starts near its Gaussian base: perturbing it
    makes every spline and coupling non-trivial)."""
    cls, kwargs = FAMILIES[name]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        guide = cls((latent_dim,), (data_dim,), DATA_STD, width=24, depth=2, **kwargs)
        with torch.no_grad():
            for p in guide.parameters():
                p.add_(perturb * torch.randn_like(p))
    return guide


def contexts(n: int = 3, data_dim: int = 2, dtype=torch.float32, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x_t = (DATA_STD * torch.randn(n, data_dim, generator=g)).to(dtype)
    sigma = torch.tensor([0.5, 1.0, 2.0, 0.7, 1.5][:n], dtype=dtype)
    return x_t, sigma


def grid_for(samples: torch.Tensor, n: int):
    """A uniform grid over the samples' box widened by half its size on each side: (points, cell volume)."""
    lo, hi = samples.min(0).values, samples.max(0).values
    lo, hi = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
    axes = [torch.linspace(a, b, n, dtype=samples.dtype) for a, b in zip(lo.tolist(), hi.tolist())]
    cell = math.prod((ax[1] - ax[0]).item() for ax in axes)
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    return points, cell


def grid_density(guide, x_t, sigma, n: int):
    """q(z | x_t, σ) of one context on a grid: (points, density, cell volume), in float64."""
    with torch.no_grad():
        q = guide(x_t, sigma)
        points, cell = grid_for(q.sample((20_000,)).squeeze(1), n)
        density = q.log_prob(points.unsqueeze(1)).squeeze(1).exp()
    return points, density, cell


GRID = {1: 20_000, 2: 400}


# --------------------------------------------------------------------------------------- density
@pytest.mark.parametrize("latent_dim", [1, 2])
@pytest.mark.parametrize("name", FAMILIES)
def test_log_prob_is_a_normalised_density(name, latent_dim):
    guide = make_guide(name, latent_dim).double()
    x_t, sigma = contexts(dtype=torch.float64)
    for b in range(len(sigma)):
        _, density, cell = grid_density(guide, x_t[b:b + 1], sigma[b:b + 1], GRID[latent_dim])
        assert abs(density.sum().item() * cell - 1) < 1e-3, (name, b, density.sum().item() * cell)


def test_the_grid_check_catches_a_missing_jacobian(monkeypatch):
    """The published spline guide dropped the spline's log-determinant: such a density does not integrate to 1."""
    guide = make_guide("flow").double()
    x_t, sigma = contexts(1, dtype=torch.float64)
    monkeypatch.setattr(SplineCouplingLayer, "log_abs_det_jacobian", lambda self, x, y: x.new_zeros(x.shape[:-1]))
    _, density, cell = grid_density(guide, x_t, sigma, GRID[2])
    assert abs(density.sum().item() * cell - 1) > 1e-2


@pytest.mark.parametrize("latent_dim", [1, 2])
@pytest.mark.parametrize("name", FAMILIES)
def test_samples_agree_with_log_prob(name, latent_dim):
    """Sample means of z, z zᵀ and random Fourier features against their integrals under log_prob (z-test)."""
    guide = make_guide(name, latent_dim).double()
    x_t, sigma = contexts(2, dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    for b in range(2):
        points, density, cell = grid_density(guide, x_t[b:b + 1], sigma[b:b + 1], GRID[latent_dim])
        with torch.no_grad():
            z = guide(x_t[b:b + 1], sigma[b:b + 1]).sample((40_000,)).squeeze(1)
        spread = z.std(0)
        omega = torch.randn(3, latent_dim, generator=g, dtype=torch.float64) / spread
        phase = 2 * math.pi * torch.rand(3, generator=g, dtype=torch.float64)

        def stats(v):
            second = (v.unsqueeze(-1) * v.unsqueeze(-2)).flatten(1)
            return torch.cat([v, second, torch.cos(v @ omega.T + phase)], dim=-1)

        expected = (stats(points) * density[:, None]).sum(0) * cell
        s = stats(z)
        zscore = (s.mean(0) - expected) / (s.std(0) / math.sqrt(len(z)))
        assert zscore.abs().max() < 5, (name, b, zscore)


@pytest.mark.parametrize("name", FAMILIES)
def test_gradients_reach_every_parameter_and_x_t(name):
    guide = make_guide(name)
    x_t, sigma = contexts(4)
    x_t.requires_grad_(True)
    z = torch.randn(4, 2)
    guide(x_t, sigma).log_prob(z).sum().backward()
    for pname, p in guide.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
        assert torch.isfinite(p.grad).all(), pname
    assert x_t.grad is not None and (x_t.grad.abs().sum(-1) > 0).all()


@pytest.mark.parametrize("name", ["flow", "flow_affine"])
def test_the_flow_starts_as_its_gaussian_base(name):
    """Unperturbed, every layer is (nearly) the identity: log q is the σ-scaled diagonal Gaussian of the trunk."""
    guide = make_guide(name, perturb=0.0)
    x_t, sigma = contexts(3)
    z = torch.randn(3, 2)
    loc, rho, _ = guide.trunk(guide.conditioning(x_t, sigma)).split([2, 2, guide.features], dim=-1)
    base = torch.distributions.Normal(loc, torch.nn.functional.softplus(rho) * sigma[:, None])
    assert torch.allclose(guide(x_t, sigma).log_prob(z), base.log_prob(z).sum(-1), atol=0.05)


@pytest.mark.parametrize("latent_dim", [1, 2, 3])
@pytest.mark.parametrize("name", ["flow", "flow_affine"])
def test_flow_log_prob_is_the_change_of_variables_with_the_autograd_jacobian(name, latent_dim):
    """log q(z) = log N(u; 0, I) - log |det ∂z/∂u| with the Jacobian of the whole map from autograd, and
    the map inverts: in any dimension (the grid test covers only 1 and 2)."""
    guide = make_guide(name, latent_dim).double()
    x_t, sigma = contexts(3, dtype=torch.float64)
    for b in range(3):
        q = guide(x_t[b:b + 1], sigma[b:b + 1])

        def forward(u):
            for t in q.transforms:
                u = t(u)
            return u

        u = torch.randn(1, latent_dim, dtype=torch.float64)
        z = forward(u).detach()
        jac = torch.autograd.functional.jacobian(lambda v: forward(v.unsqueeze(0)).squeeze(0), u.squeeze(0))
        expected = torch.distributions.Normal(0.0, 1.0).log_prob(u).sum() - torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(q.log_prob(z.clone()), expected, rtol=1e-9, atol=1e-9)  # a fresh tensor: no cache
        back = z.clone()
        for t in reversed(q.transforms):
            back = t.inv(back)
        assert torch.allclose(back, u, atol=1e-9)


# --------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("latent_dim", [1, 2, 3])
@pytest.mark.parametrize("name", FAMILIES)
def test_batch_shapes_and_batched_contexts(name, latent_dim):
    """batch (B,), event latent_shape; a batch of contexts gives, row by row, the single-context values."""
    guide = make_guide(name, latent_dim).double()
    x_t, sigma = contexts(5, dtype=torch.float64)
    q = guide(x_t, sigma)
    assert q.batch_shape == (5,) and q.event_shape == (latent_dim,)
    z = q.sample((7,))
    assert z.shape == (7, 5, latent_dim)
    log_q = q.log_prob(z)
    assert log_q.shape == (7, 5) and torch.isfinite(log_q).all()
    for b in range(5):
        single = guide(x_t[b:b + 1], sigma[b:b + 1]).log_prob(z[:, b:b + 1]).squeeze(1)
        assert torch.allclose(log_q[:, b], single, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", FAMILIES)
def test_pyro_guide_program_samples_and_scores_site_z(name):
    guide = make_guide(name)
    x_t, sigma = contexts(4)
    trace = poutine.trace(pyro_guide(guide)).get_trace(x_t, sigma)
    trace.compute_log_prob()
    assert trace.nodes["z"]["value"].shape == (4, 2)
    assert trace.nodes["z"]["log_prob"].shape == (4,)
    assert any(k.startswith("guide$$$") for k in pyro.get_param_store().keys())


@pytest.mark.parametrize("name", FAMILIES)
def test_vardiu_step_with_antithetic_pairs(name):
    """The guide scored at the model's z inside the VarDiU ELBO, with paired (z, σ) and mirrored ε."""
    target = mog40()
    gen = MLPGenerator((2,), width=16, depth=1, data_std=20.0)
    cls, kwargs = FAMILIES[name]
    guide = cls((2,), (2,), 20.0, width=16, depth=1, **kwargs)
    elbo = VarDiUELBO(ExactTeacher(target), PowerWeight(20.0, 2.0))
    model = ForwardDiffusion(gen, PowerLawSigma(0.1, 20.0, 1.0), antithetic=True)
    loss = elbo.differentiable_loss(model, pyro_guide(guide), 32)
    loss.backward()
    t = elbo.last_terms
    assert torch.equal(t.z[:16], t.z[16:]) and t.log_q.shape == (32,)
    assert torch.isfinite(loss) and torch.isfinite(t.log_q).all()
    assert all(torch.isfinite(p.grad).all() for p in guide.parameters())
    assert any(p.grad.abs().sum() > 0 for p in gen.parameters())


# --------------------------------------------------------------------------------------- dtype, device, state
@pytest.mark.parametrize("name", FAMILIES)
def test_float64_gives_the_float32_values(name):
    guide = make_guide(name)
    x_t, sigma = contexts(4)
    z = torch.randn(4, 2)
    single = guide(x_t, sigma).log_prob(z)
    guide.double()
    double = guide(x_t.double(), sigma.double()).log_prob(z.double())
    assert double.dtype == torch.float64
    assert torch.allclose(double.float(), single, rtol=1e-4, atol=1e-4)
    assert guide(x_t.double(), sigma.double()).sample().dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_gives_the_cpu_values(name):
    guide = make_guide(name)
    x_t, sigma = contexts(4)
    z = torch.randn(4, 2)
    cpu = guide(x_t, sigma).log_prob(z)
    guide.cuda()
    q = guide(x_t.cuda(), sigma.cuda())
    assert q.sample().device.type == "cuda"
    assert torch.allclose(q.log_prob(z.cuda()).cpu(), cpu, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_state_dict_round_trip(name):
    guide, other = make_guide(name, seed=0), make_guide(name, seed=1)
    x_t, sigma = contexts(3)
    z = torch.randn(3, 2)
    assert not torch.allclose(guide(x_t, sigma).log_prob(z), other(x_t, sigma).log_prob(z))
    other.load_state_dict(guide.state_dict())
    assert torch.equal(guide(x_t, sigma).log_prob(z), other(x_t, sigma).log_prob(z))


@pytest.mark.parametrize("bad, match", [({"layers": 0}, "layers"), ({"coupling": "planar"}, "coupling"),
                                        ({"bins": 1}, "bins")])
def test_flow_rejects_bad_hyperparameters(bad, match):
    with pytest.raises(ValueError, match=match):
        FlowGuide((2,), (2,), **bad)


MIXTURE_EXPECTATIONS = {  # f(z), and E_q f in closed form for q = Σ_j π_j N(μ_j, diag(s_j²))
    "|z|^2": (lambda z, a: z.square().sum(-1),
              lambda pi, loc, scale, a: (pi * (loc.square() + scale.square()).sum(-1)).sum(-1)),
    "exp(a.z)": (lambda z, a: (z * a).sum(-1).exp(),  # not quadratic: Pyro's MixtureOfDiagNormals fails this one
                 lambda pi, loc, scale, a: (pi * ((loc * a).sum(-1) + 0.5 * (scale * a).square().sum(-1)).exp()).sum(-1)),
}


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("f", sorted(MIXTURE_EXPECTATIONS))
def test_mixture_draws_k_proposals_per_context_with_the_exact_pathwise_gradient(f, d):
    """``rsample((K,))`` on a batch of mixtures (what U_K's proposals need): shape (K, B, d), and the pathwise
    gradient of E f(z) is that of its closed form, for the means, scales and weights, in any dimension."""
    f, expectation = MIXTURE_EXPECTATIONS[f]
    g = torch.Generator().manual_seed(d)
    loc = torch.randn(3, 4, d, generator=g, dtype=torch.float64).requires_grad_()
    scale = (0.5 + torch.rand(3, 4, d, generator=g, dtype=torch.float64)).requires_grad_()
    logits = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_()
    a = torch.linspace(0.7, -0.4, d, dtype=torch.float64)
    q = diag_normal_mixture(loc, scale, logits)
    assert q.has_rsample and q.rsample((5,)).shape == (5, 3, d) and q.rsample().shape == (3, d)
    torch.manual_seed(1)
    batches = []  # 10 independent estimates of the gradient, for its Monte Carlo standard error
    for _ in range(10):
        q = diag_normal_mixture(loc, scale, logits)  # one graph per estimate
        estimate = f(q.rsample((40_000,)), a).mean(0).sum()
        batches.append(torch.cat([t.flatten() for t in torch.autograd.grad(estimate, (loc, scale, logits))]))
    batches = torch.stack(batches)
    pathwise, standard_error = batches.mean(0), batches.std(0) / 10**0.5
    exact = torch.cat([t.flatten() for t in torch.autograd.grad(expectation(logits.softmax(-1), loc, scale, a).sum(),
                                                                (loc, scale, logits))])
    assert ((pathwise - exact).abs() <= 5 * standard_error).all(), ((pathwise - exact) / standard_error).abs().max()
    assert (standard_error < 0.02 * exact.abs().max()).all()  # the check has power: a wrong gradient is off by O(10%)


def test_mixture_draws_are_the_mixtures_own_and_the_guide_has_them_in_any_dimension():
    """``rsample`` returns exactly what ``sample`` draws with the same random state (only the gradient is added), and
    the guide's distribution has ``rsample`` for a 1-D latent too (the importance-weighted bound needs it)."""
    g = torch.Generator().manual_seed(0)
    q = diag_normal_mixture(torch.randn(4, 3, 2, generator=g), 0.5 + torch.rand(4, 3, 2, generator=g),
                            torch.randn(4, 3, generator=g))
    torch.manual_seed(5)
    sampled = q.sample((6,))
    torch.manual_seed(5)
    assert torch.equal(q.rsample((6,)), sampled)
    for latent in [(1,), (2,)]:
        guide = MixtureGuide(latent, (2,), components=3)
        q = guide(torch.randn(5, 2), torch.rand(5) + 0.1)
        z = q.rsample((3,))
        assert q.has_rsample and z.shape == (3, 5, *latent) and z.requires_grad
        assert torch.isfinite(q.log_prob(z)).all()


def test_mixture_rejects_zero_components():
    with pytest.raises(ValueError, match="components"):
        MixtureGuide((2,), (2,), components=0)


# --------------------------------------------------------------------------------------- linear-Gaussian case
SIGMA = 0.8
OFFSET = 1e3  # keeps every ReLU unit of the set network in its linear regime


@torch.no_grad()
def set_to_exact_posterior(guide: FullGaussianGuide, A, b, sigma: float) -> None:
    """Set a ReLU ``FullGaussianGuide`` to p_θ(z | x_t) = N(M (x_t - b), C) of the linear generator at σ.

    The features [x_t c, log σ / 4, σ c] (c = 1/√(σ² + data_std²)) are carried unchanged (plus OFFSET)
    through the hidden layers; the last layer maps them to the mean M x_t - M b, and its biases hold
    the constant Cholesky factor of C divided by σ.
    """
    d, D = A.shape[1], A.shape[0]
    M, C = exact_posterior(A, b, sigma)
    L = torch.linalg.cholesky(C) / sigma
    c = 1 / math.sqrt(sigma**2 + guide.data_std**2)
    layers = [m for m in guide.net if isinstance(m, torch.nn.Linear)]
    F = guide.context_dim
    for layer in layers[:-1]:
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[:F, :F] = torch.eye(F)
    layers[0].bias[:F] = OFFSET
    last = layers[-1]
    last.weight.zero_()
    last.weight[:d, :D] = M / c
    last.bias[:d] = -M @ b - (M / c).sum(-1) * OFFSET
    last.bias[d:2 * d] = torch.log(torch.expm1(torch.diagonal(L)))  # softplus⁻¹
    rows, cols = torch.tril_indices(d, d, offset=-1)
    last.bias[2 * d:] = L[rows, cols]


def linear_problem():
    A, b, mu, S = make_problem()
    return LinearGenerator(A, b), (A, b, mu, S)


def test_full_gaussian_contains_the_exact_posterior_so_its_gap_is_zero():
    gen, (A, b, mu, S) = linear_problem()
    guide = FullGaussianGuide((2,), (2,), data_std=2.0, width=8, depth=2, activation="relu",
                              embedding="log").double()
    set_to_exact_posterior(guide, A, b, SIGMA)
    elbo = VarDiUELBO(GaussianTeacher(mu, S), PowerWeight(SIGMA, 2.0))
    t = elbo.terms(ForwardDiffusion(gen, FixedSigma(SIGMA).double()), pyro_guide(guide), 2000)
    # per draw, the bound is exact: U = log p_θ^σ(x_t) - log p_d^σ(x_t)
    eye = torch.eye(2, dtype=torch.float64)
    x_t = t.x_t.detach()
    student = torch.distributions.MultivariateNormal(b, A @ A.T + SIGMA**2 * eye)
    assert torch.allclose(t.bound, student.log_prob(x_t) - GaussianTeacher(mu, S).log_prob(x_t, t.sigma), atol=1e-8)
    # the estimator, with the guide as the whole proposal, finds exactly zero
    est = bound_gap_at(gen, guide, SIGMA, num_outer=500, num_inner=8, prior_fraction=0.0)
    assert abs(est.gap) < 1e-8 and abs(est.gap_lower) < 1e-8


def train_guide(guide, gen, sigma: float, steps: int, batch: int = 256) -> None:
    """Fit the guide alone by VarDiU's guide loss, max E log q(z | x_t, σ) (the forward KL of the posterior)."""
    opt = torch.optim.Adam(guide.parameters(), lr=3e-3)
    s = torch.full((batch,), sigma, dtype=torch.float64)
    for _ in range(steps):
        with torch.no_grad():
            z = torch.randn(batch, 2, dtype=torch.float64)
            x_t = gen(z) + sigma * torch.randn(batch, 2, dtype=torch.float64)
        loss = -guide(x_t, s).log_prob(z).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_trained_full_gaussian_closes_the_gap_the_diagonal_family_cannot():
    """Forward-KL optimum of a diagonal Gaussian matches the posterior variances: gap ½(Σ log C_ii - log det C)."""
    gen, (A, b, _, _) = linear_problem()
    _, C = exact_posterior(A, b, SIGMA)
    floor = 0.5 * (torch.diagonal(C).log().sum() - torch.logdet(C)).item()
    assert floor > 0.05  # the posterior is correlated enough to tell the families apart
    gaps = {}
    for name, cls in (("full", FullGaussianGuide), ("diagonal", DiagonalGaussianGuide)):
        torch.manual_seed(0)
        guide = cls((2,), (2,), data_std=2.0, width=32, depth=2).double()
        train_guide(guide, gen, SIGMA, steps=300)
        gaps[name] = bound_gap_at(gen, guide, SIGMA, num_outer=2000, num_inner=32)
    assert gaps["full"].gap < 0.02, gaps["full"]
    assert gaps["diagonal"].gap > floor - 4 * gaps["diagonal"].standard_error, (gaps["diagonal"], floor)


# --------------------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("overrides, cls", [
    (["guide=gaussian"], DiagonalGaussianGuide),
    (["guide=full_gaussian"], FullGaussianGuide),
    (["guide=mixture", "guide.components=8"], MixtureGuide),
    (["guide=flow", "guide.layers=4"], FlowGuide),
    (["guide=flow", "guide.coupling=affine", "guide.layers=2", "guide.embedding=log"], FlowGuide),
])
def test_fit_with_every_family(overrides, cls, tmp_path):
    """``python -m vardiu_pyro.fit guide=<family>`` through the compose API, tiny budget; bound_gap in the summary."""
    cfg = config(*TINY, *overrides)
    summary = fit(cfg, tmp_path)
    assert summary["iteration"] == 20 and math.isfinite(summary["log_mmd"])
    written = json.loads((tmp_path / "summary.json").read_text())
    assert math.isfinite(written["bound_gap"]) and written["bound_gap_se"] > 0
    assert len(written["bound_gap_per_sigma"]) == 5
    guide = build_objective(cfg, build_problem(cfg, torch.device("cpu"))).guide
    assert type(guide) is cls
    guide.load_state_dict(load_checkpoint(tmp_path / "checkpoint.safetensors")["objective"]["networks"]["guide"])
    if cls is MixtureGuide:
        assert guide.components == 8
    if cls is FlowGuide:
        assert len(guide.layers) == int(cfg.guide.layers)


@pytest.mark.parametrize("d", [1, 2, 3, 5])
def test_cholesky_factor_fills_the_lower_triangle_row_by_row(d):
    """``cholesky_factor`` builds torch's ``vec_to_tril_matrix`` triangle (row by row) at fixed positions, with its
    gradient: the same values, and ℓ_k's gradient is the k-th strictly-lower entry's."""
    from torch.distributions.utils import vec_to_tril_matrix
    from vardiu_pyro.guides.full_gaussian import cholesky_factor

    rho, off = torch.randn(4, d), torch.randn(4, d * (d - 1) // 2, requires_grad=True)
    factor = cholesky_factor(rho, off)
    expected = torch.diag_embed(torch.nn.functional.softplus(rho))
    if d > 1:
        expected = expected + vec_to_tril_matrix(off.detach(), diag=-1)
    assert torch.equal(factor.detach(), expected)
    weights = torch.randn(4, d, d)
    (grad,) = torch.autograd.grad((factor * weights).sum(), off)
    rows, cols = torch.tril_indices(d, d, offset=-1)
    assert torch.equal(grad, weights[:, rows, cols])
