"""The VarDiU ELBO against an independent plain-torch twin, and against closed forms."""

import copy

import pyro
import pytest
import torch
from torch import nn

from tests.linear_gaussian import AffineGaussianGuide, GaussianTeacher, LinearGenerator, diffusive_kl, make_problem
from vardiu_pyro.guides import DiagonalGaussianGuide, pyro_guide
from vardiu_pyro.models import ExactTeacher, FixedSigma, ForwardDiffusion, MLPGenerator, PowerLawSigma, PowerWeight, Ramp, mog40
from vardiu_pyro.objectives import Problem, VarDiU, VarDiUELBO
from vardiu_pyro.optim import PerNetworkOptim
from tests.faults import ScoreOnlyGuide
from vardiu_pyro.torch_twin import TorchVarDiUStep, vardiu_importance_twin_loss, vardiu_twin_loss


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def mog40_parts(dtype=torch.float64, device="cpu"):
    target = mog40().to(device, dtype)
    gen = MLPGenerator((2,), width=32, depth=2, data_std=20.0).to(device, dtype)
    guide = DiagonalGaussianGuide((2,), (2,), data_std=20.0, width=32, depth=2).to(device, dtype)
    law = PowerLawSigma(0.1, 20.0, Ramp(0.3, 2.5, iterations=100)).to(device, dtype)
    weight = PowerWeight(20.0, Ramp(2.0, 0.0, iterations=100))
    return target, gen, guide, law, weight


def draws_of(terms):
    eps = (terms.x_t - terms.x0) / terms.sigma[:, None]
    return terms.z.detach(), terms.sigma.detach(), eps.detach()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("iteration", [0, 60])
def test_pyro_gradients_equal_the_plain_torch_twin(antithetic, iteration, device):
    target, gen, guide, law, weight = mog40_parts(device=device)
    teacher = ExactTeacher(target)
    elbo = VarDiUELBO(teacher, weight)
    model = ForwardDiffusion(gen, law, antithetic=antithetic)
    params = list(gen.parameters()) + list(guide.parameters())

    loss = elbo.differentiable_loss(model, pyro_guide(guide), 64, iteration=iteration)
    grads = torch.autograd.grad(loss, params)
    z, sigma, eps = draws_of(elbo.last_terms)

    for paired in {False, antithetic}:  # the twin's generator over the whole batch, and once per pair
        surrogate, bound = vardiu_twin_loss(gen, guide, teacher, weight, z, sigma, eps, iteration, paired=paired)
        twin_grads = torch.autograd.grad(surrogate, params)
        assert loss.item() == pytest.approx(bound.item(), rel=1e-10)
        for g, t in zip(grads, twin_grads):
            assert torch.allclose(g, t, rtol=1e-9, atol=1e-12)
    assert any(g.abs().sum() > 0 for g in grads[: len(list(gen.parameters()))])


def proposal_noise(guide, terms):
    """η with proposals = μ(x_t, σ) + s(x_t, σ) η, for a ``DiagonalGaussianGuide``."""
    with torch.no_grad():
        q = guide(terms.x_t, terms.sigma)
        return (terms.proposals - q.base_dist.loc) / q.base_dist.scale


@pytest.mark.parametrize("antithetic", [False, True])
@pytest.mark.parametrize("k", [1, 3])
def test_importance_weighted_gradients_equal_the_plain_torch_twin(k, antithetic):
    target, gen, guide, law, weight = mog40_parts()
    teacher = ExactTeacher(target)
    elbo = VarDiUELBO(teacher, weight, importance_samples=k)
    model = ForwardDiffusion(gen, law, antithetic=antithetic)
    params = list(gen.parameters()) + list(guide.parameters())

    loss = elbo.differentiable_loss(model, pyro_guide(guide), 64, iteration=60)
    grads = torch.autograd.grad(loss, params)
    z, sigma, eps = draws_of(elbo.last_terms)
    eta = proposal_noise(guide, elbo.last_terms)
    assert eta.shape == (k, 64, 2)

    for paired in {False, antithetic}:  # the twin's generator over the whole batch, and once per pair
        surrogate, bound = vardiu_importance_twin_loss(gen, guide, teacher, weight, z, sigma, eps, eta, 60,
                                                       paired=paired)
        twin_grads = torch.autograd.grad(surrogate, params)
        assert loss.item() == pytest.approx(bound.item(), rel=1e-10)
        for g, t in zip(grads, twin_grads):
            assert torch.allclose(g, t, rtol=1e-9, atol=1e-12)
    # the proposals change the gradient: it is not the paper's bound's
    plain, _ = vardiu_twin_loss(gen, guide, teacher, weight, z, sigma, eps, 60)
    plain_grads = torch.autograd.grad(plain, params)
    assert max((g - t).abs().max().item() for g, t in zip(grads, plain_grads)) > 1e-6


