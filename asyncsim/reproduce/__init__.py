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
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..files import load_yaml
from ..params import ScenarioError, build_dataclass, relative_to, require, to_plain
from ..scenario import check_name
from . import (  # noqa: F401  (registers the kinds)
    buffered, coded_es, coded_latency, compression_variance, debiased_newton, delay_adaptive, delay_logs,
    delayed_gd, gradient_coding, momentum, optimal_time, order_statistics, sketch_averaging, speedup, staleness)
from .base import Outcome, Reproduction, describe, first_hit, span


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
    check_name(data["name"], "the output directory")
    seed = data.get("seed", 0)
    require(isinstance(seed, int) and seed >= 0, "seed", "must be an integer >= 0", seed)
    cls = Reproduction.registry.get(data["kind"])
    for key in ("params", "quick", "full"):
        require(isinstance(data.get(key) or {}, dict), key, "must be a mapping of parameters", data.get(key))
    versions = {}
    for version in ("quick", "full"):
        params = {**(data.get("params") or {}), **(data.get(version) or {})}
        with relative_to(path.parent):  # file paths in the parameters are relative to the reproduction file
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


__all__ = ["Definition", "Outcome", "Reproduction", "available", "describe", "first_hit", "load", "markdown",
           "run_definition", "span", "verdict", "write_outcome"]
