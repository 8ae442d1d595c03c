import math

import pytest
import torch

from vardiu_pyro.models import EmpiricalTeacher, ExactTeacher, GaussianMixture, Teacher, mog9, mog40
from vardiu_pyro.models.targets import normalise_logits, squared_distances

SIGMAS = [0.01, 0.1, 0.5, 1.0, 5.0, 20.0, 80.0]


def test_mog40_matches_published_recipe():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        locs = (torch.rand(40, 2) - 0.5) * 2 * 40
    t = mog40()
    assert torch.equal(t.locs, locs)
    assert t.scale == pytest.approx(math.log1p(math.e), rel=1e-6)  # softplus(1)
    assert torch.allclose(t.log_weights.exp(), torch.full((40,), 1 / 40))


def test_building_mog40_leaves_global_rng_alone():
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    mog40()
    assert torch.equal(torch.rand(3), a)


def test_mog9_is_a_grid():
    t = mog9()
    assert t.locs.shape == (9, 2)
    assert set(t.locs[:, 0].tolist()) == {-5.0, 0.0, 5.0}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sigma", SIGMAS)
def test_score_is_autograd_of_noised_log_density(sigma, dtype):
    t = mog40().to(dtype)
    x = (torch.randn(256, 2, dtype=dtype) * 30).requires_grad_()
    s = torch.full((256,), sigma, dtype=dtype)
    (grad,) = torch.autograd.grad(t.log_prob(x, s).sum(), x)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert torch.allclose(t.score(x, s), grad, rtol=tol, atol=tol * (1 + grad.abs().max().item()))


@pytest.mark.parametrize("sigma", SIGMAS)
def test_float32_is_stable_far_from_the_modes(sigma):
    t = mog40()
    x = torch.tensor([[1e3, -1e3], [0.0, 0.0], [500.0, 3.0]])
    s = torch.full((3,), sigma)
    t64 = mog40().double()
    assert torch.isfinite(t.log_prob(x, s)).all() and torch.isfinite(t.score(x, s)).all()
    assert torch.allclose(t.log_prob(x, s).double(), t64.log_prob(x.double(), s.double()), rtol=1e-5)
    assert torch.allclose(t.score(x, s).double(), t64.score(x.double(), s.double()), rtol=1e-4, atol=1e-4)


def test_noised_density_is_the_convolution():
    """p_d^σ(x) = ∫ p_d(x0) N(x; x0, σ²I) dx0, by quadrature on a fine grid (MoG-9)."""
    t = mog9().double()
    sigma = 0.7
    h = 0.05
    axis = torch.arange(-9.0, 9.0 + h / 2, h, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)
    p0 = t.log_prob(grid).exp()
    x = torch.tensor([[0.3, -0.2], [2.5, 2.5], [5.0, -4.0]], dtype=torch.float64)
    kernel = torch.exp(-((x[:, None] - grid[None]) ** 2).sum(-1) / (2 * sigma**2)) / (2 * math.pi * sigma**2)
    conv = (kernel * p0).sum(-1) * h * h
    assert torch.allclose(t.log_prob(x, sigma).exp(), conv, rtol=1e-6)


def test_distribution_agrees_with_log_prob_and_per_sample_sigma():
    t = mog40()
    x = torch.randn(64, 2) * 20
    s = torch.rand(64) * 10 + 0.01
    assert torch.allclose(t.distribution(s).log_prob(x), t.log_prob(x, s), atol=1e-4)
    # per-sample σ is the same as evaluating each σ alone
    one = torch.stack([t.log_prob(x[i:i + 1], s[i].item())[0] for i in range(64)])
    assert torch.allclose(t.log_prob(x, s), one, atol=1e-5)


def test_samples_have_the_mixture_moments():
    t = mog40()
    x = t.sample(200_000)
    assert x.shape == (200_000, 2)
    mean = t.locs.mean(0)
    var = t.locs.var(0, unbiased=False) + t.scale**2
    assert torch.allclose(x.mean(0), mean, atol=0.2)
    assert torch.allclose(x.var(0), var, rtol=0.02)