def test_importance_samples_need_a_reparameterised_guide_and_a_count():
    target, gen, _, law, weight = mog40_parts()
    guide = ScoreOnlyGuide((2,), (2,), data_std=20.0, width=16, depth=1).double()
    elbo = VarDiUELBO(ExactTeacher(target), weight, importance_samples=1)
    with pytest.raises(ValueError, match="rsample"):
        elbo.loss(ForwardDiffusion(gen, law), pyro_guide(guide), 8)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="importance_samples"):
            VarDiUELBO(None, None, importance_samples=bad)


def test_svi_step_equals_twin_step_with_per_network_clipping():
    target, gen, guide, law, weight = mog40_parts()
    teacher = ExactTeacher(target)
    gen_copy, guide_copy = copy.deepcopy(gen), copy.deepcopy(guide)
    max_norm = 1e-3  # small enough that both networks are clipped
    # SGD, because Adam's first step is invariant to the scale of the gradient and would hide clipping
    problem = Problem(target, teacher, gen, law, weight, make_guide=lambda: guide,
                      make_optim=lambda nets: PerNetworkOptim(nets, optimizer="sgd", lr=1.0, max_grad_norm=max_norm),
                      batch_size=64)
    objective = VarDiU(problem, antithetic=True)
    objective.step(0)
    z, sigma, eps = draws_of(objective.elbo.last_terms)

    surrogate, _ = vardiu_twin_loss(gen_copy, guide_copy, teacher, weight, z, sigma, eps, 0)
    surrogate.backward()
    norms = []
    for net in (gen_copy, guide_copy):
        norms.append(nn.utils.clip_grad_norm_(net.parameters(), max_norm))
        torch.optim.SGD(net.parameters(), lr=1.0).step()
    assert all(n > 10 * max_norm for n in norms)
    for a, b in zip(list(gen.parameters()) + list(guide.parameters()),
                    list(gen_copy.parameters()) + list(guide_copy.parameters())):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", [0, 2])
def test_the_twin_step_is_its_loss_backward_and_gradient_step(k):
    """The twin in phases (``loss``, backward, ``apply_gradients``), as the overhead benchmark times it, is its whole
    step: the same bound and the same parameters after each of two steps from the same state and seed."""
    target, gen, guide, law, weight = mog40_parts()
    whole, phased = (TorchVarDiUStep(copy.deepcopy(gen), copy.deepcopy(guide), ExactTeacher(target), law, weight,
                                     batch_size=32, importance_samples=k, max_grad_norm=1e-2) for _ in range(2))
    for i in range(2):
        torch.manual_seed(i)
        bound = whole(i)
        torch.manual_seed(i)
        surrogate, phased_bound = phased.loss(i)
        surrogate.backward()
        phased.apply_gradients()
        assert phased_bound.item() == bound
        for a, b in zip([*whole.generator.parameters(), *whole.guide.parameters()],
                        [*phased.generator.parameters(), *phased.guide.parameters()]):
            assert torch.equal(a, b) and a.grad is None and b.grad is None
    assert not torch.equal(next(whole.generator.parameters()), next(gen.parameters()))  # it stepped


@pytest.mark.parametrize("k", [0, 2])
def test_loss_is_the_bound_and_differentiable_loss_has_its_value(float64, k):
    target, gen, guide, law, weight = mog40_parts()
    elbo = VarDiUELBO(ExactTeacher(target), weight, importance_samples=k)
    model = ForwardDiffusion(gen, law, antithetic=True)
    pyro.set_rng_seed(3)
    value = elbo.loss(model, pyro_guide(guide), 32)
    pyro.set_rng_seed(3)
    tensor = elbo.differentiable_loss(model, pyro_guide(guide), 32)
    assert value == pytest.approx(tensor.item(), rel=1e-12)
    assert elbo.last_terms.has_teacher_density


# ---------------------------------------------------------------- linear generator, Gaussian target
SIGMA = 0.8


