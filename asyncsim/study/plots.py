"""A study's figures, drawn from its tidy tables: curves with confidence bands (a colour per variant, a panel per
swept point, the legend outside the data), the time to target against the swept key with error bars, and, for a
study with a sweep, the final loss against the swept key."""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from ..plotting import SHOWN
from .tables import CI_METHOD, _plain_value, half_width
from ..targets import Target
from .spec import Study

GRID = 200
"""Points of the common time grid on which a cell's seeds are averaged."""


def colours(n: int) -> list:
    """``n`` distinguishable colours: tab10 up to 10, tab20 beyond."""
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def band(curves: list[tuple[np.ndarray, np.ndarray]], log: bool = False, logx: bool = False, floor: float = 0.0
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Seeds' curves (time, value) on a common grid up to the earliest last time: (grid, mean, lower, upper),
    the band the 95% Student t interval of the mean at each grid time (none for one seed).  With ``log``, the
    mean and the interval are those of log10(max(value, floor)), mapped back: the geometric mean, whose band stays
    positive on a log axis.  With ``logx``, the grid is spaced evenly in log time from the first positive time."""
    end = min(float(t[-1]) for t, _ in curves)
    if logx:
        start = min(float(t[t > 0][0]) for t, _ in curves if (t > 0).any())
        grid = np.geomspace(min(start, end), end, GRID)
    else:
        grid = np.linspace(0.0, end, GRID)
    values = np.array([np.interp(grid, t, v) for t, v in curves])
    if log:
        values = np.log10(np.clip(values, max(floor, 1 / SHOWN), None))
    mean = values.mean(axis=0)
    lo = hi = mean
    if len(curves) > 1:
        half = half_width(values.std(axis=0, ddof=1), len(curves))
        lo, hi = mean - half, mean + half
    return (grid, *(10.0 ** np.array([mean, lo, hi]) if log else (mean, lo, hi)))


def plot_curves(curves: pd.DataFrame, study: Study, metric: str, label: str, names: dict[str, str] | None = None):
    """``metric`` against simulated time: the mean over seeds with its confidence band, one colour per variant and
    a panel per swept point; a study of one point and more than eight variants gets a panel per variant instead
    (the others drawn thin and grey behind it), so no legend holds more than eight entries.  A positive loss is
    drawn on a log scale, an accuracy against log time (its rise is early).  ``names`` gives a variant's legend
    entry (its tuned value); the study's target level is drawn when it is on this metric."""
    names = names or {}
    points, variants = study.points, study.variants
    per_variant = len(points) == 1 and len(variants) > 8
    panels = variants if per_variant else points
    cols = min(4 if not per_variant else 5, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + (0 if per_variant else 2.2), 2.7 * rows + 0.6),
                             squeeze=False, sharey=True, sharex=per_variant, layout="constrained")
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    mine = curves[curves["metric"] == metric]
    palette = dict(zip(variants, colours(len(variants))))
    logx = metric.endswith("accuracy")
    log = not logx and bool((mine["value"] > 0).mean() > 0.5)
    floor = 1e-16 * float(mine["value"].abs().max()) if log else 0.0  # zero to rounding: drawn at this floor
    bands, handles = {}, {}  # (index of the point, variant) -> band
    for i, point in enumerate(points):
        here = mine
        for key, value in point:
            here = here[here[key] == _plain_value(value)]
        for variant in variants:
            runs = [(g["time"].to_numpy(), np.clip(g["value"].to_numpy(), -SHOWN, SHOWN))
                    for _, g in here[here["variant"] == variant].groupby("seed", sort=False)]
            if runs:
                bands[i, variant] = band(runs, log, logx, floor)
    n = len(study.seeds)
    for j, (ax, panel) in enumerate(zip(axes.ravel(), panels)):
        shown = [(0, panel)] if per_variant else [(j, v) for v in variants]
        if per_variant:
            for v in variants:
                if v != panel and (0, v) in bands:
                    ax.plot(*bands[0, v][:2], color="0.75", lw=0.7)
        for key in shown:
            if key not in bands:
                continue
            grid, mean, lo, hi = bands[key]
            if logx:  # an accuracy's band stays in [0, 1]
                lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
            (line,) = ax.plot(grid, mean, color=palette[key[1]], lw=1.5)
            ax.fill_between(grid, lo, hi, color=palette[key[1]], alpha=0.22, lw=0)
            handles[key[1]] = line
        if isinstance(study.target, Target) and study.target.metric == metric:  # (not a gap fraction)
            handles["target"] = ax.axhline(study.target.level, color="0.35", ls=":", lw=1)
        title = panel if per_variant else ", ".join(f"{k.rsplit('.', 1)[-1]} = {v}" for k, v in panel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=7)
        if log:
            ax.set_yscale("log", nonpositive="mask")
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # a range under a decade would label its minor ticks
    for ax in axes[-1, :]:
        ax.set_xlabel("simulated time (s)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(label, fontsize=8)
    what = (f"{'geometric ' if log else ''}mean of {n} seeds, band: {CI_METHOD}" if n > 1 else
            f"one seed ({study.seeds[0]})")
    if per_variant:
        fig.suptitle(f"{study.name}: {label}\n{what}; the other variants in grey", fontsize=10)
    else:
        entries = [f"target {study.target.level:g}" if k == "target" else names.get(k, k) for k in handles]
        fig.legend(list(handles.values()), entries, loc="outside right upper", fontsize=8,
                   title=what.replace(", band", "\nband"), title_fontsize=7)
        fig.suptitle(f"{study.name}: {label}", fontsize=10)
    return fig


def plot_time_to_target(table: pd.DataFrame, study: Study, rule: str):
    """Time to target with its confidence interval: against the first swept key (one line per variant), or, for
    a study without a sweep, one bar per variant.  Cells no seed reached are left out and named below."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    palette = dict(zip(study.variants, colours(len(study.variants))))
    mean, lo, hi = table["time_to_target_mean"], table["time_to_target_ci_low"], table["time_to_target_ci_high"]
    err = np.array([(mean - lo).fillna(0).clip(lower=0), (hi - mean).fillna(0).clip(lower=0)])
    missing = [f"{r['variant']}" + "".join(f" {k.rsplit('.', 1)[-1]}={r[k]}" for k in study.keys)
               for _, r in table.iterrows() if math.isnan(r["time_to_target_mean"])]
    if study.keys:
        key = study.keys[0]
        numeric = pd.api.types.is_numeric_dtype(table[key])
        for variant in study.variants:
            rows = (table["variant"] == variant).to_numpy()
            x = table.loc[rows, key].to_numpy() if numeric else np.arange(rows.sum())
            ax.errorbar(x, mean[rows], yerr=err[:, rows], color=palette[variant], marker="o", ms=4, capsize=3,
                        label=variant)
        values = pd.unique(table[key])
        if numeric and (table[key] > 0).all() and table[key].max() / table[key].min() >= 10:
            ax.set_xscale("log")
        if numeric and len(values) <= 12:
            ax.set_xticks(values, [f"{v:g}" for v in values])
            ax.minorticks_off()
        if not numeric:
            ax.set_xticks(np.arange(len(pd.unique(table[key]))), pd.unique(table[key]))
        ax.set_xlabel(key)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    else:
        y = np.arange(len(table))
        ax.barh(y, mean.fillna(0), xerr=err, color=[palette[v] for v in table["variant"]], capsize=3)
        tuned = [c for c in table.columns if c.startswith("tuned ")]
        ax.set_yticks(y, [r["variant"] + "".join(f"\n{c[6:].rsplit('.', 1)[-1]} = {r[c]:g}" for c in tuned
                                                 if isinstance(r[c], (int, float)) and not math.isnan(r[c]))
                          for _, r in table.iterrows()], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("time to target (simulated s)")
    ax.grid(True, alpha=0.3)
    if study.keys:
        ax.set_ylabel("time to target (simulated s)")
        positive = mean[mean > 0]
        if len(positive) and positive.max() / positive.min() >= 30:
            ax.set_yscale("log")
    n = len(study.seeds)
    note = f"{rule[0].upper()}{rule[1:]}; mean of {n} seed{'s' * (n != 1)}" + (f", bars: {CI_METHOD}" if n > 1
                                                                              else "")
    if missing:
        note += f"; not reached by any seed: {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}"
    ax.set_title("\n".join([f"{study.name}: time to target", *textwrap.wrap(note, 110)]), fontsize=9)
    return fig


def plot_final(runs: pd.DataFrame, study: Study, metric: str, label: str):
    """The final ``metric`` against the first swept key, one line per variant: how the end of the run depends on
    the swept value (for example the error of an average against the number of workers averaged).  The mean over
    the seeds with its 95% Student t interval; when every value is positive and they span a factor of 30 the axis
    is logarithmic and the statistics are those of log10 (the geometric mean and its interval, which stays
    positive), as in the curves."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2), layout="constrained")
    palette = dict(zip(study.variants, colours(len(study.variants))))
    key, column = study.keys[0], f"final_{metric}"
    values = runs[column].to_numpy(dtype=float)
    log = bool((values > 0).all() and values.max() / values.min() >= 30)
    numeric = pd.api.types.is_numeric_dtype(runs[key])
    order = list(pd.unique(runs[key]))
    for variant in study.variants:
        mine = runs[runs["variant"] == variant]
        points = [mine[mine[key] == v][column].to_numpy(dtype=float) for v in order]
        stats_ = [np.log10(p) if log else p for p in points]
        mean = np.array([s.mean() for s in stats_])
        half = np.array([half_width(s.std(ddof=1), len(s)) if len(s) > 1 else 0.0 for s in stats_])
        lo, mid, hi = (10.0 ** np.array([mean - half, mean, mean + half]) if log
                       else (mean - half, mean, mean + half))
        x = np.array(order) if numeric else np.arange(len(order))
        ax.errorbar(x, mid, yerr=[mid - lo, hi - mid], color=palette[variant], marker="o", ms=4, capsize=3,
                    label=variant)
    if numeric and min(order) > 0 and max(order) / min(order) >= 10:
        ax.set_xscale("log")
    if numeric and len(order) <= 12:
        ax.set_xticks(order, [f"{v:g}" for v in order])
        ax.minorticks_off()
    if not numeric:
        ax.set_xticks(np.arange(len(order)), order)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(key)
    ax.set_ylabel(f"final {label}" + (" (log scale)" if log else ""))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    n = len(study.seeds)
    what = "geometric mean" if log else "mean"
    note = f"{what} of {n} seed{'s' * (n != 1)}" + (f", bars: {CI_METHOD}" + (" on log10" if log else "")
                                                    if n > 1 else "")
    ax.set_title(f"{study.name}: final {label} against {key}\n{note}", fontsize=9)
    return fig
