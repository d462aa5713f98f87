"""Full-gradient descent (optionally projected), asynchronous or synchronous."""

from __future__ import annotations

from dataclasses import dataclass

from ..params import require
from .base import Algorithm
from .sgd import check_box, descent_step, project


@Algorithm.registry.register("gd")
@dataclass(frozen=True, kw_only=True)
class GD(Algorithm):
    """Gradient descent with constant step ``lr``, projected onto the box [lower, upper] when one is given
    (projected GD, e.g. ``lower: 0`` for non-negative matrix factorization):

        x_{k+1} = P(x_k - lr * (1/m) sum_j grad f(x_{r_j})),

    each message the full gradient (no minibatch) on the parameters version r_j the worker read; asynchronously
    m = 1 (delayed gradient descent), in synchronous rounds the m messages are averaged in worker order.  The step
    is ``sgd``'s (``descent_step``); the start is P(x_0).
    """

    lr: float
    vector_state = True
    compressible = True
    lower: float | None = None
    upper: float | None = None

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        check_box(self.lower, self.upper)

    def draw(self, problem, rng, n_steps):
        return [None] * n_steps  # no randomness: the full gradient

    def init(self, x0, n_workers):
        return project(x0, self.lower, self.upper), (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        return problem.grad(snapshot), worker_state

    def apply(self, server_state, messages, info):
        return descent_step(server_state, self.lr, messages, self.lower, self.upper)

    def params(self, server_state):
        return server_state
