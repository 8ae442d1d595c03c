"""``seeded``: draws from a seed of their own, the caller's random state untouched, no other device seeded."""

import pytest
import torch

from vardiu_pyro.seeding import seeded


def test_seeded_draws_are_those_of_the_seed():
    torch.manual_seed(5)
    expected = torch.randn(6)
    torch.manual_seed(123)
    with seeded(5):
        got = torch.randn(6)
    assert torch.equal(got, expected)


def test_seeded_leaves_the_callers_random_state_as_it_was_even_when_the_body_raises():
    torch.manual_seed(3)
    before = torch.get_rng_state()
    with seeded(0):
        torch.randn(10)
    assert torch.equal(torch.get_rng_state(), before)
    with pytest.raises(RuntimeError), seeded(0):
        torch.randn(10)
        raise RuntimeError("inside")
    assert torch.equal(torch.get_rng_state(), before)


def test_a_cpu_draw_seeds_no_cuda_device(monkeypatch):
    """``torch.manual_seed`` would seed every CUDA device (or queue that seed until CUDA starts), which a CPU-only fork
    does not undo."""
    calls = []
    for name in ("manual_seed", "manual_seed_all"):
        monkeypatch.setattr(torch.cuda, name, lambda seed, name=name: calls.append((name, seed)))
    with seeded(7, "cpu"):
        torch.randn(3)
    assert calls == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_a_cuda_draw_is_that_of_the_seed_and_leaves_the_cuda_state_as_it_was():
    torch.cuda.manual_seed(5)
    expected = torch.randn(6, device="cuda")
    torch.cuda.manual_seed(11)
    before = torch.cuda.get_rng_state()
    with seeded(5, "cuda"):
        got = torch.randn(6, device="cuda")
    assert torch.equal(got, expected)
    assert torch.equal(torch.cuda.get_rng_state(), before)
