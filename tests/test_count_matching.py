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


def screened(generate, spread: int = 0, width: int = 12):
    """``generate`` wrapped as count matching's two-stage generator: Candidates whose chances spread evenly over
    the final count +-``spread``, recording how many rows were finished."""
    from ehrdiff.diffusion.count_matching import Candidates

    finished = []

    def start(rows: int, round_number: int) -> Candidates:
        final = generate(rows, round_number)
        chances = np.zeros((rows, width + 1))
        for shift in range(-spread, spread + 1):
            chances[np.arange(rows), np.clip(final.sum(axis=1).astype(int) + shift, 0, width)] += 1 / (2 * spread + 1)

        def finish(index):
            finished.append(len(index))
            return final[index]
        return Candidates(chances, finish)
    return start, finished


def test_screening_with_an_exact_prediction_keeps_the_same_rows_and_finishes_fewer():
    from ehrdiff.diffusion.count_matching import select_code_counts

    histogram = np.array([0, 5, 10, 70, 10, 5])
    want = apportion(histogram, 1000)
    plain = select_code_counts(poisson_rows(3.0), want, np.arange(12))
    start, finished = screened(poisson_rows(3.0), width=5)
    rows = select_code_counts(start, want, np.arange(12), finish_batch=64)
    # a skipped row's count was already full, so the plain method would not have kept it either
    np.testing.assert_array_equal(rows, plain)
    assert sum(finished) < 0.6 * 2000           # plain finishes every generated row (over 2,000 here)


def test_screening_with_a_noisy_prediction_still_matches_the_histogram_exactly():
    from ehrdiff.diffusion.count_matching import select_code_counts

    histogram = np.array([0, 5, 10, 70, 10, 5])
    start, finished = screened(poisson_rows(3.0), spread=1, width=5)
    rows = select_code_counts(start, apportion(histogram, 1000), np.arange(12))
    got = np.bincount(rows.sum(axis=1).astype(int), minlength=6)
    assert got.tolist() == apportion(histogram, 1000).tolist()


def test_screened_counts_the_generator_cannot_reach_still_get_finished_stand_ins():
    from ehrdiff.diffusion.count_matching import select_code_counts

    want = apportion(np.array([0] * 10 + [50, 50]), 200)        # 10-11 codes: Poisson(2) rows almost never
    start, finished = screened(poisson_rows(2.0), width=11)
    rows = select_code_counts(start, want, np.arange(12), max_factor=2.0)
    assert rows.shape == (200, 12)


def test_default_model_split_trajectory_computes_the_whole_one():
    from ehrdiff.models.ehrdiff.model import _Trajectory

    data = block_binary_data(300, 2, 3, seed=5)
    model = EHRDiff("cpu-fast", steps=30, num_noise_levels=8, sample_batch_size=64).fit(data, progress=False)
    whole = _Trajectory(model, 3, None, 0.0)
    expected = whole.finish(whole.start(150, False, "", to_level=None))
    split = _Trajectory(model, 3, None, 0.0)
    states = split.start(150, False, "", to_level=4)
    np.testing.assert_allclose(split.finish(states, 4), expected, atol=1e-6)
    again = _Trajectory(model, 3, None, 0.0)
    states = again.start(150, False, "", to_level=4)
    chances = again.code_chances(states, 4, model.encoder_.code_columns(), 6)
    assert chances.shape == (150, 7) and np.all(chances.sum(axis=1) <= 1 + 1e-9)
    # the count each row ends with was given a real chance at the screening level
    final = expected.sum(axis=1).astype(int)
    assert np.mean(chances[np.arange(150), np.minimum(final, 6)] > 1e-3) > 0.9


def test_count_chances_are_the_poisson_binomial_distribution():
    from ehrdiff.diffusion.count_matching import count_chances

    p = np.array([[0.5, 0.5, 0.0], [1.0, 0.2, 0.0]])
    np.testing.assert_allclose(count_chances(p, 3), [[0.25, 0.5, 0.25, 0], [0, 0.8, 0.2, 0]])
    np.testing.assert_allclose(count_chances(p, 1), [[0.25, 0.5], [0, 0.8]])       # mass above top left out
