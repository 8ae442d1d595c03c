"""The schedule clock: where iteration i of a run falls on its schedules (σ curriculum, learning rate).

The schedules are laid out over ``trainer.schedule_iterations`` iterations, by default the run's own
``trainer.iterations``: then iteration i is position i on them, exactly. A run sized to a time budget
(``trainer.iterations=auto``) may change its iteration count while it runs, when the machine turns out
faster or slower than its first measurement said (``vardiu_pyro.budget.BudgetRefit``). The part of
the schedules still ahead is then stretched, or squeezed, over the iterations still ahead, so the
schedules stay continuous and still end at the run's last iteration. Each change is recorded in
``trainer.refits`` as ``[iteration, count before]``; from the last knot a = (iteration, position s_a)
to the end (N iterations, schedule length L) the position moves linearly:

    s(i) = s_a + (i - a) (L - s_a) / (N - a)          (s(0) = 0, s(N) = L)

The configuration (``iterations``, ``schedule_iterations``, ``refits``) gives every position again,
with the same floating-point operations: a re-fitted run repeats exactly from its configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["schedule_position", "check_refits"]


def _along(iteration: int, start: int, position: float, count: int, length: int) -> float:
    """Position at ``iteration`` on the segment from (``start``, ``position``) to (``count``, ``length``)."""
    if start == 0 and count == length:  # no re-fit before: the identity, exactly
        return float(iteration)
    return position + (iteration - start) * (length - position) / (count - start)  # s_a + (i - a)(L - s_a)/(N - a)


def schedule_position(iteration: int, iterations: int, length: int | None = None,
                      refits: Sequence[Sequence[int]] = ()) -> float:
    """The position of ``iteration`` on schedules of ``length`` (default ``iterations``) iterations, in a run
    that now counts ``iterations`` and earlier counted ``refits`` = [[iteration, count before], ...]."""
    length = iterations if length is None else length
    start, position = 0, 0.0
    for at, count in refits:
        if iteration < at:
            return _along(iteration, start, position, count, length)
        position, start = _along(at, start, position, count, length), at
    return _along(iteration, start, position, iterations, length)


def check_refits(refits: Sequence[Sequence[int]], iterations: int, length: int) -> None:
    """``ValueError`` unless ``refits`` is a list of [iteration, count before] (integers) with increasing
    iterations, each before its count, the first count ``length``, and ``iterations`` beyond the last knot."""
    start = 0
    for k, knot in enumerate(refits):
        if len(knot) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in knot):
            raise ValueError(f"each re-fit must be [iteration, count before] (integers), got {list(knot)!r}")
        at, before = knot
        if k == 0 and before != length:
            raise ValueError(f"the first re-fit {list(knot)}: the count before it must be the schedule length {length}")
        if not start < at < before:
            raise ValueError(f"re-fit {list(knot)}: its iteration must lie after {start} and before its count {before}")
        start = at
    if not iterations > start:
        raise ValueError(f"trainer.iterations={iterations} must lie beyond the last re-fit's iteration {start}")
