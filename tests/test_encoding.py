"""Continuous columns on [0, 1]: min-max (the paper's) and the quantile scaling (opt-in); the default preset's
"normal" scaling (quantiles on to a standard normal) is tested in test_icu_columns.py."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest, ks_2samp

from ehrdiff.data import Table, TableEncoder
from ehrdiff.data.encoding import QUANTILE_LEVELS
from ehrdiff.models.ehrdiff import EHRDiff
from ehrdiff.models.ehrdiff import make_config

TINY = dict(steps=20, batch_size=32, hidden_dims=(16,), embedding_features=8, embedding_width=8)


def skewed_table(n: int = 3000, seed: int = 0) -> Table:
    """A heavy-tailed lab value (as CinC's ALT or pH), a count with ties and a value missing in 30% of rows."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "lab": rng.lognormal(0.0, 2.0, n),
        "count": rng.poisson(2.0, n).astype("int64"),
        "ph": np.where(rng.random(n) < 0.3, np.nan, np.round(rng.normal(7.4, 0.05, n), 2)),
    })
    return Table.from_frame(frame, {c: "continuous" for c in frame.columns})


@pytest.mark.parametrize("scaling", ["minmax", "quantile"])
def test_both_scalings_decode_training_rows_back_exactly(scaling):
    table = skewed_table()
    encoder = TableEncoder(scaling).fit(table)
    encoded = encoder.transform(table, dtype=np.float64)
    assert encoder.encoded_columns == ["lab", "count", "ph", "ph__missing"]
    assert encoded[:, :3].min() >= 0 and encoded[:, :3].max() <= 1
    back = encoder.inverse_transform(encoded).frame
    for column in table.columns:
        np.testing.assert_allclose(back[column].to_numpy(float), table.frame[column].to_numpy(float), rtol=1e-9)


def test_quantile_scaling_spreads_a_skewed_column_evenly_where_min_max_squeezes_it():
    table = skewed_table()
    lab = {s: TableEncoder(s).fit(table).transform(table)[:, 0] for s in ("minmax", "quantile")}
    # min-max: the outliers set the range and almost every value lands near 0
    assert np.median(lab["minmax"]) < 0.01 and kstest(lab["minmax"], "uniform").statistic > 0.85
    assert kstest(lab["quantile"], "uniform").statistic < 0.01


def test_quantile_scaling_turns_uniform_numbers_into_the_training_distribution():
    """A model that learns the encoded marginal (uniform for a continuous column) reproduces the column's own."""
    table = skewed_table()
    encoder = TableEncoder("quantile").fit(table)
    uniform = np.random.default_rng(1).random((20000, encoder.width))
    uniform[:, 3] = 0.0                                         # ph observed in every row
    decoded = encoder.inverse_transform(uniform).frame
    assert ks_2samp(decoded["lab"], table.frame["lab"]).statistic < 0.02
    assert ks_2samp(decoded["ph"], table.frame["ph"].dropna()).statistic < 0.03     # 2-decimal values: ties
    assert ks_2samp(decoded["count"], table.frame["count"]).statistic < 0.03
    minmax = TableEncoder("minmax").fit(table).inverse_transform(uniform).frame
    assert ks_2samp(minmax["lab"], table.frame["lab"]).statistic > 0.8


def test_knots_ties_missing_fill_and_the_model_file_dictionary():
    table = skewed_table()
    encoder = TableEncoder("quantile").fit(table)
    lab, count, ph = encoder.codings_
    for coding in (lab, count, ph):
        values = table.frame[coding.name].dropna().to_numpy()
        assert coding.scaling == "quantile" and len(coding.knots) <= QUANTILE_LEVELS
        assert np.all(np.diff(coding.knots) > 0)
        assert coding.knots[0] == values.min() and coding.knots[-1] == values.max()
        # each knot's stretch is its exact share of the training values
        np.testing.assert_allclose(coding.knot_low, [np.mean(values < k) for k in coding.knots])
        np.testing.assert_allclose(coding.knot_high, [np.mean(values <= k) for k in coding.knots])
    # a value many rows share (a count of 0: e^-2 of Poisson(2)) is encoded in the middle of its stretch, and
    # every point of the stretch decodes to it; past its stretch, values interpolate towards the next knot
    zeros = float(np.mean(table.frame["count"] == 0))
    assert count.knots[:3] == [0, 1, 2] and count.knot_high[0] == pytest.approx(zeros)
    assert count.scale(np.array([0.0]))[0] == pytest.approx(zeros / 2)
    np.testing.assert_array_equal(count.unscale(np.array([-1.0, 0.0, 0.01, zeros - 1e-9])), [0, 0, 0, 0])
    np.testing.assert_array_equal(count.unscale(np.array([1.0, 2.0])), [count.knots[-1]] * 2)
    assert lab.scale(np.array([-5.0]))[0] == 0.0 and lab.scale(np.array([1e9]))[0] == 1.0
    # missing entries get the median's position: the middle of [0, 1] (with min-max, wherever the median falls)
    assert ph.fill == pytest.approx(0.5, abs=0.02) and lab.fill == pytest.approx(0.5, abs=0.01)
    assert TableEncoder("minmax").fit(table).codings_[0].fill < 0.01
    # through JSON (model.json) and back: the same encoding
    again = TableEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    np.testing.assert_array_equal(again.transform(table), encoder.transform(table))
    # model files of older versions have no scaling fields: min-max
    old = TableEncoder("minmax").fit(table).to_dict()
    old.pop("continuous")
    for column in old["columns"]:
        for key in ("scaling", "knots", "knot_low", "knot_high"):
            column.pop(key)
    np.testing.assert_array_equal(TableEncoder.from_dict(old).transform(table),
                                  TableEncoder("minmax").fit(table).transform(table))


