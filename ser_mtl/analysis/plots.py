"""PNG figures for reports: confusion matrices, a metric against a swept parameter, EER bars, panels.

Drawn on ``Figure`` with the Agg canvas, not pyplot (no display, no global state); PNGs written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ser_mtl.io_utils import atomic_path


def save_figure(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_confusion(confmat: np.ndarray, classes: list[str], title: str, path: str | Path) -> Path:
    """Row-normalised confusion matrix (recall per true class) with the summed counts in each cell."""
    counts = np.asarray(confmat, dtype=np.int64)  # (C, C) rows true, columns predicted
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)  # (C, C)
    size = 1.2 + 0.9 * len(classes)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(rates, vmin=0.0, vmax=1.0, cmap="Blues")
    fig.colorbar(image, ax=ax, label="share of true class")
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true")
    for i, j in np.ndindex(len(classes), len(classes)):
        ax.text(j, i, f"{100 * rates[i, j]:.0f}%\n({counts[i, j]})", ha="center", va="center", fontsize=8,
                color="white" if rates[i, j] > 0.6 else "black")
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_sweep(x: list[float] | list[str], series: dict[str, tuple[list[float], list[float]]], xlabel: str,
               ylabel: str, title: str, path: str | Path) -> Path:
    """One line with error bars per series: ``{name: (means, stds)}`` over the shared ``x`` values."""
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
    positions = list(x) if numeric else list(range(len(x)))
    for name, (means, stds) in series.items():
        ax.errorbar(positions, means, yerr=stds, marker="o", capsize=3, label=name)
    if not numeric:
        ax.set_xticks(positions, [str(v) for v in x], rotation=30, ha="right")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1 or next(iter(series), ""):
        ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_eer(names: list[str], means: list[float], stds: list[float], path: str | Path) -> Path:
    """Speaker-verification EER (percent) per experiment, bars with std error bars."""
    fig = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(names)), 4.0))
    ax = fig.add_subplot()
    positions = np.arange(len(names))
    ax.bar(positions, means, yerr=stds, capsize=4, color="tab:orange")
    ax.set_xticks(positions, names, rotation=30, ha="right")
    ax.set_ylabel("EER (%)")
    ax.set_title("speaker verification (mean ± std over repeats)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


Series = dict[str, tuple[list[float], list[float], list[float]]]  # name -> (x, means, stds)


def panels_figure(panels: list[tuple[str, str, Series]], xlabel: str, title: str = "") -> Figure:
    """One axis per panel ``(title, ylabel, {series: (x, means, stds)})``, side by side, each series a
    line with std error bars; the data stay readable on the axes' containers (tests read them)."""
    fig = Figure(figsize=(4.2 * len(panels), 3.8))
    for i, (panel_title, ylabel, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name, (x, means, stds) in series.items():
            ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=name)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.set_title(panel_title, fontsize=9)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
