"""PIAG and Async-BCD with the step-size policies of Wu, Magnusson, Feyzmahdavian and Johansson ("Delay-adaptive
step-sizes for asynchronous learning", ICML 2022).

Both methods take a step gamma_k that depends on the delay tau_k of iteration k, through one rule (``window_step``)
built on the principle of Wu et al.'s delay-adaptive policies: the steps taken within the delay window of an
iteration add up to at most a budget,

    sum_{t = k - tau_k}^{k} gamma_t <= budget,

so that no bound on the delays is needed in advance.  The policies:

- ``constant``: gamma_k = lr (the window condition then needs lr (tau_max + 1) <= budget, that is, the largest
  delay in advance);
- ``clip``: gamma_k = max(0, min(lr, budget - sum_{t=k-tau_k}^{k-1} gamma_t)): the largest step in [0, lr] within
  the budget, 0 when the earlier steps of the window already use it up (``lr`` defaults to the budget);
- ``hold``: gamma_k = lr if sum_{t=k-tau_k}^{k-1} gamma_t + lr <= budget, else 0 (the update refreshes PIAG's
  gradient table, or Async-BCD's block is left as it is).

A positive step is thus always within the budget of its own window (a later, longer window may still hold more,
when a stale update arrives after fresh ones took full steps).  ``budget`` defaults to 1 / L.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..params import kind, require
from ..timing.protocol import Family
from .base import Algorithm, total
from .coordinate import CoordinateSteps
from .delay import asynchronous
from .sgd import check_box, project

POLICIES = ("constant", "clip", "hold")


class History(NamedTuple):
    """The steps gamma_0, ..., gamma_{k-1} taken so far: the first ``length`` entries of an append-only list that
    successive states share.  A state never reads past its own length, so appending leaves every earlier state as
    it was; appending to a state that is not the newest copies its prefix first."""

    values: list
    length: int

    def window(self, start: int) -> float:
        """sum_{t=start}^{k-1} gamma_t (numpy's pairwise sum of the slice)."""
        return float(np.sum(self.values[start:self.length]))

    def append(self, gamma: float) -> "History":
        values = self.values if len(self.values) == self.length else self.values[:self.length]
        values.append(gamma)
        return History(values, self.length + 1)


def window_step(policy: str, lr: float, budget: float, history: History, tau: int) -> float:
    """gamma_k for iteration k = ``history.length`` with delay ``tau`` (see the module docstring)."""
    if policy == "constant":
        return lr
    used = history.window(history.length - tau)
    if policy == "clip":
        return max(0.0, min(lr, budget - used))
    return lr if used + lr <= budget else 0.0


@dataclass(frozen=True, kw_only=True)
class WindowSteps:
    """The step-size fields PIAG and Async-BCD share: ``policy``, ``lr`` (the step, or the largest step of an
    adaptive policy; default there: the budget) and ``budget`` (default 1 / L)."""

    policy: str = "constant"
    lr: float | None = None
    budget: float | None = None

    def _check_steps(self):
        require(self.policy in POLICIES, "policy", f"must be one of {', '.join(POLICIES)}", self.policy)
        require(self.lr is not None or self.policy != "constant", "lr", "must be given for policy constant", None)
        require(self.lr is None or self.lr > 0, "lr", "must be > 0 (or null with an adaptive policy: the budget)",
                self.lr)
        require(self.budget is None or self.budget > 0, "budget", "must be > 0 (or null: 1 / L)", self.budget)

    def _check_budget(self, spec):
        require(self.policy == "constant" or self.budget is not None or spec.knows_smoothness, "algorithm.budget",
                f"must be given for policy {self.policy}: problem {kind(spec)} has no known smoothness constant "
                "(the default is 1 / L)", self.budget)

    def _bind_budget(self, problem):
        if self.policy == "constant":
            return self
        budget = self.budget
        if budget is None:
            L = problem.smoothness
            require(L is not None and L > 0, "budget", f"must be given: {type(problem).__name__} has no known "
                    "smoothness constant (the default is 1 / L)", None)
            budget = 1.0 / float(L)
        return replace(self, budget=budget, lr=budget if self.lr is None else self.lr)

    def _step(self, history: History, tau: int) -> float:
        return window_step(self.policy, self.lr, self.budget, history, tau)

    recorded = ("step_size",)

    def metrics(self, server_state):
        """The step of the last update (the state's ``history``), NaN before the first."""
        h = server_state.history
        return {"step_size": h.values[h.length - 1] if h.length else np.nan}


class PIAGState(NamedTuple):
    """The master's state: the parameters, the latest gradient of every worker (None before its first), the
    version each of those gradients read (-1: none yet) and the steps taken."""

    x: np.ndarray
    grads: tuple[np.ndarray | None, ...]
    reads: tuple[int, ...]
    history: History


class Shard(NamedTuple):
    """A PIAG worker: its id and the number of workers (which fix its shard of the samples)."""

    worker: int
    n_workers: int


def shard(n_samples: int, n_workers: int, worker: int) -> slice:
    """Worker w's contiguous shard of the samples: [floor(w N / n), floor((w + 1) N / n))."""
    return slice(worker * n_samples // n_workers, (worker + 1) * n_samples // n_workers)


@Algorithm.registry.register("piag")
@dataclass(frozen=True, kw_only=True)
class PIAG(WindowSteps, Algorithm):
    """Proximal incremental aggregated gradient (Aytekin, Feyzmahdavian and Johansson, "Analysis and implementation
    of an asynchronous optimization algorithm for the parameter server", 2016; the master-worker PIAG of Wu et al.
    2022).  The samples are split into n contiguous shards, one per worker; worker i sends the full gradient g_i of
    the mean loss over its shard at the parameters it read.  The master keeps every worker's latest gradient and
    steps along their mean:

        x_{k+1} = P(x_k - gamma_k (1/n) sum_i g_i(x_{k - tau_{k,i}})),

    with every gradient that arrived since the last iteration refreshed first (a draining server: protocol
    ``drain``, or a logged PIAG run through ``trace_file``), tau_{k,i} the age of worker i's gradient, tau_k = max_i
    tau_{k,i} the delay of the step rule (``window_step``), P the projection onto the box [lower, upper] (the prox
    of its indicator) and a worker that has sent nothing yet left out of the sum (its g_i is 0).  With equal shards
    the mean of the g_i at one point is grad f."""

    lower: float | None = None
    upper: float | None = None

    @staticmethod
    def accepts(protocol):
        """At most one contribution per worker in an update, on consistent reads: asynchronous and draining
        servers, rounds; not shared memory, rennala's batches or local steps."""
        return protocol.family in (Family.ASYNC, Family.DRAINED, Family.ROUNDS) and not protocol.takes_local_steps

    def __post_init__(self):
        self._check_steps()
        check_box(self.lower, self.upper)

    def check(self, scenario):
        spec = scenario.problem
        n_samples = getattr(spec, "n_samples", None)
        require(n_samples is not None, "problem.kind", "must be a finite sum of samples (one shard per worker) for "
                "algorithm piag", kind(spec))
        require(n_samples >= scenario.cluster.workers, "problem.n_samples",
                f"must be >= cluster.workers ({scenario.cluster.workers}): every PIAG worker holds a shard",
                n_samples)
        self._check_budget(spec)

    def bind(self, problem, n_workers=None):
        return self._bind_budget(problem)

    def draw(self, problem, rng, n_steps):
        return np.zeros(n_steps)  # a worker's gradient is over its whole shard: no randomness

    def memory(self, problem, workers, vectors_per_worker=3.0):
        """The gradient table adds a vector per worker to the default estimate."""
        return super().memory(problem, workers, vectors_per_worker)

    def init(self, x0, n_workers):
        state = PIAGState(project(x0, self.lower, self.upper), (None,) * n_workers, (-1,) * n_workers, History([], 0))
        return state, tuple(Shard(w, n_workers) for w in range(n_workers))

    def local(self, snapshot, worker_state, problem, draw):
        part = shard(problem.n_samples, worker_state.n_workers, worker_state.worker)
        return problem.grad(snapshot, part), worker_state

    def apply(self, server_state, messages, info):
        x, grads, reads, history = server_state
        grads, reads = list(grads), list(reads)
        for w, tau, g in zip(info.workers, info.staleness, messages):
            grads[w] = g
            reads[w] = info.update - tau
        present = [w for w, r in enumerate(reads) if r >= 0]
        tau_k = info.update - min(reads[w] for w in present)
        gamma = self._step(history, tau_k)
        n = len(reads)
        if gamma > 0:
            x = project(x - gamma * (total([grads[w] for w in present]) / n), self.lower, self.upper)
        return PIAGState(x, tuple(grads), tuple(reads), history.append(gamma))

    def params(self, server_state):
        return server_state.x


class BCDState(NamedTuple):
    """Async-BCD's shared state: the parameters and the steps taken."""

    x: np.ndarray
    history: History


@Algorithm.registry.register("async_bcd")
@dataclass(frozen=True, kw_only=True)
class AsyncBCD(WindowSteps, CoordinateSteps):
    """Asynchronous block-coordinate descent with delay-adaptive steps (Wu et al. 2022, the Async-BCD of their
    shared-memory experiments): a worker reads x_hat = x_{k - tau_k}, picks block i (``choice``, ``blocks``) and
    the update is

        x_{k+1}[i] = P(x_k[i] - gamma_k grad_i f(x_hat)),   the other blocks unchanged,

    with gamma_k from ``window_step`` for the update's delay tau_k (several contributions in one update: the
    largest delay, applied in worker order)."""

    accepts = staticmethod(asynchronous)

    def __post_init__(self):
        self._check_steps()
        self._check_coordinates()

    def check(self, scenario):
        self._bound_blocks(scenario.problem, "algorithm.blocks")
        self._check_budget(scenario.problem)

    def bind(self, problem, n_workers=None):
        return replace(self._bind_budget(problem), blocks=self._bound_blocks(problem))

    def draw(self, problem, rng, n_steps):
        return self._draw_blocks(problem, rng, n_steps)

    def init(self, x0, n_workers):
        x, cursors = self._init(x0, n_workers)
        return BCDState(x, History([], 0)), cursors

    def local(self, snapshot, worker_state, problem, draw):
        return self.block_gradient(snapshot, worker_state, problem, draw)

    def apply(self, server_state, messages, info):
        x, history = server_state
        gamma = self._step(history, max(info.staleness))
        if gamma > 0:
            for m in messages:
                x = self.block_step(x, m, gamma)
        return BCDState(x, history.append(gamma))

    def params(self, server_state):
        return server_state.x
