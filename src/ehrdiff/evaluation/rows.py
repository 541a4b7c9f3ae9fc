"""Identical rows: exact row fingerprints and integer ids shared by identical rows (for copies and de-duplication).

A row's fingerprint is its 0/1 columns packed to bits plus its other columns as float32 bytes; rows get the same id
exactly when their fingerprints are equal (a lexicographic sort of 64-bit words, no hashing, no collisions).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

ROW_CHUNK = 8192


def zero_one_columns(X: sp.csr_matrix) -> np.ndarray:
    """True for columns whose stored values are all 1 (so the column is 0/1)."""
    ok = np.ones(X.shape[1], dtype=bool)
    ok[X.indices[X.data != 1]] = False
    return ok


def fingerprints(X: sp.csr_matrix, zero_one: np.ndarray | None = None) -> np.ndarray:
    """(rows, words) uint64 matrix; equal rows of X have equal rows here and vice versa."""
    X = sp.csr_matrix(X)
    if zero_one is None:
        zero_one = zero_one_columns(X)
    bits, values = np.flatnonzero(zero_one), np.flatnonzero(~zero_one)
    pieces = []
    for start in range(0, X.shape[0], ROW_CHUNK):
        block = X[start:start + ROW_CHUNK]
        parts = [np.packbits(block[:, bits].toarray() != 0, axis=1)]
        if len(values):
            parts.append(np.ascontiguousarray(block[:, values].toarray(), dtype=np.float32).view(np.uint8))
        raw = np.hstack(parts)
        pad = (-raw.shape[1]) % 8
        if pad or raw.shape[1] == 0:
            raw = np.hstack([raw, np.zeros((raw.shape[0], pad or 8), dtype=np.uint8)])
        pieces.append(np.ascontiguousarray(raw).view(np.uint64))
    return np.vstack(pieces) if pieces else np.zeros((0, 1), dtype=np.uint64)


def row_ids(words: np.ndarray) -> np.ndarray:
    """Ids 0..u-1, equal exactly for equal rows of ``words`` (in order of first sorted appearance)."""
    n = words.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(words.T[::-1])
    ordered = words[order]
    new = np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)]
    ids = np.empty(n, dtype=np.int64)
    ids[order] = np.cumsum(new) - 1
    return ids


def unique_rows(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows in order of first appearance: (index of each one's first row, each row's distinct-row number,
    rows per distinct row)."""
    ids = row_ids(fingerprints(X))
    first = np.full(ids.max() + 1 if len(ids) else 0, X.shape[0], dtype=np.int64)
    np.minimum.at(first, ids, np.arange(X.shape[0]))
    order = np.argsort(first)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    ids = renumber[ids]
    return first[order], ids, np.bincount(ids, minlength=len(order))
