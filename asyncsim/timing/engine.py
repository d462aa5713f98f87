"""The SimPy clock with the explicit tie rule, the FIFO server, and the row log that becomes a Trace.

Tie rule (docs/ARCHITECTURE.md, "Conventions").  Events at the same simulated time are processed in phase order (applies, then
reads, then compute completions, then arrivals at the server, then the server's round decisions) and, within a
phase, by worker id; never by creation order.  Arrivals come after completions so that every contribution arriving
at time t has joined the server's queue before the server decides on them: contributions that arrive together are
queued in worker-id order.  Applies follow the server's queue order: the server's APPLY events share one key, so
those at one instant keep the order in which the server served them, and an apply caused by an arrival at the same
instant (zero service time) runs right after that arrival.

Events are scheduled at an absolute time (not ``now + delay``) so that the times in the Trace are exactly the chain
sums of the durations (t_done = t_read + compute, ...) with no re-rounding through ``t - now``.
"""

from __future__ import annotations

from enum import IntEnum
from heapq import heappush, heapreplace

import numpy as np
import simpy

from .trace import INT_COLUMNS, TIME_COLUMNS, Trace


class Phase(IntEnum):
    APPLY = 0
    READ = 1
    DONE = 2
    ARRIVE = 3
    CLOSE = 4


class Clock(simpy.Environment):
    """A SimPy environment whose events are keyed by (time, phase, worker)."""

    def __init__(self, n_workers: int):
        super().__init__()
        self._stride = n_workers + 1

    def at(self, time: float, phase: Phase, worker: int, value=None) -> simpy.Event:
        """An event that fires at absolute ``time``, ordered among ties by (phase, worker).  ``worker = -1`` is the
        server.  SimPy's own internal events (process starts, resource bookkeeping) keep priorities 0 and 1, so at a
        given time they run before the keyed events, as immediate continuations of what caused them."""
        if time < self._now:
            raise ValueError(f"event at time {time} is in the past (now {self._now})")
        event = simpy.Event(self)
        event._ok = True
        event._value = value
        # SimPy's heap key is (time, priority, event id); Environment.schedule only takes a relative delay.
        heappush(self._queue, (time, 2 + int(phase) * self._stride + worker + 1, next(self._eid), event))
        return event


class FifoServer:
    """A FIFO queue in front of ``slots`` identical servers.  Contributions are offered in arrival order (the
    Clock's tie rule makes that (time, worker) order) and each starts service on the slot that frees first, so a
    contribution arriving at t with service time S finishes at max(t, earliest free slot) + S (Kiefer and
    Wolfowitz 1955; Lindley's recursion for one slot)."""

    __slots__ = ("free",)

    def __init__(self, slots: int = 1):
        self.free = [0.0] * slots  # a heap of the times the slots become free

    def serve(self, t_arrive: float, service: float) -> float:
        free = self.free[0]
        done = (t_arrive if t_arrive > free else free) + service
        heapreplace(self.free, done)
        return done


class Log:
    """Rows appended by protocol processes, turned into a Trace sorted by (update, worker, step)."""

    COLUMNS = INT_COLUMNS + TIME_COLUMNS + ("t_read_end",)  # the order of ``add``'s arguments

    def __init__(self):
        self.rows: list[tuple] = []

    def add(self, update, worker, step, read_version, round_, status, t_read, t_done, t_arrive, t_apply,
            t_read_end=None):
        """One row; ``t_read_end`` is the end of a read that spans time (default: ``t_read``)."""
        self.rows.append((update, worker, step, read_version, round_, status, t_read, t_done, t_arrive, t_apply,
                          t_read if t_read_end is None else t_read_end))

    def trace(self, n_workers: int, protocol: str) -> Trace:
        if not self.rows:
            cols = {c: np.empty(0) for c in self.COLUMNS}
        else:
            data = list(zip(*self.rows))
            cols = {c: np.array(v) for c, v in zip(self.COLUMNS, data)}
        order = np.lexsort((cols["step"], cols["worker"], cols["update"]))
        return Trace(n_workers=n_workers, protocol=protocol, **{c: v[order] for c, v in cols.items()})
