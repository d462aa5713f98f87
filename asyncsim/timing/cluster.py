"""The cluster: workers with compute-time laws and stragglers, links, and the server.  Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..params import require
from ..rng import StepDraws, Stream
from .laws import Constant, DelayLaw


@dataclass(frozen=True, kw_only=True)
class Straggler:
    """A persistent straggler: every compute time of ``worker`` is multiplied by ``slowdown``."""

    worker: int
    slowdown: float

    def __post_init__(self):
        require(self.worker >= 0, "worker", "must be >= 0", self.worker)
        require(self.slowdown > 0, "slowdown", "must be > 0", self.slowdown)


@dataclass(frozen=True, kw_only=True)
class Server:
    """The parameter server: one FIFO queue; each arriving contribution holds the server for a service time."""

    service: DelayLaw = field(default_factory=lambda: Constant(value=0.0))


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """n workers with a compute-time law (seconds per local computation), persistent stragglers, uplink
    (worker -> server) and downlink (server -> worker) latency laws, and a server with a service-time law."""

    workers: int
    compute: DelayLaw
    stragglers: tuple[Straggler, ...] = ()
    uplink: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    downlink: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    server: Server = field(default_factory=Server)

    def __post_init__(self):
        require(self.workers >= 1, "workers", "must be >= 1", self.workers)
        require(self.compute.mean > 0, "compute", "must have a mean > 0", self.compute)
        object.__setattr__(self, "stragglers", tuple(self.stragglers))
        seen = set()
        for i, s in enumerate(self.stragglers):
            require(s.worker < self.workers, f"stragglers[{i}].worker", f"must be < workers ({self.workers})", s.worker)
            require(s.worker not in seen, f"stragglers[{i}].worker", "must not repeat", s.worker)
            seen.add(s.worker)

    @property
    def slowdowns(self) -> tuple[float, ...]:
        """Per-worker compute-time multipliers (1.0 for workers that are not stragglers)."""
        factor = {s.worker: s.slowdown for s in self.stragglers}
        return tuple(factor.get(w, 1.0) for w in range(self.workers))


class Durations:
    """Keyed timing draws of one run: ``compute(w, s)``, ``uplink(w, s)``, ``downlink(w, s)``, ``service(w, s)``
    are the durations of worker w's step s, each from its own stream (DESIGN.md, "Randomness").  The downlink of
    step s is the reply that delivers the parameters step s reads (unused for s = 0: every worker starts at time 0
    with version 0)."""

    def __init__(self, cluster: Cluster, seed: int):
        def draws(stream: Stream, law: DelayLaw) -> StepDraws:
            return StepDraws(seed, stream, lambda g, n: law.sample(g, n).tolist())

        self._compute = draws(Stream.COMPUTE, cluster.compute)
        self._slowdown = cluster.slowdowns
        self.uplink = draws(Stream.UPLINK, cluster.uplink)
        self.downlink = draws(Stream.DOWNLINK, cluster.downlink)
        self.service = draws(Stream.SERVICE, cluster.server.service)

    def compute(self, worker: int, step: int) -> float:
        return self._compute(worker, step) * self._slowdown[worker]
