"""A target level of a recorded metric: where a run stops early (``run.stop_at``) and what a study's time to
target measures.  One rule for the direction: a metric whose name ends in ``accuracy`` is reached at or above the
level, any other (loss, grad_norm, suboptimality, ...) at or below it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .params import require


@dataclass(frozen=True)
class Target:
    """``metric`` reaching ``level``: ``metric >= level`` for accuracies, ``metric <= level`` otherwise."""

    metric: str
    level: float

    def __post_init__(self):
        require(bool(self.metric), "metric", "must name a recorded metric (e.g. loss, test_accuracy)", self.metric)
        require(math.isfinite(self.level), "level", "must be finite", self.level)

    @property
    def higher_is_better(self) -> bool:
        return self.metric.endswith("accuracy")

    def reached(self, values):
        """Elementwise: whether ``values`` (a number or an array) reach the level (NaN never does)."""
        values = np.asarray(values, dtype=float)
        return values >= self.level if self.higher_is_better else values <= self.level

    def first(self, metrics: pd.DataFrame) -> tuple[int, float] | None:
        """The first recorded row of ``metrics`` (metrics.csv) that reaches the level, as (update, time); None when
        no row does."""
        hit = np.flatnonzero(self.reached(metrics[self.metric].to_numpy()))
        if not len(hit):
            return None
        row = metrics.iloc[int(hit[0])]
        return int(row["update"]), float(row["time"])

    def time(self, metrics: pd.DataFrame) -> float:
        """The simulated time of the first recorded row that reaches the level, NaN when none does."""
        hit = self.first(metrics)
        return math.nan if hit is None else hit[1]

    def __str__(self) -> str:
        return f"{self.metric} {'>=' if self.higher_is_better else '<='} {self.level:g}"