def test_mixtures_in_higher_dimensions():
    t = GaussianMixture(torch.randn(5, 7) * 4, scale=0.8)
    x = t.sample(10)
    assert t.event_shape == (7,) and x.shape == (10, 7)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(t.log_prob(xg, 2.0).sum(), xg)
    assert torch.allclose(t.score(x, 2.0), grad, atol=1e-5)


def test_assign_credits_cores_only():
    t = mog40()
    mid = (t.locs[0] + t.locs[1]) / 2
    x = torch.stack([t.locs[3], t.locs[7] + 0.5, mid + 100])
    assert t.assign(x).tolist() == [3, 7, -1]


def test_exact_teacher_is_frozen_and_delegates():
    t = mog40()
    teacher = ExactTeacher(t)
    x, s = torch.randn(8, 2), torch.ones(8)
    assert teacher.has_log_prob
    assert torch.equal(teacher.score(x, s), t.score(x, s))
    assert all(not p.requires_grad for p in teacher.parameters())


def test_bad_mixture_arguments():
    with pytest.raises(ValueError, match="shape"):
        GaussianMixture(torch.zeros(3), scale=1.0)
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture(torch.zeros(3, 2), scale=0.0)


@pytest.mark.parametrize("d", [1, 2, 4, 5, 7])
def test_squared_distances_are_those_of_the_differences(d):
    """Both ways of summing (coordinate by coordinate up to D = 4, one reduction above) give |x - μ_k|²."""
    x, locs = torch.randn(3, 6, d, dtype=torch.float64) * 30, torch.randn(9, d, dtype=torch.float64) * 30
    direct = torch.stack([torch.stack([((x[i, j] - m) ** 2).sum() for m in locs]) for i in range(3) for j in range(6)])
    assert torch.allclose(squared_distances(x, locs), direct.view(3, 6, 9), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normalise_logits_is_softmax_and_logsumexp(dtype):
    """Logits thousands of units apart (components far from x at small σ) and close together alike."""
    logits = torch.cat([torch.randn(5, 40, dtype=dtype) * 3, -torch.rand(5, 40, dtype=dtype) * 3000], dim=0)
    logits[5:, 7] = 12.0  # one component dominates in the far rows
    r, log_total = normalise_logits(logits)
    assert torch.allclose(r, torch.softmax(logits, -1), rtol=1e-6, atol=1e-30)
    assert torch.allclose(log_total, torch.logsumexp(logits, -1), rtol=1e-7 if dtype == torch.float32 else 1e-14)
    assert torch.allclose(r.sum(-1), torch.ones((), dtype=dtype))


def test_one_pass_score_and_log_prob_equal_the_two_calls():
    t = mog40()
    x, s = torch.randn(300, 2) * 30, torch.rand(300) * 5 + 0.01
    for density in (t, ExactTeacher(t), EmpiricalTeacher(t, num_samples=500, chunk_size=128)):
        score, log_p = density.score_and_log_prob(x, s)
        assert torch.equal(score, density.score(x, s)) and torch.equal(log_p, density.log_prob(x, s))


def test_a_teacher_that_changes_its_score_keeps_it_in_the_one_pass():
    """The ELBO asks for both at once: a subclass's own score must still be the one it gets."""

    class Halved(ExactTeacher):
        def score(self, x_t, sigma):
            return super().score(x_t, sigma) / 2

    class ScoreOnly(Teacher):
        def score(self, x_t, sigma):
            return -x_t

    t = mog40()
    x, s = torch.randn(16, 2) * 30, torch.ones(16)
    score, log_p = Halved(t).score_and_log_prob(x, s)
    assert torch.equal(score, t.score(x, s) / 2) and torch.equal(log_p, t.log_prob(x, s))
    score, log_p = ScoreOnly().score_and_log_prob(x, s)
    assert torch.equal(score, -x) and log_p is None
