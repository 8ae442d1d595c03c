"""Many-step sampling of a teacher: the probability-flow ODE dx/dσ = (x - D(x, σ)) / σ, from σ_max to 0.

The σ schedule and the update rule are diffusers' EDM schedulers (``EDMEulerScheduler``: Euler,
one function evaluation per step; ``EDMDPMSolverMultistepScheduler``: DPM-Solver++(2M), also one
per step). Any teacher can be sampled: its denoiser is D(x, σ) = x + σ² s(x, σ) (``Teacher.denoise``).
The scheduler is fed the output that its own EDM preconditioning turns back into D:
F = (D - c_skip x) / c_out, with the scheduler's σ_data the teacher's, or 1 where the teacher's is below 1 (0 for
the exact and empirical teachers): the round trip gives back D for any σ_data.
"""

from __future__ import annotations

import math

import torch
from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler
from torch import Tensor

from .denoiser import edm_scalings

__all__ = ["SOLVERS", "SAMPLER_DEFAULTS", "make_scheduler", "sample_teacher"]

SOLVERS = {"euler": EDMEulerScheduler, "dpmsolver": EDMDPMSolverMultistepScheduler}
SAMPLER_DEFAULTS = {"num_steps": 32, "solver": "dpmsolver", "sigma_min": 0.02, "sigma_max": 80.0, "rho": 7.0}


def make_scheduler(solver: str, sigma_min: float, sigma_max: float, sigma_data: float, rho: float = 7.0):
    """A diffusers EDM scheduler with Karras' σ schedule on [σ_min, σ_max] and a final step to σ = 0."""
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SOLVERS)}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return SOLVERS[solver](sigma_min=sigma_min, sigma_max=sigma_max, sigma_data=sigma_data, rho=rho,
                           prediction_type="epsilon", final_sigmas_type="zero")


@torch.no_grad()
def sample_teacher(teacher, n: int, num_steps: int = SAMPLER_DEFAULTS["num_steps"],
                   solver: str = SAMPLER_DEFAULTS["solver"], sigma_min: float = SAMPLER_DEFAULTS["sigma_min"],
                   sigma_max: float = SAMPLER_DEFAULTS["sigma_max"], rho: float = SAMPLER_DEFAULTS["rho"],
                   generator: torch.Generator | None = None, batch_size: int = 10_000) -> Tensor:
    """n samples of the teacher's clean distribution, by ``num_steps`` steps (= function evaluations).

    The start x ~ N(0, (σ_max² + σ_data²) I) is the Gaussian with p_d^σmax's variance for data of
    scale σ_data (``teacher.sigma_data`` when it has one, else 0).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    sigma_data = float(getattr(teacher, "sigma_data", 0.0))
    anchor = next(iter([*teacher.buffers(), *teacher.parameters()]), torch.zeros(()))  # device and dtype
    shape = tuple(teacher.event_shape)
    chunks = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        x = torch.randn((m, *shape), generator=generator, device=anchor.device, dtype=anchor.dtype)
        chunks.append(_integrate(teacher, x * math.sqrt(sigma_max**2 + sigma_data**2), num_steps, solver,
                                 sigma_min, sigma_max, rho, max(sigma_data, 1.0)))
    return torch.cat(chunks)


def _integrate(teacher, x: Tensor, num_steps: int, solver: str, sigma_min: float, sigma_max: float,
               rho: float, sigma_data: float) -> Tensor:
    scheduler = make_scheduler(solver, sigma_min, sigma_max, sigma_data, rho)
    scheduler.set_timesteps(num_steps, device=x.device)
    for i, t in enumerate(scheduler.timesteps):
        sigma = scheduler.sigmas[i].to(device=x.device, dtype=x.dtype)
        denoised = teacher.denoise(x, sigma.expand(x.shape[0]))
        c_skip, c_out, _, _ = edm_scalings(sigma, scheduler.config.sigma_data)
        model_output = (denoised - c_skip * x) / c_out  # what the scheduler's preconditioning maps back to D
        scheduler.is_scale_input_called = True  # the teacher preconditions its own input (no scale_model_input)
        x = scheduler.step(model_output, t, x).prev_sample.to(x.dtype)
    return x
