"""Problem interface.

A *spec* (frozen dataclass, registered under a YAML ``kind``) holds the parameters and is validated when a scenario
is loaded; ``spec.build(rng)`` makes the *problem* (data and methods) from the DATA stream.  A spec also says, before
any data exist, its ``dim``, about how much memory the problem will hold (``memory()``, for the run's budget) and
what the built problem will know (``knows_smoothness``, ``knows_block_smoothness``, ``counts_flops``), so that a
scenario can be checked without building it.  A problem exposes
``dim``, ``loss(x)``, ``grad(x, batch=None)`` (full gradient when ``batch`` is None), ``partial_grad(x, block, batch)``
(the gradient restricted to a contiguous block of coordinates), ``sample_batches(rng, n, b)`` (the minibatches of n
steps, stacked), ``initial_point(rng)``, and, where known, ``optimum``, ``optimal_loss``, ``smoothness`` (L),
``block_smoothness(bounds)`` (L_i per block), ``grad_flops()`` and ``metrics(x)`` (extra recorded columns).  Gradients are checked against finite differences
in the tests.
"""

from __future__ import annotations

from functools import cached_property
from typing import ClassVar

import numpy as np

from ..budget import Footprint
from ..params import Registry


class ProblemSpec:
    """Base class of problem specs; ``ProblemSpec.registry`` maps YAML ``kind`` names to specs.  A spec has a
    ``dim`` (the number of parameters) and builds the problem with ``build(rng)``."""

    registry = Registry("problem")
    knows_smoothness: ClassVar[bool] = False
    """True when the built problem knows L (``Problem.smoothness`` is not None)."""
    knows_block_smoothness: ClassVar[bool] = False
    """True when the built problem knows the block constants L_i (``Problem.block_smoothness``)."""
    counts_flops: ClassVar[bool] = False
    """True when the built problem counts its gradient's flops (``Problem.grad_flops``)."""
    linear_gradient: ClassVar[bool] = False
    """True when the built problem's gradient is linear, grad f(x) = M x - c (``Problem.linear_gradient``)."""
    recorded: ClassVar[tuple[str, ...]] = ()
    """The names of the extra metrics the problem records (``Problem.metrics``)."""

    @property
    def labelled_samples(self) -> int | None:
        """The training samples of a classification problem (which a ``split`` shares out; ``Problem.labels``), or
        None for other problems (default)."""
        return None

    def build(self, rng: np.random.Generator) -> "Problem":
        raise NotImplementedError

    def memory(self) -> Footprint:
        """About the bytes the built problem holds, with the field that sizes it (default: a few vectors of dim)."""
        dim = getattr(self, "dim", 0)
        return Footprint(32.0 * dim, "problem.dim", dim, "problem data")


def block_bounds(dim: int, blocks: int) -> np.ndarray:
    """Edges of ``blocks`` contiguous coordinate blocks: block b is coordinates [e[b], e[b+1]) with
    e[b] = floor(b * dim / blocks), so block sizes differ by at most one."""
    if not 1 <= blocks <= dim:
        raise ValueError(f"blocks must be in [1, dim={dim}], got {blocks}")
    return (np.arange(blocks + 1) * dim) // blocks


class Problem:
    """An objective f with data.  Subclasses set ``dim`` and implement ``loss``, ``grad`` and ``sample_batches``."""

    dim: int
    smoothness: float | None = None
    """L, the Lipschitz constant of grad f, where known."""
    labels: np.ndarray | None = None
    """The training samples' class labels, for a classification problem (else None)."""
    shards: tuple | None = None
    """Each worker's training samples (sorted indices), set by ``build`` from the scenario's ``split``; None: every
    worker draws from all of them."""

    def loss(self, x: np.ndarray) -> float:
        raise NotImplementedError

    def grad(self, x: np.ndarray, batch=None) -> np.ndarray:
        raise NotImplementedError

    def partial_grad(self, x: np.ndarray, block: slice, batch=None) -> np.ndarray:
        """grad_i f(x): the gradient restricted to the coordinates ``block`` (a slice).  Default: the full gradient,
        sliced; problems override it with a cheaper computation."""
        return self.grad(x, batch)[block]

    def block_smoothness(self, bounds: np.ndarray) -> np.ndarray | None:
        """L_i for the blocks [bounds[i], bounds[i+1]): the Lipschitz constant of grad_i f along block i (Liu and
        Wright 2015), or None when unknown."""
        return None

    def metrics(self, x: np.ndarray) -> dict[str, float]:
        """Extra metrics recorded with the loss at each recorded version (e.g. accuracies); default none."""
        return {}

    def grad_flops(self) -> float | None:
        """Floating-point operations of one full gradient (for ``cluster.flops_per_second``), or None."""
        return None

    def linear_gradient(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(M, c) with grad f(x) = M x - c for every x, when f is a quadratic (a gradient is then one matrix-vector
        product, which an MDS code can split); None otherwise."""
        return None

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
