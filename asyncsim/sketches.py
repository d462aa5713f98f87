"""Random sketches of a tall least-squares problem: pure functions that draw an m x n sketch S and return
(S A, S b) without forming S where it can be avoided.

Every sketch satisfies E[S^T S] = I_n, so (S A)^T (S A) is an unbiased estimate of A^T A (and (S A)^T S b of
A^T b).  Each takes the data ``A`` (n x d), ``b`` (n), the sketch size ``m`` and a ``numpy.random.Generator``
(no global random state); ``SKETCHES`` maps the YAML names to them, in the order messages list them.

- ``gaussian``: S has i.i.d. N(0, 1/m) entries (drawn in blocks of columns, so at most m x 4096 numbers at once).
- ``hadamard``: the subsampled randomized Hadamard transform (SRHT; Ailon and Chazelle 2009, Tropp 2011):
  S = sqrt(N / m) P H D, with the rows of [A b] zero-padded to N = the next power of two >= n, D a diagonal of
  random signs, H the orthogonal Walsh-Hadamard matrix H_N / sqrt(N) applied by the fast transform
  (``fwht``, N log2 N additions per column), and P m distinct rows of N chosen uniformly (without replacement).
- ``uniform``: m rows sampled uniformly with replacement, each rescaled by 1 / sqrt(m p_i) = sqrt(n / m).
- ``leverage``: m rows sampled with replacement with probabilities p_i = l_i / d, the leverage scores l_i of A
  over their sum d (``scores`` gives them; by default they are computed from a thin QR of A), rescaled by
  1 / sqrt(m p_i).
- ``hybrid`` (Bartan and Pilanci 2020's sampling followed by a projection): ``rows`` = m2 >= m rows (default
  min(n, 4 m); ``sketch_average`` and ``sketched_newton`` take it as ``hybrid_rows`` and require m2 <= n) sampled
  uniformly with replacement and rescaled by sqrt(n / m2), then a Gaussian projection of those m2 rows down to m
  (entries N(0, 1/m)): the sampling cuts the cost of the projection from m n to m m2 per column, and the
  projection mixes the sampled rows.
"""

from __future__ import annotations

import math

import numpy as np

from .params import require

BLOCK_COLUMNS = 4096
"""The Gaussian sketch is drawn and applied this many columns (rows of A) at a time."""


