"""Matplotlib figures for reports, drawn off-screen (Agg) so they work on headless machines and in CI."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def bar_chart(
    path: Path,
    labels: list[str],
    values: list[float],
    ylabel: str,
    title: str,
    intervals: list[tuple[float | None, float | None]] | None = None,
    reference: list[float] | None = None,
) -> Path:
    """Bars with optional 95% interval whiskers and optional reference values drawn as markers beside them."""
    crowded = len(values) > 6  # then a wider figure and slanted labels keep them apart
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(values)), 4.5 if crowded else 4), dpi=110)
    xs = range(len(values))
    yerr = None
    if intervals is not None:
        known = [lo is not None and hi is not None and not math.isnan(lo) for lo, hi in intervals]
        pairs = list(zip(values, intervals, known, strict=True))
        yerr = [[v - lo if ok else 0 for v, (lo, _), ok in pairs], [hi - v if ok else 0 for v, (_, hi), ok in pairs]]
    ax.bar(xs, values, yerr=yerr, capsize=6, color="#4c72b0", label="measured")
    if reference is not None:
        ax.scatter(xs, reference, marker="D", color="#dd8452", zorder=3, label="reference")
        ax.legend()
    if crowded:
        ax.set_xticks(list(xs), labels, rotation=35, ha="right", fontsize=8)
    else:
        ax.set_xticks(list(xs), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def line_chart(
    path: Path,
    panels: dict[str, dict[str, tuple[list[float], list[float]]]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """Log-log lines side by side: `panels` maps a panel title to its series, each `label → (xs, ys)`."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), dpi=110, squeeze=False)
    for ax, (panel, series) in zip(axes[0], panels.items(), strict=True):
        for label, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o", label=label)
        ticks = sorted({x for xs, _ in series.values() for x in xs})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
