"""``asyncsim predict``: the closed-form predictions of ``theory.py`` next to the values a simulation measures.

Every prediction is computed from the run's timing model (``build.timing_model``: compute times in seconds, with
the algorithm's flops per step when ``cluster.flops_per_second`` is set, and its message size on the links); every
measurement from simulated traces of the same model and seed (the scenario's own protocol, plus ``async`` and
``sync`` runs for the throughput and speedup rows).  A note says when a formula's assumptions (no server
contention, no failures or slow phases, constant latencies) do not hold, so the prediction is only approximate.
"""

from __future__ import annotations

import math
from functools import singledispatch

import numpy as np
import pandas as pd

from . import budget, theory
from .params import ScenarioError
from .build import build, timing_model
from .rng import BLOCK, Stream
from .scenario import Scenario, footprint
from .timing.cluster import Cluster
from .timing.laws import Bimodal, Constant, Exponential, scaled
from .timing.protocol import Family
from .timing.protocols import AllReduce, Async, Drain, Protocol, Rennala, Sync, simulate


def worker_laws(cluster: Cluster):
    """Each worker's compute-time law, with its speed and straggler factor applied."""
    return tuple(scaled(law, f) for law, f in zip(cluster.laws, cluster.factors))


def latency(cluster: Cluster, message_bytes: int) -> float:
    """Mean seconds a worker's cycle spends outside computation: uplink + downlink (alpha + m / beta, averaged over
    the workers' devices) + service."""
    up, down = cluster.transfers(message_bytes)
    beta = (math.fsum(up) + math.fsum(down)) / cluster.workers
    return cluster.uplink.mean + cluster.downlink.mean + beta + cluster.server.service.mean


def cycle_means(cluster: Cluster, message_bytes: int) -> np.ndarray:
    """E[cycle_i] = E[compute_i] + latency: the time between worker i's updates when nobody waits."""
    return np.array([law.mean for law in worker_laws(cluster)]) + latency(cluster, message_bytes)


def assumptions(cluster: Cluster) -> str:
    """'' when the formulas are exact in expectation for this cluster, else what breaks them."""
    broken = []
    if not cluster.independent:
        broken.append("server contention, slow phases, failures, availability or serverless invocations")
    if not all(isinstance(x, Constant) for x in (cluster.uplink, cluster.downlink)):
        broken.append("random latencies (their means are used)")
    return "approximate: " + ", ".join(broken) if broken else ""


def overlays(scenario: Scenario, timing) -> dict:
    """Predicted curves for the plots of a run with ``timing`` (its ``build.TimingModel``): per-worker shares for
    simulated asynchronous protocols (every arrival is an update, so shares follow the cycle rates) and, for
    exponential compute times, equal workers and no latency, the geometric staleness law.  None for a population
    of clients (``concurrency``), whose shares follow the draws, not the cycle rates."""
    c, m = timing.cluster, timing.message_bytes
    p = scenario.protocol
    if p.family is not Family.ASYNC or not p.simulated or p.concurrency is not None:
        return {}
    out = {"worker_shares": theory.worker_shares(cycle_means(c, m)).round(6).tolist()}
    if _geometric_case(c, m):
        out["staleness_pmf"] = theory.staleness_pmf(c.workers, np.arange(8 * c.workers)).round(8).tolist()
    return out


def _geometric_case(c: Cluster, message_bytes: int) -> bool:
    laws = worker_laws(c)
    return (all(isinstance(x, Exponential) for x in laws) and len(set(laws)) == 1 and c.independent
            and latency(c, message_bytes) == 0.0)


