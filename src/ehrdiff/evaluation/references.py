"""Reference rows, built from the same real data, that show what the metrics say at the extremes.

reference:real-test       half of the real test rows used as the "synthetic" set, the other half as the held-out
                          set for its metrics: what a perfect generator (new patients from the same population) scores
reference:train-resample  training rows drawn with replacement: perfect fidelity, no privacy
reference:independent     every column drawn independently from its training distribution (Bernoulli with the
                          training prevalence for codes): right marginals, no structure
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ehrdiff.evaluation.inputs import Encoded, Layout

REAL_TEST = "reference:real-test"
TRAIN_RESAMPLE = "reference:train-resample"
INDEPENDENT = "reference:independent"
NAMES = (REAL_TEST, TRAIN_RESAMPLE, INDEPENDENT)
ROW_CHUNK = 8192


def split_test(test: Encoded, rng: np.random.Generator) -> tuple[Encoded, Encoded]:
    """Two disjoint random halves of the test rows: (used as synthetic, held out)."""
    order = rng.permutation(test.n)
    half = test.n // 2
    return test.rows(np.sort(order[:half])), test.rows(np.sort(order[half:]))


def train_resample(train: Encoded, n: int, rng: np.random.Generator) -> Encoded:
    return train.rows(rng.integers(0, train.n, n))


def independent(train: Encoded, layout: Layout, n: int, rng: np.random.Generator) -> Encoded:
    """Each code Bernoulli(training prevalence); each other column (its encoded group kept together, so one-hot
    and missing indicators stay consistent) and the label from a random training row of their own."""
    codes = np.flatnonzero(layout.codes)
    prevalence = np.asarray(train.X[:, codes].mean(axis=0), dtype=np.float32).ravel()
    blocks = []
    for start in range(0, n, ROW_CHUNK):
        rows = min(ROW_CHUNK, n - start)
        blocks.append(sp.csr_matrix((rng.random((rows, len(codes)), dtype=np.float32) < prevalence).astype(np.float32)))
    parts = [sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((n, 0), dtype=np.float32)]
    other_sources = layout.source[~layout.codes]
    X_csc = train.X.tocsc()
    raw = {}         # the same draws in the given values, for the declared rules
    for user in np.unique(other_sources):  # a few continuous / categorical columns, not the codes
        columns = np.flatnonzero(layout.source == user)
        drawn = rng.integers(0, train.n, n)
        parts.append(X_csc[:, columns].tocsr()[drawn])
        if train.frame is not None:
            raw[layout.user_names[user]] = train.frame[layout.user_names[user]].to_numpy()[drawn]
    y = None if train.y is None else train.y[rng.integers(0, train.n, n)]
    X = sp.hstack(parts, format="csr", dtype=np.float32)
    frame = None
    if train.frame is not None:
        code_names = [layout.user_names[s] for s in layout.source[codes]]
        codes_drawn = pd.DataFrame(parts[0].toarray().astype(np.int64), columns=code_names)
        frame = pd.concat([codes_drawn, pd.DataFrame(raw)], axis=1)
    return Encoded(X, y, frame)
