"""Coordination protocols: SimPy process families that turn a Cluster into a Trace.

``simulate(cluster, protocol, n_updates, seed) -> Trace``.  Processes only move time; they never look at numeric
values (DESIGN.md).  Each worker is one SimPy process; the server's FIFO queue is shared state (``FifoServer``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..params import Registry, kind, require
from .cluster import Cluster, Durations
from .engine import Clock, FifoServer, Log, Phase
from .trace import Trace


class Protocol:
    """Base class of protocols; ``Protocol.registry`` maps YAML ``kind`` names to protocols."""

    registry = Registry("protocol")

    def run(self, clock: Clock, cluster: Cluster, times: Durations, n_updates: int, log: Log) -> None:
        """Start the processes on ``clock`` and run it until ``n_updates`` updates are applied."""
        raise NotImplementedError


register = Protocol.registry.register


@register("async")
@dataclass(frozen=True, kw_only=True)
class Async(Protocol):
    """Asynchronous parameter server with consistent reads.

    Worker i loops: compute on the parameters it holds, send the result (uplink), wait in the server's FIFO queue,
    get applied as update k, and receive the parameters of version k+1 in the reply (downlink).  Hence a worker's
    next read is the version right after its own write, and with n always-busy workers the mean staleness tends to
    n - 1 for any compute-time law (the staleness identity; e.g. Lian et al. 2015, Mishchenko et al. 2022).
    """

    def run(self, clock, cluster, times, n_updates, log):
        server = FifoServer()
        counter = [0]
        finished = clock.event()

        def worker(w):
            t_read, version, step = 0.0, 0, 0
            while True:
                t_done = t_read + times.compute(w, step)
                t_arrive = t_done + times.uplink(w, step)
                yield clock.at(t_arrive, Phase.ARRIVE, w)
                k = counter[0]
                counter[0] = k + 1
                # FIFO with one server: arrival order is apply order, so the index is known on arrival.
                t_apply = server.serve(t_arrive, times.service(w, step))
                log.add(k, w, step, version, -1, t_read, t_done, t_arrive, t_apply)
                if k + 1 == n_updates:
                    finished.succeed()  # runs before any keyed event at this time, so the clock stops here
                    return
                step += 1
                t_read, version = t_apply + times.downlink(w, step), k + 1

        for w in range(cluster.workers):
            clock.process(worker(w))
        clock.run(until=finished)


@register("sync")
@dataclass(frozen=True, kw_only=True)
class Sync(Protocol):
    """Synchronous rounds with a barrier: in round k every worker computes on version k; contributions queue at the
    server (FIFO); when the last one has been served, the server applies one aggregated update (k -> k+1) and
    broadcasts version k+1.  Update k is made of n contributions with staleness 0.  The round time is
    max_i (compute_i + latencies_i) plus queueing, so E[round] = H_n / mu for n exponential(mu) workers."""

    def run(self, clock, cluster, times, n_updates, log):
        server = FifoServer()
        n = cluster.workers
        state = {"arrived": 0, "barrier": clock.event()}

        def worker(w):
            t_read = 0.0
            for k in range(n_updates):
                t_done = t_read + times.compute(w, k)
                t_arrive = t_done + times.uplink(w, k)
                yield clock.at(t_arrive, Phase.ARRIVE, w)
                server.serve(t_arrive, times.service(w, k))
                barrier = state["barrier"]
                state["arrived"] += 1
                if state["arrived"] < n:
                    t_apply = yield barrier
                else:  # the last contribution of the round: apply once the server is done with it, then release
                    state["arrived"], state["barrier"] = 0, clock.event()
                    t_apply = server.free_at
                    yield clock.at(t_apply, Phase.APPLY, -1)
                    barrier.succeed(t_apply)
                log.add(k, w, k, k, k, t_read, t_done, t_arrive, t_apply)
                if k + 1 < n_updates:
                    t_read = t_apply + times.downlink(w, k + 1)

        for w in range(n):
            clock.process(worker(w))
        clock.run()


def simulate(cluster: Cluster, protocol: Protocol, n_updates: int, seed: int) -> Trace:
    """Simulate ``n_updates`` updates of ``protocol`` on ``cluster`` with the timing streams of ``seed``."""
    require(n_updates >= 1, "n_updates", "must be >= 1", n_updates)
    clock = Clock(cluster.workers)
    log = Log()
    protocol.run(clock, cluster, Durations(cluster, seed), n_updates, log)
    return log.trace(cluster.workers, kind(protocol))
