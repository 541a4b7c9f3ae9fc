"""Prevalence calibration (ehrdiff.diffusion.calibration): swaps inside rows meet the targets, keep every row's
number of codes and go where the scores say a code is most plausible."""

from __future__ import annotations

import numpy as np
import pytest

from ehrdiff.diffusion.calibration import code_targets, swap_to_targets


def test_targets_split_the_total_in_proportion():
    targets = code_targets(np.array([0.5, 0.3, 0.2, 0.0]), 101)
    assert targets.sum() == 101 and targets[3] == 0
    assert list(targets) == [51, 30, 20, 0]      # 50.5 rounds up by the largest remainder (the earlier entry)
    assert code_targets(np.zeros(3), 6).tolist() == [2, 2, 2]


def test_swaps_meet_the_targets_and_keep_row_sums():
    rng = np.random.default_rng(0)
    codes = rng.random((500, 12)) < np.linspace(0.05, 0.6, 12)
    scores = rng.normal(size=codes.shape)
    targets = code_targets(np.linspace(0.6, 0.05, 12), int(codes.sum()))     # the prevalences reversed
    out = swap_to_targets(codes, scores, targets)
    assert out.sum(axis=1).tolist() == codes.sum(axis=1).tolist()
    assert out.sum(axis=0).tolist() == targets.tolist()
    untouched = swap_to_targets(codes, scores, codes.sum(axis=0))
    assert (untouched == codes).all()       # already on target: nothing moves


def test_a_short_column_takes_the_rows_where_it_scores_highest():
    codes = np.zeros((6, 2), dtype=bool)
    codes[:, 0] = True                      # column 0 has 6 ones, column 1 none; targets 3 and 3
    scores = np.zeros((6, 2))
    scores[:, 1] = [5.0, -1.0, 4.0, -2.0, 3.0, 0.0]
    out = swap_to_targets(codes, scores, np.array([3, 3]))
    assert np.flatnonzero(out[:, 1]).tolist() == [0, 2, 4]
    assert (out.sum(axis=1) == 1).all()


def test_the_least_plausible_surplus_code_leaves():
    codes = np.array([[1, 1, 0]], dtype=bool)
    scores = np.array([[2.0, -3.0, 1.0]])
    out = swap_to_targets(codes, scores, np.array([1, 0, 1]))
    assert out.tolist() == [[True, False, True]]


@pytest.mark.parametrize("bad", [np.array([3, 3, 0]), np.array([0, 0, 6])])
def test_swaps_stop_where_rows_cannot_move(bad):
    codes = np.array([[1, 1, 0], [1, 1, 0], [1, 1, 0]], dtype=bool)
    out = swap_to_targets(codes, np.zeros((3, 3)), bad)
    assert out.sum(axis=1).tolist() == [2, 2, 2]        # a row holds each code once: no duplicate, no row sum change


def _fitted_codes_model(tmp_path, n):
    import pandas as pd

    from ehrdiff.data.table import Table
    from ehrdiff.models import load_model
    from ehrdiff.models.ehrdiff import EHRDiff

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"c{j}": (rng.random(n) < p).astype(int) for j, p in enumerate([0.5, 0.3, 0.1, 0.02])})
    model = EHRDiff("cpu-fast", steps=5, batch_size=64, hidden_dims=(16,), embedding_features=8, embedding_width=8,
                    num_noise_levels=4).fit(Table.from_frame(frame), progress=False)
    model.save(tmp_path / "run")
    return load_model(tmp_path / "run"), frame


def test_a_model_without_dp_calibrates_only_when_asked(tmp_path):
    from ehrdiff.errors import EhrdiffError
    from ehrdiff.models.ehrdiff.calibrate import SMALL_TABLE_ROWS

    model, frame = _fitted_codes_model(tmp_path, SMALL_TABLE_ROWS + 200)
    assert model.code_prevalence_ == pytest.approx(frame.mean().tolist())       # the training shares, kept
    raw = model.sample(2000, seed=0)                                            # "auto", no DP, enough rows: as drawn
    calibrated = model.set_sampling(code_prevalence="data").sample(2000, seed=0)
    targets = code_targets(frame.mean().to_numpy(), int(raw.to_numpy().sum())).tolist()
    assert calibrated.sum(axis=1).tolist() == raw.sum(axis=1).tolist()
    assert calibrated.sum().tolist() == targets
    assert raw.sum().tolist() != targets
    model.code_prevalence_ = None                                               # a file from before calibration
    with pytest.raises(EhrdiffError, match="code_prevalence='data'"):
        model.sample(10, seed=0)


