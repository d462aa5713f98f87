"""``buffered-staleness``: FedBuff's buffered server has mean staleness (n - 1)/K, exactly (sum_w r_w - U)/C
(``theory.buffered_mean_staleness``), and with K = 1 the asynchronous server's geometric law."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..params import kind, require
from ..theory import buffered_mean_staleness, staleness_cdf, staleness_pmf
from ..timing.cluster import Cluster
from ..timing.laws import Constant, DelayLaw, Exponential
from ..timing.protocols import Buffered, simulate
from ..timing.trace import Trace
from .base import Outcome, Reproduction, describe


def next_reads(trace: Trace, n: int) -> np.ndarray:
    """r_w: the version each client reads after its last applied contribution, l_w + f_w (l_w its last update,
    f_w = 1 when its contribution filled that buffer: the update's last arrival, ties in worker order); 0 for a
    client with none.  Needs no service time (then the filler arrives at the update's apply time)."""
    used = trace.used()
    reads = np.zeros(n)
    order = np.lexsort((used.worker, used.t_arrive, used.update))  # within an update: arrival order
    filler = {}
    for i in order:
        filler[int(used.update[i])] = int(used.worker[i])  # the last one of each update wins
    for w in range(n):
        mine = used.update[used.worker == w]
        if len(mine):
            last = int(mine.max())
            reads[w] = last + (filler[last] == w)
    return reads


@Reproduction.registry.register("buffered_staleness")
@dataclass(frozen=True, kw_only=True)
class BufferedStaleness(Reproduction):
    """FedBuff (Nguyen et al., AISTATS 2022) with n always-busy clients: for every compute law, n in ``workers``
    and buffer K = 1 .. n, simulate ``updates`` updates of protocol ``buffered`` (constant uplink ``latency``, no
    service time) and compare the mean staleness with

    - its exact finite form (sum_w r_w - U) / C (``theory.buffered_mean_staleness``, ``next_reads``): to 1e-9;
    - the long-run value (n - 1)/K: within ``tolerance`` relative, or 0.01 absolute where it is 0 (n = 1);
    - for K = 1, exponential times and no latency, the geometric law P(tau = j) = (1/n)(1 - 1/n)^j of the
      asynchronous server (Kolmogorov-Smirnov distance at most ``ks_tolerance``).  For K > 1 no closed form of the
      distribution is known here; it is reported in the plot.

    (The draining server, which answers every contributor with the new version, gives n/m - 1 instead: only the
    client that fills a buffer waits for its update.)"""

    laws: tuple[DelayLaw, ...]
    workers: tuple[int, ...] = (4, 8, 16)
    updates: int = 5000
    latency: float = 0.0
    tolerance: float = 0.02
    ks_tolerance: float = 0.02

    def __post_init__(self):
        require(len(self.laws) >= 1, "laws", "must hold at least one law", self.laws)
        require(len(self.workers) >= 1 and min(self.workers) >= 1 and max(self.workers) <= 256, "workers",
                "must be integers in [1, 256]", self.workers)
        require(self.updates >= 100, "updates", "must be >= 100", self.updates)
        require(self.latency >= 0, "latency", "must be >= 0", self.latency)
        require(self.tolerance > 0 and self.ks_tolerance > 0, "tolerance", "and ks_tolerance must be > 0",
                self.tolerance)

    def run(self, seed):
        rows, histograms = [], {}
        for law, n in itertools.product(self.laws, self.workers):
            cluster = Cluster(workers=n, compute=law, uplink=Constant(value=self.latency))
            for K in range(1, n + 1):
                trace = simulate(cluster, Buffered(buffer=K), self.updates, seed).used()
                tau = trace.staleness
                U, C = trace.n_updates, len(trace)
                exact = buffered_mean_staleness(n, U, C, next_reads(trace, n))
                ks = np.nan
                if K == 1 and isinstance(law, Exponential) and self.latency == 0:
                    values, counts = np.unique(tau, return_counts=True)
                    ks = float(np.max(np.abs(np.cumsum(counts) / len(tau) - staleness_cdf(n, values))))
                if n == max(self.workers) and law == self.laws[0]:
                    histograms[K] = np.bincount(tau) / len(tau)
                rows.append((kind(law), describe(law), n, K, float(tau.mean()), exact, (n - 1) / K, ks))
        table = pd.DataFrame(rows, columns=["law", "parameters", "workers", "buffer", "mean_staleness",
                                            "exact_identity", "long_run", "ks"])
        table["exact_gap"] = (table["mean_staleness"] - table["exact_identity"]).abs()
        table["relative_error"] = np.where(table["long_run"] > 0,
                                           (table["mean_staleness"] - table["long_run"]).abs() / table["long_run"],
                                           table["mean_staleness"])
        worst = table.loc[table["relative_error"].idxmax()]
        ks = table["ks"].max()
        gap = float(table["exact_gap"].max())
        passed = bool(gap <= 1e-9 and worst["relative_error"] <= self.tolerance
                      and (np.isnan(ks) or ks <= self.ks_tolerance))
        criterion = (f"mean staleness equals (sum_w r_w - U) / C exactly (gap {gap:.1e} <= 1e-9) and (n - 1)/K "
                     f"within {self.tolerance:.0%} (worst {worst['relative_error']:.2%}: {worst['law']}, "
                     f"n = {worst['workers']}, K = {worst['buffer']}) for every law, n and K = 1..n"
                     + ("" if np.isnan(ks) else f"; K = 1 geometric, KS {ks:.4f} <= {self.ks_tolerance:g}"))
        return Outcome(table, passed, criterion, extra={"histograms": histograms, "n": max(self.workers)})

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(11.5, 4.3))
        from matplotlib.ticker import FormatStrFormatter, NullFormatter

        markers = dict(zip(pd.unique(t["law"]), "osD^v"))
        for i, (n, g) in enumerate(t.groupby("workers", sort=False)):
            first = g[g["law"] == g["law"].iloc[0]]
            a.plot(first["buffer"], first["long_run"], "-", lw=1, color=f"C{i}", label=f"n = {n}: (n - 1)/K")
            for law, h in g.groupby("law", sort=False):
                a.plot(h["buffer"], h["mean_staleness"], markers[law], ms=6, mfc="none", color=f"C{i}")
        for law, m in markers.items():
            a.plot([], [], m, mfc="none", color="0.3", label=f"simulated, {law}")
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        for axis in (a.xaxis, a.yaxis):
            axis.set_major_formatter(FormatStrFormatter("%g"))
            axis.set_minor_formatter(NullFormatter())
        positive = t["long_run"][t["long_run"] > 0]
        a.set_yticks([v for v in (0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)
                      if positive.min() / 2 <= v <= positive.max() * 2])
        a.set_xlabel("buffer K (contributions per update)")
        a.set_ylabel("mean staleness (server versions)")
        a.set_title("simulated (markers) and (n - 1)/K (lines)", fontsize=10)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7, ncol=2)
        n = outcome.extra["n"]
        for K, p in sorted(outcome.extra["histograms"].items()):
            if K in (1, 2, n // 4, n // 2, n):
                b.plot(np.arange(len(p)), p, "o-", ms=3, lw=1, label=f"K = {K}")
        j = np.arange(4 * n)
        b.plot(j, staleness_pmf(n, j), "k--", lw=1, label="geometric (K = 1)")
        b.set_xlim(0, 3 * n)
        b.set_xlabel("staleness tau (server versions)")
        b.set_ylabel("fraction of contributions")
        b.set_title(f"staleness distribution, {t['law'].iloc[0]}, n = {n}", fontsize=10)
        b.legend(fontsize=8)
        b.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig
