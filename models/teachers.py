"""Teachers: the score of the noised data distribution, s_d(x_t, σ) = ∇ log p_d^σ(x_t).

A teacher is frozen: it is never registered with Pyro and its parameters never require grad.
``log_prob`` is available only when the teacher has a density (analytic targets); it lets the
objective report the bound's value, and is ``None`` otherwise.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Teacher", "ExactTeacher"]


class Teacher(nn.Module):
    """Interface: ``score(x_t, sigma)``; ``log_prob(x_t, sigma)`` or ``has_log_prob = False``.

    ``x_t`` has shape (B, *event_shape) and ``sigma`` shape (B,).
    """

    has_log_prob: bool = False

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError

    def log_prob(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no log-density")

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

    def score(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.target.score(x_t, sigma)

    def log_prob(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.target.log_prob(x_t, sigma)
