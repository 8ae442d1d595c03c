"""Data-parallel training under torchrun (gloo on CPU): one step equals one step on both ranks' samples."""

import json
import os
import subprocess
import sys

import pyro
import pytest
import torch

from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.checkpoint import load_checkpoint
from vardiu_pyro.distributed import DataParallel, rank_seed, secondary_rank_overrides
from vardiu_pyro.fit import fit

from .configs import config
from .faults import KILL_ENV
from .test_reliability import REPO, assert_same_state

# SGD without clipping: the step is -lr times the gradient itself, so the test sees whether the
# ranks' gradients were averaged (Adam's first step is nearly sign(gradient), blind to a sum or a mean)
ONE_STEP = ["trainer.iterations=1", "trainer.eval_every=1", "trainer.eval_samples=200", "trainer.batch_size=32",
            "generator.width=8", "guide.width=8", "trainer.progress=false", "trainer.threads=1", "device=cpu",
            "optim.optimizer=sgd", "~optim.betas", "optim.lr=0.05", "optim.max_grad_norm=null",
            "optim.schedule=constant", "seed=5"]
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "TORCHELASTIC_RUN_ID", "GROUP_RANK", "ROLE_RANK")


def one_step_on(ranks, seed=5):
    """Networks after one step of a single process that saw the samples of ``ranks`` (averaged gradients)."""
    pyro.clear_param_store()
    cfg = config(*ONE_STEP)
    pyro.set_rng_seed(seed)  # as fit: the same networks on every rank
    objective = build_objective(cfg, build_problem(cfg, torch.device("cpu")))
    svi = objective.svi
    for rank in ranks:  # each rank's own draws, gradients accumulated
        pyro.set_rng_seed(rank_seed(seed, rank))
        svi.loss_and_grads(svi.model, svi.guide, cfg.trainer.batch_size, iteration=0)
    params = [p for net in objective.networks.values() for p in net.parameters()]
    for p in params:
        p.grad /= len(ranks)
    objective.optim(params)
    return {name: {k: v.detach().clone() for k, v in net.state_dict().items()} for name, net in objective.networks.items()}


def test_two_gloo_ranks_take_the_step_of_one_process_on_both_ranks_samples(tmp_path):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = torchrun(ONE_STEP, cwd, tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    # one run directory, resolved by rank 0 (the default outputs/<date>/<time>), and nothing else
    assert os.listdir(cwd) == ["outputs"]
    (run,) = list((cwd / "outputs").glob("*/*"))
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [".hydra", "checkpoint.safetensors", "fit.log", "job.json", "metrics.jsonl", "metrics.png", "samples.png",
         "summary.json"])
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1  # one evaluation, by one rank
    assert proc.stdout.count("vardiu-pyro: 1 iterations") == 1  # one summary printed
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2

    ckpt = load_checkpoint(run / "checkpoint.safetensors")["objective"]["networks"]
    both, first = one_step_on([0, 1]), one_step_on([0])
    moved = False
    for name in ("generator", "guide"):
        for key, value in both[name].items():
            torch.testing.assert_close(ckpt[name][key], value, rtol=1e-5, atol=1e-6)
            moved |= not torch.allclose(value, first[name][key], rtol=1e-3, atol=1e-5)
    assert moved  # rank 1 drew its own noise, and its gradient counted


def test_distributed_needs_torchrun(tmp_path, monkeypatch):
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError, match="launch with torchrun"):
        fit(config(*ONE_STEP, "trainer.distributed=true"), tmp_path)


