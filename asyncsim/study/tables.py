"""The tidy tables of a study, made from the run directories on disk (so a resumed study gives the same bytes).

- ``runs``: one row per evaluation run: the variant, every swept key, the seed, the tuned value, the final metrics,
  the time to target with ``reached`` (False: never reached, time NaN), and the wall time.
- ``curves``: every recorded metric row of every evaluation run in long form (variant, swept keys, seed, update,
  time, metric, value).
- ``table``: one row per cell: the number of seeds, the tuned value, and for the time to target and each final
  metric the mean, the standard deviation and a 95% confidence interval over seeds (Student t: mean +- t_{0.975,
  N-1} s / sqrt(N); none for one seed); the time to target over the seeds that reached it, with ``reached`` written
  out ("5 of 5 seeds", "not reached in 2 of 5 seeds"); the speedup T(first value) / T(n) when the study sweeps
  cluster.workers; the memory per node where the algorithm reports it; then the ``reference`` columns.
- ``tuning``: one row per (cell, grid value): the tuning seeds' scores and the value chosen.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from ..results import ResultDir
from ..targets import Target
from .spec import Cell, Run, Study

MEMORY = {"predicted_mb": "predicted MB per node", "held_mb": "held MB", "held_with_input_mb": "held MB with input"}
CONFIDENCE = 0.95
CI_METHOD = "Student t, 95%"


def mean_ci(values) -> tuple[float, float, float, float]:
    """(mean, sample standard deviation, lower, upper) of the 95% Student t interval mean +- t s / sqrt(N);
    NaN where it is not defined (no values; one value for the spread)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return (math.nan,) * 4
    mean = float(x.mean())
    if len(x) == 1:
        return mean, math.nan, math.nan, math.nan
    sd = float(x.std(ddof=1))
    half = float(half_width(sd, len(x)))
    return mean, sd, mean - half, mean + half


def half_width(sd, n: int):
    """The half width of the Student t interval of a mean of ``n`` values of sample standard deviation ``sd``
    (a number or an array): t_{(1 + CONFIDENCE) / 2, n - 1} sd / sqrt(n)."""
    return stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)


def _final(metrics: pd.DataFrame) -> dict:
    last = metrics.iloc[-1]
    return {f"final_{c}": float(last[c]) for c in metrics.columns if c not in ("update", "time")}


def times_to_target(study: Study, runs: list[Run], results: list[ResultDir]) -> list[float]:
    """Each run's time to target (see ``asyncsim.study.spec``); NaN where it is not reached."""
    if isinstance(study.target, Target):
        return [study.target.time(r.metrics) for r in results]
    group = [(run.cell.point, run.seed) for run in runs]
    worst: dict = {}
    for g, r in zip(group, results):
        worst[g] = max(worst.get(g, -math.inf), float(r.metrics["loss"].iloc[-1]))
    out = []
    for g, r in zip(group, results):
        f0 = float(r.metrics["loss"].iloc[0])
        goal = worst[g] + study.target * (f0 - worst[g])
        out.append(Target("loss", goal).time(r.metrics))
    return out


def run_table(study: Study, runs: list[Run], results: list[ResultDir]) -> pd.DataFrame:
    """One row per run (``runs.parquet``)."""
    rows = []
    for run, r, t in zip(runs, results, times_to_target(study, runs, results)):
        s = r.summary
        rows.append({"variant": run.cell.variant, **dict(run.cell.point), "seed": run.seed,
                     **{f"tuned {k}": run.tuned if k == run.key else None for k in study.tuned_keys},
                     "updates": s.updates, "simulated_time": s.simulated_time,
                     "initial_loss": float(r.metrics["loss"].iloc[0]), **_final(r.metrics),
                     "time_to_target": t, "reached": not math.isnan(t),
                     "diverged_at": s.diverged_at, "stopped_at": s.stopped_at, "reached_at": s.reached_at,
                     "staleness_max": s.staleness.max, **_memory_mb(s.algorithm_extra),
                     "wall_time_s": s.wall_time_s})
    return _plain(pd.DataFrame(rows))


def curve_table(study: Study, runs: list[Run], results: list[ResultDir]) -> pd.DataFrame:
    """Every recorded metric row of every run, long form (``curves.parquet``)."""
    parts = []
    for run, r in zip(runs, results):
        long = r.metrics.melt(id_vars=["update", "time"], var_name="metric", value_name="value")
        for key, value in reversed(list(run.cell.point)):
            long.insert(0, key, _plain_value(value))
        long.insert(0, "seed", run.seed)
        long.insert(0, "variant", run.cell.variant)
        parts.append(long)
    curves = pd.concat(parts, ignore_index=True)
    order = ["variant", *study.keys, "seed", "update", "time", "metric", "value"]
    return curves[order]


