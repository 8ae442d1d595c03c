import math

import pytest
import torch

from vardiu_pyro.models import FixedSigma, LogNormalSigma, PowerLawSigma, PowerWeight, Ramp


def test_ramp_linear_quantised_and_constant():
    r = Ramp(0.1, 2.0, iterations=190_000, every=1000)
    assert r(0) == pytest.approx(0.1)
    assert r(999) == pytest.approx(0.1)
    assert r(1000) == pytest.approx(0.11)  # the published +0.01 every 1000 iterations
    assert r(10**7) == pytest.approx(2.0)
    assert Ramp(3.0)(123) == 3.0
    assert Ramp(0.0, 1.0, iterations=10)(5) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        Ramp(0.0, 1.0, iterations=0)


def test_ramp_that_ends_early_holds_its_end():
    r = Ramp(0.0, 1.0, iterations=1000, fraction=0.7)
    assert r(350) == pytest.approx(0.5)  # half of the 700 ramp iterations
    assert r(700) == pytest.approx(1.0) and r(999) == pytest.approx(1.0)
    assert Ramp(0.0, 1.0, iterations=1000, fraction=1.0)(700) == pytest.approx(0.7)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            Ramp(0.0, 1.0, iterations=1000, fraction=bad)


@pytest.mark.parametrize("power", [0.3, 1.0, 2.5])
def test_power_law_matches_its_cdf(power):
    lo, hi = 0.1, 20.0
    law = PowerLawSigma(lo, hi, power)
    s = law.distribution().sample((100_000,))
    assert s.min() >= lo and s.max() <= hi
    # F(σ) = ((σ - lo) / (hi - lo))^(1/p)
    for q in [0.1, 0.5, 0.9]:
        sigma_q = lo + q**power * (hi - lo)
        assert (s <= sigma_q).float().mean().item() == pytest.approx(q, abs=0.01)


def test_power_law_log_prob_integrates_to_one():
    law = PowerLawSigma(0.1, 20.0, 1.7)
    grid = torch.linspace(0.1 + 1e-4, 20.0 - 1e-4, 200_001)
    dens = law.distribution().log_prob(grid).exp()
    assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=2e-3)


def test_power_law_follows_its_curriculum():
    law = PowerLawSigma(0.1, 20.0, Ramp(0.3, 2.5, iterations=1000))
    early = law.distribution(0).sample((20_000,)).median()
    late = law.distribution(1000).sample((20_000,)).median()
    assert early > 10 and late < 5


def test_power_law_range_follows_its_ramp():
    # σ_max ramps from 20 to 14 over the first half of 1000 iterations; at each iteration the law is
    # the fixed-range law of that σ_max: F(σ) = ((σ - lo) / (σ_max - lo))^(1/p)
    lo, power = 0.1, 2.0
    law = PowerLawSigma(lo, Ramp(20.0, 14.0, iterations=1000, fraction=0.5), power)
    assert law.sigma_max == 20.0  # the range's largest σ
    for iteration, top in [(0, 20.0), (250, 17.0), (500, 14.0), (1000, 14.0)]:
        assert law.range_at(iteration) == pytest.approx((lo, top))
        s = law.distribution(iteration).sample((100_000,))
        assert s.min() >= lo and s.max() <= top
        for q in [0.5, 0.9]:
            assert (s <= lo + q**power * (top - lo)).float().mean().item() == pytest.approx(q, abs=0.01)
    with pytest.raises(ValueError, match="sigma_min < sigma_max"):
        PowerLawSigma(lo, Ramp(20.0, 0.05, iterations=1000), power)  # the range would close before the end


def test_lognormal_is_truncated_exactly():
    lo, hi, m, sd = 0.1, 20.0, 1.0, 1.2
    law = LogNormalSigma(lo, hi, mean=m, std=sd)
    s = law.distribution().sample((100_000,))
    assert s.min() >= lo * (1 - 1e-5) and s.max() <= hi * (1 + 1e-5)
    normal = torch.distributions.Normal(m, sd)
    a, b = normal.cdf(torch.tensor(math.log(lo))), normal.cdf(torch.tensor(math.log(hi)))
    for x in [0.5, 2.0, 8.0]:
        expected = (normal.cdf(torch.tensor(math.log(x))) - a) / (b - a)
        assert (s <= x).float().mean().item() == pytest.approx(expected.item(), abs=0.01)


