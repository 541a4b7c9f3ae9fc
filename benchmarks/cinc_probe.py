"""What tells CinC 2012 synthetic stays from real ones: a per-variable trees probe, the logistic discriminator's
strongest columns, and how often a variable's summaries sit where real ones do.

    .venv/bin/python benchmarks/cinc_probe.py DATA/train.parquet SYNTHETIC.parquet     # prints a JSON summary

Used by benchmarks/cinc_icu.py on each of its default-budget runs. The probe compares the training stays with as
many synthetic ones (the evaluation compares the same two sets):

per_variable   out-of-fold AUROC (5 folds) of gradient-boosted trees on one variable's six summaries as they are
               (missing values as NaN, which the trees take natively): how far that variable alone gives rows away
logistic_top   the logistic regression the evaluation's discriminator uses (its features, its penalty) fitted on all
               rows: the columns with the largest |coefficient| x the column's standard deviation (its effect on the
               log-odds of "synthetic" per standard deviation), with the column's mean in real and synthetic rows
per_summary    the same trees on one kind of summary of every variable together (all first values, ..., all counts),
               on which variables were measured (count > 0), and on every column but the label, with and without
               the counts: what the joint of a kind gives away
measured_pairs pairs of variables measured together (one without the other in at most 3% of the real stays: a
               panel, diffusion/panels.py), with the real and synthetic shares of stays measuring one of them only
count_pairs    pairs of counts equal in at least 90% of the real stays that measured both (a panel: blood pressures,
               blood gases, liver tests), with the share of equal counts in real and synthetic stays
heaps          continuous columns whose commonest real value holds at least 20% of the stays that have one
               (FiO2 1.0, SaO2 98, GCS 15): that value and its share in real and synthetic stays
structure      per variable, shares of stays with the variable measured: first value equal to the minimum or the
               maximum, one measurement with unequal summaries, two measurements with first and last not at the ends;
               and the 10th, 50th and 90th percentiles of the mean's position between the minimum and the maximum
               (stays with 3 measurements or more and max > min: the mean of many readings sits well inside)
ks_by_coverage each continuous column's KS (present values only, as the evaluation's continuous_ks_mean), averaged
               over the columns grouped by how many training stays have a value: where the noise of a private
               release costs the most
tails          the share of synthetic values below the real 1st or above the real 99th percentile of their column
               (2 % in real stays by construction), over all continuous columns and for the worst ones: values that
               few patients or none have; the share of column ends (below the 1st, above the 99th percentile)
               holding under 0.2 % of the synthetic values (1 % of the real ones): tails the generator cut; and
               per row (real and synthetic stays), how many of its values lie outside (mean, and the share of
               stays with 10 or more): a real stay holds a few, spread over its variables
linked         the strongest Spearman correlations between different variables' means and between their counts
               (stays measuring both) in the real stays, with the synthetic stays' correlation of the same pair: what
               of the variables' joint a generator keeps
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from ehrdiff.data.table import Table
from ehrdiff.evaluation.fidelity import ks_statistic
from ehrdiff.evaluation.inputs import build_layout, prepare

SUMMARIES = ("first", "last", "min", "max", "mean", "count")


def variables(table: Table) -> list[str]:
    return [c[:-len("_count")] for c in table.columns if c.endswith("_count")]


def trees_auroc(train: Table, synthetic: Table, columns: list[str], seed: int = 0) -> float:
    """Out-of-fold AUROC (5 folds) of gradient-boosted trees on ``columns``, training rows against as many
    synthetic ones (missing values as NaN, which the trees take natively)."""
    return arrays_auroc(train.frame[columns].to_numpy(float), synthetic.frame[columns].to_numpy(float), seed)


def arrays_auroc(real: np.ndarray, fake: np.ndarray, seed: int = 0) -> float:
    """trees_auroc on two feature matrices (rows: stays), the first rows of the longer one cut to the shorter's."""
    n = min(len(real), len(fake))
    y = np.r_[np.zeros(n), np.ones(n)]
    X = np.vstack([real[:n], fake[:n]])
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    trees = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    return round(float(roc_auc_score(y, cross_val_predict(trees, X, y, cv=folds, method="predict_proba")[:, 1])), 3)


