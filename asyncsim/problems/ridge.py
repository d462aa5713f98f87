"""Tall ridge regression with a chosen spectrum and a chosen row coherence, the test bed of distributed sketching
(Bartan and Pilanci; Derezinski, Bartan, Pilanci and Mahoney 2020): leverage scores concentrated on a few rows make
uniform row sampling miss them, which leverage-score sampling does not."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..budget import Footprint
from ..params import require
from .base import FiniteSum, ProblemSpec


class RidgeProblem(FiniteSum):
    """f(x) = 1/(2n) ||A x - b||^2 + (lam/2) ||x||^2;  grad over a minibatch B: (1/|B|) A_B^T (A_B x - b_B) + lam x.

    x* = (A^T A / n + lam I)^{-1} A^T b / n;  L = sigma_max(A)^2 / n + lam.  ``leverage`` holds the rows' leverage
    scores l_i = ||U_i||^2 of A = U S V^T, known from the construction (they sum to d)."""

    def __init__(self, A, b, lam, leverage, singular_values):
        super().__init__(A, b)
        self.lam = lam
        self.leverage = leverage
        self.singular_values = singular_values
        self.leverage.flags.writeable = False
        self.singular_values.flags.writeable = False

    def loss(self, x):
        r = self.A @ x - self.y
        return 0.5 * float(r @ r) / self.n_samples + 0.5 * self.lam * float(x @ x)

    def grad(self, x, batch=None):
        A, b = self._rows(batch)
        return A.T @ (A @ x - b) / len(b) + self.lam * x

    def linear_gradient(self):
        """grad f(x) = (A^T A / n + lam I) x - A^T b / n."""
        n = self.n_samples
        return self.A.T @ self.A / n + self.lam * np.eye(self.dim), self.A.T @ self.y / n

    def grad_flops(self):
        """4 n d + 2 d: the products A x and A^T r, 2 n d each, and the ridge term."""
        return 4.0 * self.A.size + 2.0 * self.dim

    @cached_property
    def optimum(self):
        H = self.A.T @ self.A / self.n_samples + self.lam * np.eye(self.dim)
        return np.linalg.solve(H, self.A.T @ self.y / self.n_samples)

    @property
    def smoothness(self) -> float:
        return float(self.singular_values.max()) ** 2 / self.n_samples + self.lam


@ProblemSpec.registry.register("ridge")
@dataclass(frozen=True, kw_only=True)
class Ridge(ProblemSpec):
    """A = U diag(s) V^T (n_samples x dim) with singular values s log-spaced from sqrt(n_samples) down to
    sqrt(n_samples) / ``condition``, V a random rotation, and U with orthonormal columns whose first ``dim`` rows
    carry a fraction ``coherence`` of every column: U = [sqrt(c) I ; sqrt(1 - c) Q], Q random with orthonormal
    columns.  Those rows have leverage c each and the others share (1 - c) dim, so for c near 1 the data's
    information sits in dim rows out of n_samples; c = 0 takes U random over all rows (leverage about d / n
    each).  b = A x_true + ``noise`` N(0, I), x_true ~ N(0, I); ridge
    parameter ``lam`` >= 0."""

    n_samples: int = 2000
    dim: int = 20
    lam: float = 1e-3
    condition: float = 10.0
    coherence: float = 0.0
    noise: float = 0.1

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(self.n_samples >= 2 * self.dim, "n_samples", f"must be >= 2 dim ({2 * self.dim}): a tall matrix",
                self.n_samples)
        require(self.lam >= 0, "lam", "must be >= 0", self.lam)
        require(1 <= self.condition <= 1e8, "condition", "must be in [1, 1e8]", self.condition)
        require(0 <= self.coherence < 1, "coherence", "must be in [0, 1)", self.coherence)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)

    knows_smoothness = True
    linear_gradient = True
    counts_flops = True

    def memory(self):
        """A (n x d), and the random orthonormal factor and workspace of its construction."""
        return Footprint(32.0 * self.n_samples * self.dim, "problem.n_samples", self.n_samples,
                         f"the {self.n_samples} x {self.dim} data matrix")

    def build(self, rng):
        n, d, c = self.n_samples, self.dim, self.coherence
        if c == 0:  # incoherent: a random orthonormal basis over all the rows
            U, _ = np.linalg.qr(rng.standard_normal((n, d)))
        else:
            Q, _ = np.linalg.qr(rng.standard_normal((n - d, d)))
            U = np.vstack([np.sqrt(c) * np.eye(d), np.sqrt(1 - c) * Q])
        V, _ = np.linalg.qr(rng.standard_normal((d, d)))
        s = np.sqrt(n) * np.geomspace(1.0, 1.0 / self.condition, d)
        A = (U * s) @ V.T
        x_true = rng.standard_normal(d)
        b = A @ x_true + self.noise * rng.standard_normal(n)
        return RidgeProblem(A, b, self.lam, np.einsum("ij,ij->i", U, U), s)
