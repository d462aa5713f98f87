"""DataFrame -> matplotlib figures.  Knows nothing about scenarios: pass ``metrics`` and ``trace.to_frame()``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

SEGMENTS = {"compute": "tab:blue", "communicate": "tab:orange", "wait": "0.85"}
UNUSED = {1: ("dropped", "tab:purple"), 2: ("cancelled", "tab:olive"), 3: ("lost (crash or offline)", "tab:red")}
MANY = 64
"""Beyond this many workers the shares plot is a histogram of contributions per worker, not a bar per worker."""


SHOWN = 1e150
"""Magnitudes beyond [1/SHOWN, SHOWN] are drawn at those bounds: a log axis over hundreds of decades places its
ticks past the largest float and fails."""


def drawable(x, y, ax=None, color="tab:red"):
    """(x, y) cut at the first value that is not finite, magnitudes clipped to [1/SHOWN, SHOWN] (zero and the
    sign kept); when ``ax`` is given and the run diverged, a dashed vertical line marks where (the first time the
    value is not finite)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad) and ax is not None:
        ax.axvline(x[bad[0]], color=color, ls="--", lw=1, label=f"diverged (not finite) at t = {x[bad[0]]:.4g}")
    end = bad[0] if len(bad) else len(y)
    y = y[:end]
    if ax is not None and np.any(np.abs(y) > SHOWN):
        ax.axhline(SHOWN, color="0.5", ls=":", lw=1, label=f"values above {SHOWN:.0e} drawn at it")
    return x[:end], np.sign(y) * np.clip(np.abs(y), np.where(y == 0, 0.0, 1 / SHOWN), SHOWN)


def plot_loss(metrics: pd.DataFrame, ax=None, label: str | None = None):
    """Suboptimality f(x_k) - f* (or the loss when f* is unknown) against simulated time, log scale; a run that
    diverged is drawn up to its last finite value, with the divergence marked."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    column = "suboptimality" if "suboptimality" in metrics else "loss"
    x, y = drawable(metrics["time"], metrics[column], ax)
    ax.plot(x, y, label=label)
    positive = y[y > 0]
    if len(positive) > 1 and (positive.max() > 100 * positive.min() or len(positive) == len(y)):
        ax.set_yscale("log", nonpositive="mask")
        zero = np.flatnonzero(y == 0)
        if len(zero):  # f - f* below rounding: not on a log axis, so say where it starts
            ax.axvline(x[zero[0]], color="0.5", ls=":", lw=1, label=f"exactly 0 (below rounding) from t = "
                       f"{x[zero[0]]:.4g}")
    if len(y) < len(metrics) or ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("f(x) - f*" if column == "suboptimality" else "f(x)")
    ax.grid(True, alpha=0.3)
    return ax


def plot_staleness(trace: pd.DataFrame, ax=None, predicted=None, source: str = "simulated"):
    """Histogram of the staleness tau_k = k - r_k of every applied contribution (labelled ``source``), with its
    mean, and the predicted law P(tau = j) (a sequence indexed by j) overlaid when given."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    tau = _applied(trace)["staleness"].to_numpy()
    edges = np.arange(tau.max() + 2) - 0.5 if tau.max() < 200 else 100
    ax.hist(tau, bins=edges, density=True, color="tab:blue", alpha=0.8, label=source)
    if predicted is not None:
        p = np.asarray(predicted)
        ax.plot(np.arange(len(p)), p, "o-", ms=3, color="k", lw=1, label="predicted")
    ax.axvline(tau.mean(), color="k", ls="--", label=f"mean {tau.mean():.2f}")
    ax.set_xlabel("staleness (updates)")
    ax.set_ylabel("fraction of contributions")
    ax.legend()
    return ax


