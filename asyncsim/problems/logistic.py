"""Binary logistic regression on synthetic data, with an l2 penalty."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import expit

from ..budget import Footprint
from ..params import require
from .base import FiniteSum, ProblemSpec


class LogisticProblem(FiniteSum):
    """f(x) = (1/n) sum_i log(1 + exp(-y_i a_i^T x)) + (l2/2) ||x||^2 with labels y_i in {-1, +1};
    grad over B: -(1/|B|) A_B^T (y_B * sigmoid(-y_B * A_B x)) + l2 x.  L = ||A||_2^2 / (4n) + l2.

    With l2 > 0 the problem is strongly convex and the optimum is found by Newton's method to a gradient norm of
    1e-12, with backtracking while the predicted decrease is above the loss's rounding (below it, full steps); with
    l2 = 0 it may not exist and ``optimum`` is None."""

    def __init__(self, A, y, l2):
        super().__init__(A, y)
        self.labels = self.y
        self.l2 = l2

    def loss(self, x):
        margins = self.y * (self.A @ x)
        return float(np.mean(np.logaddexp(0.0, -margins))) + 0.5 * self.l2 * float(x @ x)

    def grad(self, x, batch=None):
        A, y = self._rows(batch)
        return -(A.T @ (y * expit(-y * (A @ x)))) / len(y) + self.l2 * x

    @cached_property
    def optimum(self):
        if self.l2 <= 0:
            return None
        x = np.zeros(self.dim)
        for _ in range(100):
            g = self.grad(x)
            if np.linalg.norm(g) < 1e-12:
                return x
            p = expit(self.y * (self.A @ x))
            H = (self.A.T * (p * (1 - p))) @ self.A / self.n_samples + self.l2 * np.eye(self.dim)
            step = np.linalg.solve(H, g)
            t, f0 = 1.0, self.loss(x)
            if float(g @ step) > 1e-13 * max(1.0, abs(f0)):  # backtrack while the decrease is above rounding;
                while self.loss(x - t * step) > f0 - 0.25 * t * float(g @ step) and t > 1e-10:  # near the
                    t /= 2  # optimum the loss cannot tell steps apart, and full Newton steps converge quadratically
            x = x - t * step
        raise RuntimeError("Newton's method did not reach a gradient norm of 1e-12 in 100 iterations")

    @property
    def smoothness(self) -> float:
        return self.data_norm2 / 4 + self.l2


@ProblemSpec.registry.register("logistic")
@dataclass(frozen=True, kw_only=True)
class Logistic(ProblemSpec):
    """Synthetic logistic regression: a_i ~ N(0, I/dim), x_true ~ N(0, I) scaled to norm ``signal``,
    P(y_i = +1) = sigmoid(a_i^T x_true)."""

    n_samples: int = 1000
    dim: int = 10
    l2: float = 1e-3
    signal: float = 5.0

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(self.n_samples >= 1, "n_samples", "must be >= 1", self.n_samples)
        require(self.l2 >= 0, "l2", "must be >= 0", self.l2)
        require(self.signal >= 0, "signal", "must be >= 0", self.signal)

    knows_smoothness = True

    @property
    def labelled_samples(self):
        return self.n_samples

    def memory(self):
        """A (n x d) three times over: the matrix, and the copy and workspace of its 2-norm (an SVD)."""
        return Footprint(24.0 * self.n_samples * self.dim, "problem.n_samples", self.n_samples,
                         f"the {self.n_samples} x {self.dim} data matrix")

    def build(self, rng):
        A = rng.standard_normal((self.n_samples, self.dim)) / np.sqrt(self.dim)
        x_true = rng.standard_normal(self.dim)
        x_true *= self.signal / np.linalg.norm(x_true)
        y = np.where(rng.random(self.n_samples) < expit(A @ x_true), 1.0, -1.0)
        return LogisticProblem(A, y, self.l2)
