"""Problem interface.

A *spec* (frozen dataclass, registered under a YAML ``kind``) holds the parameters and is validated when a scenario
is loaded; ``spec.build(rng)`` makes the *problem* (data and methods) from the DATA stream.  A problem exposes
``dim``, ``loss(x)``, ``grad(x, batch=None)`` (full gradient when ``batch`` is None), ``sample_batches(rng, n, b)``
(the minibatches of n steps, stacked), ``initial_point(rng)``, and, where known, ``optimum`` and ``optimal_loss``.
Gradients are checked against finite differences in the tests.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from ..params import Registry


class ProblemSpec:
    """Base class of problem specs; ``ProblemSpec.registry`` maps YAML ``kind`` names to specs."""

    registry = Registry("problem")

    def build(self, rng: np.random.Generator) -> "Problem":
        raise NotImplementedError


class Problem:
    """An objective f with data.  Subclasses set ``dim`` and implement ``loss``, ``grad`` and ``sample_batches``."""

    dim: int

    def loss(self, x: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, x: np.ndarray, batch=None) -> np.ndarray:
        raise NotImplementedError

    def sample_batches(self, rng: np.random.Generator, n_steps: int, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def initial_point(self, rng: np.random.Generator) -> np.ndarray:
        """x_0 = 0 (the INIT stream is unused by the problems that start at the origin)."""
        return np.zeros(self.dim)

    @property
    def optimum(self) -> np.ndarray | None:
        return None

    @property
    def optimal_loss(self) -> float | None:
        x = self.optimum
        return None if x is None else self.loss(x)


class FiniteSum(Problem):
    """f(x) = (1/n) sum_i f_i(x) over n samples (rows of ``A``, targets ``y``); a minibatch is a vector of sample
    indices drawn uniformly with replacement, and ``grad(x, idx)`` averages the per-sample gradients over it."""

    def __init__(self, A: np.ndarray, y: np.ndarray):
        self.A = np.asarray(A, dtype=np.float64)
        self.y = np.asarray(y, dtype=np.float64)
        self.A.flags.writeable = False
        self.y.flags.writeable = False
        self.n_samples, self.dim = self.A.shape

    def sample_batches(self, rng, n_steps, batch_size):
        return rng.integers(0, self.n_samples, (n_steps, batch_size))

    def _rows(self, batch):
        return (self.A, self.y) if batch is None else (self.A[batch], self.y[batch])

    @cached_property
    def data_norm2(self) -> float:
        """||A||_2^2 / n, the curvature scale of the data (largest eigenvalue of A^T A / n)."""
        return float(np.linalg.norm(self.A, 2) ** 2 / self.n_samples)
