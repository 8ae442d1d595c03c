"""Framework overhead: one VarDiU training step through pyro.infer.SVI against its plain-torch twin.

Same networks (copies of one initialisation), same batch, same optimiser (Adam, per-network
gradient-norm clipping at ``optim.max_grad_norm``, 100 by default), same σ law and weight. Steps are
timed in interleaved rounds (A B B A ...) so that machine noise hits both sides alike; the headline is
the median over rounds of the per-round ratio SVI / twin, with its interquartile range.

    python benchmarks/step_overhead.py                     # batch 256 and 1024, the default networks
    python benchmarks/step_overhead.py --batch-sizes 512 --width 256 --rounds 30

Beside the ratio, ``phase_times`` splits both steps into forward pass, backward pass and optimiser (where the
difference lies), and the forward pass around its two networks (``forward_parts``: the generator's and the guide's
passes, and the code before, between and after them); ``site_cost`` times what one Pyro site costs here: the
model's ``x0`` site back to back, and as it runs in the step, straight after the generator's forward pass (on some
machines code that runs right after a network's matrix products takes several times as long as it does back to
back; ``after_products.py`` measures that alone, and docs/step_time.md says what it found); and ``op_split``
profiles both forward passes op by op: the time inside torch's ops and outside them (Python: Pyro's handlers,
``torch.distributions``, ours), and the ops whose time differs most.

With ``--compiled``, both steps are also timed compiled, in the same interleaved rounds: the SVI step with
``objective.compile=true`` (``vardiu_pyro/compiled.py``: the ELBO and its gradient traced once into one graph that
inductor compiles) and the twin's loss and gradient through the same ``GradientGraph``; the rows then carry the
ratio of the two compiled steps (what the framework costs when both are compiled) and of the compiled SVI step to
the eager twin (what a user of ``objective.compile=true`` gets against hand-written eager torch).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time

import pyro
import torch
from pyro import poutine

from provenance import machine_line
from vardiu_pyro.budget import time_steps
from vardiu_pyro.build import build_objective, build_problem
from vardiu_pyro.compiled import GradientGraph
from vardiu_pyro.guides import DiagonalGaussianGuide
from vardiu_pyro.host_memory import retain_freed_memory
from vardiu_pyro.plates import BatchPlates
from vardiu_pyro.torch_twin import TorchVarDiUStep
from vardiu_pyro.validation import compose_config


def width_overrides(width: int | None) -> list[str]:
    """Both networks at ``width``; None: the configuration's own networks (the default run's shapes)."""
    return [] if width is None else [f"generator.width={width}", f"guide.width={width}"]


def linear_shapes(net: torch.nn.Module) -> list[tuple[int, int]]:
    """(in_features, out_features) of every ``nn.Linear`` in a network, in order."""
    return [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]


def network_shapes(objective) -> str:
    """'D×W / D×W': the generator's and the guide's hidden layers × units (a built objective), for the tables."""
    def shape(net):
        hidden = [out for _, out in linear_shapes(net)][:-1]
        return f"{len(hidden)}×{hidden[0]}" if len(set(hidden)) == 1 else "-".join(map(str, hidden))
    return f"{shape(objective.generator)} / {shape(objective.guide)}"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values``, as the tables report a spread; one value is all three.
    The quartiles interpolate between the values (``inclusive``): they never lie outside their range."""
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return q[0], statistics.median(values), q[2]


