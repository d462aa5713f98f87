"""Study files: one scenario plus the variants it compares, the grid it sweeps, the seeds it replicates and the
step sizes it tunes.  Every run is validated when the file loads.

```yaml
compare:                        # variant name -> the keys it changes (merged into the scenario)
  gd:    {protocol: {kind: sync}, algorithm: {kind: gd}}
  seacd: {protocol: {kind: serial_async, tau: 3}, algorithm: {kind: seacd, tau: 3}, tune: null}
sweep:                          # optional: the product of the listed keys' values ...
  problem.rank: [6, 11, 21]
  zip: {cluster.workers: [1, 4], run.updates: [400, 100]}   # ... and keys that move together
seeds: 5                        # optional: evaluation seeds seed, seed+1, ... (or a list)
tune:                           # optional: each variant's value of a key, chosen per cell from a grid
  algorithm.lr: [1.0, 0.3, 0.1] # the default grid (a variant's own tune: {key: values} replaces it)
  seeds: 2                      # tuning seeds, disjoint from the evaluation seeds (default: the next ones)
  by: time_to_target            # or final_loss (default: time_to_target with a metric level, else final_loss)
target: {metric: test_accuracy, level: 0.9}   # or a gap fraction in (0, 1) (default 0.01); {test_accuracy: 0.9}
reference: {seed_time: [1.2, 2.3, 4.1]}       # optional: published numbers, one per swept point
```

Merging: mappings merge key by key, except that a mapping with a ``kind`` replaces the scenario's mapping (another
kind has other keys).  A variant's own ``tune`` (a mapping ``{key: values}``, possibly of another key, or null for
no tuning) replaces the grid of the top-level ``tune`` for that variant.

Time to target: with a :class:`~asyncsim.targets.Target`, the first recorded simulated time at which the metric
reaches the level; with a gap fraction g, per swept point and seed, the first recorded time at which the loss is at
or below f_worst + g (f_0 - f_worst), f_worst the highest final loss of the variants and f_0 the initial loss.

Tuning: for every cell (variant at a swept point) and every grid value, the study runs the tuning seeds; the value
chosen is the one with the fewest tuning seeds that miss the target, then the least mean time to target, then
the least mean final loss (``by: time_to_target``), or the least mean final loss (``by: final_loss``; NaN counts as
infinite); ties go to the earlier grid value.  The evaluation seeds then run with the chosen value, so the reported
numbers are not selected on the noise they report.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..files import load_yaml
from ..params import MAX_INT, ParamError, ScenarioError, relative_to
from ..scenario import Scenario, apply_override, check_name, from_dict, recorded_metrics
from ..targets import Target

STUDY_KEYS = ("compare", "sweep", "target", "reference", "seeds", "tune")
TUNE_BY = ("time_to_target", "final_loss")
RESERVED = ("name", "seed")
"""Keys a variant, a sweep or a tuning grid may not set: the study names its runs and gives their seeds."""
MAX_RUNS = 100_000
"""The most runs (tuning and evaluation) a study may make."""

Point = tuple[tuple[str, Any], ...]
"""A swept point: (dotted key, value) pairs in the order of the study's keys."""


@dataclass(frozen=True)
class Tune:
    """How the study tunes: the tuning ``seeds`` and the criterion ``by`` (one of TUNE_BY)."""

    seeds: tuple[int, ...]
    by: str


@dataclass(frozen=True, eq=False)
class Cell:
    """A variant at a swept point; ``grid`` holds the values of the tuned ``key`` it tries (empty: not tuned).
    Cells compare by identity: a study makes each once."""

    variant: str
    point: Point
    grid: tuple = ()
    key: str | None = None

    @property
    def name(self) -> str:
        return _label(self.variant, self.point)


@dataclass(frozen=True)
class Run:
    """One run of a study: a cell at a seed, with a value of the tuned key (None where the cell is not tuned)."""

    cell: Cell
    seed: int
    scenario: Scenario | None
    tuned: Any = None
    key: str | None = None
    """The tuned key (None where the cell is not tuned)."""
    tuning: bool = False

    @property
    def label(self) -> str:
        """The run's directory name under runs/ (or, for a tuning run, tuning/)."""
        extra = ((self.key, self.tuned),) if self.tuning else ()
        return _label(self.cell.variant, self.cell.point + extra) + f"_seed={self.seed}"


