"""``trainer.iterations=auto``: a run sized to ``trainer.time_budget`` on the machine it runs on."""

import json

import pytest
import torch

from vardiu_pyro import budget
from vardiu_pyro.budget import (MARGIN, MEASURE_SHARE, MIN_TIMED_STEPS, BudgetRefit, Calibration, calibrate,
                               iterations_for_budget, median_step_seconds, timed_step_count)
from vardiu_pyro.fit import fit, format_summary
from vardiu_pyro.resume import load_run_checkpoint
from vardiu_pyro.validation import ConfigError

from .configs import config
from .faults import FixedRefits

TINY = ["trainer.eval_every=10", "trainer.eval_samples=400", "trainer.batch_size=64", "generator.width=32",
        "guide.width=32", "trainer.progress=false", "trainer.ema_decay=0"]


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
    assert c.timed_steps == 10  # 2% of 100 s holds far more than 10 tiny steps
    assert c.iterations == iterations_for_budget(100, c.step_seconds, c.eval_seconds, 10, c.spent_seconds)
    assert cfg.trainer.iterations == "auto"  # measuring changes nothing; fit_to_budget sets the count


def test_the_measurement_takes_a_small_share_of_a_short_budget():
    """200 steps of 90 ms would be 12% of 150 s: 2% of it is 33 steps; the default's 12 ms steps in 840 s stay 200."""
    assert (MEASURE_SHARE, MIN_TIMED_STEPS) == (0.02, 20)
    assert timed_step_count(150.0, 0.090, 200) == 33
    assert timed_step_count(840.0, 0.012, 200) == 200
    assert timed_step_count(10.0, 0.090, 200) == 20  # never fewer than the minimum
    assert timed_step_count(10.0, 0.090, 12) == 12  # nor more than asked for
    assert timed_step_count(10.0, 0.0, 200) == 200  # no pace to go by: as asked
    cfg = config(*TINY, "trainer.iterations=auto", "trainer.time_budget=0.5")  # 2% of it: 10 ms, under 20 steps
    c = calibrate(cfg, torch.device("cpu"), warmup=4, steps=200)
    assert c.timed_steps == MIN_TIMED_STEPS


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


def test_auto_run_records_its_count_and_refits_and_repeats_exactly(tmp_path, capsys, monkeypatch):
    """The chosen count and every re-fit are the run's configuration (the schedules' length with them); given
    them, the same seed gives the same run. Measurement and re-fits are replaced by fixed ones, so that the count
    does not depend on how loaded the machine is."""
    from vardiu_pyro import fit as fit_module

    monkeypatch.setattr(budget, "calibrate", lambda cfg, device: Calibration(6.0, 0.01, 0.02, 0.5, 30))
    monkeypatch.setattr(fit_module, "BudgetRefit", FixedRefits)
    auto = fit(config(*TINY, "trainer.iterations=auto", "trainer.time_budget=6"), tmp_path / "auto")
    assert auto["calibration"]["iterations"] == 30 and auto["iteration"] == 40
    trainer = auto["config"]["trainer"]
    assert (trainer["iterations"], trainer["schedule_iterations"], trainer["refits"]) == (40, 30, [[10, 30], [30, 50]])
    assert auto["config"]["sigma"]["law"]["power"]["iterations"] == 30 and auto["config"]["optim"]["iterations"] == 30
    state, _ = load_run_checkpoint(tmp_path / "auto")  # what trainer.resume continues with: the count, not auto
    assert json.loads(state["config"])["trainer"] == trainer
    repeat = "trainer.iterations=40 trainer.schedule_iterations=30 'trainer.refits=[[10,30],[30,50]]'"
    assert f"{repeat} repeats it" in format_summary(auto, tmp_path / "auto")
    assert f"{repeat} repeats it" in capsys.readouterr().out
    fixed = fit(config(*TINY, "trainer.iterations=40", "trainer.schedule_iterations=30",
                       "trainer.refits=[[10,30],[30,50]]"), tmp_path / "fixed")
    assert "calibration" not in fixed
    assert fixed["loss"] == auto["loss"] and fixed["log_mmd"] == auto["log_mmd"]
    plain = fit(config(*TINY, "trainer.iterations=40"), tmp_path / "plain")  # the same count, schedules not stretched
    assert plain["loss"] != auto["loss"]


