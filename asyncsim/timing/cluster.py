"""The cluster: workers (compute-time laws, speeds, stragglers, transient slow phases, failures), links (alpha-beta
latency and bandwidth) and the server (service time, slots).  Plain frozen data; ``Durations`` turns it into the
keyed timing draws of one run.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from ..files import read_text
from ..params import ParamError, optional, require, resolve_path
from .availability import Availability
from .devices import Device, assign, check_devices
from .laws import Constant, DelayLaw, Empirical

LONGEST = 1e100
"""The largest mean duration (and the widest factor) a cluster may have, in seconds: beyond it the sums of
simulated times overflow float64 (1.8e308)."""
SHORTEST = 1e-12
"""The shortest mean compute time: shorter steps vanish in the sums of simulated times, which then stand still."""
MAX_CRASHES_PER_STEP = 5.0
"""Crash rate times the longest mean step: beyond it a worker would almost never finish a step."""


def require_duration(law: DelayLaw, name: str, shortest: float = 0.0) -> None:
    """A delay law's mean must be finite, at most LONGEST seconds and at least ``shortest``."""
    mean = law.mean
    require(math.isfinite(mean) and shortest <= mean <= LONGEST, name,
            f"must have a finite mean in [{shortest:g}, {LONGEST:g}] s (a pareto law needs alpha > 1)", law)


def require_factor(value: float, name: str) -> None:
    require(1 / LONGEST <= value <= LONGEST, name, f"must be in [{1 / LONGEST:g}, {LONGEST:g}]", value)


@dataclass(frozen=True, kw_only=True)
class Straggler:
    """A persistent straggler: every compute time of ``worker`` is multiplied by ``slowdown``."""

    worker: int
    slowdown: float

    def __post_init__(self):
        require(self.worker >= 0, "worker", "must be >= 0", self.worker)
        require_factor(self.slowdown, "slowdown")


@dataclass(frozen=True, kw_only=True)
class Transient:
    """Transient stragglers: every worker alternates between a normal phase and a slow phase (a two-state Markov
    process in simulated time, phase lengths exponential with means ``mean_normal`` and ``mean_slow`` seconds; every
    worker starts in its normal phase).  In a slow phase a worker computes ``slowdown`` times slower, so a
    computation that straddles a phase change is sped up or slowed down part-way.  In the long run a worker is slow
    a fraction mean_slow / (mean_normal + mean_slow) of the time."""

    mean_normal: float
    mean_slow: float
    slowdown: float

    def __post_init__(self):
        require(0 < self.mean_normal <= LONGEST, "mean_normal", f"must be in (0, {LONGEST:g}]", self.mean_normal)
        require(0 < self.mean_slow <= LONGEST, "mean_slow", f"must be in (0, {LONGEST:g}]", self.mean_slow)
        require(1 <= self.slowdown <= LONGEST, "slowdown", f"must be in [1, {LONGEST:g}]", self.slowdown)


@dataclass(frozen=True, kw_only=True)
class Failures:
    """Worker crashes: each worker is up for an exponential time of rate ``rate`` (crashes per second), then down
    for a time drawn from ``downtime``, then rejoins with fresh parameters (the server's current version), and so on.
    Work in progress when a worker crashes (computing or sending) is lost, and so is a reply it was waiting for; a
    message that already reached the server is not."""

    rate: float
    downtime: DelayLaw

    def __post_init__(self):
        require(0 < self.rate <= LONGEST, "rate", f"must be in (0, {LONGEST:g}]", self.rate)
        require_duration(self.downtime, "downtime")


@dataclass(frozen=True, kw_only=True)
class ColdStart:
    """A serverless cold start: each invocation, independently with ``probability``, starts ``time`` seconds late
    (a container is provisioned and the runtime loaded before the task's work begins)."""

    probability: float
    time: DelayLaw

    def __post_init__(self):
        require(0 <= self.probability <= 1, "probability", "must be in [0, 1]", self.probability)
        require_duration(self.time, "time")


