"""The fast path: vectorized numpy trace generation for ``async`` and ``sync`` when workers do not interact.

Valid when the server never makes anyone wait (service time 0) and a worker's timing depends on nothing but its
own draws (no transient slow phases, no failures): ``Cluster.independent``.  Then

- async: worker w's times are one running sum of its own durations, t_read -> +compute -> t_done -> +uplink ->
  t_arrive = t_apply -> +downlink -> next t_read (``np.cumsum`` adds left to right, the same floating-point sums
  as the SimPy processes), and the global apply order is the sort by (t_apply, worker, step): the Clock's tie rule;
- sync: round k closes at T_k = max_i (T_{k-1} + downlink + compute + uplink) + serial, one vector step per round.

The draws come from the same keyed blocks as ``Durations``, so the trace is identical to SimPy's, ties included
(tested on random scenarios with integer times).
"""

from __future__ import annotations

import math

import numpy as np

from ..rng import BLOCK, Stream
from .cluster import Cluster
from .durations import Durations
from .trace import Status, Trace


class _Worker:
    """One worker's schedule, extended a block of BLOCK steps at a time."""

    def __init__(self, times: Durations, w: int):
        self.times, self.w = times, w
        self.blocks: list[np.ndarray] = []  # per block: interleaved running sum (BLOCK, 3): t_done, t_arrive, t_read'
        self.last = 0.0                     # t_read of the first step of the next block

    def extend(self):
        t, w, b = self.times, self.w, len(self.blocks)
        steps = np.empty((BLOCK, 3))
        steps[:, 0] = t.compute_block(w, b)
        steps[:, 1] = t.block(Stream.UPLINK, w, b)
        # the downlink of step s + 1 delivers the parameters after step s's apply
        down = t.block(Stream.DOWNLINK, w, b)
        steps[:-1, 2] = down[1:]
        steps[-1, 2] = t.block(Stream.DOWNLINK, w, b + 1)[0]
        flat = steps.ravel()
        flat[0] += self.last  # the first addition of the chain: t_read + compute
        sums = np.cumsum(flat).reshape(BLOCK, 3)
        self.last = float(sums[-1, 2])
        self.blocks.append(sums)

    def advance(self):
        """``extend``, and raise if the block took no time (its durations vanish in the sums, or they overflowed):
        simulated time would stand still and the search for the K-th apply would never end."""
        before = self.horizon
        self.extend()
        if not self.horizon > before:
            raise self.times.exhausted(self.w)

    @property
    def horizon(self) -> float:
        """The last arrival time generated so far."""
        return float(self.blocks[-1][-1, 1]) if self.blocks else -math.inf


def async_trace(cluster: Cluster, times: Durations, K: int) -> Trace:
    """The ``async`` protocol's trace of K updates (``Async.fast_path``)."""
    n = cluster.workers
    workers = [_Worker(times, w) for w in range(n)]
    for wk in workers:
        wk.extend()
    # Estimate the time K updates take from the first block's rates, then extend until every worker's schedule
    # reaches past the K-th apply (so no missing step of any worker could come earlier).
    rate = sum(BLOCK / max(wk.horizon, 1e-300) for wk in workers)
    target = 1.05 * K / rate if rate > 0 else 0.0
    for wk in workers:
        while wk.horizon < target:
            wk.advance()
    while True:
        t_apply = np.concatenate([np.concatenate(wk.blocks)[:, 1] for wk in workers])
        if len(t_apply) >= K:
            t_k = np.partition(t_apply, K - 1)[K - 1]
            if not np.isfinite(t_k):
                break  # some worker needs a step past the end of its compute trace: raised below
            short = [wk for wk in workers if wk.horizon <= t_k]
            if not short:
                break
        else:
            short = workers
        for wk in short:
            wk.advance()

    sums = [np.concatenate(wk.blocks) for wk in workers]
    counts = [len(s) for s in sums]
    worker = np.repeat(np.arange(n), counts)
    step = np.concatenate([np.arange(c) for c in counts])
    cat = np.concatenate(sums)
    t_done, t_arrive = cat[:, 0], cat[:, 1]
    t_read = np.concatenate([np.concatenate([[0.0], s[:-1, 2]]) for s in sums])
    order = np.lexsort((step, worker, t_arrive))[:K]       # apply order: (time, worker, step)
    if not np.isfinite(t_arrive[order[-1]]):  # a worker ran past the end of a non-cycling compute trace
        raise times.exhausted(int(worker[order][np.argmax(~np.isfinite(t_arrive[order]))]))
    position = np.full(len(cat), -1)
    position[order] = np.arange(K)
    # step s + 1 of a worker read the version made by its step s: that step's update index + 1
    prev = np.concatenate([[-1], position[:-1]])
    prev[np.concatenate([[0], np.cumsum(counts)[:-1]])] = -1  # step 0 reads version 0
    read = prev[order] + 1
    return Trace(n_workers=n, protocol="async", update=np.arange(K), worker=worker[order], step=step[order],
                 read_version=read, round=np.full(K, -1), status=np.full(K, int(Status.APPLIED)),
                 t_read=t_read[order], t_done=t_done[order], t_arrive=t_arrive[order], t_apply=t_arrive[order])


def sync_trace(cluster: Cluster, times: Durations, K: int) -> Trace:
    """The ``sync`` protocol's trace of K rounds (``Sync.fast_path``)."""
    n = cluster.workers
    compute = times.steps(Stream.COMPUTE, K)
    if not np.isfinite(compute[:K]).all():  # past the end of a non-cycling compute trace
        raise times.exhausted(int(np.argwhere(~np.isfinite(compute[:K]))[0][1]))
    up = times.steps(Stream.UPLINK, K)
    down = times.steps(Stream.DOWNLINK, K)
    t_read = np.empty((K, n))
    t_done = np.empty((K, n))
    t_arrive = np.empty((K, n))
    t_close = np.empty(K)
    T = 0.0
    for k in range(K):
        read = t_read[k]
        if k == 0:
            read[:] = 0.0
        else:
            np.add(T, down[k], out=read)
        np.add(read, compute[k], out=t_done[k])
        np.add(t_done[k], up[k], out=t_arrive[k])
        T = t_close[k] = t_arrive[k].max() + times.serial
    k_col = np.repeat(np.arange(K), n)
    return Trace(n_workers=n, protocol="sync", update=k_col, worker=np.tile(np.arange(n), K), step=k_col,
                 read_version=k_col, round=k_col, status=np.zeros(K * n, np.int64), t_read=t_read.ravel(),
                 t_done=t_done.ravel(), t_arrive=t_arrive.ravel(), t_apply=np.repeat(t_close, n))
