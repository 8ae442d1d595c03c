"""Sweeps: Hydra multirun with the basic, joblib and submitit launchers, the sweep index, the report."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from vardiu_pyro.report import bootstrap_interval, positional_to_override, varying_keys, write_report
from vardiu_pyro.sweep import read_index, read_runs

REPO = Path(__file__).resolve().parents[1]

# a few iterations of tiny networks: each job costs about a second, most of it the final plots
TINY = ["trainer.iterations=4", "trainer.eval_every=2", "trainer.eval_samples=200", "trainer.batch_size=32",
        "generator.width=8", "guide.width=8", "trainer.progress=false", "trainer.threads=1", "device=cpu"]


def multirun(cwd: Path, *overrides: str, expect_ok: bool = True) -> Path:
    """Run ``python -m vardiu_pyro.fit -m ...`` in ``cwd`` (with the repository on the path, for ``tests.faults``);
    return its (default, timestamped) sweep directory."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", "-m", *TINY, *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == expect_ok, proc.stdout[-2000:] + proc.stderr[-3000:]
    sweeps = list((cwd / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def job_records(sweep: Path) -> dict[int, dict]:
    return {r.num: r.job for r in read_runs(sweep)}


def test_basic_launcher_two_by_two_and_its_report(tmp_path):
    sweep = multirun(tmp_path, "seed=0,1", "generator.width=8,16")
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]  # one directory per job
    runs = read_runs(sweep)
    assert [r.num for r in runs] == [0, 1, 2, 3] and all(r.status == "completed" for r in runs)
    assert all(r.job["status"] == "completed" and r.job["return_value"] == r.summary["log_mmd"] for r in runs)
    assert len({r.summary["loss"] for r in runs}) == 4  # four different runs, not one repeated
    index = read_index(sweep)
    assert [(r["num"], r["status"], r["run_dir"]) for r in index] == [(i, "completed", str(i)) for i in range(4)]
    assert len((sweep / "index.jsonl").read_text().splitlines()) == 8  # a start and an end line per job
    assert "| 3 | completed | 3 |" in (sweep / "index.md").read_text()

    # the report, with the positional form of its command line
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.report", str(sweep.relative_to(tmp_path))],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["multirun"]  # the report writes only into the sweep directory
    report = json.loads((sweep / "report.json").read_text())
    assert report["group_by"] == ["generator.width"]  # the seed is pooled, constant overrides are not groups
    assert report["constant_overrides"]["trainer.iterations"] == "4"
    by_width = {g["values"]["generator.width"]: g for g in report["groups"]}
    assert set(by_width) == {"8", "16"}
    for width, group in by_width.items():
        members = [r for r in runs if f"generator.width={width}" in r.overrides]
        assert group["runs"] == group["completed"] == 2 and group["failed"] == group["incomplete"] == 0
        for metric in ("log_mmd", "log_density", "modes_covered", "seconds"):
            values = [r.summary[metric] for r in members]
            stats = group["metrics"][metric]
            assert stats["n"] == 2 and stats["mean"] == pytest.approx(statistics.mean(values))
            assert min(values) - 1e-9 <= stats["low"] <= stats["mean"] <= stats["high"] <= max(values) + 1e-9
    assert report["not_completed"] == []
    markdown = (sweep / "report.md").read_text()
    assert "| generator.width | runs | failed | incomplete | not started | log_mmd | log_density | modes_covered | seconds |" \
        in markdown
    assert "| 8 | 2/2 | 0 | 0 |" in markdown and "![log-MMD against time](log_mmd.png)" in markdown
    assert (sweep / "log_mmd.png").read_bytes()[:4] == b"\x89PNG"
    assert markdown in proc.stdout

    # a run cut short (no summary.json) is listed as incomplete, not dropped
    (sweep / "3" / "summary.json").unlink()
    report = write_report(sweep, out_dir=tmp_path / "again")
    assert [(r["num"], r["status"]) for r in report["not_completed"]] == [(3, "incomplete")]
    assert {g["values"]["generator.width"]: g["completed"] for g in report["groups"]} == {"8": 2, "16": 1}
    assert "| 3 | incomplete | 3 |" in (tmp_path / "again" / "report.md").read_text()


def test_joblib_launcher_runs_jobs_in_parallel_workers_and_the_report_lists_a_failed_job(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    # a teacher of 3-D data passes the up-front checks (they read the configuration) and fails in every job that has
    # it (the built problem's check): Hydra runs all four, then exits non-zero
    sweep = multirun(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1",
                     "teacher._target_=vardiu_pyro.models.teachers.ExactTeacher,tests.faults.WrongShapeTeacher",
                     expect_ok=False)
    jobs = job_records(sweep)
    assert sorted(jobs) == [0, 1, 2, 3]
    assert {n: j["status"] for n, j in jobs.items()} == {0: "completed", 1: "failed", 2: "completed", 3: "failed"}
    assert "its score has shape (3,) per sample" in jobs[1]["error"] and "Traceback" in jobs[1]["traceback"]
    assert len({j["pid"] for j in jobs.values()}) == 2  # two loky workers
    assert [r["status"] for r in read_index(sweep)] == ["completed", "failed", "completed", "failed"]

    report = write_report(sweep)
    assert report["group_by"] == ["teacher._target_"]
    groups = {g["values"]["teacher._target_"].rsplit(".", 1)[-1]: g for g in report["groups"]}
    assert (groups["ExactTeacher"]["completed"], groups["ExactTeacher"]["failed"]) == (2, 0)
    assert (groups["WrongShapeTeacher"]["completed"], groups["WrongShapeTeacher"]["failed"]) == (0, 2)
    wrong = groups["WrongShapeTeacher"]["metrics"]["log_mmd"]
    assert wrong["n"] == 0 and math.isnan(wrong["mean"])
    assert [(r["num"], r["status"]) for r in report["not_completed"]] == [(1, "failed"), (3, "failed")]
    markdown = (sweep / "report.md").read_text()
    assert "| tests.faults.WrongShapeTeacher | 0/2 | 2 | 0 | 0 | — |" in markdown
    assert ("| 1 | failed | 1 | `seed=0` `teacher._target_=tests.faults.WrongShapeTeacher` | ConfigError: "
            "teacher=WrongShapeTeacher: its score has shape (3,) per sample") in markdown


def test_a_job_stopped_with_a_one_line_error_fails_alone_and_the_sweep_runs_the_others(tmp_path):
    """Errors a run reports in one line (too many skipped steps; a budget that fits no iteration) stop a single run
    with an exit status; in a sweep the job is recorded as failed and the others run. Four non-finite steps in a
    row: too many for 2 allowed, not for 10."""
    sweep = multirun(tmp_path, "teacher._target_=tests.faults.FlakyTeacher", "+teacher.nan_scores=[2,3,4,5]",
                     "trainer.max_consecutive_skips=2,10", expect_ok=False)
    jobs = job_records(sweep)
    assert {n: j["status"] for n, j in jobs.items()} == {0: "failed", 1: "completed"}
    assert "TooManySkippedSteps" in jobs[0]["error"] and "Traceback" in jobs[0]["traceback"]
    assert [r["status"] for r in read_index(sweep)] == ["failed", "completed"]


def test_a_failed_job_resumed_to_its_end_is_recorded_completed_in_its_job_file_and_the_index(tmp_path):
    """Job 0 stops after three non-finite steps in a row (2 allowed), its checkpoint of iteration 1 intact; resumed
    with more allowed, it finishes: its own job.json and the sweep's index say completed, and name the resume.
    Resuming the completed job 1 changes nothing."""
    sweep = multirun(tmp_path, "teacher._target_=tests.faults.FlakyTeacher", "+teacher.nan_scores=[3,4,5]",
                     "trainer.checkpoint_every=1", "trainer.max_consecutive_skips=2,10", expect_ok=False)
    assert {n: j["status"] for n, j in job_records(sweep).items()} == {0: "failed", 1: "completed"}
    completed = (sweep / "1" / "job.json").read_text()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    for job, extra in (("0", ["trainer.max_consecutive_skips=10"]), ("1", [])):
        proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", f"trainer.resume={sweep / job}", *extra,
                               f"hydra.run.dir={tmp_path / f'resume{job}'}"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    job = json.loads((sweep / "0" / "job.json").read_text())
    assert job["status"] == "completed" and "error" not in job and "traceback" not in job
    [resume] = job["resumes"]
    assert resume["run_dir"] == str(tmp_path / "resume0") and resume["replaced_status"] == "failed"
    assert "TooManySkippedSteps" in resume["replaced_error"]
    assert [r["status"] for r in read_index(sweep)] == ["completed", "completed"]
    assert "| 0 | completed | 0 |" in (sweep / "index.md").read_text()
    assert (sweep / "1" / "job.json").read_text() == completed


def test_the_report_lists_the_jobs_an_interrupted_sweep_never_started(tmp_path):
    """SIGTERM in job 0 of three stops the sweep, the job recorded interrupted (in its job.json and the sweep's index,
    without a traceback): the report counts jobs 1 and 2 as not started (from the sweep's multirun.yaml), before
    and after job 0 is resumed to its end."""
    from tests.faults import KILL_ENV

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           KILL_ENV: "TERM:3"}
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", "-m", *TINY, "seed=0,1,2",
                           "teacher._target_=tests.faults.SignallingTeacher"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 128 + 15 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (sweep,) = list((tmp_path / "multirun").glob("*/*"))
    assert [p.name for p in sweep.iterdir() if p.is_dir()] == ["0"]
    assert [(r["num"], r["status"]) for r in read_index(sweep)] == [(0, "interrupted")]  # the job's record and the index
    report = write_report(sweep)
    assert [(r["num"], r["status"], r["run_dir"]) for r in report["not_completed"]] == [
        (0, "incomplete", "0"), (1, "not started", None), (2, "not started", None)]
    assert "seed=1" in report["not_completed"][1]["overrides"]
    (group,) = report["groups"]
    assert (group["runs"], group["completed"], group["incomplete"], group["not_started"]) == (3, 0, 1, 2)
    markdown = (sweep / "report.md").read_text()
    assert "3 runs, 0 completed, 3 failed, incomplete or not started" in markdown
    assert "| 2 | not started | — | `seed=2` | no run directory" in markdown

    del env[KILL_ENV]
    proc = subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", f"trainer.resume={sweep / '0'}",
                           f"hydra.run.dir={tmp_path / 'resume'}"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = write_report(sweep)
    assert [(r["num"], r["status"]) for r in report["not_completed"]] == [(1, "not started"), (2, "not started")]
    assert report["groups"][0]["completed"] == 1
    assert [(r["num"], r["status"]) for r in read_index(sweep)] == [(0, "completed")]


def test_submitit_local_launcher(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = multirun(tmp_path, "hydra/launcher=submitit_local", "seed=0,1")
    jobs = job_records(sweep)
    assert sorted(jobs) == [0, 1] and all(j["status"] == "completed" for j in jobs.values())
    submitit_ids = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.name != "%j")
    assert sorted(j["id"] for j in jobs.values()) == submitit_ids  # each job ran as a submitit job
    assert all((sweep / str(n) / "summary.json").exists() for n in jobs)


def test_slurm_launcher_config_makes_the_expected_sbatch_script(tmp_path, monkeypatch):
    """``hydra/launcher=slurm`` (configs/hydra/launcher/slurm.yaml) through submitit's own SLURM executor.

    No cluster here: a dummy ``srun`` on PATH lets submitit build its executor, and the test reads
    the sbatch script it would submit (the parameters are passed as the Hydra launcher passes them).
    """
    submitit = pytest.importorskip("submitit")
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                                           "hydra.launcher.setup=[module load cuda]"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    params = OmegaConf.to_container(cfg.hydra.launcher)
    executor = submitit.AutoExecutor(folder=tmp_path / "submitit", cluster="slurm")
    base = set(OmegaConf.structured(BaseQueueConf).keys())  # as BaseSubmititLauncher.launch maps them
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()
                                  if k not in {"submitit_folder", "max_num_timeout", "_target_", "name"}})
    script = executor._executor._make_submission_file_text("python -m vardiu_pyro.fit", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB", "#SBATCH --ntasks-per-node=1", "module load cuda"):
        assert line in script


def test_run_and_sweep_directories_cannot_collide():
    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        cfg = compose("config", return_hydra_config=True)
    hydra = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert hydra["run"]["dir"].endswith("%f}") and hydra["sweep"]["dir"].endswith("%f}")  # microseconds
    assert hydra["sweep"]["subdir"] == "${hydra.job.num}"  # and one subdirectory per job


def test_bootstrap_interval_matches_the_normal_theory_and_is_deterministic():
    x = torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64).tolist()
    lo, hi = bootstrap_interval(x, confidence=0.95, resamples=4000, seed=0)
    mean, half = statistics.mean(x), 1.96 * statistics.stdev(x) / math.sqrt(len(x))  # mean ± z σ/√n
    assert lo < mean < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(mean, abs=0.15 * half)
    assert bootstrap_interval(x, 0.95, 4000, seed=0) == (lo, hi)
    assert bootstrap_interval([2.5], 0.9) == (2.5, 2.5)
    assert all(math.isnan(v) for v in bootstrap_interval([]))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval(x, confidence=95)


