"""Shared memory with inconsistent reads (``shared_memory``) and the seed's serial-asynchronous schedule
(``serial_async``)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..params import kind, require, to_plain
from ..rng import Stream
from .cluster import LONGEST, Cluster, require_duration
from .durations import Durations
from .engine import Clock, Log
from .laws import Constant, DelayLaw
from .asynchronous import run_async
from .protocol import Family, Protocol, RealLoop, Sim, register
from .trace import Status, Trace


@register("shared_memory")
@dataclass(frozen=True, kw_only=True)
class SharedMemory(Protocol):
    """Lock-free shared memory with inconsistent reads (Hogwild, Niu et al. 2011; AsySG-incon, Lian et al. 2015).

    Worker w loops: read the shared vector, which takes ``read`` seconds (a delay law, drawn per (worker, step)
    from the READ stream), compute on what it read, and write its update (atomic per update; the cluster's server
    is the memory: ``server.service`` is the write time, ``server.slots`` how many writes proceed at once).  Its
    next read starts right after its write.  The vector is read in ``blocks`` contiguous coordinate blocks at
    evenly spaced instants from the start to the end of the read, and block b sees exactly the updates applied at
    or before its instant (applies come before reads at equal times).  The Trace records the versions the first
    and the last block saw (``read_version``, ``read_end``); the replay rebuilds the mixed iterate
    x_hat_k = x_k - sum_{j in J(k)} (x_{j+1} - x_j), restricted per block.  With ``read: 0`` every read is
    consistent and the trace equals ``async`` with zero link latency (up to exact ties of apply times).
    ``blocks: null`` means one block per coordinate (resolved to the problem's dimension when a scenario loads).
    """

    read: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    blocks: int | None = None
    family = Family.SHARED_MEMORY
    real_loop = RealLoop.HOGWILD

    def __post_init__(self):
        if self.blocks is not None:
            require(self.blocks >= 1, "blocks", "must be >= 1", self.blocks)
        require_duration(self.read, "read")

    @property
    def read_law(self):
        return self.read

    def resolve(self, problem):
        """``blocks: null`` becomes one block per coordinate of the problem, and blocks must not exceed its dim."""
        dim = problem.dim
        blocks = dim if self.blocks is None else self.blocks
        require(blocks <= dim, "protocol.blocks", f"must be <= the problem's dim ({dim})", blocks)
        return replace(self, blocks=blocks)

    def check_cluster(self, cluster: Cluster) -> None:
        for name in ("uplink", "downlink"):
            require(getattr(cluster, name) == Constant(value=0.0), f"cluster.{name}",
                    "must be 0 under protocol shared_memory (threads share memory; the read law times reads)",
                    to_plain(getattr(cluster, name)))
        require(not cluster.bandwidth_limited, "cluster.network",
                "and cluster.devices must set no bandwidth under protocol shared_memory (no links)",
                to_plain(cluster.network))
        off = cluster.interruption
        require(off is None, f"cluster.{off}", "is not supported by protocol shared_memory", "given")

    def trace(self, cluster, times, n_updates):
        require(self.blocks is not None, "protocol.blocks",
                "must be given when simulating without a problem (one block per coordinate needs its dimension)",
                None)
        sim = Sim(Clock(cluster.workers), cluster, times, n_updates, Log())
        run_async(sim, read_time=times.draws(Stream.READ, self.read))
        return inconsistent_reads(sim.log.trace(cluster.workers, kind(self)), self.blocks)


def inconsistent_reads(trace: Trace, blocks: int) -> Trace:
    """Set each row's ``read_version`` and ``read_end`` from the times: the number of updates applied at or before
    the first and the last block's read instant (t_read, and t_read_end when there is more than one block)."""
    applied = trace.update_times()[1:]
    last = trace.t_read_end if blocks > 1 else trace.t_read
    first_seen = np.minimum(np.searchsorted(applied, trace.t_read, side="right"), trace.update)
    last_seen = np.minimum(np.searchsorted(applied, last, side="right"), trace.update)
    return replace(trace, read_version=first_seen, read_end=last_seen, read_blocks=blocks)


@register("serial_async")
@dataclass(frozen=True, kw_only=True)
class SerialAsync(Protocol):
    """The serial-asynchronous schedule of the SEACD seed (Bornstein 2021): the last worker is slow.  Updates come
    in cycles of ``tau`` updates by the fast workers 0 .. n-2 in turn, each on the current iterate (staleness 0),
    then one update by the slow worker n-1 computed on the iterate right after its previous update (staleness
    exactly ``tau``; the first reads version 0).  Deterministic: update k is applied at (k+1) * ``seconds_per_update``
    and the cluster's timing laws are not used."""

    simulated = False
    bounds_staleness = True
    tau: int
    seconds_per_update: float = 1.0

    def __post_init__(self):
        require(self.tau >= 0, "tau", "must be >= 0", self.tau)
        require(0 < self.seconds_per_update <= LONGEST, "seconds_per_update", f"must be in (0, {LONGEST:g}]",
                self.seconds_per_update)

    def check_cluster(self, cluster: Cluster) -> None:
        require(cluster.workers >= 2, "cluster.workers", "must be >= 2 under serial_async (fast workers and a slow one)",
                cluster.workers)

    def staleness_bound(self, cluster, n_updates):
        return self.tau

    def trace(self, cluster: Cluster, times: Durations, n_updates: int) -> Trace:
        return serial_async_trace(cluster.workers, self.tau, n_updates, self.seconds_per_update)


def serial_async_trace(workers: int, tau: int, n_updates: int, seconds_per_update: float = 1.0) -> Trace:
    """The trace of :class:`SerialAsync`: see there."""
    k = np.arange(n_updates)
    slow = k % (tau + 1) == tau
    fast_index = np.cumsum(~slow) - 1                       # how many fast updates came before (for the turn)
    worker = np.where(slow, workers - 1, fast_index % (workers - 1))
    read = np.where(slow, k - tau, k)
    step = np.empty(n_updates, np.int64)
    for w in range(workers):
        mine = worker == w
        step[mine] = np.arange(mine.sum())
    dt = float(seconds_per_update)
    t_apply = (k + 1) * dt
    return Trace(n_workers=workers, protocol="serial_async", update=k, worker=worker, step=step, read_version=read,
                 round=np.full(n_updates, -1), status=np.full(n_updates, int(Status.APPLIED)), t_read=read * dt,
                 t_done=t_apply, t_arrive=t_apply, t_apply=t_apply)
