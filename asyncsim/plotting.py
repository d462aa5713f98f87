"""DataFrame -> matplotlib figures.  Knows nothing about scenarios: pass ``metrics`` and ``trace.to_frame()``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SEGMENTS = {"compute": "tab:blue", "communicate": "tab:orange", "wait": "0.85"}


def plot_loss(metrics: pd.DataFrame, ax=None, label: str | None = None):
    """Suboptimality f(x_k) - f* (or the loss when f* is unknown) against simulated time, log scale."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    column = "suboptimality" if "suboptimality" in metrics else "loss"
    y = metrics[column].to_numpy()
    ax.plot(metrics["time"], y, label=label)
    if np.all(y[np.isfinite(y)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("f(x) - f*" if column == "suboptimality" else "f(x)")
    ax.grid(True, alpha=0.3)
    return ax


def plot_staleness(trace: pd.DataFrame, ax=None):
    """Histogram of the staleness tau_k = k - r_k of every contribution, with its mean."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    tau = trace["staleness"].to_numpy()
    edges = np.arange(tau.max() + 2) - 0.5 if tau.max() < 200 else 100
    ax.hist(tau, bins=edges, density=True, color="tab:blue", alpha=0.8)
    ax.axvline(tau.mean(), color="k", ls="--", label=f"mean {tau.mean():.2f}")
    ax.set_xlabel("staleness (updates)")
    ax.set_ylabel("fraction of contributions")
    ax.legend()
    return ax


def plot_timeline(trace: pd.DataFrame, ax=None, until: float | None = None, max_workers: int = 32):
    """Per worker, when it computes (t_read..t_done), communicates (uplink t_done..t_arrive and downlink
    t_apply..next t_read) or waits (t_arrive..t_apply: server queue, and the barrier in ``sync``).  By default
    shows about the first 20 contributions per worker."""
    ax = ax or plt.figure(figsize=(8, 4)).gca()
    workers = sorted(trace["worker"].unique())[:max_workers]
    if until is None:
        until = float(np.sort(trace["t_apply"].to_numpy())[min(len(trace) - 1, 20 * len(workers))])
    for row, w in enumerate(workers):
        mine = trace[trace["worker"] == w].sort_values("step")
        mine = mine[mine["t_read"] < until]
        next_read = np.append(mine["t_read"].to_numpy()[1:], np.nan)
        spans = {
            "compute": zip(mine["t_read"], mine["t_done"]),
            "communicate": list(zip(mine["t_done"], mine["t_arrive"])) + list(zip(mine["t_apply"], next_read)),
            "wait": zip(mine["t_arrive"], mine["t_apply"]),
        }
        for kind, pairs in spans.items():
            bars = [(a, b - a) for a, b in pairs if np.isfinite(b) and b > a]
            ax.broken_barh(bars, (row - 0.4, 0.8), color=SEGMENTS[kind], label=kind if row == 0 else None)
    ax.set_xlim(0, until)
    ax.set_yticks(range(len(workers)), [str(w) for w in workers])
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("worker")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return ax


def save_plots(metrics: pd.DataFrame, trace: pd.DataFrame, directory, title: str = "") -> list[str]:
    """Write loss.png, staleness.png and timeline.png into ``directory``; return the file names."""
    names = []
    for name, draw in (("loss", lambda ax: plot_loss(metrics, ax)), ("staleness", lambda ax: plot_staleness(trace, ax)),
                       ("timeline", lambda ax: plot_timeline(trace, ax))):
        fig, ax = plt.subplots(figsize=(8, 4) if name == "timeline" else (6, 4))
        draw(ax)
        ax.set_title(f"{title}: {name}" if title else name)
        fig.tight_layout()
        fig.savefig(f"{directory}/{name}.png", dpi=110)
        plt.close(fig)
        names.append(f"{name}.png")
    return names
