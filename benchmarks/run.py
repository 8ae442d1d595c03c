"""Every benchmark of vardiu-pyro in one command, and the results page it writes.

    python benchmarks/run.py --quick        # minutes: a smoke version of every benchmark
    python benchmarks/run.py                # the full suite (hours on a 2-core CPU)

Writes ``docs/results.md`` (tables, with the machine, the date, the commit and the exact command),
``docs/results.json`` (every number) and the plots it links to, ``docs/results/*.png``. Every number
on the page comes from this script. The benchmarks:

1. framework overhead: one SVI step against its plain-torch twin (``step_overhead.py``), batch 256
   and 1024, A/B interleaved; median ratio and its spread; both steps phase by phase, one Pyro site's cost, and
   how much slower code runs as the first thing after a matrix product (``after_products.py``); and both steps
   compiled (``objective.compile=true`` and the twin's loss through the same ``GradientGraph``), in the same rounds;
2. hardware efficiency: a step's floating-point operations over its time, against this machine's
   own matrix-multiply rate, measured again in every round beside the steps (the median over rounds of the
   round's fraction), for a few execution settings (the compiled step, ``objective.compile=true``; threads, fused /
   foreach / per-tensor Adam, ``torch.compile`` of the networks), beside the step's own matrix products replayed alone
   (the ceiling of that fraction);
3. quality against time: the default run beside the published recipe over seeds, side by side, with
   curves against wall-clock and iterations (``recipes.py``), the guide families (``guides.py``), VarDiU
   against Diff-Instruct with the exact and a learned teacher (``teachers_vs_diff_instruct.py``);
4. sampling: samples per second of the one-step student against the teacher's many-step diffusers
   EDM samplers (10 / 35 / 100 steps), each with its log-MMD.

GPU numbers come from ``benchmarks/gpu_check.sh`` (run on a CUDA machine; it writes
``docs/gpu_check.md``, which this page includes when it exists).

Sections can be run alone (``--sections overhead efficiency``): the page keeps the other sections
from the previous ``results.json`` of the same mode, each under the date, commit and command that
produced it (``--fresh`` drops them). So can the quality section's parts (``--sections quality sampling
--quality-parts recipes``: under an hour of the suite's 3.3 on a 2-core CPU), the others kept likewise, each under
the invocation that ran it. Intermediate runs go under ``outputs/benchmarks/<full|quick>/`` and finished runs
are read back, so an interrupted benchmark resumes. ``--smoke`` is an even smaller budget than ``--quick``, for the
test suite. Where the quality section has not been run, the page
includes the reports the quality scripts wrote into ``docs/`` on their own (``recipes.md``, ``guides.md``,
``teachers_vs_diff_instruct.md``), each with its own command; ``--render`` writes the page again from
``results.json`` without running anything.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import after_products  # noqa: E402
import step_overhead  # noqa: E402
from step_overhead import linear_shapes  # noqa: E402
from provenance import git_commit, machine  # noqa: E402
from quality import run_commit  # noqa: E402
import teachers_vs_diff_instruct as tvd  # noqa: E402
from recipes import PAPER_RECIPE  # noqa: E402
from vardiu_pyro.host_memory import retain_freed_memory  # noqa: E402
from vardiu_pyro.validation import compose_config  # noqa: E402

SECTIONS = ("overhead", "efficiency", "quality", "sampling")
# the quality scripts' reports: part (key ``<part>_md`` in the quality section's results), file in docs/, title on the page
QUALITY_REPORTS = (("recipes", "recipes.md", "The default against the published recipe (`benchmarks/recipes.py`)"),
                   ("guides", "guides.md", "Guide families (`benchmarks/guides.py`)"),
                   ("teachers", "teachers_vs_diff_instruct.md",
                    "VarDiU vs Diff-Instruct, exact and learned teacher (`benchmarks/teachers_vs_diff_instruct.py`)"))
# ``--quality-parts`` runs some of them and keeps the others from the previous results.json, so the section (hours)
# can be refreshed a part at a time
QUALITY_PARTS = tuple(part for part, _, _ in QUALITY_REPORTS)

BUDGETS = {
    "full": {
        "overhead": {"batch_sizes": [256, 1024], "width": None, "rounds": 30, "steps": 20, "warmup": 20,
                     "phase_rounds": 10, "op_rounds": 6, "site_samples": 200, "after_samples": 300, "compiled": True},
        "efficiency": {"shapes": {"default": (512, None), "published recipe": (1024, 400)}, "rounds": 15, "steps": 10,
                       "warmup": 10, "compile": True, "compiled_step": True, "rate_seconds": 0.1},
        # as the reports in docs/ were made (their commands are in them): recipes side by side at the default's budget;
        # the guide families two processes at a time, one thread each, then the timing alone; VarDiU against
        # Diff-Instruct at 2,000 iterations and 150 s, two runs at a time (README, "Benchmarks": about 3.6 hours in all)
        "quality": {"seeds": [0, 1, 2], "fit": [],
                    "guides": {"args": ["--seeds", "0", "1", "2"],
                               "side_by_side": [["--families", "gaussian", "full_gaussian"], ["--families", "flow", "mixture"]]},
                    "tvd": ["--iterations", "2000", "--seconds", "150", "--jobs", "2", "--threads", "1"], "teacher": []},
        "sampling": {"num_samples": 10_000, "rounds": 5, "steps": [10, 35, 100], "eval_samples": 10_000},
    },
    "quick": {
        "overhead": {"batch_sizes": [256, 1024], "width": None, "rounds": 4, "steps": 3, "warmup": 3,
                     "phase_rounds": 2, "op_rounds": 2, "site_samples": 30, "after_samples": 20, "compiled": True},
        "efficiency": {"shapes": {"default": (512, None), "published recipe": (1024, 400)}, "rounds": 3, "steps": 3,
                       "warmup": 2, "compile": False, "compiled_step": True, "rate_seconds": 0.05},
        "quality": {"seeds": [0], "fit": ["trainer.iterations=150", "trainer.eval_every=50", "trainer.eval_samples=2000"],
                    "guides": {"args": ["--quick"]}, "tvd": ["--quick", "--seeds", "0"], "teacher": tvd.QUICK["teacher"]},
        "sampling": {"num_samples": 2000, "rounds": 2, "steps": [10, 35, 100], "eval_samples": 2000},
    },
    "smoke": {
        "overhead": {"batch_sizes": [16], "width": 16, "rounds": 2, "steps": 1, "warmup": 1, "phase_rounds": 2,
                     "op_rounds": 1, "site_samples": 2, "after_samples": 2},
        "efficiency": {"shapes": {"default": (32, 16), "published recipe": (32, 24)}, "rounds": 2, "steps": 1,
                       "warmup": 1, "compile": False, "rate_seconds": 0.005},
        "quality": {"seeds": [0], "fit": ["trainer.iterations=4", "trainer.eval_every=2", "trainer.eval_samples=200",
                                          "trainer.batch_size=32", "generator.width=16", "guide.width=16"],
                    "guides": None, "tvd": None,
                    "teacher": ["trainer.iterations=4", "trainer.eval_every=4", "trainer.batch_size=64",
                                "trainer.eval_samples=200", "denoiser.width=16", "score_error.num_samples=64",
                                "data.num_samples=1000", "sampler.num_steps=4"]},
        "sampling": {"num_samples": 200, "rounds": 1, "steps": [2, 4], "eval_samples": 200},
    },
}


# ---------------------------------------------------------------- 1. framework overhead
def bench_overhead(b: dict) -> dict:
    """SVI step vs plain-torch twin at each batch size (``step_overhead.measure``: interleaved A/B rounds), both split
    into their phases and the forward pass around its networks (``step_overhead.phase_times``), both forward passes op
    by op (``step_overhead.op_split``), what one Pyro site costs (``step_overhead.site_cost``), how much slower
    code runs as the first thing after a matrix product (``after_products.measure``, this run's threads), and with
    ``compiled`` both steps compiled in the same rounds (``step_overhead.measure``)."""
    rows = []
    for batch in b["batch_sizes"]:
        width = b["width"] or "of the configuration"
        print(f"[overhead] batch {batch}, width {width}: {b['rounds']} rounds x {b['steps']} steps per side", flush=True)
        rows.append(step_overhead.measure(batch, b["width"], b["rounds"], b["steps"], b["warmup"], [],
                                          phase_rounds=b["phase_rounds"], site_samples=b["site_samples"],
                                          op_rounds=b["op_rounds"], compiled=b.get("compiled", False)))
    print(f"[overhead] code after a matrix product: {b['after_samples']} rounds", flush=True)
    after = after_products.measure(torch.get_num_threads(), b["after_samples"])
    return {"rows": rows, "after_products": after, "targets": {"256": 1.15, "1024": 1.05}}


# ---------------------------------------------------------------- 2. hardware efficiency
def analytic_step_flops(batch: int, generator_layers: list[tuple[int, int]], guide_layers: list[tuple[int, int]],
                        teacher_matmul: tuple[int, int] = (0, 0), importance_samples: int = 0,
                        antithetic: bool = True) -> int:
    """Matrix-multiply FLOPs of one VarDiU step with MLP generator and guide (2 per multiply-add).

    ``teacher_matmul`` = (K, D) adds the exact mixture teacher's one product, responsibilities (B, K)
    times means (K, D): 2·B·K·D.

    Forward: 2·B·in·out per layer. Backward: the weight gradient (2·B·in·out) for every layer and the
    input gradient (2·B·in·out) for every layer whose input needs one: all but the generator's first
    (z needs no gradient); the guide's first layer does (x_t carries the generator's gradient).
    ``importance_samples`` = K adds the generator's pass over the K·B proposals, forward and backward with
    every input gradient (a proposal carries the guide's gradient); the guide runs once per x_t either way.
    ``antithetic``: the model's generator pass runs once per pair of z, on batch / 2 rows.
    """
    def layer(i, o, rows=batch):
        return 2 * rows * i * o
    rows = batch // 2 if antithetic else batch
    gen = sum(2 * layer(i, o, rows) for i, o in generator_layers) + sum(layer(i, o, rows) for i, o in generator_layers[1:])
    proposals = sum(3 * layer(i, o, importance_samples * batch) for i, o in generator_layers)
    gui = sum(3 * layer(i, o) for i, o in guide_layers)
    return gen + proposals + gui + 2 * batch * teacher_matmul[0] * teacher_matmul[1]


def teacher_matmul_shape(teacher) -> tuple[int, int]:
    """(K, D) of an exact Gaussian-mixture teacher's means; (0, 0) for other teachers."""
    locs = getattr(getattr(teacher, "target", None), "locs", None)
    return tuple(locs.shape) if locs is not None and locs.dim() == 2 else (0, 0)


def counted_flops(fn) -> int:
    """FLOPs of one call of ``fn`` by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


MATMUL_OPS = (torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default)


class _MatmulRecorder(TorchDispatchMode):
    """Records every matrix product (``mm``, ``addmm``, ``bmm``) that runs under it, with copies of its inputs."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMUL_OPS:  # copies keep each input's strides (a transposed weight stays transposed)
            self.calls.append((func, [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args],
                               dict(kwargs)))
        return func(*args, **kwargs)


def record_matmuls(fn) -> list[tuple]:
    """The matrix products of one call of ``fn``, as (op, inputs, kwargs), to be run again by ``replay_matmuls``."""
    with _MatmulRecorder() as recorder:
        fn()
    return recorder.calls


def replay_matmuls(calls: list[tuple]) -> None:
    """Run recorded matrix products back to back: a step's matmuls without anything else of the step."""
    for op, args, kwargs in calls:
        op(*args, **kwargs)


def matmul_rate(sizes=(256, 512, 1024), seconds: float = 0.5, dtype: torch.dtype = torch.float32) -> dict:
    """This machine's matrix-multiply rate (FLOP/s) in ``dtype`` for square n×n products; ``peak``: the best."""
    rates = {}
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        best, spent = math.inf, 0.0
        while spent < seconds:
            reps = max(1, int(2e8 // (2 * n**3)))
            tick = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            dt = (time.perf_counter() - tick) / reps
            best, spent = min(best, dt), spent + dt * reps
        rates[str(n)] = 2 * n**3 / best
    return {"by_size": rates, "peak": max(rates.values())}


def default_hidden_precision() -> str:
    """What the default ``precision`` (``auto``) runs the hidden products in on this CPU: bfloat16 or float32."""
    from vardiu_pyro.build import hidden_dtype_of
    from vardiu_pyro.nn import precision_name

    return precision_name(hidden_dtype_of(compose_config([]), torch.device("cpu")))


def thread_words(n: int) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{n} thread{'s' if n != 1 else ''}"


def efficiency_variants(b: dict) -> dict[str, dict]:
    """Execution settings to compare: (threads, Hydra overrides, compile networks). The first is the recipe as it
    runs by default (``default (N threads)``); where the budget has them, the next two are the compiled step as it
    runs and with the other precision of the hidden products. The targets at a glance read these three."""
    threads = torch.get_num_threads()
    hidden = default_hidden_precision()
    other = "float32" if hidden == "bfloat16" else "bfloat16"
    at = thread_words(threads)
    variants = {f"default ({at})": {"threads": threads, "overrides": [], "compile": False}}
    if b.get("compiled_step"):  # as it runs, and with the other precision (float32 where bfloat16 is the default)
        variants[f"compiled step, objective.compile=true ({at})"] = {"threads": threads,
                                                                     "overrides": ["objective.compile=true"],
                                                                     "compile": False}
        variants[f"compiled step, {other} hidden products ({at})"] = {
            "threads": threads, "overrides": ["objective.compile=true", f"precision={other}"], "compile": False}
    variants |= {f"{other} hidden products ({at})": {"threads": threads, "overrides": [f"precision={other}"],
                                                    "compile": False},
                f"per-tensor Adam ({at})": {"threads": threads, "overrides": ["optim.fused=false"], "compile": False},
                f"foreach Adam ({at})": {"threads": threads, "overrides": ["optim.fused=false", "+optim.foreach=true"],
                                         "compile": False}}
    if threads > 1:
        variants["1 thread"] = {"threads": 1, "overrides": [], "compile": False}
    if b.get("compile"):
        variants[f"torch.compile networks ({at})"] = {"threads": threads, "overrides": [], "compile": True}
    return variants


def build_svi(batch: int, width: int | None, overrides: list[str], compile_networks: bool = False):
    """The SVI objective at batch ``batch``, both networks at ``width`` (None: the configuration's networks)."""
    cfg = compose_config(["trainer.iterations=50000",  # any count: a step costs the same
                          *overrides, f"trainer.batch_size={batch}", *step_overhead.width_overrides(width),
                          "device=cpu", "optim.schedule=constant"])
    from vardiu_pyro.build import build_objective, build_problem

    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(False)
    problem = build_problem(cfg, torch.device("cpu"))
    objective = build_objective(cfg, problem)
    if compile_networks:
        objective.generator.net.compile()
        objective.guide.net.compile()
    return objective


def bench_efficiency(b: dict, recipes: dict[str, list[str]]) -> dict:
    """FLOP/s of the SVI step, as a fraction of the measured matmul rate, for each recipe and setting."""
    default_threads = torch.get_num_threads()
    variants = efficiency_variants(b)  # once: the names carry the starting thread count, which the loop changes
    rates = {}
    for threads in sorted({v["threads"] for v in variants.values()}):
        torch.set_num_threads(threads)
        rates[threads] = matmul_rate()
        rates[threads]["bfloat16_peak"] = matmul_rate(dtype=torch.bfloat16)["peak"]
        print(f"[efficiency] matmul rate, {threads} thread(s): {rates[threads]['peak'] / 1e9:.1f} GFLOP/s in float32, "
              f"{rates[threads]['bfloat16_peak'] / 1e9:.1f} in bfloat16", flush=True)
    rows = []
    for recipe, recipe_overrides in recipes.items():
        batch, width = b["shapes"][recipe]
        objectives = {}
        for name, v in variants.items():
            torch.set_num_threads(v["threads"])
            try:
                obj = build_svi(batch, width, [*recipe_overrides, *v["overrides"]], v["compile"])
                for i in range(b["warmup"]):
                    obj.step(i)
                objectives[name] = obj
            except Exception as e:  # e.g. torch.compile without a working C++ toolchain: report, do not stop
                print(f"[efficiency] {recipe} / {name}: skipped ({type(e).__name__}: {e})", flush=True)
                rows.append({"recipe": recipe, "setting": name, "error": f"{type(e).__name__}: {e}"[:200]})
        if not objectives:
            continue
        obj = next(iter(objectives.values()))
        flops = counted_flops(lambda: obj.step(0))
        # the ceiling: the first setting's own matrix products, replayed alone with its threads
        first_threads = variants[next(iter(objectives))]["threads"]
        ceiling = f"its matrix products alone ({thread_words(first_threads)})"
        calls = record_matmuls(lambda: obj.step(0))
        runners = {name: (variants[name]["threads"], lambda o=o: o.step(b["warmup"])) for name, o in objectives.items()}
        runners[ceiling] = (first_threads, lambda: replay_matmuls(calls))
        times = {name: [] for name in runners}
        round_rates = {threads: [] for threads in sorted({threads for threads, _ in runners.values()})}
        for r in range(b["rounds"]):
            names = list(runners)
            names = names[r % len(names):] + names[: r % len(names)]
            for name in names:
                threads, step = runners[name]
                torch.set_num_threads(threads)
                step()
                tick = time.perf_counter()
                for _ in range(b["steps"]):
                    step()
                times[name].append((time.perf_counter() - tick) / b["steps"])
            for threads, rates_seen in round_rates.items():  # the rate again in this round: drift hits both alike
                torch.set_num_threads(threads)
                rates_seen.append(matmul_rate(seconds=b["rate_seconds"])["peak"])
        analytic = analytic_step_flops(batch, linear_shapes(obj.generator), linear_shapes(obj.guide),
                                       teacher_matmul_shape(obj.elbo.teacher), obj.elbo.importance_samples,
                                       obj.model.antithetic)
        networks = step_overhead.network_shapes(obj)
        for name, t in times.items():
            seconds = statistics.median(t)
            rates_seen = round_rates[runners[name][0]]
            fractions = [flops / step_seconds / rate for step_seconds, rate in zip(t, rates_seen)]  # round by round
            q1, fraction, q3 = step_overhead.quartiles(fractions)
            rows.append({"recipe": recipe, "setting": name, "batch_size": batch, "width": width, "networks": networks,
                         "flops_counted": flops, "flops_analytic": analytic, "ms_per_step": 1e3 * seconds,
                         "gflops_per_s": flops / seconds / 1e9, "matmul_gflops_per_s": statistics.median(rates_seen) / 1e9,
                         "fraction": fraction, "fraction_q1": q1, "fraction_q3": q3, "times": t, "round_rates": rates_seen,
                         "ceiling": name == ceiling})
    torch.set_num_threads(default_threads)
    return {"rows": rows, "matmul": {str(k): v for k, v in rates.items()}, "target_fraction": 0.75,
            "default_hidden_precision": default_hidden_precision()}


# ---------------------------------------------------------------- 3. quality against time
def run_script(args: list[str]) -> None:
    cmd = [sys.executable, *args]
    print("$", " ".join(shlex.quote(a) for a in cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def run_scripts_side_by_side(commands: list[list[str]]) -> None:
    """Several scripts at the same time (each its own process); waits for all before reporting a failure."""
    processes = []
    for args in commands:
        cmd = [sys.executable, *args]
        print("$", " ".join(shlex.quote(a) for a in cmd[1:]), "&", flush=True)
        processes.append(subprocess.Popen(cmd, cwd=ROOT))
    for process in processes:
        process.wait()
    failed = [p for p in processes if p.returncode != 0]
    if failed:
        raise subprocess.CalledProcessError(failed[0].returncode, failed[0].args)


def run_guides(b: dict, folder: Path) -> None:
    """``guides.py`` as ``b`` says: in one invocation, or its families split over processes side by side (one thread
    each, no timing) and then one more invocation alone that reads the runs back and times the families."""
    script = [in_repo(HERE / "guides.py"), "--out", in_repo(folder), "--no-progress", *b["args"]]
    if b.get("side_by_side"):
        run_scripts_side_by_side([[*script, *split, "--no-timing", "--threads", "1"] for split in b["side_by_side"]])
        script.append("--only-finished")
    run_script(script)


def train_teacher(out: Path, overrides: list[str]) -> Path:
    """A learned teacher (``python -m vardiu_pyro.train_teacher``), trained once into ``out/teacher``."""
    print(f"[teacher] training into {out / 'teacher'} (read back if already there)", flush=True)
    return tvd.train_teacher(out, ["trainer.progress=false", *overrides])


def included(report: Path, figdir: Path) -> str:
    """A script's report for the page: its plot (``report.png``, linked by name) copied into ``figdir`` beside the
    page's own plots, and the link pointed there."""
    text, figure = report.read_text(), report.with_suffix(".png")
    if figure.exists():
        target = figdir / f"quality_{report.parent.name}.png"
        target.write_bytes(figure.read_bytes())
        text = text.replace(f"]({figure.name})", f"]({figdir.name}/{target.name})")
    return text


def bench_quality(b: dict, out: Path, teacher_dir: Path | None, figdir: Path,
                  parts: tuple[str, ...] = QUALITY_PARTS) -> dict:
    """Drive the quality scripts (those of ``parts`` that the budget has); collect their reports (each with its own
    command, tables and plot). ``teacher_dir``: the learned teacher, needed by the ``teachers`` part only."""
    result: dict = {}
    if "recipes" in parts:
        folder = out / "recipes"
        run_script([in_repo(HERE / "recipes.py"), *b["fit"], "--out", in_repo(folder), "--seeds", *map(str, b["seeds"])])
        result["recipes_md"] = included(folder / "recipes.md", figdir)
    if "guides" in parts and b["guides"] is not None:
        folder = out / "guides"
        run_guides(b["guides"], folder)
        result["guides_md"] = included(folder / "guides.md", figdir)
    if "teachers" in parts and b["tvd"] is not None:
        folder = out / "teachers_vs_diff_instruct"
        run_script([in_repo(HERE / "teachers_vs_diff_instruct.py"), "--out", in_repo(folder),
                    "--teacher-dir", in_repo(teacher_dir), *b["tvd"]])
        result["teachers_md"] = included(folder / "results.md", figdir)
    return result


# ---------------------------------------------------------------- 4. sampling
def load_student(run_dir: Path, device: str = "cpu") -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the trained student — its EMA when the run kept one —, the target) of a ``fit`` run directory."""
    from omegaconf import OmegaConf
    from torch.optim.swa_utils import AveragedModel

    from vardiu_pyro.build import build_problem
    from vardiu_pyro.resume import load_run_checkpoint

    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = OmegaConf.create(summary["config"])
    problem = build_problem(cfg, torch.device(device))
    state, _ = load_run_checkpoint(run_dir)
    if state["ema"] is not None:
        ema = AveragedModel(problem.generator, use_buffers=True)
        ema.load_state_dict(state["ema"])
        return ema.module.eval(), problem.target
    problem.generator.load_state_dict(state["objective"]["networks"]["generator"])
    return problem.generator.eval(), problem.target


def bench_sampling(b: dict, student_dir: Path, teacher_dir: Path, device: str = "cpu") -> dict:
    """Samples/s and log-MMD of the one-step student and of many-step teacher samplers, timed round-robin."""
    from vardiu_pyro.evaluation import Evaluator, sample_generator
    from vardiu_pyro.models.sampling import sample_teacher
    from vardiu_pyro.models.teachers import ExactTeacher, LearnedTeacher

    student, target = load_student(student_dir, device)
    learned = LearnedTeacher.from_pretrained(teacher_dir, target=target).to(device).eval()
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    exact = ExactTeacher(target).eval()
    n = b["num_samples"]
    samplers = {"one-step student (VarDiU, default run)": (1, lambda g: sample_generator(student, n, g))}
    for teacher_name, teacher in (("learned teacher", learned), ("exact teacher", exact)):
        for solver in ("euler", "dpmsolver"):
            for k in b["steps"]:
                samplers[f"{teacher_name}, {solver}, {k} steps"] = (
                    k, lambda g, t=teacher, s=solver, k=k: sample_teacher(t, n, num_steps=k, solver=s, generator=g))
    evaluator = Evaluator(target, num_samples=b["eval_samples"])
    times: dict[str, list[float]] = {name: [] for name in samplers}
    metrics = {}
    for name, (_, fn) in samplers.items():  # warm-up and quality (from a fixed seed)
        metrics[name] = evaluator.score(fn(torch.Generator(device=device).manual_seed(0))[: b["eval_samples"]])
    names = list(samplers)
    for r in range(b["rounds"]):
        for name in names[r % len(names):] + names[: r % len(names)]:
            rng = torch.Generator(device=device).manual_seed(r + 1)
            sync()
            tick = time.perf_counter()
            with torch.no_grad():
                samplers[name][1](rng)
            sync()
            times[name].append(time.perf_counter() - tick)
        print(f"[sampling] round {r + 1}/{b['rounds']}", flush=True)
    rows = []
    for name, (nfe, _) in samplers.items():
        seconds = statistics.median(times[name])
        rows.append({"sampler": name, "nfe": nfe, "samples_per_s": n / seconds, "seconds": seconds, **metrics[name]})
    return {"rows": rows, "num_samples": n, "student_run": in_repo(str(student_dir)), "teacher": in_repo(str(teacher_dir)),
            "student": student_record(student_dir),
            "device": device}  # paths in the repository as the page names them, wherever it is rendered again


def student_record(run_dir: Path) -> dict:
    """Which run the student is (from its ``summary.json``): a later run into the same directory is then told apart."""
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"iterations": summary["iteration"], "commit": run_commit(summary),
            **{k: summary.get(k) for k in ("log_mmd", "log_density", "modes_covered", "total_seconds")}}


# ---------------------------------------------------------------- plots
def overhead_boxes(rows: list[dict]) -> list[tuple[str, list[float], int]]:
    """(label, per-round ratios, batch) of every box of the overhead plot: eager, and both compiled where measured."""
    boxes = []
    for r in rows:
        boxes.append((f"batch {r['batch_size']}\neager", r["ratios"], r["batch_size"]))
        if "compiled_ratios" in r:
            boxes.append((f"batch {r['batch_size']}\ncompiled", r["compiled_ratios"], r["batch_size"]))
    return boxes


def plot_overhead(data: dict, path: Path) -> None:
    boxes = overhead_boxes(data["rows"])
    fig, ax = plt.subplots(figsize=(1.3 * len(boxes) + 2.4, 3.4))
    ax.boxplot([ratios for _, ratios, _ in boxes])
    ax.set_xticks(range(1, len(boxes) + 1), [label for label, _, _ in boxes], fontsize=8)
    for i, (_, _, batch) in enumerate(boxes, 1):
        target = data["targets"].get(str(batch))
        if target:
            ax.hlines(target, i - 0.4, i + 0.4, colors="tab:red", linestyles="--")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_ylabel("SVI step / plain-torch step")
    ax.set_title("Framework overhead\n(per-round ratios; compiled: both steps compiled; dashed: target)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def precision_note(e: dict) -> list[str]:
    """What the default's hidden products ran in, and this machine's bfloat16 rate beside its float32 one."""
    rates = {k: v for k, v in e.get("matmul", {}).items() if "bfloat16_peak" in v}
    if "default_hidden_precision" not in e or not rates:  # results of an earlier invocation
        return []
    peaks = "; ".join(f"with {thread_words(int(k))}, {v['peak'] / 1e9:.0f} in float32 and "
                      f"{v['bfloat16_peak'] / 1e9:.0f} in bfloat16 ({v['bfloat16_peak'] / v['peak']:.1f} times as fast)"
                      for k, v in rates.items())
    return [f"The default ran its hidden products in **{e['default_hidden_precision']}** here (`precision=auto`: "
            "bfloat16 on a CPU with native bfloat16 products). Every fraction is against the **float32** rate, the "
            "machine's rate for the step's arithmetic at full precision, as measured in its round. Measured once before "
            f"the steps, the square products gave (GFLOP/s) {peaks}: against the bfloat16 rate of its thread count every "
            "fraction would read about that many times lower.", ""]


def plot_efficiency(data: dict, path: Path) -> None:
    rows = [r for r in data["rows"] if "fraction" in r]
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.5))
    labels = [f"{r['recipe']}: {r['setting']}" for r in rows]
    ax.barh(labels, [100 * r["fraction"] for r in rows],
            color=["tab:gray" if r.get("ceiling") else "tab:blue" for r in rows])
    ax.axvline(100 * data["target_fraction"], color="tab:red", ls="--", label="target")
    ax.set_xlabel("% of the measured matmul rate")
    ax.invert_yaxis()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_sampling(data: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for r in data["rows"]:
        marker = "*" if r["nfe"] == 1 else ("o" if "learned" in r["sampler"] else "s")
        ax.scatter(r["samples_per_s"], r["log_mmd"], marker=marker, s=80 if r["nfe"] == 1 else 30)
        ax.annotate(r["sampler"].replace(" teacher", "").replace("one-step student (VarDiU, default run)", "student"),
                    (r["samples_per_s"], r["log_mmd"]), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("samples per second")
    ax.set_ylabel("log-MMD (lower is better)")
    ax.set_title("One-step student vs many-step teacher samplers")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- the page
def in_repo(path: str | Path) -> str:
    """A path relative to the repository when it lies inside it (the scripts run from there: their reports then name
    their folders as a user's checkout has them)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def f(x, digits=3):
    return "n/a" if x is None else f"{x:.{digits}f}"


def gpu_section(docs: Path) -> list[str]:
    report = docs / "gpu_check.md"
    lines = ["## GPU", ""]
    if report.exists():
        return lines + ["From `benchmarks/gpu_check.sh` (its own command, card and date are in it):", "",
                        report.read_text().strip(), ""]
    return lines + ["**GPU numbers are missing.** No CUDA device was available where these numbers were produced. "
                    "On a CUDA machine, `bash benchmarks/gpu_check.sh` runs the GPU tests, a shortened default fit "
                    "with `device=cuda` and benchmarks 1 and 4, and writes `docs/gpu_check.md`, which this page then "
                    "includes.", ""]


def provenance(results: dict) -> dict:
    """What produced a set of sections: the invocation's command, date, commit, machine and its load."""
    m = results["machine"]
    return {k: results[k] for k in ("command", "date", "commit")} | {"machine": machine_words(m),
                                                                    "load_average": m.get("load_average")}


def machine_words(m: dict) -> str:
    """A machine record (``provenance.machine()``) in words: CPU, logical CPUs, torch threads, GPU if any."""
    words = f"{m['cpu']}, {m['logical_cpus']} logical CPUs, torch threads {m['torch_threads']}"
    return words + (f", {m['gpu']}" if m.get("gpu") else "")


def carry_over(results: dict, previous: dict | None) -> list[str]:
    """Copy into ``results`` the sections of ``previous`` (an earlier results.json of the same mode) that this
    invocation did not run, with the provenance of the invocation that did. Returns their names."""
    if not previous or previous.get("mode") != results["mode"]:
        return []
    carried = [name for name in SECTIONS if name not in results and name in previous]
    for name in carried:
        results[name] = previous[name]
        results["provenance"][name] = previous.get("provenance", {}).get(name) or provenance(previous)
    if "quality" in previous and "quality" not in carried and "quality" in results:
        carry_quality_parts(results["quality"], previous)
    return carried


def carry_quality_parts(quality: dict, previous: dict) -> None:
    """Copy into this invocation's ``quality`` section the parts of ``previous``'s that it did not run, each with the
    provenance of the invocation that did (under ``quality["provenance"]``; ``kept_parts`` names them)."""
    before = previous["quality"]
    for part in QUALITY_PARTS:
        if f"{part}_md" not in quality and f"{part}_md" in before:
            quality[f"{part}_md"] = before[f"{part}_md"]
            quality.setdefault("provenance", {})[part] = (before.get("provenance", {}).get(part)
                                                          or previous.get("provenance", {}).get("quality")
                                                          or provenance(previous))


def from_earlier(results: dict, name: str) -> list[str]:
    """A line under a section's heading when an earlier invocation produced it."""
    return kept_line(results.get("provenance", {}).get(name), results)


def kept_parts(results: dict) -> list[str]:
    """The parts of the quality section that an earlier invocation than the section's own produced."""
    section = results.get("provenance", {}).get("quality")
    parts = results.get("quality", {}).get("provenance", {})
    return [part for part in QUALITY_PARTS if parts.get(part) and parts[part] != section]


def kept_line(p: dict | None, results: dict) -> list[str]:
    """The line that says which earlier invocation produced a section or part (none when it is ``results``' own)."""
    if not p or p == provenance(results):
        return []
    where = p.get("machine", "machine not recorded")
    return [f"*Kept from an earlier invocation: `{p['command']}`, {p['date']}, commit {p['commit']}, machine: {where}, "
            f"load average {p.get('load_average', 'n/a')}.*", ""]


def demoted(report: str) -> str:
    """A report's text with its headings demoted three levels, to sit below the page's section (##) and the
    report's own heading there (###)."""
    return "\n".join(("###" + line) if line.startswith("#") else line for line in report.strip().splitlines())


def script_reports(docs: Path) -> list[str]:
    """The reports the quality scripts wrote into ``docs/`` on their own (for a page without the quality section)."""
    lines = []
    for _, name, title in QUALITY_REPORTS:
        report = docs / name
        if report.exists():
            lines += [f"### {title}", "", f"Included from [{name}]({name}), written by that script (its own command, "
                      "budget and machine are in it), not by this invocation.", "", demoted(report.read_text()), ""]
    if not lines:
        return []
    return ["## 3. Quality: the reports of the quality scripts", "", *lines]


def phase_lines(rows: list[dict]) -> list[str]:
    """The overhead section's table of both steps split into phases (``step_overhead.phase_times``); none on older pages."""
    rows = [r for r in rows if "phases" in r]
    if not rows:
        return []
    names = {"forward": "forward (draws, model, guide, loss)", "backward": "backward",
             "optimiser": "optimiser (clip, Adam, clear)"}
    p0 = rows[0]["phases"]
    lines = ["", f"Where the difference lies (`step_overhead.phase_times`, medians of {p0['rounds']} interleaved rounds × "
             f"{p0['steps_per_round']} steps per side): both steps timed phase by phase; the SVI side calls the ELBO and "
             "the optimiser that `SVI.step` calls, without `SVI.step`'s own wrapper.", "",
             "| batch | phase | SVI ms | twin ms | SVI − twin |", "|---:|---|---:|---:|---:|"]
    parts = {"before": "· draws and model, up to the generator", "generator": "· the generator's passes",
             "between": "· between the generator and the guide's network", "guide": "· the guide's network",
             "after": "· after the guide's network (proposals, teacher, loss; a later generator pass excluded)"}
    split = "svi_forward_before_ms" in p0
    if split:  # older pages have no parts
        lines[1] += (" The forward pass is split around the two networks (`step_overhead.forward_parts`: forward hooks "
                     "on both sides' generator and guide network mark their passes; the code between them is Pyro's "
                     "sites and handlers, `torch.distributions` and ours on the SVI side, the written-out formulas on "
                     "the twin's; the medians of the parts need not add up to the forward pass's).")
    for r in rows:
        p = r["phases"]
        for phase in step_overhead.PHASES:
            svi, twin = p[f"svi_{phase}_ms"], p[f"twin_{phase}_ms"]
            lines.append(f"| {r['batch_size']} | {names[phase]} | {svi:.2f} | {twin:.2f} | {svi - twin:+.2f} |")
            if phase == "forward" and split:
                for part in step_overhead.FORWARD_PARTS:
                    svi, twin = p[f"svi_forward_{part}_ms"], p[f"twin_forward_{part}_ms"]
                    lines.append(f"| {r['batch_size']} | {parts[part]} | {svi:.2f} | {twin:.2f} | {svi - twin:+.2f} |")
    return lines


def compiled_lines(rows: list[dict]) -> list[str]:
    """The overhead section's table of both steps compiled (``step_overhead.measure(compiled=True)``); none on older
    pages."""
    rows = [r for r in rows if "compiled_ratio_median" in r]
    if not rows:
        return []
    lines = ["", "Both steps compiled, in the same interleaved rounds as the table above: the SVI step with "
             "`objective.compile=true` (`vardiu_pyro/compiled.py`: the ELBO and its gradient traced once by `make_fx` "
             "into one graph, compiled by inductor; Pyro's handlers run only while tracing) and the twin's loss and "
             "gradient through the same `GradientGraph`, each followed by its own optimiser step. *Compiled* compares "
             "the two compiled steps (what the framework still costs: `SVI.step`'s wrapper and the distributions' "
             "general formulas, now compiled); the last two columns compare the compiled SVI step with the eager "
             "twin and with the eager SVI step. *First step*: each compiled side's first step, in which it traces and "
             "compiles its graph (shorter when inductor's on-disk cache already holds the graph).", "",
             "| batch | SVI compiled ms/step | twin compiled ms/step | compiled ratio (median) | IQR | target | "
             "compiled SVI / eager twin | compiled SVI / eager SVI | first step s (SVI / twin) |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in rows:
        first = (f"{r['svi_compiled_first_s']:.1f} / {r['twin_compiled_first_s']:.1f}"
                 if "svi_compiled_first_s" in r else "")
        lines.append(f"| {r['batch_size']} | {r['svi_compiled_ms']:.2f} | {r['twin_compiled_ms']:.2f} | "
                     f"**{r['compiled_ratio_median']:.3f}** | {r['compiled_ratio_q1']:.3f}–{r['compiled_ratio_q3']:.3f} | "
                     f"{r.get('target', '')} | {r['compiled_to_eager_twin_ratio_median']:.3f} | "
                     f"{r['compiled_to_eager_ratio_median']:.3f} | {first} |")
    return lines


def op_split_lines(rows: list[dict]) -> list[str]:
    """The overhead section's tables of both forward passes op by op (``step_overhead.op_split``); none on older pages."""
    rows = [r for r in rows if "op_split" in r]
    if not rows:
        return []
    o0 = rows[0]["op_split"]
    lines = ["", f"The forward passes op by op (`step_overhead.op_split`, medians over {o0['rounds']} interleaved rounds × "
             f"{o0['steps_per_round']} steps per side, whole steps, each forward pass under `torch.profiler`): the time "
             "inside torch's ops (their self times, summed) and outside them (Python: Pyro's handlers, "
             "`torch.distributions` and ours, with the profiler's own bookkeeping for every op, so both sides read "
             "above their unprofiled forward passes).", "",
             "| batch | side | forward µs (profiled) | in torch ops µs | outside them µs | torch op calls (nested included) |",
             "|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        o = r["op_split"]
        for side, name in (("svi", "SVI"), ("twin", "twin")):
            lines.append(f"| {r['batch_size']} | {name} | {o[f'{side}_wall_us']:.0f} | {o[f'{side}_in_ops_us']:.0f} | "
                         f"{o[f'{side}_outside_ops_us']:.0f} | {o[f'{side}_op_calls']:.0f} |")
        lines.append(f"| {r['batch_size']} | SVI − twin | {o['svi_wall_us'] - o['twin_wall_us']:+.0f} | "
                     f"{o['svi_in_ops_us'] - o['twin_in_ops_us']:+.0f} | "
                     f"{o['svi_outside_ops_us'] - o['twin_outside_ops_us']:+.0f} | "
                     f"{o['svi_op_calls'] - o['twin_op_calls']:+.0f} |")
    lines += ["", "The ops whose self time differs most (per forward pass, medians):", "",
              "| batch | op | SVI calls | SVI µs | twin calls | twin µs | SVI − twin µs |", "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        for op in r["op_split"]["ops"]:
            lines.append(f"| {r['batch_size']} | `{op['op']}` | {op['svi_calls']:.0f} | {op['svi_us']:.1f} | "
                         f"{op['twin_calls']:.0f} | {op['twin_us']:.1f} | {op['svi_us'] - op['twin_us']:+.1f} |")
    return lines


def site_cost_lines(rows: list[dict]) -> list[str]:
    """The overhead section's table of what one Pyro site costs (``step_overhead.site_cost``); none on older pages."""
    rows = [r for r in rows if "site_cost" in r]
    if not rows:
        return []
    lines = ["", "What one Pyro site costs here (`step_overhead.site_cost`, medians of "
             f"{rows[0]['site_cost']['samples']} calls): the model's `x0` site (`pyro.deterministic` in the kept batch "
             "plate, under `poutine.trace`) timed back to back, and straight after the generator's forward pass, where "
             "it runs in the step; beside it the twin's `x_t = x0 + σ ε` (two small torch ops). A step runs five Pyro "
             "sites (the model's four, the guide's `z`) and enters two plates.", "",
             "| batch | Pyro site, back to back | Pyro site, after the generator | x0 + σ ε, back to back | x0 + σ ε, after the generator |",
             "|---:|---:|---:|---:|---:|"]
    for r in rows:
        c = r["site_cost"]
        lines.append(f"| {r['batch_size']} | {c['site_warm_us']:.0f} µs | {c['site_after_us']:.0f} µs | "
                     f"{c['ops_warm_us']:.1f} µs | {c['ops_after_us']:.1f} µs |")
    return lines


def after_products_lines(after: dict | None) -> list[str]:
    """The overhead section's table of code run straight after a matrix product (``after_products``); none on older pages."""
    if after is None:
        return []
    return ["", "Code run as the first thing after a matrix product (`benchmarks/after_products.py`, medians of "
            f"{after['samples']} interleaved rounds, µs): 200 dict lookups in plain Python, the twin's `x0 + σ ε` and the "
            "model's `x0` Pyro site, batch 1024, each timed back to back, then as the first thing after a 1024 × 1024 "
            "float32 product or after a copy of as many bytes as that product reads (memory traffic, no arithmetic), "
            "and at its second call after it. Where the first call is much slower than the second, every burst of "
            "products in the step costs the code after it that much more, and the more code (Pyro's sites against the "
            "twin's ops), the more.", "", *after_products.table([after])]


def student_words(student: dict | None) -> str:
    """The sampling section's student run in words (its iterations, code commit and own final metrics); none on older
    pages."""
    if student is None:
        return ""
    return (f" ({student['iterations']:,} iterations in {f(student['total_seconds'], 0)} s, code at commit "
            f"{student['commit']}; its own final evaluation: log-MMD {f(student['log_mmd'], 2)}, log-density "
            f"{f(student['log_density'], 2)}, {student['modes_covered']} modes)")


def verdict(median: float, q1: float | None, q3: float | None, met) -> str:
    """``yes``/``no`` for the median against a target (``met(x)``), and whether the interquartile range crosses it."""
    word = "yes" if met(median) else "no"
    if q1 is not None and q3 is not None and met(q1) != met(q3):
        word += " (its IQR crosses the target)"
    return word


def glance_lines(results: dict) -> list[str]:
    """Benchmarks 1 and 2 against their targets, one row each: the overhead ratio at each batch with a target, and
    each recipe's step as it runs (its first setting); empty when the page has neither section."""
    rows = []
    if "overhead" in results:
        o = results["overhead"]
        for r in o["rows"]:
            target = o["targets"].get(str(r["batch_size"]))
            if target is not None:
                rows.append(f"| 1. overhead (SVI / twin), batch {r['batch_size']} | **{r['ratio_median']:.3f}** "
                            f"(IQR {r['ratio_q1']:.3f}–{r['ratio_q3']:.3f}) | ≤ {target} | "
                            f"{verdict(r['ratio_median'], r['ratio_q1'], r['ratio_q3'], lambda x, t=target: x <= t)} |")
                if "compiled_ratio_median" in r:
                    m, q1, q3 = (r[f"compiled_ratio_{k}"] for k in ("median", "q1", "q3"))
                    rows.append(f"| 1. overhead, both compiled (`objective.compile=true` / twin), batch "
                                f"{r['batch_size']} | **{m:.3f}** (IQR {q1:.3f}–{q3:.3f}) | ≤ {target} | "
                                f"{verdict(m, q1, q3, lambda x, t=target: x <= t)} |")
    if "efficiency" in results:
        e = results["efficiency"]
        target = e["target_fraction"]
        picked = []
        for r in e["rows"]:  # each recipe's first row (its default setting), and its compiled step
            if r["setting"].startswith("compiled step") or not any(p["recipe"] == r["recipe"] for p in picked):
                picked.append(r)
        for r in picked:
            if "fraction" not in r:
                continue
            recipe = r["recipe"]
            q1, q3 = r.get("fraction_q1"), r.get("fraction_q3")
            spread = f" (IQR {100 * q1:.0f}–{100 * q3:.0f}%)" if q1 is not None else ""
            rows.append(f"| 2. efficiency, {recipe} {r['setting'].removeprefix('default ')} | **{100 * r['fraction']:.0f}%**{spread} | "
                        f"≥ {100 * target:.0f}% | {verdict(r['fraction'], q1, q3, lambda x: x >= target)} |")
    if not rows:
        return []
    return ["## Targets at a glance", "",
            "Benchmarks 1 and 2 against their targets: this page's medians, with their interquartile ranges (the sections "
            "below say how each was measured); the quality targets are in section 3's reports.", "",
            "| benchmark | here | target | met |", "|---|---|---|---|", *rows, ""]


def page(results: dict, mode: str, command: str, docs: Path, figs: dict[str, str]) -> str:
    m = results["machine"]
    lines = ["# vardiu-pyro: benchmark results", ""]
    if mode != "full":
        label = "QUICK SMOKE RUN" if mode == "quick" else "SMOKE RUN (test budget)"
        lines += [f"> **{label} — NOT RESULTS.** Tiny budgets that only check that every benchmark "
                  "runs end to end. The timings and the quality numbers below say nothing about the library; "
                  "regenerate this page with the full command for numbers.", ""]
    lines += [f"- command: `{command}`", f"- date: {results['date']}", f"- commit: {results['commit']}",
              f"- machine: {machine_words(m)}, {m['platform']}" + ("; freed memory retained for reuse (glibc `mallopt`), as `python -m "
                                    "vardiu_pyro.fit` does" if m.get("retain_freed_memory") else ""),
              f"- software: Python {m['python']}, torch {m['torch']}, pyro {m['pyro']}",
              f"- load average when the run started: {m.get('load_average', 'n/a')} (other processes distort timings)",
              f"- total time: {results.get('total_seconds', 0) / 60:.1f} min", "",
              "Ratios are the headline; absolute times are context for this machine only.", ""]
    missing = [name for name in SECTIONS if name not in results]
    carried = [name for name in SECTIONS if name in results and from_earlier(results, name)]
    kept = kept_parts(results)
    if "quality" not in carried and kept:
        carried.append(f"quality's {' and '.join(kept)}")
    if carried:
        lines += [f"**Kept from earlier invocations:** {', '.join(carried)} (each section says which, and on which "
                  "machine); `python benchmarks/run.py` runs every section.", ""]
    if missing:
        lines += [f"**Not run:** {', '.join(missing)} (`--sections`); `python benchmarks/run.py` "
                  "runs every section.", ""]
    lines += glance_lines(results)
    lines += gpu_section(docs)

    if "overhead" in results:
        o = results["overhead"]
        lines += ["## 1. Framework overhead: `pyro.infer.SVI` step vs plain-torch twin", "",
                  *from_earlier(results, "overhead"),
                  "Same networks (copies of one initialisation), batch, optimiser (Adam, per-network clipping), σ law "
                  "and weight; steps timed in interleaved rounds (A B, B A, ...); ratio = SVI / twin per round.", "",
                  "| batch | generator / guide (layers × width) | rounds × steps | SVI ms/step | twin ms/step | ratio (median) | IQR | min–max | target |",
                  "|---:|---|---|---:|---:|---:|---|---|---:|"]
        for r in o["rows"]:
            target = o["targets"].get(str(r["batch_size"]))
            lines.append(f"| {r['batch_size']} | {r.get('networks', r['width'])} | {r['rounds']} × {r['steps_per_round']} | {r['svi_ms']:.2f} | "
                         f"{r['twin_ms']:.2f} | **{r['ratio_median']:.3f}** | {r['ratio_q1']:.3f}–{r['ratio_q3']:.3f} | "
                         f"{r['ratio_min']:.3f}–{r['ratio_max']:.3f} | {'≤ ' + str(target) if target else ''} |")
        lines += compiled_lines([{**r, "target": f"≤ {o['targets'][str(r['batch_size'])]}"
                                  if str(r["batch_size"]) in o["targets"] else ""} for r in o["rows"]])
        lines += phase_lines(o["rows"])
        lines += op_split_lines(o["rows"])
        lines += site_cost_lines(o["rows"])
        lines += after_products_lines(o.get("after_products"))
        lines += ["", f"![overhead]({figs['overhead']})", ""]

    if "efficiency" in results:
        e = results["efficiency"]
        lines += ["## 2. Hardware efficiency", "",
                  *from_earlier(results, "efficiency"),
                  "FLOPs of one SVI step (counted by `torch.utils.flop_counter.FlopCounterMode`; the analytic count from "
                  "the layer shapes is shown beside it) over its time, against this machine's float32 matmul rate with the "
                  "same threads (square products 256–1024, the best of them), measured by this script "
                  + ("again in every round, beside the steps: the fraction is the median over rounds of the round's step "
                     "FLOP/s over the round's rate, with its interquartile range, so that the machine's drift hits both "
                     "alike; ms/step and matmul GFLOP/s are medians over rounds. " if any("fraction_q1" in r for r in e["rows"])
                     else "once, before the steps. ")
                  + f"Target: ≥ {100 * e['target_fraction']:.0f}%. The row *its matrix products alone* replays the "
                  "step's own products (recorded from one step, same shapes and strides, inputs copied) back to back "
                  "with nothing else: the fraction the step could reach if its activations, bias additions, reductions, "
                  "teacher, optimiser and Python cost nothing; the step's fraction over that one is the share of its "
                  "time spent in matrix products.", "",
                  *precision_note(e),
                  "| recipe | setting | batch | generator / guide (layers × width) | GFLOP/step (counted / analytic) | ms/step | GFLOP/s | matmul GFLOP/s | fraction | IQR |",
                  "|---|---|---:|---|---|---:|---:|---:|---:|---|"]
        for r in e["rows"]:
            if "error" in r:
                lines.append(f"| {r['recipe']} | {r['setting']} | | | | | | | failed: {r['error']} | |")
                continue
            spread = f"{100 * r['fraction_q1']:.0f}–{100 * r['fraction_q3']:.0f}%" if "fraction_q1" in r else ""
            lines.append(f"| {r['recipe']} | {r['setting']} | {r['batch_size']} | {r.get('networks', r['width'])} | "
                         f"{r['flops_counted'] / 1e9:.3f} / {r['flops_analytic'] / 1e9:.3f} | {r['ms_per_step']:.2f} | "
                         f"{r['gflops_per_s']:.1f} | {r['matmul_gflops_per_s']:.1f} | **{100 * r['fraction']:.0f}%** | {spread} |")
        lines += ["", f"![efficiency]({figs['efficiency']})", ""]

    if "quality" in results:
        q = results["quality"]
        lines += ["## 3. Quality against time", "", *from_earlier(results, "quality"),
                  "The reports of the quality scripts, each run by this invocation"
                  + (" unless it says that it was kept from an earlier one" if kept else "")
                  + " (final metrics of the EMA generator; each report gives its runs' command, budget and plot).", ""]
        for part, _, title in QUALITY_REPORTS:
            if f"{part}_md" in q:
                own = kept_line(q["provenance"][part], results) if part in kept else []
                lines += [f"### {title}", "", *own, demoted(q[f"{part}_md"]), ""]

    if "quality" not in results:
        lines += script_reports(docs)

    if "sampling" in results:
        s = results["sampling"]
        lines += ["## 4. Sampling: one-step student vs many-step teacher", "",
                  *from_earlier(results, "sampling"),
                  f"{s['num_samples']} samples per call, median over interleaved rounds; log-MMD of one sample set "
                  "against the target. The student is the default run's EMA generator (exact-teacher distillation); "
                  "the learned teacher is a `vardiu_pyro.train_teacher` denoiser sampled with the diffusers EDM "
                  "schedulers (`EDMEulerScheduler`, `EDMDPMSolverMultistepScheduler`); the exact teacher (the target's "
                  "analytic score) under the same samplers isolates the samplers' own discretisation error.", "",
                  f"Student: the run in `{in_repo(s['student_run'])}`{student_words(s.get('student'))}; learned teacher: "
                  f"`{in_repo(s['teacher'])}` (each directory's "
                  "`summary.json` holds its configuration and where it ran).", "",
                  "| sampler | function evaluations | samples/s | × student speed | log-MMD | log-density | modes |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        base = s["rows"][0]["samples_per_s"]
        for r in s["rows"]:
            lines.append(f"| {r['sampler']} | {r['nfe']} | {r['samples_per_s']:.0f} | {r['samples_per_s'] / base:.3g} | "
                         f"{r['log_mmd']:.2f} | {f(r.get('log_density'), 2)} | {r.get('modes_covered', 'n/a')} |")
        lines += ["", f"![sampling]({figs['sampling']})", ""]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main
PLOTS = {"overhead": plot_overhead, "efficiency": plot_efficiency, "sampling": plot_sampling}  # quality: the scripts' own


def render(docs: Path) -> dict:
    """results.md and the plots again from ``docs/results.json``, nothing measured."""
    results = json.loads((docs / "results.json").read_text())
    figs = {name: f"results/{name}.png" for name in SECTIONS}
    (docs / "results").mkdir(parents=True, exist_ok=True)
    for name in SECTIONS:
        if name in results and name in PLOTS:
            PLOTS[name](results[name], docs / figs[name])
    (docs / "results.md").write_text(page(results, results["mode"], results["command"], docs, figs))
    print(f"written from {docs / 'results.json'}: {docs / 'results.md'}")
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few minutes: a smoke version of every benchmark")
    parser.add_argument("--smoke", action="store_true", help="seconds: the smallest budget (for the test suite)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--quality-parts", nargs="+", choices=QUALITY_PARTS, default=list(QUALITY_PARTS),
                        help="the quality section's scripts to run (default all); the page keeps the others' reports "
                             "from the previous results.json, each under the invocation that ran it")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where results.md and the plots go")
    parser.add_argument("--work", type=Path, default=None,
                        help="intermediate runs (default outputs/benchmarks/<full|quick|smoke>)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--fresh", action="store_true",
                        help="do not keep the sections of the previous results.json that this invocation does not run")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: write results.md and the plots again from results.json (e.g. after "
                             "gpu_check.md or a quality script's report in docs/ changed)")
    args = parser.parse_args(argv)
    if args.render:
        return render(args.docs)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    budget = BUDGETS[mode]
    if args.threads:
        torch.set_num_threads(args.threads)
    retained = retain_freed_memory()  # as `python -m vardiu_pyro.fit` does (trainer.retain_freed_memory)
    work = args.work or ROOT / "outputs" / "benchmarks" / mode
    work.mkdir(parents=True, exist_ok=True)
    figdir = args.docs / "results"
    figdir.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/run.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    results: dict = {"mode": mode, "command": command.strip(), "date": datetime.datetime.now().isoformat(timespec="seconds"),
                     "commit": git_commit(), "machine": {**machine(), "retain_freed_memory": retained}}
    start = time.perf_counter()
    figs = {name: f"results/{name}.png" for name in SECTIONS}

    if "overhead" in args.sections:
        results["overhead"] = bench_overhead(budget["overhead"])
        plot_overhead(results["overhead"], args.docs / figs["overhead"])
    if "efficiency" in args.sections:
        results["efficiency"] = bench_efficiency(budget["efficiency"], {"default": [], "published recipe": PAPER_RECIPE})
        plot_efficiency(results["efficiency"], args.docs / figs["efficiency"])
    parts = tuple(part for part in QUALITY_PARTS if part in args.quality_parts)
    teacher_dir = None
    if "sampling" in args.sections or ("quality" in args.sections and "teachers" in parts):
        teacher_dir = train_teacher(work, budget["quality"]["teacher"]).resolve()
    if "quality" in args.sections:
        results["quality"] = bench_quality(budget["quality"], work, teacher_dir, figdir, parts)
    if "sampling" in args.sections:
        seed = budget["quality"]["seeds"][0]
        student = work / "recipes" / "runs" / f"default_seed{seed}"  # the quality section's default run
        if not (student / "summary.json").exists():  # sampling alone: a default run of its own gives the student
            student = work / "sampling_student" / "runs" / f"default_seed{seed}"
            if not (student / "summary.json").exists():
                run_script([in_repo(HERE / "default_fit.py"), "--seeds", str(seed),
                            "--out", in_repo(work / "sampling_student"), *budget["quality"]["fit"]])
        results["sampling"] = bench_sampling(budget["sampling"], student, teacher_dir)
        plot_sampling(results["sampling"], args.docs / figs["sampling"])

    results["total_seconds"] = time.perf_counter() - start
    results["provenance"] = {name: provenance(results) for name in SECTIONS if name in results}
    previous_path = args.docs / "results.json"
    if not args.fresh and previous_path.exists():
        for name in carry_over(results, json.loads(previous_path.read_text())):
            if name in PLOTS:
                PLOTS[name](results[name], args.docs / figs[name])  # the kept section's plot, drawn again
    (args.docs / "results.md").write_text(page(results, mode, results["command"], args.docs, figs))
    (args.docs / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"written: {args.docs / 'results.md'}, {args.docs / 'results.json'}, plots in {figdir}")
    return results


if __name__ == "__main__":
    main()
