"""Gradient analysis: estimators against the closed-form diffusive-KL gradient of a linear generator,
1/B variance scaling, the predicted bias of a perturbed fake score, the Monte Carlo reference, the CLI."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.linear_gaussian import AffineGaussianGuide, GaussianTeacher, LinearGenerator, diffusive_kl, make_problem
from vardiu_pyro.gradient_estimators import FakeScoreEstimator, VarDiUEstimator, estimator_kind
from vardiu_pyro.gradient_stats import gradient_statistics
from vardiu_pyro.models import FixedSigma, PowerWeight
from vardiu_pyro.objectives import Problem
from vardiu_pyro.reference_gradient import SelfNormalisedScore, reference_gradient

SIGMA = 0.8


def linear_problem(sigma=SIGMA, seed=0):
    A, b, mu, S = make_problem(seed)
    gen = LinearGenerator(A, b)
    problem = Problem(target=None, teacher=GaussianTeacher(mu, S), generator=gen, sigma_law=FixedSigma(sigma).double(),
                      weight=PowerWeight(sigma, 2.0), make_guide=None, make_optim=None, batch_size=256)  # w(σ) = 1
    return problem, (A, b, mu, S)


def closed_form_gradient(A, b, mu, S, sigma=SIGMA):
    A, b = A.clone().requires_grad_(), b.clone().requires_grad_()
    return torch.cat([g.flatten() for g in torch.autograd.grad(diffusive_kl(A, b, mu, S, sigma), [A, b])])


def student_marginal(gen: LinearGenerator) -> GaussianTeacher:
    """The student's exact noised score: x0 = A z + b  =>  p_θ^σ = N(b, A Aᵀ + σ² I)."""
    A, b = gen.A.detach(), gen.b.detach()
    return GaussianTeacher(b.clone(), A @ A.T)


def exact_vardiu(problem, antithetic=False):
    gen = problem.generator
    guide = AffineGaussianGuide(2, 2).double()
    guide.set_exact_posterior(gen.A.detach(), gen.b.detach(), SIGMA)
    return VarDiUEstimator(problem, guide, antithetic=antithetic)


def draws(estimator, batch_size, repeats):
    return torch.stack([estimator.estimate(batch_size).total for _ in range(repeats)])


def z_test(samples, expected, threshold=4.5):
    mean, se = samples.mean(0), samples.std(0) / samples.shape[0] ** 0.5
    return ((mean - expected).abs() < threshold * se + 1e-12).all(), mean, se


@pytest.mark.parametrize("antithetic", [False, True])
def test_vardiu_with_the_exact_posterior_has_the_closed_form_kl_gradient(antithetic):
    problem, (A, b, mu, S) = linear_problem()
    ref = closed_form_gradient(A, b, mu, S)
    samples = draws(exact_vardiu(problem, antithetic), 512, 60)
    ok, mean, se = z_test(samples, ref)
    assert ok, (mean, ref, se)
    assert (se < 0.05 * ref.abs().max()).all()  # precise enough that a factor 2 or a sign would fail
    assert not z_test(samples, 2 * ref)[0] and not z_test(samples, -ref)[0]


def test_variance_of_the_batch_mean_falls_as_one_over_b():
    problem, _ = linear_problem()
    est = exact_vardiu(problem)
    ref = torch.zeros(6, dtype=torch.float64)
    repeats, sizes = 200, [8, 128]
    scaled = [B * gradient_statistics(draws(est, B, repeats), ref, resamples=10)["variance"]["value"] for B in sizes]
    # the relative sd of a (Gaussian) trace-variance estimate from R draws is at most sqrt(2/(R-1)); 4 sd of a log-ratio
    tolerance = 4 * math.sqrt(2 / (repeats - 1)) * math.sqrt(2)
    for v in scaled[1:]:
        assert abs(math.log(v / scaled[0])) < tolerance, scaled  # 1/sqrt(B) would give a ratio of 4


def perturbed(gen, kind):
    """A fake score s_θ + δ with δ known, and the bias E[w δ · ∂x_t/∂θ] it predicts (w = 1) for θ = (A, b)."""
    fake = student_marginal(gen)
    A = gen.A.detach()
    if kind == "shift":  # δ = -Σ⁻¹ (x - b - c) + Σ⁻¹ (x - b) = Σ⁻¹ c, constant: E[δ zᵀ] = 0, E[δ] = Σ⁻¹ c
        c = torch.tensor([0.3, -0.2], dtype=A.dtype)
        fake.mu.add_(c)
        cov = A @ A.T + SIGMA**2 * torch.eye(2, dtype=A.dtype)
        return fake, torch.cat([torch.zeros(4, dtype=A.dtype), torch.linalg.solve(cov, c)])
    # covariance doubled: δ = E (x_t - b), E = Σ⁻¹ - Σ₂⁻¹;  E[δ zᵀ] = E A (x_t - b = A z + σ ε), E[δ] = 0
    fake.S.mul_(2.0)
    eye = torch.eye(2, dtype=A.dtype)
    E = torch.linalg.inv(A @ A.T + SIGMA**2 * eye) - torch.linalg.inv(2 * A @ A.T + SIGMA**2 * eye)
    return fake, torch.cat([(E @ A).flatten(), torch.zeros(2, dtype=A.dtype)])


