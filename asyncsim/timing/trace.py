"""The Trace: where timing and numerics meet (DESIGN.md).

One row per worker contribution, in the order the replay consumes them (by update index, then worker).  Update k
is applied to version k and produces version k+1; a contribution that read version r_k has staleness
tau_k = k - r_k >= 0.  In ``sync`` all n contributions of round k form update k (staleness 0); in ``async`` each
update has exactly one contribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

INT_COLUMNS = ("update", "worker", "step", "read_version", "round")
TIME_COLUMNS = ("t_read", "t_done", "t_arrive", "t_apply")
FORMAT_VERSION = "1"


class TraceError(ValueError):
    """A trace that breaks one of the invariants of DESIGN.md."""


@dataclass(frozen=True, eq=False)
class Trace:
    """Columnar arrays, one row per contribution.

    ``update``: the update index k the contribution belongs to; ``worker``; ``step``: the worker's own counter
    (0, 1, ...); ``read_version``: the parameter version r it computed on; ``round``: the synchronous round (-1 for
    asynchronous protocols); times in simulated seconds: ``t_read`` (parameters in hand, computation starts),
    ``t_done`` (computation finished), ``t_arrive`` (message at the server), ``t_apply`` (update applied).
    """

    n_workers: int
    protocol: str
    update: np.ndarray
    worker: np.ndarray
    step: np.ndarray
    read_version: np.ndarray
    round: np.ndarray
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
    def n_updates(self) -> int:
        return int(self.update[-1]) + 1 if len(self.update) else 0

    def __len__(self) -> int:
        return len(self.update)

    def update_times(self) -> np.ndarray:
        """Simulated time at which each version exists: entry v is the apply time of update v-1 (0.0 for v = 0)."""
        last_row = np.searchsorted(self.update, np.arange(self.n_updates), side="right") - 1
        return np.concatenate([[0.0], self.t_apply[last_row]])

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
        def step_up(diff_mask):  # a mask over np.diff(...) -> a mask over the later row of each pair
            return np.concatenate([[False], diff_mask])

        d_update = np.diff(self.update)
        fail(np.arange(n) == 0 if self.update[0] != 0 else np.zeros(n, bool), "update indices do not start at 0")
        fail(step_up(d_update < 0), "rows are not ordered by update index")
        fail(step_up(d_update > 1), "update indices are not consecutive")
        same = d_update == 0
        fail(step_up(same & (np.diff(self.worker) <= 0)), "rows of one update are not ordered by worker")
        fail((self.worker < 0) | (self.worker >= self.n_workers), f"worker outside [0, {self.n_workers})")
        fail(self.read_version < 0, "read version < 0")
        fail(self.staleness < 0, "staleness < 0 (read a version that did not exist yet)")
        fail(self.t_read < 0, "t_read < 0")
        fail(self.t_done < self.t_read, "t_done < t_read")
        fail(self.t_arrive < self.t_done, "t_arrive < t_done")
        fail(self.t_apply < self.t_arrive, "t_apply < t_arrive")
        fail(step_up(np.diff(self.t_apply) < 0), "apply times decrease with the update index")
        fail(step_up(same & (np.diff(self.t_apply) != 0)), "one update has several apply times")
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
        if meta.get(b"asyncsim.trace") != FORMAT_VERSION.encode():
            raise TraceError(f"{path} is not an asyncsim trace (format {FORMAT_VERSION})")
        cols = {c: table.column(c).to_numpy() for c in INT_COLUMNS + TIME_COLUMNS}
        trace = cls(n_workers=int(meta[b"asyncsim.n_workers"]), protocol=meta[b"asyncsim.protocol"].decode(), **cols)
        if not np.array_equal(table.column("staleness").to_numpy(), trace.staleness):
            raise TraceError(f"{path}: staleness column does not equal update - read_version")
        return trace.validate()


def _scatter(n: int, rows: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A row-order boolean mask from a mask over the permuted ``rows``."""
    out = np.zeros(n, bool)
    out[rows[mask]] = True
    return out