@dataclass(frozen=True)
class Study:
    """A validated study: its ``cells`` (points in file order, variants in file order within a point), the
    evaluation ``seeds``, the ``tune`` settings (None: nothing tuned), the ``target`` (a gap fraction or a
    Target) and the ``reference`` columns (one value per point).  ``scenarios`` holds every run's validated
    scenario, keyed by (cell, index in the cell's grid or None, seed)."""

    name: str
    keys: tuple[str, ...]
    points: tuple[Point, ...]
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]
    tune: Tune | None
    target: float | Target
    reference: dict
    scenarios: dict

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(c.variant for c in self.cells))

    def tuning_runs(self) -> list[Run]:
        """Every (cell, grid value, tuning seed) run, in a fixed order."""
        if self.tune is None:
            return []
        return [Run(c, s, self.scenarios[c, i, s], v, c.key, tuning=True)
                for c in self.cells for i, v in enumerate(c.grid) for s in self.tune.seeds]

    def evaluation_runs(self, chosen: dict[Cell, int] | None = None) -> list[Run]:
        """Every (cell, evaluation seed) run, with the tuned key at the ``chosen`` index of each tuned cell's
        grid."""
        chosen = chosen or {}
        runs = []
        for c in self.cells:
            i = chosen[c] if c.grid else None
            runs += [Run(c, s, self.scenarios[c, i, s], None if i is None else c.grid[i], c.key)
                     for s in self.seeds]
        return runs

    @property
    def tuned_keys(self) -> list[str]:
        return list(dict.fromkeys(c.key for c in self.cells if c.grid))

    def __len__(self) -> int:
        return len(self.tuning_runs()) + len(self.cells) * len(self.seeds)


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


def study_from_dict(data: dict, overrides=(), seed: int | None = None, seeds: int | None = None) -> Study:
    """Validate every run of a study mapping.  ``overrides`` (``--set``) and ``seed`` (the base seed) apply to
    each run; ``seeds`` replaces the file's number of evaluation seeds."""
    base = {k: v for k, v in data.items() if k not in STUDY_KEYS}
    if seed is not None:
        if not 0 <= seed <= MAX_INT:
            raise ScenarioError(f"--seed must be in [0, 2**63), got {seed}")
        if isinstance(data.get("seeds"), list) and seeds is None:
            raise ScenarioError(f"--seed sets the first of the study's seeds, but its file lists them "
                                f"(seeds: {data['seeds']}); use --seeds N with --seed, or edit the list")
        base["seed"] = seed
    variants = _variants(data.get("compare"))
    keys, points = _grid(data.get("sweep"))
    eval_seeds = _seeds(data.get("seeds", 1) if seeds is None else seeds, base.get("seed", 0), "seeds")
    target = _target(data.get("target", 0.01))
    tune, default = _tune(data.get("tune"), eval_seeds, target)
    grids = [len(((default if own is None else own) or (None, ()))[1]) for _, own in variants.values()]
    count = len(points) * sum(len(eval_seeds) + g * len(tune.seeds if tune else ()) for g in grids)
    if count > MAX_RUNS:
        raise ScenarioError(f"the study makes {count} runs ({len(points)} points, {len(variants)} variants, "
                            f"{len(eval_seeds)} seeds and the tuning runs); at most {MAX_RUNS}")
    _check_sets(overrides, keys, points, [default, *(own for _, own in variants.values())])
    reference = data.get("reference") or {}
    if not isinstance(reference, dict) or any(not isinstance(v, list) or len(v) != len(points)
                                              for v in reference.values()):
        raise ScenarioError(f"reference must map column names to lists with one value per swept point "
                            f"({len(points)}), got {reference!r}")
    cells, scenarios = [], {}
    for point in points:
        for variant, (change, own) in variants.items():
            own = default if own is None else own
            if own and tune is None:
                raise ScenarioError(f"compare.{variant}.tune needs a top-level tune section (its seeds and "
                                    f"criterion), e.g. tune: {{seeds: 2}}")
            tuned, grid = own or (None, ())
            if tuned in keys:
                raise ScenarioError(f"compare.{variant}.tune: {tuned} is also swept; tune another key")
            cell = Cell(variant, point, tuple(grid), tuned)
            cells.append(cell)
            raw = merge(base, change)
            raw["name"] = f"{base.get('name', 'study')}-{variant}"
            for key, value in point:
                apply_override(raw, f"{key}={json.dumps(value)}")
            scenarios.update(_cell_scenarios(cell, raw, overrides, eval_seeds, tune))
    study = Study(name=str(base.get("name", "study")), keys=keys, points=tuple(points), cells=tuple(cells),
                  seeds=eval_seeds, tune=tune if any(c.grid for c in cells) else None, target=target,
                  reference=reference, scenarios=scenarios)
    _check_labels(study)
    if isinstance(target, Target):
        for cell in cells:
            recorded = recorded_metrics(scenarios[cell, 0 if cell.grid else None, eval_seeds[0]])
            if target.metric not in recorded:
                raise ScenarioError(f"target: metric {target.metric!r} is not recorded by compare.{cell.variant}; "
                                    f"recorded: {', '.join(recorded)}")
    return study


