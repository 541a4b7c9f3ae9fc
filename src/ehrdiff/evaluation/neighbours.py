"""Exact nearest neighbours for tens of thousands of rows: distances in blocks of matrix products.

Squared Euclidean distance is |a|^2 + |b|^2 - 2 a.b; on 0/1 rows it is the Hamming distance. a.b is split by
column: the commonest columns (and every continuous one) are multiplied densely in torch float32, the long tail of
rare codes as a scipy sparse product whose few non-zeros are added into the same block. Each block of query rows
sees every reference row at once, so the only Python loop is over blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from ehrdiff.evaluation.rows import unique_rows

ALL_DENSE_WIDTH = 256  # narrower tables are multiplied densely


@dataclass(frozen=True)
class Space:
    """How columns are split between the dense and sparse products (fixed once per evaluation)."""

    dense: np.ndarray            # column indices multiplied densely
    sparse: np.ndarray           # column indices multiplied as sparse
    hamming: bool                # distances are Hamming counts (all columns 0/1) rather than Euclidean
    device: str = "cpu"
    block_elements: int = 16_000_000

    @classmethod
    def fit(cls, X: sp.csr_matrix, continuous: np.ndarray, dense_columns: int = 64, device: str = "cpu",
            block_elements: int = 16_000_000) -> "Space":
        width = X.shape[1]
        columns = np.arange(width)
        if width <= ALL_DENSE_WIDTH:
            return cls(columns, columns[:0], not continuous.any(), device, block_elements)
        nonzero = np.bincount(X.indices, minlength=width)
        order = np.argsort(-nonzero, kind="stable")
        dense = np.zeros(width, dtype=bool)
        dense[continuous] = True
        dense[order[:dense_columns]] = True
        return cls(columns[dense], columns[~dense], not continuous.any(), device, block_elements)

    def points(self, X: sp.csr_matrix) -> "Points":
        X = sp.csr_matrix(X, dtype=np.float32)
        dense = torch.from_numpy(X[:, self.dense].toarray()).to(self.device)
        sparse = X[:, self.sparse].tocsr()
        norms = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float32).ravel()
        return Points(dense, sparse, sparse.T.tocsr(), torch.from_numpy(norms).to(self.device))


@dataclass
class Points:
    """Rows ready for distance computation."""

    dense: torch.Tensor
    sparse: sp.csr_matrix
    sparse_t: sp.csr_matrix
    norms: torch.Tensor

    @property
    def n(self) -> int:
        return int(self.norms.shape[0])


def nearest(space: Space, queries: Points, reference: Points, k: int = 1,
            exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distances (n, k) to and indices (n, k) of each query row's k nearest reference rows, nearest first.

    ``exclude_self``: queries and reference are the same rows; a row is not its own neighbour (leave-one-out).
    Ties go to the lowest reference index.
    """
    available = reference.n - (1 if exclude_self else 0)
    if available < k:
        raise ValueError(f"need at least {k} reference row(s), have {available}")
    rows = max(1, min(queries.n, space.block_elements // max(reference.n, 1)))
    distances, indices = [], []
    for start in range(0, queries.n, rows):
        stop = min(start + rows, queries.n)
        # norm_r - 2 q.r ; the query's own norm is added after the minimum (it does not change the ranking)
        block = torch.addmm(reference.norms[None, :], queries.dense[start:stop], reference.dense.T, alpha=-2.0)
        if queries.sparse.shape[1]:
            product = (queries.sparse[start:stop] @ reference.sparse_t).tocoo()
            if product.nnz:
                where = (torch.from_numpy(product.row.astype(np.int64)).to(space.device),
                         torch.from_numpy(product.col.astype(np.int64)).to(space.device))
                block.index_put_(where, torch.from_numpy(-2.0 * product.data).to(space.device), accumulate=True)
        if exclude_self:
            local = torch.arange(stop - start, device=space.device)
            block[local, local + start] = float("inf")
        if k == 1:
            value, index = block.min(dim=1, keepdim=True)
        else:
            value, index = torch.topk(block, k, dim=1, largest=False, sorted=True)
        value = value + queries.norms[start:stop, None]
        distances.append(value.cpu())
        indices.append(index.cpu())
    squared = torch.cat(distances).clamp_min(0).numpy().astype(np.float64)
    if space.hamming:
        squared = np.round(squared)
    return (squared if space.hamming else np.sqrt(squared)), torch.cat(indices).numpy()


def nearest_distance(space: Space, queries: sp.csr_matrix, reference: sp.csr_matrix,
                     exclude_self: bool = False) -> np.ndarray:
    """Distance from each query row to its nearest reference row, computed once per distinct row.

    EHR code rows repeat a lot (many patients share their exact code set with another patient), so de-duplicating
    both sides first saves a large share of the work.
    ``exclude_self``: leave-one-out within ``queries`` (``reference`` is ignored); a row with an identical twin is at
    distance 0."""
    q_first, q_ids, q_counts = unique_rows(queries)
    if exclude_self:
        distance = np.zeros(len(q_first))
        if len(q_first) > 1:
            points = space.points(queries[q_first])
            distance = nearest(space, points, points, exclude_self=True)[0][:, 0]
        elif q_counts[0] == 1:
            raise ValueError("leave-one-out distances need at least 2 rows")
        return np.where(q_counts > 1, 0.0, distance)[q_ids]
    r_first, _, _ = unique_rows(reference)
    distance = nearest(space, space.points(queries[q_first]), space.points(reference[r_first]))[0][:, 0]
    return distance[q_ids]