def test_diff_instruct_with_the_exact_fake_score_is_unbiased():
    problem, (A, b, mu, S) = linear_problem()
    ref = closed_form_gradient(A, b, mu, S)
    samples = draws(FakeScoreEstimator(problem, student_marginal(problem.generator), antithetic=False), 512, 60)
    assert z_test(samples, ref)[0]
    stats = gradient_statistics(samples, ref, resamples=200)
    assert stats["bias"]["value"] < 3 * stats["resolution"]["value"]  # no bias resolved
    assert stats["cosine_of_mean"]["value"] > 0.99


@pytest.mark.parametrize("kind", ["shift", "covariance"])
def test_diff_instruct_bias_matches_the_bias_predicted_for_a_perturbed_fake_score(kind):
    problem, (A, b, mu, S) = linear_problem()
    ref = closed_form_gradient(A, b, mu, S)
    fake, predicted = perturbed(problem.generator, kind)
    samples = draws(FakeScoreEstimator(problem, fake, antithetic=False), 512, 60)
    ok, mean, se = z_test(samples, ref + predicted)
    assert ok, (mean - ref, predicted, se)
    assert not z_test(samples, ref)[0]  # the bias is resolved
    stats = gradient_statistics(samples, ref, resamples=500)
    assert stats["bias"]["lo"] <= predicted.norm().item() <= stats["bias"]["hi"], (stats["bias"], predicted.norm())


@pytest.mark.parametrize("parameters", [50, 2000])
def test_bootstrap_intervals_cover_the_truth_with_many_parameters_against_few_estimates(parameters):
    """R = 32 Gaussian estimates g_r = μ + δ + noise of known bias ||δ||, variance and SNR, in P dimensions. With P ≫ R
    a resample's own noise moves the resampled statistics off the point estimate (uncorrected percentile intervals
    left out the point estimate here); the bias-corrected intervals hold the point estimate and cover the truth at
    about their nominal 95% (at least 85% of 100 trials here)."""
    torch.manual_seed(1)
    repeats, sd, bias = 32, 0.3 if parameters == 50 else 0.05, 0.8 if parameters == 50 else 0.5
    true = torch.randn(parameters, dtype=torch.float64)
    mean = true.clone()
    mean[0] += bias
    variance = parameters * sd**2
    truth = {"bias": bias, "variance": variance, "mse": bias**2 + variance,
             "snr": mean.norm().item() / math.sqrt(variance),
             "cosine_of_mean": (mean @ true / (mean.norm() * true.norm())).item()}
    covered = dict.fromkeys(truth, 0)
    trials = 100
    for t in range(trials):
        samples = mean + sd * torch.randn(repeats, parameters, dtype=torch.float64)
        stats = gradient_statistics(samples, true, resamples=400, seed=t)
        for name, value in truth.items():
            s = stats[name]
            assert s["lo"] <= s["value"] <= s["hi"], (name, s)
            covered[name] += s["lo"] <= value <= s["hi"]
    assert all(c >= 0.85 * trials for c in covered.values()), covered


@pytest.mark.parametrize("sigma", [0.3, 1.5])
def test_monte_carlo_reference_agrees_with_the_closed_form(sigma):
    problem, (A, b, mu, S) = linear_problem(sigma)
    exact = closed_form_gradient(A, b, mu, S, sigma)
    edges = torch.tensor([sigma / 2, sigma * 2], dtype=torch.float64)
    ref = reference_gradient(problem.generator, problem.teacher, SelfNormalisedScore(problem.generator, num_z=8192),
                             problem.sigma_law, problem.weight, 0, edges, num_samples=16_384, chunk=1024)
    assert ref.standard_error < 0.03 * exact.norm()  # precise enough to see a wrong factor
    assert (ref.mean - exact).norm() < 4 * ref.standard_error + 3 * ref.inner_error, (ref.mean, exact)
    assert ref.inner_error < 0.03 * exact.norm() and ref.ess[0] > 100
    assert torch.allclose(ref.per_bin.sum(0), ref.mean)


