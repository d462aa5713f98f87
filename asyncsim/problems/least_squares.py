"""Least squares on synthetic Gaussian data with a known optimum."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..budget import Footprint
from ..params import require
from .base import FiniteSum, ProblemSpec


class LeastSquaresProblem(FiniteSum):
    """f(x) = 1/(2n) ||A x - y||^2;  grad over a minibatch B: (1/|B|) A_B^T (A_B x - y_B).

    The optimum x* = argmin f is the least-squares solution (``numpy.linalg.lstsq``); L = ||A||_2^2 / n."""

    def loss(self, x):
        r = self.A @ x - self.y
        return 0.5 * float(r @ r) / self.n_samples

    def grad(self, x, batch=None):
        A, y = self._rows(batch)
        return A.T @ (A @ x - y) / len(y)

    def linear_gradient(self):
        """grad f(x) = (A^T A / n) x - A^T y / n."""
        return self.A.T @ self.A / self.n_samples, self.A.T @ self.y / self.n_samples

    def grad_flops(self):
        """4 n d: the products A x and A^T r, 2 n d each."""
        return 4.0 * self.A.size

    @cached_property
    def optimum(self):
        return np.linalg.lstsq(self.A, self.y, rcond=None)[0]

    @property
    def smoothness(self) -> float:
        return self.data_norm2


@ProblemSpec.registry.register("least_squares")
@dataclass(frozen=True, kw_only=True)
class LeastSquares(ProblemSpec):
    """Synthetic least squares: A (n_samples x dim) with i.i.d. N(0, 1) entries, x_true ~ N(0, I),
    y = A x_true + noise * N(0, I)."""

    n_samples: int = 1000
    dim: int = 10
    noise: float = 0.1

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(self.n_samples >= self.dim, "n_samples", f"must be >= dim ({self.dim}) for a unique optimum", self.n_samples)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)

    knows_smoothness = True
    linear_gradient = True
    counts_flops = True

    def memory(self):
        """A (n x d) three times over: the matrix, and the copy and workspace of its 2-norm (an SVD)."""
        return Footprint(24.0 * self.n_samples * self.dim, "problem.n_samples", self.n_samples,
                         f"the {self.n_samples} x {self.dim} data matrix")

    def build(self, rng):
        A = rng.standard_normal((self.n_samples, self.dim))
        x_true = rng.standard_normal(self.dim)
        y = A @ x_true + self.noise * rng.standard_normal(self.n_samples)
        return LeastSquaresProblem(A, y)
