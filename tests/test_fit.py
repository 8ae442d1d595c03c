"""The command line: ``python -m vardiu_pyro.fit`` end to end, and its configuration."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.checkpoint import load_checkpoint
from vardiu_pyro.fit import fit
from vardiu_pyro.guides import DiagonalGaussianGuide
from vardiu_pyro.optim import PerNetworkOptim
from vardiu_pyro.validation import check_command_line

from .configs import config

TINY = ["trainer.iterations=20", "trainer.eval_every=10", "trainer.eval_samples=400", "trainer.batch_size=64",
        "generator.width=32", "guide.width=32", "trainer.progress=false"]


def test_cli_writes_every_output_file(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", *TINY, "device=cpu", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "log-MMD" in proc.stdout and str(run) in proc.stdout  # the human-readable summary
    assert "bound gap" in proc.stdout and "lower estimate" in proc.stdout  # both ends of the gap's bracket

    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [10, 20]
    for r in records:
        assert {"iteration", "seconds", "loss", "log_mmd", "log_density", "modes_covered"} <= set(r)
    assert records[1]["seconds"] >= records[0]["seconds"] > 0

    summary = json.loads((run / "summary.json").read_text())
    for key in ("iteration", "seconds", "loss", "log_mmd", "log_density", "modes_covered", "total_seconds"):
        assert key in summary
    assert summary["config"]["trainer"]["iterations"] == 20
    assert summary["log_mmd"] == records[-1]["log_mmd"]
    assert summary["hidden_precision"] in {"float32", "bfloat16"}  # what precision=auto chose on this machine
    assert summary["code"]["version"] and summary["code"]["commit"]  # the code that produced the run
    assert f"({summary['hidden_precision']} hidden products)" in proc.stdout

    for png in ("samples.png", "metrics.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    ckpt = load_checkpoint(run / "checkpoint.safetensors")
    assert ckpt["iteration"] == 20
    assert set(ckpt["objective"]["networks"]) == {"generator", "guide"}
    assert ckpt["objective"]["optim"]["optim"]["num_steps"] == 20
    assert ckpt["ema"] is not None
    assert (run / ".hydra" / "config.yaml").exists()


def test_default_config_is_the_documented_one():
    cfg = config()
    assert cfg.target._target_.endswith("mog40")
    assert cfg.teacher._target_.endswith("ExactTeacher")
    assert cfg.guide._target_.endswith("DiagonalGaussianGuide")
    assert cfg.objective._target_.endswith("VarDiU")
    assert cfg.device == "auto" and cfg.seed == 0
    # the recipe the README's table and docs/default_fit.md report: U_3, ramps ending halfway, w exponent 0.5, clip 100
    assert cfg.objective.importance_samples == 3
    assert (cfg.sigma.curriculum, cfg.sigma.weight_end, cfg.optim.max_grad_norm) == (0.5, 0.5, 100)


@pytest.mark.parametrize("overrides", [["target=mog9"], ["sigma=paper"], ["sigma=lognormal"],
                                       ["optim.schedule=constant", "objective.antithetic=false"],
                                       ["generator.latent_dim=4", "guide.embedding=log"],
                                       ["objective.importance_samples=2", "generator.latent_dim=3"],
                                       ["objective.importance_samples=1", "guide=flow"],
                                       ["objective.importance_samples=1", "guide=full_gaussian"],
                                       ["objective.importance_samples=2", "guide=mixture"]])
def test_config_groups_build_and_step(overrides):
    cfg = config(*TINY, *overrides)
    problem = build_problem(cfg, torch.device("cpu"))
    objective = build_objective(cfg, problem)
    out = objective.step(0)
    assert torch.isfinite(torch.tensor(out["loss"]))


def test_mog9_sets_its_own_sigma_range():
    assert config("target=mog9").sigma.max == 5.0
    assert config("target=mog9", "sigma.max=7").sigma.max == 7.0


def test_users_own_class_by_target(tmp_path):
    cfg = config(*TINY, "+target.num_components=12", "+target.loc_range=10",
                 "guide._target_=tests.test_fit.WideGuide")
    problem = build_problem(cfg, torch.device("cpu"))
    assert problem.target.num_components == 12
    objective = build_objective(cfg, problem)
    assert isinstance(objective.guide, WideGuide)
    summary = fit(cfg, tmp_path)
    assert summary["iteration"] == 20


def test_seed_makes_runs_identical(tmp_path):
    a = fit(config(*TINY, "seed=3"), tmp_path / "a")
    b = fit(config(*TINY, "seed=3"), tmp_path / "b")
    c = fit(config(*TINY, "seed=4"), tmp_path / "c")
    assert a["log_mmd"] == b["log_mmd"] and a["loss"] == b["loss"]
    assert a["loss"] != c["loss"]


def test_short_training_improves_log_mmd_clearly(tmp_path):
    """≤ 60 s on a 2-core CPU: from a collapsed initial student to a spread over many modes."""
    cfg = config("trainer.iterations=1500", "trainer.eval_every=1500", "trainer.eval_samples=4000",
                 "trainer.batch_size=256", "generator.width=128", "guide.width=128", "trainer.progress=false",
                 "trainer.ema_decay=0")
    problem = build_problem(cfg, torch.device("cpu"))
    from vardiu_pyro.evaluation import Evaluator

    before = Evaluator(problem.target, 4000)(problem.generator)["log_mmd"]
    after = fit(cfg, tmp_path)["log_mmd"]
    assert after < before - 2.5, (before, after)


class WideGuide(DiagonalGaussianGuide):
    """A user's own guide family, given on the command line by its ``_target_``."""

    def __init__(self, latent_shape, data_shape, data_std=1.0, width=256, **ignored):
        super().__init__(latent_shape, data_shape, data_std, width=2 * width, depth=1)


