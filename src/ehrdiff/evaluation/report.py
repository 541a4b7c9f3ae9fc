"""The evaluation's result: metrics per dataset, and its JSON, Markdown and self-contained HTML forms.

JSON schema (stable; docs/metrics.md)::

    {"datasets": {NAME: {METRIC: number or null, ...,
                         "skipped": {METRIC: reason, ...},   # why a metric is null
                         "warnings": [message, ...]}},       # input problems that were worked around
     "ci": {"resamples": B, "confidence": 0.95,              # only with bootstrap=B (``--bootstrap B``)
            "datasets": {NAME: {METRIC: [low, high], ...}},
            "skipped": {NAME: {METRIC: reason, ...}}},       # why a metric with a value has no interval
     "rules": {"declared": [RULE, ...],                      # only when the training table declares rules
               "datasets": {NAME: {RULE: share of rows breaking it, or null, ...}}}}
"""

from __future__ import annotations

import base64
import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ehrdiff.evaluation import catalog, figures
from ehrdiff.evaluation.bootstrap import Intervals
from ehrdiff.evaluation.config import EvaluationConfig
from ehrdiff.evaluation.registry import REGISTRY
from ehrdiff.fileio import write_bytes_atomic, write_text_atomic

META_KEYS = ("skipped", "warnings")
SHOWN_RULES = 15      # rules listed in report.md / report.html (all of them are in metrics.json)


@dataclass
class DatasetDetails:
    """Per-code and per-row results kept for the figures and the per-code tables (not part of the JSON)."""

    prevalence: pd.DataFrame | None = None     # code, training, synthetic
    dimwise: pd.DataFrame | None = None        # code, auroc_real, auroc_synthetic, f1_real, f1_synthetic
    codes_per_patient: tuple[np.ndarray, np.ndarray] | None = None   # bincounts: training, synthetic
    distances: tuple[np.ndarray, np.ndarray] | None = None           # members, non-members to nearest synthetic
    rule_breaks: dict[str, float | None] | None = None               # declared rule -> share of rows breaking it


