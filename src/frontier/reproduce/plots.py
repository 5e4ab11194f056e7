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
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
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
    ax.set_xticks(list(xs), labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