def predict(scenario: Scenario, updates: int | None = None, engine: str = "auto") -> pd.DataFrame:
    """A table of predicted and simulated values (columns quantity, predicted, simulated, rel_diff, note)."""
    if scenario.protocol.concurrency is not None:
        raise ScenarioError("protocol.concurrency: predict compares every worker taking part (sync and async) and "
                            "has no formulas for a population of clients; remove protocol.concurrency to predict "
                            "the cluster as a whole")
    K = updates or max(scenario.run.updates, 20_000)
    n = scenario.cluster.workers
    budget.check(footprint(scenario) + [  # the simulations below: the scenario's protocol, async and sync
        budget.Footprint(budget.ROW_BYTES * K * (n + 1) + budget.ROW_BYTES * scenario.protocol.rows(n, K),
                         "--updates", K, f"the rows of {K} updates simulated three ways")])
    timing = timing_model(build(scenario))
    c, seed, m = timing.cluster, scenario.seed, timing.message_bytes
    laws = worker_laws(c)
    lat = latency(c, m)
    note = assumptions(c)
    rows: list[tuple] = []

    def row(quantity, predicted, simulated, why=""):
        rel = abs(simulated - predicted) / abs(predicted) if predicted not in (0, np.inf) else np.nan
        rows.append((quantity, float(predicted), float(simulated), rel, why))

    def run(protocol):
        return simulate(c, protocol, K, seed, m, engine, timing.serial if protocol is p else 0.0)

    p = scenario.protocol
    # compute-time order statistics, measured on the cluster's own keyed compute draws (one "round" per step)
    draws = timing.durations(seed).steps(Stream.COMPUTE, max(1, min(K, 50_000) // BLOCK) * BLOCK)
    ordered = np.sort(draws, axis=1)
    ks = sorted({1, n} | ({p.waits_for(n)} - {None}))
    for k in ks:
        row(f"E[X_({k}:{n})] compute order statistic (s)", theory.order_statistic_mean(laws, k), ordered[:, k - 1].mean())
    if all(isinstance(x, Bimodal) and isinstance(x.base, Constant) for x in c.laws) and len(set(c.laws)) == 1:
        law = c.laws[0]
        slow = (draws > np.array([law.base.value * f for f in c.factors])).any(axis=1).mean()
        row("P(slow round), bimodal law", theory.p_slow_round(law.p, n), slow)

    sync, asyn = run(Sync()), run(Async())
    rounds = np.diff(sync.update_times()[1:])  # round 0 has no downlink: start from round 1
    row("sync round time (s)", theory.sync_round_time(laws, lat), rounds.mean(), note)
    rate = asyn.n_updates / asyn.t_apply[-1]
    row("async throughput (updates/s)", theory.async_throughput(cycle_means(c, m)), rate, note)
    shares = np.bincount(asyn.worker, minlength=n) / len(asyn)
    predicted_shares = theory.worker_shares(cycle_means(c, m))
    for w in range(n) if n <= 16 else ():
        row(f"worker {w} share of async updates", predicted_shares[w], shares[w], note)
    row("async mean staleness (n - 1)", n - 1, asyn.staleness.mean())
    if _geometric_case(c, m):
        tau = asyn.staleness
        row("async P(staleness = 0) = 1/n (geometric law)", theory.staleness_pmf(n, [0])[0], np.mean(tau == 0))
        j = np.arange(tau.max() + 1)
        ks_dist = np.abs(np.cumsum(np.bincount(tau)) / len(tau) - theory.staleness_cdf(n, j)).max()
        row("KS distance to the geometric law", 0.0, ks_dist)
    grads_async = len(asyn) / asyn.t_apply[-1]
    grads_sync = len(sync) / sync.t_apply[-1]
    row("speedup: async over sync gradients/s", theory.sync_vs_async_speedup(laws, lat), grads_async / grads_sync, note)

    for args in protocol_rows(p, timing, laws, lat, run):
        row(*args)
    return pd.DataFrame(rows, columns=["quantity", "predicted", "simulated", "rel_diff", "note"])


@singledispatch
def protocol_rows(protocol: Protocol, timing, laws, lat: float, run) -> list[tuple]:
    """(quantity, predicted, simulated) rows that only this protocol has a formula for (none by default), for the
    run's ``timing`` (``build.TimingModel``); ``run(protocol)`` simulates it."""
    return []


@protocol_rows.register
def _(protocol: Rennala, timing, laws, lat, run):
    if not (all(isinstance(x, Constant) for x in laws) and lat == 0.0):
        return []
    first = run(protocol).used().t_apply[0]
    return [(f"time to collect S = {protocol.batch} gradients (s)",
             theory.rennala_collection_time([x.value for x in laws], protocol.batch), first)]


@protocol_rows.register
def _(protocol: AllReduce, timing, laws, lat, run):
    tr = run(protocol).used()
    cost = (pd.Series(tr.t_apply).groupby(tr.update).first() - pd.Series(tr.t_done).groupby(tr.update).max())
    what = "all-reduce time per round (s)" if not timing.serial else "all-reduce + serial step per round (s)"
    return [(what, protocol.cost(timing.cluster, timing.message_bytes) + timing.serial, cost.mean())]


@protocol_rows.register
def _(protocol: Drain, timing, laws, lat, run):
    tr = run(protocol).used()
    m = len(tr) / tr.n_updates
    return [(f"drain mean staleness (n/m - 1, m = {m:.3g} per update)",
             theory.batched_mean_staleness(timing.cluster.workers, tr.n_updates, len(tr)), tr.staleness.mean())]


def format_table(table: pd.DataFrame, scenario: Scenario) -> str:
    lines = [f"{scenario.name}: predictions (theory.py) vs simulation ({scenario.cluster.workers} workers, "
             f"seed {scenario.seed})",
             f"  {'quantity':<48} {'predicted':>12} {'simulated':>12} {'rel. diff':>9}"]
    for r in table.itertuples(index=False):
        rel = "" if np.isnan(r.rel_diff) else f"{100 * r.rel_diff:8.2f}%"
        lines.append(f"  {r.quantity:<48} {r.predicted:>12.6g} {r.simulated:>12.6g} {rel:>9}  {r.note}".rstrip())
    return "\n".join(lines)
