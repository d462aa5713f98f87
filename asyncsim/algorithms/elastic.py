"""Elastic averaging: EASGD and EAMSGD (Zhang, Choromanska and LeCun, "Deep learning with Elastic Averaging SGD",
NeurIPS 2015), for the ``periodic`` protocol.

Each worker i keeps its own variable x^i; the master keeps the center x~.  Every tau local steps a worker and the
master exchange elastically, with the same moving rate alpha on both sides:

    x^i <- x^i - alpha (x^i - x~),      x~ <- x~ + alpha (x^i - x~).

How this maps onto the trace: one trace row of worker i is one communication period.  Its message is the worker's
variable x at the end of the period; when the master applies it (update k) it computes the elastic difference
d = alpha (x - x~_k) with its current center, moves x~_{k+1} = x~_k + d, and replies with x~_k, the center it used.
The worker's next row starts with its half of the same exchange, x^i <- x - d (the same d, bit for bit, computed
from the same two arrays), and then takes its tau local steps, the first gradient at x, the value read before the
exchange (the seed's algorithm box, Zhang et al. Algorithm 1).  So the exchange is atomic at the master, as in
the paper's round-robin analysis, and x^i + x~ is conserved by it.

Under ``periodic`` with ``synchronous: true`` each update holds the n workers' messages, every d uses the same
center x~_k, and x~_{k+1} = x~_k + alpha sum_i (x^i - x~_k): synchronous EASGD (Zhang et al. eq. 5-6), with
x~ the paper's center one iteration later.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..timing.protocol import Family
from ..params import require
from .base import Algorithm, local_draw_size, local_batches, minibatch_flops, total


class ElasticState(NamedTuple):
    """The master's state: the center x~ and, per worker, the center its last exchange used (None before its
    first exchange)."""

    center: np.ndarray
    used: tuple


@Algorithm.registry.register("easgd")
@dataclass(frozen=True, kw_only=True)
class EASGD(Algorithm):
    """Asynchronous (or, under a synchronous periodic protocol, synchronous) EASGD with communication period
    tau = ``local_steps`` (default: the protocol's) and local steps

        v <- delta v - lr g(x + delta v; B),   x^i <- x^i + v      (delta = ``momentum``; 0 for EASGD: plain SGD)

    after the elastic exchange x^i <- x^i - alpha (x^i - x~), x~ <- x~ + alpha (x^i - x~) of each period (module
    docstring).  Defaults as in Zhang, Choromanska and LeCun (2015): alpha = beta / (p tau) with beta = 0.9 and
    p the number of workers (``alpha`` overrides it); ``lr`` has no default (the paper tunes it per task).  The
    reported parameters are the center x~; the workers' variables are in the replay's ``worker_states``.
    With p = 1 and alpha = 0 the worker's variable follows plain ``sgd`` bit for bit.
    """

    lr: float
    local_steps: int | None = None
    alpha: float | None = None
    beta: float = 0.9
    momentum: float = 0.0
    batch_size: int = 32
    minibatches = True

    @staticmethod
    def accepts(protocol):
        """Periodic exchanges (not FedBuff's buffer: a client's exchange is answered with the center it used)."""
        return protocol.takes_local_steps and protocol.family is not Family.BUFFERED

    def resolve(self, protocol):
        """``local_steps: null`` takes the protocol's period."""
        return self if self.local_steps is not None else replace(self, local_steps=protocol.local_steps)

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.local_steps is None or self.local_steps >= 1, "local_steps", "must be >= 1", self.local_steps)
        require(self.alpha is None or 0 <= self.alpha <= 1, "alpha", "must be in [0, 1]", self.alpha)
        require(0 < self.beta <= 1, "beta", "must be in (0, 1]", self.beta)
        require(0 <= self.momentum < 1, "momentum", "must be in [0, 1)", self.momentum)
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)

    def bind(self, problem, n_workers=None):
        require(self.local_steps is not None, "local_steps", "must be given (or taken from protocol.local_steps)",
                None)
        if self.alpha is not None or n_workers is None:
            return self
        return replace(self, alpha=self.beta / (n_workers * self.local_steps))

    def draw(self, problem, rng, n_steps):
        return local_batches(problem, rng, n_steps, self.local_steps, self.batch_size)

    def draw_size(self):
        """``local_steps`` minibatches of ``batch_size`` sample indices."""
        return local_draw_size(self.local_steps or 1, self.batch_size)

    def work(self, problem, n_workers):
        """One local step, a minibatch gradient (the periodic protocol draws a compute time per local step)."""
        return minibatch_flops(problem, self.batch_size)

    def memory(self, problem, workers, vectors_per_worker=4.0):
        """Each worker also keeps its variable x^i and its momentum v."""
        return super().memory(problem, workers, vectors_per_worker)

    def elastic(self, x: np.ndarray, center: np.ndarray) -> np.ndarray:
        """d = alpha (x - x~): the elastic difference of one exchange (both sides use this one function)."""
        return self.alpha * (x - center)

    def init(self, x0, n_workers):
        require(self.alpha is not None, "alpha", "must be given or resolved by bind(problem, n_workers)", None)
        return ElasticState(x0, (None,) * n_workers), (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        """One period: the worker's half of the last exchange, then tau local steps (the first at x)."""
        if worker_state is None:  # first period: x^i = x~_0, and the exchange moves nothing
            x, v = snapshot, np.zeros_like(snapshot)
        else:
            x, v = worker_state
        y = x - self.elastic(x, snapshot)
        for batch in draw:
            v = self.momentum * v - self.lr * problem.grad(x + self.momentum * v, batch)
            y = y + v
            x = y
        return y, (y, v)

    def apply(self, server_state, messages, info):
        """x~_{k+1} = x~_k + sum_j alpha (x^(j) - x~_k), summed in worker order; record x~_k for each worker."""
        center, used = server_state.center, list(server_state.used)
        for w in info.workers:
            used[w] = center
        return ElasticState(center + total([self.elastic(x, center) for x in messages]), tuple(used))

    def reply(self, server_state, worker):
        """The center the worker's last exchange used (the current center before its first exchange)."""
        used = server_state.used[worker]
        return server_state.center if used is None else used

    def params(self, server_state):
        return server_state.center


@Algorithm.registry.register("eamsgd")
@dataclass(frozen=True, kw_only=True)
class EAMSGD(EASGD):
    """EAMSGD (Zhang et al. 2015, Algorithm 2): EASGD whose local steps use Nesterov momentum,
    v <- delta v - lr g(x + delta v), x^i <- x^i + v, with delta = ``momentum`` = 0.99 by default (the paper's)."""

    momentum: float = 0.99
