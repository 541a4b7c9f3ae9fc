"""The data-scale figure (the paper's Figure 3): metrics against the share of training data, mean +- standard
deviation over seeds per model, with the real data of the same size as the reference line.

The evaluation report draws its own training-size figure (one line per model and seed, no reference line); this
one averages the seeds and adds the real-data line, which is what the paper's figure shows.
"""

from __future__ import annotations

import io
import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PANEL = 3.4
TITLES = {"tstr_auroc": "TSTR AUROC (utility)", "prevalence_spearman": "prevalence Spearman",
          "discriminator_auroc": "discriminator AUROC", "dimwise_prediction_auroc_gap": "dim-wise prediction gap",
          "correlation_distance": "correlation distance", "continuous_ks_mean": "mean KS (continuous)"}


def _points(by_fraction: dict, key: str) -> tuple[list[float], list[float], list[float]]:
    xs, ys, errs = [], [], []
    for fraction, values in sorted(by_fraction.items(), key=lambda kv: float(kv[0])):
        summary = values.get(key)
        if summary and summary["mean"] is not None:
            xs.append(float(fraction))
            ys.append(summary["mean"])
            errs.append(summary["std"] or 0.0)
    return xs, ys, errs


def data_scale_png(scale: dict) -> bytes:
    """PNG bytes of the figure for ``results["scale"]`` (see tables.build_results)."""
    keys = [k for k in TITLES if any(_points(m, k)[0] for m in scale["models"].values())]
    columns = min(3, max(len(keys), 1))
    rows = math.ceil(max(len(keys), 1) / columns)
    figure = Figure(figsize=(PANEL * columns, PANEL * rows + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.12 / rows, top=1 - 0.5 / (PANEL * rows + 0.6),
                           wspace=0.3, hspace=0.45)
    figure.suptitle("Metrics against the share of training patients (mean ± std over seeds)")
    fractions = [float(f) for f in scale["fractions"]]
    for i, key in enumerate(keys):
        ax = figure.add_subplot(rows, columns, i + 1)
        for model, by_fraction in scale["models"].items():
            xs, ys, errs = _points(by_fraction, key)
            if xs:
                ax.errorbar(xs, ys, yerr=errs, marker="o", markersize=4, capsize=3, linewidth=1.2, label=model)
        xs, ys, errs = _points(scale["real"], key)
        if xs:
            ax.errorbar(xs, ys, yerr=errs, color="black", linestyle="--", marker="s", markersize=4, capsize=3,
                        linewidth=1.2, label="real data (same size)")
        if key == "tstr_auroc" and scale.get("trtr_auroc") is not None:
            ax.axhline(scale["trtr_auroc"], color="0.4", linestyle=":", linewidth=1, label="TRTR, all training data")
        ax.set_xscale("log")
        ax.set_xticks(fractions)
        ax.set_xticklabels([f"{f:g}" for f in fractions])
        ax.minorticks_off()
        ax.set_xlabel("share of training patients")
        ax.set_title(TITLES[key], fontsize=10)
        if i == 0:
            ax.legend(fontsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


__all__ = ["data_scale_png"]
