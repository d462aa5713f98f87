"""Client populations: which of the cluster's workers (clients) take part when a protocol has a ``concurrency``.

The clients not taking part wait in a pool; a protocol takes clients from it (an asynchronous server when one of
its ``concurrency`` slots frees, a synchronous one when a round opens) and puts them back when their task is done.
``Pool.take`` picks uniformly among the idle clients that are online at that instant, by rejection: a uniform idle
client is drawn and kept if online, else drawn again; after ``ATTEMPTS`` rejections the online ones are listed and
one is drawn among them, so the choice is exactly uniform over idle and online clients whatever their number.
With ``weights`` (selection by data size) a client is proposed with probability proportional to its weight among
all clients and kept if idle and online, so the choice is proportional to the weights among the idle online
clients (a client of weight 0 is never chosen); successive draws of a round are sampling without replacement
proportional to size (successive sampling).  The draws are keyed (SELECTION stream) by the selecting slot or round
and a count, so a selection depends only on the seed and on the state of the population at that instant.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate

from ..rng import StepDraws, Stream

ATTEMPTS = 64
"""Rejected draws before ``Pool.take`` lists the online idle clients (a rare event unless few are online)."""


class Pool:
    """The idle clients 0 .. clients-1 (all of them at first) and selection among those online, uniform or in
    proportion to ``weights``.

    ``up_at(c, t)`` is the cluster's availability (``Durations.up_at``: t when client c is online at t); ``always_up``
    skips it.  The idle clients are kept in a list with each one's position, so that taking and putting back are
    O(1) and a uniform idle client is one draw."""

    def __init__(self, clients: int, seed: int, up_at, always_up: bool, weights=None):
        self.idle = list(range(clients))
        self.position = list(range(clients))
        self.up_at, self.always_up = up_at, always_up
        self.weights = weights
        self.cumulative = None if weights is None else list(accumulate(weights))
        self.draws = StepDraws(seed, Stream.SELECTION, lambda g, n: g.random(n).tolist())
        self.counts: dict[int, int] = {}

    def _draw(self, key: int) -> float:
        j = self.counts.get(key, 0)
        self.counts[key] = j + 1
        return self.draws(key, j)

    def _remove(self, i: int) -> int:
        idle, position = self.idle, self.position
        c, last = idle[i], idle[-1]
        idle[i], position[last] = last, i
        idle.pop()
        return c

    def put(self, client: int) -> None:
        """Client ``client`` is idle again."""
        self.position[client] = len(self.idle)
        self.idle.append(client)

    def take(self, key: int, t: float) -> tuple[int | None, float]:
        """(c, t): an idle client online at t, uniform among them and taken from the pool, drawn with the keyed
        draws of ``key`` (a slot or a round); or (None, t') when none is, t' the earliest time an idle client comes
        online (inf: never, or no idle client)."""
        idle, up_at = self.idle, self.up_at
        if not idle:
            return None, math.inf
        if self.weights is not None:
            return self._take_weighted(key, t)
        if self.always_up:
            return self._remove(int(self._draw(key) * len(idle))), t
        for _ in range(ATTEMPTS):
            i = int(self._draw(key) * len(idle))
            if up_at(idle[i], t) == t:
                return self._remove(i), t
        online = [i for i, c in enumerate(idle) if up_at(c, t) == t]
        if online:
            return self._remove(online[int(self._draw(key) * len(online))]), t
        return None, min(up_at(c, t) for c in idle)

    def _online(self, c: int, t: float) -> bool:
        return self.always_up or self.up_at(c, t) == t

    def _take_weighted(self, key: int, t: float) -> tuple[int | None, float]:
        idle, position, cumulative = self.idle, self.position, self.cumulative
        for _ in range(ATTEMPTS):
            c = bisect_right(cumulative, self._draw(key) * cumulative[-1])
            i = position[c] if c < len(position) else len(idle)  # (c = n only when u x total rounds up to total)
            if i < len(idle) and idle[i] == c and self._online(c, t):
                return self._remove(i), t
        candidates = [i for i, c in enumerate(idle) if self.weights[c] > 0]
        online = [i for i in candidates if self._online(idle[i], t)]
        if online:
            sums = list(accumulate(self.weights[idle[i]] for i in online))
            j = min(bisect_right(sums, self._draw(key) * sums[-1]), len(online) - 1)
            return self._remove(online[j]), t
        return None, min((self.up_at(idle[i], t) for i in candidates), default=math.inf)
