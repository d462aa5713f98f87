"""FedAsync: asynchronous federated optimization by staleness-weighted mixing of client models."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..params import require
from ..timing.protocol import Family
from .base import Algorithm, local_batches, local_draw_size, minibatch_flops

WEIGHTS = ("constant", "polynomial", "hinge")


def staleness_weight(tau: int, rule: str, a: float = 0.5, b: int = 4) -> float:
    """s(tau) of FedAsync (Xie, Koyejo and Gupta 2019, sec. 5.2), with tau = k - r >= 0 the contribution's
    staleness in server versions (0: computed on the current version): ``constant`` 1; ``polynomial``
    (tau + 1)^(-a); ``hinge`` 1 if tau <= b, else 1 / (a (tau - b) + 1)."""
    if rule == "constant":
        return 1.0
    if rule == "polynomial":
        return float((tau + 1.0) ** -a)
    if rule == "hinge":
        return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)
    raise ValueError(f"weight must be one of {', '.join(WEIGHTS)}, got {rule!r}")


@Algorithm.registry.register("fedasync")
@dataclass(frozen=True, kw_only=True)
class FedAsync(Algorithm):
    """FedAsync (Xie, Koyejo and Gupta, "Asynchronous federated optimization", arXiv:1903.03934, 2019).

    A client that read x_r takes H = ``local_steps`` SGD steps on the proximal objective
    f(y) + (rho / 2) ||y - x_r||^2, y_0 = x_r, y_{h+1} = y_h - lr (g(y_h; B_h) + rho (y_h - x_r)), and sends its model
    y = y_H.  The server mixes it in with a staleness-weighted step,

        x_{k+1} = (1 - alpha_k) x_k + alpha_k y,   alpha_k = ``alpha`` s(tau_k)   (``staleness_weight``).

    When an update holds m contributions at once (a draining server, rounds), each is weighted by its own
    staleness and the weights are divided by m:

        x_{k+1} = (1 - sum_j alpha_j / m) x_k + sum_j (alpha_j / m) y_j,

    so that m fresh models with alpha = 1 replace x by their average (FedAvg), and m = 1 is FedAsync exactly.
    (Normalizing by sum_j s(tau_j) instead would make a lone stale model weigh as much as a fresh one.)  The
    mixing is written as a convex combination, so alpha = 1 and s = 1 give x_{k+1} = y bit for bit: plain
    asynchronous model replacement.  H defaults to the protocol's ``local_steps`` (1 under ``async``)."""

    lr: float
    alpha: float = 0.6
    weight: str = "constant"
    a: float = 0.5
    b: int = 4
    rho: float = 0.0
    local_steps: int | None = None
    batch_size: int = 32
    vector_state = True
    minibatches = True

    @staticmethod
    def accepts(protocol):
        """Any protocol whose updates are whole contributions on a read version (not shared memory, whose reads
        mix versions, nor coded tasks)."""
        return protocol.family is not Family.SHARED_MEMORY and not protocol.coded

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(0 < self.alpha <= 1, "alpha", "must be in (0, 1]", self.alpha)
        require(self.weight in WEIGHTS, "weight", f"must be one of {', '.join(WEIGHTS)}", self.weight)
        require(self.a >= 0, "a", "must be >= 0", self.a)
        require(self.b >= 0, "b", "must be >= 0", self.b)
        require(self.rho >= 0, "rho", "must be >= 0", self.rho)
        require(self.local_steps is None or self.local_steps >= 1, "local_steps", "must be >= 1", self.local_steps)
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)

    def resolve(self, protocol):
        """``local_steps: null`` takes the protocol's period (1 under ``async``)."""
        return self if self.local_steps is not None else replace(self, local_steps=protocol.local_steps)

    def draw(self, problem, rng, n_steps):
        return local_batches(problem, rng, n_steps, self.local_steps or 1, self.batch_size)

    def draw_size(self):
        return local_draw_size(self.local_steps or 1, self.batch_size)

    def work(self, problem, n_workers):
        """One local step, a minibatch gradient (the protocol draws a compute time per local step)."""
        return minibatch_flops(problem, self.batch_size)

    def init(self, x0, n_workers):
        return x0, (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        y = snapshot
        for batch in draw:
            g = problem.grad(y, batch)
            if self.rho:
                g = g + self.rho * (y - snapshot)
            y = y - self.lr * g
        return y, worker_state

    def mixing(self, staleness) -> np.ndarray:
        """alpha_j / m for each contribution of an update (m of them)."""
        return np.array([self.alpha * staleness_weight(t, self.weight, self.a, self.b) for t in staleness]) \
            / len(staleness)

    def apply(self, server_state, messages, info):
        w = self.mixing(info.staleness)
        out = (1.0 - float(w.sum())) * server_state
        for wj, y in zip(w, messages):
            out = out + wj * y
        return out

    def params(self, server_state):
        return server_state
