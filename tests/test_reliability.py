"""Reliability: exact resume after SIGKILL / SIGTERM / SIGINT, checkpoint files and their
corruption, the non-finite guard, one-line errors on bad input, safe loading, determinism.

The faults come from test-only teachers in ``tests/faults.py`` (the library has no test hooks).
"""

import copy
import json
import logging
import math
import os
import pickle
import random
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from vardiu_pyro.build import build_problem
from vardiu_pyro.checkpoint import CheckpointError, load_checkpoint, load_torch_file, read_checkpoint_metadata
from vardiu_pyro.fit import fit, main
from vardiu_pyro.interrupt import StopSignals, TrainingInterrupted
from vardiu_pyro.models import LogNormalSigma, PowerLawSigma, PowerWeight, Ramp
from vardiu_pyro.optim import PerNetworkOptim
from vardiu_pyro.resume import (CHECKPOINT, METRICS, PREVIOUS_CHECKPOINT, load_run_checkpoint, resume_command,
                                rng_state, save_run_checkpoint, set_rng_state)
from vardiu_pyro.training import WALL_CLOCK_KEYS, TooManySkippedSteps, Trainer
from vardiu_pyro.validation import ConfigError, check_command_line, unused_overrides, validate_config, validate_problem

from .configs import config
from .faults import KILL_ENV, FixedRefits

REPO = Path(__file__).resolve().parents[1]
ITERATIONS = 120
# evaluations every 25 iterations, checkpoints every 10: a kill can fall after an evaluation that
# the last checkpoint does not hold (e.g. at 27: evaluation 25, checkpoint 20), which the resume
# must then drop from metrics.jsonl
SMALL = [f"trainer.iterations={ITERATIONS}", "trainer.eval_every=25", "trainer.eval_samples=256",
         "trainer.batch_size=32", "generator.width=16", "guide.width=16", "generator.depth=2", "guide.depth=2",
         "trainer.checkpoint_every=10", "trainer.progress=false", "trainer.threads=1", "device=cpu",
         "teacher._target_=tests.faults.SignallingTeacher"]
TINY = ["trainer.iterations=60", "trainer.eval_every=30", "trainer.eval_samples=256", "trainer.batch_size=32",
        "generator.width=16", "guide.width=16", "generator.depth=2", "guide.depth=2", "trainer.progress=false",
        "trainer.threads=1", "device=cpu"]


def cli(args, env=None, timeout=600):
    """``python -m vardiu_pyro.fit ARGS`` from the repository root (so ``tests.faults`` imports)."""
    environ = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    return subprocess.run([sys.executable, "-m", "vardiu_pyro.fit", *args], cwd=REPO, env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sigint_handled():
    """SIGINT with Python's own handler, as in a terminal: a job a non-interactive shell starts in the
    background inherits SIG_IGN, which a run rightly leaves alone (see the test below)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True, scope="module")
def _no_plots():
    """In-process runs skip the final plots (seconds each; plotting draws no random numbers)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Trainer, "_plot", lambda self: None)
        yield


@pytest.fixture(scope="module")
def reference(tmp_path_factory, _no_plots):
    """The uninterrupted run every interrupted one must reproduce exactly."""
    threads = torch.get_num_threads()
    run = tmp_path_factory.mktemp("reference")
    fit(config(*SMALL), run)
    torch.set_num_threads(threads)
    return run


# ---------------------------------------------------------------------------------------------
# comparing runs


def without_clock(records):
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK_KEYS} for r in records]


def assert_same_state(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}/{i}")
    else:
        assert a == b, (where, a, b)


