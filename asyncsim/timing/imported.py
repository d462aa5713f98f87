"""``trace_file``: a Trace built from a delay log measured on a real system (one delay per update, or PIAG's matrix
of per-worker ages)."""

from __future__ import annotations

import heapq
import io
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..files import read_text
from ..params import ScenarioError, require, resolve_path
from .cluster import LONGEST, Cluster
from .durations import Durations
from .protocol import Family, Protocol, register
from .trace import Status, Trace


LAYOUTS = ("auto", "per_update", "per_worker")


MAX_COLUMNS = 100_000
"""At most this many columns (workers) in a per-worker-age matrix."""


def read_delays(path: str | Path, layout: str = "auto", field: str = "protocol.path") -> np.ndarray:
    """The delays of a delay log, as in the logs of Wu et al. (ICML 2022): a vector of per-update staleness
    values, or a matrix of per-worker ages.

    The one reader for delay files.  It takes comments (``#``), blank lines, a UTF-8 byte-order mark, CRLF line
    ends, comma or whitespace separators, and one optional header line (names such as ``delay`` or ``k,delay``).
    Layouts (``layout: auto`` tells them apart): ``per_update``, one delay per update (a single column, or a
    ``delay`` column next to an index column ``k`` counting 0, 1, ...), returned as a vector; ``per_worker``, a
    per-worker-age matrix (several numeric columns: PIAG's log, one row per iteration k and one column per worker
    w, the age of w's latest gradient in iteration k's aggregate), returned as a (K, n) matrix (see
    :func:`age_trace`).  Delays are whole numbers >= 0, possibly written as floats (``7.000000000000000000e+00``).
    Every malformed file is one line naming ``field``, the file, the line and what was expected, and so is a log
    no run can have made (:func:`impossible`).
    """
    p = resolve_path(path)
    where = f"{field} {str(p)!r}"
    content = read_text(p, field)
    header, table = _numpy_table(content)
    if table is None:  # not a clean table: read it line by line, which names the first bad line
        header, table = _line_table(content, where)
    column = _delay_column(table, header, where, layout)
    values = table if column is None else table[:, column]
    flat = values.reshape(len(values), -1)
    bad = np.argwhere(~np.isfinite(flat) | (flat < 0) | (flat != np.round(flat)) | (flat > 2.0**62))
    if len(bad):
        value = float(flat[tuple(bad[0])])
        rule = "must be at most 2**62" if value > 2.0**62 else "must be a whole number >= 0"
        raise ScenarioError(f"{where} line {_line_of(content, bad[0][0])}: a delay {rule}, got {value!r}")
    values = values.astype(np.int64)
    bad = impossible(values)
    if bad is not None:
        raise ScenarioError(f"{where} line {_line_of(content, bad[0])}: {bad[1]}")
    return values


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _fields(text: str) -> list[str]:
    """A line's fields: comma-separated (spaces around a comma allowed; an empty field kept, as ''), else
    whitespace-separated."""
    return [f.strip() for f in text.split(",")] if "," in text else text.split()


def _header(fields: list[str]) -> list[str] | None:
    """The first line's fields as a header (lower case) when they are all names, else None."""
    return [f.lower() for f in fields] if all(NAME.fullmatch(f) for f in fields) else None


def _numpy_table(content: str) -> tuple[list[str] | None, np.ndarray | None]:
    """(header, table) of a well-formed log, parsed in numpy's C reader (a log of 64 MiB in seconds, in about the
    memory of its numbers); (None, None) when the file is not a clean table of numbers, for :func:`_line_table`
    to say why."""
    body = re.sub(r"#[^\r\n]*", "", content)
    if re.search(r",[ \t]*(,|$)|^[ \t]*,", body, re.M):
        return None, None  # an empty field
    body = body.replace(",", " ")
    first = re.search(r"\S[^\r\n]*", body)
    if first is None or len(first.group().split(None, MAX_COLUMNS)) > MAX_COLUMNS:
        return None, None
    header = _header(first.group().split())
    if header is not None:
        body = body[:first.start()] + body[first.end():]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy warns about a file without data rows: said by _line_table
            table = np.loadtxt(io.StringIO(body.replace("\r", "\n")), ndmin=2, dtype=np.float64, comments=None)
    except ValueError:
        return None, None
    if not table.size or (header is not None and len(header) != table.shape[1]):
        return None, None
    return header, table