def plot_shares(trace: pd.DataFrame, ax=None, predicted=None, source: str = "simulated"):
    """Each worker's share of the applied contributions (bars, labelled ``source``), and the predicted shares
    (markers) when given."""
    ax = ax or plt.figure(figsize=(6, 4)).gca()
    used = _applied(trace)
    n = int(trace["worker"].max()) + 1
    if n > MANY and predicted is None:  # too many for bars: how many workers made how many contributions
        counts = np.bincount(np.bincount(used["worker"], minlength=n))
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="tab:blue", alpha=0.8, label=source)
        ax.set_xlabel(f"applied contributions of a worker (of {len(used):,})")
        ax.set_ylabel(f"workers (of {n:,})")
        ax.legend(loc="upper right")
        return ax
    share = np.bincount(used["worker"], minlength=n) / len(used)
    ax.bar(np.arange(n), share, color="tab:blue", alpha=0.8, label=source)
    if predicted is not None:
        ax.plot(np.arange(len(predicted)), predicted, "k_", ms=14, mew=2, label="predicted")
    ax.set_xlabel("worker")
    ax.set_ylabel("share of applied contributions")
    top = max(share.max(), max(predicted) if predicted is not None else 0.0)
    ax.set_ylim(0, 1.3 * top)  # headroom, so the legend stays above the bars
    ax.legend(loc="upper right", ncol=2)
    return ax


def plot_timeline(trace: pd.DataFrame, ax=None, until: float | None = None, max_workers: int = 32,
                  population: bool = False):
    """Per worker, when it computes (t_read..t_done), communicates (uplink t_done..t_arrive and downlink
    t_apply..next t_read) or waits (t_arrive..t_apply: server queue, and the barrier in ``sync``); work that was
    dropped, cancelled or lost in a crash is drawn in its own colour, and a crash is marked with an x.  By default
    shows about the first 20 contributions per worker.  For a ``population`` of clients (a protocol's
    ``concurrency``) the rows are the first clients to take part, and the time between a client's tasks is not
    drawn: it is out of the pool's slots (its download, one downlink before each t_read, is not drawn either)."""
    ax = ax or plt.figure(figsize=(8, 4)).gca()
    if population:
        workers = list(dict.fromkeys(trace.sort_values("t_read")["worker"].tolist()))[:max_workers]
    else:
        workers = sorted(trace["worker"].unique())[:max_workers]
    if until is None:
        until = float(np.sort(trace["t_apply"].to_numpy())[min(len(trace) - 1, 20 * len(workers))])
    status = trace["status"] if "status" in trace else pd.Series(0, index=trace.index)
    labelled = set()
    for row, w in enumerate(workers):
        mine = trace[trace["worker"] == w].sort_values("step")
        mine = mine[mine["t_read"] < until]
        if mine.empty:
            continue
        st = status[mine.index].to_numpy()
        ok = mine[st == 0]
        next_read = pd.Series(np.append(mine["t_read"].to_numpy()[1:], np.nan), index=mine.index)[st == 0]
        spans = {
            "compute": zip(ok["t_read"], ok["t_done"]),
            "communicate": list(zip(ok["t_done"], ok["t_arrive"])) + ([] if population else
                                                                      list(zip(ok["t_apply"], next_read))),
            "wait": zip(ok["t_arrive"], ok["t_apply"]),
        }
        for name, pairs in spans.items():
            bars = [(a, b - a) for a, b in pairs if np.isfinite(b) and b > a]
            ax.broken_barh(bars, (row - 0.4, 0.8), color=SEGMENTS[name], label=name if name not in labelled else None)
            labelled.add(name)
        for code, (name, color) in UNUSED.items():
            bad = mine[st == code]
            if len(bad):
                bars = [(a, b - a) for a, b in zip(bad["t_read"], bad["t_apply"]) if b > a]
                ax.broken_barh(bars, (row - 0.4, 0.8), color=color, alpha=0.7, hatch="//",
                               label=name if name not in labelled else None)
                labelled.add(name)
                if code == 3:
                    ax.plot(bad["t_apply"], [row] * len(bad), "kx", ms=7)
    ax.set_xlim(0, until)
    ax.set_yticks(range(len(workers)), [str(w) for w in workers])
    end = float(trace["t_apply"].max())
    ax.set_xlabel("simulated time (s)" + (f"; the first {until:.3g} s of {end:.4g} s" if until < end else ""))
    ax.set_ylabel("client (in order of its first task)" if population else "worker")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return ax


