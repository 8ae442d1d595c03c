import math

import pytest
import torch

from vardiu_pyro.evaluation import Evaluator, metric_lines
from vardiu_pyro.metrics import MeanLogDensity, ModesCovered, MultiBandwidthMMD, kernel_sums, mmd_squared
from vardiu_pyro.models import mog40

BANDWIDTHS = [0.25, 0.5, 1.0, 2.0, 4.0]


def direct_mmd(x, y, h):
    """The definition, in float64, one full kernel matrix per term."""
    x, y = x.double(), y.double()

    def k(a, b):
        return torch.exp(-torch.cdist(a, b).square() / (2 * h * h)).mean()

    return k(x, x) + k(y, y) - 2 * k(x, y)


@pytest.mark.parametrize("dim", [2, 3, 40])
def test_mmd_equals_the_direct_computation(dim):
    x = torch.randn(700, dim) * 3
    y = torch.randn(500, dim) * 3 + 0.5
    ours = mmd_squared(x, y, BANDWIDTHS, chunk_size=64)
    ref = torch.stack([direct_mmd(x, y, h) for h in BANDWIDTHS])
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-9)


def test_symmetric_kernel_sums_equal_full_sums():
    x = torch.randn(301, 2) * 5
    assert torch.allclose(kernel_sums(x, x, BANDWIDTHS, 37, symmetric=True),
                          kernel_sums(x, x, BANDWIDTHS, 37), rtol=1e-10)


def test_metric_is_zero_for_identical_sets_and_positive_otherwise():
    x = torch.randn(1000, 2) * 4
    m = MultiBandwidthMMD()
    m.update(x, real=True)
    m.update(x, real=False)
    assert m.compute().item() == pytest.approx(0.0, abs=1e-9)
    m.reset()
    m.update(x, real=True)
    m.update(x + 1.0, real=False)
    assert m.compute().item() > 1e-3


def test_metric_accumulates_over_updates_and_keeps_real_features():
    x, y = torch.randn(900, 2) * 3, torch.randn(600, 2) * 3 + 1
    whole = MultiBandwidthMMD()
    whole.update(y, real=True)
    whole.update(x, real=False)
    parts = MultiBandwidthMMD(reset_real_features=False)
    for chunk in y.split(250):
        parts.update(chunk, real=True)
    for chunk in x.split(200):
        parts.update(chunk, real=False)
    assert parts.compute().item() == pytest.approx(whole.compute().item(), rel=1e-6)
    expected = torch.stack([direct_mmd(x, y, h) for h in BANDWIDTHS]).mean().item()
    assert whole.compute().item() == pytest.approx(expected, rel=1e-4)
    # a reset keeps the reference set (and its cached term) and forgets the model samples
    parts.reset()
    parts.update(x[:300], real=False)
    expected = torch.stack([direct_mmd(x[:300], y, h) for h in BANDWIDTHS]).mean().item()
    assert parts.compute().item() == pytest.approx(expected, rel=1e-4)


def test_metric_refuses_forward_and_recomputes_its_cached_reference_term_after_a_move():
    x, y = torch.randn(300, 2) * 3, torch.randn(200, 2) * 3 + 1
    m = MultiBandwidthMMD(reset_real_features=False)
    m.update(y, real=True)
    with pytest.raises(TypeError, match="update"):
        m(x, real=False)  # torchmetrics' forward would have merged a second copy of the reference set into it
    assert sum(len(t) for t in m.real) == 200
    m.update(x, real=False)
    value = m.compute().item()
    m.set_dtype(torch.float64)  # moves the states (as .to(device) would); the cached term was computed in float32
    assert m._real_cache is None and m.real[0].dtype == torch.float64
    m.reset()  # keeps the reference set
    m.update(x.double(), real=False)
    assert m.compute().item() == pytest.approx(value, rel=1e-5) and m._real_cache[1].dtype == torch.float64


def test_metric_rejects_bad_bandwidths():
    with pytest.raises(ValueError):
        MultiBandwidthMMD(bandwidths=[1.0, -2.0])


def test_mean_log_density_and_non_finite_samples():
    t = mog40()
    x = t.sample(500)
    m = MeanLogDensity(t.log_prob)
    m.update(x[:200])
    m.update(x[200:])
    assert m.compute().item() == pytest.approx(t.log_prob(x).mean().item(), rel=1e-6)
    m.update(torch.full((1, 2), float("nan")))
    assert m.compute().item() == -math.inf


def test_modes_covered():
    t = mog40()
    x = t.sample(8000)
    m = ModesCovered(t)
    m.update(x)
    assert m.compute().item() == 40
    m.reset()
    # samples of only 10 components, plus a heap of samples far from every mode
    comps = t.locs[:10].repeat(100, 1) + 0.1 * torch.randn(1000, 2)
    m.update(torch.cat([comps, torch.full((1000, 2), 500.0)]))
    assert m.compute().item() == 10


def test_evaluator_scores_the_target_itself_near_the_floor():
    t = mog40()
    ev = Evaluator(t, num_samples=3000)
    torch.manual_seed(5)
    scores = ev.score(t.sample(3000))
    assert scores["log_mmd"] < -7.0  # floor at n = 3000 is log(~2/3000) ≈ -7.3
    assert scores["modes_covered"] == 40
    assert scores["log_density"] == pytest.approx(ev.reference_metrics["log_density"], abs=0.1)
    shifted = ev.score(t.sample(3000) + 3.0)
    assert shifted["log_mmd"] > -5.0
    floor = ev.reference_metrics["log_mmd"]  # more target samples, independent of the reference set
    assert floor == pytest.approx(scores["log_mmd"], abs=0.5) and ev.reference_metrics["modes_covered"] == 40
    lines = metric_lines({**scores, "reference": ev.reference_metrics})
    assert f"(two independent target sample sets: {floor:.3f})" in lines[0]
    assert "two independent" not in metric_lines({**scores, "reference": {}})[0]  # a summary from before the floor