def make_pair(batch_size: int, width: int | None, overrides: list[str], device: str = "cpu"):
    cfg = compose_config(["trainer.iterations=50000",  # any count: a step costs the same
                          f"trainer.batch_size={batch_size}", *width_overrides(width),
                          f"device={device}", "optim.schedule=constant", *overrides])
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    pyro.enable_validation(bool(cfg.trainer.pyro_validation))  # as `python -m vardiu_pyro.fit` runs
    problem = build_problem(cfg, torch.device(device))
    objective = build_objective(cfg, problem)
    # the twin writes out Adam with one learning rate, and the diagonal Gaussian guide: anything else is not a twin
    known = {"_target_", "optimizer", "lr", "lr_overrides", "betas", "max_grad_norm", "fused", "foreach", "schedule",
             "warmup", "end_factor", "iterations"}
    unlike = ([f"optim.optimizer={cfg.optim.optimizer}"] if cfg.optim.optimizer != "adam" else []) + \
             (["optim.lr_overrides"] if cfg.optim.get("lr_overrides") else []) + \
             [f"optim.{k}" for k in cfg.optim if k not in known] + \
             ([f"guide={type(objective.guide).__name__}"] if not isinstance(objective.guide, DiagonalGaussianGuide) else [])
    if unlike:
        raise ValueError(f"the plain-torch twin (vardiu_pyro.torch_twin) takes Adam with one learning rate and the "
                         f"diagonal Gaussian guide; these overrides have no twin: {', '.join(unlike)}")
    twin = TorchVarDiUStep(copy.deepcopy(problem.generator), copy.deepcopy(objective.guide), problem.teacher,
                           problem.sigma_law, problem.weight, batch_size=batch_size, lr=cfg.optim.lr,
                           max_grad_norm=cfg.optim.max_grad_norm, antithetic=cfg.objective.antithetic,
                           importance_samples=cfg.objective.importance_samples,
                           quasi_random=cfg.objective.quasi_random,
                           betas=tuple(cfg.optim.betas), **{k: cfg.optim[k] for k in ("fused", "foreach") if k in cfg.optim})
    return objective, twin


def x0_site(x0: torch.Tensor, event_dims: int):
    """The model's ``x0`` site alone, as a function: ``pyro.deterministic`` in a kept batch plate over x0's rows, under
    ``poutine.trace``; it returns the trace."""
    plates = BatchPlates("batch", dim=-1)

    def site() -> poutine.Trace:
        with poutine.trace() as tracer, plates(x0.shape[0]):
            pyro.deterministic("x0", x0, event_dim=event_dims)
        return tracer.trace

    return site


def site_cost(objective, batch_size: int, samples: int) -> dict:
    """Microseconds (medians over ``samples``) of one Pyro site and of two small torch ops, back to back and right
    after the generator's forward pass.

    The site is the model's ``x0``: ``pyro.deterministic`` in a kept batch plate, under ``poutine.trace``; the ops
    are the twin's ``x_t = x0 + σ ε`` on tensors of the same shapes. In the step the model's ``x0`` site runs straight
    after the generator's forward pass (over B/2 rows with antithetic pairs), which is what ``after`` times.
    """
    generator = objective.generator
    rows = batch_size // 2 if objective.model.antithetic else batch_size
    z = torch.randn(rows, *generator.latent_shape)
    x0 = torch.randn(batch_size, *generator.data_shape, requires_grad=True)
    sigma = torch.rand(batch_size, *[1] * len(generator.data_shape))
    eps = torch.randn(batch_size, *generator.data_shape)
    site = x0_site(x0, len(generator.data_shape))

    def ops():
        return x0 + sigma * eps

    @torch.no_grad()
    def forward():
        generator(z)

    times = {f"{name}_{when}": [] for name in ("site", "ops") for when in ("warm", "after")}
    for _ in range(samples):
        for name, fn in (("site", site), ("ops", ops)):
            for when, before in (("warm", fn), ("after", forward)):
                before()
                tick = time.perf_counter()
                fn()
                times[f"{name}_{when}"].append(time.perf_counter() - tick)
    return {"batch_size": batch_size, "samples": samples,
            **{f"{key}_us": 1e6 * statistics.median(values) for key, values in times.items()}}


PHASES = ("forward", "backward", "optimiser")


def round_order(names, r: int) -> list:
    """The order of the sides in interleaved round ``r``: as given in even rounds, reversed in odd ones (A B, B A, ...)."""
    return list(names) if r % 2 == 0 else list(reversed(names))


