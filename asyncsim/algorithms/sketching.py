"""Distributed sketching for least squares and ridge regression: averaging sketch-and-solve solutions, and the
distributed iterative Hessian sketch with its debiasing corrections.

Both need the data: the problem's ``A`` (n x d), ``y`` and ridge parameter ``lam`` (0 when it has none), as the
``ridge`` and ``least_squares`` problems give them; the objective is f(x) = ||A x - y||^2 / (2 n) + lam ||x||^2 / 2
with Hessian H = A^T A / n + lam I.  Every worker step draws a fresh sketch S (``asyncsim.sketches``, E[S^T S] = I)
from its ALGORITHM-stream draw (a seed per (worker, step)), so the run does not depend on execution order.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..budget import Footprint
from ..params import ParamError, kind, require
from ..problems.least_squares import LeastSquares
from ..problems.ridge import Ridge
from ..sketches import BLOCK_COLUMNS, SKETCHES, check_name, hybrid_rows, leverage_scores, sketch
from ..sketches import flops as sketch_flops
from ..timing.protocol import Family
from .base import Algorithm, average, total

SEED_LIMIT = 2**63 - 1
_SCORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def data(problem):
    """(A, y, lam) of a dense least-squares problem; ParamError if the problem has no such data."""
    A, y = getattr(problem, "A", None), getattr(problem, "y", None)
    ok = isinstance(A, np.ndarray) and A.ndim == 2 and isinstance(y, np.ndarray) and y.shape == (A.shape[0],)
    require(ok, "problem", "must hold dense data A (n x d) and y (n) for a sketching algorithm",
            type(problem).__name__)
    return A, y, float(getattr(problem, "lam", 0.0))


def effective_dimension(singular_values, n: int, lam: float) -> float:
    """d_lambda = sum_j s_j^2 / (s_j^2 + n lam), with s_j the singular values of A (n rows) and lam the ridge
    parameter of f = ||A x - y||^2 / (2 n) + lam ||x||^2 / 2, i.e. tr(H0 (H0 + lam I)^{-1}) with H0 = A^T A / n
    (Derezinski, Bartan, Pilanci and Mahoney 2020 write it for ||A x - y||^2 / 2 + lam' ||x||^2 / 2, so their
    lam' is n lam here).  d for lam = 0."""
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    return float(np.sum(s2 / (s2 + n * lam))) if lam > 0 else float(np.count_nonzero(s2))


def singular_values(problem) -> np.ndarray:
    given = getattr(problem, "singular_values", None)
    return np.asarray(given) if given is not None else np.linalg.svd(data(problem)[0], compute_uv=False)


def scores(problem) -> np.ndarray:
    """The leverage scores of the problem's A: its own ``leverage`` if it has them, else computed once (thin QR)
    and kept while the problem lives."""
    given = getattr(problem, "leverage", None)
    if given is not None:
        return given
    if problem not in _SCORES:
        _SCORES[problem] = leverage_scores(data(problem)[0])
    return _SCORES[problem]


def check_problem(scenario, algorithm: str) -> None:
    """The scenario's problem is dense least squares or ridge (its data known to the workers)."""
    require(isinstance(scenario.problem, (Ridge, LeastSquares)), "problem.kind", f"must be ridge or least_squares "
            f"(dense data A, y and a ridge lam for the workers to sketch) for algorithm {algorithm}",
            kind(scenario.problem))


class _Sketching(Algorithm):
    """What both methods share: the sketch, its size, the draws (one seed per step), the cost model."""

    sketch: str
    rows: int
    hybrid_rows: int | None

    def _check_sketch(self):
        check_name(self.sketch)
        require(self.rows >= 1, "rows", "must be >= 1", self.rows)
        if self.hybrid_rows is not None:
            require(self.sketch == "hybrid", "hybrid_rows", "is only used by sketch hybrid (leave it out)",
                    self.hybrid_rows)
            require(self.hybrid_rows >= self.rows, "hybrid_rows", f"must be >= rows ({self.rows})", self.hybrid_rows)

    def _check_sizes(self, scenario):
        spec, name = scenario.problem, kind(self)
        check_problem(scenario, name)
        n = spec.n_samples
        require(self.rows <= n, "algorithm.rows", f"must be <= problem.n_samples ({n})", self.rows)
        if self.hybrid_rows is not None:
            require(self.hybrid_rows <= n, "algorithm.hybrid_rows", f"must be <= problem.n_samples ({n})",
                    self.hybrid_rows)

    def draw(self, problem, rng, n_steps):
        return rng.integers(0, SEED_LIMIT, size=n_steps, dtype=np.int64)

    def sketched(self, problem, draw):
        """(S A, S y) of a fresh sketch from this step's draw."""
        A, y, _ = data(problem)
        rng = np.random.default_rng(int(draw))
        return sketch(self.sketch, A, y, self.rows, rng, scores=scores(problem) if self.sketch == "leverage" else None,
                      rows=self.hybrid_rows)

    def _sketch_flops(self, problem) -> float:
        n, d = problem.n_samples, problem.dim
        return sketch_flops(self.sketch, n, d, self.rows, self.hybrid_rows) + 2.0 * self.rows * d * (d + 1) + d**3 / 3

    def memory(self, problem, workers, vectors_per_worker=2.0):
        base = super().memory(problem, workers, vectors_per_worker)
        n, d, m = getattr(problem, "n_samples", self.rows), problem.dim, self.rows
        if self.sketch == "hadamard":
            work = 24.0 * (1 << max(0, (n - 1).bit_length())) * (d + 1)
        elif self.sketch == "hybrid":
            m2 = hybrid_rows(m, n, self.hybrid_rows)
            work = 8.0 * (m2 * (d + 1) + m * m2)
        else:
            work = 8.0 * m * (min(n, BLOCK_COLUMNS) + 2 * (d + 1))
        if work > base.bytes:
            if self.sketch == "hybrid" and self.hybrid_rows is not None and self.hybrid_rows > m:
                return Footprint(base.bytes + work, "algorithm.hybrid_rows", self.hybrid_rows,
                                 f"a hybrid sketch of {self.hybrid_rows} sampled rows projected to {m}")
            return Footprint(base.bytes + work, "algorithm.rows", m, f"a sketch of {m} rows ({self.sketch})")
        return replace(base, bytes=base.bytes + work)

    @staticmethod
    def _ridge_solve(SA, rhs, n, lam):
        G = SA.T @ SA / n
        if lam:
            G[np.diag_indices_from(G)] += lam
        return np.linalg.solve(G, rhs)


class AverageState(NamedTuple):
    """The sum of the solutions received, how many, and the start (the estimate before any arrives)."""

    total: np.ndarray
    count: int
    start: np.ndarray


@Algorithm.registry.register("sketch_average")
@dataclass(frozen=True, kw_only=True)
class SketchAverage(_Sketching):
    """Distributed sketch-and-solve with averaging (Bartan and Pilanci, "Distributed sketching methods for privacy
    preserving regression", arXiv:2002.06538, 2020, and "Distributed averaging methods for randomized second order
    optimization", arXiv:2002.06540, 2020; Derezinski, Bartan, Pilanci and Mahoney, "Debiasing distributed second
    order optimization with surrogate sketching and scaled regularization", NeurIPS 2020).  Worker i's step draws a
    fresh sketch S_i of ``rows`` = m rows (``sketch``: gaussian, hadamard, uniform, leverage, hybrid; ``hybrid_rows``
    m2 for hybrid) and solves the sketched ridge problem exactly,

        x_i = argmin ||S_i A x - S_i y||^2 / (2 n) + lam ||x||^2 / 2 = ((S_i A)^T S_i A / n + lam I)^{-1} (S_i A)^T S_i y / n,

    whatever parameters it read (E[S^T S] = I makes the sketched Gram unbiased for A^T A).  The server keeps the
    mean of every solution received so far, x_hat = (1/q) sum_{i <= q} x_i (the anytime estimator: x_0 until the
    first arrives).  For a Gaussian sketch and lam = 0, E ||A (x_hat - x*)||^2 = d / (q (m - d - 1)) ||A x* - y||^2
    exactly (x* the least-squares solution), so the error falls like 1/q as solutions arrive.

    Defined wherever a contribution is a whole solution: asynchronous, batched and draining servers, and rounds
    (sync, k_of_n, deadline, allreduce; under a deadline q is what the deadline leaves).  Not coded rounds (a coded
    task is a share of a decodable job; here every solution is useful on its own), local steps or shared memory."""

    sketch: str = "gaussian"
    rows: int
    hybrid_rows: int | None = None

    @staticmethod
    def accepts(protocol):
        return (protocol.family in (Family.ASYNC, Family.BATCHED, Family.DRAINED, Family.ROUNDS)
                and not protocol.coded and not protocol.takes_local_steps)

    def __post_init__(self):
        self._check_sketch()

    def check(self, scenario):
        self._check_sizes(scenario)
        d = scenario.problem.dim
        require(self.rows > d + 1, "algorithm.rows", f"must be > problem.dim + 1 ({d + 1}): the sketched Gram must be "
                f"invertible and the Gaussian error d / (m - d - 1) finite", self.rows)

    def bind(self, problem, n_workers=None):
        A, _, _ = data(problem)
        n, d = A.shape
        require(d + 1 < self.rows <= n, "algorithm.rows", f"must be in ({d + 1}, {n}] for this problem", self.rows)
        return self

    def work(self, problem, n_workers):
        return self._sketch_flops(problem)

    def init(self, x0, n_workers):
        return AverageState(np.zeros_like(x0), 0, x0), (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        SA, Sy = self.sketched(problem, draw)
        _, _, lam = data(problem)
        n = problem.n_samples
        return self._ridge_solve(SA, SA.T @ Sy / n, n, lam), worker_state

    def apply(self, server_state, messages, info):
        return AverageState(server_state.total + total(messages), server_state.count + len(messages),
                            server_state.start)

    def params(self, server_state):
        if server_state.count == 0:
            return server_state.start
        return server_state.total / server_state.count


DEBIAS = ("none", "step", "surrogate")


@Algorithm.registry.register("sketched_newton")
@dataclass(frozen=True, kw_only=True)
class SketchedNewton(_Sketching):
    """Distributed iterative Hessian sketch with averaging (Pilanci and Wainwright, "Iterative Hessian sketch",
    JMLR 2016; Bartan and Pilanci, "Distributed averaging methods for randomized second order optimization",
    arXiv:2002.06540, 2020; Derezinski, Bartan, Pilanci and Mahoney, "Debiasing distributed second order
    optimization with surrogate sketching and scaled regularization", NeurIPS 2020, arXiv:2007.01327).  In round t
    every worker i that makes it draws a fresh sketch S_i (``rows`` = m) and sends H_i^{-1} g(x_t), with g the exact
    gradient A^T (A x_t - y) / n + lam x_t and H_i = (S_i A)^T (S_i A) / n + lam' I the sketched Hessian; the server
    averages the q directions that arrived, in worker order:

        x_{t+1} = x_t - lr mu (1/q) sum_i H_i^{-1} g(x_t).

    ``debias``:

    - ``none``: mu = 1, lam' = lam.  The average converges to E[H_i^{-1}] g, which is not H^{-1} g: more workers
      stop helping (for a Gaussian sketch and lam = 0, E[H_i^{-1}] = m / (m - d - 1) H^{-1}).
    - ``step``: mu = (m - d - 1) / m, lam' = lam: E[mu H_i^{-1}] = H^{-1} exactly for a Gaussian sketch and lam = 0,
      and then E ||x_{t+1} - x*||_H^2 = (rho / q) ||x_t - x*||_H^2 with
      rho = ((d + 1) m - d^2 - 2 d + 1) / ((m - d) (m - d - 3))   (``ihs_contraction``).
    - ``surrogate``: lam' = lam (1 - d_lam / m) and mu = 1 - d_lam / m, d_lam = sum_j s_j^2 / (s_j^2 + n lam) the
      effective dimension (``d_lambda``, computed from the data when left out): Derezinski et al.'s scaled
      regularization.  With the sketch normalized as here (E[S^T S] = I) the shrunk lam' comes with the step factor
      1 - d_lam / m; together they are H_i^{-1} with the sketched Gram scaled by m / (m - d_lam) and lam unchanged
      (lam' alone makes a Gaussian sketch's bias larger, not smaller: tests/test_sketching.py measures both).  They
      derive the rule for their surrogate (determinantal) sketches, for which it removes the bias; for the sketches
      here it removes most of it (on Gaussian sketches the norm of the bias falls about 10x; the reproduction
      ``debiased-newton`` measures what that does to the contraction).  For lam = 0 it is mu = (m - d) / m, which leaves a Gaussian sketch a relative bias of
      1 / (m - d - 1).

    Rounds only (every direction must be computed at x_t): sync, k_of_n, deadline, allreduce; not coded rounds or
    local steps."""

    sketch: str = "gaussian"
    rows: int
    debias: str = "none"
    lr: float = 1.0
    hybrid_rows: int | None = None
    d_lambda: float | None = None

    @staticmethod
    def accepts(protocol):
        return protocol.family is Family.ROUNDS and not protocol.coded and not protocol.takes_local_steps

    def __post_init__(self):
        self._check_sketch()
        require(self.debias in DEBIAS, "debias", f"must be one of {', '.join(DEBIAS)}", self.debias)
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.d_lambda is None or self.d_lambda >= 0, "d_lambda", "must be >= 0", self.d_lambda)

    def check(self, scenario):
        self._check_sizes(scenario)
        d = scenario.problem.dim
        if self.debias == "step":
            require(self.rows > d + 1, "algorithm.rows", f"must be > problem.dim + 1 ({d + 1}) for debias step "
                    "(mu = (m - d - 1) / m > 0)", self.rows)
        elif getattr(scenario.problem, "lam", 0.0) == 0:
            require(self.rows >= d, "algorithm.rows", f"must be >= problem.dim ({d}) when problem.lam is 0 (an "
                    "invertible sketched Hessian)", self.rows)
        if self.debias == "surrogate" and self.d_lambda is not None:
            require(self.d_lambda < self.rows, "algorithm.d_lambda", f"must be < algorithm.rows ({self.rows})",
                    self.d_lambda)

    def bind(self, problem, n_workers=None):
        A, _, lam = data(problem)
        n, d = A.shape
        require(self.rows <= n, "algorithm.rows", f"must be <= the problem's {n} samples", self.rows)
        if self.debias != "surrogate":
            return self
        d_lam = self.d_lambda
        if d_lam is None:
            d_lam = effective_dimension(singular_values(problem), n, lam)
        if not d_lam < self.rows:
            raise ParamError(f"algorithm.rows must be > the effective dimension d_lambda ({d_lam:.4g}) for debias "
                             f"surrogate, got {self.rows}")
        return replace(self, d_lambda=float(d_lam))

    def work(self, problem, n_workers):
        return self._sketch_flops(problem) + 4.0 * problem.n_samples * problem.dim

    def init(self, x0, n_workers):
        return x0, (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        SA, _ = self.sketched(problem, draw)
        _, _, lam = data(problem)
        _, lam_sketch = self.coefficients(problem.dim, lam)
        return self._ridge_solve(SA, problem.grad(snapshot), problem.n_samples, lam_sketch), worker_state

    def coefficients(self, d: int, lam: float) -> tuple[float, float]:
        """(mu, lam') of the debiasing rule for dimension d and ridge lam (``d_lambda`` resolved by ``bind``)."""
        m = self.rows
        if self.debias == "step":
            return (m - d - 1) / m, lam
        if self.debias == "surrogate":
            require(self.d_lambda is not None, "d_lambda", "must be resolved by bind(problem) first", None)
            c = 1.0 - self.d_lambda / m
            return c, lam * c
        return 1.0, lam

    def apply(self, server_state, messages, info):
        mu, _ = self.coefficients(server_state.shape[0], 0.0)
        return server_state - (self.lr * mu) * average(messages)

    def params(self, server_state):
        return server_state

    def summary(self, problem, worker_states):
        _, _, lam = data(problem)
        mu, lam_sketch = self.coefficients(problem.dim, lam)
        out = {"step_factor": mu, "sketch_lam": lam_sketch}
        if self.d_lambda is not None:
            out["d_lambda"] = self.d_lambda
        return out


__all__ = ["DEBIAS", "SKETCHES", "SketchAverage", "SketchedNewton", "effective_dimension"]