def _line_table(content: str, where: str) -> tuple[list[str] | None, np.ndarray]:
    """(header, table) read line by line; every malformed file raises one line naming its first bad line."""
    rows, header, first_line = [], None, None
    for number, line in enumerate(content.splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if first_line is None and len(re.split(r"[,\s]+", text, maxsplit=MAX_COLUMNS)) > MAX_COLUMNS:
            got = f"{text.count(',') + 1:,}" if "," in text else f"more than {MAX_COLUMNS:,}"
            raise ScenarioError(f"{where} line {number}: at most {MAX_COLUMNS:,} values (workers) per line, got {got}")
        fields = _fields(text)
        if first_line is None:
            first_line = number
            header = _header(fields)
            if header is not None:
                continue
        if "" in fields:
            raise ScenarioError(f"{where} line {number}: an empty field (value {fields.index('') + 1})")
        try:
            rows.append((number, [float(f) for f in fields]))
        except ValueError:
            bad = next(f for f in fields if not _is_number(f))
            raise ScenarioError(f"{where} line {number}: expected numbers (delays), got {bad!r}") from None
    if not rows:
        raise ScenarioError(f"{where} is empty" if not content.strip() else
                            f"{where} holds no delays (only comments or blank lines)" if header is None else
                            f"{where} holds no delays (a header and no numbers)")
    width, like = (len(header), "the header") if header is not None else (len(rows[0][1]), "the first row")
    for number, values in rows:
        if len(values) != width:
            raise ScenarioError(f"{where} line {number}: expected {width} value{'s' * (width != 1)} like {like}, "
                                f"got {len(values)}")
    return header, np.array([v for _, v in rows], dtype=np.float64)


def _line_of(content: str, row: int) -> int:
    """The line number (from 1) of data row ``row`` (from 0) of a log: the lines that hold more than a comment,
    after the header if there is one."""
    numbers, texts = [], []
    for number, line in enumerate(content.splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            numbers.append(number)
            texts.append(text)
    return numbers[row + (_header(_fields(texts[0])) is not None)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _delay_column(table: np.ndarray, header: list[str] | None, where: str, layout: str) -> int | None:
    """Which column holds the per-update delays (see ``read_delays``), or None for a per-worker-age matrix."""
    width = table.shape[1]
    if layout == "per_worker":
        return None
    if width == 1:
        return 0
    index = header is not None and width == 2 and header[0] in ("k", "update", "iteration", "index")
    if index:
        k = table[:, 0]
        start = k[0]
        if start not in (0, 1) or not np.array_equal(k, start + np.arange(len(k))):
            raise ScenarioError(f"{where}: column {header[0]!r} must count updates 0, 1, 2, ... (or from 1)")
        return 1
    if header is not None and "delay" in header and width == 2:
        return header.index("delay")
    if layout == "per_update":
        raise ScenarioError(f"{where}: protocol.layout per_update needs one delay per line (or an index column k "
                            f"and a delay column), got {width} columns")
    return None  # several columns of delays: one per worker


def impossible(delays: np.ndarray) -> tuple[int, str] | None:
    """The first row of a delay log that no run can have made, and why, or None.  One delay per update: a delay
    larger than the number of earlier updates.  A per-worker-age matrix: an age larger than the iteration, an
    iteration without a fresh gradient (the master steps when gradients arrive), or a fresh gradient (see
    :func:`age_trace`) that read a version before its worker's previous gradient was applied."""
    K = len(delays)
    read = (np.arange(K) - delays.T).T
    late = np.argwhere(read < 0)
    if len(late):
        i = int(late[0][0])
        if delays.ndim == 1:
            return i, f"delay {delays[i]} of update {i} is larger than the number of earlier updates ({i})"
        w = int(late[0][1])
        return i, (f"at iteration {i} worker {w}'s gradient is {delays[i, w]} iterations old, more than the "
                   f"iterations before it ({i})")
    if delays.ndim == 1:
        return None
    fresh = fresh_gradients(delays)
    idle = np.flatnonzero(~fresh.any(axis=1))
    rows = np.arange(K)[:, None]
    # the iteration of each worker's previous fresh gradient (-1: none), by a running maximum down each column
    previous = np.full(delays.shape, -1)
    previous[1:] = np.maximum.accumulate(np.where(fresh, rows, -1), axis=0)[:-1]
    early = np.argwhere(fresh & (previous >= 0) & (read < previous + 1))  # row-major: the first is the earliest
    if len(idle) and (not len(early) or idle[0] <= early[0][0]):
        i = int(idle[0])
        return i, (f"iteration {i} has no fresh gradient (every worker's age grew by one), but the master steps "
                   f"only when gradients arrive")
    if not len(early):
        return None
    i, w = (int(x) for x in early[0])
    return i, (f"at iteration {i} worker {w}'s fresh gradient read version {read[i, w]}, before its previous "
               f"gradient was applied (iteration {previous[i, w]})")


def fresh_gradients(ages: np.ndarray) -> np.ndarray:
    """Which entries of a per-worker-age matrix are fresh gradients: every worker's first (row 0), and after it
    each entry whose age did not just grow by one (ages[k, w] != ages[k-1, w] + 1)."""
    fresh = np.ones(ages.shape, bool)
    fresh[1:] = ages[1:] != ages[:-1] + 1
    return fresh


def first_read(delays: np.ndarray) -> np.ndarray:
    """The versions r_k = k - delays[k] the updates read; a delay larger than the number of earlier updates is an
    error naming it."""
    bad = impossible(delays)
    if bad is not None:
        raise ScenarioError(f"protocol.path: {bad[1]}")
    return np.arange(len(delays)) - delays


def assign_workers(read: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Worker ids and steps for updates that read versions ``read`` (update k is applied as version k+1), and how
    they were found.

    Chains, when the log is chain-consistent: under a server that replies with fresh parameters, a worker's next
    read is the version right after its own write, so every update k that read r_k > 0 continues the chain of
    update r_k - 1.  When no version is read twice after the start, the n updates that read version 0 start n
    chains and every update's worker is determined (the BCD logs of Wu et al. are such, with n = 8).  Otherwise
    the fewest workers possible: update k computes from version r_k until version k+1 exists, and the updates are
    given workers in read order, each the lowest-numbered idle one (interval colouring), which uses as many workers
    as the largest number of computations in flight.
    """
    K = len(read)
    worker = np.empty(K, np.int64)
    step = np.empty(K, np.int64)
    later = np.flatnonzero(read > 0)
    pred = read[later] - 1
    if len(np.unique(pred)) == len(pred):
        starts = np.flatnonzero(read == 0)
        worker[starts], step[starts] = np.arange(len(starts)), 0
        for k, j in zip(later.tolist(), pred.tolist()):  # j < k: its worker and step are known
            worker[k], step[k] = worker[j], step[j] + 1
        return worker, step, (f"chains: every update that read version r > 0 continues the chain of update r - 1, "
                              f"and no version is read twice, so the {len(starts)} updates that read version 0 "
                              f"start {len(starts)} workers")
    busy: list[tuple[int, int]] = []  # (the version from which the worker is idle, worker)
    idle: list[int] = []
    steps: list[int] = []
    for k in np.lexsort((np.arange(K), read)).tolist():  # read order, ties by update
        while busy and busy[0][0] <= read[k]:
            heapq.heappush(idle, heapq.heappop(busy)[1])
        w = heapq.heappop(idle) if idle else len(steps)
        if w == len(steps):
            steps.append(0)
        worker[k], step[k] = w, steps[w]
        steps[w] += 1
        heapq.heappush(busy, (k + 1, w))
    twice = int(np.flatnonzero(np.bincount(pred) > 1)[0]) + 1  # the first version read by two updates
    return worker, step, (f"fewest workers: version {twice} is read by more than one update after the start, so "
                          f"the log does not determine the workers; {len(steps)} is the largest number of "
                          f"computations in flight")


def delay_trace(delays: np.ndarray, seconds_per_update: float = 1.0, protocol: str = "trace_file") -> Trace:
    """The trace in which update k has staleness ``delays[k]``: it reads version r_k = k - delays[k].

    Times: version v exists at v * dt (update k is applied at (k+1) dt), a contribution reads at r_k dt and
    computes until it is applied.  Worker ids come from :func:`assign_workers`: the log's own worker chains when
    it determines them, else the fewest workers that can have made it.
    """
    delays = np.asarray(delays, dtype=np.int64)
    K = len(delays)
    k = np.arange(K)
    read = first_read(delays)
    worker, step, _ = assign_workers(read)
    t_apply = (k + 1) * float(seconds_per_update)
    return Trace(n_workers=int(worker.max(initial=-1)) + 1, protocol=protocol, update=k, worker=worker, step=step,
                 read_version=read, round=np.full(K, -1), status=np.full(K, int(Status.APPLIED)),
                 t_read=read * float(seconds_per_update), t_done=t_apply, t_arrive=t_apply, t_apply=t_apply)


def age_trace(ages: np.ndarray, seconds_per_update: float = 1.0, protocol: str = "trace_file") -> Trace:
    """The trace of a per-worker-age matrix (PIAG's log): ``ages[k, w]`` is the age, in iterations, of worker w's
    latest gradient in iteration k's aggregate, so that gradient read version k - ages[k, w].

    Worker w contributes a fresh gradient to update k when its age did not just grow by one
    (:func:`fresh_gradients`; every worker's first gradient is in update 0), so an update holds every gradient that
    arrived while the master was busy: the trace of a draining server (protocol ``drain``), with one column per
    worker.  Times as in :func:`delay_trace`.  :func:`trace_ages` gives the matrix back."""
    ages = np.asarray(ages, dtype=np.int64)
    bad = impossible(ages)
    if bad is not None:
        raise ScenarioError(f"protocol.path: {bad[1]}")
    read = np.arange(len(ages))[:, None] - ages
    fresh = fresh_gradients(ages)
    ks, ws = np.nonzero(fresh)  # row-major: ordered by (update, worker)
    steps = np.cumsum(fresh, axis=0) - 1
    dt = float(seconds_per_update)
    r = read[ks, ws]
    t_apply = (ks + 1) * dt
    return Trace(n_workers=ages.shape[1], protocol=protocol, update=ks, worker=ws, step=steps[ks, ws], read_version=r,
                 round=np.full(len(ks), -1), status=np.full(len(ks), int(Status.APPLIED)), t_read=r * dt,
                 t_done=t_apply, t_arrive=t_apply, t_apply=t_apply)


def trace_ages(trace: Trace) -> np.ndarray:
    """The per-worker-age matrix of a trace (the inverse of :func:`age_trace`): entry (k, w) is k minus the version
    read by worker w's latest contribution applied in an update <= k, or -1 before its first.  Its row maximum is
    the delay tau_k that PIAG's step rules use (the oldest gradient in iteration k's aggregate)."""
    used = trace.used()
    K, n = used.n_updates, trace.n_workers
    last = np.full((K, n), -1)
    last[used.update, used.worker] = np.arange(len(used))  # a worker contributes at most once per update
    seen = np.maximum.accumulate(last, axis=0)  # row numbers grow with the update, so the latest is the largest
    ages = np.arange(K)[:, None] - used.read_version[seen]
    ages[seen < 0] = -1
    return ages


def max_ages(ages: np.ndarray) -> np.ndarray:
    """tau_k = max_w ages[k, w]: the age of the oldest gradient in each iteration's aggregate."""
    return ages.max(axis=1)


@register("trace_file")
@dataclass(frozen=True, kw_only=True)
class TraceFile(Protocol):
    """Delays imported from a delay log (see :func:`read_delays` for the formats) so that delays measured on a real
    system drive the update rules.  A log of one delay per update gives an asynchronous trace (:func:`delay_trace`;
    workers from :func:`assign_workers`); a per-worker-age matrix (PIAG's log) gives the trace of a draining
    server, one worker per column (:func:`age_trace`).  ``cluster.workers`` must be the log's workers (so that the
    memory estimate and every summary count them); the cluster's timing is not used, and ``seconds_per_update``
    sets the time axis.  ``layout``: auto, per_update or per_worker.  ``run.updates`` defaults to the number of
    updates in the file."""

    simulated = False
    bounds_staleness = True
    path: str
    seconds_per_update: float = 1.0
    layout: str = "auto"
    delays: np.ndarray = field(init=False, repr=False, compare=False)
    workers: int = field(init=False, repr=False, compare=False)
    contributions: np.ndarray = field(init=False, repr=False, compare=False)
    """The number of contributions in the first k updates, for k = 0..K (a running count)."""

    def __post_init__(self):
        require(0 < self.seconds_per_update <= LONGEST, "seconds_per_update", f"must be in (0, {LONGEST:g}]",
                self.seconds_per_update)
        require(self.layout in LAYOUTS, "layout", f"must be one of {', '.join(LAYOUTS)}", self.layout)
        object.__setattr__(self, "path", str(resolve_path(self.path)))
        object.__setattr__(self, "delays", read_delays(self.path, self.layout))
        if self.per_worker:
            workers, per_update = self.delays.shape[1], fresh_gradients(self.delays).sum(axis=1)
        else:
            worker, _, _ = assign_workers(first_read(self.delays))
            workers, per_update = int(worker.max()) + 1, np.ones(len(self.delays), np.int64)
        object.__setattr__(self, "workers", workers)
        object.__setattr__(self, "contributions", np.concatenate([[0], np.cumsum(per_update)]))

    @property
    def per_worker(self) -> bool:
        """True for a per-worker-age matrix."""
        return self.delays.ndim == 2

    @property
    def family(self):
        return Family.DRAINED if self.per_worker else Family.ASYNC

    @property
    def given_updates(self) -> int:
        return len(self.delays)

    def check_cluster(self, cluster):
        require(cluster.workers == self.workers, "cluster.workers",
                f"must be the {self.workers} workers of the log in protocol.path "
                f"({'its columns' if self.per_worker else 'as its updates imply them'})", cluster.workers)

    def rows(self, workers, n_updates):
        return float(self.contributions[min(n_updates, len(self.delays))])

    def check_updates(self, n_updates):
        """The file must hold ``n_updates`` updates (every one possible: ``read_delays`` checked the whole log)."""
        if n_updates > len(self.delays):
            what = "rows of ages" if self.per_worker else "delays"
            raise ScenarioError(f"run.updates must be <= the {len(self.delays)} {what} in {self.path} (leave it "
                                f"out to replay the whole file), got {n_updates}")

    def staleness_bound(self, cluster, n_updates):
        return int(self.delays[:n_updates].max(initial=0))

    def notes(self, n_updates) -> dict:
        if self.per_worker:
            ages = self.delays[:n_updates]
            trace, tau = age_trace(ages), max_ages(ages)
            return {"workers_from": f"columns: a per-worker-age matrix of {trace.n_workers} workers; a worker's "
                                    "gradient is fresh when its age did not just grow by one",
                    "contributions_per_update": len(trace) / n_updates,
                    "iteration_delay": {"mean": float(tau.mean()), "max": int(tau.max()),
                                        "what": "tau_k = max_w ages[k, w], the oldest gradient in iteration k"}}
        _, _, how = assign_workers(first_read(self.delays[:n_updates]))
        return {"workers_from": how}

    def trace(self, cluster: Cluster, times: Durations, n_updates: int) -> Trace:
        self.check_updates(n_updates)
        make = age_trace if self.per_worker else delay_trace
        trace = make(self.delays[:n_updates], self.seconds_per_update)
        # the log's workers (a short prefix may not reach every worker)
        return replace(trace, n_workers=max(trace.n_workers, min(cluster.workers, self.workers)))