def test_a_model_of_a_small_table_calibrates_by_default(tmp_path):
    from ehrdiff.models.ehrdiff.calibrate import SMALL_TABLE_ROWS

    model, frame = _fitted_codes_model(tmp_path, SMALL_TABLE_ROWS - 700)
    auto = model.sample(2000, seed=0)
    raw = model.set_sampling(code_prevalence="model").sample(2000, seed=0)
    assert auto.sum(axis=1).tolist() == raw.sum(axis=1).tolist()                # each row keeps its number of codes
    assert auto.sum().tolist() == code_targets(frame.mean().to_numpy(), int(raw.to_numpy().sum())).tolist()
    assert raw.sum().tolist() != auto.sum().tolist()


def test_continuous_values_are_put_on_the_kept_distribution_in_their_own_order():
    """calibrate_values: among the rows where a column is present, its values keep their order and take evenly
    spread levels of the encoder's distribution, so that decoded they are the training quantiles at (k + 1/2) / n;
    missing rows, indicators and other columns are left as they are."""
    import pandas as pd
    from scipy.special import ndtri
    from scipy.stats import ks_2samp

    from ehrdiff.data.encoding import TableEncoder
    from ehrdiff.data.table import Table
    from ehrdiff.models.ehrdiff.calibrate import calibrate_values

    rng = np.random.default_rng(1)
    n = 4000
    frame = pd.DataFrame({"lab": np.where(rng.random(n) < 0.3, np.nan, rng.lognormal(1, 0.8, n)),
                          "code": (rng.random(n) < 0.2).astype(int)})
    encoder = TableEncoder("normal").fit(Table.from_frame(frame))
    sampled = np.column_stack([rng.normal(0.7, 2.0, 500), rng.random(500) < 0.25, rng.random(500) < 0.5])
    out = calibrate_values(encoder, sampled)
    present = sampled[:, 1] < 0.5
    assert np.array_equal(out[~present], sampled[~present]) and np.array_equal(out[:, 1:], sampled[:, 1:])
    values = out[present, 0]
    assert np.array_equal(np.argsort(values), np.argsort(sampled[present, 0]))     # the model's order, kept
    grid = ndtri((np.arange(present.sum()) + 0.5) / present.sum())
    assert np.allclose(np.sort(values), grid)
    decoded = encoder.inverse_transform(out).frame["lab"].dropna().to_numpy()
    on_grid = encoder.inverse_transform(np.column_stack([grid, np.zeros((len(grid), 2))])).frame["lab"]
    assert np.allclose(np.sort(decoded), np.sort(on_grid))
    assert ks_2samp(decoded, frame["lab"].dropna()).statistic < 0.03


def test_continuous_calibration_is_a_sampling_setting():
    """By default ("auto") an EHRDiff model whose continuous columns are quantile-scaled (the default preset)
    calibrates them at sampling, "model" leaves them as sampled; a model whose columns are all min-max scaled
    samples them as they are, and refuses "data" with one line."""
    import pandas as pd
    from scipy.stats import ks_2samp

    from ehrdiff.data.table import Table
    from ehrdiff.errors import EhrdiffError
    from ehrdiff.models.ehrdiff import EHRDiff

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"lab": rng.lognormal(1, 0.8, 800), "code": (rng.random(800) < 0.3).astype(int)})
    tiny = dict(steps=5, batch_size=64, hidden_dims=(16,), embedding_features=8, embedding_width=8,
                num_noise_levels=4)
    model = EHRDiff("cpu-fast", **tiny).fit(Table.from_frame(frame), progress=False)
    assert model.config.sampling.continuous_marginals == "auto"
    calibrated = model.sample(800, seed=0)["lab"].to_numpy()
    raw = model.set_sampling(continuous_marginals="model").sample(800, seed=0)["lab"].to_numpy()
    assert ks_2samp(calibrated, frame["lab"]).statistic < 0.03 < ks_2samp(raw, frame["lab"]).statistic
    minmax = EHRDiff("paper-mimic", **tiny).fit(Table.from_frame(frame), progress=False)
    assert minmax.sample(5, seed=0).equals(minmax.set_sampling(continuous_marginals="model").sample(5, seed=0))
    with pytest.raises(EhrdiffError, match="continuous_marginals='data' needs"):
        minmax.set_sampling(continuous_marginals="data").sample(5, seed=0)