def _applied(trace: pd.DataFrame) -> pd.DataFrame:
    return trace[trace["status"] == 0] if "status" in trace else trace


def save_plots(metrics: pd.DataFrame, trace: pd.DataFrame, directory, title: str = "",
               predicted: dict | None = None, source: str = "simulated", population: bool = False) -> list[str]:
    """Write loss.png, staleness.png, shares.png and timeline.png into ``directory``; return the file names.
    ``predicted`` may hold ``staleness_pmf`` and ``worker_shares`` to overlay; ``source`` says where the trace
    comes from (simulated, measured, a delay log); ``population``: the workers are a population of clients."""
    predicted = predicted or {}
    names = []
    for name, draw in (("loss", lambda ax: plot_loss(metrics, ax)),
                       ("staleness", lambda ax: plot_staleness(trace, ax, predicted.get("staleness_pmf"), source)),
                       ("shares", lambda ax: plot_shares(trace, ax, predicted.get("worker_shares"), source)),
                       ("timeline", lambda ax: plot_timeline(trace, ax, population=population))):
        fig, ax = plt.subplots(figsize=(8, 4) if name == "timeline" else (6, 4))
        draw(ax)
        ax.set_title(f"{title}: {name}" if title else name)
        fig.tight_layout()
        fig.savefig(f"{directory}/{name}.png", dpi=110)
        plt.close(fig)
        names.append(f"{name}.png")
    return names


