"""``staleness-identity``: the asynchronous parameter server's mean staleness is n - 1 for any compute-time law, and
geometric under exponential times (``theory.async_mean_staleness``, ``theory.staleness_pmf``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..params import kind, require
from ..theory import async_mean_staleness, staleness_cdf, staleness_pmf
from ..timing.cluster import Cluster
from ..timing.laws import Constant, DelayLaw, Exponential
from ..timing.protocols import Async, simulate
from .base import Outcome, Reproduction, describe


@Reproduction.registry.register("staleness_identity")
@dataclass(frozen=True, kw_only=True)
class StalenessIdentity(Reproduction):
    """For each compute law and number of workers n: simulate ``updates`` updates of the async parameter server
    (every worker always busy) for each constant uplink time in ``latencies``, and compare the mean staleness with n - 1 (relative
    ``tolerance``) and, for exponential laws, the staleness distribution with the geometric law
    P(tau = j) = (1/n)(1 - 1/n)^j (Kolmogorov-Smirnov distance at most ``ks_tolerance``; without latency only,
    since the derivation needs the next worker to finish to be uniform).  The exact finite-K form
    of the identity, n - 1 - (1/K) sum_w (K - 1 - l_w), is reported alongside and must hold to rounding."""

    laws: tuple[DelayLaw, ...]
    workers: tuple[int, ...] = (2, 4, 8, 16)
    updates: int = 20000
    latencies: tuple[float, ...] = (0.0,)
    tolerance: float = 0.01
    ks_tolerance: float = 0.02

    def __post_init__(self):
        require(len(self.laws) >= 1, "laws", "must hold at least one law", self.laws)
        require(len(self.workers) >= 1 and min(self.workers) >= 1, "workers", "must be integers >= 1", self.workers)
        require(self.updates >= 100, "updates", "must be >= 100", self.updates)
        require(len(self.latencies) >= 1 and min(self.latencies) >= 0, "latencies", "must be times >= 0",
                self.latencies)
        require(self.tolerance > 0, "tolerance", "must be > 0", self.tolerance)
        require(self.ks_tolerance > 0, "ks_tolerance", "must be > 0", self.ks_tolerance)

    def run(self, seed):
        rows, histograms = [], {}
        for law, latency, n in itertools.product(self.laws, self.latencies, self.workers):
            cluster = Cluster(workers=n, compute=law, uplink=Constant(value=latency))
            trace = simulate(cluster, Async(), self.updates, seed)
            tau = trace.staleness
            K = self.updates
            last = np.full(n, -1)
            np.maximum.at(last, trace.worker, trace.update)
            active = last >= 0
            exact = async_mean_staleness(int(active.sum()), K - 1 - last[active], K)
            ks = np.nan
            if isinstance(law, Exponential) and latency == 0:
                values, counts = np.unique(tau, return_counts=True)
                ks = float(np.max(np.abs(np.cumsum(counts) / K - staleness_cdf(n, values))))
                histograms[n] = (values, counts / K)
            rows.append((kind(law), describe(law), latency, n, K, float(tau.mean()), async_mean_staleness(n), exact, ks))
        table = pd.DataFrame(rows, columns=["law", "parameters", "latency", "workers", "updates", "measured_mean",
                                            "predicted_mean", "finite_K_identity", "ks_to_geometric"])
        table["relative_error"] = (table["measured_mean"] - table["predicted_mean"]).abs() / \
            table["predicted_mean"].where(table["predicted_mean"] > 0, 1.0)
        identity_gap = float((table["measured_mean"] - table["finite_K_identity"]).abs().max())
        worst = table.loc[table["relative_error"].idxmax()]
        ks_max = float(np.nanmax(table["ks_to_geometric"])) if table["ks_to_geometric"].notna().any() else np.nan
        passed = bool(worst["relative_error"] <= self.tolerance and identity_gap <= 1e-9
                      and (np.isnan(ks_max) or ks_max <= self.ks_tolerance))
        criterion = (f"mean staleness within {self.tolerance:.0%} of n - 1 for every law and n (worst "
                     f"{worst['relative_error']:.3%}: {worst['law']}, n = {worst['workers']}), the exact finite-K "
                     f"identity to 1e-9 (gap {identity_gap:.1e})")
        if not np.isnan(ks_max):
            criterion += f", KS distance to the geometric law <= {self.ks_tolerance} (worst {ks_max:.4f})"
        return Outcome(table, passed, criterion, extra={"histograms": histograms})

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        table = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        n = np.array(sorted(set(self.workers)))
        a.plot(n, n - 1, "k-", lw=1, label="predicted n - 1")
        for (law, params), group in table.groupby(["law", "parameters"], sort=False):
            a.plot(group["workers"], group["measured_mean"], "o", ms=6, alpha=0.7, label=f"{law} ({params})")
        a.set_xlabel("workers n")
        a.set_ylabel("mean staleness")
        a.set_title("mean staleness, always-busy workers")
        a.legend(fontsize=7)
        a.grid(True, alpha=0.3)
        for n_, (values, freq) in sorted(outcome.extra.get("histograms", {}).items()):
            line, = b.plot(values, freq, "o", ms=3, alpha=0.7, label=f"simulated, n = {n_}")
            j = np.arange(values.max() + 1)
            b.plot(j, staleness_pmf(n_, j), "-", color=line.get_color(), lw=1)
        b.set_yscale("log")
        b.set_xlabel("staleness j")
        b.set_ylabel("P(tau = j)")
        b.set_title("exponential times: geometric law (lines)")
        b.legend(fontsize=7)
        b.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig

