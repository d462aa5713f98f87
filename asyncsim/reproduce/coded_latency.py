"""``coded-latency``: the round time of uncoded, repetition and MDS-coded computation under Lee et al.'s
load-scaled shifted exponential, the best k of an MDS code and the coding gain (``theory.coded_round_time``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..params import require
from ..theory import best_mds_k, coded_round_time
from ..timing.cluster import Cluster
from ..timing.codes import MDS, Repetition, Uncoded
from ..timing.laws import ShiftedExponential
from ..timing.protocols import simulate
from ..timing.rounds import Coded
from .base import Outcome, Reproduction


@dataclass(frozen=True, kw_only=True)
class Case:
    """n workers whose straggling is Lee et al.'s mu (a task of load l takes l (1 + E/mu), E ~ Exp(1))."""

    n: int
    mu: float

    def __post_init__(self):
        require(2 <= self.n <= 30, "n", "must be in [2, 30] (an MDS generator for every k <= n)", self.n)
        require(self.mu > 0, "mu", "must be > 0", self.mu)


@Reproduction.registry.register("coded_latency")
@dataclass(frozen=True, kw_only=True)
class CodedLatency(Reproduction):
    """Lee, Lam, Pedarsani, Papailiopoulos and Ramchandran (IEEE Trans. Inf. Theory 2018): a task of load l takes
    l (1 + E/mu), E ~ Exp(1).  For every (n, mu) in ``cases`` simulate ``rounds`` rounds of the ``coded`` protocol
    with the uncoded code, repetition r (every r in ``repetitions`` that divides n) and the (n, k) MDS code for
    every k = 1..n, and compare the mean round time with ``theory.coded_round_time``: uncoded
    (1/n)(1 + H_n/mu), MDS (1/k)(1 + (H_n - H_{n-k})/mu), repetition (r/n)(1 + H_{n/r}/(r mu)).

    Every scheme reads the same keyed compute draws (worker w's task in round j is draw (w, j) whatever the
    code), so the schemes are compared on common random numbers: the measured best k (the k of least mean round
    time) is then a sharp estimate, which must equal the exact best k (``theory.best_mds_k``).  The coding gain
    E[T_uncoded] / E[T_MDS, k*] is measured as a ratio of paired means, with its standard error by the delta
    method.  PASS when every |z| <= ``z_max``, every relative error <= ``tolerance``, every measured best k is
    exact and every gain is within ``z_max`` standard errors and ``tolerance``."""

    cases: tuple[Case, ...]
    repetitions: tuple[int, ...] = (2,)
    rounds: int = 5000
    tolerance: float = 0.01
    z_max: float = 4.0

    def __post_init__(self):
        require(len(self.cases) >= 1, "cases", "must list at least one {n, mu}", self.cases)
        require(self.rounds >= 100, "rounds", "must be >= 100", self.rounds)
        require(all(r >= 2 for r in self.repetitions), "repetitions", "must be integers >= 2", self.repetitions)
        require(self.tolerance > 0 and self.z_max > 0, "tolerance", "and z_max must be > 0", self.tolerance)

    def run(self, seed):
        rows, gains, notes = [], [], []
        for n, mu in ((c.n, c.mu) for c in self.cases):
            law = ShiftedExponential(shift=1.0, scale=1.0 / mu)
            cluster = Cluster(workers=n, compute=law)
            codes = [("uncoded", 1, Uncoded())]
            codes += [("repetition", r, Repetition(r=r)) for r in self.repetitions if n % r == 0]
            codes += [("mds", k, MDS(k=k)) for k in range(1, n + 1)]
            measured = {}
            for scheme, p, code in codes:
                times = np.diff(simulate(cluster, Coded(code=code), self.rounds, seed).update_times())
                measured[scheme, p] = times
                predicted = coded_round_time(code, n, law)
                se = times.std(ddof=1) / np.sqrt(len(times))
                rows.append((n, mu, scheme, p, code.load(n), predicted, times.mean(), se,
                             (times.mean() - predicted) / se))
            mds = [measured["mds", k].mean() for k in range(1, n + 1)]
            k_hat, k_star = int(np.argmin(mds)) + 1, best_mds_k(n, law)
            a, b = measured["uncoded", 1], measured["mds", k_star]
            gain = a.mean() / b.mean()
            se = np.std(a - gain * b, ddof=1) / np.sqrt(len(a)) / b.mean()  # delta method on paired rounds
            predicted = coded_round_time(Uncoded(), n, law) / coded_round_time(MDS(k=k_star), n, law)
            z = (gain - predicted) / se if se > 0 else (0.0 if gain == predicted else np.inf)  # (k* = n: a ratio of 1)
            gains.append((n, mu, k_star, k_hat, predicted, gain, se, z))
        table = pd.DataFrame(rows, columns=["workers", "mu", "scheme", "parameter", "load", "predicted",
                                            "measured", "se", "z"])
        table["relative_error"] = (table["measured"] - table["predicted"]).abs() / table["predicted"]
        gain = pd.DataFrame(gains, columns=["workers", "mu", "best_k", "measured_best_k", "predicted_gain",
                                           "measured_gain", "gain_se", "gain_z"])
        gain["gain_relative_error"] = (gain["measured_gain"] - gain["predicted_gain"]).abs() / gain["predicted_gain"]
        for g in gain.itertuples():
            notes.append(f"n = {g.workers}, mu = {g.mu:g}: best k {g.best_k} (measured {g.measured_best_k}), gain "
                         f"over uncoded {g.predicted_gain:.4f} predicted, {g.measured_gain:.4f} measured")
        z = table.loc[table["z"].abs().idxmax()]
        worst = table.loc[table["relative_error"].idxmax()]
        gz = gain["gain_z"].abs().max()
        passed = bool(abs(z["z"]) <= self.z_max and worst["relative_error"] <= self.tolerance
                      and (gain["best_k"] == gain["measured_best_k"]).all() and gz <= self.z_max
                      and gain["gain_relative_error"].max() <= self.tolerance)
        wrong_k = int((gain["best_k"] != gain["measured_best_k"]).sum())
        tol = f"{100 * self.tolerance:.3g}%"
        criterion = (f"round times of uncoded, repetition and every (n, k) MDS code within {self.z_max:g} standard "
                     f"errors (worst |z| {abs(z['z']):.2f}: {z['scheme']} {z['parameter']}, n = {z['workers']}) and "
                     f"{tol} (worst {worst['relative_error']:.2%}) of Lee et al.'s forms; measured best k exact in "
                     f"{len(gain) - wrong_k} of {len(gain)} cases; coding gain within {self.z_max:g} standard errors "
                     f"(worst |z| {gz:.2f}) and {tol} (worst {gain['gain_relative_error'].max():.2%})")
        return Outcome(table, passed, criterion, tuple(notes), {"gain": gain})

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t, gain = outcome.table, outcome.extra["gain"]
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
        mus = sorted(set(gain["mu"]))
        colour = dict(zip(mus, plt.get_cmap("tab10").colors))  # one colour per mu, in both panels
        styles = ["-", "--", "-.", ":"]
        for i, ((n, mu), g) in enumerate(t.groupby(["workers", "mu"], sort=False)):
            c, ls = colour[mu], styles[sum(1 for m in gain["mu"][:i] if m == mu) % len(styles)]
            mds = g[g["scheme"] == "mds"]
            a.plot(mds["parameter"], mds["predicted"], ls, lw=1.2, color=c, label=f"n = {n}, mu = {mu:g}")
            a.plot(mds["parameter"], mds["measured"], "o", ms=4, color=c)
            best = gain[(gain["workers"] == n) & (gain["mu"] == mu)].iloc[0]
            a.plot([best["best_k"]], [mds["predicted"].min()], "*", ms=13, color=c, mec="k")
            unc = g[g["scheme"] == "uncoded"].iloc[0]
            a.plot([n + 0.8], [unc["measured"]], "s", ms=6, mfc="none", color=c)  # beside the k axis's end
            for r in g[g["scheme"] == "repetition"].itertuples():
                a.plot([n + 0.8], [r.measured], "^", ms=6, mfc="none", color=c)
        for marker, what in (("o", "simulated MDS"), ("*", "best k (exact)"), ("s", "uncoded, simulated"),
                             ("^", "repetition, simulated")):
            a.plot([], [], marker, color="0.3", mfc="none" if marker in "s^" else "0.3", label=what)
        a.set_yscale("log")
        a.set_xlabel("MDS code dimension k (tasks needed); uncoded and repetition drawn just right of k = n")
        a.set_ylabel("mean round time (s, log scale)")
        a.set_title("round time: lines (1/k)(1 + (H_n - H_{n-k})/mu), markers simulated", fontsize=10)
        a.grid(True, alpha=0.3)
        a.legend(fontsize=7, loc="upper right", ncol=2)
        ns = np.arange(2, 31)
        for mu in mus:
            law = ShiftedExponential(shift=1.0, scale=1.0 / mu)
            curve = [coded_round_time(Uncoded(), m, law) / coded_round_time(MDS(k=best_mds_k(m, law)), m, law)
                     for m in ns]
            b.plot(ns, curve, "-", lw=1.2, color=colour[mu], label=f"mu = {mu:g}")
            g = gain[gain["mu"] == mu]
            b.errorbar(g["workers"], g["measured_gain"], yerr=2 * g["gain_se"], fmt="o", color=colour[mu],
                       ms=5, capsize=3)
        b.plot([], [], "o", color="0.3", label="simulated (2 s.e.)")
        b.set_xscale("log")
        b.set_xticks([2, 4, 8, 16, 30], ["2", "4", "8", "16", "30"])
        b.minorticks_off()
        b.set_xlabel("workers n (log scale)")
        b.set_ylabel("E[T uncoded] / E[T MDS, best k]")
        b.set_title("coding gain at the best k (lines: formula): it grows like log n", fontsize=10)
        b.grid(True, which="both", alpha=0.3)
        b.legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        return fig
