import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from vardiu_pyro.guides import DiagonalGaussianGuide, pyro_guide
from vardiu_pyro.models import ForwardDiffusion, MLPGenerator, PowerLawSigma
from vardiu_pyro.plates import BatchPlates


def program(plates, size):
    with plates(size):
        return pyro.sample("x", dist.Normal(torch.zeros(size), 1.0))


def test_a_plate_is_kept_for_its_size_and_built_anew_for_another():
    plates = BatchPlates("batch", dim=-1)
    first = plates(8)
    assert plates(8) is first
    assert plates(16) is not first and plates(16).size == 16
    assert plates(8).size == 8


@pytest.mark.parametrize("sizes", [(8, 8, 8), (8, 16, 8)])
def test_kept_plates_give_every_trace_the_same_sites_and_frames(sizes):
    plates = BatchPlates("batch", dim=-1)
    for size in sizes:
        tr = poutine.trace(program).get_trace(plates, size)
        assert [n for n in tr.nodes if not n.startswith("_")] == ["x"]  # the plate's own subsample site in none
        frames = tr.nodes["x"]["cond_indep_stack"]
        assert [(f.name, f.size, f.dim) for f in frames] == [("batch", size, -1)]
        assert tr.nodes["x"]["value"].shape == (size,)


def test_a_kept_plate_still_checks_batch_shapes():
    plates = BatchPlates("batch", dim=-1)
    plates(8)
    with pytest.raises(ValueError, match="[Ss]hape mismatch"):
        with poutine.trace(), plates(8):
            pyro.sample("y", dist.Normal(torch.zeros(4), 1.0))


def test_model_and_guide_traces_are_the_same_at_every_call():
    g = MLPGenerator((2,), width=16, depth=1)
    model = ForwardDiffusion(g, PowerLawSigma(0.1, 20.0, 1.0), antithetic=True)
    guide = pyro_guide(DiagonalGaussianGuide((2,), (2,), width=16, depth=1))
    for size in (8, 8, 4, 8):
        mt = poutine.trace(model).get_trace(size)
        assert [n for n in mt.nodes if not n.startswith("_")] == ["z", "sigma", "x0", "x_t"]
        gt = poutine.trace(guide).get_trace(mt.nodes["x_t"]["value"], mt.nodes["sigma"]["value"])
        assert [n for n in gt.nodes if not n.startswith("_")] == ["z"]
        for tr, site in ((mt, "z"), (mt, "x_t"), (gt, "z")):
            assert [(f.name, f.size) for f in tr.nodes[site]["cond_indep_stack"]] == [("batch", size)]
        mt.compute_log_prob()
        assert mt.nodes["x_t"]["log_prob"].shape == (size,)
