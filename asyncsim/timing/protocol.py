"""The protocol kernel: the ``Protocol`` interface every coordination protocol implements, and what its process
families share (``Sim``, the registry, the status codes).

A protocol is a frozen dataclass of its parameters, registered under a YAML ``kind``, whose class answers every
question the rest of the package asks about it (docs/ARCHITECTURE.md, "Protocol"):

- ``family``: how its updates are formed (:class:`Family`), which is what an algorithm's requirements are stated in;
- ``simulated`` and ``fast_path``: whether SimPy makes its trace (else ``trace`` gives it directly), and the
  vectorized function that reproduces it exactly when the cluster's workers are independent;
- ``real_loop``: which loop of the real execution mode runs it (:class:`RealLoop`, or None);
- what it hands the algorithm: ``local_steps`` per exchange, ``read_law`` (the duration of a read that spans time),
  ``every_worker`` (one contribution of each worker per update), ``takes_local_steps``;
- what it can promise: ``staleness_bound`` (a bound on every update's staleness, or None) and the trace rows a run
  makes (``rows``, for the memory estimate);
- its own checks: ``check_cluster``, ``check_updates``, ``check(algorithm)`` and ``resolve(problem)`` (defaults
  that need the problem); and what ``predict`` needs of rounds (``waits_for``).

This module imports no protocol family; the families import it (``asynchronous``, with ``periodic``; ``rounds``;
``shared_memory``, which also runs ``asynchronous.run_async``; ``imported``), and ``protocols`` (the entry point
``simulate``) imports them all.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from ..params import Registry, ScenarioError, kind, require
from .cluster import Cluster
from .durations import Durations
from .engine import Clock, Log
from .laws import Constant, DelayLaw
from .trace import Status, Trace

APPLIED, DROPPED, CANCELLED, LOST = Status.APPLIED, Status.DROPPED, Status.CANCELLED, Status.LOST


class Family(Enum):
    """How a protocol forms its updates: the vocabulary in which algorithms state what they need."""

    ASYNC = "asynchronous: each contribution is its own update, on the version its worker read (consistent reads)"
    BATCHED = "batched: an update is S contributions computed at the current version"
    BUFFERED = ("buffered: an update is the next K contributions to arrive, each on the version its worker read (a "
                "worker may contribute several)")
    DRAINED = ("drained: an update is every contribution that arrived while the server was busy, each on the version "
               "its worker read (at most one per worker)")
    ROUNDS = "rounds: an update is the kept contributions of one version, with a barrier"
    SHARED_MEMORY = "shared memory: lock-free writes, reads that span time and may mix versions"


class RealLoop(Enum):
    """The loop of the real execution mode that runs a protocol (``asyncsim.real``)."""

    SERVER = "a parameter server in the main process applies each message as it arrives"
    BARRIER = "the main process waits for one message per worker, then applies them as one update"
    HOGWILD = "workers update a shared vector lock-free; the main process only watches"


class Protocol:
    """Base class of protocols; ``Protocol.registry`` maps YAML ``kind`` names to protocols.

    A protocol makes the trace of ``n_updates`` updates from the cluster's keyed timing draws.  SimPy protocols
    implement ``run(sim)``; others (``trace_file``, ``serial_async``) override ``trace``.  The class attributes
    below are its capabilities; subclasses override what differs (a property where it depends on the parameters).
    """

    registry = Registry("protocol")
    family: ClassVar[Family] = Family.ASYNC
    simulated: ClassVar[bool] = True
    """False for protocols that give their trace without simulating (trace_file, serial_async)."""
    fast_path: ClassVar[Callable[[Cluster, Durations, int], Trace] | None] = None
    """The vectorized generator that reproduces this protocol's trace exactly when ``cluster.independent``."""
    real_loop: ClassVar[RealLoop | None] = None
    """The real-mode loop that runs this protocol (None: no real execution)."""
    every_worker: ClassVar[bool] = False
    """True when every update holds exactly one contribution of each worker, all on version k (full rounds)."""
    takes_local_steps: ClassVar[bool] = False
    """True when workers take ``local_steps`` steps between exchanges (local SGD, elastic averaging)."""
    bounds_staleness: ClassVar[bool] = False
    """True when the protocol's own rule bounds every update's staleness, whatever the cluster (``staleness_bound``
    is then never None): rounds (0), ringmaster, rennala, serial_async, trace_file.  An asynchronous server can
    still have a bound for a particular cluster (constant durations: :func:`deterministic_bound`)."""
    local_steps: ClassVar[int] = 1
    """Compute steps per exchange (a compute-time draw each)."""
    read_law: ClassVar[DelayLaw | None] = None
    """The duration of a read that spans time (shared memory), or None: reads are instantaneous."""
    coded: ClassVar[bool] = False
    """True when every update is the set of coded tasks that decoded it (``coded``; its ``code`` says how)."""
    code: ClassVar = None
    """The code of coded rounds (a ``timing.codes.Code``), or None."""
    concurrency: ClassVar[int | None] = None
    """With a value C, ``cluster.workers`` is a population of clients of which C take part at once, drawn among the
    idle online ones (``population``; async, periodic and buffered); None: every worker takes part throughout."""
    selection: ClassVar[str] = "uniform"
    """How a population's clients are drawn: ``uniform``, or ``data_size`` (proportional to
    ``cluster.data_sizes``)."""

    def trace(self, cluster: Cluster, times: Durations, n_updates: int) -> Trace:
        """The trace of ``n_updates`` updates with the keyed durations ``times``: by default, run the SimPy processes
        (``run``) and turn their log into a Trace."""
        sim = Sim(Clock(cluster.workers), cluster, times, n_updates, Log())
        try:
            self.run(sim)
        except RuntimeError as err:  # SimPy: every process ended before the last update
            if cluster.availability is None or "No scheduled events left" not in str(err):
                raise
            raise ScenarioError(
                f"cluster.availability stops the run at simulated time {sim.clock.now:.6g} s, before run.updates "
                f"({n_updates}) updates are made: no client that could make them comes online again"
                + (f" (protocol {kind(self)} waits for every worker each round)" if self.every_worker else "")
                + "; give the clients more online time or run fewer updates") from None
        return sim.log.trace(cluster.workers, kind(self))

    def run(self, sim: "Sim") -> None:
        """Start the processes on ``sim.clock`` and run it until ``sim.n_updates`` updates are applied."""
        raise NotImplementedError

    def check(self, algorithm) -> None:
        """Raise ParamError if ``algorithm`` cannot run under this protocol (default: any algorithm can)."""

    def check_cluster(self, cluster: Cluster) -> None:
        """Raise ParamError (naming the YAML path) if this protocol cannot run on ``cluster`` (default: any, within
        the limits of a ``concurrency``)."""
        check_concurrency(self.concurrency, cluster)
        never = [] if cluster.availability is None or not self.every_worker else \
            cluster.availability.never_online(cluster.workers)
        require(not never, "cluster.availability", f"must bring every worker online under protocol {kind(self)} "
                f"(each round waits for every worker)", f"clients never online: {never[:5]}"
                + (f" and {len(never) - 5} more" if len(never) > 5 else ""))

    def resolve(self, problem) -> "Protocol":
        """This protocol with the defaults that depend on the problem spec filled in (default: unchanged)."""
        return self

    def check_updates(self, n_updates: int) -> None:
        """Raise ParamError if this protocol cannot give ``n_updates`` updates (default: it can give any number)."""

    def staleness_bound(self, cluster: Cluster, n_updates: int) -> int | None:
        """An upper bound on the staleness of every update of a run on ``cluster``, or None when delays are not
        bounded (default: the deterministic bound of an asynchronous server, :func:`deterministic_bound`)."""
        return deterministic_bound(cluster, self.local_steps, self.read_law)

    given_updates: ClassVar[int | None] = None
    """The number of updates the protocol's own data hold (a delay log's), which ``run.updates`` defaults to; None
    when it has none (then ``run.updates`` is required)."""

    def notes(self, n_updates: int) -> dict:
        """What summary.json should say about how the protocol formed its trace (``protocol_notes``); default
        its ``concurrency`` if it has one, else nothing."""
        return {} if self.concurrency is None else {"concurrency": self.concurrency}

    def waits_for(self, workers: int) -> int | None:
        """How many contributions a round waits for (k of n: the round time is the k-th order statistic of the
        compute times), or None for protocols whose rounds do not wait for a fixed number."""
        return None

    def rows(self, workers: int, n_updates: int) -> float:
        """About how many trace rows a run of ``n_updates`` makes (for the memory estimate; default: one per
        update)."""
        return float(n_updates)


