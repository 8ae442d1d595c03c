"""``python -m vardiu_pyro.train_teacher`` and distilling its teacher with ``teacher=learned``."""

import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_module

from omegaconf.errors import MissingMandatoryValue

from tests.test_fit import TINY, config
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.fit import fit
from vardiu_pyro.models import EDMDenoiser, EmpiricalTeacher, LearnedTeacher

TEACHER_TINY = ["trainer.iterations=30", "trainer.eval_every=15", "trainer.batch_size=64", "trainer.eval_samples=400",
                "denoiser.width=32", "denoiser.data_features=16", "score_error.num_samples=256",
                "score_error.sigmas=[0.1,1.0,10.0]", "sampler.num_steps=8", "trainer.progress=false", "device=cpu"]


def test_train_teacher_cli_writes_a_loadable_diffusers_teacher(tmp_path):
    run = tmp_path / "teacher"
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.train_teacher", "target=mog40", *TEACHER_TINY,
                           f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "score relative error" in proc.stdout and f"teacher.path={run}" in proc.stdout
    files = {p.name for p in run.iterdir()}
    assert {"config.json", "diffusion_pytorch_model.safetensors", "metrics.jsonl", "summary.json", "samples.png",
            "metrics.png", "score_error.md", "score_error.json", "score_error.png"} <= files
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [15, 30]
    assert {"loss", "log_mmd", "log_density", "modes_covered", "nfe", "seconds"} <= set(records[-1])
    assert records[-1]["nfe"] == 8
    rows = json.loads((run / "score_error.json").read_text())
    assert [r["sigma"] for r in rows] == [0.1, 1.0, 10.0] and all(r["relative_error"] > 0 for r in rows)

    denoiser = EDMDenoiser.from_pretrained(str(run))
    assert denoiser.config.width == 32 and denoiser.config.sigma_min == 0.02 and denoiser.config.sigma_max == 80.0
    assert abs(denoiser.sigma_data - 23.3) < 0.5  # the target's std
    teacher = LearnedTeacher.from_pretrained(run)
    x, sigma = torch.randn(5, 2), torch.ones(5)
    assert teacher.score(x, sigma).shape == (5, 2)

    # distil it: the fit summary reports the teacher's own many-step quality beside the student's
    cfg = config(*TINY, "teacher=learned", f"teacher.path={run}", "teacher.sampler.num_steps=4")
    summary = fit(cfg, tmp_path / "fit")
    assert summary["teacher"]["nfe"] == 4 and summary["teacher"]["solver"] == "dpmsolver"
    assert {"log_mmd", "log_density", "modes_covered"} <= set(summary["teacher"])


def test_train_teacher_config_reuses_the_target_group():
    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        cfg = compose("train_teacher", overrides=["target=mog9"])
    assert cfg.target._target_.endswith("mog9")
    assert cfg.optim._target_.endswith("PerNetworkOptim") and cfg.optim.iterations == cfg.trainer.iterations


@pytest.mark.parametrize("override,message", [
    ("sampler.solver=heun", "sampler.solver=heun: choose one of dpmsolver, euler"),
    ("sampler.num_steps=0", "sampler.num_steps=0: must be >= 1"),
    ("trainer.eval_every=0", "trainer.eval_every=0: must be >= 1"),
    ("trainer.batch_size=0", "trainer.batch_size=0: must be >= 1"),
    ("trainer.ema_decay=-1", "trainer.ema_decay=-1: must be a number in [0, 1)"),
    ("denoiser.sigma_data=0", "denoiser.sigma_data=0: must be a number > 0 (or null: the target's standard deviation)"),
    ("denoiser.noise_features=7", "denoiser.noise_features=7: must be even"),
    ("noise.sigma_min=100", "noise.sigma_min=100: must be < noise.sigma_max=80.0"),
])
def test_train_teacher_rejects_bad_input_with_one_line_before_any_work(tmp_path, override, message):
    """A sampler setting is first used at the first evaluation: unchecked, it failed after thousands of iterations."""
    from vardiu_pyro.train_teacher import train_teacher
    from vardiu_pyro.validation import ConfigError

    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        cfg = compose("train_teacher", overrides=[*TEACHER_TINY, override])
    with pytest.raises(ConfigError) as info:
        train_teacher(cfg, tmp_path / "run")
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_train_teacher_cli_bad_input_is_one_line_and_exit_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.train_teacher", "sampler.solver=heun",
                           f"hydra.run.dir={tmp_path / 'cli'}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr == "vardiu-pyro: error: sampler.solver=heun: choose one of dpmsolver, euler\n"
    assert not (tmp_path / "cli").exists()


def test_the_teacher_is_saved_before_its_evaluation(tmp_path, monkeypatch):
    """An evaluation that fails (a sampler, a metric) must not lose the weights trained before it."""
    import vardiu_pyro.train_teacher as module

    def failing(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(module, "evaluate_teacher", failing)
    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        cfg = compose("train_teacher", overrides=TEACHER_TINY)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        module.train_teacher(cfg, tmp_path)
    assert EDMDenoiser.from_pretrained(str(tmp_path)).config.width == 32


def test_learned_teacher_needs_a_path():
    with pytest.raises(MissingMandatoryValue, match="teacher.path"):
        build_problem(config(*TINY, "teacher=learned"), torch.device("cpu"))


def test_empirical_teacher_from_the_command_line(tmp_path):
    cfg = config(*TINY, "teacher=empirical", "teacher.num_samples=300")
    problem = build_problem(cfg, torch.device("cpu"))
    assert isinstance(problem.teacher, EmpiricalTeacher) and len(problem.teacher.points) == 300
    objective = build_objective(cfg, problem)
    assert torch.isfinite(torch.tensor(objective.step(0)["loss"]))
    summary = fit(cfg, tmp_path)
    assert "teacher" in summary and "nfe" not in summary["teacher"]  # its samples are its points
