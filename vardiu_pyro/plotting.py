"""Plots of a run: student samples over the target density, and metrics against time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

__all__ = ["plot_samples", "plot_metrics", "plot_score_error"]


def _density_grid(target, lim: tuple[float, float], n: int = 300):
    axis = torch.linspace(lim[0], lim[1], n, device=target.locs.device if hasattr(target, "locs") else None)
    xx, yy = torch.meshgrid(axis, axis, indexing="xy")
    with torch.no_grad():
        logp = target.log_prob(torch.stack([xx, yy], -1).reshape(-1, 2)).reshape(n, n)
    return xx.cpu(), yy.cpu(), logp.clamp(min=logp.max().item() - 20).cpu()  # the top 20 nats


def plot_samples(path: str | Path, target, samples: torch.Tensor, reference: torch.Tensor | None = None,
                 title: str = "student", max_points: int = 5000) -> Path | None:
    """Student samples over the target's log-density contours, the target's own samples beside.

    Only 2-D data can be drawn this way; for other shapes nothing is written and None returned.
    """
    samples = samples.detach().flatten(1).cpu()
    if samples.shape[1] != 2:
        return None
    panels = [(samples, title)] + ([(reference.detach().flatten(1).cpu(), "target")] if reference is not None else [])
    pts = torch.cat([p for p, _ in panels])
    finite = pts[torch.isfinite(pts).all(1)]
    lo, hi = torch.quantile(finite, 0.001).item(), torch.quantile(finite, 0.999).item()
    if hasattr(target, "locs"):
        lo = min(lo, target.locs.min().item() - 5)
        hi = max(hi, target.locs.max().item() + 5)
    grid = _density_grid(target, (lo, hi)) if hasattr(target, "log_prob") else None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.2), squeeze=False)
    for ax, (pts, name) in zip(axes[0], panels):
        if grid is not None:
            ax.contourf(*grid, levels=20, cmap="Blues")
        pts = pts[:max_points]
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, c="tab:red", alpha=0.5, linewidths=0)
        ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal", title=name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_metrics(path: str | Path, records: Sequence[dict], keys: Sequence[str] = ("log_mmd", "log_density", "modes_covered"),
                 references: dict[str, float] | None = None) -> Path | None:
    """Each metric against wall-clock seconds (one panel per metric); dashed lines for references."""
    keys = [k for k in keys if any(k in r for r in records)]
    if not records or not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rows = [r for r in records if key in r]
        ax.plot([r["seconds"] for r in rows], [r[key] for r in rows], marker="o", ms=3)
        if references and key in references:
            ax.axhline(references[key], ls="--", c="gray", lw=1, label="target samples (reference)")  # not a goal
            ax.legend(loc="best", fontsize=8)
        ax.set(xlabel="wall-clock seconds", title=key)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_score_error(path: str | Path, rows: Sequence[dict]) -> Path | None:
    """Relative error of a teacher's score against the exact score, against σ (log-log)."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    ax.loglog([r["sigma"] for r in rows], [r["relative_error"] for r in rows], marker="o", ms=4)
    for level in (0.1, 1.0):
        ax.axhline(level, ls="--", c="gray", lw=0.8)
    ax.set(xlabel="σ", ylabel="relative error of the score", title="teacher score vs exact score")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