@dataclass
class Sim:
    """What a protocol's SimPy processes share: the clock (with the tie rule), the cluster, its keyed durations,
    the number of updates to make and the log of rows that becomes the Trace."""

    clock: Clock
    cluster: Cluster
    times: Durations
    n_updates: int
    log: Log


register = Protocol.registry.register

SELECTIONS = ("uniform", "data_size")
"""How a protocol with a ``concurrency`` draws its clients."""


def selection_weights(protocol: Protocol, cluster: Cluster):
    """The weights a population draws its clients with: None for uniform, else ``cluster.data_sizes``."""
    if protocol.selection == "uniform":
        return None
    if cluster.data_sizes is None:
        raise ScenarioError("protocol.selection data_size needs the clients' data sizes: a split (the shards' "
                            "sizes) or cluster.data_sizes")
    return cluster.data_sizes


def check_concurrency(concurrency: int | None, cluster: Cluster) -> None:
    """A protocol's ``concurrency`` C: 1 <= C <= the clients (``cluster.workers``), and not on serverless workers
    (whose own concurrency is the platform's)."""
    if concurrency is None:
        return
    require(1 <= concurrency <= cluster.workers, "protocol.concurrency",
            f"must be in [1, cluster.workers = {cluster.workers}] (or null: every worker takes part)", concurrency)
    require(cluster.serverless is None, "protocol.concurrency", "must be null with serverless workers (their "
            "concurrency is cluster.serverless.concurrency)", concurrency)
    if cluster.data_sizes is not None:  # (selection by size never draws a client of size 0)
        sized = sum(1 for v in cluster.data_sizes if v > 0)
        require(concurrency <= sized, "protocol.concurrency", f"must be at most the clients with a data size > 0 "
                f"({sized})", concurrency)