def _stack(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    require(A.ndim == 2 and b.shape == (A.shape[0],), "b", f"must be a vector of A's {A.shape[0]} rows",
            b.shape)
    return np.column_stack([A, b])


def _check_rows(m: int, n: int, most: int | None = None) -> None:
    require(isinstance(m, (int, np.integer)) and m >= 1, "rows", "must be an integer >= 1", m)
    if most is not None:
        require(m <= most, "rows", f"must be <= {most}", m)


def gaussian(A, b, m: int, rng: np.random.Generator):
    """(S A, S b) for S with i.i.d. N(0, 1/m) entries (E[S^T S] = I)."""
    M = _stack(A, b)
    n = M.shape[0]
    _check_rows(m, n)
    out = rng.standard_normal((m, min(n, BLOCK_COLUMNS))) @ M[:BLOCK_COLUMNS]
    for lo in range(BLOCK_COLUMNS, n, BLOCK_COLUMNS):
        hi = min(n, lo + BLOCK_COLUMNS)
        out += rng.standard_normal((m, hi - lo)) @ M[lo:hi]
    out *= 1 / math.sqrt(m)
    return out[:, :-1], out[:, -1]


def fwht(X: np.ndarray) -> np.ndarray:
    """The unnormalized Walsh-Hadamard transform H_N X of the rows of X (N = len(X), a power of two), in Sylvester's
    order (the order of ``scipy.linalg.hadamard``): log2 N butterfly passes, a new array (X is not changed)."""
    X = np.array(X, dtype=np.float64)
    N = X.shape[0]
    require(N >= 1 and N & (N - 1) == 0, "X", "must have a power of two rows", N)
    tail = X.shape[1:]
    h = 1
    while h < N:
        Y = X.reshape(N // (2 * h), 2, h, *tail)
        top, bottom = Y[:, 0], Y[:, 1]
        X = np.stack([top + bottom, top - bottom], axis=1).reshape(N, *tail)
        h *= 2
    return X


def hadamard(A, b, m: int, rng: np.random.Generator):
    """(S A, S b) for the SRHT S = sqrt(N / m) P H D (module docstring); m <= N distinct rows."""
    M = _stack(A, b)
    n = M.shape[0]
    N = 1 << max(0, (n - 1).bit_length())
    _check_rows(m, n, N)
    signs = rng.choice(np.array([-1.0, 1.0]), size=n)
    padded = np.zeros((N, M.shape[1]))
    padded[:n] = signs[:, None] * M
    rows = rng.choice(N, size=m, replace=False)
    out = fwht(padded)[rows] / math.sqrt(m)  # sqrt(N / m) * (H_N / sqrt(N))
    return out[:, :-1], out[:, -1]


def _sampled(M: np.ndarray, m: int, p: np.ndarray, rng: np.random.Generator):
    idx = rng.choice(M.shape[0], size=m, replace=True, p=p)
    out = M[idx] / np.sqrt(m * p[idx])[:, None]
    return out[:, :-1], out[:, -1]


def uniform(A, b, m: int, rng: np.random.Generator):
    """(S A, S b) for m rows sampled uniformly with replacement, rescaled by sqrt(n / m)."""
    M = _stack(A, b)
    n = M.shape[0]
    _check_rows(m, n)
    idx = rng.integers(0, n, size=m)
    out = M[idx] * math.sqrt(n / m)
    return out[:, :-1], out[:, -1]


def leverage_scores(A) -> np.ndarray:
    """l_i = ||Q_i||^2 for a thin QR A = Q R (A of full column rank): the diagonal of the hat matrix, sum = d."""
    Q, _ = np.linalg.qr(np.asarray(A, dtype=np.float64))
    return np.einsum("ij,ij->i", Q, Q)


def sampling_probabilities(scores) -> np.ndarray:
    """p_i = scores_i / sum(scores) (leverage scores over d)."""
    s = np.asarray(scores, dtype=np.float64)
    require(s.ndim == 1 and s.size >= 1 and np.all(np.isfinite(s)) and np.all(s >= 0) and s.sum() > 0, "scores",
            "must be finite, >= 0 and not all 0", s.shape)
    return s / s.sum()


def leverage(A, b, m: int, rng: np.random.Generator, scores=None):
    """(S A, S b) for m rows sampled with replacement with p_i = l_i / d (``scores`` l, else computed from A),
    rescaled by 1 / sqrt(m p_i)."""
    M = _stack(A, b)
    _check_rows(m, M.shape[0])
    p = sampling_probabilities(leverage_scores(M[:, :-1]) if scores is None else scores)
    require(p.size == M.shape[0], "scores", f"must hold one score per row ({M.shape[0]})", p.size)
    return _sampled(M, m, p, rng)


def hybrid_rows(m: int, n: int, rows: int | None = None) -> int:
    """The rows m2 the hybrid sketch samples before its Gaussian projection: ``rows``, default min(n, 4 m)."""
    return min(n, 4 * m) if rows is None else rows


def hybrid(A, b, m: int, rng: np.random.Generator, rows: int | None = None):
    """(S A, S b) for S = G P: P samples m2 = ``rows`` rows uniformly with replacement (rescaled sqrt(n / m2)), G
    is m x m2 Gaussian with N(0, 1/m) entries; E[S^T S] = E[P^T E[G^T G] P] = E[P^T P] = I."""
    M = _stack(A, b)
    n = M.shape[0]
    _check_rows(m, n)
    m2 = hybrid_rows(m, n, rows)
    require(isinstance(m2, (int, np.integer)) and m <= m2, "hybrid_rows", f"must be an integer >= rows ({m})", m2)
    idx = rng.integers(0, n, size=m2)
    sampled = M[idx] * math.sqrt(n / m2)
    out = rng.standard_normal((m, m2)) @ sampled / math.sqrt(m)
    return out[:, :-1], out[:, -1]


SKETCHES = {"gaussian": gaussian, "hadamard": hadamard, "uniform": uniform, "leverage": leverage,
            "hybrid": hybrid}
"""The sketches by YAML name, in the order messages list them."""


def check_name(name: str, field: str = "sketch") -> None:
    """ParamError ``<field> must be one of gaussian, hadamard, uniform, leverage, hybrid, got 'foo'``."""
    require(isinstance(name, str) and name in SKETCHES, field, f"must be one of {', '.join(SKETCHES)}", name)


def sketch(name: str, A, b, m: int, rng: np.random.Generator, *, scores=None, rows: int | None = None):
    """(S A, S b) with the sketch ``name``: ``scores`` goes to ``leverage``, ``rows`` (m2) to ``hybrid``."""
    check_name(name)
    if name == "leverage":
        return leverage(A, b, m, rng, scores)
    if name == "hybrid":
        return hybrid(A, b, m, rng, rows)
    return SKETCHES[name](A, b, m, rng)


def flops(name: str, n: int, d: int, m: int, rows: int | None = None) -> float:
    """About the flops of one sketch of an n x (d + 1) matrix to m rows (sampling and scaling counted as reads)."""
    check_name(name)
    cols = d + 1
    if name == "gaussian":
        return 2.0 * m * n * cols
    if name == "hadamard":
        N = 1 << max(0, (n - 1).bit_length())
        return N * max(1, N.bit_length() - 1) * cols + 2.0 * m * cols
    if name == "hybrid":
        return 2.0 * m * hybrid_rows(m, n, rows) * cols
    return 2.0 * m * cols


__all__ = ["SKETCHES", "check_name", "fwht", "flops", "gaussian", "hadamard", "hybrid", "hybrid_rows",
           "leverage", "leverage_scores", "sampling_probabilities", "sketch", "uniform"]
