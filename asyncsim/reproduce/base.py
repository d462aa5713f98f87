"""The framework of the reproductions: what a kind returns (:class:`Outcome`), its base class and the helpers the
kinds share.  The kinds (one module each) import this module; the package ``__init__`` loads definitions and
writes outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..params import Registry, to_plain


@dataclass(frozen=True)
class Outcome:
    """What a reproduction measured: ``table`` (measured next to predicted, one row per point), ``passed`` and
    ``criterion`` (one line: what was required and the worst case measured), and ``notes`` (extra lines printed
    before the verdict, such as a method reported alongside)."""

    table: pd.DataFrame
    passed: bool
    criterion: str
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)
    """Measurements the plot needs beyond the table (curves, histograms)."""


class Reproduction:
    """Base class of reproduction kinds; ``Reproduction.registry`` maps YAML ``kind`` names to them."""

    registry = Registry("reproduction")

    def run(self, seed: int) -> Outcome:
        raise NotImplementedError

    def plot(self, outcome: Outcome):
        raise NotImplementedError


def first_hit(metrics: pd.DataFrame, values, threshold: float) -> tuple[int, float] | None:
    """(update, simulated time) of the first recorded version whose ``values`` (one per row of ``metrics``, e.g.
    its suboptimality) are <= ``threshold``, or None if no row reaches it: the time to a target."""
    hit = np.flatnonzero(np.asarray(values) <= threshold)
    if hit.size == 0:
        return None
    return int(metrics["update"].iat[hit[0]]), float(metrics["time"].iat[hit[0]])


def span(values) -> str:
    """Integers as ``a..b`` when they are consecutive (more than two), else listed: for criterion lines."""
    v = sorted(values)
    return f"{v[0]}..{v[-1]}" if len(v) > 2 and v == list(range(v[0], v[-1] + 1)) else ", ".join(map(str, v))


def describe(obj) -> str:
    """A dataclass's parameters on one short line, e.g. ``base exponential(mean 1.0), p 0.05, slowdown 20.0``."""
    def value(v):
        return f"{v['kind']}({fields(v)})" if isinstance(v, dict) else str(v)

    def fields(d):
        return ", ".join(f"{k} {value(v)}" for k, v in d.items() if k != "kind")

    return fields(to_plain(obj))
