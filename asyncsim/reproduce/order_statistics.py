"""``order-statistics``: the synchronous round time is E[max_i X_i] + latency and the asynchronous throughput is
sum_i 1 / E[cycle_i] (``theory.sync_round_time``, ``theory.async_throughput``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..params import kind, require
from ..predict import cycle_means, latency, worker_laws
from ..theory import async_throughput, sync_round_time
from ..timing.cluster import Cluster
from ..timing.laws import Constant, DelayLaw
from ..timing.protocols import Async, simulate
from ..timing.rounds import Sync
from .base import Outcome, Reproduction, describe


@Reproduction.registry.register("order_statistics")
@dataclass(frozen=True, kw_only=True)
class OrderStatistics(Reproduction):
    """Synchronous round time and asynchronous throughput against their closed forms.

    For every compute law, number of workers n and speed profile (``profiles``: ``equal``, or ``spread`` with
    worker i's speed 1 + i / (n - 1), so times differ by up to 2x), simulate ``rounds`` synchronous rounds and
    ``updates`` asynchronous updates with constant ``uplink`` and ``downlink`` times l.  Predicted:

    - round time E[X_(n:n)] + l, the mean of the largest of n independent compute times (exact harmonic-number and
      gamma-function forms for exponential and Pareto laws, David and Nagaraja, "Order Statistics", 2003; numerical
      integration of P(max > x) otherwise, ``theory.order_statistic_mean``);
    - throughput sum_i 1 / (E[X_i] + l), by the elementary renewal theorem (Ross, "Stochastic Processes", 1996).

    Each measurement is judged by its z-score (measured - predicted) / standard error: rounds are independent, and
    the throughput's error follows from the renewal central limit theorem, Var N_i(T) ~ T var(cycle_i) /
    E[cycle_i]^3, with each worker's cycles measured in the trace.  PASS when every |z| is at most ``z_max`` and
    every relative error at most ``tolerance`` (which must allow for the noise of the chosen run lengths)."""

    laws: tuple[DelayLaw, ...]
    workers: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    profiles: tuple[str, ...] = ("equal", "spread")
    rounds: int = 20000
    updates: int = 50000
    uplink: float = 0.0
    downlink: float = 0.0
    tolerance: float = 0.02
    z_max: float = 4.0

    def __post_init__(self):
        require(len(self.laws) >= 1, "laws", "must hold at least one law", self.laws)
        require(len(self.workers) >= 1 and min(self.workers) >= 1, "workers", "must be integers >= 1", self.workers)
        bad = sorted(set(self.profiles) - {"equal", "spread"})
        require(not bad and self.profiles, "profiles", "must be a list of equal, spread", list(self.profiles))
        require(self.rounds >= 100, "rounds", "must be >= 100", self.rounds)
        require(self.updates >= 100, "updates", "must be >= 100", self.updates)
        require(self.uplink >= 0 and self.downlink >= 0, "uplink", "and downlink must be >= 0", self.uplink)
        require(self.tolerance > 0 and self.z_max > 0, "tolerance", "and z_max must be > 0", self.tolerance)

    def run(self, seed):
        rows = []
        for law, profile, n in itertools.product(self.laws, self.profiles, self.workers):
            if profile == "spread" and n == 1:
                continue
            speeds = tuple(1 + i / (n - 1) for i in range(n)) if profile == "spread" else ()
            cluster = Cluster(workers=n, compute=law, speeds=speeds, uplink=Constant(value=self.uplink),
                              downlink=Constant(value=self.downlink))
            laws, lat = worker_laws(cluster), latency(cluster, 0)
            rounds = np.diff(simulate(cluster, Sync(), self.rounds, seed).update_times()[1:])  # round 0: no downlink
            predicted = sync_round_time(laws, lat)
            z = (rounds.mean() - predicted) / (rounds.std(ddof=1) / np.sqrt(len(rounds)))
            rows.append((kind(law), describe(law), profile, n, "sync round time (s)", predicted, rounds.mean(), z))
            trace = simulate(cluster, Async(), self.updates, seed)
            T = trace.t_apply[-1]
            predicted = async_throughput(cycle_means(cluster, 0))
            rows.append((kind(law), describe(law), profile, n, "async throughput (updates/s)", predicted,
                         trace.n_updates / T, (trace.n_updates / T - predicted) / _rate_error(trace, T)))
        table = pd.DataFrame(rows, columns=["law", "parameters", "profile", "workers", "quantity", "predicted",
                                            "measured", "z"])
        table["relative_error"] = (table["measured"] - table["predicted"]).abs() / table["predicted"]
        z = table.loc[table["z"].abs().idxmax()]
        worst = table.loc[table["relative_error"].idxmax()]
        passed = bool(abs(z["z"]) <= self.z_max and worst["relative_error"] <= self.tolerance)
        criterion = (f"sync round time (E[max] + latency) and async throughput (sum 1 / E[cycle]) within "
                     f"{self.z_max:g} standard errors (worst |z| {abs(z['z']):.2f}: {z['quantity'].split(' (')[0]}, "
                     f"{z['law']}, {z['profile']}, n = {z['workers']}) and {self.tolerance:.0%} (worst "
                     f"{worst['relative_error']:.2%}) for every law, profile and n")
        return Outcome(table, passed, criterion)

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        part = t[t["quantity"] == "sync round time (s)"]
        for (law, profile), g in part.groupby(["law", "profile"], sort=False):
            line, = a.plot(g["workers"], g["predicted"], "-", lw=1)
            a.plot(g["workers"], g["measured"], "o", ms=5, color=line.get_color(), label=f"{law}, {profile}")
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("workers n")
        a.set_ylabel("sync round time (s)")
        a.set_title("round time: simulated (dots), E[max] + latency (lines)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
        b.axhspan(-self.z_max, self.z_max, color="tab:green", alpha=0.15, label=f"|z| <= {self.z_max:g}")
        for quantity, marker in (("sync round time (s)", "o"), ("async throughput (updates/s)", "s")):
            g = t[t["quantity"] == quantity]
            jitter = 1 + 0.06 * (marker == "s")
            b.plot(g["workers"] * jitter, g["z"], marker, ms=5, alpha=0.7, label=quantity.split(" (")[0])
        b.set_xscale("log", base=2)
        b.set_xlabel("workers n")
        b.set_ylabel("(measured - predicted) / standard error")
        b.set_title("every law and profile: z-scores")
        b.legend(fontsize=8)
        b.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig


def _rate_error(trace, T: float) -> float:
    """Standard error of the throughput N(T) / T of independent renewal processes (one per worker):
    sqrt(sum_i var(cycle_i) / mean(cycle_i)^3 / T), with the cycles (time between a worker's applies) measured."""
    var = 0.0
    for w in np.unique(trace.worker):
        cycles = np.diff(trace.t_apply[trace.worker == w])
        if cycles.size >= 2:
            var += cycles.var(ddof=1) / cycles.mean() ** 3
    return float(np.sqrt(var / T)) if var > 0 else float("inf")
