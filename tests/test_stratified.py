"""Stratified σ (models/stratified.py): one draw per stratum, exact marginals, unbiased and less variable batch means."""

import math

import pytest
import torch
from pyro import poutine

from vardiu_pyro.models import ForwardDiffusion, LogNormalSigma, LogUniformSigma, MLPGenerator, PowerLawSigma
from vardiu_pyro.models.stratified import Stratified, stratified_uniform
from vardiu_pyro.torch_twin import TorchVarDiUStep

LAWS = {
    "power": lambda s: PowerLawSigma(0.1, 10.0, 2.5, stratified=s),
    "lognormal": lambda s: LogNormalSigma(0.1, 20.0, mean=1.0, std=1.2, stratified=s),
    "loguniform": lambda s: LogUniformSigma(0.1, 20.0, stratified=s),
}


def strata_of(law, sigma: torch.Tensor, n: int) -> torch.Tensor:
    """The stratum k (0..n-1) of each σ: F(σ) in [k/n, (k+1)/n)."""
    return (law.distribution().cdf(sigma.double()) * n).floor().long().clamp(0, n - 1)


def test_stratified_uniform_has_one_point_per_stratum_in_each_block():
    torch.manual_seed(0)
    u = stratified_uniform(3, 50, torch.Size([4]))
    assert u.shape == (4, 150)
    for block in u.reshape(4, 3, 50).flatten(0, 1):
        assert torch.equal((block * 50).floor().long().sort().values, torch.arange(50))
    assert not torch.equal(u[0, :50], u[0, :50].sort().values)  # the strata come in random order


def test_each_position_of_a_stratified_batch_is_marginally_uniform():
    torch.manual_seed(1)
    u = stratified_uniform(1, 8, torch.Size([40_000]))  # 40,000 batches of 8
    for i in (0, 7):
        for q in (0.1, 0.5, 0.9):
            assert (u[:, i] <= q).double().mean().item() == pytest.approx(q, abs=0.01)


@pytest.mark.parametrize("name", LAWS)
def test_stratified_batches_hit_every_stratum_of_the_law(name):
    law = LAWS[name](True)
    torch.manual_seed(2)
    sigma = law.batch(0, 256, blocks=2).sample()
    assert sigma.shape == (256,)
    for half in (sigma[:128], sigma[128:]):
        assert torch.equal(strata_of(law, half, 128).sort().values, torch.arange(128))


@pytest.mark.parametrize("name", LAWS)
def test_stratified_draws_keep_the_marginal_law(name):
    law = LAWS[name](True)
    torch.manual_seed(3)
    sigma = law.batch(0, 4).sample((30_000,))[:, 0]  # the first σ of 30,000 batches of 4
    cdf = law.distribution().cdf(sigma.double())
    for q in (0.1, 0.5, 0.9):
        assert (cdf <= q).double().mean().item() == pytest.approx(q, abs=0.01)
    assert torch.equal(law.batch(0, 4).log_prob(sigma[:4]), law.distribution().log_prob(sigma[:4]))


def test_stratified_batch_means_are_unbiased_and_far_less_variable():
    """E σ = low + span / (p + 1) for σ = low + span u^p; a smooth f has a batch mean of variance O(n^-3) stratified."""
    power, n, repeats = 2.5, 64, 4000
    expected = 0.1 + 9.9 / (power + 1)
    torch.manual_seed(4)
    means = {}
    for stratified in (False, True):
        law = PowerLawSigma(0.1, 10.0, power, stratified=stratified).double()
        means[stratified] = law.batch(0, n).sample((repeats,)).mean(-1)
    sd_iid = means[False].std().item()
    assert means[True].mean().item() == pytest.approx(expected, abs=4 * means[True].std().item() / math.sqrt(repeats))
    assert means[False].mean().item() == pytest.approx(expected, abs=4 * sd_iid / math.sqrt(repeats))
    assert means[True].std().item() < 0.1 * sd_iid


def test_iid_laws_draw_as_before():
    """Unstratified, ``batch`` is the expanded law: the same random numbers as before it existed."""
    law = PowerLawSigma(0.1, 10.0, 2.5)
    torch.manual_seed(5)
    a = law.batch(0, 16, blocks=2).sample()
    torch.manual_seed(5)
    assert torch.equal(a, law.distribution().expand((16,)).sample())


def test_the_model_stratifies_each_half_of_an_antithetic_batch():
    g = MLPGenerator((2,), width=16, depth=1)
    law = PowerLawSigma(0.1, 10.0, 1.0, stratified=True)
    torch.manual_seed(6)
    s = poutine.trace(ForwardDiffusion(g, law, antithetic=True)).get_trace(64).nodes["sigma"]["value"]
    assert torch.equal(s[:32], s[32:])
    assert torch.equal(strata_of(law, s[:32], 32).sort().values, torch.arange(32))
    s = poutine.trace(ForwardDiffusion(g, law, antithetic=False)).get_trace(64).nodes["sigma"]["value"]
    assert torch.equal(strata_of(law, s, 64).sort().values, torch.arange(64))


def test_the_plain_torch_twin_stratifies_its_draws_too():
    g = MLPGenerator((2,), width=16, depth=1)
    law = PowerLawSigma(0.1, 10.0, 1.0, stratified=True)
    step = TorchVarDiUStep(g, MLPGenerator((2,), width=8, depth=1), None, law, None, batch_size=64)  # a stand-in guide
    _, s, _ = step.draws(0)
    assert torch.equal(s[:32], s[32:])
    assert torch.equal(strata_of(law, s[:32], 32).sort().values, torch.arange(32))


def test_bad_stratifications_are_rejected():
    with pytest.raises(ValueError, match="stratified must be true or false"):
        PowerLawSigma(0.1, 10.0, 1.0, stratified="yes")
    law = PowerLawSigma(0.1, 10.0, 1.0, stratified=True)
    with pytest.raises(ValueError, match="equal stratified blocks"):
        law.batch(0, 9, blocks=2)
    with pytest.raises(ValueError, match="scalar law with one batch dimension"):
        Stratified(law.distribution())
    with pytest.raises(ValueError, match="cannot be expanded"):
        law.batch(0, 8).expand((2, 8))