def test_constant_columns_and_unknown_scalings():
    table = Table.from_frame(pd.DataFrame({"x": [3.0] * 5, "y": [1.0, 2.0, 2.0, 2.0, 9.0]}),
                             {"x": "continuous", "y": "continuous"})
    x, y = TableEncoder("quantile").fit(table).codings_
    assert x.scaling == "minmax" and y.scaling == "quantile" and y.knots == [1.0, 2.0, 9.0]
    assert y.knot_low == [0.0, 0.2, 0.8] and y.knot_high == [0.2, 0.8, 1.0]
    with pytest.raises(ValueError, match="minmax"):
        TableEncoder("ranks")


@pytest.mark.usefixtures("one_thread")
def test_the_setting_chooses_the_scaling_and_survives_save_and_load(tmp_path):
    frame = skewed_table(200).frame.assign(dx=lambda f: (f["count"] > 2).astype(int))
    assert make_config("default").continuous_scaling == "normal"          # ours (issue 20)
    assert make_config("paper-mimic").continuous_scaling == "minmax"      # the paper's
    assert EHRDiff("cpu-fast", **TINY).fit(frame, progress=False).encoder_.codings_[0].scaling == "normal"
    assert EHRDiff("cpu-fast", continuous_scaling="minmax", **TINY).fit(frame, progress=False) \
        .encoder_.codings_[0].scaling == "minmax"
    model = EHRDiff("cpu-fast", continuous_scaling="quantile", **TINY).fit(frame, progress=False)
    assert [c.scaling for c in model.encoder_.codings_[:3]] == ["quantile"] * 3
    model.save(tmp_path / "run")
    again = EHRDiff.load(tmp_path / "run")
    assert again.encoder_.codings_[0].knots == model.encoder_.codings_[0].knots
    pd.testing.assert_frame_equal(again.sample(30, seed=1), model.sample(30, seed=1))
    # the setting joined later: at "minmax" it stays out of a run's identity, so older runs still resume
    assert "continuous_scaling" not in make_config("paper-mimic").identity()
    assert make_config("default", continuous_scaling="quantile").identity()["continuous_scaling"] == "quantile"


@pytest.mark.usefixtures("one_thread")
def test_private_training_scales_by_the_noisy_histograms_levels(caplog, tmp_path):
    """Under DP the training quantiles are not released: the knots are public bin edges of the declared range and
    the levels the noisy histogram's cumulative shares, whatever quantile scaling is asked for."""
    pytest.importorskip("opacus")
    from ehrdiff.privacy.release import bin_edges

    frame = skewed_table(200).frame.assign(dx=lambda f: (f["count"] > 2).astype(int))
    caplog.set_level("INFO")
    bounds = tmp_path / "bounds.json"     # 200 rows are too few for private ranges: declared (public) ones
    bounds.write_text('{"lab": {"low": 0, "high": 1000}, "count": {"low": 0, "high": 20}, "ph": {"low": 6.5, '
                      '"high": 8}}')
    model = EHRDiff("cpu-fast", continuous_scaling="quantile", dp=True, dp_epsilon=5.0, dp_delta=1e-3,
                    dp_bounds=str(bounds), **TINY).fit(frame, progress=False)
    lab = model.encoder_.codings_[0]
    assert [c.scaling for c in model.encoder_.codings_[:3]] == ["quantile"] * 3
    assert lab.knots == bin_edges(0.0, 1000.0, "continuous").tolist() and lab.knot_low[0] == 0.0
    assert lab.knot_low[-1] == pytest.approx(1.0) and lab.knot_low == sorted(lab.knot_low)
    assert any("levels of their noisy histograms" in r.getMessage() for r in caplog.records)
