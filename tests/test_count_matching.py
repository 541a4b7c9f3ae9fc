"""Matching the number of codes per synthetic row to the training histogram (ehrdiff.diffusion.count_matching),
alone and inside the default model."""

import numpy as np
import pytest

from ehrdiff.diffusion.count_matching import match_code_counts, apportion
from ehrdiff.models.ehrdiff import EHRDiff

from conftest import block_binary_data

pytestmark = pytest.mark.usefixtures("one_thread")


def test_apportioned_counts_are_proportional_and_sum_to_n():
    counts = apportion(np.array([1, 0, 6, 3]), 7)
    assert counts.sum() == 7 and counts.tolist() == [1, 0, 4, 2]     # 0.7, 0, 4.2, 2.1 by largest remainders


def poisson_rows(mean: float, width: int = 12):
    """A generator of 0/1 rows whose number of ones is Poisson(mean) (capped at width), seeded by the round."""
    def generate(rows: int, round_number: int) -> np.ndarray:
        rng = np.random.default_rng(round_number)
        k = np.minimum(rng.poisson(mean, rows), width)
        out = np.zeros((rows, width))
        for i, ki in enumerate(k):
            out[i, rng.choice(width, ki, replace=False)] = 1
        return out
    return generate


def test_selected_rows_follow_the_target_histogram_exactly():
    histogram = np.array([0, 5, 10, 70, 10, 5])         # a spike at 3 codes the generator (mean 3) does not have
    generate = poisson_rows(3.0)
    rows = match_code_counts(generate, 1000, histogram, np.arange(12))
    got = np.bincount(rows.sum(axis=1).astype(int), minlength=6)
    assert got.tolist() == apportion(histogram, 1000).tolist()
    # kept rows are the generator's own rows, in generation order: the first round's 3-code rows come first
    first = generate(1000, 0)
    threes = first[first.sum(axis=1) == 3]
    np.testing.assert_array_equal(rows[:10], first[np.isin(first.sum(axis=1), [1, 2, 3, 4, 5])][:10])
    assert len(threes) < 700                             # the spike really needed more rows than one round


def test_counts_the_generator_cannot_reach_take_the_nearest_rows():
    histogram = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 50])     # 10-11 codes: Poisson(2) rows almost never
    rows = match_code_counts(poisson_rows(2.0), 200, histogram, np.arange(12), max_factor=2.0)
    assert rows.shape == (200, 12)
    generated = np.concatenate([poisson_rows(2.0)(200, 0), poisson_rows(2.0)(200, 1)])
    # stand-ins are the rows with the most codes the two rounds produced
    assert rows.sum(axis=1).min() >= np.sort(generated.sum(axis=1))[-200]


def test_default_model_samples_the_training_histogram_of_codes(tmp_path):
    data = block_binary_data(1500, 3, 3, seed=2)
    data = data[data.sum(axis=1).isin([2, 3])]          # no row with 1 or 4 codes: the model will not know that
    model = EHRDiff("cpu-fast", steps=200, num_noise_levels=8, codes_per_row="data").fit(data, progress=False)
    real = np.bincount(data.sum(axis=1), minlength=10)
    assert model.code_histograms_["all"] == real.tolist()[:len(model.code_histograms_["all"])]
    sample = model.sample(1000, seed=0).to_numpy(float).sum(axis=1).astype(int)
    assert np.bincount(sample, minlength=4).tolist() == apportion(real[:4], 1000).tolist()
    model.config.codes_per_row = "model"
    free = model.sample(1000, seed=0).to_numpy(float).sum(axis=1)
    assert not np.isin(free, [2, 3]).all()           # without matching the model does leave the histogram
    model.config.codes_per_row = "data"
    model.save(tmp_path / "m")
    again = EHRDiff.load(tmp_path / "m").sample(1000, seed=0).to_numpy(float)
    np.testing.assert_array_equal(again, model.sample(1000, seed=0).to_numpy(float))


def test_conditional_model_matches_each_class_histogram():
    data = block_binary_data(1200, 2, 3, seed=4)
    data["outcome"] = np.where(data.sum(axis=1) >= 3, "many", "few")
    model = EHRDiff("cpu-fast", steps=150, num_noise_levels=8, codes_per_row="data",
                    condition="outcome").fit(data, progress=False)
    many = model.sample(300, seed=1, condition="many")
    assert (many.drop(columns="outcome").to_numpy(float).sum(axis=1) >= 3).all()


def test_a_rare_tail_takes_the_nearest_count_instead_of_the_whole_budget():
    # 0.2% of the rows want 10 codes, which Poisson(3) rows almost never have: with the tail left to the nearest
    # count the common counts still come out exact, from far fewer rows than the 4x budget
    histogram = np.array([0, 10, 20, 40, 20, 9.8] + [0] * 4 + [0.2])
    generated = []

    def generate(rows, round_number):
        generated.append(rows)
        return poisson_rows(3.0, width=12)(rows, round_number)

    rows = match_code_counts(generate, 5000, histogram, np.arange(12))
    want = apportion(histogram, 5000)
    got = np.bincount(rows.sum(axis=1).astype(int), minlength=11)[:11]
    assert got[:6].tolist() == want[:6].tolist()
    assert got[10] < want[10] and abs(got - want).sum() <= 2 * int(0.0025 * 5000)
    assert sum(generated) < 2.5 * 5000
    # without the tail allowance the same call hunts the 10-code rows up to the budget
    generated.clear()
    exact = match_code_counts(generate, 5000, histogram, np.arange(12), tail_share=0.0)
    assert sum(generated) == 4 * 5000 and len(exact) == 5000