@dataclass(frozen=True, kw_only=True)
class Serverless:
    """Workers are serverless invocations (AWS Lambda and the like, the platform of Bartan and Pilanci's and Gupta
    et al.'s coded and sketched experiments): every task is one invocation, whose time is the cluster's compute law
    (choose a heavy-tailed one, ``pareto`` or ``lognormal``) times the task's load, after an optional
    ``cold_start``.  With ``concurrency`` C, at most C invocations run at once: an invocation that finds the C slots
    busy waits for the first to free (requests in order of time, those of one instant in worker order); an
    invocation cancelled by its protocol after it started still holds its slot until it would have finished (a
    function runs to completion and is billed), and one cancelled while it waits leaves the queue.  Waiting for a
    slot and the cold start count in the task's compute span."""

    cold_start: ColdStart | None = None
    concurrency: int | None = None

    def __post_init__(self):
        require(self.concurrency is None or self.concurrency >= 1, "concurrency", "must be >= 1 (or null: no cap)",
                self.concurrency)


@dataclass(frozen=True, kw_only=True)
class Network:
    """The beta part of the alpha-beta link model: a message of m bytes takes latency + m / bandwidth seconds.
    Bandwidths are in bytes per second (None: infinite); ``message_bytes`` defaults to the problem's dimension
    times 8 (float64 parameters or gradients)."""

    uplink_bandwidth: float | None = None
    downlink_bandwidth: float | None = None
    message_bytes: int | None = None

    def __post_init__(self):
        for name in ("uplink_bandwidth", "downlink_bandwidth"):
            value = getattr(self, name)
            require(value is None or 1 / LONGEST <= value, name, f"must be >= {1 / LONGEST:g} (or null for "
                    "infinite)", value)
        require(self.message_bytes is None or self.message_bytes >= 0, "message_bytes", "must be >= 0",
                self.message_bytes)

    def transfer(self, message_bytes: int) -> tuple[float, float]:
        """(uplink, downlink) seconds of the beta term m / bandwidth (0 for an infinite bandwidth)."""
        return tuple(0.0 if bw is None else message_bytes / bw
                     for bw in (self.uplink_bandwidth, self.downlink_bandwidth))


@dataclass(frozen=True, kw_only=True)
class ComputeTrace:
    """Trace-driven compute times: a CSV file with one column per worker (seconds, a header row optional); worker
    w's step s takes row s of column w, from the top again when the file is exhausted if ``cycle``."""

    path: str
    cycle: bool = True
    table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        p = resolve_path(self.path)
        object.__setattr__(self, "path", str(p))
        text = read_text(p, "cluster.compute_trace.path")
        require(text.strip() != "", "path", "must hold at least one row of numbers (the file is empty)", self.path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about a file without data rows: said below, in one line
            try:
                table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64)
            except ValueError:  # a header row
                try:
                    table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64, skiprows=1)
                except ValueError as err:
                    raise ParamError(f"path {self.path!r} must be a CSV file of numbers, one column per worker "
                                     f"(a header row allowed): {' '.join(str(err).split())}") from None
        require(table.size > 0, "path", "must hold at least one row of numbers below its header", self.path)
        bad = np.argwhere(~np.isfinite(table) | (table < 0))
        require(len(bad) == 0, "path", "must hold finite compute times >= 0 only",
                f"{table[tuple(bad[0])]} in data row {bad[0][0] + 1}" if len(bad) else None)
        table.flags.writeable = False
        object.__setattr__(self, "table", table)


