"""The numeric engine: ``replay(trace, algorithm, problem, ...)`` walks a Trace in update order.

Version v of the parameters exists from the moment update v-1 is applied.  Right then, every contribution that
read version v runs the algorithm's worker-side ``local`` on exactly those parameters, and its message waits until
its own update is applied (k = read_version + staleness).  So no old parameter version is ever stored: what is kept
is one message per contribution in flight, at most about one per worker in the async protocol however large the
staleness gets (``peak_in_flight`` reports it).

Inconsistent reads (``shared_memory``) are rebuilt block by block: the read's coordinate block b takes its values
from the version v_b it saw (the updates applied at or before its read instant), so the worker computes on

    x_hat = (x_{v_0}[block 0], x_{v_1}[block 1], ..., x_{v_{B-1}}[block B-1]),   read_version = v_0 <= ... <= v_{B-1},

which is Lian et al. (2015)'s x_hat_k = x_k - sum_{j in J(k)} (x_{j+1} - x_j) restricted per block, without
storing old versions: the blocks are copied into a buffer as each version appears, and ``local`` runs when the
last block's version exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .algorithms.base import Algorithm, ApplyInfo
from .problems.base import Problem
from .params import ScenarioError
from .rng import CACHED_WORKERS, StepDraws, Stream
from .split import ClientData
from .targets import Target
from .problems.base import block_bounds
from .timing.trace import Trace, block_read_times


@dataclass(frozen=True)
class ReplayResult:
    x: np.ndarray
    """Final parameters: version K, or the first recorded non-finite version if the run diverged."""
    metrics: pd.DataFrame
    """One row per recorded version: update, time, loss, grad_norm and, where f* is known, suboptimality."""
    peak_in_flight: int
    """The largest number of messages held at once (computed but not yet applied)."""
    diverged_at: int | None
    """The first recorded version whose loss is not finite, or None."""
    stopped_at: int | None = None
    """The version at which the algorithm stopped itself (``finished``, e.g. a declared local minimum), or None."""
    reached_at: int | None = None
    """The first recorded version whose metric reached the ``stop`` target (the run ended there), or None."""
    algorithm: Algorithm | None = None
    """The algorithm as run, with problem-dependent defaults resolved (``Algorithm.bind``)."""
    worker_states: tuple = ()
    """The workers' final states (EASGD's local variables, ADMM's shards)."""


