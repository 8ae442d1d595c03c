import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from vardiu_pyro.models import ForwardDiffusion, MLPGenerator, PowerLawSigma
from vardiu_pyro.models.antithetic import AntitheticPairs, generate_once_per_pair


def trace(model, *args, **kwargs):
    return poutine.trace(model).get_trace(*args, **kwargs)


@pytest.mark.parametrize("data_shape", [(2,), (5,), (1, 4, 4)])
@pytest.mark.parametrize("antithetic", [False, True])
def test_model_sites_and_shapes(data_shape, antithetic):
    g = MLPGenerator(data_shape, latent_dim=3, width=16, depth=1)
    model = ForwardDiffusion(g, PowerLawSigma(0.1, 20.0, 1.0), antithetic=antithetic)
    tr = trace(model, 8)
    n = tr.nodes
    assert n["z"]["value"].shape == (8, 3)
    assert n["sigma"]["value"].shape == (8,)
    assert n["x0"]["value"].shape == (8, *data_shape)
    assert n["x_t"]["value"].shape == (8, *data_shape)
    tr.compute_log_prob()
    for site in ("z", "sigma", "x_t"):
        assert n[site]["log_prob"].shape == (8,)
    # x_t is a pathwise draw: it carries the generator's gradient
    assert n["x_t"]["value"].requires_grad
    # the generator is registered with Pyro
    assert any(k.startswith("generator$$$") for k in pyro.get_param_store().keys())


def test_antithetic_pairs_repeat_z_sigma_and_mirror_eps():
    g = MLPGenerator((2,), width=16, depth=1)
    tr = trace(ForwardDiffusion(g, PowerLawSigma(0.1, 20.0, 1.0), antithetic=True), 6)
    z, s = tr.nodes["z"]["value"], tr.nodes["sigma"]["value"]
    eps = (tr.nodes["x_t"]["value"] - tr.nodes["x0"]["value"]) / s[:, None]
    assert torch.equal(z[:3], z[3:]) and torch.equal(s[:3], s[3:])
    assert torch.allclose(eps[:3], -eps[3:], atol=1e-5)
    assert not torch.equal(z[0], z[1])


def test_x_t_log_prob_is_the_gaussian_likelihood():
    g = MLPGenerator((3,), width=16, depth=1)
    tr = trace(ForwardDiffusion(g, PowerLawSigma(0.1, 20.0, 1.0), antithetic=True), 4)
    n = tr.nodes
    x0, x_t, s = n["x0"]["value"], n["x_t"]["value"], n["sigma"]["value"]
    expected = dist.Normal(x0, s[:, None]).to_event(1).log_prob(x_t)
    assert torch.allclose(n["x_t"]["fn"].log_prob(x_t), expected, atol=1e-5)


def test_odd_batch_with_antithetic_pairs_is_an_error():
    g = MLPGenerator((2,), width=16, depth=1)
    with pytest.raises(ValueError, match="even"):
        ForwardDiffusion(g, PowerLawSigma(0.1, 20.0, 1.0), antithetic=True)(5)


def test_antithetic_pairs_are_marginally_exact():
    base = dist.Normal(torch.zeros(4000, 1), 2.0).to_event(1)
    x = AntitheticPairs(base, sign=-1.0).sample((50,))
    assert x.shape == (50, 4000, 1)
    assert torch.equal(x[:, :2000], -x[:, 2000:])
    assert x.std().item() == pytest.approx(2.0, rel=0.02)
    assert torch.equal(AntitheticPairs(base, -1.0).log_prob(x), base.log_prob(x))


def test_mirrored_normal_rsample_is_marginally_exact_and_differentiable():
    """The Normal fast path: x = μ + σ [ε, -ε]; each half has the base's own law, even where σ differs between halves."""
    loc = torch.linspace(-3.0, 3.0, 8).repeat_interleave(500).unsqueeze(-1).requires_grad_()  # (4000, 1)
    scale = torch.cat([torch.full((2000, 1), 0.5), torch.full((2000, 1), 2.0)])
    x = AntitheticPairs(dist.Normal(loc, scale).to_event(1), sign=-1.0).rsample((3,))
    assert x.shape == (3, 4000, 1)
    eps = (x - loc) / scale
    assert torch.allclose(eps[:, :2000], -eps[:, 2000:], atol=1e-6)
    assert eps[:, :2000].std().item() == pytest.approx(1.0, rel=0.05)
    assert (x[:, 2000:] - loc[2000:]).std().item() == pytest.approx(2.0, rel=0.05)  # its own σ, not its partner's
    x.sum().backward()
    assert torch.equal(loc.grad, torch.full_like(loc, 3.0))


class RowCounter(torch.nn.Module):
    """A generator that records how many rows each call saw."""

    def __init__(self, generator):
        super().__init__()
        self.generator, self.rows = generator, []
        self.latent_shape, self.data_shape = generator.latent_shape, generator.data_shape

    def forward(self, z):
        self.rows.append(z.shape[0])
        return self.generator(z)


def test_paired_latents_run_the_generator_once_per_pair_with_the_same_values_and_gradients():
    torch.manual_seed(0)
    g = MLPGenerator((3,), latent_dim=2, width=16, depth=2).double()
    counter = RowCounter(g)
    half = torch.randn(5, 2, dtype=torch.float64)
    z = torch.cat([half, half])
    x0 = generate_once_per_pair(counter, z)
    assert counter.rows == [5]
    assert torch.allclose(x0, g(z), rtol=1e-12, atol=1e-12)
    weights = torch.randn(10, 3, dtype=torch.float64)  # a loss that treats the partners differently
    grads = torch.autograd.grad((weights * x0).sum(), list(g.parameters()))
    expected = torch.autograd.grad((weights * g(z)).sum(), list(g.parameters()))
    for a, b in zip(grads, expected):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_unpaired_latents_are_generated_whole():
    """z conditioned to values whose halves differ (e.g. by an analysis tool): every row goes through g."""
    g = MLPGenerator((2,), width=16, depth=1)
    counter = RowCounter(g)
    z = torch.randn(6, 2)
    assert torch.equal(generate_once_per_pair(counter, z), g(z)) and counter.rows == [6]
    model = ForwardDiffusion(counter, PowerLawSigma(0.1, 20.0, 1.0), antithetic=True)
    counter.rows.clear()
    tr = trace(poutine.condition(model, data={"z": z}), 6)
    assert counter.rows == [6] and torch.equal(tr.nodes["x0"]["value"], g(z))
    counter.rows.clear()
    trace(model, 6)  # the model's own paired draws: half the rows
    assert counter.rows == [3]
