"""Keyed random streams (docs/ARCHITECTURE.md, "Conventions").

Every draw comes from a generator keyed by ``(seed, stream, worker, block)`` through
``numpy.random.SeedSequence(seed, spawn_key=(stream, worker, block))``.  Per-step draws (a worker's compute time at
step s, its minibatch at step s, ...) are made ``BLOCK`` steps at a time: the draw of step ``s`` is row ``s % BLOCK``
of the block keyed by ``s // BLOCK``.  A draw is therefore a fixed function of (seed, stream, worker, step) and does
not depend on the order in which draws are made; this is what lets a simulated run, a replay and a real run agree
bit for bit, and what gives common random numbers across scenarios that differ only in another stream.  Making the
draws a block at a time keeps the cost per step well under a microsecond instead of the ~20 us of building one
generator per step.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

import numpy as np

BLOCK = 256
"""Steps per keyed block.  Part of the convention: changing it changes every draw."""
CACHED_WORKERS = 4096
"""The workers whose block of algorithm draws a replay keeps at once (``StepDraws`` ``limit``; more workers than
this only in a population of clients).  Changes no draw, only how often a block is made again."""


class Stream(IntEnum):
    """Independent random streams.  Timing is split by source so that, e.g., adding latency keeps compute times."""

    DATA = 0
    INIT = 1
    COMPUTE = 2
    UPLINK = 3
    DOWNLINK = 4
    SERVICE = 5
    ALGORITHM = 6
    FAILURE = 7
    PHASE = 8
    READ = 9
    COLD_START = 10
    AVAILABILITY = 11
    WINDOW = 12
    SELECTION = 13
    SPLIT = 14


def generator(seed: int, stream: Stream, worker: int = 0, block: int = 0) -> np.random.Generator:
    """The generator keyed by ``(seed, stream, worker, block)``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(stream), worker, block)))


class StepDraws:
    """Per-(worker, step) draws of one stream: ``draws(worker, step)``.

    ``sample(gen, n)`` must return ``n`` draws stacked along the first axis (a numpy array, or a list for fast scalar
    access).  The most recent block of each worker is cached, so sequential access per worker costs one lookup;
    random access is correct but rebuilds blocks.  With ``limit``, the blocks of at most that many workers are
    kept (the longest cached goes first): a population of clients then holds a bounded number of blocks, and a
    block dropped is made again, the same, when its worker is next asked for.  With ``per_worker``, ``sample``
    takes the worker too: ``sample(gen, n, worker)`` (a worker's own data shard).
    """

    __slots__ = ("seed", "stream", "sample", "limit", "per_worker", "_cache")

    def __init__(self, seed: int, stream: Stream, sample: Callable[..., object], limit: int | None = None,
                 per_worker: bool = False):
        self.seed = seed
        self.stream = stream
        self.sample = sample
        self.limit = limit
        self.per_worker = per_worker
        self._cache: dict[int, tuple[int, object]] = {}

    def __call__(self, worker: int, step: int):
        block, row = divmod(step, BLOCK)
        cached = self._cache.get(worker)
        if cached is None or cached[0] != block:
            if cached is None and self.limit is not None and len(self._cache) >= self.limit:
                del self._cache[next(iter(self._cache))]
            g = generator(self.seed, self.stream, worker, block)
            cached = (block, self.sample(g, BLOCK, worker) if self.per_worker else self.sample(g, BLOCK))
            self._cache[worker] = cached
        return cached[1][row]
