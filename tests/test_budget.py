"""``trainer.iterations=auto``: a run sized to ``trainer.time_budget`` on the machine it runs on."""

import json

import pytest
import torch
from hydra import compose, initialize_config_module

from vardiu_pyro import budget
from vardiu_pyro.budget import MARGIN, Calibration, calibrate, iterations_for_budget, median_step_seconds
from vardiu_pyro.fit import fit, format_summary
from vardiu_pyro.resume import load_run_checkpoint
from vardiu_pyro.validation import ConfigError

TINY = ["trainer.eval_every=10", "trainer.eval_samples=400", "trainer.batch_size=64", "generator.width=32",
        "guide.width=32", "trainer.progress=false", "trainer.ema_decay=0"]


def config(*overrides):
    with initialize_config_module(version_base="1.3", config_module="vardiu_pyro.configs"):
        return compose("config", overrides=list(overrides))


def test_iterations_for_budget_is_the_cost_model():
    # (1 - 0.1) 100 - 2 spent - 2 evaluations (the final one, the plots) = 86 s at 0.01 + 1/1000 s an iteration
    assert MARGIN == 0.1
    assert iterations_for_budget(100.0, 0.01, 1.0, 1000, spent_seconds=2.0) == 7800  # 7818 rounded down
    assert iterations_for_budget(100.0, 0.01, 1.0, 1000, spent_seconds=2.0, round_to=1) == 7818
    assert iterations_for_budget(1.0, 0.01, 0.0, 1000, margin=0.0) == 100
    assert iterations_for_budget(0.5, 0.01, 0.0, 1000, margin=0.0) == 50  # below round_to: not rounded away
    assert iterations_for_budget(10.0, 0.01, 6.0, 1000) == 0  # two evaluations do not fit
    assert iterations_for_budget(10.0, 0.01, 0.0, 1000, spent_seconds=12.0) == 0
    counts = [iterations_for_budget(b, 0.007, 1.5, 5000, spent_seconds=2.0) for b in (60, 120, 300, 840, 3600)]
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0
    # what the model counts fits in the budget, less the margin
    n = iterations_for_budget(840.0, 0.007, 1.5, 5000, spent_seconds=2.0, round_to=1)
    assert n * 0.007 + (n / 5000 + 2) * 1.5 + 2.0 <= (1 - MARGIN) * 840.0 < (n + 1) * 0.007 + ((n + 1) / 5000 + 2) * 1.5 + 2.0


def test_calibrate_measures_and_leaves_the_random_state_alone():
    cfg = config(*TINY, "trainer.iterations=auto", "trainer.time_budget=100")
    before = torch.get_rng_state()
    c = calibrate(cfg, torch.device("cpu"), warmup=2, steps=10)
    assert torch.equal(torch.get_rng_state(), before)
    assert c.step_seconds > 0 and c.eval_seconds > 0 and c.spent_seconds > 0 and c.time_budget == 100
    assert c.iterations == iterations_for_budget(100, c.step_seconds, c.eval_seconds, 10, c.spent_seconds)
    assert cfg.trainer.iterations == "auto"  # measuring changes nothing; fit_to_budget sets the count


@pytest.mark.parametrize("first, steps", [(20, 200), (0, 25), (5, 7)])
def test_the_step_is_the_median_window_so_a_burst_of_other_work_does_not_move_it(monkeypatch, first, steps):
    """Every step runs once, in order; a burst that slows a tenth of them fiftyfold (the mean of the steps: about 5
    times the step) leaves the median window's step as it is."""
    clock, seen = [0.0], []
    burst = range(first + steps // 5, first + steps // 5 + max(1, steps // 10))

    def step(i):
        seen.append(i)
        clock[0] += 0.5 if i in burst else 0.01

    monkeypatch.setattr(budget.time, "perf_counter", lambda: clock[0])
    assert median_step_seconds(step, first, steps) == pytest.approx(0.01)
    assert seen == list(range(first, first + steps))
    assert clock[0] / steps > 0.04  # what the mean would have said


def test_auto_run_records_its_count_and_repeats_exactly(tmp_path, capsys, monkeypatch):
    """The chosen count is the run's configuration (schedules included); with that count given, the same seed
    gives the same run. The measurement is replaced by a fixed one, so that the count does not depend on how
    loaded the machine is."""
    monkeypatch.setattr(budget, "calibrate", lambda cfg, device: Calibration(6.0, 0.01, 0.02, 0.5, 30))
    auto = fit(config(*TINY, "trainer.iterations=auto", "trainer.time_budget=6"), tmp_path / "auto")
    n = auto["calibration"]["iterations"]
    assert n == 30 and auto["iteration"] == n
    assert auto["config"]["trainer"]["iterations"] == n
    assert auto["config"]["sigma"]["law"]["power"]["iterations"] == n and auto["config"]["optim"]["iterations"] == n
    state, _ = load_run_checkpoint(tmp_path / "auto")  # what trainer.resume continues with: the count, not auto
    assert json.loads(state["config"])["trainer"]["iterations"] == n
    assert f"trainer.iterations={n} repeats this run" in format_summary(auto, tmp_path / "auto")
    assert capsys.readouterr().out.count(f"trainer.iterations={n} repeats this run") == 2  # at the start and the end
    fixed = fit(config(*TINY, f"trainer.iterations={n}"), tmp_path / "fixed")
    assert "calibration" not in fixed
    assert fixed["loss"] == auto["loss"] and fixed["log_mmd"] == auto["log_mmd"]


def test_a_budget_too_small_for_one_iteration_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^trainer.time_budget=0.001: not even one iteration fits"):
        fit(config(*TINY, "trainer.iterations=auto", "trainer.time_budget=0.001"), tmp_path)


def test_the_measured_steps_see_the_start_of_the_schedule_as_a_runs_steps_do(monkeypatch):
    """The probe's schedule is PROBE_LENGTH times its steps: every timed step's σ law has a power near the ramp's
    start (0.3), not its end (2.5), which a probe as short as its steps reached at once (and overestimated the step)."""
    from vardiu_pyro import build

    seen = []
    real = build.build_objective

    def recording(cfg, problem):
        objective = real(cfg, problem)
        step = objective.step
        objective.step = lambda i: (seen.append(problem.sigma_law.power(i)), step(i))[1]
        return objective

    monkeypatch.setattr(budget, "build_objective", recording)
    calibrate(config(*TINY, "trainer.iterations=auto", "trainer.time_budget=100"), torch.device("cpu"),
              warmup=2, steps=10)
    assert len(seen) == 12 and budget.PROBE_LENGTH >= 100
    assert max(seen) <= 0.3 + 0.02 * (2.5 - 0.3) + 1e-9  # the first 1% of the schedule: 2% of a ramp that ends halfway
