"""When each worker (a federated client) is online: ``cluster.availability``.

Three models, each a frozen dataclass registered under a YAML ``kind``:

- ``on_off``: a two-state Markov process per client, online and offline periods exponential with means
  ``mean_online`` and ``mean_offline`` seconds, started in its stationary law (online at time 0 with probability
  mean_online / (mean_online + mean_offline)); with ``daily``, a client is moreover online only within its daily
  window;
- ``daily``: a daily window per client, online in [o + j P, o + j P + h) for every integer j (h = ``online_hours``
  x 3600 s, P = ``period`` s, o uniform in [0, P) per client: time zones and charging habits);
- ``trace``: the intervals of a CSV file, one row ``client,start,end`` per online interval [start, end) in
  seconds (a header row allowed); a client without a row is never online, and each is offline after its last
  interval.

A model gives each worker a schedule (``schedules``) that answers two questions, in simulated seconds:
``next_on(t)`` (t if online at t, else when it next comes online; inf if never) and ``next_off(t)`` (for t online,
the end of that online period; t if offline).  Online periods are half-open, [start, end): a task that arrives at
exactly ``end`` still counts, as a failure at the instant of an arrival does (``Durations.crash_after``).  The
failures model (``cluster.failures``) is the same two-state process with a general down time, started online.
"""

from __future__ import annotations

import io
import math
from array import array
import warnings
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from ..files import read_text
from ..params import ParamError, Registry, require, resolve_path
from ..rng import BLOCK, Stream, generator

LONGEST = 1e100
"""The longest mean period, in seconds (as for every other cluster duration)."""
PRECISION = 1e12
"""The largest time a model may name, in shortest mean steps: at 1e12 steps a step keeps about 4 of float64's 16
significant digits in the sums of simulated time."""
MAX_STEPS_PER_ONLINE = 5.0
"""The longest mean step over ``mean_online``, as for failures' rate (``cluster.MAX_CRASHES_PER_STEP``)."""
DAY = 86400.0


