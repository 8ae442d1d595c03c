"""Evaluation of a one-step student against its target: log-MMD, log-density, modes covered."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .metrics import MeanLogDensity, ModesCovered, MultiBandwidthMMD
from .seeding import seeded

__all__ = ["Evaluator", "sample_generator", "device_of", "metric_lines"]


def device_of(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (CPU for a module with neither)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


@torch.no_grad()
def sample_generator(generator: nn.Module, n: int, rng: torch.Generator | None = None,
                     batch_size: int = 10_000) -> Tensor:
    """n samples x0 = g(z), z ~ N(0, I), drawn in batches (from ``rng`` when given)."""
    param = next(generator.parameters())
    chunks = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn((m, *generator.latent_shape), generator=rng, device=param.device, dtype=param.dtype)
        chunks.append(generator(z))
    return torch.cat(chunks)


class Evaluator:
    """Scores a generator against ``num_samples`` reference samples of the target.

    The reference set is drawn once, from its own seeded generator (it never touches the
    training RNG), and its kernel term is cached, so each evaluation costs only the model-side
    blocks. Every evaluation uses the same latent draws (common random numbers), so successive
    values differ only because the generator changed. Metrics a target cannot support are left
    out: ``log_density`` needs ``target.log_prob``, ``modes_covered`` needs ``target.assign``.
    """

    def __init__(self, target: nn.Module, num_samples: int = 10_000,
                 bandwidths: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), seed: int = 12345):
        if num_samples < 2:
            raise ValueError(f"evaluation needs at least 2 samples, got {num_samples}")
        self.target, self.num_samples, self.seed = target, int(num_samples), seed
        device = device_of(target)
        self.reference = self._target_samples(seed)
        # this process's samples only: torchmetrics would otherwise gather states across the ranks
        # of an initialised torch.distributed group, and hang (only rank 0 evaluates)
        local = {"sync_on_compute": False}
        self.mmd = MultiBandwidthMMD(bandwidths, reset_real_features=False, **local).to(device)
        self.mmd.update(self.reference, real=True)
        self.extra: dict[str, object] = {}
        if hasattr(target, "log_prob"):
            self.extra["log_density"] = MeanLogDensity(target.log_prob, **local).to(device)
        if hasattr(target, "assign"):
            self.extra["modes_covered"] = ModesCovered(target, **local).to(device)

    def score(self, samples: Tensor) -> dict[str, float]:
        """Metrics of a given sample set (any size >= 2)."""
        self.mmd.reset()
        self.mmd.update(samples, real=False)
        mmd = self.mmd.compute().item()
        out = {"log_mmd": math.log(mmd) if mmd > 0 else -math.inf}
        for name, metric in self.extra.items():
            metric.reset()
            metric.update(samples)
            value = metric.compute()
            out[name] = int(value) if name == "modes_covered" else value.item()
        return out

    def samples(self, generator: nn.Module) -> Tensor:
        """``num_samples`` draws of the generator, from the same latents at every call."""
        device = next(generator.parameters()).device
        rng = torch.Generator(device=device).manual_seed(self.seed + 1)
        return sample_generator(generator, self.num_samples, rng)

    def __call__(self, generator: nn.Module) -> dict[str, float]:
        """Metrics of ``num_samples`` draws of the generator."""
        return self.score(self.samples(generator))

    @functools.cached_property
    def reference_metrics(self) -> dict[str, float]:
        """A perfect student's values: the metrics of ``num_samples`` more target samples, drawn independently of the
        reference set (its own seed); their ``log_mmd`` is the metric's floor at this sample size."""
        return self.score(self._target_samples(self.seed + 2))

    def _target_samples(self, seed: int) -> Tensor:
        """``num_samples`` draws of the target from ``seed``, without touching the global random state."""
        device = device_of(self.target)
        with seeded(seed, device):
            return self.target.sample(self.num_samples)


def metric_lines(summary: dict) -> list[str]:
    """The printed summary's metric lines (log-MMD, and log-density and modes when present) beside the target's own."""
    ref = summary.get("reference", {})
    floor = f"   (two independent target sample sets: {ref['log_mmd']:.3f})" if "log_mmd" in ref else ""
    lines = [f"  log-MMD        {summary['log_mmd']:8.3f}{floor}"]
    if "log_density" in summary:
        lines.append(f"  log-density    {summary['log_density']:8.3f}   (target samples: {ref.get('log_density', float('nan')):.3f})")
    if "modes_covered" in summary:
        lines.append(f"  modes covered  {summary['modes_covered']:8d}   (of {ref.get('modes_covered', '?')})")
    return lines
