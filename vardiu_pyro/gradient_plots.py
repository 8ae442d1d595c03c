"""Plots of the gradient analysis (``vardiu_pyro.variance``): variance against batch size, bias and MSE
per estimator, and per-σ curves. Each reads the rows of ``gradient_stats.csv`` (as dicts)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plot_variance_vs_batch", "plot_bias_and_mse", "plot_per_sigma"]


def _overall(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        if r["sigma_bin"] == "all":
            out.setdefault(r["estimator"], []).append(r)
    return {k: sorted(v, key=lambda r: r["batch_size"]) for k, v in out.items()}


def _batch_ticks(ax, rows: list[dict]) -> None:
    """Tick the batch sizes themselves on a log axis."""
    sizes = sorted({r["batch_size"] for r in rows})
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.minorticks_off()


def _errorbar(ax, rows, key, scale, label, **kw):
    x = [r["batch_size"] for r in rows]
    y = [r[key] / scale for r in rows]
    lo = [max(r[key] - r[f"{key}_lo"], 0) / scale for r in rows]
    hi = [max(r[f"{key}_hi"] - r[key], 0) / scale for r in rows]
    return ax.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=label, **kw)


def plot_variance_vs_batch(rows: list[dict], path: str | Path) -> None:
    """tr Cov of one estimate against B (log-log, 95% intervals), each with its 1/B line through its smallest B."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ref_sq = rows[0]["ref_norm"] ** 2
    for name, rs in _overall(rows).items():
        line = _errorbar(ax, rs, "variance", ref_sq, name)
        b0, v0 = rs[0]["batch_size"], rs[0]["variance"] / ref_sq
        xs = [r["batch_size"] for r in rs]
        ax.plot(xs, [v0 * b0 / b for b in xs], ls="--", color=line[0].get_color(), alpha=0.5)
    ax.plot([], [], ls="--", color="gray", label="1/B")
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="variance / ‖∇D‖²",
           title="Variance of one gradient estimate")
    _batch_ticks(ax, rows)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bias_and_mse(rows: list[dict], path: str | Path) -> None:
    """Bias (with its resolution) and MSE against B, per estimator, relative to the reference's norm."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ref = rows[0]["ref_norm"]
    for name, rs in _overall(rows).items():
        line = _errorbar(axes[0], rs, "bias", ref, name)
        axes[0].plot([r["batch_size"] for r in rs], [r["resolution"] / ref for r in rs], ls=":",
                     color=line[0].get_color(), alpha=0.6)
        _errorbar(axes[1], rs, "mse", ref**2, name)
        _errorbar(axes[2], rs, "cosine", 1.0, name)
    axes[0].plot([], [], ls=":", color="gray", label="resolution")
    axes[0].set(xscale="log", yscale="log", xlabel="batch size B", ylabel="bias / ‖∇D‖", title="Bias ‖E g - ∇D‖")
    axes[1].set(xscale="log", yscale="log", xlabel="batch size B", ylabel="MSE / ‖∇D‖²", title="MSE E‖g - ∇D‖²")
    axes[2].set(xscale="log", xlabel="batch size B", ylabel="E cos(g, ∇D)", title="Cosine to the reference")
    for ax in axes:
        ax.legend(fontsize=8)
        _batch_ticks(ax, rows)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_per_sigma(rows: list[dict], path: str | Path) -> None:
    """Bias, variance and MSE of each σ bin's contribution (at the per-σ batch size), and VarDiU's bound gap."""
    binned = [r for r in rows if r["sigma_bin"] != "all"]
    if not binned:
        return
    gap = any(r.get("bound_gap") not in (None, "") for r in binned)
    fig, axes = plt.subplots(1, 4 if gap else 3, figsize=(20 if gap else 15, 4.5))
    ref = rows[0]["ref_norm"]
    by_name: dict[str, list[dict]] = {}
    for r in binned:
        by_name.setdefault(r["estimator"], []).append(r)
    for name, rs in by_name.items():
        rs = sorted(rs, key=lambda r: r["sigma_lo"])
        x = [(r["sigma_lo"] * r["sigma_hi"]) ** 0.5 for r in rs]
        axes[0].plot(x, [r["bias"] / ref for r in rs], marker="o", label=name)
        axes[1].plot(x, [r["variance"] / ref**2 for r in rs], marker="o", label=name)
        axes[2].plot(x, [max(r["mse"], 1e-300) / ref**2 for r in rs], marker="o", label=name)
        if gap and rs[0].get("bound_gap") not in (None, ""):
            axes[3].plot(x, [r["bound_gap"] for r in rs], marker="o", label=name)
    first = sorted(by_name[next(iter(by_name))], key=lambda r: r["sigma_lo"])
    x = [(r["sigma_lo"] * r["sigma_hi"]) ** 0.5 for r in first]
    axes[0].plot(x, [r["ref_bin_norm"] / ref for r in first], color="k", ls="--", label="‖∇D of the bin‖")
    batch = first[0]["batch_size"]
    titles = ["bias / ‖∇D‖", "variance / ‖∇D‖²", "MSE / ‖∇D‖²", "bound gap (bin's share of E w (U - KL))"]
    for ax, title in zip(axes, titles):
        ax.set(xscale="log", yscale="log" if title != titles[3] else "linear", xlabel="σ (bin centre)",
               title=f"{title}, B = {batch}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
