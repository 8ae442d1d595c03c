"""The bound-gap estimator against the closed forms of a linear generator with a Gaussian target."""

import math
from types import SimpleNamespace

import pytest
import torch

from tests.linear_gaussian import (AffineGaussianGuide, GaussianTeacher, LinearGenerator, diffusive_kl,
                                   expected_posterior_kl, make_problem)
from vardiu_pyro.bound_gap import bound_gap, bound_gap_at, bound_gap_summary, log_marginal_bounds
from vardiu_pyro.models import PowerLawSigma, PowerWeight, Ramp

SIGMA = 0.8


pytestmark = pytest.mark.usefixtures("one_thread")  # many tiny operations (conftest.py)


def wrong_guide(A, b):
    """An affine Gaussian guide set to the posterior of a different generator and σ: a gap of about 0.5."""
    guide = AffineGaussianGuide(2, 2).double()
    guide.set_exact_posterior(A * 1.3, b + 0.5, SIGMA * 1.5)
    return guide


def closed_form_gap(guide, A, b, sigma):
    L = torch.tril(guide.L.detach())
    return expected_posterior_kl(A, b, sigma, guide.M.detach(), guide.c.detach(), L @ L.T).item()


def test_marginal_estimates_sandwich_the_closed_form_marginal_and_converge():
    A, b, _, _ = make_problem()
    gen, guide = LinearGenerator(A, b), wrong_guide(A, b)
    n = 3000
    z = torch.randn(n, 2, dtype=torch.float64)
    sigma = torch.full((n,), SIGMA, dtype=torch.float64)
    x_t = gen(z).detach() + SIGMA * torch.randn(n, 2, dtype=torch.float64)
    truth = torch.distributions.MultivariateNormal(b, A @ A.T + SIGMA**2 * torch.eye(2, dtype=torch.float64)).log_prob(x_t)
    bias = {}
    for k in (4, 64):
        lo, hi, _ = log_marginal_bounds(gen, guide, x_t, sigma, z, num_inner=k)
        for name, estimate, sign in (("lo", lo, -1), ("hi", hi, +1)):  # E lo <= log p <= E hi
            err = estimate - truth
            mean, se = err.mean().item(), err.std().item() / math.sqrt(n)
            assert sign * mean > -4 * se, (k, name, mean, se)
            bias[k, name] = abs(mean)
    for name in ("lo", "hi"):  # the bias falls like 1/K: 16 times as many draws, at least 4 times less bias
        assert bias[64, name] < bias[4, name] / 4, bias


def test_gap_at_one_sigma_matches_the_closed_form():
    A, b, _, _ = make_problem()
    gen, guide = LinearGenerator(A, b), wrong_guide(A, b)
    closed = closed_form_gap(guide, A, b, SIGMA)
    est = bound_gap_at(gen, guide, SIGMA, num_outer=4000, num_inner=32)
    assert closed > 0.3  # a real gap
    assert 0 <= est.gap - est.gap_lower < 0.1  # a good proposal: a narrow sandwich
    assert est.gap_lower - 4 * est.standard_error < closed < est.gap + 4 * est.standard_error, (est, closed)
    assert est.standard_error < 0.05 * closed


def test_weighted_gap_integrates_over_the_sigma_law():
    """E_{σ ~ U(0.5, 1.5)} (σ/1.5)² gap(σ) for a guide that ignores σ, against quadrature of the closed form."""
    A, b, _, _ = make_problem()
    gen, guide = LinearGenerator(A, b), wrong_guide(A, b)
    law, weight = PowerLawSigma(0.5, 1.5, 1.0).double(), PowerWeight(1.5, 2.0)
    grid = 0.5 + (torch.arange(400, dtype=torch.float64) + 0.5) / 400
    closed = sum((s / 1.5) ** 2 * closed_form_gap(guide, A, b, s) for s in grid.tolist()) / len(grid)
    est = bound_gap(gen, guide, law, weight, num_outer=6000, num_inner=32)
    assert est.gap_lower - 4 * est.standard_error < closed < est.gap + 4 * est.standard_error, (est, closed)
    # the weight matters: the unweighted gap is clearly larger
    unweighted = sum(closed_form_gap(guide, A, b, s) for s in grid.tolist()) / len(grid)
    assert unweighted - closed > 10 * est.standard_error


def test_bound_minus_kl_is_the_gap_and_kl_is_the_closed_form():
    A, b, mu, S = make_problem()
    gen, guide = LinearGenerator(A, b), wrong_guide(A, b)
    est = bound_gap_at(gen, guide, SIGMA, num_outer=4000, num_inner=32, teacher=GaussianTeacher(mu, S))
    assert est.bound - est.kl == pytest.approx(est.gap, abs=1e-9)
    kl = diffusive_kl(A, b, mu, S, SIGMA).item()
    assert abs(est.kl - kl) < 0.1 * kl


def test_estimates_are_seeded_and_leave_the_global_rng_alone():
    A, b, _, _ = make_problem()
    gen, guide = LinearGenerator(A, b), wrong_guide(A, b)
    state = torch.get_rng_state()
    a = bound_gap_at(gen, guide, SIGMA, num_outer=100, num_inner=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == bound_gap_at(gen, guide, SIGMA, num_outer=100, num_inner=8, seed=3)
    assert a != bound_gap_at(gen, guide, SIGMA, num_outer=100, num_inner=8, seed=4)


def test_summary_only_for_2d_targets_with_a_guide():
    A, b, _, _ = make_problem()
    gen, guide = LinearGenerator(A, b), wrong_guide(A, b)
    law, weight = PowerLawSigma(0.5, 1.5, 1.0).double(), PowerWeight(1.5, 2.0)

    def problem(dim, sigma_law=law):
        return SimpleNamespace(target=SimpleNamespace(event_shape=torch.Size([dim])), sigma_law=sigma_law,
                               weight=weight, teacher=None)

    with_guide = SimpleNamespace(guide=guide, generator=gen)
    without_guide = SimpleNamespace(generator=gen)  # e.g. Diff-Instruct
    assert bound_gap_summary(without_guide, problem(2), 0) == {}
    assert bound_gap_summary(with_guide, problem(3), 0) == {}
    out = bound_gap_summary(with_guide, problem(2), 0, num_outer=64, num_inner=8, per_sigma_outer=16)
    assert set(out) == {"bound_gap", "bound_gap_lower", "bound_gap_se", "bound_gap_per_sigma"}
    levels = [float(k) for k in out["bound_gap_per_sigma"]]
    assert levels == pytest.approx(torch.logspace(math.log10(0.5), math.log10(1.5), 5).tolist(), rel=1e-3)
    assert all(set(v) == {"gap", "gap_lower", "se"} and v["gap"] > 0 for v in out["bound_gap_per_sigma"].values())

    # a range that shrinks with the curriculum (sigma.max_start): the levels span the range at the given iteration
    shrinking = PowerLawSigma(0.5, Ramp(3.0, 1.5, iterations=100, fraction=0.5), 1.0).double()
    for iteration, top in [(0, 3.0), (100, 1.5)]:
        out = bound_gap_summary(with_guide, problem(2, shrinking), iteration, num_outer=16, num_inner=4, per_sigma_outer=4)
        levels = [float(k) for k in out["bound_gap_per_sigma"]]
        assert levels == pytest.approx(torch.logspace(math.log10(0.5), math.log10(top), 5).tolist(), rel=1e-3)