def test_fixed_sigma_is_a_point_mass():
    s = FixedSigma(3.0).distribution().expand((5,)).sample()
    assert torch.equal(s, torch.full((5,), 3.0))


@pytest.mark.parametrize("cls,kwargs", [(PowerLawSigma, {}), (LogNormalSigma, {})])
@pytest.mark.parametrize("lo,hi", [(0.0, 1.0), (-1.0, 1.0), (2.0, 2.0), (3.0, 1.0)])
def test_bad_sigma_ranges_are_rejected(cls, kwargs, lo, hi):
    with pytest.raises(ValueError, match="sigma_min"):
        cls(lo, hi, **kwargs)


def test_power_weight():
    w = PowerWeight(20.0, Ramp(2.0, 0.0, iterations=100))
    s = torch.tensor([1.0, 10.0, 20.0])
    assert torch.allclose(w(s, 0), (s / 20) ** 2)
    assert torch.equal(w(s, 100), torch.ones(3))
    assert torch.allclose(w(s, 50), s / 20)


@pytest.mark.parametrize("power", [0.3, 1.0, 2.5])
def test_power_law_is_the_transformed_uniform_it_writes_out(power):
    """Same draws (same generator state) and same log-density as Uniform(0, 1) pushed through u^p, low + span u."""
    from pyro.distributions import TransformedDistribution, Uniform
    from pyro.distributions.transforms import AffineTransform, PowerTransform

    law = PowerLawSigma(0.1, 20.0, power).double().distribution().expand((1000,))
    reference = TransformedDistribution(Uniform(torch.zeros((), dtype=torch.float64), 1.0),
                                        [PowerTransform(torch.tensor(power, dtype=torch.float64)),
                                         AffineTransform(0.1, 19.9)]).expand((1000,))
    torch.manual_seed(3)
    a = law.rsample((2,))
    torch.manual_seed(3)
    b = reference.rsample((2,))
    assert a.shape == b.shape == (2, 1000)
    assert torch.allclose(a, b, rtol=1e-12)
    inside = a.clamp(0.1 + 1e-9, 20.0 - 1e-9)
    assert torch.allclose(law.log_prob(inside), reference.log_prob(inside), rtol=1e-9)


@pytest.mark.parametrize("ramp", [Ramp(0.1, 2.0, iterations=1900, every=100), Ramp(2.0, 0.5, iterations=1000, fraction=0.5),
                                  Ramp(3.0)], ids=["quantised", "early end", "constant"])
def test_a_ramp_at_a_tensor_iteration_is_its_value_at_the_number(ramp):
    """A compiled step passes the iteration as a float64 0-d tensor: the ramps then give the same values as tensors."""
    for iteration in (0, 1, 99, 100, 137.5, 499, 500, 950, 1900, 5000):
        value = ramp(torch.tensor(iteration, dtype=torch.float64))
        assert float(value) == pytest.approx(ramp(iteration), rel=1e-15, abs=1e-15)


def test_laws_and_weights_at_a_tensor_iteration_are_those_at_the_number():
    law = PowerLawSigma(0.1, Ramp(20.0, 14.0, iterations=1000), power=Ramp(0.3, 2.86, iterations=1000))
    weight = PowerWeight(14.0, Ramp(2.0, 0.0, iterations=1000))
    lognormal = LogNormalSigma(0.1, 20.0, mean=Ramp(-1.0, 1.0, iterations=1000))
    sigma = torch.rand(64) * 10 + 0.2
    for iteration in (0, 333, 1000):
        at = torch.tensor(float(iteration), dtype=torch.float64)
        for a, b in ((law, law), (lognormal, lognormal)):
            torch.manual_seed(iteration)
            expected = a.batch(iteration, 64).sample()
            torch.manual_seed(iteration)
            got = b.batch(at, 64).sample()
            assert got.dtype == expected.dtype == torch.float32
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(weight(sigma, at), weight(sigma, iteration), rtol=1e-6, atol=0)


def test_a_power_law_refuses_a_power_ramp_that_reaches_zero():
    with pytest.raises(ValueError, match="positive power"):
        PowerLawSigma(0.1, 10.0, power=Ramp(1.0, 0.0, iterations=100))
