"""Diff-Instruct: closed-form gradient with an exact fake score, one-loop integration, checkpoints."""

import copy
import json
import subprocess
import sys

import pytest
import torch
from pyro import poutine

from tests.linear_gaussian import GaussianTeacher, LinearGenerator, diffusive_kl, make_problem
from tests.test_fit import TINY, config
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.checkpoint import load_checkpoint, save_checkpoint
from vardiu_pyro.models import FixedSigma, ForwardDiffusion, PowerWeight
from vardiu_pyro.objectives import DiffInstruct, DiffInstructLoss
from vardiu_pyro.objectives.diff_instruct import no_guide

SIGMA = 0.8


def student_marginal(gen: LinearGenerator) -> GaussianTeacher:
    """The student's exact noised score: x0 = A z + b  =>  p_θ^σ = N(b, A Aᵀ + σ² I)."""
    A, b = gen.A.detach(), gen.b.detach()
    return GaussianTeacher(b.clone(), A @ A.T)


def gradient_estimates(fake_of, repeats=40, batch=4096, antithetic=False):
    A, b, mu, S = make_problem()
    gen = LinearGenerator(A, b)
    loss = DiffInstructLoss(GaussianTeacher(mu, S), fake_of(gen), PowerWeight(SIGMA, 2.0))  # w(σ) = 1 at σ = SIGMA
    model = ForwardDiffusion(gen, FixedSigma(SIGMA).double(), antithetic=antithetic)
    A_ref, b_ref = A.clone().requires_grad_(), b.clone().requires_grad_()
    ref = torch.cat([g.flatten() for g in torch.autograd.grad(diffusive_kl(A_ref, b_ref, mu, S, SIGMA), [A_ref, b_ref])])
    est = []
    for _ in range(repeats):
        value = loss.differentiable_loss(model, no_guide, batch)
        est.append(torch.cat([g.flatten() for g in torch.autograd.grad(value, [gen.A, gen.b])]))
    est = torch.stack(est)
    return est.mean(0), est.std(0) / repeats**0.5, ref


@pytest.mark.parametrize("antithetic", [False, True])
def test_exact_fake_score_gives_the_closed_form_diffusive_kl_gradient(antithetic):
    """z-test over independent estimates: with s_fake = ∇ log p_θ^σ the estimator is unbiased."""
    mean, se, ref = gradient_estimates(student_marginal, antithetic=antithetic)
    assert ((mean - ref).abs() < 4.5 * se + 1e-9).all(), (mean, ref, se)
    assert (se < 0.1 * ref.abs().max()).all()  # precise enough that a factor of 2 or a sign would fail


def test_a_wrong_fake_score_is_detected():
    """The same z-test rejects a fake score that is off (here: the student's covariance doubled)."""
    def wrong(gen):
        fake = student_marginal(gen)
        fake.S.mul_(2.0)
        return fake

    mean, se, ref = gradient_estimates(wrong)
    assert ((mean - ref).abs() > 4.5 * se).any()


def test_loss_value_is_the_weighted_fisher_divergence_of_fake_and_teacher(float64):
    A, b, mu, S = make_problem()
    gen = LinearGenerator(A, b)
    teacher = GaussianTeacher(mu, S)
    loss = DiffInstructLoss(teacher, teacher, PowerWeight(SIGMA, 2.0))
    model = ForwardDiffusion(gen, FixedSigma(SIGMA).double())
    assert loss.loss(model, no_guide, 64) == 0.0  # fake = teacher: nothing to learn, zero gradient
    value = loss.differentiable_loss(model, no_guide, 64)
    assert all(g.abs().max() == 0 for g in torch.autograd.grad(value, [gen.A, gen.b]))


# ---------------------------------------------------------------- the objective in the shared loop
def di_objective(*overrides):
    cfg = config(*TINY, "objective=diff_instruct", "objective.fake_score.width=32", *overrides)
    problem = build_problem(cfg, torch.device("cpu"))
    return cfg, problem, build_objective(cfg, problem)


def test_built_from_the_same_problem_as_vardiu():
    cfg, problem, objective = di_objective("objective.inner_steps=3")
    assert isinstance(objective, DiffInstruct)
    assert objective.generator is problem.generator
    assert objective.model.sigma_law is problem.sigma_law and objective.loss.weight is problem.weight
    assert objective.loss.teacher is problem.teacher and objective.batch_size == problem.batch_size
    assert objective.model.antithetic is True
    assert set(objective.networks) == {"generator", "fake_score"}
    # the generator sees z ~ N(0, I) of its latent shape in training, exactly as in evaluation
    trace = poutine.trace(objective.model).get_trace(8)
    z = trace.nodes["z"]["value"]
    assert z.shape == (8, *problem.generator.latent_shape)
    assert torch.equal(trace.nodes["x0"]["value"], problem.generator(z))


