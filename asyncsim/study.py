"""Studies: one scenario file that compares variants (``compare``), optionally over a swept value (``sweep``).

A study file is a scenario plus

```yaml
compare:                       # variant name -> the keys it changes (merged into the scenario)
  gd:    {protocol: {kind: sync}, algorithm: {kind: gd, lr: 0.05}}
  seacd: {protocol: {kind: serial_async, tau: 3}, algorithm: {kind: seacd, tau: 3}}
sweep: {problem.rank: [6, 11, 21]}   # optional: one dotted key and its values
target: 0.01                   # optional: the gap fraction for time-to-target (default 0.01)
```

Merging: mappings merge key by key, except that a mapping with a ``kind`` replaces the scenario's mapping (another
kind has other keys).  Every variant (at every swept value) is validated when the study loads.  Each run writes
its own result directory; the study adds ``comparison.csv`` (one row per run), ``table.csv`` (swept value x variant:
time to target, the shape of the seed's runtime table) and ``plots/comparison.png``.

Time to target: the accuracy every variant reaches, compared by when each gets there.  At each swept value the
target loss is f_worst + target (f_0 - f_worst), f_worst the highest final loss of the variants and f_0 the initial
loss; a variant's time to target is the first recorded simulated time at which its loss is at or below it.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .params import ScenarioError, relative_to
from .scenario import Scenario, apply_override, from_dict, parse_yaml

STUDY_KEYS = ("compare", "sweep", "target")


@dataclass(frozen=True)
class Study:
    """The validated runs of a study file: ``runs`` maps a label to (variant, swept value, Scenario)."""

    name: str
    sweep_key: str | None
    runs: dict[str, tuple[str, object, Scenario]]
    target: float


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
    sweep = data.get("sweep") or {}
    if not isinstance(sweep, dict) or len(sweep) > 1 or any(not isinstance(v, list) or not v for v in sweep.values()):
        raise ScenarioError(f"sweep must map one dotted key to a non-empty list of values, got {sweep!r}")
    key, values = next(iter(sweep.items())) if sweep else (None, [None])
    target = data.get("target", 0.01)
    if not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ScenarioError(f"target must be a number in (0, 1), got {target!r}")
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
    return Study(name=str(base.get("name", "study")), sweep_key=key, runs=runs, target=float(target))


def load_study(path) -> Study:
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(f"scenario file {str(p)!r} not found")
    with relative_to(p.parent):
        return study_from_dict(parse_yaml(p.read_text(), str(p)))


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
                         "updates": s["updates"], "simulated_time": s["simulated_time"],
                         "initial_loss": float(res.metrics["loss"].iloc[0]), "final_loss": s["final_loss"],
                         "stopped_at": s.get("stopped_at"), "staleness_max": s["staleness"]["max"]})
            log(f"  {label:<28} {s['updates']:>7} updates   time {s['simulated_time']:.6g}   "
                f"loss {s['final_loss']:.6g}")
        table = pd.DataFrame(rows)
        table["time_to_target"] = _times_to_target(table, [r.metrics for r in results.values()], study)
        table.to_csv(tmp / "comparison.csv", index=False, float_format="%.10g")
        _wide(table, study).to_csv(tmp / "table.csv", index=False, float_format="%.10g")
        if plots:
            from .plotting import plot_comparison, plot_images, save_figure

            (tmp / "plots").mkdir()
            curves = {label: r.metrics for label, r in results.items()}
            save_figure(plot_comparison(curves, study.name), tmp / "plots" / "comparison.png")
            images = {label: r.problem for label, r in results.items() if getattr(r.problem, "is_image", False)}
            if images:
                shown = {"original": next(iter(images.values())).target}
                shown.update({label: p.reconstruction(results[label].x) for label, p in images.items()})
                save_figure(plot_images(shown), tmp / "plots" / "images.png")
        (tmp / "summary.json").write_text(json.dumps({"study": study.name, "sweep": study.sweep_key,
                                                      "target": study.target, "runs": rows}, indent=2) + "\n")
    return table


def _times_to_target(table: pd.DataFrame, metrics: list[pd.DataFrame], study: Study) -> list[float]:
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
    wide = t.pivot(index=key, columns="variant", values="time_to_target")
    wide = wide[list(dict.fromkeys(table["variant"]))]
    wide.columns = [f"{v}_time" for v in wide.columns]
    return wide.reset_index()


def format_table(table: pd.DataFrame, study: Study) -> str:
    wide = _wide(table, study)
    return f"time to target (within {study.target:g} of the gap to the highest final loss), simulated seconds\n" + \
        wide.to_string(index=False, float_format=lambda v: f"{v:.6g}")