def per_variable(train: Table, synthetic: Table, seed: int = 0) -> dict[str, float]:
    """AUROC of trees on each variable's six summaries, real training rows against synthetic ones."""
    out = {v: trees_auroc(train, synthetic, [f"{v}_{s}" for s in SUMMARIES], seed) for v in variables(train)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def per_summary(train: Table, synthetic: Table, seed: int = 0) -> dict[str, float]:
    """AUROC of trees on each kind of summary over all variables, on which variables were measured (count > 0),
    and on all columns with and without the counts."""
    names = variables(train)
    out = {kind: trees_auroc(train, synthetic, [f"{v}_{kind}" for v in names], seed) for kind in SUMMARIES}
    out["measured"] = arrays_auroc(measured(train), measured(synthetic), seed)
    every = [c for c in train.columns if train.kinds[c] not in ("id", "label")]
    out["all"] = trees_auroc(train, synthetic, every, seed)
    out["all_but_counts"] = trees_auroc(train, synthetic, [c for c in every if not c.endswith("_count")], seed)
    return out


def measured(table: Table) -> np.ndarray:
    """Stays x variables: 1 where the variable was measured (its count above 0)."""
    return (table.frame[[f"{v}_count" for v in variables(table)]].to_numpy(float) > 0).astype(float)


def measured_pairs(train: Table, synthetic: Table, most: float = 0.03) -> list[dict]:
    """Pairs of variables measured together, one without the other in at most ``most`` of the real stays, with
    both sets' shares of stays measuring one without the other."""
    names, real, fake = variables(train), measured(train), measured(synthetic)
    out = []
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            apart = float(np.mean(real[:, i] != real[:, j]))
            if apart <= most:
                out.append({"pair": f"{a}/{names[j]}", "real": round(apart, 4),
                            "synthetic": round(float(np.mean(fake[:, i] != fake[:, j])), 4)})
    return sorted(out, key=lambda d: d["real"])


def count_pairs(train: Table, synthetic: Table, least: float = 0.9) -> list[dict]:
    """Pairs of counts equal in at least ``least`` of the real stays measuring both, with both sets' equal shares."""
    names = variables(train)

    def equal_share(frame, a: str, b: str) -> float:
        x, y = frame[f"{a}_count"].to_numpy(), frame[f"{b}_count"].to_numpy()
        both = (x > 0) & (y > 0)
        return float((x == y)[both].mean()) if both.any() else float("nan")

    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            real = equal_share(train.frame, a, b)
            if real >= least:
                out.append({"pair": f"{a}/{b}", "real": round(real, 3),
                            "synthetic": round(equal_share(synthetic.frame, a, b), 3)})
    return sorted(out, key=lambda d: -d["real"])


def logistic_top(train: Table, synthetic: Table, top: int = 15) -> list[dict]:
    """The evaluation's logistic discriminator on all rows: its strongest columns (standardised coefficients)."""
    layout, codings = build_layout(train, "label")
    real = prepare(train, layout, codings, "train").data.X.toarray()
    fake = prepare(synthetic, layout, codings, "synthetic").data.X.toarray()
    X, y = np.vstack([real, fake]), np.r_[np.zeros(len(real)), np.ones(len(fake))]
    model = LogisticRegression(C=1.0, max_iter=500).fit(X, y)
    effect = model.coef_[0] * X.std(axis=0)
    order = np.argsort(-np.abs(effect))[:top]
    return [{"column": layout.names[j], "effect": round(float(effect[j]), 3),
             "real_mean": round(float(real[:, j].mean()), 4), "synthetic_mean": round(float(fake[:, j].mean()), 4)}
            for j in order]


def structure(table: Table, names: list[str]) -> dict[str, dict[str, float]]:
    """Per variable: shares of the stays where it was measured."""
    out = {}
    f = table.frame
    for v in names:
        first, lo, hi, n = (f[f"{v}_{s}"].to_numpy(float) for s in ("first", "min", "max", "count"))
        last = f[f"{v}_last"].to_numpy(float)
        seen = ~np.isnan(lo)
        one, two = seen & (n == 1), seen & (n == 2) & (hi > lo)
        at_end = lambda x: (x == lo) | (x == hi)   # noqa: E731
        many = seen & (n >= 3) & (hi > lo)
        position = (f[f"{v}_mean"].to_numpy(float)[many] - lo[many]) / (hi[many] - lo[many])
        out[v] = {"first_at_min_or_max": round(float(at_end(first)[seen].mean()), 3) if seen.any() else None,
                  "one_unequal": round(float((hi > lo)[one].mean()), 3) if one.any() else None,
                  "two_not_at_ends": round(float((~(at_end(first) & at_end(last)))[two].mean()), 3)
                  if two.any() else None,
                  "mean_position_10_50_90": np.round(np.quantile(position, [0.1, 0.5, 0.9]), 2).tolist()
                  if many.any() else None}
    return out


def linked(train: Table, synthetic: Table, kind: str, top: int = 8) -> list[dict]:
    """The ``top`` strongest Spearman correlations between two variables' ``kind`` summaries in the real stays
    measuring both (a count of 0: not measured), with the synthetic stays' correlation of the same pair."""
    names = variables(train)

    def ranked(frame):
        values = frame[[f"{v}_{kind}" for v in names]].astype(float)
        measured_both = values.where(frame[[f"{v}_count" for v in names]].to_numpy(float) > 0)
        return measured_both.corr("spearman", min_periods=50).to_numpy()

    real, fake = ranked(train.frame), ranked(synthetic.frame)
    i, j = np.triu_indices(len(names), 1)
    order = [k for k in np.argsort(-np.abs(np.nan_to_num(real[i, j]))) if np.isfinite(real[i[k], j[k]])][:top]
    return [{"pair": f"{names[i[k]]}/{names[j[k]]}", "real": round(float(real[i[k], j[k]]), 2),
             "synthetic": round(float(fake[i[k], j[k]]), 2) if np.isfinite(fake[i[k], j[k]]) else None}
            for k in order]


def heaps(train: Table, synthetic: Table, least: float = 0.2) -> list[dict]:
    out = []
    for name in train.columns_of("continuous"):
        real, fake = train.frame[name].dropna(), synthetic.frame[name].dropna()
        if real.empty or fake.empty:
            continue
        shares = real.value_counts(normalize=True)
        if shares.iloc[0] >= least:
            out.append({"column": name, "value": float(shares.index[0]), "real": round(float(shares.iloc[0]), 3),
                        "synthetic": round(float((fake == shares.index[0]).mean()), 3)})
    return out


def ks_by_coverage(train: Table, synthetic: Table, edges=(0, 500, 1500, 2800)) -> list[dict]:
    ks, present = [], []
    for name in train.columns_of("continuous"):
        real, fake = np.sort(train.frame[name].dropna().to_numpy(float)), \
            np.sort(synthetic.frame[name].dropna().to_numpy(float))
        if len(real) and len(fake):
            ks.append(ks_statistic(real, fake))
            present.append(len(real))
    ks, present = np.array(ks), np.array(present)
    group = np.searchsorted(np.asarray(edges), present, side="right") - 1
    return [{"stays_with_a_value": f">= {low}" if k == len(edges) - 1 else f"{low}-{edges[k + 1]}",
             "columns": int((group == k).sum()), "ks_mean": round(float(ks[group == k].mean()), 3)}
            for k, low in enumerate(edges) if (group == k).any()]


def outside_real_range(train: Table, table: Table) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per continuous column (with values in both tables), whether each of ``table``'s rows holds a value below
    the real 1st percentile of the column, and above its 99th (False where missing)."""
    out = {}
    for name in train.columns_of("continuous"):
        real, values = train.frame[name].dropna(), table.frame[name]
        if len(real) and values.notna().any():
            low, high = real.quantile([0.01, 0.99])
            out[name] = (values < low, values > high)
    return out


def tails(train: Table, synthetic: Table, top: int = 5, cut: float = 0.002) -> dict:
    outside = outside_real_range(train, synthetic)
    present = {name: synthetic.frame[name].notna() for name in outside}
    shares = {name: float((below | above)[present[name]].mean()) for name, (below, above) in outside.items()}
    ends = [float(end[present[name]].mean()) for name, pair in outside.items() for end in pair]
    worst = sorted(shares, key=shares.get, reverse=True)[:top]
    return {"mean": round(float(np.mean(list(shares.values()))), 4),
            "worst": {name: round(shares[name], 3) for name in worst},
            f"ends_below_{cut}": round(float(np.mean(np.array(ends) < cut)), 3),
            "per_row": {"real": extremes_per_row(outside_real_range(train, train)),
                        "synthetic": extremes_per_row(outside)}}


def extremes_per_row(outside: dict[str, tuple[pd.Series, pd.Series]], many: int = 10) -> dict:
    """How many of a row's values lie outside the real 1st-99th percentiles of their columns (``outside``, from
    ``outside_real_range``): the mean over the rows and the share of rows with ``many`` or more."""
    per_row = sum((below | above).to_numpy(int) for below, above in outside.values())
    return {"mean": round(float(np.mean(per_row)), 2),
            f"share_{many}_or_more": round(float(np.mean(per_row >= many)), 3)}


def probe(train: Table, synthetic: Table, seed: int = 0, only: list[str] | None = None) -> dict:
    """Every section (or those named in ``only``), each computed only when asked for (the trees ones take minutes)."""
    shown = ["Glucose", "K", "HCT", "Na", "GCS", "HR", "Temp", "Urine"]
    sections = {
        "per_variable": lambda: per_variable(train, synthetic, seed),
        "per_summary": lambda: per_summary(train, synthetic, seed),
        "count_pairs": lambda: count_pairs(train, synthetic),
        "measured_pairs": lambda: measured_pairs(train, synthetic),
        "logistic_top": lambda: logistic_top(train, synthetic), "heaps": lambda: heaps(train, synthetic),
        "ks_by_coverage": lambda: ks_by_coverage(train, synthetic), "tails": lambda: tails(train, synthetic),
        "linked": lambda: {kind: linked(train, synthetic, kind) for kind in ("mean", "count")},
        "structure": lambda: {"real": structure(train, shown), "synthetic": structure(synthetic, shown)}}
    return {name: compute() for name, compute in sections.items() if not only or name in only}


def main() -> None:
    from ehrdiff.data.io import read_table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("train")
    parser.add_argument("synthetic")
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="print these sections only (ks_by_coverage "
                        "and tails are quick; the trees probes take minutes)")
    args = parser.parse_args()
    print(json.dumps(probe(read_table(args.train), read_table(args.synthetic), only=args.only), indent=1))


if __name__ == "__main__":
    main()