DISTINCT_LIMIT = 1000
"""``deterministic_bound`` gives up (None) beyond this many distinct compute times (it is quadratic in them)."""


def deterministic_bound(cluster: Cluster, local_steps: int = 1, read: DelayLaw | None = None) -> int | None:
    """The largest staleness an asynchronous server can give when every duration is a constant, else None.

    With constant durations, no server contention, slow phases or failures, worker v applies its updates at
    t_v + j C_v (j = 0, 1, ...) where C_v = read + H compute_v + uplink + downlink is its cycle, and a computation of
    worker w spans D_w = read + H compute_w + uplink from its read to its apply.  Staleness counts the other
    workers' applies in (t_read, t_apply], and an arithmetic progression of spacing C has at most ceil(D / C)
    points in a half-open interval of length D, so tau_w <= sum_{v != w} ceil(D_w / C_v).  The compute times may
    be in units of work (``flops_per_second``) only when every other duration is 0, since the ratios are then
    unchanged by the scale.  A bandwidth term depends on the message size, which is not known here: None.
    """
    up, down = cluster.uplink, cluster.downlink
    constants = [up, down, cluster.server.service] + ([] if read is None else [read])
    if not (cluster.independent and cluster.compute_trace is None and all(isinstance(x, Constant) for x in constants)
            and not cluster.bandwidth_limited):
        return None
    laws = cluster.compute if isinstance(cluster.compute, tuple) else (cluster.compute,)
    if not all(isinstance(law, Constant) for law in laws):
        return None
    r = 0.0 if read is None else read.value
    if cluster.flops_per_second is not None and (up.value or down.value or r):
        return None
    per_worker = Counter(local_steps * laws[w if len(laws) > 1 else 0].value * f for w, f in enumerate(cluster.factors))
    if len(per_worker) > DISTINCT_LIMIT:
        return None
    cycles = {c: r + c + up.value + down.value for c in per_worker}
    worst = 0
    for c in per_worker:  # sum over the other workers v, grouped by their compute time
        span = r + c + up.value
        worst = max(worst, sum(m * math.ceil(span / cycles[v]) for v, m in per_worker.items())
                    - math.ceil(span / cycles[c]))
    return worst


class ClassCapabilities:
    """The capabilities of a protocol class, for questions asked before any instance exists (which kinds an
    algorithm accepts): class attributes as they are, and a capability that depends on the parameters (a property,
    such as ``periodic``'s family) as the base class's default."""

    def __init__(self, cls: type[Protocol]):
        self.cls = cls

    def __getattr__(self, name):
        value = getattr(self.cls, name)
        return getattr(Protocol, name) if isinstance(value, property) else value
