"""Sparse problems: a sparse strongly convex quadratic (asynchronous coordinate descent) and sparse least squares
(Hogwild).  Data are ``scipy.sparse`` CSR matrices; gradients are computed sparsely."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..budget import Footprint
from ..params import require
from .base import Problem, ProblemSpec

DENSE_EIG_MAX = 500
"""Symmetric matrices up to this size get their largest eigenvalue from dense ``eigvalsh``, larger ones from
``eigsh`` (Lanczos, to machine precision, from a fixed start vector so that results are deterministic)."""


def _lambda_max(M) -> float:
    """The largest eigenvalue of a symmetric positive semidefinite matrix (sparse, dense or a LinearOperator)."""
    size = M.shape[0]
    if size == 0:
        return 0.0
    if size <= DENSE_EIG_MAX:
        if isinstance(M, spla.LinearOperator):
            M = M @ np.eye(size)
        elif sp.issparse(M):
            M = M.toarray()
        return float(np.linalg.eigvalsh(np.asarray(M))[-1])
    v0 = np.ones(size) / np.sqrt(size)
    return float(spla.eigsh(M, k=1, which="LA", v0=v0, return_eigenvectors=False)[0])


def _frozen_csr(M) -> sp.csr_matrix:
    """A read-only float64 CSR copy of M with sorted, summed indices."""
    M = sp.csr_matrix(M, dtype=np.float64, copy=True)
    M.sum_duplicates()
    M.sort_indices()
    for a in (M.data, M.indices, M.indptr):
        a.flags.writeable = False
    return M


def _deterministic(batch) -> None:
    if batch is not None and np.size(batch) != 0:
        raise ValueError(f"this problem has deterministic gradients: a minibatch must be empty, got {np.size(batch)} "
                         "entries")


class SparseQuadraticProblem(Problem):
    """f(x) = 1/2 x^T Q x - b^T x with Q sparse (CSR), symmetric and positive definite;  grad f(x) = Q x - b.

    The test problem of asynchronous stochastic coordinate descent (AsySCD, Liu and Wright 2015): the block
    gradient grad_i f(x) = Q[i, :] x - b_i costs 2 nnz(Q[i, :]) flops (``partial_grad``, computed from the CSR rows
    of the block), and the block Lipschitz constants L_i = lambda_max(Q_ii) (the diagonal blocks of Q,
    ``block_smoothness``) set the coordinate step 1/L_i.  L = lambda_max(Q); x* = Q^{-1} b (``spsolve``)."""

    def __init__(self, Q, b):
        self.Q = Q = _frozen_csr(Q)
        self.b = np.array(b, dtype=np.float64)
        self.b.flags.writeable = False
        self.dim = len(self.b)
        if Q.shape != (self.dim, self.dim):
            raise ValueError(f"Q must be {self.dim} x {self.dim}, got {Q.shape}")

    def loss(self, x):
        return 0.5 * float(x @ (self.Q @ x)) - float(self.b @ x)

    def grad(self, x, batch=None):
        _deterministic(batch)
        return self.Q @ x - self.b

    def partial_grad(self, x, block, batch=None):
        """Q[block] x - b[block] from the CSR rows of the block only (2 nnz(Q[block]) flops)."""
        _deterministic(batch)
        return self.Q[block] @ x - self.b[block]

    def sample_batches(self, rng, n_steps, batch_size):
        return np.empty((n_steps, 0))

    @cached_property
    def optimum(self):
        x = np.asarray(spla.spsolve(self.Q.tocsc(), self.b), dtype=np.float64)
        x.flags.writeable = False
        return x

    @cached_property
    def smoothness(self) -> float:
        """L = lambda_max(Q) (an eigenvalue computation, not a Gershgorin bound)."""
        return _lambda_max(self.Q)

    def block_smoothness(self, bounds):
        """L_i = lambda_max(Q[b_i:b_{i+1}, b_i:b_{i+1}]) for each diagonal block (Q_ii for a single coordinate)."""
        bounds = np.asarray(bounds)
        diag = self.Q.diagonal()
        out = np.empty(len(bounds) - 1)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            out[i] = diag[lo] if hi - lo == 1 else _lambda_max(self.Q[lo:hi, lo:hi])
        return out

    def grad_flops(self):
        """2 nnz(Q): one multiply and one add per stored entry."""
        return 2.0 * self.Q.nnz


@ProblemSpec.registry.register("sparse_quadratic")
@dataclass(frozen=True, kw_only=True)
class SparseQuadratic(ProblemSpec):
    """A random sparse SPD quadratic.  Off the diagonal, round(density * dim (dim - 1) / 2) of the pairs i < j,
    drawn uniformly without replacement, get Q_ij = Q_ji ~ N(0, 1) (``density`` 0 gives a diagonal Q).  The
    diagonal makes Q strictly diagonally dominant: Q_ii = 1 + dominance * sum_{j != i} |Q_ij|, so by Gershgorin every
    eigenvalue is >= 1 (f is 1-strongly convex).  b ~ N(0, I).  All from the DATA stream."""

    dim: int = 1000
    density: float = 0.01
    dominance: float = 1.1

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(0 <= self.density <= 1, "density", "must be in [0, 1]", self.density)
        require(self.dominance >= 1, "dominance", "must be >= 1", self.dominance)

    knows_smoothness = True
    knows_block_smoothness = True
    counts_flops = True

    def memory(self):
        """The off-diagonal pairs in COO and CSR form (values and indices, both halves), a few times over."""
        pairs = self.density * self.dim * (self.dim - 1) / 2
        return Footprint(200.0 * pairs + 64.0 * self.dim, "problem.dim", self.dim,
                         f"a sparse {self.dim} x {self.dim} matrix with {2 * pairs:.3g} nonzeros")

    def build(self, rng):
        d = self.dim
        pairs = d * (d - 1) // 2
        count = int(round(self.density * pairs))
        idx = np.sort(rng.choice(pairs, size=count, replace=False)) if count else np.zeros(0, dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(np.arange(d - 1, 0, -1))])  # offset of row i among the pairs
        i = np.searchsorted(starts, idx, side="right") - 1
        j = i + 1 + (idx - starts[i])
        v = rng.standard_normal(count)
        off = sp.coo_matrix((np.concatenate([v, v]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                            shape=(d, d)).tocsr()
        row_abs = np.asarray(abs(off).sum(axis=1)).ravel()
        Q = off + sp.diags(1.0 + self.dominance * row_abs, format="csr")
        return SparseQuadraticProblem(Q, rng.standard_normal(d))


class SparseLeastSquaresProblem(Problem):
    """f(x) = 1/(2n) ||A x - y||^2 with A sparse (CSR, n x d);  grad over a minibatch B of row indices (drawn
    uniformly with replacement): (1/|B|) A_B^T (A_B x - y_B), computed from the rows of B only.

    The test problem of Hogwild (Niu et al. 2011): a minibatch gradient is zero outside ``support(batch)``, the
    columns its rows touch, so lock-free updates rarely collide.  x* = argmin f (``lsqr`` from 0 to machine
    tolerance: the minimum-norm solution), L = ||A||_2^2 / n, and L_i = lambda_max(A_i^T A_i) / n for a column block
    A_i (||a_i||^2 / n for one coordinate)."""

    def __init__(self, A, y):
        self.A = A = _frozen_csr(A)
        self.y = np.array(y, dtype=np.float64)
        self.y.flags.writeable = False
        self.n_samples, self.dim = A.shape

    def loss(self, x):
        r = self.A @ x - self.y
        return 0.5 * float(r @ r) / self.n_samples

    def grad(self, x, batch=None):
        if batch is None:
            return self.A.T @ (self.A @ x - self.y) / self.n_samples
        batch = np.asarray(batch).ravel()
        if batch.size == 0:
            raise ValueError("a minibatch must hold at least one row index")
        rows = self.A[batch]
        return rows.T @ (rows @ x - self.y[batch]) / batch.size

    def support(self, batch=None) -> np.ndarray:
        """The sorted column indices that the rows of ``batch`` touch (all rows when None): where a minibatch
        gradient can be nonzero."""
        rows = self.A if batch is None else self.A[np.asarray(batch).ravel()]
        return np.unique(rows.indices)

    def sample_batches(self, rng, n_steps, batch_size):
        return rng.integers(0, self.n_samples, (n_steps, batch_size))

    @cached_property
    def _csc(self):
        return self.A.tocsc()

    @cached_property
    def optimum(self):
        res = spla.lsqr(self.A, self.y, atol=1e-15, btol=1e-15, conlim=1e16, iter_lim=20 * self.dim + 100)
        x = np.asarray(res[0], dtype=np.float64)
        x.flags.writeable = False
        return x

    @cached_property
    def smoothness(self) -> float:
        """L = ||A||_2^2 / n, the largest eigenvalue of A^T A / n."""
        return _lambda_max(self._gram_operator(self.A)) / self.n_samples

    @staticmethod
    def _gram_operator(A):
        if A.shape[1] <= DENSE_EIG_MAX:
            return (A.T @ A).toarray()
        return spla.LinearOperator((A.shape[1],) * 2, matvec=lambda v: A.T @ (A @ v), dtype=np.float64)

    def block_smoothness(self, bounds):
        """L_i = lambda_max(A_i^T A_i) / n for the column blocks A_i = A[:, b_i:b_{i+1}]."""
        bounds = np.asarray(bounds)
        C = self._csc
        sq = np.asarray(C.multiply(C).sum(axis=0)).ravel()
        out = np.empty(len(bounds) - 1)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            out[i] = sq[lo] if hi - lo == 1 else _lambda_max(self._gram_operator(C[:, lo:hi]))
        return out / self.n_samples

    def grad_flops(self):
        """4 nnz(A): A x and A^T r, one multiply and one add per stored entry each (full gradient)."""
        return 4.0 * self.A.nnz


@ProblemSpec.registry.register("sparse_least_squares")
@dataclass(frozen=True, kw_only=True)
class SparseLeastSquares(ProblemSpec):
    """Sparse synthetic least squares (Niu et al. 2011): each of the n_samples rows of A has ``nnz_per_row``
    nonzeros at distinct columns drawn uniformly, with N(0, 1) values; x_true ~ N(0, I), y = A x_true +
    noise * N(0, I).  All from the DATA stream."""

    n_samples: int = 2000
    dim: int = 1000
    nnz_per_row: int = 10
    noise: float = 0.1

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(self.n_samples >= 1, "n_samples", "must be >= 1", self.n_samples)
        require(1 <= self.nnz_per_row <= self.dim, "nnz_per_row", f"must be in [1, dim = {self.dim}]",
                self.nnz_per_row)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)

    knows_smoothness = True
    knows_block_smoothness = True
    counts_flops = True

    def memory(self):
        """The n r stored entries (values and column indices) in the draw and in CSR form."""
        entries = self.n_samples * self.nnz_per_row
        return Footprint(48.0 * entries + 32.0 * (self.n_samples + self.dim), "problem.n_samples", self.n_samples,
                         f"a sparse {self.n_samples} x {self.dim} matrix with {entries} nonzeros")

    def build(self, rng):
        n, d, r = self.n_samples, self.dim, self.nnz_per_row
        cols = np.empty((n, r), dtype=np.int64)
        for i in range(n):
            cols[i] = rng.choice(d, size=r, replace=False)
        cols.sort(axis=1)
        values = rng.standard_normal((n, r))
        A = sp.csr_matrix((values.ravel(), cols.ravel(), np.arange(0, n * r + 1, r)), shape=(n, d))
        x_true = rng.standard_normal(d)
        y = A @ x_true + self.noise * rng.standard_normal(n)
        return SparseLeastSquaresProblem(A, y)
