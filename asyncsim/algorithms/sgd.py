"""Stochastic gradient descent with a constant step, asynchronous or synchronous, optionally projected onto a box.

Also home of the box projection shared by every projected method (``project``, ``check_box``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..budget import Footprint
from ..params import require
from .base import Algorithm, average, minibatch_flops


def check_box(lower: float | None, upper: float | None) -> None:
    """Validate the box [lower, upper] (either side may be None: unbounded)."""
    if lower is not None and upper is not None:
        require(lower < upper, "upper", f"must be > lower ({lower})", upper)


def project(x: np.ndarray, lower: float | None, upper: float | None) -> np.ndarray:
    """P(x) = min(max(x, lower), upper) coordinate-wise: the Euclidean projection onto the box [lower, upper]^d
    (``lower=0``: the non-negative orthant).  Without a box, ``x`` itself is returned (bit for bit, no copy);
    otherwise a new array (the input is never modified)."""
    if lower is None and upper is None:
        return x
    return np.clip(x, lower, upper)


def descent_step(x: np.ndarray, lr: float, messages: list[np.ndarray], lower: float | None,
                 upper: float | None) -> np.ndarray:
    """x_{k+1} = P(x_k - lr * (1/m) sum_j messages[j]): the step of ``sgd`` and ``gd``."""
    return project(x - lr * average(messages), lower, upper)


@Algorithm.registry.register("sgd")
@dataclass(frozen=True, kw_only=True)
class SGD(Algorithm):
    """SGD with constant step ``lr`` and minibatches of ``batch_size``, projected onto the box [lower, upper]
    when one is given (P = identity by default).

    Asynchronous (one message per update, Recht et al. 2011; Lian et al. 2015, AsySG-con with M = 1 per worker):
        x_{k+1} = P(x_k - lr * g(x_{r_k}; B_k)),   r_k = k - tau_k the version the worker read.
    Synchronous (n messages per update, averaged in worker order):
        x_{k+1} = P(x_k - lr * (1/n) sum_i g(x_k; B_{k,i})).
    ``g(x; B)`` is the problem's minibatch gradient; ``B`` is drawn per (worker, step).  The start is P(x_0).
    """

    lr: float
    batch_size: int = 32
    lower: float | None = None
    upper: float | None = None
    vector_state = True
    compressible = True
    minibatches = True

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        check_box(self.lower, self.upper)

    def draw(self, problem, rng, n_steps):
        return problem.sample_batches(rng, n_steps, self.batch_size)

    def draw_size(self):
        """A minibatch of ``batch_size`` sample indices."""
        return Footprint(8.0 * self.batch_size, "algorithm.batch_size", self.batch_size, "minibatch indices")

    def work(self, problem, n_workers) -> float:
        """A minibatch's share of a full gradient's flops, batch_size / n_samples, for finite sums."""
        return minibatch_flops(problem, self.batch_size)

    def init(self, x0, n_workers):
        return project(x0, self.lower, self.upper), (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        return problem.grad(snapshot, draw), worker_state

    def step(self, info) -> float:
        """The step of this update (``info``: :class:`ApplyInfo`): the constant ``lr``.  Delay-aware variants
        (``algorithms.delay``) override this one rule; a step of 0 drops the update's gradients."""
        return self.lr

    def apply(self, server_state, messages, info):
        lr = self.step(info)
        if lr == 0:
            return server_state
        return descent_step(server_state, lr, messages, self.lower, self.upper)

    def params(self, server_state):
        return server_state