def _check_sets(overrides, keys: tuple[str, ...], points: list[Point], grids: list) -> None:
    """``--set`` assignments are ``key=value`` and do not replace a swept or tuned value (the results name them)."""
    fixed = {key: [v for p in points for k, v in p if k == key] for key in keys}
    for own in grids:
        if own:
            fixed.setdefault(own[0], []).extend(own[1])
    for assignment in overrides:
        given, sep, _ = assignment.partition("=")
        if not sep or not given:
            raise ScenarioError(f"--set needs dotted.key=value, got {assignment!r}")
        for key, values in fixed.items():
            if given == key or key.startswith(given + ".") or given.startswith(key + "."):
                values = list(dict.fromkeys(json.dumps(v) for v in values))
                shown = ", ".join(values[:6]) + (", ..." if len(values) > 6 else "")
                what, done, edit = ("sweeps", "swept", "the sweep") if key in keys else \
                    ("tunes", "tuned", "the tune grid")
                raise ScenarioError(f"--set {given}: the study {what} {key} ({shown}), so the --set would replace "
                                    f"the {done} values while the results still name them; edit {edit} instead")


def _cell_scenarios(cell: Cell, raw: dict, overrides, eval_seeds, tune: Tune | None) -> dict:
    """Every validated scenario of a cell: {(cell, grid index or None, seed): Scenario}, a mistake prefixed with
    the variant, the point and the tuned value."""
    where = f"compare.{cell.variant}" + "".join(f" ({k}={v})" for k, v in cell.point)
    out = {}
    for i in range(len(cell.grid)) if cell.grid else (None,):
        try:
            scenario = from_dict(raw if i is None else _with(raw, cell.key, cell.grid[i]), overrides)
        except ScenarioError as err:
            at = "" if i is None else f" ({cell.key}={cell.grid[i]})"
            raise ScenarioError(f"{where}{at}: {err}") from None
        for s in (*eval_seeds, *(tune.seeds if i is not None else ())):
            out[cell, i, s] = scenario if s == scenario.seed else _reseed(scenario, s, where)
    return out


def load_study(path, overrides=(), seed: int | None = None, seeds: int | None = None) -> Study:
    """Load and validate a study file (a scenario with a ``compare`` section)."""
    p = Path(path)
    data = load_yaml(p, "study file")
    if not is_study(data):
        raise ScenarioError(f"study file {str(p)!r} has no compare section (a plain scenario: use load_scenario)")
    with relative_to(p.parent):
        return study_from_dict(data, overrides, seed, seeds)


def _variants(compare) -> dict[str, tuple[dict, tuple | None]]:
    """compare -> {variant: (the keys it changes, its own (key, grid), None to inherit the default, () for
    none)}."""
    if not isinstance(compare, dict) or not compare or not all(isinstance(v, dict) for v in compare.values()):
        raise ScenarioError("compare must map variant names to mappings of the keys they change")
    out = {}
    for variant, change in compare.items():
        if not isinstance(variant, str):
            raise ScenarioError(f"compare: a variant name must be a string (it names the run's directory), got "
                                f"{variant!r} ({type(variant).__name__})")
        check_name(variant, "the variant's runs", f"compare.{variant}")
        change = dict(change)
        for key in RESERVED:
            if key in change:
                raise ScenarioError(f"compare.{variant}.{key}: a variant cannot set its {key} (the study names its "
                                    f"runs and gives their seeds: use seeds: at the top level)")
        own = None
        if "tune" in change:
            given = change.pop("tune")
            own = () if given is None else next(iter(_one_grid(given, f"compare.{variant}.tune").items()))
        out[variant] = (change, own)
    return out


