"""Meeting pair counts by checkerboard swaps (ehrdiff.diffusion.cooccurrence): what the swaps keep and what they
bring the sample towards."""

from __future__ import annotations

import numpy as np

from ehrdiff.diffusion.cooccurrence import match_pairs, pair_counts


def correlated_codes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Codes 0-3 of one condition tend to come together, 4-7 of another; 8-11 are independent."""
    group = rng.random(n) < 0.4
    x = np.zeros((n, 12), bool)
    x[:, :4] = rng.random((n, 4)) < np.where(group, 0.6, 0.05)[:, None]
    x[:, 4:8] = rng.random((n, 4)) < np.where(group, 0.05, 0.5)[:, None]
    x[:, 8:] = rng.random((n, 4)) < 0.2
    return x


def test_swaps_bring_independent_codes_to_the_wanted_pairs_and_keep_every_margin():
    rng = np.random.default_rng(0)
    real = correlated_codes(4000, rng)
    independent = rng.random((2000, 12)) < real.mean(axis=0)      # same prevalences, no co-occurrence
    labels = rng.integers(0, 2, len(independent))
    targets = np.arange(8)
    wanted = pair_counts(real, targets) * (len(independent) / len(real))
    met = match_pairs(independent, targets, wanted, labels, seed=0)
    off = ~np.eye(12, dtype=bool)[targets]                        # swaps never change a code's own count

    def error(x):
        return np.abs(pair_counts(x, targets) - wanted)[off].sum() / wanted[off].sum()

    assert error(met) < 0.4 * error(independent)
    assert np.array_equal(met.sum(axis=1), independent.sum(axis=1))        # codes per row
    for k in (0, 1):                                                        # each class's count of every code
        assert np.array_equal(met[labels == k].sum(axis=0), independent[labels == k].sum(axis=0))
    # the condition's codes now come together: code 0 and code 1 more, code 0 and code 4 less than independently
    assert pair_counts(met, [0])[0, 1] > 1.5 * pair_counts(independent, [0])[0, 1]
    assert pair_counts(met, [0])[0, 4] < 0.7 * pair_counts(independent, [0])[0, 4]


def test_rows_already_at_the_wanted_pairs_are_left_as_they_are():
    rng = np.random.default_rng(1)
    x = correlated_codes(1000, rng)
    targets = np.array([0, 4, 8])
    assert np.array_equal(match_pairs(x, targets, pair_counts(x, targets), seed=3), x)
