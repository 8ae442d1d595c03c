"""The schedule clock: positions on the schedules of a run that re-fits its iteration count."""

import math

import pytest
import torch

from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.optim import PerNetworkOptim, lr_factor
from vardiu_pyro.schedule_clock import check_refits, schedule_position
from vardiu_pyro.training import Trainer

from .configs import config


def running_positions(iterations: int, length: int, refits: list[list[int]]) -> list[float]:
    """The positions as the run computed them, each with the re-fits made so far and the count of that moment."""
    counts = [length] + [count for _, count in refits[1:]] + [iterations]  # the count from each knot on
    out = []
    for i in range(iterations + 1):
        known = [knot for knot in refits if knot[0] <= i]
        out.append(schedule_position(i, counts[len(known)], length, known))
    return out


def test_without_refits_the_position_is_the_iteration_exactly():
    assert [schedule_position(i, 1000) for i in (0, 1, 499, 1000)] == [0.0, 1.0, 499.0, 1000.0]
    assert all(schedule_position(i, 37, 37, []) == float(i) for i in range(38))


def test_a_refit_stretches_what_is_ahead_and_ends_the_schedules_at_the_end():
    refits = [[100, 400], [300, 600]]  # planned 400, then 600 from iteration 100, then 500 from 300
    s = [schedule_position(i, 500, 400, refits) for i in range(501)]
    assert s[:101] == [float(i) for i in range(101)]  # before the first re-fit: the plan of 400, the identity
    assert s[500] == pytest.approx(400.0) and s[0] == 0.0
    assert all(b > a for a, b in zip(s, s[1:]))  # monotone: the curriculum never goes back
    # continuous at each knot: the segment before it, continued to the knot, meets the segment after it
    assert s[300] == pytest.approx(100 + 200 * 300 / 500)  # 200 of the 500 iterations after 100: 2/5 of 300 to go
    assert s[301] - s[300] == pytest.approx((400 - s[300]) / 200)
    # what the run computed as it went, before it knew its later re-fits: the same numbers, exactly
    assert s == running_positions(500, 400, refits)


def test_refits_must_be_consistent():
    check_refits([], 10, 10)
    check_refits([[5, 10], [8, 20]], 12, 10)
    with pytest.raises(ValueError, match="the schedule length 10"):
        check_refits([[5, 12]], 20, 10)
    with pytest.raises(ValueError, match="after 5 and before its count 9"):
        check_refits([[5, 10], [9, 9]], 20, 10)
    with pytest.raises(ValueError, match="beyond the last re-fit's iteration 8"):
        check_refits([[5, 10], [8, 20]], 8, 10)
    with pytest.raises(ValueError, match="integers"):
        check_refits([[5.5, 10]], 20, 10)


def test_the_learning_rate_follows_the_position():
    net = torch.nn.Linear(2, 2)
    optim = PerNetworkOptim({"net": net}, lr=1.0, schedule="cosine", iterations=400, end_factor=0.1)
    assert optim.current_lr_factor() == 1.0  # its own count: no step yet
    optim.follow(100.0, 400)
    assert optim.current_lr_factor() == lr_factor(100, "cosine", 400, end_factor=0.1)
    optim.follow(400.0, 400)
    assert optim.current_lr_factor() == pytest.approx(0.1)
    twice = PerNetworkOptim({"net": net}, lr=1.0, schedule="cosine", iterations=800, end_factor=0.1)  # 2 steps an iteration
    twice.follow(100.0, 400)
    optim.follow(100.0, 400)
    assert twice.schedule_step == 200.0 and twice.current_lr_factor() == optim.current_lr_factor()


TINY = ["trainer.eval_every=10", "trainer.eval_samples=200", "trainer.batch_size=32", "generator.width=16",
        "guide.width=16", "trainer.progress=false", "trainer.ema_decay=0", "trainer.iterations=30"]


def test_the_trainer_steps_the_objective_and_its_optimisers_along_the_stretched_schedules(tmp_path):
    cfg = config(*TINY)
    torch.manual_seed(0)
    problem = build_problem(cfg, torch.device("cpu"))
    objective = build_objective(cfg, problem)
    positions, factors = [], []
    step = objective.step

    def recording(position):
        positions.append(position)
        factors.append(objective.optim.current_lr_factor())
        return step(position)

    objective.step = recording
    refit = lambda iteration, iterations, seconds, started: 60 if iteration == 10 else iterations  # noqa: E731
    trainer = Trainer(objective, None, tmp_path, iterations=30, eval_every=10, progress=False, refit=refit,
                      config={"trainer": {"iterations": 30, "refits": []}})
    trainer._evaluate = lambda: {"loss": 0.0, "log_mmd": 0.0}  # no evaluator: the clock is what is under test
    trainer._plot = lambda: None
    trainer.fit()
    assert trainer.iteration == 60 and trainer.refits == [[10, 30]] and trainer.config["trainer"]["iterations"] == 60
    assert positions[:10] == [float(i) for i in range(10)]
    assert positions[10:] == pytest.approx([10 + (i - 10) * 20 / 50 for i in range(10, 60)])
    assert trainer.position == 30.0  # the schedules end with the run
    optim = objective.optim
    assert factors == pytest.approx([lr_factor(p, optim.schedule, optim.iterations, optim.warmup, optim.end_factor)
                                     for p in positions])
    assert math.isclose(problem.sigma_law.power(trainer.position), cfg.sigma.power_end)


def test_a_consistent_schedule_setting_passes():
    from vardiu_pyro.validation import validate_config

    validate_config(config("trainer.iterations=120", "trainer.schedule_iterations=100",
                           "trainer.refits=[[50,100],[80,130]]"))
