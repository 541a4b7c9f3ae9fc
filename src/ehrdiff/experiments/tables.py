"""The paper's tables from one evaluation report: mean and standard deviation over seeds per model, the reference
rows beside them, the data-scale table, and their Markdown form (results.md)."""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from ehrdiff.evaluation.catalog import DATA_SCALE_TABLE_METRICS as SCALE_METRICS  # no privacy metrics: see there

# (key, short title, what is best): the metrics of the paper's tables, in column order. A key no dataset has
# (e.g. tstr_auroc without a label, continuous_ks_mean on code data) is left out of the tables.
KEY_METRICS: dict[str, list[tuple[str, str, str]]] = {
    "fidelity": [
        ("prevalence_pearson", "prevalence Pearson", "higher (1)"),
        ("prevalence_spearman", "prevalence Spearman", "higher (1)"),
        ("codes_per_patient_mean", "codes per patient", "= real"),
        ("empty_row_rate", "empty rows", "= real"),
        ("distinct_row_rate", "distinct rows", "= real"),
        ("correlation_distance", "correlation distance", "lower (0)"),
        ("discriminator_auroc", "discriminator AUROC (trees)", "0.5"),
        ("discriminator_auroc_lr", "discriminator AUROC (logistic)", "0.5"),
        ("dimwise_prediction_auroc_gap", "dim-wise prediction AUROC gap", "lower (0)"),
        ("continuous_ks_mean", "mean KS (continuous)", "lower (0)"),
        ("continuous_correlation_distance", "correlation distance (continuous)", "lower (0)"),
        ("categorical_tvd_mean", "mean TVD (categorical)", "lower (0)"),
    ],
    "utility": [
        ("tstr_auroc", "TSTR AUROC", "= TRTR"),
        ("trtr_auroc", "TRTR AUROC", "-"),
        ("tstr_auprc", "TSTR AUPRC", "= TRTR"),
    ],
    "privacy": [
        ("mia_auroc", "membership AUROC", "0.5"),
        ("nnaa_privacy_loss", "NNAA privacy loss", "0"),
        ("exact_copy_rate", "exact copies", "<= real held-out"),
        ("dcr_ratio", "DCR ratio", "1"),
    ],
}
REFERENCES = {"reference:real-test": "real held-out rows (half of test)",
              "reference:train-resample": "training rows resampled",
              "reference:independent": "independent columns"}
REAL_TRAINING = "real training data"


def summarize(values: Iterable[Any]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof = 1) of the finite values; ``n`` says how many there were."""
    values = list(values)
    finite = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
              and math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else None
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return {"mean": mean, "std": std, "n": len(finite),
            "values": [None if v is None else (float(v) if not isinstance(v, bool) else v) for v in values]}


def _all_keys() -> list[str]:
    return [k for section in KEY_METRICS.values() for k, _, _ in section]


def build_results(metrics: dict[str, dict], runs: list, extra: dict[str, dict], real_training: dict) -> dict:
    """Aggregate the report's per-dataset ``metrics`` over seeds: one entry per model (and per share)."""
    keys = _all_keys()
    groups: dict[str, list] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)

    def values_of(run) -> dict:
        return {**metrics.get(run.name, {}), **extra.get(run.name, {})}

    models = {group: {k: summarize(values_of(r).get(k) for r in members) for k in keys}
              for group, members in groups.items() if members[0].fraction == 1.0}
    references = {name: {k: metrics[name].get(k) for k in keys} for name in REFERENCES if name in metrics}
    results: dict[str, Any] = {"models": models, "references": references, "real_training": real_training}

    fractions = sorted({r.fraction for r in runs})
    if len(fractions) > 1:
        scale_models: dict[str, dict] = {}
        rows: dict[str, int] = {}
        for group, members in groups.items():
            first = members[0]
            scale_models.setdefault(first.model, {})[f"{first.fraction:g}"] = {
                k: summarize(values_of(r).get(k) for r in members) for k in SCALE_METRICS}
            rows[f"{first.fraction:g}"] = int(len(first.rows) if first.rows is not None else
                                              metrics.get(first.name, {}).get("n_rows") or 0)
        real: dict[str, dict] = {}
        seeds = sorted({r.seed for r in runs})
        for fraction in fractions:
            if fraction == 1.0:
                continue
            names = [f"real/seed-{s}@{fraction:g}" for s in seeds]
            real[f"{fraction:g}"] = {k: summarize(metrics.get(n, {}).get(k) for n in names) for k in SCALE_METRICS}
        trtr = summarize(metrics.get(r.name, {}).get("trtr_auroc") for r in runs if r.fraction == 1.0)["mean"]
        if trtr is not None:
            real["1"] = {"tstr_auroc": summarize([trtr])}
        results["scale"] = {"fractions": [f"{f:g}" for f in fractions], "training_rows": rows,
                            "models": scale_models, "real": real, "trtr_auroc": trtr,
                            "note": "privacy metrics of runs on a share of the training data are measured against "
                                    "the whole training set (mostly non-members), so they are left out here"}
    results["runs"] = [{"name": r.name, "model": r.model, "seed": r.seed, "fraction": r.fraction,
                        "training_rows": int(len(r.rows)) if r.rows is not None else None,
                        "rows_sampled": r.synthetic.n_rows if r.synthetic is not None else None,
                        "train_seconds": r.train_seconds, "sample_seconds": r.sample_seconds, "reused": r.reused,
                        "folder": str(r.folder)} for r in runs]
    return results