# ---------------------------------------------------------------- the README's command lines
def test_cli_compiled_step_errors_are_one_line(tmp_path):
    """``objective.compile=true`` where it cannot work: the flow's splines are refused before any work, and a machine
    whose C++ compiler does not work (``CXX`` pointing at ``false``, an empty inductor cache) gets one line that names
    ``objective.compile=false``, exit status 2 and a failed ``job.json``."""
    base = [sys.executable, "-m", "vardiu_pyro.fit", *TINY, "device=cpu", "objective.compile=true"]
    proc = subprocess.run([*base, "guide=flow", f"hydra.run.dir={tmp_path / 'flow'}"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "guide.coupling=affine" in proc.stderr and "Traceback" not in proc.stderr
    env = {**os.environ, "CXX": shutil.which("false") or "/bin/false", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "cache")}
    run = tmp_path / "cxx"
    proc = subprocess.run([*base, f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and "inductor could not compile" in lines[-1]
    assert "needs a working C++ compiler" in lines[-1] and "objective.compile=false" in lines[-1]
    assert json.loads((run / "job.json").read_text())["status"] == "failed"


README = Path(__file__).resolve().parents[1] / "README.md"
NEEDS_MORE = {"my_pkg.": "a user's own package", "teacher.path=DIR": "a trained teacher",
              "trainer.resume=": "an interrupted run", "hydra/launcher=": "a launcher plugin", "device=cuda": "CUDA"}


def readme_fit_lines():
    for line in README.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line.startswith("python -m vardiu_pyro.fit") and not any(k in line for k in NEEDS_MORE):
            yield line


@pytest.mark.parametrize("line", list(readme_fit_lines()))
def test_readme_commands_compose_and_validate(line):
    """Every ``python -m vardiu_pyro.fit ...`` the README shows is a configuration the command line accepts."""
    check_command_line(shlex.split(line)[3:])


def test_readme_commands_are_found():
    lines = list(readme_fit_lines())
    assert len(lines) >= 15 and any("lr_overrides" in line for line in lines)


@pytest.mark.parametrize("objective,network", [("vardiu", "guide"), ("diff_instruct", "fake_score")])
def test_lr_overrides_reach_their_network(objective, network):
    """``optim.lr_overrides='{NAME: LR}'`` as the README writes it, for each objective's own networks
    (Diff-Instruct gives its generator and fake score separate optimisers: each gets its own override)."""
    cfg = config(*TINY, f"objective={objective}", f"optim.lr_overrides={{{network}: 3.0e-4}}", "optim.lr=2.0e-3")
    objective = build_objective(cfg, build_problem(cfg, torch.device("cpu")))
    assert set(objective.networks) == set(type(objective).network_names)  # what validate_config checks names against
    lrs = {}
    for optim in {id(o): o for o in vars(objective).values() if isinstance(o, PerNetworkOptim)}.values():
        lrs.update(optim.base_lrs)
    assert lrs == {"generator": 2.0e-3, network: 3.0e-4}


@pytest.mark.parametrize("retain", [True, False])
def test_fit_retains_freed_memory_before_it_measures_anything_when_configured(tmp_path, monkeypatch, retain):
    import vardiu_pyro.fit as fit_module

    calls = []
    monkeypatch.setattr(fit_module, "retain_freed_memory", lambda: calls.append("retain") or True)
    monkeypatch.setattr(fit_module, "build_problem", lambda *a, **k: calls.append("build") or build_problem(*a, **k))
    fit(config(*TINY, "trainer.iterations=2", "trainer.eval_every=2", "device=cpu",
               f"trainer.retain_freed_memory={str(retain).lower()}"), tmp_path)
    assert calls == (["retain", "build"] if retain else ["build"])