def _grid(sweep) -> tuple[tuple[str, ...], list[Point]]:
    """The swept keys and the points: the product of ``sweep``'s keys, times the ``zip`` keys moving together."""
    sweep = {} if sweep is None else sweep
    if not isinstance(sweep, dict):
        raise ScenarioError(f"sweep must map dotted keys to non-empty lists of values, got {sweep!r}")
    sweep = dict(sweep)
    zipped = sweep.pop("zip", None) or {}
    if not isinstance(zipped, dict):
        raise ScenarioError(f"sweep.zip must map dotted keys to lists of one length, got {zipped!r}")
    for where, group in (("sweep", sweep), ("sweep.zip", zipped)):
        for key, values in group.items():
            _check_key(key, where, "swept")
            if not isinstance(values, list) or not values:
                raise ScenarioError(f"{where}.{key} must be a non-empty list of values, got {values!r}")
            _check_distinct(values, f"{where}.{key}")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ScenarioError(f"sweep.zip lists must have one length (their values move together), got "
                            f"{ {k: len(v) for k, v in zipped.items()} }")
    both = set(sweep) & set(zipped)
    if both:
        raise ScenarioError(f"sweep.zip: {sorted(both)[0]} is also swept on its own; list it once")
    keys = tuple(sweep) + tuple(zipped)
    count = math.prod(len(v) for v in sweep.values()) * (len(next(iter(zipped.values()))) if zipped else 1)
    if count > 10_000:
        raise ScenarioError(f"sweep makes {count} points; at most 10000")
    together = list(zip(*zipped.values())) if zipped else [()]
    points = [tuple(zip(keys, combo + moved)) for combo in itertools.product(*sweep.values()) for moved in together]
    return keys, points


def _seeds(value, base: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, bool) or not isinstance(value, (int, list)):
        raise ScenarioError(f"{where} must be a number of seeds or a list of seeds, got {value!r}")
    if isinstance(value, int):
        if not isinstance(base, int) or isinstance(base, bool):
            base = 0  # the scenario's own check names a bad seed
        if not 1 <= value <= 10_000:
            raise ScenarioError(f"{where} must be between 1 and 10000, got {value!r}")
        return tuple(base + i for i in range(value))
    if not value or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_INT for s in value) \
            or len(set(value)) != len(value):
        raise ScenarioError(f"{where} must list distinct seeds in [0, 2**63), got {value!r}")
    return tuple(value)


def _tune(top, eval_seeds, target) -> tuple[Tune | None, tuple | None]:
    """The top-level tune section -> (Tune, the default (key, grid) or None).  The criterion defaults to the time to
    target when the target is a metric level, else to the final loss."""
    if top is None:
        return None, None
    if not isinstance(top, dict):
        raise ScenarioError(f"tune must be a mapping {{key: [values], seeds: N, by: ...}}, got {top!r}")
    top = dict(top)
    by = top.pop("by", None)
    count = top.pop("seeds", 1)
    default = next(iter(_one_grid(top, "tune").items())) if top else None
    if by is not None and by not in TUNE_BY:
        raise ScenarioError(f"tune.by must be one of {', '.join(TUNE_BY)}, got {by!r}")
    after = max(eval_seeds) + 1
    seeds = _seeds(count, after, "tune.seeds")
    if max(seeds) > MAX_INT:
        raise ScenarioError(f"tune.seeds: the tuning seeds follow the evaluation seeds ({after}, ...) and pass "
                            f"2**63 - 1; list them (tune: {{seeds: [...]}})")
    shared = sorted(set(seeds) & set(eval_seeds))
    if shared:
        raise ScenarioError(f"tune.seeds must be disjoint from the evaluation seeds (a value chosen on the noise "
                            f"it is scored on is biased); both have {shared[0]}")
    by = by or ("time_to_target" if isinstance(target, Target) else "final_loss")
    if by == "time_to_target" and not isinstance(target, Target):
        raise ScenarioError("tune.by time_to_target needs a target {metric: ..., level: ...} (a gap fraction "
                            "depends on the other variants); use tune.by: final_loss")
    return Tune(seeds=seeds, by=by), default


