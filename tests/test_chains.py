"""Declared orders kept by construction of the encoded space (data/chains.py): lo <= x <= hi encoded as lo, the
spread hi - lo and x's position between them; the count facts (n = 1: equal values; n = 2: first and last at
opposite ends, the mean half way) where every training row keeps them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ehrdiff.data import Table, TableEncoder
from ehrdiff.data.chains import MIN_SUPPORT
from ehrdiff.data.rules import Order, broken_rows
from ehrdiff.errors import DataError
from ehrdiff.models.ehrdiff import EHRDiff

from conftest import block_binary_data

SUMMARIES = ("first", "last", "min", "max", "mean")


def stays(n: int = 600, seed: int = 0) -> Table:
    """Two variables measured 0-6 times per stay with their summaries and counts, as cinc2012 prepares them (HR a
    whole number, K to one decimal), an age and a label; the rules cinc2012 declares."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {"stay": np.arange(n), "age": rng.uniform(18, 90, n)}
    rules = []
    for variable, centre, spread, decimals in (("HR", 85, 15, 0), ("K", 4.2, 0.6, 1)):
        count = rng.integers(0, 7, n)
        out = {s: np.full(n, np.nan) for s in SUMMARIES}
        for i, c in enumerate(count):
            if c:
                values = np.round(rng.normal(centre, spread, c), decimals)
                for s, v in zip(SUMMARIES, (values[0], values[-1], values.min(), values.max(), values.mean())):
                    out[s][i] = v
        columns |= {f"{variable}_{s}": out[s] for s in SUMMARIES}
        columns[f"{variable}_count"] = count.astype(np.int64)
        group = [f"{variable}_{s}" for s in SUMMARIES]
        rules += [{"kind": "order", "columns": [f"{variable}_min", [f"{variable}_first", f"{variable}_last",
                                                                    f"{variable}_mean"], f"{variable}_max"]},
                  {"kind": "count", "column": f"{variable}_count", "group": group},
                  {"kind": "range", "column": f"{variable}_count", "low": 0, "high": None, "integer": True}]
    columns["label"] = rng.integers(0, 2, n)
    kinds = {"stay": "id", "label": "label"}
    return Table.from_frame(pd.DataFrame(columns), kinds, rules=rules)


def chained(table: Table) -> TableEncoder:
    return TableEncoder("normal", share_missing=True, order_chains=True).fit(table)


def test_orders_become_chains_with_the_count_facts_the_training_rows_keep():
    encoder = chained(stays())
    assert [(c.low, c.high, c.middle, c.count) for c in encoder.chains_] == [
        (f"{v}_min", f"{v}_max", [f"{v}_first", f"{v}_last", f"{v}_mean"], f"{v}_count") for v in ("HR", "K")]
    hr = encoder.chains_[0]
    assert hr.integer == [True, True, False]        # HR's first and last are whole numbers, its mean is not
    assert hr.one_equal and hr.ends == ["HR_first", "HR_last"] and hr.opposite == [["HR_first", "HR_last"]]
    assert hr.means == ["HR_mean"] and hr.summary == ["HR_first", "HR_last", "HR_mean"]
    # the encoded columns are the same names, one indicator per variable: nothing changes in width
    assert encoder.width == TableEncoder("normal", share_missing=True).fit(stays()).width


def test_real_rows_invert_exactly_and_keep_every_rule():
    table = stays()
    encoder = chained(table)
    back = encoder.inverse_transform(encoder.transform(table, dtype=np.float64)).frame
    for column in table.feature_columns:
        x, y = table.frame[column].to_numpy(float), back[column].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-12, err_msg=column)
        assert back[column].dtype == table.frame[column].dtype, column
    assert not broken_rows(back, table.rules).any()


@pytest.mark.parametrize("scale", [1.0, 3.0, 10.0])
def test_any_model_output_decodes_to_rows_that_keep_the_orders_and_the_count_facts(scale):
    table = stays()
    encoder = chained(table)
    z = np.random.default_rng(int(scale)).normal(0, scale, (20_000, encoder.width))
    frame = encoder.inverse_transform(z).frame
    orders = tuple(r for r in table.rules if isinstance(r, Order))
    assert not broken_rows(frame, orders).any()
    # ... exactly, not just on average: the order holds value by value
    for v in ("HR", "K"):
        lo, hi = frame[f"{v}_min"], frame[f"{v}_max"]
        for s in ("first", "last", "mean"):
            present = frame[f"{v}_{s}"].notna()
            value = frame[f"{v}_{s}"][present]
            assert (lo[present] <= value).all() and (value <= hi[present]).all()
        n = frame[f"{v}_count"]
        one, two = (n <= 1) & lo.notna(), (n == 2) & lo.notna()
        assert one.any() and two.any()
        for s in SUMMARIES:         # one measurement: every summary is it
            assert (frame.loc[one, f"{v}_{s}"] == lo[one]).all()
        ends = frame.loc[two, [f"{v}_first", f"{v}_last"]].to_numpy()     # two: first and last are min and max
        np.testing.assert_array_equal(np.sort(ends, axis=1), np.column_stack([lo[two], hi[two]]))
        np.testing.assert_allclose(frame.loc[two, f"{v}_mean"], (lo[two] + hi[two]) / 2, rtol=1e-12)
        # three: first or last is an end, and the third value the mean implies lies in [min, max] and supplies
        # the end they do not
        three = (n == 3) & (hi > lo)
        first, last, mean = (frame.loc[three, f"{v}_{s}"].to_numpy() for s in ("first", "last", "mean"))
        low, high = lo[three].to_numpy(), hi[three].to_numpy()
        third = 3 * mean - first - last
        tolerance = 1e-9 * np.maximum(1, np.abs(high))
        assert three.any() and np.all((first == low) | (first == high) | (last == low) | (last == high))
        assert np.all(third >= low - tolerance) and np.all(third <= high + tolerance)
        for end in (low, high):
            assert np.all((first == end) | (last == end) | (np.abs(third - end) <= tolerance))
    assert (frame["HR_first"].dropna() % 1 == 0).all()


