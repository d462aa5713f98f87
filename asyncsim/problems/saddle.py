"""A strict-saddle test function: a quadratic with negative curvature plus a quartic that bounds it below."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..budget import Footprint
from ..params import require
from .base import Problem, ProblemSpec

INITS = ("stable", "random")


class StrictSaddleProblem(Problem):
    """f(x) = 1/2 x^T A x + 1/4 ||x||^4 with A = Q diag(eigenvalues) Q^T (Q = I without rotation).

    grad f(x) = A x + ||x||^2 x;  Hessian A + ||x||^2 I + 2 x x^T.  The origin is a strict saddle
    (lambda_min = -g); the minima are the points of norm sqrt(g) in the eigenspace of -g, with f* = -g^2 / 4.
    ``smoothness`` is the Lipschitz constant of grad f on the ball ||x|| <= R0: max |eigenvalue| + 3 R0^2
    (outside that ball grad f is not globally Lipschitz); ``block_smoothness`` bounds the diagonal blocks of the
    Hessian the same way, ||A_ii||_2 + 3 R0^2.  Gradients are exact (a minibatch is empty)."""

    def __init__(self, eigenvalues, Q, g: float, R0: float, init: str, init_scale: float):
        self.eigenvalues = np.array(eigenvalues, dtype=np.float64)
        self.eigenvalues.flags.writeable = False
        self.Q = None if Q is None else np.array(Q, dtype=np.float64)
        if self.Q is not None:
            self.Q.flags.writeable = False
            A = (self.Q * self.eigenvalues) @ self.Q.T
            self.A = (A + A.T) / 2
            self.A.flags.writeable = False
        self.dim = len(self.eigenvalues)
        self.g, self.R0, self.init, self.init_scale = g, R0, init, init_scale
        self.smoothness = float(np.max(np.abs(self.eigenvalues))) + 3 * R0 ** 2

    def loss(self, x):
        y = x if self.Q is None else self.Q.T @ x
        s = float(x @ x)
        return 0.5 * float(y @ (self.eigenvalues * y)) + 0.25 * s * s

    def grad(self, x, batch=None):
        _exact(batch)
        Ax = self.eigenvalues * x if self.Q is None else self.A @ x
        return Ax + float(x @ x) * x

    def partial_grad(self, x, block, batch=None):
        _exact(batch)
        Ax = self.eigenvalues[block] * x[block] if self.Q is None else self.A[block] @ x
        return Ax + float(x @ x) * x[block]

    def block_smoothness(self, bounds):
        out = np.empty(len(bounds) - 1)
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if self.Q is None:
                norm = float(np.max(np.abs(self.eigenvalues[lo:hi])))
            else:
                norm = float(np.max(np.abs(np.linalg.eigvalsh(self.A[lo:hi, lo:hi]))))
            out[i] = norm + 3 * self.R0 ** 2
        return out

    def grad_flops(self):
        return 4.0 * self.dim if self.Q is None else 2.0 * self.dim ** 2 + 3.0 * self.dim

    def sample_batches(self, rng, n_steps, batch_size):
        return np.empty((n_steps, 0))

    def initial_point(self, rng):
        """``random``: N(0, init_scale^2 I).  ``stable``: the same, with the components along the negative
        eigenspace set to zero, i.e. a point of the saddle's stable manifold (gradient descent from there converges
        to the saddle; with a rotated basis only up to rounding)."""
        z = rng.standard_normal(self.dim) * self.init_scale
        if self.init == "stable":
            z[self.eigenvalues < 0] = 0.0
        return z if self.Q is None else self.Q @ z

    @property
    def optimum(self):
        """One minimizer: sqrt(g) times the first eigenvector of -g."""
        e = np.zeros(self.dim)
        e[int(np.argmin(self.eigenvalues))] = math.sqrt(self.g)
        return e if self.Q is None else self.Q @ e

    @property
    def optimal_loss(self):
        return -self.g ** 2 / 4


def _exact(batch) -> None:
    if batch is not None and np.size(batch) != 0:
        raise ValueError(f"strict_saddle has exact gradients: a minibatch must be empty, got {np.size(batch)} entries")


@ProblemSpec.registry.register("strict_saddle")
@dataclass(frozen=True, kw_only=True)
class StrictSaddle(ProblemSpec):
    """f(x) = 1/2 x^T D x + 1/4 ||x||^4, D = diag(eigenvalues) in the standard basis, or in a random orthogonal
    basis Q (Haar, from the DATA stream) with ``rotate: true``.  ``negative`` eigenvalues equal -g, the other
    dim - negative are log-spaced from ``mu`` to ``L_pos``.  A strict saddle at 0 (lambda_min = -g), minima at
    ||x|| = sqrt(g) along the negative eigenspace, f* = -g^2 / 4.  ``R0`` (default 2 sqrt(g), so the minima are
    well inside) is the radius of the ball on which ``smoothness`` = max(g, L_pos) + 3 R0^2 holds.  x_0:
    ``init: stable`` (default) puts it on the saddle's stable manifold (zero along the negative eigenspace; plain
    gradient descent then converges to the saddle), ``random`` is N(0, init_scale^2 I)."""

    dim: int = 10
    negative: int = 1
    g: float = 1.0
    mu: float = 1.0
    L_pos: float = 1.0
    rotate: bool = False
    init: str = "stable"
    init_scale: float = 1.0
    R0: float | None = None

    def __post_init__(self):
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(1 <= self.negative <= self.dim, "negative", f"must be in [1, dim={self.dim}]", self.negative)
        require(self.g > 0, "g", "must be > 0", self.g)
        require(self.mu > 0, "mu", "must be > 0", self.mu)
        require(self.L_pos >= self.mu, "L_pos", f"must be >= mu ({self.mu})", self.L_pos)
        require(self.init in INITS, "init", f"must be one of {', '.join(INITS)}", self.init)
        require(self.init_scale > 0, "init_scale", "must be > 0", self.init_scale)
        if self.R0 is None:
            object.__setattr__(self, "R0", 2 * math.sqrt(self.g))
        require(self.R0 > 0, "R0", "must be > 0", self.R0)
        for name in ("g", "L_pos", "R0", "init_scale"):  # their squares make L and f*: keep them finite
            require(getattr(self, name) <= 1e100, name, "must be <= 1e100", getattr(self, name))

    knows_smoothness = True
    knows_block_smoothness = True
    counts_flops = True

    def memory(self):
        """The diagonal, or with ``rotate`` the dense d x d basis and its QR temporaries."""
        d = self.dim
        if self.rotate:
            return Footprint(40.0 * d * d, "problem.dim", d, f"the {d} x {d} rotation")
        return Footprint(64.0 * d, "problem.dim", d, "problem data")

    def spectrum(self) -> np.ndarray:
        """The eigenvalues: ``negative`` times -g, then dim - negative log-spaced from mu to L_pos."""
        return np.concatenate([np.full(self.negative, -self.g), np.geomspace(self.mu, self.L_pos,
                                                                               self.dim - self.negative)])

    def build(self, rng):
        Q = None
        if self.rotate:
            Q, R = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
            Q *= np.sign(np.diag(R))  # Haar-distributed orthogonal matrix
        return StrictSaddleProblem(self.spectrum(), Q, self.g, self.R0, self.init, self.init_scale)
