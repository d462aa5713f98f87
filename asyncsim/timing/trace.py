"""The Trace: where timing and numerics meet (docs/ARCHITECTURE.md, "The seam").

One row per worker contribution, in the order the replay consumes them (by update index, worker, step).  Update k
is applied to version k and produces version k+1; a contribution that read version r_k has staleness
tau_k = k - r_k >= 0.  In ``sync`` all n contributions of round k form update k (staleness 0); in ``async`` each
update has exactly one contribution.  Work that was never used (dropped, cancelled, lost in a crash) is kept as rows
with a ``status`` other than APPLIED, so the trace shows what each protocol wasted.

Inconsistent reads (``shared_memory``): a read spans [t_read, t_read_end] and reads ``read_blocks`` contiguous
coordinate blocks at the evenly spaced instants ``block_read_times``; block b sees exactly the updates applied at or
before its instant (applies come before reads at equal times).  ``read_version`` is the version the first block saw
and ``read_end`` the version the last block saw; consistent reads have read_end = read_version and
t_read_end = t_read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

INT_COLUMNS = ("update", "worker", "step", "read_version", "round", "status")
TIME_COLUMNS = ("t_read", "t_done", "t_arrive", "t_apply")
READ_COLUMNS = ("read_end", "t_read_end")
"""Columns of inconsistent reads; optional when constructing a Trace (default: a consistent read)."""
COLUMNS = INT_COLUMNS + TIME_COLUMNS + READ_COLUMNS
FORMAT_VERSION = "3"
OLD_FORMATS = (b"1", b"2")  # 1: no status column; 2: no read_end / t_read_end (consistent reads)


class Status(IntEnum):
    """What became of a contribution.  For rows that were not applied, ``update`` is the number of updates applied
    when the work was discarded and ``t_apply`` the time it was discarded (``t_done`` and ``t_arrive`` are cut at
    that time for work that never finished or never arrived)."""

    APPLIED = 0
    """Used in update ``update``."""
    DROPPED = 1
    """Reached the server but was not used: after the first k of a round (k_of_n), after the deadline, computed at
    an old version (rennala), or over the staleness bound (ringmaster)."""
    CANCELLED = 2
    """Stopped before it reached the server: its round closed (k_of_n, deadline), or its staleness would exceed
    the bound (ringmaster)."""
    LOST = 3
    """Lost when the worker crashed (computing or sending)."""


class TraceError(ValueError):
    """A trace that breaks one of the invariants of ``Trace.validate``."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Columnar arrays, one row per contribution.

    ``update``: the update index k the contribution belongs to; ``worker``; ``step``: the worker's own counter
    (0, 1, ...); ``read_version``: the parameter version r it computed on; ``round``: the synchronous round (-1 for
    asynchronous protocols); times in simulated seconds: ``t_read`` (parameters in hand, computation starts),
    ``t_done`` (computation finished), ``t_arrive`` (message at the server), ``t_apply`` (update applied);
    ``status``: a :class:`Status` code (0 = applied); ``read_end`` and ``t_read_end``: the version seen by the last
    block and the time the read ended (default: ``read_version`` and ``t_read``); ``read_blocks``: the number of
    blocks a read is split into.
    """

    n_workers: int
    protocol: str
    update: np.ndarray
    worker: np.ndarray
    step: np.ndarray
    read_version: np.ndarray
    round: np.ndarray
    status: np.ndarray
    t_read: np.ndarray
    t_done: np.ndarray
    t_arrive: np.ndarray
    t_apply: np.ndarray
    read_end: np.ndarray | None = None
    t_read_end: np.ndarray | None = None
    read_blocks: int = 1

    def __post_init__(self):
        if self.read_end is None:
            object.__setattr__(self, "read_end", self.read_version)
        if self.t_read_end is None:
            object.__setattr__(self, "t_read_end", self.t_read)
        for name in INT_COLUMNS + ("read_end",):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.int64))
        for name in TIME_COLUMNS + ("t_read_end",):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        lengths = {len(getattr(self, c)) for c in COLUMNS}
        if len(lengths) != 1:
            raise TraceError(f"trace columns have different lengths: {sorted(lengths)}")
        for name in COLUMNS:
            getattr(self, name).flags.writeable = False

    @property
    def staleness(self) -> np.ndarray:
        """tau = update - read_version: the number of updates applied between the read and the write."""
        return self.update - self.read_version

    @property
    def applied(self) -> np.ndarray:
        """Boolean mask of the rows used in an update."""
        return self.status == Status.APPLIED

    @property
    def n_updates(self) -> int:
        up = self.update[self.applied]
        return int(up.max()) + 1 if len(up) else 0

    def used(self) -> "Trace":
        """The trace restricted to the applied rows (what the replay consumes)."""
        if self.applied.all():
            return self
        return self.select(self.applied)

    def select(self, keep: np.ndarray) -> "Trace":
        """The trace restricted to the rows of boolean mask ``keep``."""
        return Trace(n_workers=self.n_workers, protocol=self.protocol, read_blocks=self.read_blocks,
                     **{c: getattr(self, c)[keep] for c in COLUMNS})

    def until(self, t: float) -> "Trace":
        """The trace of the run that ends at simulated time ``t``: the rows whose update was applied (or whose
        work was discarded) at or before ``t``.  A longer simulation of the same scenario has the shorter one's
        rows as this prefix (``tests/test_budget_time.py`` checks it for every protocol), which is what
        ``run.time`` relies on."""
        return self.select(self.t_apply <= t)

    @property
    def inconsistent(self) -> bool:
        """True when some read saw different versions in different blocks."""
        return bool((self.read_end != self.read_version).any())

    def __len__(self) -> int:
        return len(self.update)

    def update_times(self) -> np.ndarray:
        """Simulated time at which each version exists: entry v is the apply time of update v-1 (0.0 for v = 0)."""
        used = self.used()
        last_row = np.searchsorted(used.update, np.arange(used.n_updates), side="right") - 1
        return np.concatenate([[0.0], used.t_apply[last_row]])

    def validate(self) -> "Trace":
        """Check the invariants and return self; raise TraceError naming the first offending row."""

        def fail(mask, what):
            bad = np.flatnonzero(mask)
            if len(bad):
                i = int(bad[0])
                raise TraceError(f"row {i} (worker {self.worker[i]}, step {self.step[i]}): {what}")

        if len(self) == 0:
            raise TraceError("trace is empty")
        n = len(self)

        def later(diff_mask):  # a mask over np.diff(...) -> a mask over the later row of each pair
            return np.concatenate([[False], diff_mask])

        d_update, d_worker, d_step = np.diff(self.update), np.diff(self.worker), np.diff(self.step)
        fail(later((d_update < 0) | ((d_update == 0) & ((d_worker < 0) | ((d_worker == 0) & (d_step <= 0))))),
             "rows are not ordered by (update, worker, step)")
        fail((self.status < 0) | (self.status > max(Status)), f"status outside [0, {int(max(Status))}]")
        applied = self.applied
        rows = np.flatnonzero(applied)
        if len(rows) == 0:
            raise TraceError("no row has status APPLIED")
        fail(_scatter(n, rows[:1], self.update[rows[:1]] != 0), "update indices do not start at 0")
        d_up = np.diff(self.update[rows])
        fail(_scatter(n, rows[1:], d_up > 1), "update indices are not consecutive")
        d_apply = np.diff(self.t_apply[rows])
        fail(_scatter(n, rows[1:], d_apply < 0), "apply times decrease with the update index")
        fail(_scatter(n, rows[1:], (d_up == 0) & (d_apply != 0)), "one update has several apply times")
        fail(~applied & (self.update > self.n_updates), "an unused row names an update after the last one")
        fail((self.worker < 0) | (self.worker >= self.n_workers), f"worker outside [0, {self.n_workers})")
        fail(self.read_version < 0, "read version < 0")
        fail(self.staleness < 0, "staleness < 0 (read a version that did not exist yet)")
        fail(self.t_read < 0, "t_read < 0")
        fail(self.t_done < self.t_read, "t_done < t_read")
        fail(self.t_read_end < self.t_read, "t_read_end < t_read")
        fail(self.t_done < self.t_read_end, "t_done < t_read_end")
        fail(self.t_arrive < self.t_done, "t_arrive < t_done")
        fail(self.t_apply < self.t_arrive, "t_apply < t_arrive")
        created = self.update_times()
        fail(created[self.read_version] > self.t_read, "read a version before it was applied")
        fail(self.read_end < self.read_version, "read_end < read_version")
        fail(self.read_end > self.update, "read_end after the update (a read saw its own write)")
        fail(created[self.read_end] > self.t_read_end, "the read's end saw a version before it was applied")
        order = np.lexsort((self.step, self.worker))  # rows by worker, then step
        first = np.concatenate([[True], self.worker[order][1:] != self.worker[order][:-1]])
        starts = np.flatnonzero(first)
        position = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
        fail(_scatter(n, order, self.step[order] != position), "worker steps are not consecutive from 0")
        nxt, prev = order[1:][~first[1:]], order[:-1][~first[1:]]
        fail(_scatter(n, nxt, self.t_read[nxt] < self.t_done[prev]), "step read before the worker's previous computation finished")
        return self

    def to_frame(self) -> pd.DataFrame:
        """The trace as a DataFrame, with the derived ``staleness`` column."""
        cols = {c: getattr(self, c) for c in ("update", "worker", "step", "read_version")}
        cols["staleness"] = self.staleness
        cols["round"] = self.round
        cols["status"] = self.status
        cols.update({c: getattr(self, c) for c in TIME_COLUMNS + READ_COLUMNS})
        return pd.DataFrame(cols)

    def save(self, path) -> None:
        """Write Parquet with the trace's metadata in the schema."""
        frame = self.to_frame()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {b"asyncsim.trace": FORMAT_VERSION.encode(), b"asyncsim.n_workers": str(self.n_workers).encode(),
                b"asyncsim.protocol": self.protocol.encode(), b"asyncsim.read_blocks": str(self.read_blocks).encode()}
        table = table.replace_schema_metadata(meta)
        pq.write_table(table, path)

    @classmethod
    def load(cls, path) -> "Trace":
        """Read a trace written by :meth:`save` and validate it."""
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if meta.get(b"asyncsim.trace") not in OLD_FORMATS + (FORMAT_VERSION.encode(),):
            raise TraceError(f"{path} is not an asyncsim trace (format 1 to {FORMAT_VERSION})")
        cols = {c: table.column(c).to_numpy() for c in COLUMNS if c in table.column_names}
        if "status" not in cols:  # format 1: every row was applied
            cols["status"] = np.zeros(table.num_rows, np.int64)
        trace = cls(n_workers=int(meta[b"asyncsim.n_workers"]), protocol=meta[b"asyncsim.protocol"].decode(),
                    read_blocks=int(meta.get(b"asyncsim.read_blocks", b"1")), **cols)
        if not np.array_equal(table.column("staleness").to_numpy(), trace.staleness):
            raise TraceError(f"{path}: staleness column does not equal update - read_version")
        return trace.validate()


def block_read_times(t_read: float, t_read_end: float, blocks: int) -> np.ndarray:
    """The instants at which the ``blocks`` coordinate blocks of one read are read: evenly spaced from t_read (block
    0) to t_read_end (the last block), ``numpy.linspace`` so that both ends are exact; one block is read at t_read."""
    return np.linspace(t_read, t_read_end, blocks)


def _scatter(n: int, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A row-order boolean mask from a mask over the permuted ``rows``."""
    out = np.zeros(n, bool)
    out[rows[mask]] = True
    return out