@dataclass
class Report:
    config: EvaluationConfig = field(default_factory=EvaluationConfig)
    metrics: dict[str, dict] = field(default_factory=dict)
    details: dict[str, DatasetDetails] = field(default_factory=dict)
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    scale: dict[str, tuple[str, float]] = field(default_factory=dict)   # dataset -> (model, training fraction)
    intervals: dict[str, Intervals] = field(default_factory=dict)       # dataset -> its bootstrap intervals
    _figures: dict[str, bytes] | None = field(default=None, repr=False)

    # ---- building
    def add(self, name: str, values: dict, skipped: dict, warnings: list[str], details: DatasetDetails,
            timings: dict[str, float], intervals: Intervals | None = None) -> None:
        order = {m.key: i for i, m in enumerate(catalog.metrics())}
        ordered = dict(sorted(values.items(), key=lambda kv: order.get(kv[0], len(order))))
        self.metrics[name] = {**{k: _plain(v) for k, v in ordered.items()}, "skipped": dict(skipped),
                              "warnings": list(warnings)}
        self.details[name] = details
        self.timings[name] = dict(timings)
        if intervals is not None:
            self.intervals[name] = intervals
            self.timings[name].update({f"{group} (bootstrap)": t for group, t in intervals.timings.items()})
        self._figures = None

    def add_failed(self, name: str, reason: str, warnings: list[str]) -> None:
        """A dataset that could not be read at all: every required metric null with the reason."""
        self.add(name, {"n_rows": None, **{k: None for k in catalog.REQUIRED}},
                 {k: reason for k in ("n_rows", *catalog.REQUIRED)}, warnings + [reason], DatasetDetails(), {})

    def add_model_facts(self, name: str, values: dict, skipped: dict | None = None) -> None:
        """Facts about the generator of dataset ``name`` that no metric can measure (its DP budget, from the
        model's model.json), kept in catalog order with the metrics."""
        data = self.metrics[name]
        merged = {k: v for k, v in data.items() if k not in META_KEYS}
        merged.update({k: _plain(v) for k, v in values.items()})
        order = {m.key: i for i, m in enumerate(catalog.metrics())}
        self.metrics[name] = {**dict(sorted(merged.items(), key=lambda kv: order.get(kv[0], len(order)))),
                              "skipped": {**data["skipped"], **(skipped or {})}, "warnings": data["warnings"]}

    # ---- outputs
    def to_dict(self) -> dict:
        out = {"datasets": self.metrics}
        if self.config.bootstrap:
            out["ci"] = {"resamples": self.config.bootstrap, "confidence": self.config.confidence,
                         "datasets": {n: dict(self.intervals[n].ci) if n in self.intervals else {}
                                      for n in self.metrics},
                         "skipped": {n: dict(i.missing) for n, i in self.intervals.items() if i.missing}}
        breaks = self.rule_breaks()
        if breaks:
            out["rules"] = {"declared": list(next(iter(breaks.values()))),
                            "datasets": {n: {rule: _plain(v) for rule, v in b.items()} for n, b in breaks.items()}}
        return out

    def rule_breaks(self) -> dict[str, dict[str, float | None]]:
        """Per dataset: each declared rule's share of rows breaking it (only datasets the rules were checked on)."""
        return {n: d.rule_breaks for n, d in self.details.items() if d.rule_breaks is not None}

    def rule_rows(self) -> tuple[list[tuple[str, list[str]]], int]:
        """The ``SHOWN_RULES`` rules broken most often (by their largest share over the datasets) as (rule, a cell
        per dataset), and how many rules there are in all."""
        breaks = self.rule_breaks()
        if not breaks:
            return [], 0
        rules = list(next(iter(breaks.values())))
        worst = sorted(rules, key=lambda r: -max((b.get(r) or 0.0) for b in breaks.values()))[:SHOWN_RULES]
        return [(r, [_format(breaks[n].get(r)) if n in breaks else "-" for n in self.metrics]) for r in worst], \
            len(rules)

    def _rules_note(self, shown: int, total: int) -> str:
        return (f"Share of rows breaking each rule the training table declares: the {shown} broken most often of "
                f"{total} (every one: 'rules' in metrics.json).")

    def interval(self, name: str, key: str) -> list[float] | None:
        """The bootstrap interval [low, high] of one dataset's metric, or None."""
        return self.intervals[name].ci.get(key) if name in self.intervals else None

    def cells(self, key: str) -> list[str]:
        """One metric's table cells, one per dataset: the value, and its interval in brackets where it has one."""
        out = []
        for name, data in self.metrics.items():
            interval = self.interval(name, key)
            text = _format(data.get(key))
            out.append(text if interval is None else f"{text} [{_format(interval[0])}, {_format(interval[1])}]")
        return out

    def interval_lines(self) -> list[tuple[str, str]]:
        """(metric group, what its bootstrap resamples) for the groups whose metrics have an interval here."""
        keys = {k for i in self.intervals.values() for k in i.ci}
        return [(g.name, g.resampled) for g in REGISTRY.values() if keys.intersection(g.keys)]

    def _interval_note(self) -> str:
        return (f"Brackets: {self.config.confidence:.0%} bootstrap intervals from {self.config.bootstrap} resamples "
                "(the resamples' percentile interval, centred on the value); what each one covers is below and in "
                "docs/metrics.md (\"Confidence intervals\").")

    def to_json(self, path: str | os.PathLike) -> Path:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n")
        return Path(path)

    def rows(self) -> list[tuple[catalog.MetricInfo, list]]:
        """(metric, value per dataset) for every catalogued metric that some dataset has, in catalog order."""
        names = list(self.metrics)
        present = {k for d in self.metrics.values() for k in d if k not in META_KEYS}
        return [(m, [self.metrics[n].get(m.key) for n in names]) for m in catalog.metrics() if m.key in present]

    def to_markdown(self) -> str:
        names = list(self.metrics)
        lines = ["# Synthetic data evaluation", "",
                 "Metric definitions, directions and ideal values: docs/metrics.md. "
                 "`-` = not computed (see Skipped).", ""]
        if self.config.bootstrap:
            lines += [self._interval_note(), ""]
        for section in catalog.SECTIONS:
            rows = [(m, v) for m, v in self.rows() if m.section == section]
            if not rows:
                continue
            lines += [f"## {section.capitalize()}", "",
                      "| metric | best | " + " | ".join(_md(n) for n in names) + " |",
                      "|---|---|" + "---|" * len(names)]
            lines += [f"| {m.key} | {m.best} | " + " | ".join(self.cells(m.key)) + " |" for m, _ in rows]
            lines.append("")
        rule_rows, n_rules = self.rule_rows()
        if rule_rows:
            lines += ["## Declared rules", "", self._rules_note(len(rule_rows), n_rules), "",
                      "| rule | " + " | ".join(_md(n) for n in names) + " |", "|---|" + "---|" * len(names)]
            lines += [f"| {_md(rule)} | " + " | ".join(cells) + " |" for rule, cells in rule_rows] + [""]
        if self.intervals:
            lines += ["## Confidence intervals: what is resampled", "", "| metric group | resampled (fixed) |",
                      "|---|---|"] + [f"| {g} | {_md(text)} |" for g, text in self.interval_lines()] + [""]
        notes = self._notes()
        if notes:
            lines += ["## Skipped metrics and warnings", ""] + [f"- **{_md(n)}**: {_md(t)}" for n, t in notes] + [""]
        return "\n".join(lines)

    def _notes(self) -> list[tuple[str, str]]:
        """(dataset, text) lines: skipped metrics grouped by reason, then warnings."""
        notes = []
        for name, data in self.metrics.items():
            by_reason: dict[str, list[str]] = {}
            for key, reason in data["skipped"].items():
                by_reason.setdefault(reason, []).append(key)
            notes += [(name, f"{', '.join(keys)} skipped: {reason}") for reason, keys in by_reason.items()]
            no_interval: dict[str, list[str]] = {}
            for key, reason in (self.intervals[name].missing if name in self.intervals else {}).items():
                no_interval.setdefault(reason, []).append(key)
            notes += [(name, f"no interval for {', '.join(keys)}: {reason}") for reason, keys in no_interval.items()]
            notes += [(name, f"warning: {w}") for w in data["warnings"]]
        return notes

    def per_code(self, kind: str) -> pd.DataFrame:
        """Per-code results of every dataset in one long table: ``kind`` "prevalence" (code, training, synthetic)
        or "dimwise" (code, auroc_real, auroc_synthetic, f1_real, f1_synthetic)."""
        frames = [getattr(d, kind).assign(dataset=n) for n, d in self.details.items() if getattr(d, kind) is not None]
        if not frames:
            return pd.DataFrame(columns=["dataset", "code"])
        table = pd.concat(frames, ignore_index=True)
        return table[["dataset", *[c for c in table.columns if c != "dataset"]]]

    def figures(self) -> dict[str, bytes]:
        """PNG bytes by file name (computed once)."""
        if self._figures is None:
            out: dict[str, bytes] = {}
            prevalence = {n: (d.prevalence["training"].to_numpy(), d.prevalence["synthetic"].to_numpy())
                          for n, d in self.details.items() if d.prevalence is not None}
            if prevalence:
                out["prevalence.png"] = figures.prevalence(prevalence)
                out["prevalence_log.png"] = figures.prevalence(prevalence, log_axes=True)
            dimwise = {n: (d.dimwise["auroc_real"].to_numpy(), d.dimwise["auroc_synthetic"].to_numpy())
                       for n, d in self.details.items() if d.dimwise is not None}
            if dimwise:
                out["dimwise.png"] = figures.dimwise(dimwise)
            counts = {n: d.codes_per_patient for n, d in self.details.items() if d.codes_per_patient is not None}
            if counts:
                out["codes_per_patient.png"] = figures.codes_per_patient(counts)
            if self.scale:
                out["training_size.png"] = figures.training_size(self.metrics, self.scale)
            self._figures = out
        return self._figures

    def write_figures(self, directory: str | os.PathLike) -> list[Path]:
        directory = Path(directory)
        paths = []
        for filename, png in self.figures().items():
            write_bytes_atomic(directory / filename, png)
            paths.append(directory / filename)
        return paths

    def to_html(self, directory: str | os.PathLike) -> Path:
        """Write ``DIR/report.html`` (one page, figures embedded as data URIs) and ``DIR/figures/*.png``."""
        directory = Path(directory)
        pngs = self.figures() if self.config.figures else {}
        if pngs:
            self.write_figures(directory / "figures")
        path = directory / "report.html"
        write_text_atomic(path, self.html(pngs))
        return path

    PER_CODE_FILES = {"prevalence": "prevalence.csv", "dimwise": "dimwise_prediction.csv"}

    def save(self, directory: str | os.PathLike) -> Path:
        """The whole report in ``DIR``: metrics.json, report.md, report.html with figures/, and the per-code tables
        prevalence.csv and dimwise_prediction.csv. Returns the HTML page's path."""
        directory = Path(directory)
        self.to_json(directory / "metrics.json")
        write_text_atomic(directory / "report.md", self.to_markdown())
        for kind, filename in self.PER_CODE_FILES.items():
            write_text_atomic(directory / filename, self.per_code(kind).to_csv(index=False))
        return self.to_html(directory)

    def html(self, pngs: dict[str, bytes]) -> str:
        names = list(self.metrics)
        e = html.escape
        parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>ehrdiff evaluation</title>"
                 f"<style>{STYLE}</style></head><body><h1>Synthetic data evaluation</h1>",
                 "<p>Metric definitions, directions and ideal values are in <code>docs/metrics.md</code>; "
                 "<em>-</em> marks a metric that was not computed (reasons below).</p>"]
        if self.config.bootstrap:
            parts.append(f"<p>{e(self._interval_note())}</p>")
        for section in catalog.SECTIONS:
            rows = [(m, v) for m, v in self.rows() if m.section == section]
            if not rows:
                continue
            parts.append(f"<h2>{e(section.capitalize())}</h2><table><tr><th>metric</th><th>best</th>"
                         + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>")
            for m, _ in rows:
                parts.append(f"<tr><td title='{e(m.text, quote=True)}'>{e(m.key)}</td><td>{e(m.best)}</td>"
                             + "".join(f"<td>{e(cell)}</td>" for cell in self.cells(m.key)) + "</tr>")
            parts.append("</table>")
        rule_rows, n_rules = self.rule_rows()
        if rule_rows:
            parts.append(f"<h2>Declared rules</h2><p>{e(self._rules_note(len(rule_rows), n_rules))}</p><table><tr>"
                         "<th>rule</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"
                         + "".join(f"<tr><td>{e(rule)}</td>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>"
                                   for rule, cells in rule_rows) + "</table>")
        if self.intervals:
            parts.append("<h2>Confidence intervals: what is resampled</h2><table><tr><th>metric group</th>"
                         "<th>resampled (fixed)</th></tr>"
                         + "".join(f"<tr><td>{e(g)}</td><td>{e(text)}</td></tr>" for g, text in self.interval_lines())
                         + "</table>")
        if pngs:
            parts.append("<h2>Figures</h2>")
            for filename, png in pngs.items():
                data = base64.b64encode(png).decode("ascii")
                parts.append(f"<figure><img alt='{e(filename)}' src='data:image/png;base64,{data}'>"
                             f"<figcaption>{e(FIGURE_CAPTIONS.get(filename, filename))}</figcaption></figure>")
        notes = self._notes()
        if notes:
            parts.append("<h2>Skipped metrics and warnings</h2><ul>"
                         + "".join(f"<li><b>{e(n)}</b>: {e(t)}</li>" for n, t in notes) + "</ul>")
        parts.append("</body></html>")
        return "\n".join(parts)


FIGURE_CAPTIONS = {
    "prevalence.png": "Dimension-wise probability: per-code prevalence, synthetic vs training (diagonal = perfect).",
    "prevalence_log.png": "The same on log axes (codes never generated sit on the bottom edge).",
    "dimwise.png": "Dimension-wise prediction: per-code AUROC on real test rows, synthetic-trained vs real-trained.",
    "codes_per_patient.png": "Codes per patient: histograms and density curves, synthetic vs training.",
    "training_size.png": "Metrics against the share of training data the model was trained on.",
}

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin-bottom:1em}"
         "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:13px}td:first-child{text-align:left}"
         "th{background:#eee}figure{margin:1em 0}img{max-width:100%}")


def _plain(value):
    """JSON-safe plain Python numbers."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if np.isfinite(value) else None


def _format(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|")