def _one_grid(mapping, where: str) -> dict:
    if not isinstance(mapping, dict) or len(mapping) != 1:
        raise ScenarioError(f"{where} must give one key and its grid of values, e.g. algorithm.lr: [0.3, 0.1], "
                            f"got {mapping!r}")
    (key, values), = mapping.items()
    _check_key(key, where, "tuned")
    if not isinstance(values, list) or not values:
        raise ScenarioError(f"{where} must give one dotted key and a non-empty list of values, got {mapping!r}")
    _check_distinct(values, f"{where}.{key}")
    return {key: values}


def _check_key(key, where: str, what: str) -> None:
    """A swept or tuned key: a dotted name of non-empty parts, not one the study sets itself."""
    if not isinstance(key, str) or not all(key.split(".")):
        raise ScenarioError(f"{where}: a {what} key must be a dotted name such as problem.rank, got {key!r}")
    if key.split(".")[0] in RESERVED:
        raise ScenarioError(f"{where}.{key}: the study names its runs and gives their seeds; use seeds: (a number "
                            f"or a list) to replicate over seeds")


def _check_distinct(values: list, where: str) -> None:
    """Each value once, where 1 and 1.0 are the same value."""
    def canonical(v):
        if isinstance(v, bool) or not isinstance(v, (int, float, list, dict)):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, list):
            return [canonical(u) for u in v]
        return {str(k): canonical(u) for k, u in v.items()}

    shown = [json.dumps(canonical(v), sort_keys=True, default=str) for v in values]
    if len(set(shown)) != len(shown):
        raise ScenarioError(f"{where} must list each value once, got {values!r}")


def _target(target) -> float | Target:
    if isinstance(target, dict):
        if set(target) == {"metric", "level"}:
            metric, level = target["metric"], target["level"]
        elif len(target) == 1:
            (metric, level), = target.items()
        else:
            metric = level = None
        if isinstance(metric, str) and not isinstance(level, bool) and isinstance(level, (int, float)):
            try:
                return Target(metric, float(level))
            except (ParamError, OverflowError) as err:
                raise ScenarioError(f"target.{err}") from None
    elif not isinstance(target, bool) and isinstance(target, (int, float)) and 0 < target < 1:
        return float(target)
    raise ScenarioError(f"target must be a number in (0, 1) or a mapping {{metric: ..., level: ...}}, got "
                        f"{target!r}")


def _with(raw: dict, key: str, value) -> dict:
    out = copy.deepcopy(raw)
    apply_override(out, f"{key}={json.dumps(value)}")
    return out


def _reseed(scenario: Scenario, seed: int, where: str) -> Scenario:
    try:
        return replace(scenario, seed=seed)
    except ScenarioError as err:
        raise ScenarioError(f"{where} (seed {seed}): {err}") from None


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _label(variant: str, point: Point) -> str:
    """A directory name: the variant, then key=value for each swept value (the last part of the key; a value's
    characters other than letters, digits, '.', '+' and '-' become single '-')."""
    def shown(v):
        text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-")

    return "_".join([variant] + [f"{_short(k)}={shown(v)}" for k, v in point])


def _check_labels(study: Study) -> None:
    """Every run has its own directory name, short enough for any file system."""
    chosen = {c: 0 for c in study.cells if c.grid}
    for runs in (study.tuning_runs(), study.evaluation_runs(chosen)):
        seen: set[str] = set()
        for run in runs:
            label = run.label
            if len(label) > 200:
                raise ScenarioError(f"compare.{run.cell.variant}: the run name {label[:60]}... is over 200 "
                                    f"characters; use shorter variant names or swept values")
            if label in seen:
                raise ScenarioError(f"two runs would share the directory {label!r}: give the swept values "
                                    f"distinct names")
            seen.add(label)
