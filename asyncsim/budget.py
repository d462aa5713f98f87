"""The memory budget: what a run will hold, estimated from the scenario's sizes before anything is allocated.

A scenario is refused when it loads if its estimate is over the limit, with one line that names the field that
dominates the estimate (``run.updates``, ``cluster.workers``, a problem size), the estimate and the limit.  The
limit is ``ASYNCSIM_MEMORY_LIMIT`` (a size such as ``8GB``, ``500MB`` or a number of bytes; ``none`` switches the
check off), by default half of the machine's physical memory.

The estimate is a sum of :class:`Footprint` parts (``scenario.footprint``): the problem's data
(``ProblemSpec.memory``), the algorithm's parameter vectors and states (``Algorithm.memory``) and its draws (a
block of 256 steps of ``Algorithm.draw_size`` per worker), the trace (``Protocol.rows`` times :data:`ROW_BYTES`),
the per-worker timing state and the recorded metrics.  The per-row and per-worker constants were measured as peak
resident memory of runs end to end (``benchmarks/bench_memory.py``: 631 bytes per async row under SimPy, 248 on
the fast path, 122 per row of rounds, 39 kB per worker besides its minibatch draws, 7.5 kB per client of a
population), rounded up.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .params import ScenarioError

ROW_BYTES = 1200
"""Peak bytes per trace row while SimPy makes the trace and the replay reads it (Python rows, columns, frames)."""
WORKER_BYTES = 40_000
"""Bytes per worker of timing state: a SimPy process and one cached block of 256 draws (a list) per timing stream
(the algorithm's own block of draws per worker is counted apart, ``Algorithm.draw_size``)."""
CLIENT_BYTES = 10_000
"""Bytes per client of a population (a protocol's ``concurrency``; no SimPy process each): a block of its compute
draws and of its availability periods, as arrays (measured: about 7.5 kB with on/off availability)."""
RECORD_BYTES = 400
"""Bytes per recorded metrics row."""
ENV = "ASYNCSIM_MEMORY_LIMIT"
UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclass(frozen=True)
class Footprint:
    """One part of a run's memory: about ``bytes``, sized mostly by the YAML ``field`` (which the scenario gives as
    ``value``), described by ``what``."""

    bytes: float
    field: str
    value: object
    what: str


def physical_memory() -> float | None:
    """The machine's physical memory in bytes, where the platform says (None elsewhere)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def memory_limit() -> float | None:
    """The limit in bytes: ``ASYNCSIM_MEMORY_LIMIT`` if set (None for ``none``), else half the physical memory."""
    raw = os.environ.get(ENV)
    if raw is None or not raw.strip():
        total = physical_memory()
        return None if total is None else total / 2
    text = raw.strip().lower()
    if text in ("none", "off"):
        return None
    match = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)", text)
    if not match or match.group(2) not in UNITS:
        raise ScenarioError(f"{ENV} must be a size such as 8GB, 500MB or 2GiB (or none), got {raw!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def human(n: float) -> str:
    """Bytes as a short decimal size: 950 B, 12.3 MB, 4.5e+06 TB."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1e6 else f"{value:.2e} {unit}"
    return f"{n:.0f} B"


def check(parts: list[Footprint]) -> None:
    """Raise ScenarioError when the sum of ``parts`` is over the limit, naming the field of the largest part."""
    limit = memory_limit()
    total = sum(p.bytes for p in parts)
    if limit is None or total <= limit:
        return
    worst = max(parts, key=lambda p: p.bytes)
    raise ScenarioError(f"{worst.field} must keep the run within the memory limit of {human(limit)} ({ENV}); got "
                        f"{worst.value!r}, an estimated {human(total)} in all ({worst.what}: "
                        f"{human(worst.bytes)})")
