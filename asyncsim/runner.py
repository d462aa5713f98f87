"""Run a scenario end to end: timing -> Trace -> replay -> metrics and summary (docs/ARCHITECTURE.md, "The seam")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from .algorithms.compressed import unwrapped
from .build import build, timing_model
from .params import kind, to_plain
from .predict import overlays
from .replay import replay
from .scenario import Scenario
from .summary import Staleness, Summary
from .timing.protocols import choose_engine, simulate
from .timing.trace import Status, Trace
from .version import __version__


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced.  ``metrics`` and ``trace.to_frame()`` are pandas DataFrames."""

    scenario: Scenario
    trace: Trace
    metrics: pd.DataFrame
    summary: Summary
    x: np.ndarray
    problem: object = None
    """The problem instance the run solved (data included)."""


def run(scenario: Scenario, progress: Callable[[int, int], None] | None = None, engine: str = "auto") -> RunResult:
    """Simulate the scenario's timing, then replay its algorithm along the trace.

    Problem data come from the DATA stream, x_0 from the INIT stream, timing from the timing streams and the
    algorithm's randomness from the ALGORITHM stream, all keyed by the scenario's seed.  ``engine`` ('auto',
    'simpy' or 'fast') picks the trace generator; both give the same trace, and summary.json names the one used.
    BLAS runs on one thread (threadpoolctl): threaded BLAS on small matrices is slower, and its sums can differ
    from one thread count to another, so every executor of a study gives the same bytes.
    """
    with threadpool_limits(limits=1):
        return _run(scenario, progress, engine)


def _run(scenario: Scenario, progress, engine: str) -> RunResult:
    start = time.perf_counter()
    seed = scenario.seed
    used = choose_engine(scenario.cluster, scenario.protocol, engine)
    built = build(scenario)
    problem, x0, algorithm = built.problem, built.x0, built.algorithm
    timing = timing_model(built)
    trace = simulate(timing.cluster, scenario.protocol, scenario.run.updates, seed, timing.message_bytes, engine,
                     timing.serial, until=scenario.run.time).validate()
    result = replay(trace, algorithm, problem, x0, seed, scenario.run.record_every, progress, scenario.run.stop_at)
    summary = summarize(scenario, trace, result.metrics, result.peak_in_flight, result.diverged_at)
    if result.stopped_at is not None or result.reached_at is not None:  # the run ended there: report its length
        last = result.metrics.iloc[-1]
        summary = replace(summary, updates=int(last["update"]), simulated_time=float(last["time"]),
                          updates_per_second=int(last["update"]) / float(last["time"]))
    summary = replace(summary, stopped_at=result.stopped_at, reached_at=result.reached_at,
                      algorithm_extra=algorithm.summary(problem, result.worker_states),
                      algorithm_resolved=(to_plain(unwrapped(algorithm)) if unwrapped(algorithm) != scenario.algorithm
                                          else None),
                      mode="sim", engine=used, predicted=overlays(scenario, timing),
                      protocol_notes=scenario.protocol.notes(trace.n_updates),
                      wall_time_s=round(time.perf_counter() - start, 3))
    return RunResult(scenario=scenario, trace=trace, metrics=result.metrics, summary=summary, x=result.x,
                     problem=problem)


def summarize(scenario: Scenario, trace: Trace, metrics: pd.DataFrame, peak_in_flight: int,
              diverged_at: int | None) -> Summary:
    """The numbers of summary.json that the trace and the metrics give (the caller adds the rest)."""
    used = trace.used()
    tau = used.staleness
    last = metrics.iloc[-1]
    status = np.bincount(trace.status, minlength=len(Status))
    return Summary(
        scenario=scenario.name, seed=scenario.seed, protocol=trace.protocol, algorithm=kind(scenario.algorithm),
        workers=trace.n_workers, updates=trace.n_updates, contributions=len(used),
        unused={s.name.lower(): int(status[s]) for s in Status if s != Status.APPLIED},
        simulated_time=float(used.t_apply[-1]), updates_per_second=trace.n_updates / float(used.t_apply[-1]),
        worker_shares=(np.bincount(used.worker, minlength=trace.n_workers) / len(used)).round(6).tolist(),
        final_loss=float(last["loss"]),
        staleness=Staleness(mean=float(tau.mean()), p50=float(np.percentile(tau, 50)),
                            p99=float(np.percentile(tau, 99)), max=int(tau.max())),
        peak_in_flight=peak_in_flight, diverged_at=diverged_at, version=__version__,
        final_suboptimality=float(last["suboptimality"]) if "suboptimality" in metrics else None,
        compression=None if scenario.compression is None else {
            **to_plain(scenario.compression), "message_bytes": scenario.compression.bytes(scenario.problem.dim),
            "uncompressed_bytes": 8 * scenario.problem.dim})