def plot_images(images: dict[str, np.ndarray], columns: int = 6):
    """Grayscale images side by side (values clipped to [0, 1]), titled by their keys."""
    n = len(images)
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, img) in zip(axes.ravel(), images.items()):
        ax.imshow(np.clip(img, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0)
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    return fig


def save_image(image: np.ndarray, path) -> None:
    """A grayscale image (values clipped to [0, 1]) as a PNG of its own pixels."""
    plt.imsave(path, np.clip(image, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0)


def save_figure(fig, path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_stability_map(frame: pd.DataFrame, title: str = ""):
    """One panel per p over (eta h, alpha): grid points observed to diverge (red) or converge (blue) in the
    simulation, and the predicted boundary, the contour where the spectral radius is 1 (black line).  ``frame``
    has the columns eta_h, alpha, p, radius and diverged (``asyncsim.stability.easgd_map``)."""
    ps = sorted(frame["p"].unique())
    fig, axes = plt.subplots(1, len(ps), figsize=(3.6 * len(ps), 3.6), sharey=True, squeeze=False)
    for ax, p in zip(axes[0], ps):
        grid = frame[frame["p"] == p].pivot(index="alpha", columns="eta_h")
        x, y = grid["radius"].columns.to_numpy(), grid["radius"].index.to_numpy()
        ax.pcolormesh(x, y, grid["diverged"].to_numpy(dtype=float), cmap="coolwarm", vmin=-0.5, vmax=1.5,
                      shading="nearest")
        ax.contour(x, y, grid["radius"].to_numpy(), levels=[1.0], colors="k", linewidths=1.5)
        ax.set_title(f"p = {p}")
        ax.set_xlabel("eta h")
    axes[0][0].set_ylabel("alpha")
    fig.suptitle(title or "synchronous EASGD: diverged (red) / converged (blue); radius = 1 (line)")
    fig.tight_layout()
    return fig


def plot_fidelity_staleness(tau_a: np.ndarray, tau_b: np.ndarray, labels: tuple[str, str], ks: float | None = None):
    """The empirical CDFs of two staleness samples overlaid (steps), with the Kolmogorov-Smirnov distance
    D = sup_x |F_A(x) - F_B(x)| marked where it is reached; the x axis ends past both 99.5th percentiles (the
    longest tails are in the table)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    tau_a, tau_b = np.sort(np.asarray(tau_a)), np.sort(np.asarray(tau_b))
    x = np.unique(np.concatenate([tau_a, tau_b]))
    cdfs = [np.searchsorted(t, x, side="right") / len(t) for t in (tau_a, tau_b)]
    for i, (cdf, label) in enumerate(zip(cdfs, labels)):
        ax.step(np.concatenate([[x[0] - 1], x]), np.concatenate([[0.0], cdf]), where="post", color=f"C{i}",
                label=f"{label}: mean {(tau_a, tau_b)[i].mean():.2f}")
    gap = np.abs(cdfs[0] - cdfs[1])
    at = int(np.argmax(gap))
    if gap[at] > 0:
        ax.vlines(x[at], min(cdfs[0][at], cdfs[1][at]), max(cdfs[0][at], cdfs[1][at]), color="k", lw=2,
                  label=f"KS D = {gap[at] if ks is None else ks:.3f}")
    right = max(np.percentile(tau_a, 99.5), np.percentile(tau_b, 99.5), x[at])
    ax.set(xlabel="staleness (updates)", ylabel="fraction of contributions <= x", ylim=(0, 1.02),
           xlim=(x[0] - 1, 1.1 * right + 1), title="staleness: empirical CDFs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig


def plot_fidelity_loss(metrics_a: pd.DataFrame, metrics_b: pd.DataFrame, labels: tuple[str, str],
                       target: float | None = None):
    """f - f* (when both have it, else f) against time for two runs on one axis, log scale where positive; the
    common loss target as a dotted line (when plotting f)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sub = "suboptimality" in metrics_a and "suboptimality" in metrics_b
    column = "suboptimality" if sub else "loss"
    shown = []
    for i, (m, label) in enumerate(zip((metrics_a, metrics_b), labels)):
        t, y = drawable(m["time"], m[column], ax, f"C{i}")
        ax.plot(t, y, color=f"C{i}", label=label)
        shown.append(y)
    if target is not None and not sub and np.isfinite(target):
        ax.axhline(target, color="k", ls=":", lw=1, label=f"common target {target:.4g}")
    values = np.concatenate(shown)
    if np.mean(values > 0) > 0.5:
        ax.set_yscale("log", nonpositive="mask")
    ax.set(xlabel="time (s; simulated or wall-clock)", ylabel="f(x) - f*" if sub else "f(x)", title="loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_fidelity_shares(shares_a, shares_b, labels: tuple[str, str], throughput: tuple[float, float]):
    """Per-worker shares of the applied contributions of two runs (bars side by side), and their throughputs
    (updates per second) in a second panel."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 1]})
    n = len(shares_a)
    w = np.arange(n)
    a.bar(w - 0.2, shares_a, width=0.4, color="C0", label=labels[0])
    a.bar(w + 0.2, shares_b, width=0.4, color="C1", label=labels[1])
    a.set(xlabel="worker", ylabel="share of applied contributions", title="worker shares")
    if n <= 32:
        a.set_xticks(w)
    a.legend(fontsize="small")
    b.bar([0, 1], throughput, color=["C0", "C1"])
    b.set_xticks([0, 1], ["A", "B"])
    b.set(ylabel="updates per second",
          title=f"throughput {throughput[0]:.3g} vs {throughput[1]:.3g} ({throughput[1] / throughput[0] - 1:+.1%})")
    b.title.set_fontsize("small")
    fig.tight_layout()
    return fig


def plot_fidelity_timeline(trace_a: pd.DataFrame, trace_b: pd.DataFrame, labels: tuple[str, str]):
    """The timelines of two runs (``plot_timeline``) one above the other, each over its own first contributions."""
    fig, axes = plt.subplots(2, 1, figsize=(9, 6.5))
    for ax, trace, label in zip(axes, (trace_a, trace_b), labels):
        plot_timeline(trace, ax)
        ax.set_title(label)
        ax.set_xlabel("time (s; simulated or wall-clock)")
    fig.tight_layout()
    return fig
