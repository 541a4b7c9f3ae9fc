"""Declared rules between columns: their form and errors, how they travel (frames, Parquet, model.json) and how
every generator's sampler keeps them."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from ehrdiff.data.io import read_table, write_table
from ehrdiff.data.rules import (Combinations, Count, Order, Range, broken_rows, parse_rules, project,
                                read_rules_file)
from ehrdiff.data.table import Table
from ehrdiff.errors import DataError
from ehrdiff.models import load_model
from ehrdiff.models.base import Generator, keep_rules, sample_in_chunks, sample_rows
from ehrdiff.models.reference import Marginals

RULES = [
    {"kind": "order", "columns": ["x_min", ["x_first", "x_last"], "x_max"]},
    {"kind": "count", "column": "x_count", "group": ["x_first", "x_last", "x_min", "x_max"]},
    {"kind": "range", "column": "age", "low": 18, "high": 90, "integer": True},
    {"kind": "combinations", "columns": ["unit", "surgical"], "allowed": [["cardiac", 1], ["medical", 0],
                                                                          ["medical", 1]]},
]


def real_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """Stays that keep every rule in RULES: a variable measured 0-5 times, its summaries, an age, a unit."""
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 6, n)
    out = {k: np.full(n, np.nan) for k in ("x_first", "x_last", "x_min", "x_max")}
    for i, c in enumerate(count):
        if c:
            values = rng.normal(100, 15, c)
            out["x_first"][i], out["x_last"][i] = values[0], values[-1]
            out["x_min"][i], out["x_max"][i] = values.min(), values.max()
    unit = rng.choice(["cardiac", "medical"], n)
    surgical = np.where(unit == "cardiac", 1, rng.integers(0, 2, n))
    return pd.DataFrame({"stay_id": np.arange(n), **out, "x_count": count.astype(float),
                         "age": rng.integers(18, 91, n).astype(float), "unit": unit, "surgical": surgical,
                         "label": rng.integers(0, 2, n)})


class RuleBreaker(Generator):
    """A generator whose rows break each rule kind on purpose: values shuffled between the summaries, counts that
    disagree with their group, ages outside [18, 90] and not whole, unit/surgical pairs drawn independently."""

    def fit(self, data, **kwargs):
        self.rules_ = Table.from_frame(data).rules if isinstance(data, pd.DataFrame) else data.rules
        return self

    def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
        rng = np.random.default_rng(seed)
        frame = real_rows(n, seed)
        summaries = ["x_first", "x_last", "x_min", "x_max"]
        frame[summaries] = rng.permuted(frame[summaries].to_numpy(), axis=1)      # first above max, ...
        flip = rng.random(n) < 0.2
        frame.loc[flip, "x_count"] = np.where(frame.loc[flip, "x_count"] > 0, 0, 3)     # 0 with values, 3 without
        frame["age"] = rng.uniform(5, 110, n)
        frame["surgical"] = rng.integers(0, 2, n)
        frame["unit"] = rng.choice(["cardiac", "medical"], n)
        return Table.from_frame(frame, {"stay_id": "id", "unit": "categorical", "surgical": "binary"}, rules=[])

    def save(self, path):
        raise NotImplementedError

    @classmethod
    def load(cls, path):
        raise NotImplementedError


def rule_table(n: int = 400) -> Table:
    return Table.from_frame(real_rows(n), {"unit": "categorical"}, rules=RULES)


# ---- the vocabulary -------------------------------------------------------------------------------------------
def test_real_rows_keep_every_rule_and_each_kind_finds_its_breaks():
    table = rule_table()
    assert not broken_rows(table.frame, table.rules).any()
    broken = RuleBreaker().fit(table).sample_table(500, seed=1).frame
    for rule in table.rules:
        assert rule.broken(broken).mean() > 0.05, rule.describe()


def test_rule_forms_round_trip_through_json():
    rules = parse_rules(RULES)
    assert [type(r) for r in rules] == [Order, Count, Range, Combinations]
    assert [r.to_dict() for r in rules] == [{**r, "low": float(r["low"]), "high": float(r["high"])}
                                           if r["kind"] == "range" else r for r in RULES]
    assert parse_rules(json.loads(json.dumps([r.to_dict() for r in rules]))) == rules


@pytest.mark.parametrize("rule, message", [
    ({"kind": "order", "columns": ["x_min", "nope"]}, "names column 'nope', which the table does not have"),
    ({"kind": "order", "columns": ["x_min"]}, "at least two levels"),
    ({"kind": "between", "columns": ["x_min", "x_max"]}, "unknown kind 'between'"),
    ({"kind": "count", "column": "x_count"}, "'group'"),
    ({"kind": "range", "column": "age", "low": 5, "high": 1}, "'low' 5 is above 'high' 1"),
    ({"kind": "range", "column": "age", "low": "5"}, "'low' must be a number or null"),
    ({"kind": "range", "column": "unit", "low": 0}, "compares column 'unit', which is categorical"),
    ({"kind": "combinations", "columns": ["unit", "surgical"], "allowed": [["cardiac"]]}, "must list 2 values"),
    ({"kind": "order", "columns": ["x_min", "x_min"]}, "names a column twice"),
    ({"kind": "order", "columns": ["x_min", "x_max"], "strict": True}, "unknown field 'strict'"),
])
def test_a_rule_of_a_wrong_shape_or_unknown_column_is_refused_in_one_line(rule, message):
    with pytest.raises(DataError, match="rule 1") as info:
        Table.from_frame(real_rows(20), {"unit": "categorical"}, rules=[rule])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_rules_file_errors_name_the_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text('{"kind": "order"}')
    with pytest.raises(DataError, match="rules.json: rules must be a JSON array"):
        read_rules_file(path)
    path.write_text("[{")
    with pytest.raises(DataError, match="rules.json: not valid JSON"):
        read_rules_file(path)
    path.write_text(json.dumps(RULES))
    assert read_rules_file(path) == parse_rules(RULES)


# ---- how they travel ----------------------------------------------------------------------------------------
def test_rules_travel_with_frames_and_parquet_files(tmp_path):
    table = rule_table(50)
    frame = table.to_frame()
    assert Table.from_frame(frame).rules == table.rules
    assert Table.from_frame(frame.drop(columns=["age"])).rules == tuple(r for r in table.rules
                                                                        if "age" not in r.columns)
    write_table(table, tmp_path / "t.parquet")
    assert read_table(tmp_path / "t.parquet").rules == table.rules
    write_table(frame, tmp_path / "f.parquet")      # a DataFrame given by sample() keeps them too
    assert read_table(tmp_path / "f.parquet").rules == table.rules
    write_table(rule_table(50).frame, tmp_path / "plain.parquet")
    assert read_table(tmp_path / "plain.parquet").rules == ()


def test_rules_saved_in_model_json_and_kept_after_loading(tmp_path):
    model = Marginals().fit(rule_table())
    model.save(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model.json").read_text())
    assert saved["rules"] == [r.to_dict() for r in model.rules_]
    loaded = load_model(tmp_path / "run")
    assert loaded.rules_ == model.rules_
    assert not broken_rows(loaded.sample(300, seed=3), loaded.rules_).any()


@pytest.mark.parametrize("name", ["ehrdiff", "emrwgan"])
def test_trained_models_save_their_rules_and_keep_them_after_loading(tmp_path, one_thread, name):
    from ehrdiff.models import build_model

    settings = {"ehrdiff": {"preset": "cpu-fast", "steps": 5, "hidden_dims": [16, 16]},
                "emrwgan": {"steps": 3, "batch_size": 64}}[name]
    model = build_model(name, settings).fit(rule_table(), progress=False)
    assert model.rules_ == rule_table().rules
    model.save(tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert loaded.rules_ == model.rules_
    kept = sample_rows(loaded, 100, seed=0, progress=False)
    assert not broken_rows(kept.frame, kept.rules).any() and kept.rules == model.rules_


def test_rules_in_model_json_are_covered_by_its_checksum(tmp_path):
    Marginals().fit(rule_table()).save(tmp_path / "run")
    path = tmp_path / "run" / "model.json"
    saved = json.loads(path.read_text())
    saved["rules"] = saved["rules"][:1]
    path.write_text(json.dumps(saved))
    with pytest.raises(Exception, match="modified after saving"):
        load_model(tmp_path / "run")


# ---- how the sampler keeps them ---------------------------------------------------------------------------
def test_projection_repairs_ranges_orders_and_counts_in_place():
    rules = parse_rules(RULES[:3] + [{"kind": "range", "column": "x_count", "low": 0, "integer": True}])
    frame = pd.DataFrame({"x_first": [7.0, np.nan, np.nan, 1.0, 6.0], "x_last": [2.0, np.nan, np.nan, 2.0, 6.5],
                          "x_min": [3.0, 1.0, 5.0, 1.0, 9.0], "x_max": [5.0, np.nan, np.nan, 3.0, 4.0],
                          "x_count": [2.0, 0.4, 1.0, 0.0, 2.0], "age": [95.3, 17.2, 40.6, 50.0, 60.0]})
    fixed, changed = project(frame, rules)
    assert changed.tolist() == [True, True, True, True, True]
    # row 0: min and max in order, first and last clipped into [min, max]; row 4: min > max, so they swap
    assert fixed.loc[0, ["x_min", "x_first", "x_last", "x_max"]].tolist() == [3.0, 5.0, 3.0, 5.0]
    assert fixed.loc[4, ["x_min", "x_first", "x_last", "x_max"]].tolist() == [4.0, 6.0, 6.5, 9.0]
    assert fixed.loc[0, "age"] == 90 and fixed.loc[1, "age"] == 18 and fixed.loc[2, "age"] == 41
    # rows 1 and 2: one value of four present, so the group goes missing and the count to 0 (row 1's 0.4 rounds)
    for row in (1, 2):
        assert fixed.loc[row, "x_count"] == 0 and fixed.loc[row, ["x_min", "x_max"]].isna().all()
    # row 3: a count of 0 beside four present values: the count becomes 1
    assert fixed.loc[3, "x_count"] == 1 and fixed.loc[3, ["x_first", "x_last", "x_min", "x_max"]].tolist() == \
        [1.0, 2.0, 1.0, 3.0]
    assert not broken_rows(fixed, rules).any()


def test_a_mostly_observed_group_has_its_gaps_filled_and_clipped():
    rules = parse_rules(RULES[:2])
    frame = pd.DataFrame({"x_first": [9.0], "x_last": [np.nan], "x_min": [4.0], "x_max": [8.0], "x_count": [3.0]})
    fixed, changed = project(frame, rules)
    # the gap takes the mean of the present values (7); first (9) is clipped to max (8)
    assert changed.all() and fixed.loc[0, ["x_min", "x_first", "x_last", "x_max"]].tolist() == [4.0, 8.0, 7.0, 8.0]
    assert not broken_rows(fixed, rules).any()


def test_a_chain_of_single_columns_is_clipped_from_the_outside_in():
    rules = parse_rules([{"kind": "order", "columns": ["a", "b", "c", "d"]}])
    frame = pd.DataFrame({"a": [1.0, 5.0], "b": [7.0, 2.0], "c": [0.0, np.nan], "d": [6.0, 3.0]})
    fixed, _ = project(frame, rules)
    # row 0: a <= d already; b and c clipped into [1, 6] (6 and 1), then b <= c in turn: they swap
    # row 1: a > d, so they swap (3 and 5); b is clipped up to 3
    assert fixed.to_numpy().tolist()[0] == [1.0, 1.0, 6.0, 6.0]
    assert fixed.loc[1, ["a", "b", "d"]].tolist() == [3.0, 3.0, 5.0] and np.isnan(fixed.loc[1, "c"])
    assert not broken_rows(fixed, rules).any()


def test_every_rule_kind_is_kept_by_the_sampler_of_a_generator_that_breaks_it(caplog):
    table = rule_table()
    model = RuleBreaker().fit(table)
    raw = model.sample_table(500, seed=2)
    assert broken_rows(raw.frame, table.rules).mean() > 0.5
    with caplog.at_level(logging.INFO, logger="ehrdiff"):
        kept = sample_rows(model, 500, seed=2, progress=False)
    assert kept.n_rows == 500 and kept.rules == table.rules
    for rule in table.rules:
        assert not rule.broken(kept.frame).any(), rule.describe()
    assert kept.frame["stay_id"].tolist() == raw.frame["stay_id"].tolist()   # ids are the sample's own
    line = next(r.getMessage() for r in caplog.records if "declared rules kept" in r.getMessage())
    _, cost = keep_rules(model, raw, seed=2)
    assert f"{cost.projected:,} of 500 rows projected, {cost.resampled:,} resampled" in line
    assert cost.resampled > 0 and cost.projected > 0 and cost.still_broken == 0
    # the combinations rule cannot be projected: its rows were drawn again, and only they
    combos = table.rules[3]
    assert cost.resampled >= combos.broken(raw.frame).sum()


def test_python_sample_and_chunked_sampling_keep_the_rules():
    table = rule_table()
    model = RuleBreaker().fit(table)
    assert not broken_rows(model.sample(200, seed=4), table.rules).any()
    chunks = list(sample_in_chunks(model, 200, seed=4, progress=False))
    assert sum(c.n_rows for c in chunks) == 200
    assert not any(broken_rows(c.frame, table.rules).any() for c in chunks)


def test_a_rule_no_row_can_keep_is_reported_not_looped_on(caplog):
    table = Table.from_frame(real_rows(100), {"unit": "categorical"},
                             rules=[{"kind": "combinations", "columns": ["unit"], "allowed": [["surgery"]]}])
    model = RuleBreaker().fit(table)
    with caplog.at_level(logging.INFO, logger="ehrdiff"):
        kept = sample_rows(model, 50, seed=0, progress=False)
    assert kept.n_rows == 50
    assert any("50 rows still break a rule after resampling" in r.getMessage() for r in caplog.records)


# ---- how evaluate reports them ----------------------------------------------------------------------------------
def test_evaluate_reports_the_share_of_rows_breaking_each_rule(tmp_path):
    from ehrdiff.evaluation import evaluate

    train, test = rule_table(300), Table.from_frame(real_rows(200, seed=5), {"unit": "categorical"})
    broken = RuleBreaker().fit(train).sample_table(200, seed=6)
    report = evaluate(train, test, {"breaker": broken.frame, "kept": sample_rows(RuleBreaker().fit(train), 200,
                                                                                  seed=6, progress=False)},
                      figures=False, dimwise_codes=2, threads=1)
    metrics = report.metrics
    expected = broken_rows(broken.frame, train.rules).mean()
    assert metrics["breaker"]["rule_break_rate"] == pytest.approx(expected) and expected > 0.5
    assert metrics["kept"]["rule_break_rate"] == 0 and metrics["reference:real-test"]["rule_break_rate"] == 0
    assert metrics["reference:independent"]["rule_break_rate"] > 0     # drawing columns alone breaks the relations
    shares = report.to_dict()["rules"]["datasets"]["breaker"]
    assert list(shares) == [r.describe() for r in train.rules]
    assert shares[train.rules[2].describe()] == pytest.approx(train.rules[2].broken(broken.frame).mean())
    assert metrics["breaker"]["rule_break_max"] == pytest.approx(max(shares.values()))
    report.save(tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text())["rules"]["declared"] == list(shares)
    for page in ("report.md", "report.html"):
        text = (tmp_path / page).read_text()
        assert "Declared rules" in text and "age in [18, 90] whole" in text


def test_evaluate_without_rules_has_no_rule_metrics():
    from ehrdiff.evaluation import evaluate

    plain = Table.from_frame(real_rows(100), {"unit": "categorical"})
    report = evaluate(plain, plain, {}, figures=False, dimwise_codes=2, threads=1)
    assert "rule_break_rate" not in report.metrics["reference:real-test"] and "rules" not in report.to_dict()


def test_train_rules_file_on_the_command_line(tmp_path, capsys):
    from ehrdiff.cli import main

    write_table(Table.from_frame(real_rows(300), {"unit": "categorical"}), tmp_path / "train.parquet")
    (tmp_path / "rules.json").write_text(json.dumps(RULES))
    assert main(["train", str(tmp_path / "train.parquet"), "--model", "marginals", "--rules",
                 str(tmp_path / "rules.json"), "-o", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "model.json").read_text())["rules"] == [r.to_dict()
                                                                                 for r in parse_rules(RULES)]
    assert main(["sample", str(tmp_path / "run"), "-n", "200", "-o", str(tmp_path / "s.parquet")]) == 0
    sample = read_table(tmp_path / "s.parquet")
    assert sample.rules == parse_rules(RULES) and not broken_rows(sample.frame, sample.rules).any()
    (tmp_path / "bad.json").write_text(json.dumps([{"kind": "count", "column": "x_count", "group": "x_min"}]))
    capsys.readouterr()
    assert main(["train", str(tmp_path / "train.parquet"), "--model", "marginals", "--rules",
                 str(tmp_path / "bad.json"), "-o", str(tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ehrdiff: error: ") and "bad.json: rule 1 (count): 'group' must be a non-empty list" in err
    assert not (tmp_path / "run2").exists()


def test_evaluate_rules_file_naming_an_unknown_column_is_one_line(tmp_path, capsys):
    from ehrdiff.cli import main

    write_table(Table.from_frame(real_rows(50), {"unit": "categorical"}), tmp_path / "train.parquet")
    (tmp_path / "rules.json").write_text(json.dumps([{"kind": "range", "column": "weight", "low": 0}]))
    assert main(["evaluate", "--train", str(tmp_path / "train.parquet"), "--test", str(tmp_path / "train.parquet"),
                 "--rules", str(tmp_path / "rules.json"), "-o", str(tmp_path / "report")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ehrdiff: error: ") and "names column 'weight', which the table does not have" in err
    assert "\n" not in err and not (tmp_path / "report" / "metrics.json").exists()


def summary_rows(n: int, seed: int = 0) -> pd.DataFrame:
    """A variable measured 0-5 times: its count and the first, last, minimum, maximum and mean of its values."""
    rng = np.random.default_rng(seed)
    count = rng.integers(0, 6, n)
    out = {k: np.full(n, np.nan) for k in ("first", "last", "low", "high", "mean")}
    for i, c in enumerate(count):
        if c:
            values = np.round(rng.normal(100, 15, c))
            for key, value in zip(out, (values[0], values[-1], values.min(), values.max(), values.mean())):
                out[key][i] = value
    return pd.DataFrame({"n": count.astype(float), **out})


SUMMARY = {"kind": "summary", "count": "n", "first": "first", "last": "last", "min": "low", "max": "high",
           "mean": "mean"}


def test_a_summary_rule_says_what_summaries_of_n_values_are():
    """Real summaries keep it; each arithmetic fact breaks it when it fails (one value with two different
    summaries, two values whose minimum is neither end, three values with neither end an extreme, a mean no n
    values within the range allow); the projection repairs each case and keeps the order min <= others <= max."""
    rules = parse_rules([SUMMARY, {"kind": "order", "columns": ["low", ["first", "last", "mean"], "high"]}])
    assert not broken_rows(summary_rows(2000), rules).any()
    frame = pd.DataFrame({"n": [1.0, 2.0, 3.0, 4.0, 4.0, 0.0],
                          "first": [5.0, 5.0, 5.0, 5.0, 5.0, np.nan], "last": [6.0, 8.0, 7.0, 6.0, 6.0, np.nan],
                          "low": [5.0, 4.0, 2.0, 2.0, 2.0, np.nan], "high": [6.0, 8.0, 9.0, 9.0, 9.0, np.nan],
                          "mean": [5.5, 6.5, 5.0, 8.5, 5.5, np.nan]})
    # row 3: 5, 6 and two others in [2, 9], one 2 and one 9: the mean is 22 / 4 = 5.5 (row 4), not 8.5
    assert rules[0].broken(frame).tolist() == [True, True, True, True, False, False]
    fixed, changed = project(frame, rules)
    assert changed[:4].all() and not changed[4:].any() and not broken_rows(fixed, rules).any()
    assert fixed.loc[0, ["first", "last", "low", "high", "mean"]].tolist() == [5.0] * 5
    assert fixed.loc[1, ["low", "high", "mean"]].tolist() == [5.0, 8.0, 6.5]
    assert fixed.loc[2, ["first", "last"]].tolist() == [5.0, 9.0]        # 7 is nearest an extreme (9)
    assert fixed.loc[2, "mean"] == (5.0 + 9.0 + 2.0) / 3                    # the third value must be the minimum
    assert fixed.loc[3, "mean"] == 5.5 and fixed.loc[4].equals(frame.loc[4])
    assert parse_rules([rules[0].to_dict()]) == rules[:1]
    with pytest.raises(DataError, match="'mean'"):
        parse_rules([{k: v for k, v in SUMMARY.items() if k != "mean"}])


def test_ties_of_summaries_are_made_in_the_training_shares_at_the_nearest_rows():
    """Summary.tie_shares / snap_ties: summaries of rows whose ties were pulled apart (as a generator drawing each
    column as a continuous value leaves them) get back the real shares of all-equal rows and of first and last
    values at an extreme, at the rows nearest to each, by moving values onto the row's own extremes; projection
    then leaves every row keeping the rule."""
    rule = parse_rules([SUMMARY])[0]
    real = summary_rows(3000, seed=4)
    flat = (real["n"] >= 3) & (np.arange(len(real)) % 4 == 0)             # a quarter of them recorded once, copied
    real.loc[flat, ["first", "last", "low", "high", "mean"]] = real.loc[flat, ["first"]].to_numpy()
    shares = rule.tie_shares(real)
    assert shares is not None and shares[0] > 0.2 and min(shares[1:]) > 0.3
    rng = np.random.default_rng(5)
    drawn = real.copy()
    drawn["low"] -= rng.uniform(0.1, 3, len(real))                          # no tie survives
    drawn["high"] += rng.uniform(0.1, 3, len(real))
    assert rule.tie_shares(drawn) == [0.0] * 5
    near = drawn.index[(real["first"] == real["low"]) & (real["n"] >= 3) & (real["low"] != real["high"])]
    drawn.loc[near, "first"] = drawn.loc[near, "low"] + 0.01               # these are nearest to the tie
    snapped = drawn.copy()
    changed = rule.snap_ties(snapped, shares)
    assert changed.any() and not changed[drawn["n"] < 3].any()
    rows = len(real[real["n"] >= 3])
    assert np.allclose(rule.tie_shares(snapped), shares, atol=2 / rows)
    assert (snapped.loc[near, "first"] == snapped.loc[near, "low"]).mean() > 0.9

    def same_extreme(f):           # the first and the last both on one extreme of a row with a spread
        ends = (f["first"] == f["low"]) | (f["first"] == f["high"])
        return (f["first"] == f["last"]) & ends & (f["low"] != f["high"])

    assert not (same_extreme(snapped) & ~same_extreme(drawn))[changed].any()  # one tie never lands on another
    own = drawn[["first", "last", "low", "high"]].to_numpy()               # every value is one the row had
    assert all(np.isin(snapped.loc[i, ["first", "last", "low", "high"]], own[i]).all() for i in np.flatnonzero(changed))
    fixed, _ = project(snapped, (rule,))
    assert not rule.broken(fixed).any()
    assert rule.tie_shares(summary_rows(10)) is None                       # too few rows of 3 values to say


def test_ehrdiff_keeps_the_tie_shares_of_its_training_rows_and_samples_them(tmp_path):
    """fit() keeps each summary rule's tie shares in model.json (none under DP: private_release's tests), and the
    calibrated sample has them; sampled as drawn (continuous_marginals="model") it has hardly any ties."""
    from ehrdiff.models.ehrdiff import EHRDiff

    rules = parse_rules([SUMMARY, {"kind": "order", "columns": ["low", ["first", "last", "mean"], "high"]}])
    real = summary_rows(800, seed=6)
    flat = (real["n"] >= 3) & (np.arange(len(real)) % 3 == 0)
    real.loc[flat, ["first", "last", "low", "high", "mean"]] = real.loc[flat, ["first"]].to_numpy()
    model = EHRDiff("cpu-fast", steps=5, batch_size=64, hidden_dims=(16,), embedding_features=8, embedding_width=8,
                    num_noise_levels=4).fit(Table.from_frame(real, rules=rules), progress=False)
    assert model.tie_shares_ == {"n": rules[0].tie_shares(real)}
    model.save(tmp_path / "run")
    loaded = load_model(tmp_path / "run")
    assert loaded.tie_shares_ == model.tie_shares_
    sample = loaded.sample(600, seed=1)
    assert not broken_rows(sample, rules).any()
    assert np.allclose(rules[0].tie_shares(sample), model.tie_shares_["n"], atol=0.06), rules[0].tie_shares(sample)
    drawn = loaded.set_sampling(continuous_marginals="model").sample(600, seed=1)
    assert rules[0].tie_shares(drawn)[0] < model.tie_shares_["n"][0] / 2


def test_a_generator_whose_summaries_break_the_rule_gets_rows_that_keep_it():
    """The sampler (keep_rules) repairs rows of a generator that draws each summary independently."""

    class Independent(Generator):
        def fit(self, data, **kwargs):
            self.rules_ = data.rules
            return self

        def sample_table(self, n: int, seed: int = 0, **kwargs) -> Table:
            rng = np.random.default_rng(seed)
            frame = summary_rows(n, seed)
            present = frame["n"] > 0
            for column in ("first", "last", "low", "high", "mean"):
                frame.loc[present, column] = rng.permutation(frame.loc[present, column].to_numpy())
            return Table.from_frame(frame, rules=[])

        def save(self, path):
            raise NotImplementedError

        @classmethod
        def load(cls, path):
            raise NotImplementedError

    rules = parse_rules([SUMMARY, {"kind": "order", "columns": ["low", ["first", "last", "mean"], "high"]}])
    model = Independent().fit(Table.from_frame(summary_rows(300), rules=rules))
    assert broken_rows(model.sample_table(500, seed=3).frame, rules).mean() > 0.5
    kept = sample_rows(model, 500, seed=3, progress=False).frame
    assert not broken_rows(kept, rules).any()
    once = kept[kept["n"] == 1]
    assert len(once) > 50 and (once[["last", "low", "high", "mean"]].to_numpy() == once[["first"]].to_numpy()).all()
