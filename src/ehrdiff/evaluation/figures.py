"""The report's figures as PNG bytes (matplotlib's Agg canvas directly: no pyplot, no global backend change).

prevalence.png         dimension-wise probability, synthetic vs training, one panel per dataset (EHRDiff Figure 1)
prevalence_log.png     the same on log axes, where errors on rare codes are visible
dimwise.png            dimension-wise prediction AUROC, synthetic-trained vs real-trained (Figure 2)
codes_per_patient.png  codes-per-row histograms with density curves, synthetic vs training (Figure 4)
training_size.png      metrics against the share of training data, one line per model (Figure 3)
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde

from ehrdiff.evaluation.catalog import TRAINING_SIZE_FIGURE_METRICS

PANEL = 3.2   # inches per panel
MAX_COLUMNS = 4


def _grid(n: int, title: str) -> tuple[Figure, list]:
    columns = min(MAX_COLUMNS, n)
    rows = math.ceil(n / columns)
    width, height = PANEL * columns, PANEL * rows + 0.5
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    # fixed margins in inches (tight_layout would cost more than drawing the panels)
    figure.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.75 / height,
                           wspace=0.4, hspace=0.55)
    axes = [figure.add_subplot(rows, columns, i + 1) for i in range(n)]
    figure.suptitle(title)
    return figure, axes


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _diagonal(ax, low: float, high: float) -> None:
    ax.plot([low, high], [low, high], color="0.5", linewidth=1, linestyle="--", zorder=0)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)


def _short(name: str) -> str:
    return name if len(name) <= 32 else name[:29] + "..."


def prevalence(panels: dict[str, tuple[np.ndarray, np.ndarray]], log_axes: bool = False) -> bytes:
    figure, axes = _grid(len(panels), "Dimension-wise probability" + (" (log axes)" if log_axes else ""))
    for ax, (name, (real, synthetic)) in zip(axes, panels.items()):
        if log_axes:
            positive = np.r_[real[real > 0], synthetic[synthetic > 0]]
            floor = positive.min() / 2 if len(positive) else 1e-6
            ax.scatter(np.maximum(real, floor), np.maximum(synthetic, floor), s=6, alpha=0.5, linewidths=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            _diagonal(ax, floor * 0.8, 1.0)
        else:
            ax.scatter(real, synthetic, s=6, alpha=0.5, linewidths=0)
            top = max(float(np.max(real, initial=0)), float(np.max(synthetic, initial=0))) * 1.05 or 1.0
            _diagonal(ax, 0.0, top)
        ax.set_title(_short(name), fontsize=9)
        ax.set_xlabel("training prevalence")
        ax.set_ylabel("synthetic prevalence")
    return _png(figure)


def dimwise(panels: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    figure, axes = _grid(len(panels), "Dimension-wise prediction (AUROC per code on real test rows)")
    for ax, (name, (real, synthetic)) in zip(axes, panels.items()):
        ax.scatter(real, synthetic, s=10, alpha=0.7, linewidths=0)
        lowest = float(np.nanmin(np.r_[real, synthetic, 0.5]))
        _diagonal(ax, max(0.0, min(0.3, lowest - 0.02)), 1.0)
        ax.set_title(_short(name), fontsize=9)
        ax.set_xlabel("trained on real")
        ax.set_ylabel("trained on synthetic")
    return _png(figure)


def _density(ax, counts: np.ndarray, color: str, label: str) -> None:
    values = np.arange(len(counts))
    share = counts / max(counts.sum(), 1)
    ax.bar(values, share, width=1.0, alpha=0.35, color=color, label=label)
    if (counts > 0).sum() > 1:
        weights = counts / counts.sum()
        kde = gaussian_kde(values[counts > 0], weights=weights[counts > 0], bw_method=0.3)
        grid = np.linspace(-0.5, len(counts) - 0.5, 200)
        ax.plot(grid, kde(grid), color=color, linewidth=1.5)


def codes_per_patient(panels: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    figure, axes = _grid(len(panels), "Codes per patient")
    for ax, (name, (real, synthetic)) in zip(axes, panels.items()):
        _density(ax, real, "tab:blue", "training")
        _density(ax, synthetic, "tab:orange", "synthetic")
        length = max(len(real), len(synthetic))
        share = sum(np.pad(c / max(c.sum(), 1), (0, length - len(c))) for c in (real, synthetic))
        upper = int(np.searchsorted(np.cumsum(share) / max(share.sum(), 1e-12), 0.995)) + 2  # hide the far tail
        ax.set_xlim(-0.5, max(upper, 3))
        ax.set_title(_short(name), fontsize=9)
        ax.set_xlabel("codes per row")
        ax.set_ylabel("share of rows")
        ax.legend(fontsize=7)
    return _png(figure)


def training_size(metrics: dict[str, dict], runs: dict[str, tuple[str, float]]) -> bytes:
    keys = [k for k in TRAINING_SIZE_FIGURE_METRICS if any(metrics[d].get(k) is not None for d in runs)]
    figure, axes = _grid(max(len(keys), 1), "Metrics against the share of training data")
    for ax, key in zip(axes, keys):
        for model in sorted({m for m, _ in runs.values()}):
            points = sorted((f, metrics[d][key]) for d, (m, f) in runs.items()
                            if m == model and metrics[d].get(key) is not None)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=_short(model))
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("share of training data")
        ax.legend(fontsize=7)
    return _png(figure)