def assert_same_run(run, reference):
    """Bit-identical parameters, optimiser states, EMA, random state and metrics (wall clock aside)."""
    got, want = load_checkpoint(run / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    assert got["iteration"] == want["iteration"] == ITERATIONS
    assert_same_state(got["objective"], want["objective"], "objective")
    assert_same_state(got["ema"], want["ema"], "ema")
    assert_same_state(got["rng"], want["rng"], "rng")
    assert without_clock(got["records"]) == without_clock(want["records"])
    assert (got["skipped_steps"], got["pending_losses"]) == (want["skipped_steps"], want["pending_losses"])
    lines = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
    assert without_clock(lines) == without_clock(want["records"])
    assert [r["iteration"] for r in lines] == [25, 50, 75, 100, 120]
    summary, expected = (json.loads((d / "summary.json").read_text()) for d in (run, reference))
    drop = set(WALL_CLOCK_KEYS) | {"config"}
    assert {k: v for k, v in summary.items() if k not in drop} == {k: v for k, v in expected.items() if k not in drop}


# ---------------------------------------------------------------------------------------------
# exact resume


def test_same_seed_gives_identical_runs(tmp_path, reference):
    fit(config(*SMALL), tmp_path)
    assert_same_run(tmp_path, reference)


def test_sigkill_at_random_iterations_then_resume_is_exact(tmp_path, reference):
    """Kill -9 three times at random iterations, resume each time, finish: the same run, bit for bit."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    # score call 1 is the shape check, call k the step that completes iteration (start + k - 1); a
    # kill on call k leaves iterations up to start + k - 2 done. The first kill lands after
    # iteration 26-29: past the evaluation at 25, before the checkpoint at 30. Each later one
    # leaves at least one new checkpoint behind.
    plan = [rng.randint(28, 31), rng.randint(12, 31), rng.randint(12, 31)]
    run = tmp_path / "run"
    args = [*SMALL, f"hydra.run.dir={run}"]
    start = 0
    for i, k in enumerate(plan):
        proc = cli(args, env={KILL_ENV: f"KILL:{k}"})
        assert proc.returncode == -signal.SIGKILL, (seed, plan, proc.stderr[-2000:])
        reached = start + k - 2
        start = read_checkpoint_metadata(run / CHECKPOINT)["iteration"]
        assert start == reached // 10 * 10, (seed, plan)
        logged = [json.loads(line)["iteration"] for line in (run / METRICS).read_text().splitlines()]
        if i == 0:
            assert logged == [25] and start == 20, (seed, plan)  # an evaluation the checkpoint does not hold
        args = [f"trainer.resume={run}", f"hydra.run.dir={tmp_path / f'resume{i}'}"]
    assert (run / PREVIOUS_CHECKPOINT).exists()
    proc = cli(args)
    assert proc.returncode == 0, (seed, plan, proc.stderr[-2000:])
    assert_same_run(run, reference)


def test_sigterm_checkpoints_exits_cleanly_and_says_how_to_resume(tmp_path, reference):
    run = tmp_path / "run"
    proc = cli([*SMALL, f"hydra.run.dir={run}"], env={KILL_ENV: "TERM:60"})
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "stopped by SIGTERM at iteration 59" in proc.stderr  # call 60 is the step that completes iteration 59
    assert f"python -m vardiu_pyro.fit trainer.resume={run}" in proc.stderr
    assert read_checkpoint_metadata(run / CHECKPOINT)["iteration"] == 59
    job = json.loads((run / "job.json").read_text())  # not left "running": Hydra's job-end callback never saw the exit
    assert job["status"] == "interrupted" and "stopped by SIGTERM at iteration 59" in job["error"] and job["ended"] > 0
    fit(config(*SMALL, f"trainer.resume={run}"))
    assert_same_run(run, reference)


def interrupted(monkeypatch, cfg, run, score_call: int) -> TrainingInterrupted:
    """Run ``cfg`` into ``run`` with SIGINT sent on the teacher's score call ``score_call`` (the step that completes
    iteration ``score_call - 1``); the ``TrainingInterrupted`` it stops with."""
    monkeypatch.setenv(KILL_ENV, f"INT:{score_call}")
    with pytest.raises(TrainingInterrupted) as info:
        fit(cfg, run)
    monkeypatch.delenv(KILL_ENV)
    return info.value


def test_sigint_stops_at_a_clean_point_in_process(tmp_path, reference, monkeypatch, sigint_handled):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)
    stop = interrupted(monkeypatch, config(*SMALL), run, 100)
    assert stop.exit_code == 130 and stop.iteration == 99
    assert "trainer.resume=" in str(stop)
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are restored
    # how often to checkpoint may change on resume: it changes nothing computed
    fit(config(*SMALL, "trainer.checkpoint_every=7", f"trainer.resume={run}"))
    assert_same_run(run, reference)


DIFF_INSTRUCT = ["objective=diff_instruct", "objective.inner_steps=2", "objective.fake_score.width=16",
                 "objective.fake_score.depth=2", "objective.fake_score.data_features=8", "trainer.iterations=40",
                 "trainer.eval_every=15", "trainer.eval_samples=256", "trainer.batch_size=32", "generator.width=16",
                 "generator.depth=2", "trainer.checkpoint_every=10", "trainer.ema_decay=0.9", "trainer.progress=false",
                 "trainer.threads=1", "device=cpu", "teacher._target_=tests.faults.SignallingTeacher"]


def test_diff_instruct_interrupted_and_resumed_is_exact(tmp_path, monkeypatch, sigint_handled):
    """Diff-Instruct's fake score and its optimiser are part of the run's state: stopped by SIGINT
    (checkpoint at the stop), or killed after a checkpoint (the newest one lost: the run restarts from
    the one before and drops the evaluation logged after it), the resumed run ends bit-identical."""
    reference = tmp_path / "reference"
    fit(config(*DIFF_INSTRUCT), reference)
    want = load_checkpoint(reference / CHECKPOINT)
    assert set(want["objective"]["networks"]) == {"generator", "fake_score"}
    assert want["objective"]["optim"]["fake_score"]["num_steps"] == 80  # K = 2 fake-score steps per iteration

    def assert_same_as_reference(run):
        got = load_checkpoint(run / CHECKPOINT)
        assert got["iteration"] == 40
        for key in ("objective", "ema", "rng"):
            assert_same_state(got[key], want[key], key)
        assert without_clock(got["records"]) == without_clock(want["records"])
        lines = [json.loads(line) for line in (run / METRICS).read_text().splitlines()]
        assert [r["iteration"] for r in lines] == [15, 30, 40]
        assert without_clock(lines) == without_clock(want["records"])

    run = tmp_path / "run"
    assert interrupted(monkeypatch, config(*DIFF_INSTRUCT), run, 18).iteration == 17
    killed = tmp_path / "killed"
    shutil.copytree(run, killed)
    fit(config(*DIFF_INSTRUCT, f"trainer.resume={run}"))
    assert_same_as_reference(run)

    # a kill at iteration 17 would leave the checkpoint of iteration 10 and the evaluation of 15
    (killed / CHECKPOINT).unlink()
    assert read_checkpoint_metadata(killed / PREVIOUS_CHECKPOINT)["iteration"] == 10
    assert [json.loads(line)["iteration"] for line in (killed / METRICS).read_text().splitlines()] == [15]
    fit(config(*DIFF_INSTRUCT, f"trainer.resume={killed}"))
    assert_same_as_reference(killed)


BUDGETED = ["trainer.iterations=auto", "trainer.time_budget=6", "trainer.eval_every=10", "trainer.eval_samples=256",
            "trainer.batch_size=32", "generator.width=16", "guide.width=16", "generator.depth=2", "guide.depth=2",
            "trainer.checkpoint_every=5", "trainer.progress=false", "trainer.threads=1", "device=cpu",
            "teacher._target_=tests.faults.SignallingTeacher"]


def test_a_budgeted_run_resumes_with_the_count_and_refits_of_its_checkpoint(tmp_path, monkeypatch, sigint_handled):
    """A run sized to a time budget, interrupted after a re-fit, resumes with the count and re-fits its checkpoint
    recorded and re-fits no more (an interrupted run's pace says nothing): it ends exactly as the fixed run with
    that configuration. The measurement and the re-fits are fixed stand-ins (30 planned; 50 from iteration 10)."""
    from vardiu_pyro import budget
    from vardiu_pyro import fit as fit_module
    from vardiu_pyro.budget import Calibration
    from vardiu_pyro.fit import format_summary
    from vardiu_pyro.resume import resumed_config

    monkeypatch.setattr(budget, "calibrate", lambda cfg, device: Calibration(6.0, 0.01, 0.02, 0.5, 30))
    monkeypatch.setattr(fit_module, "BudgetRefit", FixedRefits)
    run = tmp_path / "run"
    assert interrupted(monkeypatch, config(*BUDGETED), run, 18).iteration == 17
    saved = json.loads(load_run_checkpoint(run)[0]["config"])["trainer"]
    assert (saved["iterations"], saved["schedule_iterations"], saved["refits"]) == (50, 30, [[10, 30]])
    resumed = fit(resumed_config(config(f"trainer.resume={run}"), [f"trainer.resume={run}"]))
    assert resumed["iteration"] == 50 and resumed["config"]["trainer"]["refits"] == [[10, 30]]  # no re-fit at 30
    # the measurement comes back from the checkpoint: the summary still says how the run was sized, and how to repeat it
    assert resumed["calibration"] == Calibration(6.0, 0.01, 0.02, 0.5, 30).as_dict()
    assert "trainer.schedule_iterations=30" in format_summary(resumed, run)

    reference = tmp_path / "reference"
    fixed = [o for o in BUDGETED if not o.startswith("trainer.iterations=")]
    fit(config(*fixed, "trainer.iterations=50", "trainer.schedule_iterations=30", "trainer.refits=[[10,30]]"), reference)
    got, want = load_checkpoint(run / CHECKPOINT), load_checkpoint(reference / CHECKPOINT)
    for key in ("objective", "ema", "rng"):
        assert_same_state(got[key], want[key], key)
    assert without_clock(got["records"]) == without_clock(want["records"])


@pytest.mark.parametrize("where", ["final plots", "budget measurement"])
def test_ctrl_c_outside_the_training_loop_is_one_line_and_recorded(tmp_path, monkeypatch, capsys, where):
    """Ctrl-C during the final plots (the run's checkpoint is written: resumable) or during the time budget's
    measurement (nothing to resume): one line, exit status 130, job.json says interrupted; no traceback."""
    from vardiu_pyro import budget
    from vardiu_pyro.fit import main

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "run"
    if where == "final plots":
        monkeypatch.setattr(Trainer, "_plot", interrupt)
        argv = [*SMALL]
    else:
        monkeypatch.setattr(budget, "calibrate", interrupt)
        argv = [o for o in SMALL if not o.startswith("trainer.iterations=")] + ["trainer.iterations=auto"]
    monkeypatch.setattr(sys, "argv", ["vardiu_pyro.fit", *argv, f"hydra.run.dir={run}"])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 130 and "Traceback" not in err
    assert json.loads((run / "job.json").read_text())["status"] == "interrupted"
    if where == "final plots":
        assert f"Resume with:\n    python -m vardiu_pyro.fit trainer.resume={run}" in err
        monkeypatch.undo()
        fit(config(*SMALL, f"trainer.resume={run}"))  # and it does
        assert (run / "summary.json").exists()
    else:
        assert "nothing to resume" in err and not (run / CHECKPOINT).exists()


def test_a_second_sigint_interrupts_at_once(sigint_handled):
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)


def test_stop_signals_leave_an_ignored_signal_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as stop:
            os.kill(os.getpid(), signal.SIGINT)  # ignored, as before the context
            assert stop.signal is None
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signal == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_resuming_a_finished_run_changes_nothing(tmp_path, reference):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / METRICS).read_text()
    summary = fit(config(*SMALL, f"trainer.resume={run}"))
    assert (run / METRICS).read_text() == before
    assert summary["iteration"] == ITERATIONS


def test_a_new_run_removes_an_earlier_runs_summary_from_its_directory(tmp_path):
    """A directory used again (a sweep directory run twice): a failing run must not leave the earlier run's
    summary.json to be read as its result."""
    (tmp_path / "summary.json").write_text('{"log_mmd": -7.0}')
    with pytest.raises(ConfigError):
        fit(config(*SMALL, "trainer.eval_every=0"), tmp_path)
    assert not (tmp_path / "summary.json").exists()


def test_random_states_round_trip():
    state = rng_state()
    draws = torch.rand(3), random.random(), np.random.rand()
    set_rng_state(state)
    assert torch.equal(torch.rand(3), draws[0]) and random.random() == draws[1] and np.random.rand() == draws[2]


@pytest.mark.parametrize("law", [
    PowerLawSigma(0.1, 20.0, power=Ramp(0.3, 2.5, iterations=1000)),
    PowerLawSigma(0.1, 20.0, power=Ramp(0.1, 2.0, iterations=190_000, every=1000)),
    LogNormalSigma(0.1, 20.0, mean=Ramp(1.0, -0.5, iterations=1000), std=1.2),
])
def test_sigma_curriculum_is_a_pure_function_of_the_iteration(law):
    """Nothing about π or w needs checkpointing: at iteration k they are what a fresh object gives."""
    weight = PowerWeight(20.0, exponent=Ramp(2.0, 0.0, iterations=1000))
    assert law.state_dict() == {} and weight.state_dict() == {}
    fresh_law, fresh_weight = copy.deepcopy(law), copy.deepcopy(weight)
    for k in range(0, 1000, 7):  # the "used" objects go through a run
        law.distribution(k).sample((4,))
        weight(torch.ones(4), k)
    for k in (0, 333, 999, 5000):
        torch.manual_seed(k)
        a = law.distribution(k).sample((64,))
        torch.manual_seed(k)
        b = fresh_law.distribution(k).sample((64,))
        assert torch.equal(a, b)
        assert torch.equal(weight(a, k), fresh_weight(a, k))


# ---------------------------------------------------------------------------------------------
# checkpoint files


def test_checkpoints_rotate_and_a_corrupt_one_falls_back_to_the_previous(tmp_path, caplog):
    save_run_checkpoint(tmp_path, {"iteration": 1, "w": torch.ones(1000)})
    save_run_checkpoint(tmp_path, {"iteration": 2, "w": torch.full((1000,), 2.0)})
    assert read_checkpoint_metadata(tmp_path / PREVIOUS_CHECKPOINT)["iteration"] == 1
    assert load_run_checkpoint(tmp_path)[0]["iteration"] == 2

    data = (tmp_path / CHECKPOINT).read_bytes()
    (tmp_path / CHECKPOINT).write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level(logging.WARNING):
        state, path = load_run_checkpoint(tmp_path)
    assert state["iteration"] == 1 and path.name == PREVIOUS_CHECKPOINT
    assert "truncated" in caplog.text and "resuming from" in caplog.text

    flipped = bytearray(data)
    flipped[-7] ^= 0x40  # one bit in the tensor payload: only the checksum can see it
    (tmp_path / CHECKPOINT).write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(tmp_path / CHECKPOINT)
    assert load_run_checkpoint(tmp_path)[0]["iteration"] == 1

    (tmp_path / PREVIOUS_CHECKPOINT).write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        load_run_checkpoint(tmp_path)


def test_a_kill_between_the_two_renames_leaves_the_previous_checkpoint(tmp_path):
    save_run_checkpoint(tmp_path, {"iteration": 1, "w": torch.ones(3)})
    save_run_checkpoint(tmp_path, {"iteration": 2, "w": torch.ones(3)})
    os.replace(tmp_path / CHECKPOINT, tmp_path / PREVIOUS_CHECKPOINT)  # as after the first rename
    (tmp_path / f".{CHECKPOINT}.abc.tmp").write_bytes(b"partial")  # the new file, never renamed
    assert load_run_checkpoint(tmp_path)[0]["iteration"] == 2


# ---------------------------------------------------------------------------------------------
# non-finite guard


def test_a_non_finite_gradient_steps_nothing(tmp_path):
    torch.manual_seed(0)
    nets = {"a": torch.nn.Linear(3, 3), "b": torch.nn.Linear(3, 1)}
    params = [p for n in nets.values() for p in n.parameters()]
    opt = PerNetworkOptim(nets, lr=0.1, schedule="cosine", iterations=10)
    for p in params:
        p.grad = torch.ones_like(p)
    opt(params)
    snapshot = ([p.detach().clone() for p in params], opt.get_state())
    for bad in (float("nan"), float("inf")):
        for p in params:
            p.grad = torch.ones_like(p)
        nets["b"].bias.grad[0] = bad  # one element of one network
        opt(params)
        assert opt.last_step_skipped
        assert all(torch.equal(p, q) for p, q in zip(params, snapshot[0]))
        assert_same_state(opt.get_state(), snapshot[1], "optim")  # Adam's step counters and moments, num_steps
        assert all(p.grad is None for p in params)
    opt(params)  # no gradient arrived at all (an objective dropped a non-finite loss)
    assert opt.last_step_skipped and opt.num_steps == 1


def test_non_finite_steps_are_skipped_counted_and_logged(tmp_path):
    # score calls 11-13 and 31 (steps 10-12 and 30): NaN gradients; log_prob call 46 (step 45): NaN loss
    cfg = config(*TINY, "teacher._target_=tests.faults.FlakyTeacher", "+teacher.nan_scores=[11,12,13,31]",
                 "+teacher.nan_log_probs=[46]")
    summary = fit(cfg, tmp_path)
    assert summary["skipped_steps"] == 5 and summary["iteration"] == 60 and math.isfinite(summary["loss"])
    lines = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["skipped_steps"] for r in lines] == [4, 5]
    assert json.loads((tmp_path / "summary.json").read_text())["skipped_steps"] == 5
    state = load_checkpoint(tmp_path / CHECKPOINT)["objective"]
    optim = state["optim"]["optim"]
    assert optim["num_steps"] == 55  # the LR schedule only counts steps taken
    for adam in optim["optimizers"].values():
        assert all(s["step"].item() == 55 for s in adam["state"].values())
    assert all(torch.isfinite(t).all() for net in state["networks"].values() for t in net.values())


def test_non_finite_steps_are_skipped_with_diff_instruct_too(tmp_path):
    """The guard is the objective's, not VarDiU's: Diff-Instruct's generator step is dropped alike."""
    # score call 1 is the shape check, call j the generator step that completes iteration j - 1 (the fake
    # score's DSM steps never call the teacher)
    cfg = config(*TINY, "objective=diff_instruct", "objective.inner_steps=1", "objective.fake_score.width=16",
                 "objective.fake_score.depth=2", "teacher._target_=tests.faults.FlakyTeacher",
                 "+teacher.nan_scores=[11,12,32]")
    summary = fit(cfg, tmp_path)
    assert summary["skipped_steps"] == 3 and summary["iteration"] == 60 and math.isfinite(summary["loss"])
    lines = [json.loads(line) for line in (tmp_path / METRICS).read_text().splitlines()]
    assert [r["skipped_steps"] for r in lines] == [2, 3] and all(math.isfinite(r["loss"]) for r in lines)
    state = load_checkpoint(tmp_path / CHECKPOINT)["objective"]
    assert state["optim"]["generator"]["num_steps"] == 57  # the generator's schedule only counts steps taken
    assert state["optim"]["fake_score"]["num_steps"] == 60  # the fake score's DSM steps were all finite
    assert all(torch.isfinite(t).all() for net in state["networks"].values() for t in net.values())


def test_too_many_consecutive_skips_stop_with_the_last_good_checkpoint(tmp_path):
    nan_calls = ",".join(str(k) for k in range(22, 200))  # every step from step 20 (iteration 21) on
    cfg = config(*TINY, "teacher._target_=tests.faults.FlakyTeacher", f"+teacher.nan_scores=[{nan_calls}]",
                 "trainer.max_consecutive_skips=5", "trainer.checkpoint_every=10")
    with pytest.raises(TooManySkippedSteps, match=r"5 consecutive steps \(iterations 21-25\).*iteration 20\) is intact"):
        fit(cfg, tmp_path)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["iteration"] == 20 and ckpt["skipped_steps"] == 0


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the field, before any work


BAD_VALUES = [
    (["sigma.min=0"], "sigma.min=0: must be a number > 0"),
    (["sigma.min=-0.5"], "sigma.min=-0.5: must be a number > 0"),
    (["sigma.min=25"], "sigma.min=25: must be < sigma.max=14.0"),
    (["sigma=lognormal", "sigma.min=5", "sigma.max=5"], "sigma.min=5: must be < sigma.max=5"),
    (["sigma.max_start=0.05"], "sigma.max_start=0.05: must be a number > sigma.min=0.1"),
    (["sigma.curriculum=0"], "sigma.curriculum=0: must be a number in (0, 1]"),
    (["sigma.curriculum=1.5"], "sigma.curriculum=1.5: must be a number in (0, 1]"),
    (["trainer.iterations=auto", "trainer.schedule_iterations=5"],
     "trainer.schedule_iterations=5: is set by the run itself with trainer.iterations=auto"),
    (["trainer.iterations=auto", "trainer.refits=[[1,2]]"],
     "trainer.refits=[[1, 2]]: is set by the run itself with trainer.iterations=auto"),
    (["trainer.iterations=100", "trainer.schedule_iterations=0"],
     "trainer.schedule_iterations=0: must be an integer >= 1"),
    (["trainer.iterations=100", "trainer.refits=[[50,90]]"],
     "trainer.refits=[[50, 90]]: the first re-fit [50, 90]: the count before it must be the schedule length 100"),
    (["trainer.iterations=100", "trainer.refits=[[50,100],[40,120]]"],
     "trainer.refits=[[50, 100], [40, 120]]: re-fit [40, 120]: its iteration must lie after 50"),
    (["trainer.iterations=100", "trainer.refits=7"], "trainer.refits=7: must be a list of [iteration, count before]"),
    (["sigma.stratified=yes"], "sigma.stratified=yes: must be true or false"),
    (["trainer.retain_freed_memory=1"], "trainer.retain_freed_memory=1: must be true or false"),
    (["trainer.batch_size=63"], "trainer.batch_size=63: must be even with objective.antithetic=true"),
    (["trainer.iterations=-5"], "trainer.iterations=-5: must be >= 1"),
    (["trainer.iterations=many"], "trainer.iterations=many: must be an integer, or auto"),
    (["trainer.iterations=auto", "trainer.time_budget=0"], "trainer.time_budget=0: must be a number of seconds > 0"),
    (["trainer.iterations=auto", "trainer.distributed=true"], "trainer.iterations=auto: give a number"),
    (["trainer.eval_every=0"], "trainer.eval_every=0: must be >= 1"),
    (["trainer.ema_decay=1.0"], "trainer.ema_decay=1.0: must be a number in [0, 1)"),
    (["trainer.max_consecutive_skips=0"], "trainer.max_consecutive_skips=0: must be >= 1"),
    (["optim.lr=-0.001"], "optim.lr=-0.001: must be a number > 0"),
    (["optim.lr_overrides={gide: 1e-3}"], "optim.lr_overrides.gide=0.001: no such network in vardiu_pyro.objectives.VarDiU"),
    (["objective=diff_instruct", "optim.lr_overrides={guide: 1e-3}"],
     "optim.lr_overrides.guide=0.001: no such network in vardiu_pyro.objectives.DiffInstruct"),
    (["optim.lr_overrides={guide: -1}"], "optim.lr_overrides.guide=-1: must be a number > 0"),
    (["optim.lr_overrides=0.1"], "optim.lr_overrides=0.1: must be a mapping"),
    (["objective.importance_samples=-1"], "objective.importance_samples=-1: must be >= 0"),
    (["guide._target_=tests.faults.ScoreOnlyGuide", "objective.importance_samples=2"],
     "objective.importance_samples=2: needs a guide with rsample"),
    (["device=gpu"], "device=gpu: not a device"),
    (["guide._target_=no_such_module.Guide"], "guide._target_=no_such_module.Guide: cannot be imported"),
    (["+teacher.path=/no/such/teacher"], "teacher.path=/no/such/teacher: no such directory"),
    (["optim.max_grad_norm=-1"], "optim.max_grad_norm=-1: must be a number > 0, or null (no clipping)"),
    (["optim.max_grad_norm=0"], "optim.max_grad_norm=0: must be a number > 0"),
    (["optim.schedule=nope"], "optim.schedule=nope: choose one of constant, cosine, linear"),
    (["optim.optimizer=nope"], "optim.optimizer=nope: choose one of adam, adamw, sgd"),
    (["optim.warmup=-3"], "optim.warmup=-3: must be >= 0"),
    (["optim.end_factor=2"], "optim.end_factor=2: must be a number in [0, 1]"),
    (["trainer.mmd_bandwidths=[]"], "trainer.mmd_bandwidths=[]: must be a non-empty list of numbers > 0"),
    (["trainer.mmd_bandwidths=[1,-2]"], "trainer.mmd_bandwidths=[1, -2]: must be a non-empty list of numbers > 0"),
    # the networks: a bad size or name used to fail deep inside torch, after the run had started
    (["guide.width=0"], "guide.width=0: must be >= 1"),
    (["guide.width=abc"], "guide.width=abc: must be an integer"),
    (["generator.depth=2.5"], "generator.depth=2.5: must be an integer"),
    (["generator.latent_dim=0"], "generator.latent_dim=0: must be >= 1"),  # had silently meant the data dimension
    (["guide=flow", "guide.hidden=0"], "guide.hidden=0: must be >= 1"),  # had trained a hypernetwork of width 0
    (["guide=flow", "guide.hidden_depth=-1"], "guide.hidden_depth=-1: must be >= 1"),
    (["guide=flow", "guide.bins=1"], "guide.bins=1: must be >= 2"),
    (["guide=flow", "guide.coupling=nope"], "guide.coupling=nope: choose one of affine, spline"),
    (["guide=mixture", "guide.components=0"], "guide.components=0: must be >= 1"),
    (["guide.activation=swish"], "guide.activation=swish: choose one of gelu, relu, silu, tanh"),
    (["guide.embedding=lin"], "guide.embedding=lin: choose one of log, raw"),
    (["objective=diff_instruct", "objective.fake_score.width=0"], "objective.fake_score.width=0: must be >= 1"),
    (["objective=diff_instruct", "objective.fake_score.noise_features=7"],
     "objective.fake_score.noise_features=7: must be even (sine and cosine pairs)"),
    (["teacher=empirical", "teacher.num_samples=0"], "teacher.num_samples=0: must be >= 1"),
    # the σ law: a power that reaches 0 used to stop the run where its ramp got there
    (["sigma.power_end=0"], "sigma.power_end=0: must be a number > 0 (the power of the σ law)"),
    (["sigma.power_start=-1"], "sigma.power_start=-1: must be a number > 0"),
    (["sigma=lognormal", "sigma.std=0"], "sigma.std=0: must be a number > 0"),
    (["sigma.weight_end={a: 1}"], "sigma.weight_end={'a': 1}: must be a number"),
    (["sigma=lognormal", "sigma.mean={a: 1}"], "sigma.mean={'a': 1}: must be a number (or a vardiu_pyro.models.sigma.Ramp)"),
    # yes/no settings: any word had read as true
    (["objective.antithetic=no"], "objective.antithetic=no: must be true or false"),
    (["objective.quasi_random=yes"], "objective.quasi_random=yes: must be true or false"),
    (["optim.fused=off"], "optim.fused=off: must be true or false"),
    (["trainer.progress=1"], "trainer.progress=1: must be true or false"),
    (["trainer.distributed=maybe"], "trainer.distributed=maybe: must be true or false"),
    (["trainer.pyro_validation=no"], "trainer.pyro_validation=no: must be true or false"),
    (["objective.compile=no"], "objective.compile=no: must be true or false"),
    # the compiled step: Pyro's splines read their values back into Python, which a traced step cannot
    (["objective.compile=true", "guide=flow"], "objective.compile=true: cannot compile the flow guide's splines (Pyro's "
                                                "spline checks its values in Python): use guide.coupling=affine, or "
                                                "objective.compile=false"),
    # the optimiser
    (["optim.betas=[0.9]"], "optim.betas=[0.9]: must be two numbers in [0, 1)"),
    (["optim.optimizer=sgd"], "optim.betas=[0.9, 0.999]: not an argument of torch.optim.SGD (optim.optimizer=sgd); "
                              "leave it out with ~optim.betas"),
    (["device=mps"], "device=mps: not supported here; use auto, cpu, cuda or cuda:N"),
]


@pytest.mark.parametrize("overrides,message", BAD_VALUES, ids=[" ".join(o) for o, _ in BAD_VALUES])
def test_bad_values_are_rejected_with_one_line(overrides, message):
    with pytest.raises(ConfigError) as info:
        validate_config(config(*overrides))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_rejected():
    with pytest.raises(ConfigError, match=r"^device=cuda: CUDA is not available"):
        validate_config(config("device=cuda"))


def test_default_configuration_is_valid():
    validate_config(config())
    validate_config(config("target=mog9", "sigma=paper"))


@pytest.mark.parametrize("overrides", [[f"guide={g}"] for g in ("gaussian", "full_gaussian", "mixture", "flow")] +
                         [["objective=diff_instruct"], ["sigma=lognormal"], ["sigma=paper"], ["teacher=empirical"],
                          ["optim.optimizer=adamw"], ["optim.optimizer=sgd", "~optim.betas"],
                          ["sigma=lognormal", "sigma.mean={_target_: vardiu_pyro.models.sigma.Ramp, start: 0.0, end: 1.0, "
                                              "iterations: 100}"]])
def test_every_shipped_option_passes_validation(overrides):
    validate_config(config(*overrides))


def test_guide_overrides_with_an_objective_that_trains_no_guide_are_named():
    """Diff-Instruct's fake score takes the guide's place: a guide override changes nothing (a sweep over guides
    would repeat one run), and the run says so."""
    overrides = ["guide=flow", "guide.width=8", "+guide.extra=1", "seed=1", "objective=diff_instruct"]
    assert unused_overrides(config("objective=diff_instruct", "guide=flow"), overrides) == [
        "guide=flow", "guide.width=8", "+guide.extra=1"]
    assert unused_overrides(config("guide=flow"), ["guide=flow", "guide.width=8"]) == []


@pytest.mark.parametrize("path", ["/tmp/run", "outputs", "2026", "sw/runs/device=cpu,generator.width=8", "it's",
                                  "a b/c", "x\\", "d$e"])
def test_the_printed_resume_command_gives_back_the_run_directory(path):
    """What an interrupted run prints: through the shell and Hydra's override grammar, the same path (a sweep's
    ``hydra.sweep.subdir=${hydra.job.override_dirname}`` puts = and , in it; a bare 2026 would be a number)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    words = shlex.split(resume_command(path))
    assert words[:3] == ["python", "-m", "vardiu_pyro.fit"] and len(words) == 4
    (override,) = OverridesParser.create().parse_overrides(words[3:])
    assert override.key_or_group == "trainer.resume" and override.value() == path


def test_a_users_own_network_class_may_take_other_values_for_the_shipped_keys():
    """The checks of sizes and names are the shipped classes': a ``_target_`` of one's own means what it means."""
    validate_config(config("guide._target_=tests.faults.ScoreOnlyGuide", "objective.importance_samples=0", "guide.activation=elu",
                           "guide.width=[64,64]"))
    with pytest.raises(ConfigError, match=r"^guide.activation=elu: choose one of"):
        validate_config(config("guide.activation=elu"))


def test_an_objective_that_names_no_networks_gets_no_note():
    """Without ``network_names`` it is unknown whether an objective trains a guide: no note then."""
    assert unused_overrides(config("objective._target_=vardiu_pyro.objectives.base.Objective"), ["guide=flow"]) == []


def teacher_config(path):
    return config("teacher._target_=tests.faults.PathTeacher", f"+teacher.path={path}")


class PlantsAMarker:
    """Unpickling this runs ``open(marker, 'w')``: code execution on load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("case", ["not a directory", "empty", "truncated safetensors", "malformed json",
                                  "code-running pickle"])
def test_a_bad_teacher_directory_is_rejected(tmp_path, case):
    folder = tmp_path / "teacher"
    folder.mkdir()
    marker = tmp_path / "pwned"
    if case == "not a directory":
        folder.rmdir()
        folder.write_text("weights")
    elif case == "truncated safetensors":
        save_file({"w": torch.ones(100)}, str(folder / "model.safetensors"))
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[:-40])
    elif case == "malformed json":
        save_file({"w": torch.ones(2)}, str(folder / "model.safetensors"))
        (folder / "config.json").write_text("{'dim': 2,")
    elif case == "code-running pickle":
        torch.save({"w": torch.ones(2), "payload": PlantsAMarker(marker)}, folder / "model.pt")
    expected = {"not a directory": "not a directory", "empty": "holds no weights",
                "truncated safetensors": "model.safetensors is truncated", "malformed json": "config.json is not valid JSON",
                "code-running pickle": "refusing to load model.pt"}[case]
    with pytest.raises(ConfigError) as info:
        validate_config(teacher_config(folder))
    assert str(info.value).startswith(f"teacher.path={folder}: {expected}") and "\n" not in str(info.value)
    assert not marker.exists()  # the pickle's code never ran


def test_a_good_teacher_directory_passes_and_plain_pickles_load(tmp_path):
    folder = tmp_path / "teacher"
    (folder / "unet").mkdir(parents=True)
    save_file({"w": torch.ones(2)}, str(folder / "unet" / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"dim": 2}))
    torch.save({"w": torch.arange(3.0)}, folder / "ema.pt")
    validate_config(teacher_config(folder))
    assert torch.equal(load_torch_file(folder / "ema.pt")["w"], torch.arange(3.0))


