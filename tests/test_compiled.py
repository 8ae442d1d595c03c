"""The compiled step (``vardiu_pyro/compiled.py``, ``objective.compile=true``) against the eager one: the same bound,
the same draws and the same gradients, at several points of the schedules, for every way of drawing and every
guide family; and what cannot be compiled says so."""

import math

import pyro
import pytest
import torch
from torch import nn

from tests.configs import config
from tests.markers import needs_cxx
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.compiled import CompiledELBO, CompileError, GradientGraph
from vardiu_pyro.objectives.vardiu_elbo import VarDiUELBO
from vardiu_pyro.validation import validate_config

SMALL = ["device=cpu", "precision=float32", "trainer.iterations=1000", "trainer.batch_size=32",
         "generator.width=24", "generator.depth=2", "guide.width=24", "guide.depth=2"]


def objective_of(*overrides, device: str = "cpu"):
    cfg = config(*(o for o in SMALL if not o.startswith("device=")), f"device={device}", *overrides)
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    return build_objective(cfg, build_problem(cfg, torch.device(device)))


def loss_and_grads(elbo, objective, seed: int, iteration: float):
    """One ``loss_and_grads`` from torch's state ``seed``: the bound, every gradient, and the next draw after it."""
    for net in objective.networks.values():
        net.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # every device's generator
    value = elbo.loss_and_grads(objective.svi.model, objective.svi.guide, objective.batch_size, iteration=iteration)
    grads = [p.grad.clone() for net in objective.networks.values() for p in net.parameters()]
    return value, grads, torch.rand((), device=grads[0].device)


def assert_same_step(eager, compiled, objective, seed, iteration, rtol):
    value_e, grads_e, next_e = loss_and_grads(eager, objective, seed, iteration)
    value_c, grads_c, next_c = loss_and_grads(compiled, objective, seed, iteration)
    assert value_c == pytest.approx(value_e, rel=rtol, abs=rtol)
    for g_e, g_c in zip(grads_e, grads_c, strict=True):
        torch.testing.assert_close(g_c, g_e, rtol=rtol, atol=rtol * float(g_e.abs().max()))
    assert next_c == next_e  # the compiled step drew as many numbers, from the same stream


@pytest.mark.parametrize("overrides", [
    [],  # the default: U_3, antithetic pairs, ramped σ law and weight
    ["sigma=paper", "objective.importance_samples=0"],  # the published recipe's bound and curriculum
    ["objective.antithetic=false"],
    ["objective.quasi_random=true"],
    ["sigma.stratified=true"],
    ["sigma=lognormal"],
    ["guide=mixture"],
    ["guide=flow", "guide.coupling=affine"],
    ["guide=full_gaussian"],
    ["teacher=empirical"],
], ids=lambda o: " ".join(o) or "default")
def test_the_traced_step_is_the_eager_step(overrides):
    """The traced graph (run op by op: the tracing is what could freeze a value that must change) gives the eager
    step's bound and gradients from the same random state, at iterations where the ramps differ, and traces once."""
    objective = objective_of(*overrides)
    eager = objective.elbo
    compiled = CompiledELBO(eager, objective.networks, compile=False)
    for seed, iteration in ((1, 0), (2, 137.5), (3, 640), (4, 999)):
        assert_same_step(eager, compiled, objective, seed, iteration, rtol=1e-5)
    assert len(compiled.graphs) == 1


@needs_cxx
@pytest.mark.parametrize("guide", ["gaussian", "mixture", "full_gaussian", "flow"])
def test_the_compiled_step_from_the_configuration_is_the_eager_step(guide):
    """``objective.compile=true`` wraps the bound in a ``CompiledELBO`` compiled by inductor, whose steps give the
    eager bound and gradients (float32: to rounding) from the same random state, and the optimiser steps as before;
    for every guide family (the flow with its affine coupling)."""
    objective = objective_of("objective.compile=true", f"guide={guide}",
                             *(["guide.coupling=affine", "guide.hidden=16", "guide.features=8"] if guide == "flow" else []))
    assert isinstance(objective.elbo, CompiledELBO) and isinstance(objective.elbo.elbo, VarDiUELBO)
    for seed, iteration in ((1, 0), (2, 500)):
        assert_same_step(objective.elbo.elbo, objective.elbo, objective, seed, iteration, rtol=1e-4)
    before = [p.detach().clone() for p in objective.generator.parameters()]
    out = objective.step(10)
    assert math.isfinite(out["loss"]) and not out["skipped"]
    assert any(not torch.equal(a, b) for a, b in zip(before, objective.generator.parameters()))
    assert objective.elbo.last_terms is None  # the trace's terms are not kept


