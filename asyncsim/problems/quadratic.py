"""A quadratic with a chosen spectrum and optional gradient noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..budget import Footprint
from ..params import require
from .base import Problem, ProblemSpec


class QuadraticProblem(Problem):
    """f(x) = 1/2 (x - x*)^T H (x - x*), H = Q diag(eigenvalues) Q^T; f* = 0.

    A stochastic gradient is grad f(x) + xi with xi ~ N(0, noise^2 / batch_size I): a minibatch here is the
    step's noise vector (empty when noise = 0, so that ``grad(x, batch)`` is then exact)."""

    def __init__(self, H, x_star, noise):
        self.H = np.array(H, dtype=np.float64)
        self.x_star = np.array(x_star, dtype=np.float64)
        self.H.flags.writeable = self.x_star.flags.writeable = False
        self.noise = noise
        self.dim = len(self.x_star)
        self.smoothness = float(np.linalg.eigvalsh(self.H)[-1])
        d = np.diagonal(self.H)  # a diagonal H multiplies entrywise: coordinates never mix, even when some overflow
        self._diagonal = d if np.array_equal(self.H, np.diag(d)) else None

    def _hessian_times(self, e):
        return self.H @ e if self._diagonal is None else self._diagonal * e

    def loss(self, x):
        e = x - self.x_star
        return 0.5 * float(e @ self._hessian_times(e))

    def grad(self, x, batch=None):
        g = self._hessian_times(x - self.x_star)
        return g if batch is None or batch.size == 0 else g + batch

    def grad_flops(self):
        """2 d^2: the product H (x - x*)."""
        return 2.0 * self.dim ** 2

    def linear_gradient(self):
        """grad f(x) = H x - H x*."""
        return self.H, self.H @ self.x_star

    def sample_batches(self, rng, n_steps, batch_size):
        if self.noise == 0:
            return np.empty((n_steps, 0))
        return rng.standard_normal((n_steps, self.dim)) * (self.noise / np.sqrt(batch_size))

    @property
    def optimum(self):
        return self.x_star


@ProblemSpec.registry.register("quadratic")
@dataclass(frozen=True, kw_only=True)
class Quadratic(ProblemSpec):
    """Quadratic with eigenvalues log-spaced from ``mu`` to ``L`` (or exactly ``eigenvalues`` when given), a random
    orthogonal eigenbasis Q and a random optimum x* ~ N(0, I); gradient noise of standard deviation ``noise``."""

    dim: int = 10
    mu: float = 0.01
    L: float = 1.0
    eigenvalues: tuple[float, ...] | None = None
    noise: float = 0.0

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(self.mu > 0, "mu", "must be > 0", self.mu)
        require(self.L >= self.mu, "L", f"must be >= mu ({self.mu})", self.L)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)
        if self.eigenvalues is not None:
            eig = tuple(self.eigenvalues)
            object.__setattr__(self, "eigenvalues", eig)
            require(len(eig) == self.dim, "eigenvalues", f"must have dim ({self.dim}) entries", len(eig))
            require(min(eig) > 0, "eigenvalues", "must all be > 0", min(eig))

    knows_smoothness = True
    linear_gradient = True
    counts_flops = True

    def memory(self):
        """The dense d x d Hessian, its random basis and the QR and symmetrization temporaries."""
        return Footprint(40.0 * self.dim ** 2, "problem.dim", self.dim, f"the {self.dim} x {self.dim} Hessian")

    def spectrum(self) -> np.ndarray:
        if self.eigenvalues is not None:
            return np.array(self.eigenvalues, dtype=np.float64)
        return np.geomspace(self.mu, self.L, self.dim)

    def build(self, rng):
        Q, R = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
        Q *= np.sign(np.diag(R))  # Haar-distributed orthogonal matrix
        H = (Q * self.spectrum()) @ Q.T
        H = (H + H.T) / 2
        return QuadraticProblem(H, rng.standard_normal(self.dim), self.noise)