def test_a_sample_of_one_class_is_not_calibrated_to_the_whole_population():
    """The kept prevalences and distributions are the whole training population's: a sample of the training
    balance is calibrated to them, one of a class, of another balance or with guidance is left as drawn."""
    import pandas as pd

    from ehrdiff.data.table import Table
    from ehrdiff.models.ehrdiff import EHRDiff

    rng = np.random.default_rng(4)
    n = 300
    label = (rng.random(n) < 0.4).astype(int)
    frame = pd.DataFrame({"c0": (rng.random(n) < 0.2 + 0.5 * label).astype(int),
                          "c1": (rng.random(n) < 0.3).astype(int), "lab": rng.normal(5 + 3 * label, 1),
                          "label": label})
    model = EHRDiff("cpu-fast", steps=5, batch_size=64, hidden_dims=(16,), embedding_features=8, embedding_width=8,
                    num_noise_levels=4, condition="label").fit(Table.from_frame(frame, {"label": "label"}),
                                                                 progress=False)
    raw = model.set_sampling(code_prevalence="model", continuous_marginals="model")       # the same model
    asked = [dict(condition=1), dict(balance={0: 0.5, 1: 0.5}), dict(guidance=1.0)]
    drawn = [raw.sample(200, seed=0, **options) for options in asked]
    whole_raw = raw.sample(200, seed=0)
    model.set_sampling(code_prevalence="auto", continuous_marginals="auto")
    for options, expected in zip(asked, drawn):
        assert model.sample(200, seed=0, **options).equals(expected), options
    assert not model.sample(200, seed=0).equals(whole_raw)          # the training balance: calibrated


def test_settling_keeps_the_rules_and_the_distributions_together():
    """settle_values: repairing an order rule (min <= first <= max) moves the calibrated distributions (minima
    swapped below maxima, first values clipped into the range); calibrating again in turn with the repair leaves
    the final repair far less to move, and the rows still keep the rule once repaired."""
    import pandas as pd
    from scipy.stats import ks_2samp

    from ehrdiff.data.encoding import TableEncoder
    from ehrdiff.data.rules import Order, project
    from ehrdiff.data.table import Table
    from ehrdiff.models.ehrdiff.calibrate import calibrate_values, settle_values

    rng = np.random.default_rng(2)
    n = 3000
    values = np.sort(rng.lognormal(1, 0.5, (n, 3)), axis=1)
    frame = pd.DataFrame({"low": values[:, 0], "first": values[:, 1], "high": values[:, 2]})
    rules = (Order((("low",), ("first",), ("high",))),)
    encoder = TableEncoder("normal").fit(Table.from_frame(frame))
    independent = encoder.transform(Table.from_frame(frame.apply(lambda c: rng.permutation(c.to_numpy()))))
    calibrated = calibrate_values(encoder, independent)

    def repaired_ks(matrix):
        repaired, _ = project(encoder.inverse_transform(matrix).frame, rules)
        assert not rules[0].broken(repaired).any()
        return max(ks_2samp(repaired[c], frame[c]).statistic for c in frame)

    once, settled = repaired_ks(calibrated), repaired_ks(settle_values(encoder, calibrated, rules))
    assert once > 0.05 and settled < once / 5, (once, settled)      # 0.070 and 0.005 here
    assert settle_values(encoder, calibrated, ()) is calibrated          # no rules: nothing to settle
