"""Run a scenario end to end: SimPy timing -> Trace -> replay -> metrics and summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import __version__
from .params import ScenarioError, kind, to_plain
from .predict import overlays
from .replay import replay
from .rng import Stream, generator
from .scenario import Scenario
from .timing.protocols import choose_engine, simulate
from .timing.trace import Status, Trace


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced.  ``metrics`` and ``trace.to_frame()`` are pandas DataFrames."""

    scenario: Scenario
    trace: Trace
    metrics: pd.DataFrame
    summary: dict
    x: np.ndarray
    problem: object = None
    """The problem instance the run solved (data included)."""


@dataclass(frozen=True)
class Built:
    """What every process rebuilds from the scenario and its seed."""

    scenario: object
    problem: object
    x0: np.ndarray
    algorithm: object
    state: object
    worker_states: tuple


def build(scenario) -> Built:
    """Problem from the DATA stream, x_0 from the INIT stream, the algorithm bound to the problem and the cluster,
    and its initial states: the same in the main process and in every worker."""
    seed, n = scenario.seed, scenario.cluster.workers
    problem = scenario.problem.build(generator(seed, Stream.DATA))
    x0 = np.array(problem.initial_point(generator(seed, Stream.INIT)), dtype=np.float64)
    x0.flags.writeable = False
    algorithm = scenario.algorithm.bind(problem, n)
    state, worker_states = algorithm.init(x0, n)
    return Built(scenario, problem, x0, algorithm, state, tuple(worker_states))


def run(scenario: Scenario, progress: Callable[[int, int], None] | None = None, engine: str = "auto") -> RunResult:
    """Simulate the scenario's timing, then replay its algorithm along the trace.

    Problem data come from the DATA stream, x_0 from the INIT stream, timing from the timing streams and the
    algorithm's randomness from the ALGORITHM stream, all keyed by the scenario's seed.  ``engine`` ('auto',
    'simpy' or 'fast') picks the trace generator; both give the same trace, and summary.json names the one used.
    """
    start = time.perf_counter()
    seed = scenario.seed
    used = choose_engine(scenario.cluster, scenario.protocol, engine)
    built = build(scenario)
    problem, x0, algorithm = built.problem, built.x0, built.algorithm
    cluster, serial, message_bytes = timing_inputs(scenario, algorithm, problem)
    trace = simulate(cluster, scenario.protocol, scenario.run.updates, seed, message_bytes, engine,
                     serial).validate()
    result = replay(trace, algorithm, problem, x0, seed, scenario.run.record_every, progress)
    summary = summarize(scenario, trace, result.metrics, result.peak_in_flight, result.diverged_at)
    summary["stopped_at"] = result.stopped_at
    if result.stopped_at is not None:  # the run ended there: report the updates and time it took
        last = result.metrics.iloc[-1]
        summary.update(updates=int(last["update"]), simulated_time=float(last["time"]),
                       updates_per_second=int(last["update"]) / float(last["time"]))
    summary.update(algorithm.summary(problem, result.worker_states))
    if algorithm != scenario.algorithm:
        summary["algorithm_resolved"] = to_plain(algorithm)
    summary["mode"] = "sim"
    summary["engine"] = used
    summary["predicted"] = overlays(scenario)
    summary["wall_time_s"] = round(time.perf_counter() - start, 3)
    return RunResult(scenario=scenario, trace=trace, metrics=result.metrics, summary=summary, x=result.x,
                     problem=problem)


def timing_inputs(scenario: Scenario, algorithm, problem):
    """(cluster with compute times in seconds, serial seconds per round, message bytes): what the timing model
    needs beyond the seed, with the algorithm's cost model applied (``timed_by_work``) and its message size unless
    ``cluster.network.message_bytes`` is given."""
    cluster, serial = timed_by_work(scenario.cluster, algorithm, problem)
    message_bytes = scenario.message_bytes
    if scenario.cluster.network.message_bytes is None:
        message_bytes = algorithm.message_bytes(problem, cluster.workers) or message_bytes
    return cluster, serial, message_bytes


def timed_by_work(cluster, algorithm, problem):
    """The cluster with compute times in seconds and the serial seconds per round, from the algorithm's cost model
    when ``cluster.flops_per_second`` is set: a step takes ``work`` flops (times the compute law's draw and the
    worker's factors), the serial step ``serial_flops``.  Without a rate, compute times are the laws' seconds and an
    algorithm with a serial step cannot be timed."""
    serial_flops = algorithm.serial_flops(problem)
    if cluster.flops_per_second is None:
        if serial_flops:
            raise ScenarioError(f"algorithm {kind(algorithm)} times its serial step in flops: set "
                                f"cluster.flops_per_second")
        return cluster, 0.0
    return cluster.per_step(algorithm.work(problem, cluster.workers)), serial_flops / cluster.flops_per_second


def summarize(scenario: Scenario, trace: Trace, metrics: pd.DataFrame, peak_in_flight: int,
              diverged_at: int | None) -> dict:
    """The numbers of summary.json (everything but the wall time, which the caller adds)."""
    used = trace.used()
    tau = used.staleness
    last = metrics.iloc[-1]
    status = np.bincount(trace.status, minlength=len(Status))
    out = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "protocol": trace.protocol,
        "algorithm": kind(scenario.algorithm),
        "workers": trace.n_workers,
        "updates": trace.n_updates,
        "contributions": len(used),
        "unused": {s.name.lower(): int(status[s]) for s in Status if s != Status.APPLIED},
        "simulated_time": float(used.t_apply[-1]),
        "updates_per_second": trace.n_updates / float(used.t_apply[-1]),
        "worker_shares": (np.bincount(used.worker, minlength=trace.n_workers) / len(used)).round(6).tolist(),
        "final_loss": float(last["loss"]),
        "staleness": {
            "mean": float(tau.mean()),
            "p50": float(np.percentile(tau, 50)),
            "p99": float(np.percentile(tau, 99)),
            "max": int(tau.max()),
        },
        "peak_in_flight": peak_in_flight,
        "diverged_at": diverged_at,
        "version": __version__,
    }
    if "suboptimality" in metrics:
        out["final_suboptimality"] = float(last["suboptimality"])
    return out