def replay(trace: Trace, algorithm: Algorithm, problem: Problem, x0: np.ndarray, seed: int,
           record_every: int = 1, progress: Callable[[int, int], None] | None = None,
           stop: Target | None = None) -> ReplayResult:
    """Apply ``algorithm`` along ``trace``; record metrics at versions 0, record_every, 2 record_every, ..., K.

    Each contribution's randomness is the ALGORITHM stream draw of its (worker, step), so the result depends only
    on the trace, the seed and the inputs.  Only applied rows are replayed (``Trace.used``).  Stops early, with
    ``diverged_at`` set, when a recorded loss is not finite, with ``stopped_at`` set when the algorithm says it
    has finished, and with ``reached_at`` set at the first recorded version from 1 on whose metric reaches the
    ``stop`` target (``run.stop_at``; the metrics then end with that row, as a full run's would up to it).
    """
    algorithm = algorithm.bind(problem, trace.n_workers)
    trace = trace.used()  # dropped, cancelled and lost work changes no parameters
    K = trace.n_updates
    read_order = np.argsort(trace.read_version, kind="stable")
    read_bounds = np.searchsorted(trace.read_version[read_order], np.arange(K + 1)).tolist()
    apply_bounds = np.searchsorted(trace.update, np.arange(K + 1)).tolist()
    read_order = read_order.tolist()
    workers, steps, reads = trace.worker.tolist(), trace.step.tolist(), trace.read_version.tolist()
    version_time = trace.update_times()
    patches, mixed = _mixed_read_plan(trace, problem.dim) if trace.inconsistent else ({}, set())
    buffers: dict[int, np.ndarray] = {}
    draws = algorithm_draws(algorithm, problem, seed)

    state, worker_states = algorithm.init(_frozen(np.array(x0, dtype=np.float64)), trace.n_workers)
    worker_states = list(worker_states)
    in_flight: dict[int, object] = {}
    peak = 0
    recorder = Recorder(problem, algorithm)

    def record(version, x):
        return recorder(version, float(version_time[version]), x, state)

    def compute(j, snapshot=None):
        w = workers[j]
        if snapshot is None:  # a consistent read: what the server sends this worker (by default the parameters)
            snapshot = x if replies_params else _frozen(algorithm.reply(state, w))
        in_flight[j], worker_states[w] = algorithm.local(snapshot, worker_states[w], problem, draws(w, steps[j]))

    replies_params = type(algorithm).reply is Algorithm.reply
    x = _frozen(algorithm.params(state))
    diverged_at = stopped_at = reached_at = None
    tick = max(1, K // 100)
    with np.errstate(over="ignore", invalid="ignore"):
        record(0, x)
        for k in range(K):
            for j, lo, hi, last in patches.get(k, ()):  # inconsistent reads: the blocks that saw version k
                buf = buffers.get(j)
                if buf is None:
                    buf = buffers[j] = np.empty_like(x)
                buf[lo:hi] = x[lo:hi]
                if last:
                    compute(j, _frozen(buffers.pop(j)))
            for j in read_order[read_bounds[k]:read_bounds[k + 1]]:
                if j not in mixed:
                    compute(j)
            peak = max(peak, len(in_flight))
            lo, hi = apply_bounds[k], apply_bounds[k + 1]
            info = ApplyInfo.at(k, workers[lo:hi], reads[lo:hi], problem)
            state = algorithm.apply(state, [in_flight.pop(j) for j in range(lo, hi)], info)
            x = _frozen(algorithm.params(state))
            done = algorithm.finished(state)
            if (k + 1) % record_every == 0 or k + 1 == K or done:
                if not record(k + 1, x):
                    diverged_at = k + 1
                    break
                if stop is not None and stop.reached(recorder.value(stop.metric)):
                    reached_at = k + 1
                    break
            if done:
                stopped_at = k + 1
                break
            if progress is not None and (k + 1) % tick == 0:
                progress(k + 1, K)

    return ReplayResult(x=x, metrics=recorder.frame(), peak_in_flight=peak, diverged_at=diverged_at, stopped_at=stopped_at,
                        reached_at=reached_at, algorithm=algorithm, worker_states=tuple(worker_states))


def algorithm_draws(algorithm: Algorithm, problem: Problem, seed: int) -> StepDraws:
    """The algorithm's per-(worker, step) randomness (minibatches, coordinates, ...) from the ALGORITHM stream:
    the same draws in the replay, in real workers and wherever else a step is computed (the blocks of at most
    CACHED_WORKERS workers kept).  With ``problem.shards`` (a ``split``), worker w draws its minibatches from its
    own shard (``split.ClientData``)."""
    shards = getattr(problem, "shards", None)  # (a problem of one's own may not derive from Problem)
    if shards is None:
        return StepDraws(seed, Stream.ALGORITHM, lambda g, n: algorithm.draw(problem, g, n), limit=CACHED_WORKERS)
    return StepDraws(seed, Stream.ALGORITHM, lambda g, n, w: algorithm.draw(ClientData(problem, shards[w]), g, n),
                     limit=CACHED_WORKERS, per_worker=True)


class Recorder:
    """The metric rows of one run: ``recorder(version, time, x, server_state)`` adds update, time, loss, grad_norm,
    suboptimality f(x) - f* where f* is known, and the problem's and the algorithm's extra metrics; it returns
    False when the loss is not finite.  ``frame()`` is the DataFrame (metrics.csv).  The replay and the real
    execution mode both record through it."""

    def __init__(self, problem: Problem, algorithm: Algorithm):
        self.problem, self.algorithm = problem, algorithm
        self.f_star = problem.optimal_loss
        self.rows: list[tuple] = []
        self.extra: list[str] = []

    def __call__(self, version: int, time: float, x: np.ndarray, server_state) -> bool:
        problem = self.problem
        with np.errstate(over="ignore", invalid="ignore"):
            loss = problem.loss(x)
            row = (version, time, loss, float(np.linalg.norm(problem.grad(x))))
            row += (loss - self.f_star,) if self.f_star is not None else ()
            more = problem.metrics(x) | self.algorithm.metrics(server_state)
        if not self.rows:
            self.extra.extend(more)
        self.rows.append(row + tuple(float(more[c]) for c in self.extra))
        return math.isfinite(loss)

    def value(self, metric: str) -> float:
        """The last recorded value of ``metric``."""
        columns = self.columns
        if metric not in columns:
            raise ScenarioError(f"run.stop_at.metric {metric!r} is not recorded by this run (recorded: "
                                f"{', '.join(columns[2:])})")
        return self.rows[-1][columns.index(metric)]

    @property
    def columns(self) -> list[str]:
        return (["update", "time", "loss", "grad_norm"] + (["suboptimality"] if self.f_star is not None else [])
                + self.extra)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)


def read_segments(t_read: float, t_read_end: float, first: int, last: int, apply_times: np.ndarray,
                  bounds: np.ndarray) -> list[tuple[int, int, int]]:
    """The versions one inconsistent read saw, as (version, lo, hi): coordinates [lo, hi) were read from that
    version.  Block b (coordinates [bounds[b], bounds[b+1])) is read at ``block_read_times(...)[b]`` and sees every
    update applied at or before that instant (``apply_times[u]`` is update u's); versions are clipped to
    [first, last], the trace's read_version and read_end."""
    at = block_read_times(t_read, t_read_end, len(bounds) - 1)
    seen = np.clip(np.searchsorted(apply_times, at, side="right"), first, last)
    cuts = np.flatnonzero(np.diff(seen)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(seen)]
    return [(int(seen[a]), int(bounds[a]), int(bounds[b])) for a, b in zip(starts, ends)]


def _mixed_read_plan(trace: Trace, dim: int):
    """For the reads that saw several versions: ``patches[v]`` lists (row, lo, hi, last) for the coordinates to copy
    from version v (``last`` when the row's read is then complete), and the set of those rows."""
    if trace.read_blocks > dim:
        raise ValueError(f"the trace's reads have {trace.read_blocks} blocks but the problem has dim {dim}")
    bounds = block_bounds(dim, trace.read_blocks)
    apply_times = trace.update_times()[1:]
    rows = np.flatnonzero(trace.read_end != trace.read_version)
    patches: dict[int, list] = {}
    for j in rows.tolist():
        segs = read_segments(trace.t_read[j], trace.t_read_end[j], int(trace.read_version[j]),
                             int(trace.read_end[j]), apply_times, bounds)
        for i, (v, lo, hi) in enumerate(segs):
            patches.setdefault(v, []).append((j, lo, hi, i == len(segs) - 1))
    return patches, set(rows.tolist())


def _frozen(x: np.ndarray) -> np.ndarray:
    """Mark parameters read-only, so an update rule that mutates its inputs fails loudly."""
    x = np.asarray(x)
    x.flags.writeable = False
    return x
