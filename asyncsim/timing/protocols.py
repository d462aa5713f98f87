"""The entry point of the timing layer: ``simulate(cluster, protocol, n_updates, seed) -> Trace``.

The protocols live in their families, each importing the kernel (``protocol``): ``asynchronous`` (async, ssp,
ringmaster, rennala, buffered, periodic, drain), ``rounds`` (sync, k_of_n, deadline, allreduce, coded), ``shared_memory`` (shared_memory,
serial_async, on top of the asynchronous family) and ``imported`` (trace_file).  Importing this module registers
them all, in that order (the order in which messages list kinds).  Processes only move time; they never look at numeric values (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math

import numpy as np

from ..params import ScenarioError, kind, require
from .asynchronous import SSP, Async, Buffered, Drain, Periodic, Rennala, Ringmaster, run_async
from .cluster import Cluster
from .durations import Durations, overflow
from .laws import Constant
from .protocol import Family, Protocol, RealLoop, Sim
from .rounds import AllReduce, Coded, Deadline, KOfN, Sync, run_rounds
from .shared_memory import SerialAsync, SharedMemory
from .imported import TraceFile
from .trace import Trace

ENGINES = ("auto", "simpy", "fast")


def choose_engine(cluster: Cluster, protocol: Protocol, engine: str = "auto") -> str:
    """The engine ``simulate`` uses: 'fast' or 'simpy', or 'given' for a protocol that gives its trace without
    simulating (trace_file, serial_async).  ``engine='fast'`` on a scenario the fast path cannot reproduce exactly
    is an error naming the reason."""
    if engine not in ENGINES:
        raise ScenarioError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    if not protocol.simulated:
        return "given"
    reason = None
    if protocol.fast_path is None:
        fast = ", ".join(k for k, cls in Protocol.registry.items() if cls.fast_path is not None)
        reason = f"protocol {kind(protocol)} (the fast path covers {fast})"
    elif protocol.concurrency is not None:
        reason = "a client population (protocol.concurrency)"
    elif not cluster.independent:
        causes = [name for name, on in (("server service time > 0", cluster.server.service != Constant(value=0.0)),
                                        ("transient stragglers", cluster.transient is not None),
                                        ("failures", cluster.failures is not None),
                                        ("client availability", cluster.availability is not None),
                                        ("serverless invocations", cluster.serverless is not None)) if on]
        reason = f"a cluster whose workers interact ({', '.join(causes)})"
    if engine == "fast" and reason:
        raise ScenarioError(f"engine fast cannot simulate {reason}; use --engine simpy or auto")
    return "simpy" if engine == "simpy" or reason else "fast"


def simulate(cluster: Cluster, protocol: Protocol, n_updates: int, seed: int, message_bytes: int = 0,
             engine: str = "auto", serial: float = 0.0, until: float | None = None) -> Trace:
    """Simulate ``n_updates`` updates of ``protocol`` on ``cluster`` with the timing streams of ``seed``.

    ``message_bytes`` sizes the messages for the links' bandwidth; ``serial`` is the seconds a round protocol adds
    after each round (a serial solve); ``engine`` is 'auto' (the vectorized fast path where it is exact, else
    SimPy), 'simpy' or 'fast'.  Both engines give identical traces.  With ``until``, the trace ends at simulated
    time ``until`` (``Trace.until``) or after ``n_updates`` updates, whichever comes first: the simulation is
    repeated with more updates (at least doubling, up to ``n_updates``) until it passes ``until``.
    """
    require(n_updates >= 1, "n_updates", "must be >= 1", n_updates)
    if serial and protocol.family is not Family.ROUNDS:
        raise ScenarioError(f"a serial step after each round needs a round protocol, not {kind(protocol)}")
    used = choose_engine(cluster, protocol, engine)
    make = protocol.fast_path if used == "fast" else protocol.trace

    def trace_of(k):
        trace = make(cluster, Durations(cluster, seed, message_bytes, serial), k)
        bad = np.flatnonzero(~np.isfinite(trace.t_apply))
        if len(bad):
            raise overflow(int(trace.worker[bad[0]]))
        return trace

    if until is None:
        return trace_of(n_updates)
    k = min(n_updates, 1024)
    while True:
        trace = trace_of(k)
        end = float(trace.used().t_apply[-1])
        if end > until or k == n_updates:
            break
        k = min(n_updates, max(2 * k, math.ceil(1.1 * k * until / end) if end > 0 else 2 * k))
    first = float(trace.used().t_apply[0])
    if first > until:
        raise ScenarioError(f"run.time must be at least the time of the first update ({first:.6g} simulated "
                            f"seconds), got {until!r}")
    return trace.until(until)


__all__ = ["AllReduce", "Async", "Buffered", "Coded", "Deadline", "Drain", "Family", "KOfN", "Periodic", "Protocol", "RealLoop", "Rennala",
           "Ringmaster", "SSP", "SerialAsync", "SharedMemory", "Sim", "Sync", "TraceFile", "choose_engine",
           "run_async", "run_rounds", "simulate"]
