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