def test_without_the_setting_or_the_support_the_old_encoding_is_kept():
    table = stays()
    plain = TableEncoder("normal", share_missing=True).fit(table)
    assert plain.chains_ == [] and "chains" not in plain.to_dict()
    np.testing.assert_array_equal(TableEncoder("normal", share_missing=True, order_chains=False).fit(table)
                                  .transform(table), plain.transform(table))
    # too few stays with one or two measurements: no count fact is claimed
    few = stays(3 * MIN_SUPPORT, seed=1)
    facts = chained(few).chains_[0]
    counts = few.frame["HR_count"]
    assert facts.one_equal == bool((counts == 1).sum() >= MIN_SUPPORT)


def test_an_order_the_training_rows_break_or_a_longer_chain_is_left_to_the_sampler():
    table = stays()
    frame = table.frame.copy()
    frame.loc[3, "HR_first"] = frame.loc[3, "HR_max"] + 1 if pd.notna(frame.loc[3, "HR_max"]) else 1.0
    frame.loc[3, ["HR_min", "HR_max", "HR_mean", "HR_last"]] = frame.loc[3, ["HR_min", "HR_max", "HR_mean",
                                                                               "HR_last"]].fillna(0.0)
    broken = Table.from_frame(frame, table.kinds, rules=table.rules)
    assert [c.low for c in chained(broken).chains_] == ["K_min"]
    four = Table.from_frame(table.frame, table.kinds, rules=[
        {"kind": "order", "columns": ["K_min", "K_first", "K_last", "K_max"]}])
    assert chained(four).chains_ == []


def test_data_breaking_a_chain_is_refused_in_one_line():
    table = stays()
    encoder = chained(table)
    frame = table.frame.copy()
    row = int(np.flatnonzero(frame["K_count"].to_numpy() > 1)[0])
    frame.loc[row, "K_mean"] = frame.loc[row, "K_max"] + 5
    with pytest.raises(DataError, match=f"row {row} breaks K_min <= {{K_first, K_last, K_mean}} <= K_max"):
        encoder.transform(Table.from_frame(frame, table.kinds))


def test_chains_are_saved_with_the_encoder_and_checked_when_read():
    table = stays()
    encoder = chained(table)
    again = TableEncoder.from_dict(encoder.to_dict())
    z = np.random.default_rng(0).normal(size=(500, encoder.width))
    pd.testing.assert_frame_equal(again.inverse_transform(z).frame, encoder.inverse_transform(z).frame)
    crafted = encoder.to_dict()
    crafted["chains"][0]["high"] = "age"
    crafted["chains"][0]["middle"] = ["K_first"]        # a column of another chain
    with pytest.raises(ValueError, match="chain 1 does not fit"):
        TableEncoder.from_dict(crafted)


def test_codes_only_tables_are_encoded_and_sampled_exactly_as_before():
    codes = Table.from_frame(block_binary_data(200, 2, 3, seed=0), {})
    assert TableEncoder("normal", order_chains=True).fit(codes).to_dict() == TableEncoder("normal").fit(codes).to_dict()
    rows = [EHRDiff("cpu-fast", steps=4, order_encoding=setting, hidden_dims=[32, 32], embedding_features=8,
                    embedding_width=16, num_noise_levels=4).fit(codes, progress=False).sample_table(50, seed=1).frame
            for setting in ("values", "chains")]
    pd.testing.assert_frame_equal(rows[0], rows[1])


def test_a_chains_model_samples_rows_that_keep_the_orders_before_any_projection(tmp_path, one_thread):
    table = stays(400)
    model = EHRDiff("cpu-fast", steps=30, hidden_dims=[64, 64], embedding_features=16, embedding_width=32,
                    num_noise_levels=6, order_encoding="chains").fit(table, progress=False)
    assert model.config.order_encoding == "chains" and len(model.encoder_.chains_) == 2
    rows = model.sample_table(300, seed=0).frame          # the model's rows, before the sampler keeps the rules
    assert not broken_rows(rows, tuple(r for r in table.rules if isinstance(r, Order))).any()
    model.save(tmp_path / "run")
    loaded = EHRDiff.load(tmp_path / "run")
    assert [c.to_dict() for c in loaded.encoder_.chains_] == [c.to_dict() for c in model.encoder_.chains_]
    pd.testing.assert_frame_equal(loaded.sample_table(100, seed=2).frame, model.sample_table(100, seed=2).frame)


def test_the_setting_is_checked_and_off_by_default():
    from ehrdiff.errors import EhrdiffError
    from ehrdiff.models.ehrdiff import make_config

    # chains are an option: on CinC 2012 they cost continuous KS (0.076 against 0.043) for no discriminator gain
    assert make_config("default").order_encoding == "values" and make_config("paper-mimic").order_encoding == "values"
    with pytest.raises(EhrdiffError, match="order_encoding"):
        make_config("default", order_encoding="sorted")
    assert "order_encoding" not in make_config("default").identity()
    assert make_config("default", order_encoding="chains").identity()["order_encoding"] == "chains"


def test_a_conditional_model_keeps_the_chains_of_its_features():
    from ehrdiff.models.ehrdiff.conditioning import split_condition

    features, _, _ = split_condition(stays(), "label")
    assert len(features.rules) == len(stays().rules) and len(chained(features).chains_) == 2