def test_a_step_that_reads_a_value_back_into_python_cannot_be_compiled():
    net = nn.Linear(2, 1)

    def loss_fn(iteration):
        loss = net(torch.ones(1, 2)).sum()
        return loss if loss > 0 else -loss  # a Python decision on a computed value: the trace would freeze it

    with pytest.raises(RuntimeError, match="cannot be compiled"):
        GradientGraph(loss_fn, {"net": net}, compile=False)(0)


class _NaNELBO(pyro.infer.ELBO):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def _get_trace(self, *args):
        raise NotImplementedError

    def differentiable_loss(self, model, guide, *args, iteration=0):
        return self.net(torch.ones(1, 2)).sum() * (iteration - iteration.clamp(max=5.0)) / 0.0  # ±inf above 5, else NaN


def test_a_non_finite_loss_leaves_the_gradients_unset():
    """As the eager ELBO, a compiled one sets no gradient when the loss is not finite (the optimiser then skips)."""
    net = nn.Linear(2, 1)
    elbo = CompiledELBO(_NaNELBO(net), {"net": net}, compile=False)
    assert math.isinf(elbo.loss_and_grads(None, None, iteration=6))
    assert all(p.grad is None for p in net.parameters())
    assert math.isnan(elbo.loss_and_grads(None, None, iteration=4))  # 0/0
    assert all(p.grad is None for p in net.parameters())
    assert len(elbo.graphs) == 1


def test_graphs_are_keyed_by_the_step_arguments():
    objective = objective_of()
    compiled = CompiledELBO(objective.elbo, objective.networks, compile=False)
    model, guide = objective.svi.model, objective.svi.guide
    compiled.loss_and_grads(model, guide, 32, iteration=0)
    compiled.loss_and_grads(model, guide, 32, iteration=3)
    compiled.loss_and_grads(model, guide, 16, iteration=3)
    assert len(compiled.graphs) == 2
    with pytest.raises(TypeError, match="hashable"):
        compiled.loss_and_grads(model, guide, [32], iteration=0)


def test_the_flow_with_its_affine_coupling_may_be_compiled():
    """The configuration check refuses only the flow's splines (``tests/test_reliability.py``, ``BAD_VALUES``)."""
    validate_config(config("objective.compile=true", "guide=flow", "guide.coupling=affine"))


def test_the_flow_splines_cannot_be_traced():
    """Pyro's spline asserts on its values in Python: the first step says it cannot be compiled."""
    objective = objective_of("guide=flow")
    compiled = CompiledELBO(objective.elbo, objective.networks, compile=False)
    with pytest.raises(RuntimeError, match="cannot be compiled"):
        compiled.loss_and_grads(objective.svi.model, objective.svi.guide, objective.batch_size, iteration=0)


def test_a_compiler_failure_is_one_error_that_names_the_way_out(monkeypatch):
    """Where inductor cannot build (no C++ compiler), the first step raises a ``CompileError`` saying so, which the
    command line prints as one line; the graph is not kept, so a later call tries again."""
    def failing_compile(graph, **kwargs):
        def run(*args):
            raise OSError("no C++ compiler found")
        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    net = nn.Linear(2, 1)
    graph = GradientGraph(lambda iteration: net(torch.ones(1, 2)).sum() * iteration, {"net": net})
    with pytest.raises(CompileError, match=r"OSError: no C\+\+ compiler found\) \(set objective.compile=false"):
        graph(1.0)  # not a compiler error of inductor's: the message does not blame the compiler
    assert graph._graph is None


def test_the_traced_step_with_a_learned_teacher_is_the_eager_step():
    """A diffusers denoiser as the teacher (its score only: the bound has no teacher density) traces as the exact
    teacher does."""
    from tests.test_teachers import tiny_denoiser
    from vardiu_pyro.models import LearnedTeacher

    objective = objective_of()
    objective.elbo.teacher = LearnedTeacher(tiny_denoiser())
    compiled = CompiledELBO(objective.elbo, objective.networks, compile=False)
    for seed, iteration in ((1, 0), (2, 640)):
        assert_same_step(objective.elbo, compiled, objective, seed, iteration, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
@pytest.mark.parametrize("compile", [False, True], ids=["traced", "compiled"])
def test_the_compiled_step_on_cuda_is_the_eager_step(compile):
    """On the GPU (``benchmarks/gpu_check.sh`` runs ``-k cuda``): the traced graph, and the graph inductor compiles
    (Triton), give the eager step's bound and gradients from the same random state."""
    objective = objective_of(device="cuda")
    compiled = CompiledELBO(objective.elbo, objective.networks, compile=compile)
    for seed, iteration in ((1, 0), (2, 640)):
        assert_same_step(objective.elbo, compiled, objective, seed, iteration, rtol=1e-4)
