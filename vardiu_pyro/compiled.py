"""A training step's forward and backward passes as one compiled graph (``objective.compile=true``).

An SVI step runs the model and the guide in Python: Pyro's handlers, the distribution objects and one
dispatch per torch op, forward and backward. ``CompiledELBO`` wraps an ELBO that has a
``differentiable_loss`` (``VarDiUELBO``, Pyro's ``Trace_ELBO``): at its first step it traces the loss and its
gradient with respect to the networks' parameters, with ``make_fx``, into one graph of torch ops (Pyro's
handlers run once, while tracing), and inductor compiles that graph (C++ on a CPU: the element-wise work of the
forward and the backward pass fused into a few loops). Every step then calls the graph with the parameters and
the iteration and sets the parameters' gradients, as ``loss.backward()`` would; ``SVI`` and the optimiser are
unchanged. Pyro's own ``JitTrace_ELBO`` does the same with ``torch.jit.trace``, which is deprecated and, for
this step on a CPU, slower than plain torch.

What the trace keeps and what it freezes:

- inputs of the graph: the networks' parameters and the keyword ``iteration``, as a float64 0-d tensor (the
  σ law's and the weight's ramps compute with it: ``models/sigma.py``);
- random draws are ops of the graph: each call draws anew, from torch's generator, the same values as the
  eager step from the same state (``fallback_random``: inductor calls torch's own samplers);
- everything else the programs read in Python is frozen at the trace: the batch size and other arguments
  (a new value traces a new graph), the networks' structure and precision, tensors held by the teacher; Pyro's
  validation checks one eager pass, run before the trace, not the steps. Code that reads a value computed from the parameters or the
  iteration back into Python (``.item()``, ``if tensor:``) cannot be traced: the first step fails with a message
  that says so, instead of freezing a value that changes.

Tracing and compiling take seconds once per graph (on a 2-core CPU about 30 s for the default step with an empty
inductor cache, a few with a warm one); the compiled step is then faster than the eager one (``benchmarks/run.py``,
sections ``overhead`` and ``efficiency``). The wrapped ELBO's own per-step records (``VarDiUELBO.last_terms``) are
not kept: the steps do not run its Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pyro
import torch
from pyro.infer import ELBO
from torch import Tensor, nn
from torch.fx.experimental.proxy_tensor import disable_proxy_modes_tracing, get_proxy_mode, make_fx
from torch.func import functional_call

__all__ = ["CompileError", "CompiledELBO", "GradientGraph", "structural"]


class CompileError(RuntimeError):
    """A step that cannot be traced or compiled here; the message says why (``python -m vardiu_pyro.fit`` prints it as
    one line, exit status 2)."""


def _no_compiler(error: BaseException) -> bool:
    """Whether inductor failed for want of a working C++ compiler (its ``InvalidCxxCompiler`` or ``CppCompileError``,
    anywhere in the chain of causes), rather than on the graph."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ in ("InvalidCxxCompiler", "CppCompileError"):
            return True
        error = getattr(error, "inner_exception", None) or error.__cause__
    return False


def structural(decide: Callable[[], bool]) -> bool:
    """``decide()``, a Python decision on tensors' values that a program's structure fixes (e.g. whether a batch of
    latents repeats itself because the model drew it in antithetic pairs), also while a step is being traced: then it
    is decided on the traced step's values and frozen into the graph."""
    if get_proxy_mode() is None:
        return decide()
    with disable_proxy_modes_tracing():
        return decide()


class _LossModule(nn.Module):
    """The networks as one module (for ``functional_call``) around a loss closure of the iteration."""

    def __init__(self, networks: Mapping[str, nn.Module], loss_fn):
        super().__init__()
        self.networks = nn.ModuleDict(dict(networks))
        self.loss_fn = loss_fn

    def forward(self, iteration: Tensor) -> Tensor:
        return self.loss_fn(iteration)