@dataclass(frozen=True, kw_only=True)
class Server:
    """The parameter server: a FIFO queue in front of ``slots`` identical service slots; each contribution holds a
    slot for a service time.  Contributions waiting in the queue start service in arrival order."""

    service: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    slots: int = 1

    def __post_init__(self):
        require(self.slots >= 1, "slots", "must be >= 1", self.slots)
        require_duration(self.service, "service")


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """n workers and their links to one server.

    Worker w's compute time at step s is ``X * slowdown_w / speed_w`` where X is drawn from ``compute`` (one law for
    all, or a list of n laws) or read from ``compute_trace``; ``speeds`` (default all 1) and ``stragglers``
    (persistent slowdowns) make workers heterogeneous; ``transient`` adds random slow phases and ``failures`` crashes;
    ``availability`` takes workers (federated clients) offline and back (``timing.availability``: a task in
    progress when its worker goes offline is lost, as at a crash); ``serverless`` makes every task an invocation
    with cold starts and a concurrency cap.
    A message takes the latency drawn from ``uplink`` / ``downlink`` plus its size over the bandwidth of ``network``.
    With ``flops_per_second``, X is in units of one step's arithmetic: the compute time is X * flops / rate, with
    the flops of a step from the algorithm and the problem (a full gradient, a minibatch, a coordinate block), so
    that a constant law of value 1 times exactly the work (see :meth:`per_step`).
    """

    workers: int
    compute: DelayLaw | tuple[DelayLaw, ...] | None = None
    compute_trace: ComputeTrace | None = None
    speeds: tuple[float, ...] = ()
    stragglers: tuple[Straggler, ...] = ()
    transient: Transient | None = None
    failures: Failures | None = None
    availability: Availability | None = None
    uplink: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    downlink: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    network: Network = field(default_factory=Network)
    server: Server = field(default_factory=Server)
    serverless: Serverless | None = None
    flops_per_second: float | None = None
    devices: tuple[Device, ...] | None = optional()
    data_sizes: tuple[float, ...] | None = optional()
    """Each worker's (client's) amount of data, for selection weighted by data size; with a ``split``, the run
    sets it to the shards' sizes."""
    device_of: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    """Each worker's index in ``devices`` (``devices.assign``; empty without devices)."""

    def __post_init__(self):
        n = self.workers
        require(self.flops_per_second is None or self.flops_per_second >= 1 / LONGEST, "flops_per_second",
                f"must be >= {1 / LONGEST:g} (or null: compute times in seconds)", self.flops_per_second)
        require(n >= 1, "workers", "must be >= 1", n)
        require((self.compute is None) != (self.compute_trace is None), "compute",
                "must be given, or compute_trace instead (exactly one of the two)", self.compute)
        if isinstance(self.compute, (list, tuple)):
            object.__setattr__(self, "compute", tuple(self.compute))
            require(len(self.compute) == n, "compute", f"must be one law or a list of one law per worker ({n})",
                    f"a list of {len(self.compute)}")
        if self.compute_trace is not None:
            cols = self.compute_trace.table.shape[1]
            require(cols >= n, "compute_trace.path", f"must have one column per worker ({n})", f"{cols} columns")
        given = self.laws if self.compute_trace is not None or isinstance(self.compute, tuple) else (self.compute,)
        for w, law in enumerate(given):  # one law for all is checked once: nothing here grows with the workers
            name = "compute" if self.compute_trace is None else "compute_trace"
            require(law.mean > 0, name, "must have a mean > 0", law if len(given) == 1 else f"worker {w}: {law}")
            require_duration(law, name if len(given) == 1 else f"{name}[{w}]", SHORTEST)
        for name in ("uplink", "downlink"):
            require_duration(getattr(self, name), name)
        object.__setattr__(self, "speeds", tuple(float(v) for v in self.speeds))
        require(len(self.speeds) in (0, n), "speeds", f"must list one speed per worker ({n})", list(self.speeds))
        require(all(v > 0 for v in self.speeds), "speeds", "must all be > 0", list(self.speeds))
        for w, v in enumerate(self.speeds):
            require_factor(v, f"speeds[{w}]")
        object.__setattr__(self, "stragglers", tuple(self.stragglers))
        seen = set()
        for i, s in enumerate(self.stragglers):
            require(s.worker < n, f"stragglers[{i}].worker", f"must be < workers ({n})", s.worker)
            require(s.worker not in seen, f"stragglers[{i}].worker", "must not repeat", s.worker)
            seen.add(s.worker)
        if self.data_sizes is not None:
            object.__setattr__(self, "data_sizes", tuple(float(v) for v in self.data_sizes))
            require(len(self.data_sizes) == n, "data_sizes", f"must list one size per worker ({n})",
                    f"a list of {len(self.data_sizes)}")
            bad = next((i for i, v in enumerate(self.data_sizes) if not 0 <= v <= LONGEST), None)
            require(bad is None, f"data_sizes[{bad}]", f"must be in [0, {LONGEST:g}]",
                    None if bad is None else self.data_sizes[bad])
            require(sum(self.data_sizes) > 0, "data_sizes", "must not all be 0", "all 0")
        if self.devices is not None:
            object.__setattr__(self, "devices", tuple(self.devices))
            require(len(self.devices) >= 1, "devices", "must list at least one profile (or be null)", [])
            check_devices(self.devices)
            object.__setattr__(self, "device_of", assign(self.devices, n))
        require(self.serverless is None or self.failures is None, "failures", "must be null with serverless "
                "workers (an invocation that fails is retried by the platform, which is not modelled)", "given")
        require(self.serverless is None or self.availability is None, "availability", "must be null with "
                "serverless workers (an invocation runs whenever it is called)", "given")
        require(self.failures is None or self.availability is None, "availability", "must be null with failures "
                "(one model takes workers offline: failures for crashes, availability for clients)", "given")
        slowest = max(s.slowdown for s in self.stragglers) if self.stragglers else 1.0
        device = [d.speed for d in self.devices] if self.devices else [1.0]
        step = max(law.mean for law in given) * slowest / (min(self.speeds or (1.0,)) * min(device))  # longest mean
        if self.availability is not None:
            try:
                self.availability.check_workers(n)
                if self.flops_per_second is None:  # (else steps are in flops: their seconds are known at run time)
                    self.availability.check_steps(min(law.mean for law in given)
                                                  / (max(self.speeds or (1.0,)) * max(device)), step)
            except ParamError as err:
                raise ParamError(f"availability.{err}") from None
        if self.failures is not None and self.flops_per_second is None:
            require(self.failures.rate * step <= MAX_CRASHES_PER_STEP, "failures.rate",
                    f"must leave time to finish a step: rate x the longest mean step ({step:.4g} s) must be <= "
                    f"{MAX_CRASHES_PER_STEP:g} (each step would need about e^(rate x step) attempts)",
                    self.failures.rate)

    def per_step(self, flops: float) -> "Cluster":
        """The cluster whose compute law is in seconds, for steps of ``flops`` operations each: every speed is
        multiplied by flops_per_second / flops (unchanged without ``flops_per_second``)."""
        if self.flops_per_second is None:
            return self
        rate = self.flops_per_second / flops
        return replace(self, speeds=tuple(v * rate for v in (self.speeds or (1.0,) * self.workers)),
                       flops_per_second=None)

    @property
    def factors(self) -> tuple[float, ...]:
        """Per-worker compute-time multipliers: slowdown / (speed x device speed) (1.0 for a plain worker)."""
        slow = {s.worker: s.slowdown for s in self.stragglers}
        speeds = self.speeds or (1.0,) * self.workers
        if self.devices:
            fast = [d.speed for d in self.devices]
            speeds = [v * fast[p] for v, p in zip(speeds, self.device_of)]
        return tuple(slow.get(w, 1.0) / speeds[w] for w in range(self.workers))

    def transfers(self, message_bytes: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-worker (uplink, downlink) seconds of the beta term m / bandwidth: the network's bandwidths, or a
        worker's device's where its profile gives them (0 for an infinite bandwidth)."""
        up, down = self.network.transfer(message_bytes)
        if not self.devices:
            return (up,) * self.workers, (down,) * self.workers
        net = self.network
        per = [Network(uplink_bandwidth=d.uplink_bandwidth or net.uplink_bandwidth,
                       downlink_bandwidth=d.downlink_bandwidth or net.downlink_bandwidth).transfer(message_bytes)
               for d in self.devices]
        return tuple(per[p][0] for p in self.device_of), tuple(per[p][1] for p in self.device_of)

    @property
    def bandwidth_limited(self) -> bool:
        """True when a link has a finite bandwidth (the network's, or a device's): its times then depend on the
        message size."""
        return self.uplink_limited or self.downlink_limited

    @property
    def uplink_limited(self) -> bool:
        return self.network.uplink_bandwidth is not None or any(d.uplink_bandwidth for d in self.devices or ())

    @property
    def downlink_limited(self) -> bool:
        return self.network.downlink_bandwidth is not None or any(d.downlink_bandwidth for d in self.devices or ())

    @property
    def laws(self) -> tuple[DelayLaw, ...]:
        """Per-worker compute-time laws before the factors (for a compute trace: each column's values, resampled)."""
        if self.compute_trace is not None:
            t = self.compute_trace.table
            return tuple(Empirical(values=tuple(t[:, w])) for w in range(self.workers))
        if isinstance(self.compute, tuple):
            return self.compute
        return (self.compute,) * self.workers

    @property
    def interruption(self) -> str | None:
        """The field whose model takes workers offline mid-task ('failures' or 'availability'), or None: the one
        question the protocols, the real mode and the checks ask of either."""
        return "failures" if self.failures is not None else "availability" if self.availability is not None else None

    @property
    def independent(self) -> bool:
        """True when the timing of each worker depends on no other worker and on no time-varying state: no server
        contention (service time 0), no transient slow phases, no failures or availability, no serverless
        invocations (their cold starts and slots).  The fast path needs this."""
        service = self.server.service
        return (isinstance(service, Constant) and service.value == 0.0 and self.transient is None
                and self.interruption is None and self.serverless is None)