def test_torchrun_without_distributed_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="trainer.distributed=true"):
        fit(config(*ONE_STEP), tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_sweep_under_torchrun_is_refused(monkeypatch, capsys):
    from vardiu_pyro import fit as fit_module

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(sys, "argv", ["fit", "-m", "seed=0,1"])
    with pytest.raises(SystemExit) as exit_info:
        fit_module.main()
    assert exit_info.value.code == 2 and "sweep (-m) without torchrun" in capsys.readouterr().err


def test_only_secondary_ranks_silence_hydra(monkeypatch):
    for k in TORCHRUN_ENV:
        monkeypatch.delenv(k, raising=False)
    assert secondary_rank_overrides() == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert secondary_rank_overrides() == []
    monkeypatch.setenv("RANK", "1")
    assert {"hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra.run.dir=."} <= set(secondary_rank_overrides())


def test_rank_seeds_differ_within_a_run_and_across_nearby_seeds():
    seeds = {rank_seed(seed, rank) for seed in range(8) for rank in range(8)}
    assert len(seeds) == 64 and rank_seed(3, 0) == 3


def test_average_gradients_over_two_processes(tmp_path):
    from tests.distributed_worker import average_on_two_ranks

    torch.multiprocessing.spawn(average_on_two_ranks, args=(str(tmp_path / "rdzv"), str(tmp_path / "grads")), nprocs=2)
    for rank in (0, 1):
        g = torch.load(tmp_path / f"grads.{rank}")
        assert torch.equal(g[0], torch.full((3,), 1.5))
        assert torch.equal(g[1], torch.full((3,), 2.0))
        assert g[2] is None  # no rank had a gradient: the optimiser skips it, as in one process


def test_a_rank_that_dropped_its_step_makes_every_rank_skip_it(tmp_path):
    """A rank whose loss was not finite has no gradient at all: the mean is NaN on every rank, so every optimiser
    skips the step and counts it (a zero there would have stepped on the other ranks' gradient at half its size)."""
    from tests.distributed_worker import average_with_a_dropped_rank

    torch.multiprocessing.spawn(average_with_a_dropped_rank, args=(str(tmp_path / "rdzv"), str(tmp_path / "grads")),
                                nprocs=2)
    for rank in (0, 1):
        g = torch.load(tmp_path / f"grads.{rank}")
        assert g[0].isnan().all() and g[1] is None


def torchrun(args, cwd, env=None, nproc=2, tmp=None):
    """``torchrun --standalone`` of ``vardiu_pyro.fit`` with ``trainer.distributed=true``; its agent leaves a
    torchelastic_* log folder in the temporary directory: ``tmp`` (default ``cwd``), not the machine's /tmp."""
    environ = {k: v for k, v in os.environ.items() if k not in TORCHRUN_ENV and k != KILL_ENV}
    environ["PYTHONPATH"] = os.pathsep.join([str(REPO), environ.get("PYTHONPATH", "")])  # tests.faults
    environ["TMPDIR"] = str(tmp or cwd)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "-m", "vardiu_pyro.fit", "trainer.distributed=true", *args],
                          cwd=cwd, env={**environ, **(env or {})}, capture_output=True, text=True, timeout=600)


def test_a_data_parallel_run_stopped_by_sigterm_resumes_exactly(tmp_path):
    """Both ranks agree to stop, rank 0 checkpoints every rank's random state, and the resumed run
    (each rank continuing its own noise) ends bit-identical to the uninterrupted one."""
    args = ["trainer.iterations=8", "trainer.eval_every=4", "trainer.eval_samples=200", "trainer.batch_size=16",
            "generator.width=8", "guide.width=8", "trainer.progress=false", "trainer.threads=1", "device=cpu",
            "trainer.checkpoint_every=3", "seed=5", "teacher._target_=tests.faults.SignallingTeacher"]
    reference, run = tmp_path / "reference", tmp_path / "run"
    proc = torchrun([*args, f"hydra.run.dir={reference}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # score call 1 is the shape check, call 6 the step that completes iteration 5 (after the checkpoint at 3)
    proc = torchrun([*args, f"hydra.run.dir={run}"], tmp_path, env={KILL_ENV: "TERM:6"})
    assert proc.returncode != 0 and "stopped by SIGTERM at iteration 5" in proc.stderr, proc.stderr[-4000:]
    stopped = load_checkpoint(run / "checkpoint.safetensors")
    assert stopped["iteration"] == 5 and len(stopped["rank_rng"]) == 2
    assert not torch.equal(stopped["rank_rng"][0]["torch"], stopped["rank_rng"][1]["torch"])  # each rank its own noise
    proc = torchrun([f"trainer.resume={run}", f"hydra.run.dir={tmp_path / 'resume'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    got, want = load_checkpoint(run / "checkpoint.safetensors"), load_checkpoint(reference / "checkpoint.safetensors")
    assert got["iteration"] == want["iteration"] == 8
    for key in ("objective", "ema", "rank_rng"):
        assert_same_state(got[key], want[key], key)
    clock = ("seconds", "train_seconds")
    assert ([{k: v for k, v in r.items() if k not in clock} for r in got["records"]]
            == [{k: v for k, v in r.items() if k not in clock} for r in want["records"]])


class RecordingParallel(DataParallel):
    """One process standing for rank 0 of two: records which parameters each all-reduce receives."""

    def __init__(self):
        super().__init__(rank=0, world_size=2, device=torch.device("cpu"), backend="gloo")
        self.reduced = []

    def broadcast_modules(self, modules):
        pass

    def average_gradients(self, params):
        self.reduced.append(list(params))


def test_diff_instruct_averages_the_fake_score_gradients_too():
    """Every optimiser of the objective is hooked: Diff-Instruct's fake score (K DSM steps) and generator."""
    pyro.clear_param_store()
    cfg = config(*ONE_STEP, "objective=diff_instruct", "objective.inner_steps=2", "objective.fake_score.width=8",
                 "objective.fake_score.depth=2")
    objective = build_objective(cfg, build_problem(cfg, torch.device("cpu")))
    parallel = RecordingParallel()
    parallel.prepare(objective, seed=5)
    objective.step(0)
    fake = [p for p in objective.fake_score.parameters() if p.requires_grad]
    generator = list(objective.generator.parameters())
    assert [[id(p) for p in ps] for ps in parallel.reduced] == [[id(p) for p in fake]] * 2 + [[id(p) for p in generator]]