def learned_teacher_dir(folder, case):
    """A directory for ``teacher=learned``: a good tiny EDMDenoiser, then broken as ``case`` says."""
    from vardiu_pyro.models import EDMDenoiser

    EDMDenoiser(data_shape=[3] if case == "wrong data shape" else [2], width=16, depth=2).save_pretrained(folder)
    if case == "no config.json":
        (folder / "config.json").unlink()
    elif case == "another class":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(dict(config, _class_name="UNet2DModel")))
    elif case == "no weights file":
        (folder / "diffusion_pytorch_model.safetensors").rename(folder / "ema.safetensors")
    elif case == "weights of another network":
        EDMDenoiser(data_shape=[2], width=32, depth=2).save_pretrained(folder / "wide")
        (folder / "wide" / "diffusion_pytorch_model.safetensors").replace(folder / "diffusion_pytorch_model.safetensors")
    elif case in ("a tensor missing", "tensors renamed"):  # diffusers only logs these, leaving weights uninitialised
        from safetensors.torch import load_file, save_file

        weights = load_file(folder / "diffusion_pytorch_model.safetensors")
        if case == "a tensor missing":
            del weights["net.net.2.weight"]
        else:
            weights = {f"module.{k}": v for k, v in weights.items()}  # as an AveragedModel's state_dict names them
        save_file(weights, folder / "diffusion_pytorch_model.safetensors")
    return folder


