"""``trace_file``: a Trace built from an externally measured sequence of staleness values."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import read_text
from ..params import ScenarioError, require, resolve_path
from .cluster import LONGEST, Cluster
from .durations import Durations
from .protocol import Protocol, register
from .trace import Status, Trace


def read_delays(path: str | Path) -> np.ndarray:
    """Per-update staleness values from a text file, one number per line (whole numbers, possibly written as
    floats such as ``7.000000000000000000e+00``), as in the delay logs of Wu et al. (ICML 2022)."""
    p = resolve_path(path)
    text = read_text(p, "protocol.path")
    if not text.strip():
        raise ScenarioError(f"protocol.path {str(p)!r} holds no delays (the file is empty)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about a file without numbers: said below, in one line
            values = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=1)
    except ValueError as err:
        raise ScenarioError(f"protocol.path {str(p)!r}: not one number per line ({err})") from None
    if values.size == 0:
        raise ScenarioError(f"protocol.path {str(p)!r} holds no delays (only comments or blank lines)")
    if values.ndim != 1:
        raise ScenarioError(f"protocol.path {str(p)!r} must hold one delay per line, got {values.shape[1]} columns")
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values != np.round(values)) | (values > 2.0**62))
    if len(bad):
        rule = "must be at most 2**62" if values[bad[0]] > 2.0**62 else "must be a whole number >= 0"
        raise ScenarioError(f"protocol.path {str(p)!r} line {bad[0] + 1}: a delay {rule}, got "
                            f"{float(values[bad[0]])!r}")
    return values.astype(np.int64)


def first_read(delays: np.ndarray) -> np.ndarray:
    """The versions r_k = k - delays[k] the updates read; a delay larger than the number of earlier updates is an
    error naming it."""
    read = np.arange(len(delays)) - delays
    late = np.flatnonzero(read < 0)
    if len(late):
        i = int(late[0])
        raise ScenarioError(f"protocol.path: delay {delays[i]} of update {i} is larger than the number of earlier "
                            f"updates ({i})")
    return read


def delay_trace(delays: np.ndarray, seconds_per_update: float = 1.0, protocol: str = "trace_file") -> Trace:
    """The trace in which update k has staleness ``delays[k]``: it reads version r_k = k - delays[k].

    Times: version v exists at v * dt (update k is applied at (k+1) dt), a contribution reads at r_k dt and
    computes until it is applied.  Worker ids are assigned greedily: update k goes to the lowest-numbered worker
    that has finished all its earlier contributions by r_k dt, so the number of workers is the largest number of
    computations in flight at once (which the file implies but does not record).
    """
    delays = np.asarray(delays, dtype=np.int64)
    K = len(delays)
    k = np.arange(K)
    read = first_read(delays)
    free_from: list[int] = []  # per worker: the version from which it is idle again (its last update + 1)
    worker = np.empty(K, np.int64)
    step = np.empty(K, np.int64)
    steps: list[int] = []
    for i in range(K):
        r = read[i]
        w = next((w for w, v in enumerate(free_from) if v <= r), len(free_from))
        if w == len(free_from):
            free_from.append(0)
            steps.append(0)
        worker[i], step[i] = w, steps[w]
        steps[w] += 1
        free_from[w] = i + 1
    t_apply = (k + 1) * float(seconds_per_update)
    return Trace(n_workers=len(steps), protocol=protocol, update=k, worker=worker, step=step, read_version=read,
                 round=np.full(K, -1), status=np.full(K, int(Status.APPLIED)), t_read=read * float(seconds_per_update),
                 t_done=t_apply, t_arrive=t_apply, t_apply=t_apply)


@register("trace_file")
@dataclass(frozen=True, kw_only=True)
class TraceFile(Protocol):
    """Delays imported from a file of per-update staleness values (one per line), so that delays measured on a
    real system drive the update rules; see :func:`delay_trace` for the times and worker ids.  The cluster's
    timing is not used; ``seconds_per_update`` sets the time axis."""

    simulated = False
    bounds_staleness = True
    path: str
    seconds_per_update: float = 1.0
    delays: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        require(0 < self.seconds_per_update <= LONGEST, "seconds_per_update", f"must be in (0, {LONGEST:g}]",
                self.seconds_per_update)
        object.__setattr__(self, "path", str(resolve_path(self.path)))
        object.__setattr__(self, "delays", read_delays(self.path))

    def check_updates(self, n_updates):
        """The file must hold ``n_updates`` delays, each no larger than the number of updates before it."""
        if n_updates > len(self.delays):
            raise ScenarioError(f"run.updates must be <= the {len(self.delays)} delays in {self.path}, "
                                f"got {n_updates}")
        first_read(self.delays[:n_updates])

    def staleness_bound(self, cluster, n_updates):
        return int(self.delays[:n_updates].max(initial=0))

    def trace(self, cluster: Cluster, times: Durations, n_updates: int) -> Trace:
        self.check_updates(n_updates)
        return delay_trace(self.delays[:n_updates], self.seconds_per_update)