class GradientGraph:
    """``loss_fn(iteration)`` and its gradient with respect to the networks' parameters, as one compiled graph.

    ``loss_fn`` takes the iteration as a 0-d tensor and returns a scalar tensor, calling the networks as usual.
    Calling the graph returns the loss (detached) and every parameter's gradient (None where the loss does not
    depend on it), for the parameters' current values.
    """

    def __init__(self, loss_fn, networks: Mapping[str, nn.Module], compile: bool = True):
        self.module = _LossModule(networks, loss_fn)
        self.names = [name for name, _ in self.module.named_parameters()]
        self.params = [p for _, p in self.module.named_parameters()]
        if not self.params:
            raise ValueError("a compiled step needs networks with parameters")
        self.device = self.params[0].device
        self.compile = compile
        self._graph = None

    def _loss_and_grads(self, iteration: Tensor, *params: Tensor):
        loss = functional_call(self.module, dict(zip(self.names, params)), (iteration,))
        if not (isinstance(loss, Tensor) and loss.dim() == 0):
            raise ValueError(f"the loss of a compiled step must be a scalar tensor, got {type(loss).__name__}")
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return loss.detach(), grads

    def _trace(self, iteration: Tensor):
        inputs = [p.detach().requires_grad_(p.requires_grad) for p in self.params]
        with torch.random.fork_rng(devices=[self.device] if self.device.type != "cpu" else []):
            # both passes run the step for real: their draws must not shift the run's random stream
            with torch.no_grad():  # eager, with Pyro's validation as configured (the trace reads no values)
                self.module(iteration)
            try:
                with pyro.validation_enabled(False):
                    graph = make_fx(self._loss_and_grads)(iteration, *inputs)
            except RuntimeError as error:
                if "data-dependent" in str(error) or "tracing tensor" in str(error):
                    raise CompileError("this step cannot be compiled: its Python code reads a value computed from "
                                       "the parameters or the iteration (set objective.compile=false). "
                                       f"torch says: {str(error).splitlines()[0]}") from error
                raise
        if self.compile:  # fallback_random: torch's own samplers, the eager step's draws
            graph = torch.compile(graph, dynamic=False, fullgraph=True, options={"fallback_random": True})
        return graph

    def __call__(self, iteration: float | Tensor) -> tuple[Tensor, tuple[Tensor | None, ...]]:
        iteration = torch.as_tensor(iteration, dtype=torch.float64, device=self.device)
        params = (p.detach() for p in self.params)
        if self._graph is not None:
            return self._graph(iteration, *params)
        graph = self._trace(iteration)
        try:  # torch.compile is lazy: inductor compiles at this first call
            out = graph(iteration, *params)
        except Exception as error:
            first = (str(error).strip().splitlines() or [""])[0][:300]
            why = "; on a CPU it needs a working C++ compiler" if _no_compiler(error) else ""
            raise CompileError(f"inductor could not compile the step ({type(error).__name__}: {first}){why} (set "
                               "objective.compile=false to run eager)") from error
        self._graph = graph
        return out

    def accumulate(self, grads) -> None:
        """Add ``grads`` to the parameters' ``.grad``, as ``backward()`` does."""
        for p, g in zip(self.params, grads):
            if g is not None:
                p.grad = g if p.grad is None else p.grad + g


class CompiledELBO(ELBO):
    """An ELBO whose ``loss_and_grads`` runs as one compiled graph per set of arguments (module docstring).

    :param elbo: an ELBO with ``differentiable_loss(model, guide, *args, **kwargs)``; ``loss`` and
        ``differentiable_loss`` are its own, eager.
    :param networks: every network whose parameters the loss is differentiated for (the optimiser's networks).
    :param compile: False keeps the traced graph uncompiled (run op by op: for tests and comparisons).

    The keyword ``iteration`` (default 0) enters the graph as a tensor; every other argument is part of the graph's
    key. As ``ELBO.loss_and_grads``, the gradient is accumulated only when the loss is finite.
    """

    def __init__(self, elbo: ELBO, networks: Mapping[str, nn.Module], compile: bool = True):
        super().__init__()
        if not hasattr(elbo, "differentiable_loss"):
            raise ValueError(f"{type(elbo).__name__} has no differentiable_loss to compile")
        self.elbo, self.networks, self.compile = elbo, dict(networks), compile
        self.graphs: dict = {}

    def __getattr__(self, name):  # the wrapped ELBO's attributes (importance_samples, teacher, ...)
        if name in ("elbo", "networks", "compile", "graphs"):
            raise AttributeError(name)
        return getattr(self.elbo, name)

    def _get_trace(self, model, guide, args, kwargs):
        return self.elbo._get_trace(model, guide, args, kwargs)

    def loss(self, model, guide, *args, **kwargs) -> float:
        return self.elbo.loss(model, guide, *args, **kwargs)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        return self.elbo.differentiable_loss(model, guide, *args, **kwargs)

    def graph(self, model, guide, *args, **kwargs) -> GradientGraph:
        """The graph of these arguments (all but ``iteration``), traced at its first call."""
        fixed = {k: v for k, v in kwargs.items() if k != "iteration"}
        key = (id(model), id(guide), args, tuple(sorted(fixed.items())))
        try:
            hash(key)
        except TypeError as error:
            raise TypeError(f"a compiled ELBO keys its graphs by the step's arguments, which must be hashable: "
                            f"{args!r}, {fixed!r}") from error
        if key not in self.graphs:
            def loss_fn(iteration: Tensor) -> Tensor:
                return self.elbo.differentiable_loss(model, guide, *args, iteration=iteration, **fixed)
            self.graphs[key] = GradientGraph(loss_fn, self.networks, compile=self.compile)
        return self.graphs[key]

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        graph = self.graph(model, guide, *args, **kwargs)
        loss, grads = graph(kwargs.get("iteration", 0))
        if getattr(self.elbo, "last_terms", None) is not None:  # the trace's: stale, and holding its autograd graph
            self.elbo.last_terms = None
        value = loss.item()
        if math.isfinite(value):
            graph.accumulate(grads)
        return value