def step_phases(objective, twin, batch_size: int, iteration: int = 0) -> dict:
    """Each side's step in two parts, as ``phase_times`` and ``op_split`` run it: {side: (forward, apply)}, where
    ``forward()`` gives (what to backpropagate, the bound) and ``apply()`` clips, steps and clears the gradients.

    The SVI side calls the ELBO and the optimiser that ``SVI.step`` calls, without ``SVI.step``'s own wrapper (a
    parameter-capturing trace and a zeroing of what it captured: nothing here, as the networks are registered once).
    """
    svi = objective.svi

    def svi_loss():  # the bound's value with the surrogate's gradient: both roles in one tensor
        loss = objective.elbo.differentiable_loss(svi.model, svi.guide, batch_size, iteration=iteration)
        return loss, loss

    return {"svi": (svi_loss, lambda: svi.optim(set())), "twin": (lambda: twin.loss(iteration), twin.apply_gradients)}


FORWARD_SCOPE = "forward pass"


def scope_of(event, scope: str):
    """The ``record_function(scope)`` event a profiler event runs inside (its nearest parent of that name), or None."""
    parent = event.cpu_parent
    while parent is not None and parent.name != scope:
        parent = parent.cpu_parent
    return parent


def op_split(objective, twin, batch_size: int, rounds: int, steps: int, iteration: int = 0, top: int = 8) -> dict:
    """Where the forward passes' difference lies, op by op: whole steps of both sides under ``torch.profiler`` (CPU),
    one profile per side and round of ``steps`` steps (interleaved rounds), each forward pass (to the bound's value) in
    a ``record_function`` scope whose ops are counted.

    Per side, medians over the forward passes: ``wall_us`` (the scope's time, profiler on), ``in_ops_us`` (the self
    time of every torch op in it, summed: time inside torch's kernels and dispatch), ``outside_ops_us`` (the rest:
    Python, Pyro's handlers and ours, and the profiler's own bookkeeping, about the same per op on both sides) and
    ``op_calls`` (torch op calls, nested calls included); and, for the ``top`` ops whose median self time differs most
    between the sides, each side's median calls and self µs per pass.

    Whole steps, not forward passes alone: without a backward pass, the ELBO's last terms keep the previous pass's
    graph alive while the next pass runs, which slows the SVI side's pass in a forward-only loop and not in training.
    """
    sides = step_phases(objective, twin, batch_size, iteration)
    passes = {side: [] for side in sides}  # per pass: (wall µs, {op: (calls, self µs)})
    for r in range(rounds):
        for side in round_order(sides, r):
            forward, apply = sides[side]
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    with torch.profiler.record_function(FORWARD_SCOPE):
                        surrogate, bound = forward()
                        bound.item()
                    surrogate.backward()
                    apply()
            scopes = {}
            for event in prof.events():
                scope = scope_of(event, FORWARD_SCOPE) if event.name != FORWARD_SCOPE else None
                if scope is not None:
                    ops = scopes.setdefault(id(scope), (scope.cpu_time_total, {}))[1]
                    calls, us = ops.get(event.name, (0, 0.0))
                    ops[event.name] = (calls + 1, us + event.self_cpu_time_total)
            passes[side] += scopes.values()
    row = {"batch_size": batch_size, "rounds": rounds, "steps_per_round": steps}
    for side, seen in passes.items():
        in_ops = [sum(us for _, us in ops.values()) for _, ops in seen]
        row.update({f"{side}_wall_us": statistics.median(wall for wall, _ in seen),
                    f"{side}_in_ops_us": statistics.median(in_ops),
                    f"{side}_outside_ops_us": statistics.median(wall - i for (wall, _), i in zip(seen, in_ops)),
                    f"{side}_op_calls": statistics.median(sum(c for c, _ in ops.values()) for _, ops in seen)})
    names = {name for seen in passes.values() for _, ops in seen for name in ops}
    rows = []
    for name in names:
        op = {"op": name}
        for side, seen in passes.items():
            got = [ops.get(name, (0, 0.0)) for _, ops in seen]
            op.update({f"{side}_calls": statistics.median(c for c, _ in got), f"{side}_us": statistics.median(u for _, u in got)})
        rows.append(op)
    rows.sort(key=lambda o: abs(o["svi_us"] - o["twin_us"]), reverse=True)
    return {**row, "ops": rows[:top]}


# the forward pass in five parts: the networks' passes and the code before, between and after them (``forward_parts``)
FORWARD_PARTS = ("before", "generator", "between", "guide", "after")


