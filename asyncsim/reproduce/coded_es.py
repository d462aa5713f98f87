"""``coded-es``: derivative-free optimization on MDS-coded search directions (Bartan and Pilanci 2019): the decoded
directional derivatives are exact for every straggler set, the iterates are the uncoded method's whatever the
stragglers, and an iteration takes the k-th order statistic of the n loaded task times."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..algorithms import coded_es as ces
from ..algorithms.base import ApplyInfo
from ..build import build, timing_model
from ..params import kind, require, to_plain
from ..problems.base import ProblemSpec
from ..replay import algorithm_draws, replay
from ..rng import Stream, generator
from ..scenario import from_dict
from ..theory import order_statistic_mean
from ..timing.cluster import Cluster
from ..timing.codes import MDS
from ..timing.laws import DelayLaw, ShiftedExponential, scaled
from ..timing.protocols import Coded, Sync, simulate
from .base import Outcome, Reproduction, describe, span

CHECKS = ("decoding", "iterates", "iteration time")


@Reproduction.registry.register("coded_es")
@dataclass(frozen=True, kw_only=True)
class CodedESReproduction(Reproduction):
    """``coded_es`` (x_{t+1} = x_t - lr U_t v, v decoded from the central differences of the first k of n tasks
    along the coded directions U_t g_i) on a quadratic ``problem``, three checks:

    (a) decoding: for every n in ``exact_workers``, every k <= n and every straggler set (all C(n, n - k) sets of
        finished tasks F), the v decoded from F (``coded_es.decode``: G_F v = t_F) equals U^T grad f(x) at a random
        x, grad f from the problem's own gradient, to ``decode_tolerance`` relative to max |U^T grad f(x)| (a
        central difference is exact for a quadratic; what is left is rounding);
    (b) iterates: ``iterations`` rounds of ``coded`` with an (n, k) ``mds`` code (n = ``iterate_workers``, k in
        ``iterate_ks``) for ``timing_seeds`` timing seeds (different straggler patterns, the same subspaces) equal,
        at every version, the uncoded method's (``sync`` on k workers, one basis direction each) and the literal
        loop x_{t+1} = x_t - lr U_t U_t^T grad f(x_t), to ``iterate_tolerance`` (and the package's replay of the
        coded trace ends at the same iterate as the version-by-version walk);
    (c) iteration time: with ``cluster.flops_per_second`` F on ``time_problem`` (which counts its flops), the job of
        a round is k evaluation pairs of 2 c flops each (c: a gradient's flops) and an mds task 1/k of it, so task
        i takes X_i 2 c / F (X_i ~ ``compute``); for n = ``time_workers`` and k in ``time_ks`` the mean of
        ``rounds`` round times is E[T_(k:n)] of those loaded laws (``theory.order_statistic_mean``), within
        ``z_max`` standard errors and ``tolerance`` relative error.  Every k uses the same compute draws (the run
        seed), so their errors are correlated.

    Source: B. Bartan and M. Pilanci, "Distributed black-box optimization via error correcting codes",
    arXiv:1907.05984, 2019; the order statistic of coded rounds after Lee et al. 2018."""

    problem: ProblemSpec
    lr: float = 1.0
    h: float = 0.1
    compute: DelayLaw = field(default_factory=lambda: ShiftedExponential(shift=1.0, scale=1.0))
    exact_workers: tuple[int, ...] = (6, 10)
    decode_tolerance: float = 1e-9
    iterate_workers: int = 10
    iterate_ks: tuple[int, ...] = (3, 7)
    timing_seeds: int = 3
    iterations: int = 60
    iterate_tolerance: float = 1e-10
    time_problem: ProblemSpec
    flops_per_second: float = 1e4
    time_workers: int = 12
    time_ks: tuple[int, ...] = (1, 3, 6, 9, 12)
    rounds: int = 10000
    tolerance: float = 0.01
    z_max: float = 4.0

    def __post_init__(self):
        require(self.lr > 0 and self.h > 0, "lr", "and h must be > 0", (self.lr, self.h))
        require(len(self.exact_workers) >= 1 and all(1 <= n <= 10 for n in self.exact_workers), "exact_workers",
                "must be integers in [1, 10] (every straggler set is decoded)", self.exact_workers)
        dim = self.problem.dim
        require(max(self.exact_workers) <= dim, "exact_workers", f"must be <= problem.dim ({dim})",
                self.exact_workers)
        require(2 <= self.iterate_workers <= 30, "iterate_workers", "must be in [2, 30]", self.iterate_workers)
        require(len(self.iterate_ks) >= 1 and all(1 <= k < self.iterate_workers and k <= dim
                                                  for k in self.iterate_ks), "iterate_ks",
                f"must be in [1, iterate_workers) and <= problem.dim ({dim}): some tasks straggle", self.iterate_ks)
        require(self.timing_seeds >= 2, "timing_seeds", "must be >= 2 (different straggler patterns)",
                self.timing_seeds)
        require(self.iterations >= 1, "iterations", "must be >= 1", self.iterations)
        require(1 <= self.time_workers <= 30, "time_workers", "must be in [1, 30]", self.time_workers)
        require(len(self.time_ks) >= 2 and all(1 <= k <= min(self.time_workers, self.time_problem.dim)
                                               for k in self.time_ks), "time_ks",
                "must be at least two k in [1, min(time_workers, time_problem.dim)]", self.time_ks)
        require(self.time_problem.counts_flops, "time_problem.kind", "must count its gradient flops",
                to_plain(self.time_problem).get("kind"))
        require(self.flops_per_second > 0, "flops_per_second", "must be > 0", self.flops_per_second)
        require(self.rounds >= 100, "rounds", "must be >= 100", self.rounds)
        require(min(self.decode_tolerance, self.iterate_tolerance, self.tolerance, self.z_max) > 0, "tolerance",
                "and the other tolerances must be > 0", self.tolerance)

    def run(self, seed):
        problem = self.problem.build(generator(seed, Stream.DATA))
        iterate_rows, curves = self._iterates(problem, seed)
        rows = self._decoding(problem, seed) + iterate_rows + self._times(seed)
        table = pd.DataFrame(rows, columns=["check", "workers", "k", "timing_seed", "straggler_sets", "quantity",
                                            "predicted", "measured", "error", "z"])
        a, b, c = (table[table["check"] == name] for name in CHECKS)
        worst_a, worst_b = a.loc[a["error"].idxmax()], b.loc[b["error"].idxmax()]
        worst_z = c.loc[c["z"].abs().idxmax()]
        worst_c = c.loc[c["error"].idxmax()]
        passed = bool(worst_a["error"] <= self.decode_tolerance and worst_b["error"] <= self.iterate_tolerance
                      and abs(worst_z["z"]) <= self.z_max and worst_c["error"] <= self.tolerance)
        criterion = (
            f"decoded U^T grad f exact to {self.decode_tolerance:g} on all {int(a['straggler_sets'].sum())} "
            f"straggler sets (worst {worst_a['error']:.1e}: n = {worst_a['workers']}, k = {worst_a['k']}); coded "
            f"iterates equal the uncoded method's and the literal loop's to {self.iterate_tolerance:g} (worst "
            f"{worst_b['error']:.1e}: k = {worst_b['k']}, {int(b['straggler_sets'].sum())} straggler patterns); "
            f"iteration time E[T_(k:n)] within {self.z_max:g} standard errors (worst |z| {abs(worst_z['z']):.2f} "
            f"at k = {worst_z['k']}) and {self.tolerance:.0%} (worst {worst_c['error']:.2%} at k = "
            f"{worst_c['k']}) for n = {self.time_workers}, k = {span(self.time_ks)}")
        notes = (f"compute law {kind(self.compute)}({describe(self.compute)}); a task is one pair of function values (2 gradients' "
                 f"flops) at {self.flops_per_second:g} flops/s",)
        return Outcome(table, passed, criterion, notes, extra={"curves": curves})

    def _decoding(self, problem, seed):
        """(a): every straggler set of every (n, k), at one random point per (n, k)."""
        rows = []
        rng = generator(seed, Stream.INIT, 1)
        for n in self.exact_workers:
            for k in range(1, n + 1):
                algorithm = ces.CodedES(lr=self.lr, h=self.h, code=MDS(k=k)).bind(problem, n)
                x = rng.standard_normal(problem.dim)
                key = int(rng.integers(0, 2**63 - 1))
                t = np.array([algorithm.local(x, ces.Task(w, n), problem, key)[0][0] for w in range(n)])
                truth = ces.subspace(key, problem.dim, k).T @ problem.grad(x)
                G = ces.encoding(algorithm.code, n)
                worst, sets = 0.0, 0
                for F in itertools.combinations(range(n), k):
                    v = ces.decode(G[list(F)], t[list(F)])
                    worst = max(worst, float(np.abs(v - truth).max() / np.abs(truth).max()))
                    sets += 1
                rows.append(("decoding", n, k, None, sets, "max relative error of decoded U^T grad f", 0.0, worst,
                             worst, np.nan))
        return rows

    def _iterates(self, problem, seed):
        """(b): coded runs under several timing seeds against the uncoded method and the literal loop; also the
        suboptimality curves for the plot."""
        n, rows, curves = self.iterate_workers, [], {}
        x0 = np.array(problem.initial_point(generator(seed, Stream.INIT)), dtype=np.float64)
        K = self.iterations
        for k in self.iterate_ks:
            coded = ces.CodedES(lr=self.lr, h=self.h).resolve(Coded(code=MDS(k=k)))
            plain = ces.CodedES(lr=self.lr, h=self.h).resolve(Sync())
            sync_trace = simulate(Cluster(workers=k, compute=self.compute), Sync(), K, seed)
            reference = walk(sync_trace, plain, problem, x0, seed)
            keys = algorithm_draws(plain.bind(problem, k), problem, seed)
            literal = [x0]
            for s in range(K):
                U = ces.subspace(keys(0, s), problem.dim, k)
                literal.append(literal[-1] - self.lr * (U @ (U.T @ problem.grad(literal[-1]))))
            literal = np.array(literal)
            curves[k] = {"reference": [problem.loss(x) for x in reference], "coded": []}
            for t_seed in range(seed, seed + self.timing_seeds):
                trace = simulate(Cluster(workers=n, compute=self.compute), Coded(code=MDS(k=k)), K, t_seed)
                xs = walk(trace, coded, problem, x0, seed)
                package = replay(trace, coded, problem, x0, seed).x
                used = trace.used()
                patterns = len({tuple(used.worker[used.update == u]) for u in range(K)})
                error = float(max(np.abs(xs - reference).max(), np.abs(xs - literal).max(),
                                  np.abs(package - xs[-1]).max()))
                rows.append(("iterates", n, k, t_seed, patterns,
                             "max |x_coded - x_uncoded|, |x_coded - x_literal| over versions", 0.0, error, error,
                             np.nan))
                curves[k]["coded"].append([problem.loss(x) for x in xs])
        return rows, {"optimal_loss": problem.optimal_loss, "by_k": curves}

    def _times(self, seed):
        """(c): round times of coded_es scenarios timed by flops, against E[T_(k:n)] of the loaded task laws."""
        n, rows = self.time_workers, []
        for k in self.time_ks:
            scenario = from_dict({
                "name": "coded-es-time", "seed": seed, "problem": to_plain(self.time_problem),
                "cluster": {"workers": n, "compute": to_plain(self.compute),
                            "flops_per_second": self.flops_per_second},
                "protocol": {"kind": "coded", "code": {"kind": "mds", "k": k}},
                "algorithm": {"kind": "coded_es", "lr": self.lr, "h": self.h},
                "run": {"updates": self.rounds}})
            built = build(scenario)
            timing = timing_model(built)
            trace = simulate(timing.cluster, scenario.protocol, self.rounds, seed, timing.message_bytes,
                             serial=timing.serial)
            times = np.diff(trace.update_times())
            job = k * 2.0 * built.problem.grad_flops()  # k evaluation pairs, 2 gradients' flops each
            loaded = scaled(self.compute, job / k / self.flops_per_second)
            predicted = order_statistic_mean(loaded, k, n=n)
            z = (times.mean() - predicted) / (times.std(ddof=1) / math.sqrt(len(times)))
            rows.append(("iteration time", n, k, seed, None, "mean round time (s)", predicted, times.mean(),
                         abs(times.mean() - predicted) / predicted, z))
        return rows

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        (a, b), (c, d) = axes
        part = t[t["check"] == "decoding"]
        for n, g in part.groupby("workers"):
            a.semilogy(g["k"], g["measured"].clip(lower=1e-17), "o-", ms=4, label=f"n = {n} (all C(n, k) sets)")
        a.axhline(self.decode_tolerance, color="tab:red", ls="--", lw=1, label=f"tolerance {self.decode_tolerance:g}")
        a.set_xlabel("k (subspace dimension)")
        a.set_ylabel("max relative error of v (dimensionless)")
        a.set_title("(a) decoded U^T grad f, worst straggler set")
        a.legend(fontsize=8, loc="lower right")
        a.grid(True, which="both", alpha=0.3)

        part = t[t["check"] == "iterates"]
        labels = [f"k={k}\nseed {int(s)}" for k, s in zip(part["k"], part["timing_seed"])]
        b.bar(range(len(part)), part["measured"].clip(lower=1e-18), color="tab:blue", alpha=0.7,
              label="max difference over versions")
        b.axhline(self.iterate_tolerance, color="tab:red", ls="--", lw=1,
                  label=f"tolerance {self.iterate_tolerance:g}")
        b.set_yscale("log")
        b.set_xticks(range(len(part)), labels, fontsize=7)
        b.set_xlabel(f"subspace dimension k and timing seed (n = {self.iterate_workers})")
        b.set_ylabel("max |x_coded - x_reference| (parameter units)")
        b.set_title("(b) coded iterates vs uncoded and literal loop")
        b.legend(fontsize=8, loc="center right")

        curves = outcome.extra.get("curves") or {}
        f_star = curves.get("optimal_loss") or 0.0
        for (k, cur), color in zip(curves.get("by_k", {}).items(), ("tab:blue", "tab:orange", "tab:green",
                                                                    "tab:purple")):
            ref = np.asarray(cur["reference"]) - f_star
            c.semilogy(ref, "-", color=color, lw=2.5, alpha=0.5, label=f"uncoded, k = {k}")
            for i, coded in enumerate(cur["coded"]):
                c.semilogy(np.asarray(coded) - f_star, ":", color=color, lw=1,
                           label=f"coded (n = {self.iterate_workers}), k = {k}, every timing seed" if i == 0 else None)
        c.set_xlabel("iteration")
        c.set_ylabel("f(x_k) - f* (objective units)")
        c.set_title("(b) suboptimality: coded runs on the uncoded curve")
        c.legend(fontsize=8, loc="lower left")
        c.grid(True, which="both", alpha=0.3)

        part = t[t["check"] == "iteration time"]
        d.plot(part["k"], part["predicted"], "-", color="tab:gray", lw=1.5, label="E[T_(k:n)] of the loaded laws")
        d.plot(part["k"], part["measured"], "o", color="tab:blue", ms=6, label="simulated mean round time")
        for _, r in part.iterrows():
            d.annotate(f"z = {r['z']:.1f}", (r["k"], r["measured"]), textcoords="offset points", xytext=(7, -3),
                       ha="left", fontsize=7)
        d.set_xticks(list(self.time_ks))
        d.set_xlim(min(self.time_ks) - 0.8, max(self.time_ks) + 1.8)
        d.set_ylim(0, 1.1 * float(part[["predicted", "measured"]].to_numpy().max()))
        d.set_xlabel(f"k (tasks waited for, of n = {self.time_workers})")
        d.set_ylabel("iteration time (simulated s)")
        d.set_title("(c) iteration time: k-th order statistic")
        d.legend(fontsize=8, loc="upper left")
        d.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig


def walk(trace, algorithm, problem, x0, seed) -> np.ndarray:
    """Every version of a round run, from the algorithm's pure functions along ``trace`` (each round's used rows
    read the round's version; messages in worker order): rows = versions 0..K, the package's replay computed
    literally, keeping every iterate."""
    used = trace.used()
    algorithm = algorithm.bind(problem, trace.n_workers)
    draws = algorithm_draws(algorithm, problem, seed)
    state, workers = algorithm.init(np.array(x0, dtype=np.float64), trace.n_workers)
    xs = [algorithm.params(state)]
    for k in range(used.n_updates):
        rows = np.flatnonzero(used.update == k)
        rows = rows[np.argsort(used.worker[rows], kind="stable")]
        if not (used.read_version[rows] == k).all():
            raise ValueError(f"update {k} has a contribution that did not read version {k}")
        x = xs[-1]
        messages = [algorithm.local(x, workers[w], problem, draws(w, s))[0]
                    for w, s in zip(used.worker[rows].tolist(), used.step[rows].tolist())]
        info = ApplyInfo.at(k, used.worker[rows].tolist(), used.read_version[rows].tolist(), problem)
        state = algorithm.apply(state, messages, info)
        xs.append(algorithm.params(state))
    return np.array(xs)
