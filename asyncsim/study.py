"""Studies: one scenario file that compares variants (``compare``), optionally over a swept value (``sweep``).

A study file is a scenario plus

```yaml
compare:                       # variant name -> the keys it changes (merged into the scenario)
  gd:    {protocol: {kind: sync}, algorithm: {kind: gd, lr: 0.05}}
  seacd: {protocol: {kind: serial_async, tau: 3}, algorithm: {kind: seacd, tau: 3}}
sweep: {problem.rank: [6, 11, 21]}   # optional: one dotted key and its values
reference: {seed_time: [1.2, 2.3, 4.1]}  # optional: published numbers, one per swept value, shown alongside
target: 0.01                   # optional: the gap fraction for time-to-target (default 0.01),
                               # or a metric and the level to reach, e.g. {test_accuracy: 0.9}
```

Merging: mappings merge key by key, except that a mapping with a ``kind`` replaces the scenario's mapping (another
kind has other keys).  Every variant (at every swept value) is validated when the study loads.  Each run writes
its own result directory; the study adds ``comparison.csv`` (one row per run), ``table.csv`` (swept value x variant:
time to target, the shape of the seed's runtime table; with ``sweep: {cluster.workers: ...}`` also the speedup
T(first value) / T(n); the memory per node an algorithm reports; then the ``reference`` columns) and ``plots/comparison.png`` (and ``plots/accuracy.png`` for
classification problems).

Time to target: the accuracy every variant reaches, compared by when each gets there.  At each swept value the
target loss is f_worst + target (f_0 - f_worst), f_worst the highest final loss of the variants and f_0 the initial
loss; a variant's time to target is the first recorded simulated time at which its loss is at or below it.  With
``target: {metric: level}`` it is the first recorded time at which the metric (an accuracy) is at or above level.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .params import ScenarioError, relative_to
from .files import load_yaml
from .scenario import Scenario, apply_override, check_name, from_dict

STUDY_KEYS = ("compare", "sweep", "target", "reference")


@dataclass(frozen=True)
class Study:
    """The validated runs of a study file: ``runs`` maps a label to (variant, swept value, Scenario)."""

    name: str
    sweep_key: str | None
    runs: dict[str, tuple[str, object, Scenario]]
    target: float | dict
    reference: dict


def is_study(data) -> bool:
    return isinstance(data, dict) and "compare" in data


def merge(base: dict, change: dict) -> dict:
    """``base`` with ``change`` merged in (see the module docstring)."""
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and "kind" not in value and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def study_from_dict(data: dict, overrides=(), seed: int | None = None) -> Study:
    """Validate every run of a study mapping (``--set`` overrides and ``seed`` apply to each run)."""
    base = {k: v for k, v in data.items() if k not in STUDY_KEYS}
    variants = data["compare"]
    if not isinstance(variants, dict) or not variants or not all(isinstance(v, dict) for v in variants.values()):
        raise ScenarioError("compare must map variant names to mappings of the keys they change")
    for variant in variants:
        if not isinstance(variant, str):
            raise ScenarioError(f"compare: a variant name must be a string (it names the run's directory), got "
                                f"{variant!r} ({type(variant).__name__})")
        check_name(variant, "the variant's runs", f"compare.{variant}")
    sweep = data.get("sweep") or {}
    if not isinstance(sweep, dict) or len(sweep) > 1 or any(not isinstance(v, list) or not v for v in sweep.values()):
        raise ScenarioError(f"sweep must map one dotted key to a non-empty list of values, got {sweep!r}")
    key, values = next(iter(sweep.items())) if sweep else (None, [None])
    if key is not None:
        if not isinstance(key, str):
            raise ScenarioError(f"sweep: the swept key must be a dotted name such as problem.rank, got {key!r}")
        shown = [json.dumps(v, sort_keys=True) for v in values]  # plain values only (they name the runs)
        if len(set(shown)) != len(shown):
            raise ScenarioError(f"sweep.{key} must list each value once, got {values!r}")
    if key is not None:
        for assignment in overrides:
            given = assignment.partition("=")[0]
            if given == key or key.startswith(given + ".") or given.startswith(key + "."):
                shown = ", ".join(map(str, values[:6])) + (", ..." if len(values) > 6 else "")
                raise ScenarioError(f"--set {given}: the study sweeps {key} ({shown}), so the --set would replace "
                                    f"the swept values while the results still name them; edit the sweep instead")
    target = data.get("target", 0.01)
    level = isinstance(target, dict) and len(target) == 1 and isinstance(next(iter(target.values())), (int, float))
    if not level and (isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1):
        raise ScenarioError(f"target must be a number in (0, 1) or a mapping {{metric: level}}, got {target!r}")
    reference = data.get("reference") or {}
    if not isinstance(reference, dict) or any(not isinstance(v, list) or len(v) != len(values)
                                              for v in reference.values()):
        raise ScenarioError(f"reference must map column names to lists with one value per swept value "
                            f"({len(values)}), got {reference!r}")
    runs = {}
    for value in values:
        for variant, change in variants.items():
            raw = merge(base, change)
            label = variant if key is None else f"{variant}_{key.split('.')[-1]}={value}"
            if key is not None:
                apply_override(raw, f"{key}={json.dumps(value)}")
            raw["name"] = f"{base.get('name', 'study')}-{label}".replace("=", "")
            try:
                runs[label] = (variant, value, from_dict(raw, overrides, seed))
            except ScenarioError as err:
                raise ScenarioError(f"compare.{variant}{'' if key is None else f' ({key}={value})'}: {err}") from None
    if level:
        (metric, _), = target.items()
        for label, (_, _, s) in runs.items():
            recorded = ("loss", "grad_norm", "suboptimality", *s.problem.recorded, *s.algorithm.recorded)
            if metric not in recorded:
                raise ScenarioError(f"target: metric {metric!r} is not recorded by run {label}; recorded: "
                                    f"{', '.join(recorded)}")
    return Study(name=str(base.get("name", "study")), sweep_key=key, runs=runs, target=target if level else float(target),
                 reference=reference)


def load_study(path) -> Study:
    p = Path(path)
    data = load_yaml(p, "study file")
    if not is_study(data):
        raise ScenarioError(f"study file {str(p)!r} has no compare section (a plain scenario: use load_scenario)")
    with relative_to(p.parent):
        return study_from_dict(data)


def run_study(study: Study, out_dir, engine: str = "auto", plots: bool = True, log=print) -> pd.DataFrame:
    """Run every variant (at every swept value), write the study directory atomically, return comparison rows."""
    from .results import atomic_directory, write_results
    from .runner import run

    with atomic_directory(out_dir) as tmp:
        results, rows = {}, []
        for label, (variant, value, scenario) in study.runs.items():
            res = run(scenario, engine=engine)
            write_results(res, tmp / label, plots=plots)
            results[label] = res
            s = res.summary
            rows.append({"variant": variant, **({study.sweep_key: value} if study.sweep_key else {}),
                         "updates": s.updates, "simulated_time": s.simulated_time,
                         "initial_loss": float(res.metrics["loss"].iloc[0]), "final_loss": s.final_loss,
                         "stopped_at": s.stopped_at, "staleness_max": s.staleness.max,
                         **_final_accuracy(res.metrics), **_memory_mb(s.algorithm_extra)})
            log(f"  {label:<28} {s.updates:>7} updates   time {s.simulated_time:.6g}   "
                f"loss {s.final_loss:.6g}")
        table = pd.DataFrame(rows)
        table["time_to_target"] = _times_to_target(table, [r.metrics for r in results.values()], study)
        table.to_csv(tmp / "comparison.csv", index=False, float_format="%.10g")
        _wide(table, study).to_csv(tmp / "table.csv", index=False, float_format="%.10g")
        if plots:
            from .plotting import plot_accuracy, plot_comparison, plot_images, save_figure

            (tmp / "plots").mkdir()
            curves = {label: r.metrics for label, r in results.items()}
            save_figure(plot_comparison(curves, study.name), tmp / "plots" / "comparison.png")
            if all("test_accuracy" in m for m in curves.values()):
                save_figure(plot_accuracy(curves, title=study.name), tmp / "plots" / "accuracy.png")
            images = {label: r.problem for label, r in results.items() if getattr(r.problem, "is_image", False)}
            if images:
                shown = {"original": next(iter(images.values())).target}
                shown.update({label: p.reconstruction(results[label].x) for label, p in images.items()})
                save_figure(plot_images(shown), tmp / "plots" / "images.png")
        (tmp / "summary.json").write_text(json.dumps({"study": study.name, "sweep": study.sweep_key,
                                                      "target": study.target, "runs": rows}, indent=2) + "\n")
    return table


def _final_accuracy(metrics: pd.DataFrame) -> dict:
    """The last recorded train and test accuracy, for classification problems."""
    return {f"final_{c}": float(metrics[c].iloc[-1]) for c in ("train_accuracy", "test_accuracy") if c in metrics}


def _memory_mb(extra: dict) -> dict:
    """Memory per node in MB (1e6 bytes), where the algorithm reports it (``memory_bytes_per_node`` among the
    summary's ``algorithm_extra``): the predicted total, the bytes its arrays hold in the predicted categories,
    and the held total with the input data."""
    memory = extra.get("memory_bytes_per_node")
    if memory is None:
        return {}
    held = memory["held"]
    return {"predicted_mb": memory["predicted"]["total"] / 1e6, "held_mb": (held["total"] - held["input"]) / 1e6,
            "held_with_input_mb": held["total"] / 1e6}


def _times_to_target(table: pd.DataFrame, metrics: list[pd.DataFrame], study: Study) -> list[float]:
    if isinstance(study.target, dict):
        (column, level), = study.target.items()
        for m in metrics:
            if column not in m:
                raise ScenarioError(f"target: metric {column!r} is not recorded; recorded: {', '.join(m.columns)}")
        return [float(m.loc[m[column] >= level, "time"].iloc[0]) if (m[column] >= level).any() else math.nan
                for m in metrics]
    groups = table[study.sweep_key] if study.sweep_key else pd.Series(0, index=table.index)
    out = []
    for i, m in enumerate(metrics):
        same = groups == groups.iloc[i]
        worst = table.loc[same, "final_loss"].max()
        goal = worst + study.target * (table.loc[i, "initial_loss"] - worst)
        hit = m.index[m["loss"] <= goal]
        out.append(float(m.loc[hit[0], "time"]) if len(hit) else math.nan)
    return out


def _wide(table: pd.DataFrame, study: Study) -> pd.DataFrame:
    """One row per swept value, one ``<variant>_time`` column per variant: the seed's table shape."""
    key = study.sweep_key or "run"
    t = table.assign(**({key: 0} if study.sweep_key is None else {}))
    variants = list(dict.fromkeys(table["variant"]))
    order = pd.unique(t[key])  # the swept values in the file's order (pivot sorts them)
    wide = t.pivot(index=key, columns="variant", values="time_to_target").reindex(order)[variants]
    columns = {f"{v}_time": wide[v] for v in variants}
    if key == "cluster.workers":
        columns.update({f"{v}_speedup": wide[v].iloc[0] / wide[v] for v in variants})
    for extra in ("predicted_mb", "held_mb", "held_with_input_mb"):
        if extra in t:
            pivot = t.pivot(index=key, columns="variant", values=extra).reindex(order)
            columns.update({f"{v}_{extra}": pivot[v] for v in variants})
    out = pd.DataFrame(columns).reset_index()
    for name, published in study.reference.items():
        out[name] = published
    return out


def format_table(table: pd.DataFrame, study: Study) -> str:
    wide = _wide(table, study)
    if isinstance(study.target, dict):
        (column, level), = study.target.items()
        rule = f"first {column} >= {level:g}"
    else:
        rule = f"within {study.target:g} of the gap to the highest final loss"
    return f"time to target ({rule}), simulated seconds\n" + \
        wide.to_string(index=False, float_format=lambda v: f"{v:.6g}")