@contextlib.contextmanager
def network_clock(networks: dict, sync=lambda: None):
    """Record every pass of the named networks: yields a list that forward hooks fill with (name, "enter" or "exit",
    ``time.perf_counter()``), after ``sync()``; the hooks are removed on exit."""
    marks = []
    handles = []
    for name, net in networks.items():
        def mark(event, name=name):
            def hook(*_):
                sync()
                marks.append((name, event, time.perf_counter()))
            return hook
        handles += [net.register_forward_pre_hook(mark("enter")), net.register_forward_hook(mark("exit"))]
    try:
        yield marks
    finally:
        for handle in handles:
            handle.remove()


def forward_parts(marks: list, start: float, end: float) -> dict[str, float]:
    """Seconds of a forward pass from ``start`` to ``end`` by part, from ``network_clock``'s marks: ``generator`` and
    ``guide`` (every pass of each network) and the code around them: ``before`` the generator's first pass,
    ``between`` its end and the start of the guide network's first pass, and ``after`` the guide's pass (to the end,
    the generator's later passes excluded). The parts add up to ``end - start``."""
    ends_at = {"before": "generator", "between": "guide"}  # the network whose first pass ends a part of code
    next_part = {"before": "between", "between": "after"}
    seconds = dict.fromkeys(FORWARD_PARTS, 0.0)
    part, since = "before", start
    for name, event, t in marks:
        if event == "enter":
            if name != ends_at.get(part, name):
                raise ValueError(f"the {name}'s network ran before the {ends_at[part]}'s: a forward pass runs the "
                                 "generator first, then the guide's network")
            seconds[part] += t - since
        else:
            seconds[name] += t - since
            if name == ends_at.get(part):
                part = next_part[part]
        since = t
    if part != "after":
        raise ValueError("a forward pass without the generator's and the guide network's passes: nothing to split")
    seconds["after"] += end - since
    return seconds


def phase_times(objective, twin, batch_size: int, rounds: int, steps: int, iteration: int = 0,
                sync=lambda: None) -> dict:
    """Milliseconds of each phase of a step, SVI side and twin, medians over interleaved rounds (A B, B A, ...).

    forward: the draws, the model, the guide and the loss, to the bound's value (``.item()``, as both steps read it);
    backward: the surrogate's backward pass; optimiser: per-network clip, Adam and clearing the gradients (the two
    sides' parts are ``step_phases``). The forward pass is also split into ``FORWARD_PARTS`` (``forward_parts``: the
    generator's and the guide network's passes, timed by forward hooks on both sides' networks, and the code before,
    between and after them), keys ``{side}_forward_{part}_ms``.
    """
    def timed(forward, apply, marks) -> tuple[float, float, float, dict]:
        """Seconds of (forward, backward, optimiser) and of the forward's parts: ``forward()`` gives (what to
        backpropagate, the bound)."""
        marks.clear()
        tick = time.perf_counter()
        surrogate, bound = forward()
        bound.item()
        forward_done = time.perf_counter()
        surrogate.backward()
        sync()
        backward_done = time.perf_counter()
        apply()
        sync()
        return (forward_done - tick, backward_done - forward_done, time.perf_counter() - backward_done,
                forward_parts(marks, tick, forward_done))

    networks = {"svi": {"generator": objective.generator, "guide": objective.guide.net},
                "twin": {"generator": twin.generator, "guide": twin.guide.net}}
    phases = step_phases(objective, twin, batch_size, iteration)
    times = {side: {key: [] for key in (*PHASES, *FORWARD_PARTS)} for side in phases}
    with contextlib.ExitStack() as clocks:
        marks = {side: clocks.enter_context(network_clock(nets, sync)) for side, nets in networks.items()}
        for r in range(rounds):
            for side in round_order(phases, r):
                for _ in range(steps):
                    *seconds, parts = timed(*phases[side], marks[side])
                    for key, value in (*zip(PHASES, seconds), *parts.items()):
                        times[side][key].append(value)
    return {"batch_size": batch_size, "rounds": rounds, "steps_per_round": steps,
            **{f"{side}_{phase}_ms": 1e3 * statistics.median(times[side][phase])
               for side in phases for phase in PHASES},
            **{f"{side}_forward_{part}_ms": 1e3 * statistics.median(times[side][part])
               for side in phases for part in FORWARD_PARTS}}


