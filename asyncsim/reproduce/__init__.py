"""Reproductions: named experiments that measure a published result in the simulator and compare it with the
prediction, ending in PASS or FAIL with the criterion.

A reproduction is defined in a YAML file (``scenarios/reproductions/NAME.yaml``)::

    name: delayed-gd-stability
    title: one line saying what is reproduced
    source: the paper, cited in full
    kind: delayed_gd_stability   # the experiment (``Reproduction.registry``)
    seed: 0
    params: {...}                # shared by both versions
    quick: {...}                 # the default version (under a minute), merged over params
    full: {...}                  # ``--full``, merged over params

Each kind is a frozen dataclass of its parameters (validated like a scenario) with ``run(seed) -> Outcome`` and
``plot(outcome) -> Figure``; ``run_definition`` runs one version and ``write_outcome`` writes ``table.csv``,
``table.md``, ``plot.png`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import load_yaml
from ..params import Registry, ScenarioError, build_dataclass, require, to_plain


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


@dataclass(frozen=True)
class Definition:
    """A reproduction file: its name, title, source, seed and the experiment of each version."""

    name: str
    title: str
    source: str
    seed: int
    quick: Reproduction
    full: Reproduction
    path: Path

    def version(self, full: bool) -> Reproduction:
        return self.full if full else self.quick


def directory() -> Path:
    """Where named reproductions are found: ``scenarios/reproductions`` in the current directory if it exists,
    else the one of the source tree this package belongs to."""
    here = Path("scenarios") / "reproductions"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[2] / "scenarios" / "reproductions"


def available() -> list[Definition]:
    """Every reproduction in :func:`directory`, sorted by name."""
    d = directory()
    if not d.is_dir():
        raise FileNotFoundError(f"no reproductions directory {d}; run from the asyncsim source tree")
    return sorted((load(p) for p in d.glob("*.yaml")), key=lambda r: r.name)


def load(name_or_path: str | Path) -> Definition:
    """The reproduction named ``name_or_path`` (a file NAME.yaml in :func:`directory`) or in that YAML file."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = directory() / f"{name_or_path}.yaml"
        if not path.is_file():
            names = ", ".join(p.stem for p in sorted(directory().glob("*.yaml")))
            raise ScenarioError(f"reproduction must be one of {names} (or a YAML file), got {str(name_or_path)!r}")
    data = load_yaml(path, "reproduction file")
    require(isinstance(data, dict), "reproduction", "must be a mapping", type(data).__name__)
    allowed = {"name", "title", "source", "kind", "seed", "params", "quick", "full"}
    unknown = sorted(set(data) - allowed)
    require(not unknown, "reproduction", f"allowed keys are {', '.join(sorted(allowed))}", unknown)
    for key in ("name", "title", "source", "kind"):
        require(isinstance(data.get(key), str), key, "must be a string", data.get(key))
    seed = data.get("seed", 0)
    require(isinstance(seed, int) and seed >= 0, "seed", "must be an integer >= 0", seed)
    cls = Reproduction.registry.get(data["kind"])
    versions = {}
    for version in ("quick", "full"):
        params = {**(data.get("params") or {}), **(data.get(version) or {})}
        versions[version] = build_dataclass(cls, params, version)
    return Definition(data["name"], data["title"], " ".join(data["source"].split()), seed, versions["quick"],
                      versions["full"], path)


def run_definition(definition: Definition, full: bool = False) -> Outcome:
    """Run the quick (default) or full version of a reproduction."""
    return definition.version(full).run(definition.seed)


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub markdown, numbers to 4 significant digits."""
    def cell(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    rows = [[cell(v) for v in row] for row in table.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


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


def verdict(outcome: Outcome) -> str:
    """The last line printed: ``PASS: criterion`` or ``FAIL: criterion``."""
    return f"{'PASS' if outcome.passed else 'FAIL'}: {outcome.criterion}"


def write_outcome(definition: Definition, outcome: Outcome, out: Path, full: bool, plots: bool = True) -> Path:
    """Write ``table.csv``, ``table.md``, ``plot.png`` and ``summary.json`` into ``out`` atomically."""
    from ..results import atomic_directory

    version = definition.version(full)
    with atomic_directory(out) as tmp:
        outcome.table.to_csv(tmp / "table.csv", index=False, float_format="%.10g")
        (tmp / "table.md").write_text(f"# {definition.title}\n\nSource: {definition.source}\n\n"
                                      f"{markdown(outcome.table)}\n\n{verdict(outcome)}\n")
        if plots:
            import matplotlib

            matplotlib.use("Agg")
            from ..plotting import save_figure

            save_figure(version.plot(outcome), tmp / "plot.png")
        summary = {"reproduction": definition.name, "version": "full" if full else "quick",
                   "seed": definition.seed, "source": definition.source, "passed": outcome.passed,
                   "criterion": outcome.criterion, "notes": list(outcome.notes), "params": to_plain(version)}
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return out


from . import (delay_adaptive, delayed_gd, momentum, optimal_time, order_statistics, speedup,  # noqa: E402,F401
               staleness)  # (registers the kinds)

__all__ = ["Definition", "Outcome", "Reproduction", "available", "load", "markdown", "run_definition", "verdict",
           "write_outcome"]