def test_grouping_keys_vary_and_exclude_the_seed(tmp_path):
    from vardiu_pyro.sweep import Run

    runs = [Run(tmp_path, ["seed=0", "guide=gaussian", "trainer.iterations=9"]),
            Run(tmp_path, ["seed=1", "guide=flow", "trainer.iterations=9"]),
            Run(tmp_path, ["seed=2", "guide=flow", "trainer.iterations=9", "+sigma.extra=1"])]
    assert varying_keys(runs) == ["guide", "sigma.extra"]
    assert varying_keys(runs, exclude=()) == ["seed", "guide", "sigma.extra"]


def test_a_positional_sweep_dir_becomes_the_override():
    assert positional_to_override(["multirun/2026-01-01/10-00-00-1"]) == ["sweep_dir='multirun/2026-01-01/10-00-00-1'"]
    assert positional_to_override(["x", "confidence=0.9"]) == ["sweep_dir='x'", "confidence=0.9"]
    parser = OverridesParser.create()
    for path in ["a b/it's", "C:\\runs\\", "a\\'b", "/tmp/x:y,z"]:  # quoted so that Hydra reads back the path
        override = parser.parse_override(positional_to_override([path])[0])
        assert (override.key_or_group, override.value()) == ("sweep_dir", path)
    assert positional_to_override(["sweep_dir=x", "-cn", "report"]) == ["sweep_dir=x", "-cn", "report"]
    with pytest.raises(SystemExit, match="one sweep directory"):
        positional_to_override(["a", "b"])


def test_report_on_a_folder_without_runs_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run directories"):
        write_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        write_report(tmp_path / "absent")
