"""The numeric engine: ``replay(trace, algorithm, problem, ...)`` walks a Trace in update order.

Version v of the parameters exists from the moment update v-1 is applied.  Right then, every contribution that
read version v runs the algorithm's worker-side ``local`` on exactly those parameters, and its message waits until
its own update is applied (k = read_version + staleness).  So no old parameter version is ever stored: what is kept
is one message per contribution in flight, at most about one per worker in the async protocol however large the
staleness gets (``peak_in_flight`` reports it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .algorithms.base import Algorithm, ApplyInfo
from .problems.base import Problem
from .rng import StepDraws, Stream
from .timing.trace import Trace


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


def replay(trace: Trace, algorithm: Algorithm, problem: Problem, x0: np.ndarray, seed: int,
           record_every: int = 1, progress: Callable[[int, int], None] | None = None) -> ReplayResult:
    """Apply ``algorithm`` along ``trace``; record metrics at versions 0, record_every, 2 record_every, ..., K.

    Each contribution's randomness is the ALGORITHM stream draw of its (worker, step), so the result depends only
    on the trace, the seed and the inputs.  Only applied rows are replayed (``Trace.used``).  Stops early, with ``diverged_at`` set, when a recorded loss is not
    finite.
    """
    trace = trace.used()  # dropped, cancelled and lost work changes no parameters
    K = trace.n_updates
    read_order = np.argsort(trace.read_version, kind="stable")
    read_bounds = np.searchsorted(trace.read_version[read_order], np.arange(K + 1)).tolist()
    apply_bounds = np.searchsorted(trace.update, np.arange(K + 1)).tolist()
    read_order = read_order.tolist()
    workers, steps, staleness = trace.worker.tolist(), trace.step.tolist(), trace.staleness.tolist()
    version_time = trace.update_times()
    draws = StepDraws(seed, Stream.ALGORITHM, lambda g, n: algorithm.draw(problem, g, n))
    f_star = problem.optimal_loss

    state, worker_states = algorithm.init(_frozen(np.array(x0, dtype=np.float64)), trace.n_workers)
    worker_states = list(worker_states)
    in_flight: dict[int, object] = {}
    peak = 0
    rows: list[tuple] = []

    def record(version, x):
        loss = problem.loss(x)
        row = (version, float(version_time[version]), loss, float(np.linalg.norm(problem.grad(x))))
        rows.append(row + ((loss - f_star,) if f_star is not None else ()))
        return math.isfinite(loss)

    x = _frozen(algorithm.params(state))
    diverged_at = None
    tick = max(1, K // 100)
    with np.errstate(over="ignore", invalid="ignore"):
        record(0, x)
        for k in range(K):
            for j in read_order[read_bounds[k]:read_bounds[k + 1]]:
                w = workers[j]
                in_flight[j], worker_states[w] = algorithm.local(x, worker_states[w], problem, draws(w, steps[j]))
            peak = max(peak, len(in_flight))
            lo, hi = apply_bounds[k], apply_bounds[k + 1]
            info = ApplyInfo(k, tuple(workers[lo:hi]), tuple(staleness[lo:hi]))
            state = algorithm.apply(state, [in_flight.pop(j) for j in range(lo, hi)], info)
            x = _frozen(algorithm.params(state))
            if (k + 1) % record_every == 0 or k + 1 == K:
                if not record(k + 1, x):
                    diverged_at = k + 1
                    break
            if progress is not None and (k + 1) % tick == 0:
                progress(k + 1, K)

    columns = ["update", "time", "loss", "grad_norm"] + (["suboptimality"] if f_star is not None else [])
    metrics = pd.DataFrame(rows, columns=columns)
    return ReplayResult(x=x, metrics=metrics, peak_in_flight=peak, diverged_at=diverged_at)


def _frozen(x: np.ndarray) -> np.ndarray:
    """Mark parameters read-only, so an update rule that mutates its inputs fails loudly."""
    x = np.asarray(x)
    x.flags.writeable = False
    return x