def test_step_trains_the_fake_score_k_times_and_the_generator_once():
    k = 3
    _, problem, objective = di_objective(f"objective.inner_steps={k}")
    gen_before = copy.deepcopy(objective.generator.state_dict())
    fake_before = copy.deepcopy(objective.fake_score.state_dict())
    out = objective.step(0)
    assert {"loss", "fake_dsm"} <= set(out) and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert objective.fake_optim.num_steps == k and objective.generator_optim.num_steps == 1
    assert objective.fake_optim.iterations == k * objective.generator_optim.iterations  # same clock
    for before, net in ((gen_before, objective.generator), (fake_before, objective.fake_score)):
        assert any(not torch.equal(before[n], p) for n, p in net.state_dict().items())


def test_generator_gradient_is_w_times_score_difference_through_x0():
    """The SVI step's generator gradient equals a hand-written E[w (s_fake - s_d) · ∂x0/∂θ] on the same draws."""
    _, problem, objective = di_objective()
    gen = objective.generator
    params = list(gen.parameters())
    value = objective.loss.differentiable_loss(objective.model, no_guide, 64, iteration=5)
    grads = torch.autograd.grad(value, params, retain_graph=True)  # the manual loss below reuses x0's graph
    t = objective.loss.last_terms
    x = t.x_t.detach()
    with torch.no_grad():
        diff = objective.fake_score.score(x, t.sigma) - problem.teacher.score(x, t.sigma)
    manual = (problem.weight(t.sigma, 5)[:, None] * diff * t.x0).sum(-1).mean()
    manual_grads = torch.autograd.grad(manual, params)
    for g, m in zip(grads, manual_grads):
        assert torch.allclose(g, m, rtol=1e-5, atol=1e-7)
    assert any(g.abs().sum() > 0 for g in grads)


def test_a_non_finite_teacher_score_skips_the_generator_step():
    """The loop's non-finite guard works for Diff-Instruct too: the step is reported as skipped and
    the generator and its optimiser are left as they were (the teacher's 2nd score call is NaN)."""
    _, _, objective = di_objective("objective.inner_steps=1", "teacher._target_=tests.faults.FlakyTeacher",
                                   "+teacher.nan_scores=[2]")
    assert objective.step(0)["skipped"] is False
    before = copy.deepcopy(objective.generator.state_dict())
    out = objective.step(1)
    assert out["skipped"] is True and objective.generator_optim.num_steps == 1
    assert all(torch.equal(before[n], p) for n, p in objective.generator.state_dict().items())
    assert objective.step(2)["skipped"] is False and objective.generator_optim.num_steps == 2


def test_checkpoint_holds_the_fake_score_and_its_optimiser(tmp_path):
    _, _, objective = di_objective("objective.inner_steps=2")
    objective.step(0)
    path = save_checkpoint(tmp_path / "c.safetensors", objective.state_dict())
    state = load_checkpoint(path)
    assert set(state["networks"]) == {"generator", "fake_score"}
    assert set(state["optim"]) == {"generator", "fake_score"} and state["optim"]["fake_score"]["num_steps"] == 2

    _, _, fresh = di_objective("objective.inner_steps=2", "seed=5")
    fresh.load_state_dict(state)
    for a, b in zip(fresh.fake_score.parameters(), objective.fake_score.parameters()):
        assert torch.equal(a, b)
    assert fresh.fake_optim.num_steps == 2


def test_inner_steps_must_be_positive():
    with pytest.raises(ValueError, match="inner_steps"):
        di_objective("objective.inner_steps=0")


def test_cli_fit_writes_the_same_files_as_vardiu(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", *TINY, "device=cpu", f"hydra.run.dir={run}",
                           "objective=diff_instruct", "objective.inner_steps=2", "objective.fake_score.width=32"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "log-MMD" in proc.stdout
    expected = {"metrics.jsonl", "summary.json", "samples.png", "metrics.png", "checkpoint.safetensors"}
    assert expected <= {p.name for p in run.iterdir()}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [10, 20]
    for r in records:
        assert {"iteration", "seconds", "loss", "log_mmd", "log_density", "modes_covered"} <= set(r)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["config"]["objective"]["inner_steps"] == 2
    ckpt = load_checkpoint(run / "checkpoint.safetensors")
    assert ckpt["iteration"] == 20
    assert set(ckpt["objective"]["networks"]) == {"generator", "fake_score"}
    assert ckpt["objective"]["optim"]["fake_score"]["num_steps"] == 40
    assert ckpt["objective"]["optim"]["generator"]["num_steps"] == 20
