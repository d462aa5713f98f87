"""Gradient descent on coded tasks: the full gradient decoded each round from the tasks that finished."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..params import kind, require
from ..timing.codes import Code, Uncoded
from .base import Algorithm, step_flops
from .piag import Shard
from .sgd import check_box, project


@Algorithm.registry.register("coded_gd")
@dataclass(frozen=True, kw_only=True)
class CodedGD(Algorithm):
    """Coded gradient descent (Tandon, Lei, Dimakis and Karampatziakis, "Gradient coding", ICML 2017; Lee et al.
    2018 for MDS-coded linear computations).  The samples are split into the code's P contiguous parts with
    gradient sums G_j(x) = sum_{s in part j} grad f_s(x); worker i's task is t_i = sum_j B[i, j] G_j(x_k) (B the
    code's encoding matrix); the round's finished tasks F decode the full gradient with the code's decoding vector
    a (a^T B_F = 1^T), and

        x_{k+1} = P(x_k - lr (1/N) sum_{i in F} a_i t_i) = P(x_k - lr grad f(x_k)),

    gradient descent whatever the straggler pattern (to rounding).  Under ``coded`` the code is the protocol's (a
    gradient code: a task computes its parts' gradients from the data, so its time is its load of a step); under
    ``sync`` it is ``uncoded``.  P is the projection onto the box [lower, upper]."""

    lr: float
    lower: float | None = None
    upper: float | None = None
    code: Code | None = None
    workers: int | None = None
    samples: int | None = None
    vector_state = True

    @staticmethod
    def accepts(protocol):
        """Coded rounds, or rounds of every worker (uncoded)."""
        return (protocol.coded or protocol.every_worker) and not protocol.takes_local_steps

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        check_box(self.lower, self.upper)

    def resolve(self, protocol):
        return replace(self, code=protocol.code if protocol.code is not None else Uncoded())

    def check(self, scenario):
        require(self.code.gradient_code, "protocol.code.kind", "must be a gradient code (uncoded, repetition, "
                "fractional_repetition, cyclic) for algorithm coded_gd: an mds task's load 1/k assumes data encoded "
                "in advance, which a nonlinear loss's gradient cannot use", kind(self.code))
        n_samples = getattr(scenario.problem, "n_samples", None)
        require(n_samples is not None, "problem.kind", "must be a finite sum of samples (split into the code's "
                "parts) for algorithm coded_gd", kind(scenario.problem))
        parts = self.code.matrix(scenario.cluster.workers).shape[1]
        require(n_samples >= parts, "problem.n_samples", f"must be >= the code's {parts} parts", n_samples)

    def bind(self, problem, n_workers=None):
        require(n_workers is not None, "workers", "must be known (the code's size)", None)
        return replace(self, code=self.code or Uncoded(), workers=int(n_workers), samples=int(problem.n_samples))

    def work(self, problem, n_workers) -> float:
        """A task's load of a full gradient's flops."""
        return step_flops(problem, (self.code or Uncoded()).load(n_workers))

    def draw(self, problem, rng, n_steps):
        return [None] * n_steps  # no randomness: whole parts

    def init(self, x0, n_workers):
        return project(x0, self.lower, self.upper), tuple(Shard(w, n_workers) for w in range(n_workers))

    def local(self, snapshot, worker_state, problem, draw):
        B = self.code.matrix(worker_state.n_workers)
        P, N = B.shape[1], problem.n_samples
        task = np.zeros_like(snapshot)
        for j in np.flatnonzero(B[worker_state.worker]):
            lo, hi = j * N // P, (j + 1) * N // P
            task = task + B[worker_state.worker, j] * ((hi - lo) * problem.grad(snapshot, slice(lo, hi)))
        return task, worker_state

    def apply(self, server_state, messages, info):
        a = self.code.decoding(info.workers, self.workers)
        total = a[0] * messages[0]
        for coefficient, message in zip(a[1:], messages[1:]):
            total = total + coefficient * message
        return project(server_state - self.lr * (total / self.samples), self.lower, self.upper)

    def params(self, server_state):
        return server_state
