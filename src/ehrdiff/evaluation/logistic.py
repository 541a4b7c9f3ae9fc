"""L2-regularised logistic regression for many binary targets at once, on sparse features (torch, L-BFGS).

One L-BFGS run fits every target together (the targets are independent, so this equals K separate fits): the
objective is the mean log-loss summed over targets plus ||W||^2 / (2 C n), which is scikit-learn's
``LogisticRegression(C=C)`` objective divided by n. ``allowed`` masks weights that must stay zero, e.g. a code's
own column when that code is the target (dimension-wise prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

CLIP = 1e-6


@dataclass
class LogisticModel:
    W: np.ndarray    # (features, targets)
    b: np.ndarray    # (targets,)

    def decision(self, X: sp.spmatrix) -> np.ndarray:
        return np.asarray(X @ self.W) + self.b

    def predict_proba(self, X: sp.spmatrix) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.decision(X)))


def fit_logistic(X: sp.spmatrix, Y: np.ndarray, allowed: np.ndarray | None = None, C: float = 1.0,
                 max_iter: int = 100, tol: float = 1e-6) -> LogisticModel:
    """Fit one logistic model per column of ``Y`` (n, K) on ``X`` (n, d); ``allowed`` (d, K) masks weights."""
    n, d = X.shape
    Y = np.asarray(Y, dtype=np.float32)
    K = Y.shape[1]
    mask = np.ones((d, K), dtype=np.float32) if allowed is None else np.asarray(allowed, dtype=np.float32).copy()
    rate = Y.mean(axis=0, dtype=np.float64)
    constant = (rate == 0) | (rate == 1)
    mask[:, constant] = 0.0  # a target with one class gets a constant prediction (its rate) and no weights
    clipped = np.clip(rate, CLIP, 1 - CLIP)
    b0 = np.log(clipped / (1 - clipped))
    lam = 1.0 / (C * n)
    # sparse products in scipy, everything else in single-threaded numpy float32: on a busy 2-core machine threaded
    # kernels (torch, BLAS) spend more time synchronising than computing on arrays of this size
    X = sp.csr_matrix(X, dtype=np.float32)
    Xt = X.T.tocsr()
    free_b = (~constant).astype(np.float64)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        Wm = theta[:d * K].reshape(d, K).astype(np.float32) * mask
        Z = np.asarray(X @ Wm) + theta[d * K:].astype(np.float32)
        E = np.exp(-np.abs(Z))
        # log(1 + e^z) - y z, written to stay finite for large |z|
        loss = float((np.maximum(Z, 0) - Y * Z + np.log1p(E)).sum(dtype=np.float64)) / n
        loss += 0.5 * lam * float(np.sum(Wm * Wm, dtype=np.float64))
        sigmoid = np.where(Z >= 0, 1.0, E) / (1.0 + E)
        R = (sigmoid - Y) / n
        grad_W = (np.asarray(Xt @ R) + lam * Wm) * mask
        return loss, np.concatenate([grad_W.ravel().astype(np.float64), R.sum(axis=0, dtype=np.float64) * free_b])

    # vector dot products are tiny: a threaded BLAS only adds synchronisation (ruinous on a busy machine)
    with threadpool_limits(1, user_api="blas"):
        theta = lbfgs(objective, np.concatenate([np.zeros(d * K), b0]), max_iter=max_iter, tol=tol)
    W = theta[:d * K].reshape(d, K) * mask
    b = np.where(constant, b0, theta[d * K:])
    return LogisticModel(W, b)


def lbfgs(objective, x: np.ndarray, max_iter: int = 100, tol: float = 1e-6, history: int = 10,
          ftol: float = 1e-7) -> np.ndarray:
    """Minimise a smooth function with L-BFGS (two-loop recursion, backtracking Armijo line search).

    ``objective(x) -> (value, gradient)``. Stops after ``max_iter`` iterations, when the largest gradient entry is
    below ``tol``, or when the value stops decreasing (relative change below ``ftol``)."""
    value, grad = objective(x)
    s_list: list[np.ndarray] = []
    y_list: list[np.ndarray] = []
    for iteration in range(max_iter):
        if np.abs(grad).max() < tol:
            break
        q = grad.copy()
        alphas = []
        for s, y in zip(reversed(s_list), reversed(y_list)):
            a = s.dot(q) / y.dot(s)
            alphas.append(a)
            q -= a * y
        if s_list:
            q *= s_list[-1].dot(y_list[-1]) / y_list[-1].dot(y_list[-1])
        else:
            q /= max(np.linalg.norm(q), 1.0)  # first step: at most unit length
        for (s, y), a in zip(zip(s_list, y_list), reversed(alphas)):
            q += s * (a - y.dot(q) / y.dot(s))
        direction = -q
        slope = grad.dot(direction)
        if slope >= 0:  # not a descent direction (numerical trouble): restart from steepest descent
            s_list.clear()
            y_list.clear()
            direction, slope = -grad, -grad.dot(grad)
        step = 1.0
        for _ in range(30):  # backtracking
            candidate = x + step * direction
            new_value, new_grad = objective(candidate)
            if new_value <= value + 1e-4 * step * slope:
                break
            step *= 0.5
        else:
            break
        s_new, y_new = candidate - x, new_grad - grad
        if s_new.dot(y_new) > 1e-12:
            s_list.append(s_new)
            y_list.append(y_new)
            if len(s_list) > history:
                s_list.pop(0)
                y_list.pop(0)
        converged = abs(value - new_value) <= ftol * max(abs(value), 1.0)
        x, value, grad = candidate, new_value, new_grad
        if converged:
            break
    return x