LEARNED_TEACHER_ERRORS = {
    "no config.json": "no config.json there (expected a directory written by `python -m vardiu_pyro.train_teacher`",
    "another class": "config.json describes UNet2DModel, not an EDMDenoiser",
    "no weights file": "no diffusion_pytorch_model.safetensors there",
    "weights of another network": "the weights do not load into the denoiser its config.json describes (Error(s) in "
                                  "loading state_dict for EDMDenoiser: size mismatch for net.net.0.weight",
    "wrong data shape": "the denoiser's data shape (3,) differs from the target's (2,)",
    "a tensor missing": "the weights do not load into the denoiser its config.json describes (missing: net.net.2.weight)",
    "tensors renamed": "the weights do not load into the denoiser its config.json describes (missing: ",
}


@pytest.mark.parametrize("case", list(LEARNED_TEACHER_ERRORS))
def test_a_malformed_learned_teacher_is_rejected_with_one_line(tmp_path, case):
    folder = learned_teacher_dir(tmp_path / "teacher", case)
    with pytest.raises(ConfigError) as info:
        fit(config(*TINY, "teacher=learned", f"teacher.path={folder}"), tmp_path / "run")
    message = str(info.value)
    assert message.startswith(f"teacher.path={folder}: {LEARNED_TEACHER_ERRORS[case]}"), message
    assert "\n" not in message
    assert not (tmp_path / "run" / METRICS).exists()  # rejected before any work