def test_budget_refit_is_the_cost_model_on_the_runs_own_pace():
    refit = BudgetRefit(time_budget=100.0, eval_seconds=1.0)
    # 1000 iterations in 10 s since the start (at 2 s): 0.01 s each; (1 - 0.1)(100 - 12 - 2) = 77.4 s left -> 7740
    assert refit(iteration=1000, iterations=5000, seconds=12.0, started=(0, 2.0)) == 8700  # 1000 + 7740, rounded
    assert refit(iteration=1000, iterations=8700, seconds=12.0, started=(0, 2.0)) == 8700
    assert refit(iteration=1000, iterations=8650, seconds=12.0, started=(0, 2.0)) == 8650  # a gain under 1%: kept
    assert refit(iteration=1000, iterations=8750, seconds=12.0, started=(0, 2.0)) == 8700  # a cut: always made
    assert refit(iteration=1000, iterations=5000, seconds=12.0, started=(500, 7.0)) == 8700  # the pace since start
    # slower than planned: fewer; out of time: still round_to iterations left, so that the schedules can end
    assert refit(iteration=1000, iterations=5000, seconds=52.0, started=(0, 2.0)) == 1800  # 0.05 s each, 41.4 s left
    assert refit(iteration=1000, iterations=5000, seconds=99.0, started=(0, 2.0)) == 1100
    assert refit(iteration=1050, iterations=5000, seconds=99.0, started=(0, 2.0)) == 1100
    assert refit(iteration=0, iterations=5000, seconds=3.0, started=(0, 2.0)) == 5000  # nothing to go by yet
    # a budget too short for round_to iterations: not rounded up to it (iterations_for_budget does not either)
    short = BudgetRefit(time_budget=4.0, eval_seconds=0.1)
    # 17 iterations in 1.7 s since the start (at 1 s): 0.1 s each; (1 - 0.1)(4 - 2.7 - 0.2) = 0.99 s left -> 9 more
    assert short(iteration=17, iterations=47, seconds=2.7, started=(0, 1.0)) == 26
    assert short(iteration=17, iterations=47, seconds=3.9, started=(0, 1.0)) == 18  # out of time: one more


def test_a_budget_too_small_for_one_iteration_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"^trainer.time_budget=0.001: not even one iteration fits"):
        fit(config(*TINY, "trainer.iterations=auto", "trainer.time_budget=0.001"), tmp_path)


def test_the_measured_steps_see_the_start_of_the_schedule_as_a_runs_steps_do(monkeypatch):
    """The probe's schedule is PROBE_LENGTH times its steps: every timed step's σ law has a power near the ramp's
    start, not its end, which a probe as short as its steps reached at once (and overestimated the step)."""
    from vardiu_pyro import build

    seen = []
    real = build.build_objective

    def recording(cfg, problem):
        objective = real(cfg, problem)
        step = objective.step
        objective.step = lambda i: (seen.append(problem.sigma_law.power(i)), step(i))[1]
        return objective

    monkeypatch.setattr(budget, "build_objective", recording)
    cfg = config(*TINY, "trainer.iterations=auto", "trainer.time_budget=100")
    calibrate(cfg, torch.device("cpu"), warmup=2, steps=10)
    start, end = cfg.sigma.power_start, cfg.sigma.power_end
    assert len(seen) == 12 and budget.PROBE_LENGTH >= 100 and cfg.sigma.curriculum == 0.5 and end - start > 1
    assert max(seen) <= start + 0.02 * (end - start) + 1e-9  # the first 1% of the schedule: 2% of a ramp that ends halfway