def test_bin_contributions_sum_to_the_whole_estimate():
    problem, _ = linear_problem()
    est = exact_vardiu(problem)
    torch.manual_seed(0)
    whole = est.estimate(64).total
    torch.manual_seed(0)
    split = est.estimate(64, edges=torch.tensor([0.1, 0.5, 0.9, 2.0], dtype=torch.float64))
    assert torch.allclose(split.total, whole) and torch.allclose(split.per_bin.sum(0), whole)
    assert split.per_bin[0].abs().max() == 0 and split.per_bin[2].abs().max() == 0  # every σ is 0.8


def test_estimator_names():
    assert estimator_kind("vardiu_full_gaussian") == ("vardiu", "full_gaussian")
    assert estimator_kind("diff_instruct_k10") == ("diff_instruct", 10)
    for bad in ("diffinstruct", "diff_instruct_k0", "vardiu"):
        with pytest.raises(ValueError):
            estimator_kind(bad)


# ---------------------------------------------------------------- the command line, on a tiny study
TINY_STUDY = ["device=cpu", "progress=false", "trainer.iterations=10", "trainer.eval_every=10", "trainer.eval_samples=200",
              "trainer.batch_size=32", "generator.width=16", "generator.depth=2", "guide.width=16", "guide.depth=2",
              "batch_sizes=[8,16]", "repeats=3", "sigma_bins=2", "fake_score.warmup_iterations=2",
              "+fake_score.network.width=16", "+fake_score.network.depth=2", "reference.num_samples=256",
              "reference.chunk=64", "reference.num_z=512", "bound_gap.num_outer=64", "bound_gap.num_inner=8",
              "bootstrap.resamples=20", "guide_steps=2"]


def study_config(*overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        return compose("variance", overrides=[*TINY_STUDY, *overrides])


def test_cli_tiny_study_writes_table_csv_and_plots_then_reads_its_checkpoint(tmp_path):
    run = tmp_path / "study"
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.variance", *TINY_STUDY, f"hydra.run.dir={run}",
                           "estimators=[vardiu_gaussian,diff_instruct_k2]", "bootstrap.confidence=0.9"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "90% bootstrap intervals over the repeats (bias-corrected" in (run / "gradient_stats.md").read_text()
    for name in ("gradient_stats.csv", "gradient_stats.md", "reference.json", "variance_vs_batch.png", "bias_mse.png",
                 "per_sigma.png", "pretrain/checkpoint.safetensors"):
        assert (run / name).exists(), name
    rows = list(csv.DictReader(open(run / "gradient_stats.csv")))
    assert [(r["estimator"], r["batch_size"], r["sigma_bin"]) for r in rows] == [
        (e, b, s) for e in ("vardiu_gaussian", "diff_instruct_k2") for b, s in (("8", "all"), ("16", "all"), ("16", "0"),
                                                                              ("16", "1"))]
    for r in rows:
        assert float(r["variance"]) > 0 and float(r["bias"]) >= 0 and math.isfinite(float(r["mse"]))
    assert rows[0]["bound_gap"] != "" and rows[4]["bound_gap"] == ""  # VarDiU only
    assert rows[0]["importance_samples"] == "3" and rows[4]["importance_samples"] == ""  # the run's bound, U_3
    assert "| vardiu_gaussian (U_3) | 8 |" in proc.stdout and "Lowest MSE" in proc.stdout

    # the same run analysed from its checkpoint (in process): a family it has no guide of is trained first
    from vardiu_pyro.variance import variance_study

    rows = variance_study(study_config(f"checkpoint={run / 'pretrain'}", "estimators=[vardiu_full_gaussian]",
                                       "batch_sizes=[8]"), tmp_path / "again")
    assert [r["sigma_bin"] for r in rows] == ["all", "0", "1"] and rows[0]["estimator"] == "vardiu_full_gaussian"


@pytest.mark.parametrize("override, message", [
    ("estimators=[nope]", "unknown estimator 'nope'"),
    ("estimators=[vardiu_student_t]", "no guide family 'student_t'"),
    ("batch_sizes=[7]", "batch_sizes=[7]"),
    ("repeats=1", "repeats=1"),
    ("checkpoint=/no/such/run", "checkpoint=/no/such/run: no such directory"),
    ("estimators=vardiu_gaussian", "estimators=vardiu_gaussian: must be a list"),  # had read its letters as names
    ("batch_sizes=64", "batch_sizes=64: must be a list"),
    ("threads=-1", "threads=-1: must be an integer >= 1"),
    # found before the run that is trained first, no longer after it
    ("generator.latent_dim=6", "generator latent dimension 6: the Monte Carlo reference gradient"),
    ("objective=diff_instruct", "fake_score.network: the analysed Diff-Instruct run has a trained fake score"),
])
def test_bad_study_settings_are_one_line_errors(override, message, tmp_path):
    from vardiu_pyro.validation import ConfigError
    from vardiu_pyro.variance import variance_study

    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")) as info:
        variance_study(study_config(override), tmp_path)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "pretrain").exists()  # before any work


