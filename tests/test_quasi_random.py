"""Quasi-random latents (models/quasi_random.py): exact N(0, I) marginals, a batch that covers z-space evenly."""

import math

import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from vardiu_pyro.models import ForwardDiffusion, MLPGenerator, PowerLawSigma
from vardiu_pyro.models.quasi_random import QuasiRandomNormal, shifted_sobol_uniform, sobol_integers
from vardiu_pyro.torch_twin import TorchVarDiUStep


def standard_normal(batch: int, event: tuple[int, ...] = (2,)) -> dist.TorchDistribution:
    return dist.Normal(torch.zeros(()), 1.0).expand((batch, *event)).to_event(len(event))


def cells(u: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """The cell of each point (n, 2) in the grid of 2^a × 2^b equal cells of the unit square."""
    return (u[:, 0] * 2 ** a).floor().long() * 2 ** b + (u[:, 1] * 2 ** b).floor().long()


@pytest.mark.parametrize("m", [4, 8])
def test_a_shifted_sobol_batch_is_a_net_every_elementary_grid_once(m):
    """2^m shifted points put exactly one point in each cell of every 2^a × 2^(m-a) grid (a (0, m, 2)-net)."""
    torch.manual_seed(0)
    for u in shifted_sobol_uniform(sobol_integers(2 ** m, 2), blocks=3):
        for a in range(m + 1):
            assert torch.equal(cells(u, a, m - a).sort().values, torch.arange(2 ** m))


def test_a_shifted_point_at_either_end_of_the_unit_interval_stays_inside_it(monkeypatch):
    """u = ((s XOR c) + v) / 2^30 rounds to 0 or 1 at the extreme integer and jitter; the clamp keeps Φ⁻¹(u) finite."""
    ends = torch.tensor([[0, 2 ** 30 - 1]])  # (1, 2): the smallest and the largest 30-bit integer
    monkeypatch.setattr(torch, "randint", lambda low, high, size, **kw: torch.zeros(size, dtype=torch.long))
    for v in (0.0, 1.0 - 2.0 ** -53):  # torch.rand's smallest and largest float64
        monkeypatch.setattr(torch, "rand", lambda size, v=v, **kw: torch.full(size, v, dtype=torch.float64))
        u = shifted_sobol_uniform(ends)
        assert ((u > 0) & (u < 1)).all() and torch.isfinite(torch.special.ndtri(u)).all()


def test_iid_batches_are_far_from_even():
    """The contrast the net removes: 256 iid points leave about a third of 256 equal cells empty."""
    torch.manual_seed(0)
    assert cells(torch.rand(256, 2), 4, 4).unique().numel() < 200


def test_each_point_of_a_quasi_random_batch_is_standard_normal():
    torch.manual_seed(1)
    q = QuasiRandomNormal(standard_normal(16))
    z = q.sample((20_000,))  # 20,000 batches of 16
    assert z.shape == (20_000, 16, 2)
    for i in (0, 5, 15):
        for d in (0, 1):
            u = torch.special.ndtr(z[:, i, d].double())
            for p in (0.05, 0.5, 0.95):
                assert (u <= p).double().mean().item() == pytest.approx(p, abs=0.01)
    assert z[:, 0, 0].mean().item() == pytest.approx(0.0, abs=0.03)
    assert z[:, 0, 0].var().item() == pytest.approx(1.0, abs=0.03)
    assert torch.equal(q.log_prob(z[0]), standard_normal(16).log_prob(z[0]))


def test_batch_means_are_unbiased_and_far_less_variable():
    """E cos(z1) cos(z2) = exp(-1); a quasi-random batch mean of 256 has about a fifth of an iid one's spread."""
    torch.manual_seed(2)
    f = lambda z: torch.cos(z[..., 0]) * torch.cos(z[..., 1])  # noqa: E731
    qmc = f(QuasiRandomNormal(standard_normal(256)).sample((2000,)).double()).mean(-1)
    iid = f(standard_normal(256).sample((2000,)).double()).mean(-1)
    assert qmc.mean().item() == pytest.approx(math.exp(-1), abs=4 * qmc.std().item() / math.sqrt(2000))
    assert qmc.std().item() < 0.3 * iid.std().item()


def test_any_event_shape_and_batch_size():
    """Nothing assumes 2-D data: an image-shaped latent, a batch that is not a power of two."""
    torch.manual_seed(3)
    z = QuasiRandomNormal(standard_normal(10, (3, 4, 4))).sample()
    assert z.shape == (10, 3, 4, 4) and torch.isfinite(z).all()
    assert z.flatten(1).std(0).mean().item() == pytest.approx(1.0, abs=0.35)


def test_the_model_draws_its_pairs_from_one_net():
    """With antithetic pairs the batch repeats its first half, itself a net of B/2 points."""
    g = MLPGenerator((2,), width=16, depth=1)
    law = PowerLawSigma(0.1, 10.0, 1.0)
    torch.manual_seed(4)
    z = poutine.trace(ForwardDiffusion(g, law, antithetic=True, quasi_random=True)).get_trace(128).nodes["z"]["value"]
    assert torch.equal(z[:64], z[64:])
    u = torch.special.ndtr(z[:64].double())
    assert torch.equal(cells(u, 3, 3).sort().values, torch.arange(64))
    model = ForwardDiffusion(g, law, quasi_random=True)
    z = poutine.trace(model).get_trace(64).nodes["z"]["value"]
    assert torch.equal(cells(torch.special.ndtr(z.double()), 2, 4).sort().values, torch.arange(64))
    model.quasi_random = False  # switched on the same model (benchmarks/stratified_sigma.py --draws z): iid z again
    z = poutine.trace(model).get_trace(64).nodes["z"]["value"]
    assert cells(torch.special.ndtr(z.double()), 2, 4).unique().numel() < 64


def test_draws_are_reproducible_from_the_seed():
    q = QuasiRandomNormal(standard_normal(32))
    torch.manual_seed(5)
    a = q.sample()
    torch.manual_seed(5)
    assert torch.equal(a, q.sample())
    assert not torch.equal(a, q.sample())


def test_bad_quasi_random_laws_are_rejected():
    with pytest.raises(ValueError, match="standard Normal"):
        QuasiRandomNormal(dist.Normal(torch.ones(()), 1.0).expand((8, 2)).to_event(1))
    with pytest.raises(ValueError, match="one batch dimension"):
        QuasiRandomNormal(dist.Normal(torch.zeros(()), 1.0).expand((2, 8, 2)).to_event(1))
    with pytest.raises(ValueError, match="cannot be expanded"):
        QuasiRandomNormal(standard_normal(8)).expand((2, 8))
    with pytest.raises(ValueError, match="quasi_random must be true or false"):
        ForwardDiffusion(MLPGenerator((2,), width=8, depth=1), PowerLawSigma(0.1, 10.0, 1.0), quasi_random="yes")


def test_the_plain_torch_twin_draws_quasi_random_z_too():
    g = MLPGenerator((2,), width=16, depth=1)
    law = PowerLawSigma(0.1, 10.0, 1.0)
    step = TorchVarDiUStep(g, MLPGenerator((2,), width=8, depth=1), None, law, None, batch_size=64,
                           quasi_random=True)  # a stand-in guide: only the draws are used
    torch.manual_seed(7)
    z, _, _ = step.draws(0)
    assert torch.equal(z[:32], z[32:])
    assert torch.equal(cells(torch.special.ndtr(z[:32].double()), 2, 3).sort().values, torch.arange(32))
    iid = TorchVarDiUStep(g, MLPGenerator((2,), width=8, depth=1), None, law, None, batch_size=64)
    assert cells(torch.special.ndtr(iid.draws(0)[0][:32].double()), 2, 3).unique().numel() < 32
