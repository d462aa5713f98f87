"""The Trace: where timing and numerics meet (DESIGN.md).

One row per worker contribution, in the order the replay consumes them (by update index, worker, step).  Update k
is applied to version k and produces version k+1; a contribution that read version r_k has staleness
tau_k = k - r_k >= 0.  In ``sync`` all n contributions of round k form update k (staleness 0); in ``async`` each
update has exactly one contribution.  Work that was never used (dropped, cancelled, lost in a crash) is kept as rows
with a ``status`` other than APPLIED, so the trace shows what each protocol wasted.
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
FORMAT_VERSION = "2"


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
    """A trace that breaks one of the invariants of DESIGN.md."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Columnar arrays, one row per contribution.

    ``update``: the update index k the contribution belongs to; ``worker``; ``step``: the worker's own counter
    (0, 1, ...); ``read_version``: the parameter version r it computed on; ``round``: the synchronous round (-1 for
    asynchronous protocols); times in simulated seconds: ``t_read`` (parameters in hand, computation starts),
    ``t_done`` (computation finished), ``t_arrive`` (message at the server), ``t_apply`` (update applied);
    ``status``: a :class:`Status` code (0 = applied).
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

    def __post_init__(self):
        for name in INT_COLUMNS:
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.int64))
        for name in TIME_COLUMNS:
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        lengths = {len(getattr(self, c)) for c in INT_COLUMNS + TIME_COLUMNS}
        if len(lengths) != 1:
            raise TraceError(f"trace columns have different lengths: {sorted(lengths)}")
        for name in INT_COLUMNS + TIME_COLUMNS:
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
        keep = self.applied
        return Trace(n_workers=self.n_workers, protocol=self.protocol,
                     **{c: getattr(self, c)[keep] for c in INT_COLUMNS + TIME_COLUMNS})

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
        fail(self.t_arrive < self.t_done, "t_arrive < t_done")
        fail(self.t_apply < self.t_arrive, "t_apply < t_arrive")
        created = self.update_times()
        fail(created[self.read_version] > self.t_read, "read a version before it was applied")
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
        cols.update({c: getattr(self, c) for c in TIME_COLUMNS})
        return pd.DataFrame(cols)

    def save(self, path) -> None:
        """Write Parquet with the trace's metadata in the schema."""
        frame = self.to_frame()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {b"asyncsim.trace": FORMAT_VERSION.encode(), b"asyncsim.n_workers": str(self.n_workers).encode(),
                b"asyncsim.protocol": self.protocol.encode()}
        table = table.replace_schema_metadata(meta)
        pq.write_table(table, path)

    @classmethod
    def load(cls, path) -> "Trace":
        """Read a trace written by :meth:`save` and validate it."""
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if meta.get(b"asyncsim.trace") not in (b"1", FORMAT_VERSION.encode()):
            raise TraceError(f"{path} is not an asyncsim trace (format 1 or {FORMAT_VERSION})")
        cols = {c: table.column(c).to_numpy() if c in table.column_names else np.zeros(table.num_rows, np.int64)
                for c in INT_COLUMNS + TIME_COLUMNS}  # format 1 had no status column: every row was applied
        trace = cls(n_workers=int(meta[b"asyncsim.n_workers"]), protocol=meta[b"asyncsim.protocol"].decode(), **cols)
        if not np.array_equal(table.column("staleness").to_numpy(), trace.staleness):
            raise TraceError(f"{path}: staleness column does not equal update - read_version")
        return trace.validate()


def _scatter(n: int, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A row-order boolean mask from a mask over the permuted ``rows``."""
    out = np.zeros(n, bool)
    out[rows[mask]] = True
    return out