class Availability:
    """Base class of availability models; ``Availability.registry`` maps YAML ``kind`` names to models."""

    registry = Registry("availability")

    def schedules(self, seed: int, workers: int) -> list:
        """One schedule per worker (objects with ``next_on(t)`` and ``next_off(t)``), drawn lazily from keyed
        streams."""
        raise NotImplementedError

    def check_workers(self, workers: int) -> None:
        """Raise ParamError if the model cannot describe ``workers`` clients (default: any number)."""

    def never_online(self, workers: int) -> list[int]:
        """The clients below ``workers`` that are never online (default: none)."""
        return []

    def check_steps(self, shortest: float, longest: float) -> None:
        """Raise ParamError if the model's times do not suit steps whose mean lengths are in [shortest, longest]
        seconds: a step must fit in an online period, and no time the model names may be so large that a step
        vanishes in the float64 sums of simulated time (at most PRECISION steps)."""
        name, value = self.horizon
        require(value <= PRECISION * shortest, name, f"must be at most {PRECISION:g} x the shortest mean step "
                f"({PRECISION * shortest:.4g} s; beyond, a step vanishes in the float64 sums of simulated time)",
                value)

    @property
    def horizon(self) -> tuple[str, float]:
        """The field that names the longest wait the model can make a client go through, and that time in seconds
        (a mean offline period, the night of a daily window, the last interval's start): a run may reach it."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Window:
    """Online ``online_hours`` h a day: client c is online in [o_c + j P, o_c + j P + h) for every integer j,
    P = ``period`` seconds (a day), o_c uniform in [0, P) (drawn from the WINDOW stream keyed by c)."""

    online_hours: float
    period: float = DAY

    def __post_init__(self):
        require(0 < self.period <= LONGEST, "period", f"must be in (0, {LONGEST:g}] s", self.period)
        require(0 < self.online_hours * 3600 <= self.period, "online_hours", f"must be in (0, period / 3600 = "
                f"{self.period / 3600:g}]", self.online_hours)

    def schedules(self, seed, workers):
        return [_Window(seed, w, self.online_hours * 3600.0, self.period) for w in range(workers)]

    def check_window(self, longest: float) -> None:
        require(self.online_hours * 3600 >= longest, "online_hours", f"must give a window at least as long as the "
                f"longest mean step ({longest:.4g} s = {longest / 3600:.3g} h), or few tasks would ever finish",
                self.online_hours)


@Availability.registry.register("daily")
@dataclass(frozen=True, kw_only=True)
class Daily(Window, Availability):
    __doc__ = Window.__doc__

    @property
    def horizon(self):
        return "period (less the window: the night)", self.period - self.online_hours * 3600

    def check_steps(self, shortest, longest):
        Availability.check_steps(self, shortest, longest)
        self.check_window(longest)


@Availability.registry.register("on_off")
@dataclass(frozen=True, kw_only=True)
class OnOff(Availability):
    """A two-state Markov process per client: online and offline periods exponential with means ``mean_online``
    and ``mean_offline`` seconds, in the stationary law from time 0 (online with probability
    mean_online / (mean_online + mean_offline), the first period exponential too: memorylessness).  With ``daily``
    a client is online only when both its on/off process and its daily window say so."""

    mean_online: float
    mean_offline: float
    daily: Window | None = None

    def __post_init__(self):
        for name in ("mean_online", "mean_offline"):
            value = getattr(self, name)
            require(0 < value <= LONGEST, name, f"must be in (0, {LONGEST:g}] s", value)

    @property
    def online_fraction(self) -> float:
        """The long-run fraction of time a client is online (before any daily window)."""
        return self.mean_online / (self.mean_online + self.mean_offline)

    @property
    def horizon(self):
        night = self.daily.period - self.daily.online_hours * 3600 if self.daily else 0.0
        if self.mean_offline >= night:
            return "mean_offline", self.mean_offline
        return "daily.period (less the window: the night)", night

    def check_steps(self, shortest, longest):
        Availability.check_steps(self, shortest, longest)
        require(longest <= MAX_STEPS_PER_ONLINE * self.mean_online, "mean_online", f"must leave time to finish a "
                f"step: the longest mean step ({longest:.4g} s) must be at most {MAX_STEPS_PER_ONLINE:g} x "
                "mean_online (each task would need about e^(step / mean_online) tries)", self.mean_online)
        if self.daily is not None:
            try:
                self.daily.check_window(longest)
            except ParamError as err:
                raise ParamError(f"daily.{err}") from None

    def schedules(self, seed, workers):
        on, off = self.mean_online, self.mean_offline
        out = [Alternating(seed, Stream.AVAILABILITY, w, exponential(on), exponential(off),
                           start_online=self.online_fraction) for w in range(workers)]
        if self.daily is not None:
            out = [_Both(a, b) for a, b in zip(out, self.daily.schedules(seed, workers))]
        return out


@Availability.registry.register("trace")
@dataclass(frozen=True, kw_only=True)
class AvailabilityTrace(Availability):
    """Online intervals from a CSV file of rows ``client,start,end`` (seconds, 0 <= start < end, finite; a header
    row allowed; the intervals of one client must not overlap, in any order; touching ones are joined).  Clients are
    numbered from 0; one without a row is never online."""

    path: str
    intervals: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        p = resolve_path(self.path)
        object.__setattr__(self, "path", str(p))
        text = read_text(p, "cluster.availability.path")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about a file without data rows: said below, in one line
            table = None
            for skip in (0, 1):  # without, then with a header row
                try:
                    table = np.loadtxt(io.StringIO(text), delimiter=",", ndmin=2, dtype=np.float64, skiprows=skip)
                    break
                except ValueError as err:
                    reason = " ".join(str(err).split())
        if table is None:
            raise ParamError(f"path {self.path!r} must be a CSV file of rows client,start,end (a header row "
                             f"allowed): {reason}")
        require(table.size > 0, "path", "must hold rows of three numbers client,start,end (it has no data row)",
                self.path)
        require(table.shape[1] == 3, "path", "must hold rows of three numbers client,start,end",
                f"{table.shape[1]} columns")
        client, start, end = table.T
        bad = ~(np.isfinite(table).all(axis=1) & (client >= 0) & (client == np.floor(client)) & (client <= 2**31)
                & (start >= 0) & (start < end))
        require(not bad.any(), "path", "must hold rows client (an integer >= 0), start, end with 0 <= start < end, "
                "all finite", f"data row {int(np.argmax(bad)) + 1}: {table[np.argmax(bad)].tolist()}")
        intervals: dict[int, list[float]] = {}
        for c in np.unique(client).astype(int).tolist():
            rows = table[client == c]
            rows = rows[np.argsort(rows[:, 1], kind="stable")]
            flat: list[float] = []
            for start, end in rows[:, 1:].tolist():
                require(not flat or start >= flat[-1], "path", "must not hold overlapping intervals of one client",
                        f"client {c}: [{flat[-2] if flat else ''}, {flat[-1] if flat else ''}) and [{start}, {end})")
                if flat and start == flat[-1]:  # touching: one interval
                    flat[-1] = end
                else:
                    flat += [start, end]
            intervals[c] = flat
        object.__setattr__(self, "intervals", intervals)

    @property
    def horizon(self):
        return "path (its last start)", max(flat[-2] for flat in self.intervals.values())

    @property
    def clients(self) -> int:
        """One more than the largest client numbered in the file."""
        return max(self.intervals) + 1

    def never_online(self, workers):
        return [c for c in range(workers) if c not in self.intervals]

    def check_workers(self, workers):
        require(self.clients <= workers, "path", f"must number clients below cluster.workers ({workers})",
                f"client {self.clients - 1}")

    def schedules(self, seed, workers):
        return [Intervals(self.intervals.get(w, [])) for w in range(workers)]


class Alternating:
    """An alternating renewal process of one worker: intervals A_0, B_0, A_1, B_1, ... from time 0 (A: online or
    up, B: offline or down), A lengths from ``sample_a`` and B lengths from ``sample_b``, drawn a block of BLOCK
    pairs at a time from the keyed stream.  With ``start_online`` p, A_0 has length 0 with probability 1 - p (one
    uniform drawn after block 0's lengths): the process starts offline."""

    def __init__(self, seed, stream, worker, sample_a, sample_b, start_online: float = 1.0):
        self.key = (seed, stream, worker)
        self.sample_a, self.sample_b = sample_a, sample_b
        self.start_online = start_online
        self.ends = array("d")  # (8 bytes a period end: a population of clients holds a block of each)

    def _grow(self):
        g = generator(*self.key, len(self.ends) // (2 * BLOCK))
        a, b = self.sample_a(g, BLOCK), self.sample_b(g, BLOCK)
        if not self.ends and self.start_online < 1.0 and g.random() >= self.start_online:
            a[0] = 0.0
        steps = np.empty(2 * BLOCK + 1)
        steps[0] = self.ends[-1] if self.ends else 0.0
        steps[1::2], steps[2::2] = a, b
        self.ends.frombytes(np.cumsum(steps)[1:].tobytes())  # (a running sum: each end is the previous plus a length)

    def locate(self, t: float) -> int:
        """The index i of the interval [end(i-1), end(i)) that contains t (even: A, odd: B)."""
        while not self.ends or self.ends[-1] <= t:
            self._grow()
        return bisect_right(self.ends, t)

    def end(self, i: int) -> float:
        while i >= len(self.ends):
            self._grow()
        return self.ends[i]

    def next_on(self, t: float) -> float:
        i = self.locate(t)
        return t if i % 2 == 0 else self.end(i)

    def next_off(self, t: float) -> float:
        i = self.locate(t)
        return self.end(i) if i % 2 == 0 else t


class Intervals:
    """Given online intervals [s_1, e_1), [s_2, e_2), ... (sorted, disjoint; ``flat`` = [s_1, e_1, s_2, ...])."""

    def __init__(self, flat: list[float]):
        self.bounds = flat

    def next_on(self, t):
        i = bisect_right(self.bounds, t)  # odd: inside [s, e)
        if i % 2 == 1:
            return t
        return self.bounds[i] if i < len(self.bounds) else math.inf

    def next_off(self, t):
        i = bisect_right(self.bounds, t)
        return self.bounds[i] if i % 2 == 1 else t


class _Window:
    """Online in [s_j, s_j + h) for every integer j, s_j = o + j P, o uniform in [0, P) (drawn when first asked).
    Every window start is computed by that one formula, and t is placed by comparing it with the starts so computed
    (never by a floor of t alone, which can round across a start), so the start that ``next_on`` returns is online
    when asked again."""

    def __init__(self, seed, worker, h, period):
        self.key, self.h, self.period = (seed, Stream.WINDOW, worker), h, period
        self.offset = None

    def _s(self, j):
        return self.offset + j * self.period

    def _index(self, t):  # the j with s_j <= t < s_{j+1}
        if self.offset is None:
            self.offset = float(generator(*self.key).random()) * self.period
        j = math.floor((t - self.offset) / self.period)
        while self._s(j + 1) <= t:
            j += 1
        while self._s(j) > t:
            j -= 1
        return j

    def next_on(self, t):
        j = self._index(t)
        return t if t < self._s(j) + self.h else self._s(j + 1)

    def next_off(self, t):
        j = self._index(t)
        end = self._s(j) + self.h
        return end if t < end else t


class _Both:
    """Online when both schedules are."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def next_on(self, t):
        while True:
            r = self.b.next_on(self.a.next_on(t))
            if r == t or not math.isfinite(r):
                return r
            t = r

    def next_off(self, t):
        return min(self.a.next_off(t), self.b.next_off(t))


def exponential(mean: float):
    """A sampler of exponential lengths of the given mean (the lengths of the on/off and failure processes)."""
    return lambda g, n: g.exponential(mean, n)