# ---- Markdown ------------------------------------------------------------------------------------------------------
def _decimals(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 3


def number(value: Any, decimals: int | None = None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return "-"
    return f"{value:,.{_decimals(value) if decimals is None else decimals}f}"


def cell(summary: dict | None, expected: int | None = None) -> str:
    """``mean ± std`` with the std at the mean's precision; ``(n/expected)`` when some seeds gave no value."""
    if not summary or summary["mean"] is None:
        return "-"
    decimals = _decimals(summary["mean"])
    text = number(summary["mean"], decimals)
    if summary["std"] is not None:
        text += f" ± {number(summary['std'], decimals)}"
    if expected is not None and summary["n"] < expected:
        text += f" ({summary['n']}/{expected})"
    return text


def _present(results: dict, section: str) -> list[tuple[str, str, str]]:
    found = []
    for key, title, best in KEY_METRICS[section]:
        in_models = any(m[key]["mean"] is not None for m in results["models"].values())
        if in_models:
            found.append((key, title, best))
    return found


def results_markdown(results: dict) -> str:
    head = results["experiment"]
    seeds = len(head["seeds"])
    lines = [f"# Experiment: {head['dataset']}", "",
             f"- Data: {head['description']}; {head['training_rows']:,} training and {head['test_rows']:,} test rows "
             f"(80/20 split by {head.get('split_by') or 'row'}, seed 0), {head['columns']:,} columns"
             + (f", label: {head['label']}" if head["label"] else ", no label (no TSTR)"),
             f"- Budget: {head['budget']['text']}",
             "- Steps per model: " + "; ".join(f"{m}: {v['text']}" for m, v in head["steps_per_model"].items()),
             f"- Seeds: {', '.join(map(str, head['seeds']))} (training and sampling); cells are mean ± standard "
             f"deviation over the seeds (ddof 1); each run samples as many rows as it was trained on",
             f"- Wall time: {head['wall_seconds']:,.0f} s for this command"
             + (f" ({head['reused_runs']} finished runs reused)" if head["reused_runs"] else "")
             + "; training per model (all seeds): "
             + ", ".join(f"{g} {v['train_seconds']:,.0f} s" for g, v in head["run_seconds"].items() if "@" not in g),
             f"- Machine: {head['machine']['processor']}, {head['machine']['cpu_count']} CPU cores"
             + (f", {head['machine']['gpu']}" if head["machine"].get("gpu") else "")
             + f", torch {head['machine']['torch']}, load average {number(head['machine']['load_average'], 1)} at the "
               f"start; device {head['device']}"
             + (" (--quick: tiny models, numbers meaningless)" if head["quick"] else ""),
             f"- Command: `{head['command']}`" if head.get("command") else "- Command: (Python API)",
             "",
             "Metric definitions: docs/metrics.md. The full report (every metric, every seed, the reference rows, "
             "the figures) is in report/.", ""]
    real = results.get("real_training", {})
    for section in ("fidelity", "utility", "privacy"):
        columns = _present(results, section)
        if not columns:
            continue
        lines += [f"## {section.capitalize()}", "",
                  "| model | " + " | ".join(t for _, t, _ in columns) + " |",
                  "|---|" + "---|" * len(columns),
                  "| *best* | " + " | ".join(b for _, _, b in columns) + " |"]
        for model, values in results["models"].items():
            lines.append(f"| {model} | " + " | ".join(cell(values[k], seeds) for k, _, _ in columns) + " |")
        if any(k in real for k, _, _ in columns):
            lines.append(f"| {REAL_TRAINING} | " + " | ".join(number(real.get(k)) for k, _, _ in columns) + " |")
        for name, values in results["references"].items():
            lines.append(f"| {name} | " + " | ".join(number(values.get(k)) for k, _, _ in columns) + " |")
        lines.append("")
    lines += ["References (one evaluation, no seeds): " + "; ".join(f"`{k}` = {v}" for k, v in REFERENCES.items())
              + f"; *{REAL_TRAINING}* = the training rows themselves.", ""]
    if "scale" in results:
        lines += _scale_markdown(results["scale"], seeds)
    if head.get("figures"):
        lines += ["## Figures", ""] + [f"- [{f}]({f})" for f in head["figures"]] + [""]
    lines += ["## Runs", "", "| model | seeds | training s (mean) | sampling s (mean) |", "|---|---|---|---|"]
    for group, v in head["run_seconds"].items():
        lines.append(f"| {group} | {v['runs']} | {number(v['train_seconds'] / v['runs'])} | "
                     f"{number(v['sample_seconds'] / v['runs'])} |")
    lines.append("")
    return "\n".join(lines)


def _scale_markdown(scale: dict, seeds: int) -> list[str]:
    keys = [k for k in SCALE_METRICS
            if any(v.get(k, {}).get("mean") is not None for m in scale["models"].values() for v in m.values())]
    lines = ["## Data scale (the paper's Figure 3)", "",
             "Each model trained on a seeded share of the training patients (nested shares per seed) and sampled "
             "at that share's size; *real* = the training subset itself (its TSTR is train-on-real at that size, "
             "at 1 the full TRTR). " + scale["note"] + ".", "",
             "| model | share | training rows | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for model, by_fraction in list(scale["models"].items()) + [("real", scale["real"])]:
        for fraction in scale["fractions"]:
            if fraction not in by_fraction:
                continue
            values = by_fraction[fraction]
            rows = scale["training_rows"].get(fraction)
            lines.append(f"| {model} | {fraction} | {'-' if rows is None else f'{rows:,}'} | "
                         + " | ".join(cell(values.get(k), seeds if model != 'real' or fraction != '1' else 1)
                                      for k in keys) + " |")
    return lines + [""]


__all__ = ["KEY_METRICS", "SCALE_METRICS", "build_results", "cell", "number", "results_markdown", "summarize"]