def test_learned_teacher_without_a_path_or_with_a_missing_one_is_rejected():
    with pytest.raises(ConfigError, match=r"^teacher.path: Missing mandatory value"):
        validate_config(config(*TINY, "teacher=learned"))
    with pytest.raises(ConfigError, match=r"^teacher.path=/no/such/teacher: no such directory$"):
        validate_config(config(*TINY, "teacher=learned", "teacher.path=/no/such/teacher"))


def test_cli_learned_teacher_of_other_data_exits_2_with_one_line(tmp_path):
    folder = learned_teacher_dir(tmp_path / "teacher", "wrong data shape")
    proc = cli([*TINY, "teacher=learned", f"teacher.path={folder}", f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == (f"vardiu-pyro: error: teacher.path={folder}: the denoiser's data shape (3,) differs "
                           "from the target's (2,) (a teacher of other data)\n")


def test_a_teacher_whose_score_has_the_wrong_shape_is_rejected(tmp_path):
    cfg = config(*TINY, "teacher._target_=tests.faults.WrongShapeTeacher")
    with pytest.raises(ConfigError, match=r"^teacher=WrongShapeTeacher: its score has shape \(3,\) per sample, "
                                          r"the target's samples have shape \(2,\)$"):
        validate_problem(build_problem(cfg, torch.device("cpu")))
    with pytest.raises(ConfigError):
        fit(cfg, tmp_path)
    assert not (tmp_path / METRICS).exists()  # rejected before any work


def test_bad_resume_directories_are_rejected(tmp_path, reference):
    with pytest.raises(ConfigError, match=r"^trainer.resume=/no/such/run: no such directory$"):
        fit(config(*SMALL, "trainer.resume=/no/such/run"))
    with pytest.raises(ConfigError, match=r"holds no checkpoint"):
        fit(config(*SMALL, f"trainer.resume={tmp_path}"))
    # a pickle posing as the checkpoint is never unpickled
    marker = tmp_path / "pwned"
    (tmp_path / CHECKPOINT).write_bytes(pickle.dumps(PlantsAMarker(marker)))
    with pytest.raises(ConfigError, match="no usable checkpoint.*not a safetensors file"):
        fit(config(*SMALL, f"trainer.resume={tmp_path}"))
    assert not marker.exists()
    # an incompatible configuration (checked before anything is written to the run)
    mtime = (reference / CHECKPOINT).stat().st_mtime_ns
    with pytest.raises(ConfigError, match=r"that run was made with generator.width=16, this configuration has "
                                          r"generator.width=32"):
        fit(config(*SMALL, "generator.width=32", f"trainer.resume={reference}"))
    with pytest.raises(ConfigError, match=r"generator.width=16, the command line asks for generator.width=32"):
        check_command_line([f"trainer.resume={reference}", "generator.width=32"])
    check_command_line([f"trainer.resume={reference}", "trainer.checkpoint_every=5", "generator.width=16"])
    assert (reference / CHECKPOINT).stat().st_mtime_ns == mtime


@pytest.mark.parametrize("argv,message", [
    (["trainer.iteratons=5"], "trainer.iteratons=5: no such key in the configuration (did you mean trainer.iterations?)"),
    (["guide=flow", "guide.hiden=3"], "guide.hiden=3: no such key in the configuration (did you mean guide.hidden?)"),
    (["trainer.zzz=1"], "trainer.zzz=1: no such key in the configuration (a new argument to a _target_ is added with "
                        "+trainer.zzz=1)"),
    (["seed=0,1"], "seed=0,1: a sweep over several values needs --multirun (-m)"),
    (["-m", "guide=gaussian,nope"], "guide=nope: no such guide option (choose one of: flow, full_gaussian, gaussian, mixture)"),
    (["target=mog41"], "target=mog41: no such target option (choose one of: mog40, mog9)"),
    (["objective=nope"], "objective=nope: no such objective option (choose one of: diff_instruct, vardiu)"),
    (["teacher=nope"], "teacher=nope: no such teacher option (choose one of: empirical, exact, learned)"),
    (["teacher=learned"], "teacher.path: Missing mandatory value: path"),
    (["objective=diff_instruct", "trainer.batch_size=33"], "trainer.batch_size=33: must be even with "
                                                           "objective.antithetic=true (each draw is used with ε and -ε)"),
    (["objective=diff_instruct", "objective.inner_steps=0"], "objective.inner_steps=0: must be >= 1"),
])
def test_command_line_errors_exit_2_with_one_line(argv, message, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["vardiu_pyro.fit", *argv])
    with pytest.raises(SystemExit) as info:
        main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err == f"vardiu-pyro: error: {message}\n"


@pytest.mark.parametrize("args,message", [
    (["guide=nope"], "guide=nope: no such guide option (choose one of: flow, full_gaussian, gaussian, mixture)"),  # caught before Hydra runs
    ([*TINY, "teacher._target_=tests.faults.WrongShapeTeacher"], "teacher=WrongShapeTeacher: its score has shape"),
])
def test_cli_bad_input_exit_code_2_no_traceback(tmp_path, args, message):
    proc = cli([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"vardiu-pyro: error: {message}")