def linear_parts(exact: bool, importance_samples: int = 0):
    A, b, mu, S = make_problem()
    gen = LinearGenerator(A, b)
    guide = AffineGaussianGuide(2, 2).double()
    if exact:
        guide.set_exact_posterior(A, b, SIGMA)
    else:
        guide.set_exact_posterior(A * 1.3, b + 0.5, SIGMA * 1.5)
    elbo = VarDiUELBO(GaussianTeacher(mu, S), PowerWeight(SIGMA, 2.0),  # w(σ) = 1 at σ = SIGMA
                      importance_samples=importance_samples)
    model = ForwardDiffusion(gen, FixedSigma(SIGMA).double())
    return gen, guide, elbo, model, (A, b, mu, S)


@pytest.mark.parametrize("k", [0, 2])
def test_bound_is_exact_per_sample_with_the_exact_posterior(k):
    """With q = p_θ(z | x_t): U_K = log p_θ^σ(x_t) - log p_d^σ(x_t) for every single draw (every weight is p_θ^σ(x_t))."""
    gen, guide, elbo, model, (A, b, mu, S) = linear_parts(exact=True, importance_samples=k)
    t = elbo.terms(model, pyro_guide(guide), 1000)
    eye = torch.eye(2, dtype=torch.float64)
    student = torch.distributions.MultivariateNormal(b, A @ A.T + SIGMA**2 * eye)
    teacher = torch.distributions.MultivariateNormal(mu, S + SIGMA**2 * eye)
    x_t = t.x_t.detach()
    assert torch.allclose(t.bound, student.log_prob(x_t) - teacher.log_prob(x_t), atol=1e-9)


def test_bound_exceeds_the_diffusive_kl_and_equals_it_at_the_exact_posterior():
    kl = diffusive_kl(*make_problem(), SIGMA).item()
    estimates = {}
    for exact in (True, False):
        gen, guide, elbo, model, _ = linear_parts(exact)
        u = elbo.terms(model, pyro_guide(guide), 200_000).bound
        estimates[exact] = (u.mean().item(), u.std().item() / len(u) ** 0.5)
    mean, se = estimates[True]
    assert abs(mean - kl) < 4 * se
    mean, se = estimates[False]
    assert mean - kl > 10 * se  # a wrong posterior gives a strictly larger bound


def test_importance_weighted_bound_decreases_with_k_towards_the_diffusive_kl():
    """With a wrong posterior: U_0 > U_1 > U_4 > KL (each estimate 200,000 draws; differences against their errors)."""
    kl = diffusive_kl(*make_problem(), SIGMA).item()
    estimates = []
    for k in (0, 1, 4):
        gen, guide, elbo, model, _ = linear_parts(exact=False, importance_samples=k)
        u = elbo.terms(model, pyro_guide(guide), 200_000).bound
        estimates.append((u.mean().item(), u.var().item() / len(u)))
    for (m0, v0), (m1, v1) in zip(estimates, estimates[1:]):
        assert m0 - m1 > 6 * (v0 + v1) ** 0.5, estimates
    mean, var = estimates[-1]
    assert mean - kl > 6 * var**0.5, (estimates, kl)


@pytest.mark.parametrize("k", [0, 2])
def test_gradient_at_the_exact_posterior_is_the_closed_form_kl_gradient(k):
    """z-test over R independent estimates: catches a wrong sign or factor in the surrogate."""
    gen, guide, elbo, model, (A, b, mu, S) = linear_parts(exact=True, importance_samples=k)
    A_ref, b_ref = A.clone().requires_grad_(), b.clone().requires_grad_()
    ref = torch.cat([g.flatten() for g in torch.autograd.grad(diffusive_kl(A_ref, b_ref, mu, S, SIGMA), [A_ref, b_ref])])
    estimates = []
    for _ in range(40):
        loss = elbo.differentiable_loss(model, pyro_guide(guide), 4096)
        estimates.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, [gen.A, gen.b])]))
    est = torch.stack(estimates)
    mean, se = est.mean(0), est.std(0) / len(est) ** 0.5
    assert ((mean - ref).abs() < 4.5 * se + 1e-9).all(), (mean, ref, se)
    assert (se < 0.1 * ref.abs().max()).all()  # precise enough that a factor of 2 or a sign would fail


def test_num_particles_is_rejected():
    with pytest.raises(ValueError, match="num_particles"):
        VarDiUELBO(None, None, num_particles=4)