def test_run_overrides_with_a_checkpoint_are_refused():
    """With checkpoint=, the checkpoint's own configuration is analysed: an override of its groups changed nothing."""
    from vardiu_pyro.variance import ignored_with_checkpoint

    overrides = ["checkpoint=RUN", "target=mog9", "objective.importance_samples=0", "+sigma.x=1", "seed=3", "device=cpu",
                 "repeats=8"]
    cfg = study_config("checkpoint=/tmp")
    assert ignored_with_checkpoint(cfg, overrides) == ["target=mog9", "objective.importance_samples=0", "+sigma.x=1"]
    assert ignored_with_checkpoint(study_config(), overrides) == []


def test_the_fake_scores_learning_rate_is_trainings_at_the_analysed_iteration():
    """The inner DSM steps take the learning rate the run's schedule gives at that iteration; a fresh optimiser's own
    count would step at nearly the full rate late in a run."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from vardiu_pyro.build import build_problem
    from vardiu_pyro.gradient_estimators import DiffInstructEstimator
    from vardiu_pyro.optim import lr_factor
    from vardiu_pyro.variance import CONFIGS

    problem = build_problem(study_config("trainer.iterations=50"), torch.device("cpu"))
    fake_score = OmegaConf.load(CONFIGS.joinpath("objective", "diff_instruct.yaml")).fake_score
    factory = instantiate(OmegaConf.merge(fake_score, {"width": 8, "depth": 2}))
    late = DiffInstructEstimator(problem, factory, inner_steps=2, iteration=45, schedule_length=50, warmup_iterations=1)
    optim = late.objective.fake_optim
    expected = lr_factor(45 * optim.iterations / 50, optim.schedule, optim.iterations, optim.warmup, optim.end_factor)
    assert optim.schedule == "cosine" and expected < 0.1
    assert optim.current_lr_factor() == 1.0  # a fresh fake score's warm-up: its optimiser's own rate (from the start)
    late.prepare()
    assert optim.current_lr_factor() == pytest.approx(expected)  # the inner steps: training's
    untimed = DiffInstructEstimator(problem, factory, inner_steps=2, iteration=45, warmup_iterations=1)
    untimed.prepare()
    assert untimed.objective.fake_optim.current_lr_factor() > 0.99  # what the estimator had used


def test_the_study_goes_by_the_runs_schedule_position():
    """A run sized to a time budget re-fits its count: its schedules stretch, and the position of an iteration on
    them (which the σ law, the weight and the learning rates follow in training) is not the iteration."""
    from omegaconf import OmegaConf

    from vardiu_pyro.variance import run_position

    cut = OmegaConf.create({"trainer": {"iterations": 800, "schedule_iterations": 1000, "refits": [[100, 1000]]}})
    assert run_position(cut, 800) == pytest.approx(1000) and run_position(cut, 100) == pytest.approx(100)
    assert run_position(OmegaConf.create({"trainer": {"iterations": 50}}), 45) == 45


def test_an_interruption_says_what_it_left(tmp_path):
    from vardiu_pyro.variance import interrupted_message

    assert interrupted_message(tmp_path) == "interrupted"  # during the reference gradient: nothing written yet
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "reference.json").write_text("{}")
    message = interrupted_message(tmp_path)
    assert f"{tmp_path} keeps reference.json;" in message and "gradient_stats.csv" not in message
    assert f"python -m vardiu_pyro.variance checkpoint={tmp_path / 'pretrain'}" in message


def test_the_resolution_holds_the_references_inner_error():
    """The inner error is systematic: it widens the resolution and is not subtracted from the bias."""
    g = torch.randn(8, 50, generator=torch.Generator().manual_seed(0))
    ref = torch.zeros(50)
    plain = gradient_statistics(g, ref, 0.0, resamples=50)
    inner = gradient_statistics(g, ref, 0.0, resamples=50, reference_inner_error=40.0)
    assert inner["resolution"]["value"] == pytest.approx(math.hypot(plain["resolution"]["value"], 40.0))
    assert inner["bias"]["value"] == plain["bias"]["value"]


def test_an_interrupted_pretrain_says_how_to_resume_it_and_analyse_it(tmp_path):
    from tests.faults import KILL_ENV

    env = {**os.environ, KILL_ENV: "INT:5", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.variance", *TINY_STUDY, f"hydra.run.dir={tmp_path}",
                           "teacher._target_=tests.faults.SignallingTeacher"], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"trainer.resume={tmp_path / 'pretrain'}" in proc.stderr
    assert f"python -m vardiu_pyro.variance checkpoint={tmp_path / 'pretrain'}" in proc.stderr