def compiled_twin_step(twin: TorchVarDiUStep):
    """The twin's step with its loss and gradient as one compiled graph (``GradientGraph``, as the SVI step's with
    ``objective.compile=true``), then its own clipped Adam step; returns the surrogate's value."""
    graph = GradientGraph(lambda iteration: twin.loss(iteration)[0], {"generator": twin.generator, "guide": twin.guide})

    def step(iteration: float) -> float:
        loss, grads = graph(iteration)
        graph.accumulate(grads)
        twin.apply_gradients()
        return loss.item()

    return step


def measure(batch_size: int, width: int | None, rounds: int, steps: int, warmup: int, overrides: list[str],
            device: str = "cpu", site_samples: int = 0, phase_rounds: int = 0, op_rounds: int = 0,
            compiled: bool = False) -> dict:
    """The interleaved A/B of the SVI step against its twin; with ``phase_rounds``, also ``phase_times`` (as many
    steps a round as the A/B's); with ``site_samples``, also ``site_cost`` (CPU only); with ``op_rounds``, also
    ``op_split`` (as many steps a round; CPU only); with ``compiled``, both steps compiled too, in the same rounds
    (module docstring)."""
    objective, twin = make_pair(batch_size, width, overrides, device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    steps_by_side = {"svi": objective.step, "twin": twin}
    if compiled:  # a second pair from the same initialisation; compilation happens in the warm-up
        compiled_objective, compiled_twin = make_pair(batch_size, width, [*overrides, "objective.compile=true"], device)
        steps_by_side.update(svi_compiled=compiled_objective.step, twin_compiled=compiled_twin_step(compiled_twin))
    first_steps = {}
    for name, step in steps_by_side.items():
        tick = time.perf_counter()
        time_steps(step, 0, 1, sync)  # a compiled side traces and compiles its graph here
        first_steps[name] = time.perf_counter() - tick
        if warmup > 1:
            time_steps(step, 1, warmup - 1)
    times = {name: [] for name in steps_by_side}
    for r in range(rounds):
        for name in round_order(steps_by_side, r):
            times[name].append(time_steps(steps_by_side[name], warmup + r * steps, steps, sync))
    svi, torch_times = times["svi"], times["twin"]
    ratios = [a / b for a, b in zip(svi, torch_times)]
    q1, median, q3 = quartiles(ratios)
    compiled_fields = {}
    if compiled:
        for key, (a, b) in {"compiled": ("svi_compiled", "twin_compiled"),
                            "compiled_to_eager_twin": ("svi_compiled", "twin"),
                            "compiled_to_eager": ("svi_compiled", "svi")}.items():
            rs = [x / y for x, y in zip(times[a], times[b])]
            lo, mid, hi = quartiles(rs)
            compiled_fields.update({f"{key}_ratio_median": mid, f"{key}_ratio_q1": lo, f"{key}_ratio_q3": hi,
                                    f"{key}_ratios": rs})
        compiled_fields.update(svi_compiled_ms=1e3 * statistics.median(times["svi_compiled"]),
                               twin_compiled_ms=1e3 * statistics.median(times["twin_compiled"]),
                               # the first step: tracing and compiling (inductor's on-disk cache may hold the graph)
                               svi_compiled_first_s=first_steps["svi_compiled"],
                               twin_compiled_first_s=first_steps["twin_compiled"])
    phases = phase_times(objective, twin, batch_size, phase_rounds, steps, warmup, sync) if phase_rounds else None
    sites = site_cost(objective, batch_size, site_samples) if site_samples and device == "cpu" else None
    ops = op_split(objective, twin, batch_size, op_rounds, steps, warmup) if op_rounds and device == "cpu" else None
    return {"batch_size": batch_size, "width": width, "networks": network_shapes(objective), "rounds": rounds,
            "steps_per_round": steps,
            "svi_ms": 1e3 * statistics.median(svi), "twin_ms": 1e3 * statistics.median(torch_times),
            "ratio_median": median, "ratio_q1": q1, "ratio_q3": q3,
            "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios,
            **({"phases": phases} if phases else {}), **({"site_cost": sites} if sites else {}),
            **({"op_split": ops} if ops else {}), **compiled_fields}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--width", type=int, default=None, help="both networks' width (default: the configuration's)")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20, help="steps per side per round")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--phase-rounds", type=int, default=10,
                        help="rounds of phase_times at each batch size (0: skip it)")
    parser.add_argument("--site-samples", type=int, default=200,
                        help="samples of site_cost at each batch size (0: skip it)")
    parser.add_argument("--op-rounds", type=int, default=6,
                        help="rounds of op_split at each batch size (0: skip it)")
    parser.add_argument("--compiled", action="store_true",
                        help="also time both steps compiled (objective.compile=true and the twin's GradientGraph)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sides, e.g. optim.lr=2e-3")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    retain_freed_memory()  # as `python -m vardiu_pyro.fit` does (trainer.retain_freed_memory)
    rows = [measure(b, args.width, args.rounds, args.steps, args.warmup, args.overrides, site_samples=args.site_samples,
                    phase_rounds=args.phase_rounds, op_rounds=args.op_rounds, compiled=args.compiled)
            for b in args.batch_sizes]
    meta = {"machine": machine_line(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "pyro": pyro.__version__}
    print(f"SVI step vs plain-torch twin ({meta['threads']} threads, torch {meta['torch']}, pyro {meta['pyro']})")
    print("| batch | generator / guide (layers × width) | SVI ms/step | torch ms/step | ratio (median) | IQR |")
    print("|---:|---|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['batch_size']} | {r['networks']} | {r['svi_ms']:.2f} | {r['twin_ms']:.2f} | "
              f"{r['ratio_median']:.3f} | {r['ratio_q1']:.3f}–{r['ratio_q3']:.3f} |")
    for r in rows:
        if "compiled_ratio_median" in r:
            print(f"batch {r['batch_size']}, compiled: SVI {r['svi_compiled_ms']:.2f} ms, twin {r['twin_compiled_ms']:.2f} "
                  f"ms, ratio {r['compiled_ratio_median']:.3f} (IQR {r['compiled_ratio_q1']:.3f}–"
                  f"{r['compiled_ratio_q3']:.3f}); compiled SVI / eager twin {r['compiled_to_eager_twin_ratio_median']:.3f}, "
                  f"/ eager SVI {r['compiled_to_eager_ratio_median']:.3f}")
        if "phases" in r:
            p = r["phases"]
            print(f"batch {r['batch_size']}, ms (SVI / twin): " + ", ".join(
                f"{phase} {p[f'svi_{phase}_ms']:.2f} / {p[f'twin_{phase}_ms']:.2f}" for phase in PHASES))
            print("  the forward pass by part, ms (SVI / twin): " + ", ".join(
                f"{part} {p[f'svi_forward_{part}_ms']:.2f} / {p[f'twin_forward_{part}_ms']:.2f}"
                for part in FORWARD_PARTS))
        if "site_cost" in r:
            c = r["site_cost"]
            print(f"batch {r['batch_size']}: one Pyro site {c['site_warm_us']:.0f} µs back to back, {c['site_after_us']:.0f} µs "
                  f"after the generator's forward pass; x0 + σ ε {c['ops_warm_us']:.1f} and {c['ops_after_us']:.1f} µs")
        if "op_split" in r:
            o = r["op_split"]
            print(f"batch {r['batch_size']}, forward pass under the profiler, µs (SVI / twin): " + ", ".join(
                f"{what} {o[f'svi_{key}']:.0f} / {o[f'twin_{key}']:.0f}" for what, key in (
                    ("in torch ops", "in_ops_us"), ("outside them", "outside_ops_us"), ("ops per pass", "op_calls"))))
            print("  the ops whose self time differs most, per pass (calls and µs, SVI / twin): " + "; ".join(
                f"{op['op']} {op['svi_calls']:.0f} / {op['twin_calls']:.0f}, {op['svi_us']:.0f} / {op['twin_us']:.0f}"
                for op in o["ops"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
