"""Stochastic gradient descent with a constant step, asynchronous or synchronous."""

from __future__ import annotations

from dataclasses import dataclass

from ..params import require
from .base import Algorithm, average


@Algorithm.registry.register("sgd")
@dataclass(frozen=True, kw_only=True)
class SGD(Algorithm):
    """SGD with constant step ``lr`` and minibatches of ``batch_size``.

    Asynchronous (one message per update, Recht et al. 2011; Lian et al. 2015, AsySG-con with M = 1 per worker):
        x_{k+1} = x_k - lr * g(x_{r_k}; B_k),   r_k = k - tau_k the version the worker read.
    Synchronous (n messages per update, averaged in worker order):
        x_{k+1} = x_k - lr * (1/n) sum_i g(x_k; B_{k,i}).
    ``g(x; B)`` is the problem's minibatch gradient; ``B`` is drawn per (worker, step).
    """

    lr: float
    batch_size: int = 32

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)

    def draw(self, problem, rng, n_steps):
        return problem.sample_batches(rng, n_steps, self.batch_size)

    def init(self, x0, n_workers):
        return x0, (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        return problem.grad(snapshot, draw), worker_state

    def apply(self, server_state, messages, info):
        return server_state - self.lr * average(messages)

    def params(self, server_state):
        return server_state