def cell_table(study: Study, runs_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, in the study's order (``table.csv``)."""
    n = len(study.seeds)
    finals = [c for c in runs_frame.columns if c.startswith("final_") and c != "final_grad_norm"]
    rows = []
    for i, cell in enumerate(study.cells):
        mine = runs_frame.iloc[i * n:(i + 1) * n]
        row = {"variant": cell.variant, **{k: _plain_value(v) for k, v in cell.point}, "seeds": n}
        for k in study.tuned_keys:
            row[f"tuned {k}"] = _plain_value(mine[f"tuned {k}"].iloc[0])
        reached = int(mine["reached"].sum())
        row.update(_stats("time_to_target", mine.loc[mine["reached"], "time_to_target"]))
        seeds = f"{n} seed{'s' * (n != 1)}"
        row["reached"] = f"{reached} of {seeds}" if reached == n else f"not reached in {n - reached} of {seeds}"
        for c in finals:
            row.update(_stats(c, mine[c]))
        for c in MEMORY:
            if c in mine:
                row[c] = float(mine[c].mean())
        rows.append(row)
    table = pd.DataFrame(rows)
    if "cluster.workers" in study.keys:  # speedup T(first value) / T(n) at the same other keys, ratio of means
        others = [k for k in study.keys if k != "cluster.workers"]
        first = table.groupby(["variant", *others], sort=False)["time_to_target_mean"].transform(
            lambda times: times.iloc[0])  # the first value's time, NaN when it was never reached
        table.insert(table.columns.get_loc("reached") + 1, "speedup", first / table["time_to_target_mean"])
    points = study.points
    for name, published in study.reference.items():
        table[name] = [published[points.index(c.point)] for c in study.cells]
    return table


def tuning_table(study: Study, runs: list[Run], results: list[ResultDir]) -> tuple[dict[Cell, int], pd.DataFrame]:
    """The value chosen for each tuned cell (as an index into its grid) and the scores behind the choice."""
    scores: dict = {}
    times = times_to_target(study, runs, results) if study.tune.by == "time_to_target" else [math.nan] * len(runs)
    for run, r, t in zip(runs, results, times):
        loss = float(r.metrics["loss"].iloc[-1])
        scores.setdefault((run.cell, run.cell.grid.index(run.tuned)), []).append(
            (t, loss if math.isfinite(loss) else math.inf))
    chosen, rows = {}, []
    for cell in study.cells:
        if not cell.grid:
            continue
        ranked = []
        for i, value in enumerate(cell.grid):
            got = scores[cell, i]
            t = [x for x, _ in got]
            missed = sum(math.isnan(x) for x in t)
            mean_t = float(np.mean([x for x in t if not math.isnan(x)])) if missed < len(t) else math.nan
            mean_loss = float(np.mean([f for _, f in got]))
            key = ((missed, 0.0 if math.isnan(mean_t) else mean_t, mean_loss) if study.tune.by == "time_to_target"
                   else (mean_loss,))
            ranked.append((key, i))
            timed = {"time_to_target_mean": mean_t, "missed": missed} if study.tune.by == "time_to_target" else {}
            rows.append({"variant": cell.variant, **{k: _plain_value(v) for k, v in cell.point},
                         "key": cell.key, "value": _plain_value(value), "seeds": len(got), **timed,
                         "final_loss_mean": mean_loss})
        best = min(ranked)[1]
        chosen[cell] = best
        for i, row in enumerate(rows[-len(cell.grid):]):
            row["chosen"] = i == best
    return chosen, pd.DataFrame(rows)


def target_rule(study: Study) -> str:
    """The time to target's rule, in words."""
    if isinstance(study.target, Target):
        return f"the first recorded time with {study.target}"
    return (f"the first recorded time the loss is within {study.target:.0%} of the gap between the initial loss "
            f"and the highest final loss of the variants")


def markdown(study: Study, table: pd.DataFrame) -> str:
    """``table.md``: the cell table for reading, with the rule behind each number."""
    rule = target_rule(study)
    n = len(study.seeds)
    finals = [c[:-5] for c in table.columns if c.startswith("final_") and c.endswith("_mean")]
    head = ["variant", *study.keys] + [f"tuned {k}" for k in study.tuned_keys] + \
        ["time to target (s)", *[f[6:].replace("_", " ") for f in finals]] + \
        (["speedup"] if "speedup" in table else []) + [MEMORY[c] for c in MEMORY if c in table] + list(study.reference)
    lines = [f"# {study.name}", "",
             f"Time to target: {rule}, simulated seconds; mean [95% CI] over the seeds that reach it.  Final "
             f"metrics: mean [95% CI] over {n} seed{'s' * (n != 1)} ({', '.join(map(str, study.seeds[:10]))}"
             f"{', ...' if n > 10 else ''}).  Intervals: {CI_METHOD} (none for one seed).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in table.iterrows():
        cells = [row["variant"], *[_fmt(row[k]) for k in study.keys]]
        cells += [_fmt(row[f"tuned {k}"]) for k in study.tuned_keys]
        time = _interval(row, "time_to_target")
        if not row["reached"].startswith(f"{n} of"):
            time = row["reached"] if math.isnan(row["time_to_target_mean"]) else f"{time} ({row['reached']})"
        cells.append(time)
        cells += [_interval(row, f) for f in finals]
        if "speedup" in table:
            cells.append(_fmt(row["speedup"]))
        cells += [_fmt(row[c]) for c in MEMORY if c in table]
        cells += [_fmt(row[k]) for k in study.reference]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


def _interval(row, name: str) -> str:
    mean, lo, hi = row[f"{name}_mean"], row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if math.isnan(mean):
        return "-"
    return _fmt(mean) if math.isnan(lo) else f"{_fmt(mean)} [{_fmt(lo)}, {_fmt(hi)}]"


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _stats(name: str, values) -> dict:
    mean, sd, lo, hi = mean_ci([float(v) for v in values])
    return {f"{name}_mean": mean, f"{name}_sd": sd, f"{name}_ci_low": lo, f"{name}_ci_high": hi}


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


def _plain_value(value):
    """A swept or tuned value as a table cell: numbers and strings as they are, anything else as its JSON text."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return json.dumps(value, sort_keys=True)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    for c in frame.columns:
        if frame[c].dtype == object:
            frame[c] = frame[c].map(_plain_value)
    return frame
