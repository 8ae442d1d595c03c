"""Teachers: the score of the noised data distribution, s_d(x_t, σ) = ∇ log p_d^σ(x_t).

A teacher is frozen: it is never registered with Pyro and its parameters never require grad.
``log_prob`` is available only when the teacher has a density (analytic targets, finite sample
sets); it lets the objective report the bound's value.

- ``ExactTeacher``: the exact noised score of an analytic target.
- ``EmpiricalTeacher``: the exact score of a finite sample set convolved with N(0, σ²I).
- ``LearnedTeacher``: Tweedie's score (D(x, σ) - x)/σ² of a trained denoiser (diffusers format).

Teachers that are not the target itself also have ``sample(n)``: draws of the teacher's own clean
distribution, so that its quality can be reported beside the student's.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from torch import Tensor, nn

from vardiu_pyro.seeding import seeded
from vardiu_pyro.validation import ConfigError

from .denoiser import EDMDenoiser
from .sampling import SAMPLER_DEFAULTS, sample_teacher
from .targets import mixture_log_prob, mixture_score, mixture_score_and_log_prob

__all__ = ["Teacher", "ExactTeacher", "EmpiricalTeacher", "LearnedTeacher", "load_denoiser"]


class Teacher(nn.Module):
    """Interface: ``score(x_t, sigma)``; ``log_prob(x_t, sigma)`` or ``has_log_prob = False``. The VarDiU objective
    asks for both at once, ``score_and_log_prob``, which a teacher may compute in one pass (the mixtures do).

    ``x_t`` has shape (B, *event_shape) and ``sigma`` shape (B,).
    """

    has_log_prob: bool = False
    event_shape: torch.Size  # shape of one data point

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    def denoise(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """Tweedie's posterior mean E[x0 | x_t] = x_t + σ² s(x_t, σ) (the teacher as a denoiser)."""
        return x_t + sigma.reshape(-1, *([1] * (x_t.dim() - 1))).square() * self.score(x_t, sigma)

    def log_prob(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no log-density")

    def score_and_log_prob(self, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor | None]:
        """(``score``, ``log_prob``) at the same points, the latter None without a density (a teacher with one
        may share the work between them)."""
        return self.score(x_t, sigma), (self.log_prob(x_t, sigma) if self.has_log_prob else None)

    def _own_pair(self, cls: type) -> bool:
        """Whether ``score`` and ``log_prob`` are still ``cls``'s, so that its one-pass ``score_and_log_prob`` gives
        what they would give (a subclass that changes either one gets the two calls instead)."""
        return type(self).score is cls.score and type(self).log_prob is cls.log_prob

    def freeze(self) -> "Teacher":
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()


class ExactTeacher(Teacher):
    """The exact noised score and log-density of an analytic target (e.g. a Gaussian mixture)."""

    has_log_prob = True

    def __init__(self, target: nn.Module):
        super().__init__()
        self.target = target
        self.freeze()

    @property
    def event_shape(self) -> torch.Size:
        return torch.Size(self.target.event_shape)

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.target.score(x_t, sigma)

    def log_prob(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.target.log_prob(x_t, sigma)

    def score_and_log_prob(self, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        if hasattr(self.target, "score_and_log_prob") and self._own_pair(ExactTeacher):
            return self.target.score_and_log_prob(x_t, sigma)
        return super().score_and_log_prob(x_t, sigma)


class EmpiricalTeacher(Teacher):
    """The sample set {y_1, ..., y_N} convolved with N(0, σ²I): a mixture of N Gaussians N(y_j, σ²I).

        log p^σ(x) = logsumexp_j [-|x - y_j|² / (2σ²)] - log N - (D/2) log(2πσ²)
        s(x, σ)    = (Σ_j r_j(x) y_j - x) / σ²,   r = softmax_j(-|x - y_j|² / (2σ²))

    Both are exact for the empirical distribution (the kernel density estimate with bandwidth σ);
    computed from differences x - y_j and a softmax, so float32 stays stable at small σ far from
    every point. The points are drawn once from ``target`` with their own seed.

    :param target: anything with ``sample(n)``.
    :param num_samples: N, the size of the sample set.
    :param chunk_size: points of x processed at once (memory ∝ chunk_size · N).
    """

    has_log_prob = True

    def __init__(self, target: nn.Module, num_samples: int = 2000, seed: int = 0, chunk_size: int = 1024):
        super().__init__()
        if num_samples < 1:
            raise ValueError(f"teacher.num_samples must be >= 1, got {num_samples}")
        device = next((b.device for b in target.buffers()), torch.device("cpu"))  # where the points are drawn
        with seeded(seed, device):
            points = target.sample(int(num_samples))
        self.register_buffer("points", points.flatten(1).contiguous())
        self.register_buffer("log_weights", torch.full((len(points),), -math.log(len(points)), dtype=points.dtype))
        self.event_shape = points.shape[1:]
        self.chunk_size = int(chunk_size)
        self.freeze()

    def _chunks(self, fn, x: Tensor, sigma: Tensor) -> list:
        """``fn(x, points, log_weights, σ²)`` over chunks of ``chunk_size`` points of x (flattened)."""
        flat, var = x.flatten(1), sigma.reshape(-1, 1).square()
        return [fn(flat[i:i + self.chunk_size], self.points, self.log_weights, var[i:i + self.chunk_size])
                for i in range(0, len(flat), self.chunk_size)]

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return torch.cat(self._chunks(mixture_score, x_t, sigma)).view_as(x_t)

    def log_prob(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return torch.cat(self._chunks(mixture_log_prob, x_t, sigma))

    def score_and_log_prob(self, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        if not self._own_pair(EmpiricalTeacher):
            return super().score_and_log_prob(x_t, sigma)
        scores, log_probs = zip(*self._chunks(mixture_score_and_log_prob, x_t, sigma))
        return torch.cat(scores).view_as(x_t), torch.cat(log_probs)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the teacher's clean distribution: the sample set itself, resampled."""
        idx = torch.randint(len(self.points), (n,), generator=generator, device=self.points.device)
        return self.points[idx].view(n, *self.event_shape)


WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # what save_pretrained writes beside config.json


def load_denoiser(path: str | os.PathLike, field: str = "teacher.path") -> EDMDenoiser:
    """Load an ``EDMDenoiser`` saved by ``save_pretrained`` from a local directory, offline.

    The directory is checked first, so that a missing or malformed one is a ``ConfigError`` with one
    line naming ``field`` and the reason (no config.json, a config of another class, no weights,
    weights that do not fit the config); diffusers is told ``local_files_only``, so the Hub is never
    contacted. (The entry points also set ``HF_HUB_OFFLINE=1`` before importing diffusers, which
    huggingface_hub reads only at import time.)
    """
    path = Path(path).expanduser()
    where = f"{field}={path}"
    if not path.is_dir():
        raise ConfigError(f"{where}: no such directory")
    config_file = path / EDMDenoiser.config_name
    if not config_file.is_file():
        raise ConfigError(f"{where}: no {EDMDenoiser.config_name} there (expected a directory written by "
                          "`python -m vardiu_pyro.train_teacher` or EDMDenoiser.save_pretrained)")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: {EDMDenoiser.config_name} is not valid JSON ({e})") from None
    class_name = config.get("_class_name", EDMDenoiser.__name__) if isinstance(config, dict) else None
    if class_name != EDMDenoiser.__name__:
        raise ConfigError(f"{where}: {EDMDenoiser.config_name} describes {class_name or type(config).__name__}, "
                          f"not an {EDMDenoiser.__name__}")
    if not (path / WEIGHTS_NAME).is_file():
        raise ConfigError(f"{where}: no {WEIGHTS_NAME} there (the denoiser's weights)")
    describes = f"the weights do not load into the denoiser its {EDMDenoiser.config_name} describes"
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # its warnings about unfit tensors: the error below says it in one line
    try:
        denoiser, info = EDMDenoiser.from_pretrained(str(path), local_files_only=True, low_cpu_mem_usage=False,
                                                     output_loading_info=True)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError) as e:
        detail = ": ".join(line.strip().rstrip(":") for line in str(e).splitlines()[:2] if line.strip()) or type(e).__name__
        raise ConfigError(f"{where}: {describes} ({detail})") from None
    finally:
        diffusers_logging.set_verbosity(verbosity)
    # diffusers only logs tensors missing from the file (left uninitialised) or not in the network (ignored)
    unfit = {kind: names for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if (names := info.get(kind))}
    if unfit:
        detail = "; ".join(f"{kind.replace('_keys', '')}: {', '.join(map(str, names[:3]))}"
                           f"{f' and {len(names) - 3} more' if len(names) > 3 else ''}" for kind, names in unfit.items())
        raise ConfigError(f"{where}: {describes} ({detail})")
    return denoiser


class LearnedTeacher(Teacher):
    """The score of a trained EDM denoiser:  s(x, σ) = (D(x, σ) - x) / σ²  (no log-density).

    :param denoiser: an ``EDMDenoiser``.
    :param target: the run's target, only to check that the shapes agree (may be None).
    :param sampler: keyword arguments of ``vardiu_pyro.models.sampling.sample_teacher`` used by ``sample``
        (e.g. ``{"num_steps": 32, "solver": "dpmsolver"}``).
    """

    def __init__(self, denoiser: EDMDenoiser, target: nn.Module | None = None, sampler: dict | None = None,
                 field: str = "teacher.path"):
        super().__init__()
        if target is not None and hasattr(target, "event_shape") and torch.Size(target.event_shape) != denoiser.data_shape:
            raise ConfigError(f"{field}: the denoiser's data shape {tuple(denoiser.data_shape)} differs from the "
                              f"target's {tuple(target.event_shape)} (a teacher of other data)")
        self.denoiser = denoiser
        self.sampler = dict(sampler or {})
        self.freeze()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, target: nn.Module | None = None,
                        sampler: dict | None = None) -> "LearnedTeacher":
        """The teacher saved in ``path`` (a diffusers directory, e.g. a ``train_teacher`` run directory)."""
        field = f"teacher.path={Path(path).expanduser()}"
        return cls(load_denoiser(path), target=target, sampler=sampler, field=field)

    @property
    def sigma_data(self) -> float:
        return self.denoiser.sigma_data

    @property
    def event_shape(self) -> torch.Size:
        return self.denoiser.data_shape

    def denoise(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.denoiser(x_t, sigma)

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.denoiser.score(x_t, sigma)

    @property
    def sampler_settings(self) -> dict:
        """The sampler's settings: ``sampler``, else σ_min and σ_max the denoiser was trained on, else defaults."""
        trained = {k: float(self.denoiser.config[k]) for k in ("sigma_min", "sigma_max")
                   if self.denoiser.config.get(k) is not None}
        chosen = {k: v for k, v in self.sampler.items() if v is not None}
        return {**SAMPLER_DEFAULTS, **trained, **chosen}

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws by many-step sampling of the probability-flow ODE (a diffusers EDM scheduler)."""
        return sample_teacher(self, n, generator=generator, **self.sampler_settings)
