"""``gradient-coding``: every straggler set of Tandon et al.'s codes decodes the exact gradient, coded gradient
descent is gradient descent, and the round time follows its order statistic (``theory.coded_round_time``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..algorithms.coded import CodedGD
from ..params import kind, require
from ..problems.ridge import Ridge
from ..replay import replay
from ..rng import Stream, generator
from ..theory import coded_round_time
from ..timing.cluster import Cluster
from ..timing.codes import Code, Cyclic, FractionalRepetition
from ..timing.laws import DelayLaw
from ..timing.protocols import simulate
from ..timing.rounds import Coded
from .base import Outcome, Reproduction, describe


@Reproduction.registry.register("gradient_coding")
@dataclass(frozen=True, kw_only=True)
class GradientCoding(Reproduction):
    """Tandon, Lei, Dimakis and Karampatziakis, "Gradient coding" (ICML 2017): with each data part on s + 1
    workers, any n - s finished tasks decode the full gradient.

    For every n in ``workers``, s in ``stragglers`` and code (``cyclic`` s, and ``fractional_repetition`` s where
    s + 1 divides n):

    - exactness: on a ridge problem, worker i's task t_i = sum_j B[i, j] G_j(x) (``CodedGD.local``), and for every
      one of the C(n, s) straggler sets the decoded sum_{i in F} a_i t_i (a^T B_F = 1^T) equals N grad f(x), to
      ``exact_tol`` relative;
    - coded GD is GD: ``rounds`` rounds of ``coded_gd`` replayed over the simulated trace (stragglers change from
      round to round) equal a literal gradient descent loop, to ``exact_tol``;
    - round time: ``rounds`` simulated rounds under ``law`` against (s + 1)/n E[X_(n-s:n)] for cyclic and
      (s + 1)/n E[max over groups of the group minimum] for fractional repetition (``theory.coded_round_time``),
      within ``z_max`` standard errors and ``tolerance``.

    PASS when every check holds."""

    law: DelayLaw
    workers: tuple[int, ...] = (6, 8, 12)
    stragglers: tuple[int, ...] = (1, 2, 3)
    rounds: int = 4000
    dim: int = 8
    exact_tol: float = 1e-9
    tolerance: float = 0.01
    z_max: float = 4.0

    def __post_init__(self):
        require(len(self.workers) >= 1 and all(2 <= n <= 12 for n in self.workers), "workers",
                "must be integers in [2, 12] (every straggler set is enumerated)", self.workers)
        require(len(self.stragglers) >= 1 and min(self.stragglers) >= 1, "stragglers", "must be integers >= 1",
                self.stragglers)
        require(self.rounds >= 100, "rounds", "must be >= 100", self.rounds)
        require(self.dim >= 1, "dim", "must be >= 1", self.dim)
        require(self.exact_tol > 0 and self.tolerance > 0 and self.z_max > 0, "tolerance",
                "exact_tol and z_max must be > 0", self.tolerance)

    def codes(self, n: int) -> list[tuple[int, Code]]:
        out = []
        for s in self.stragglers:
            if s < n:
                out.append((s, Cyclic(s=s)))
                if n % (s + 1) == 0:
                    out.append((s, FractionalRepetition(s=s)))
        return out

    def run(self, seed):
        rows = []
        for n in self.workers:
            problem = Ridge(n_samples=30 * n, dim=self.dim, lam=0.01, coherence=0.5).build(
                generator(seed, Stream.DATA, n))
            x = generator(seed, Stream.INIT, n).standard_normal(self.dim)
            full = problem.n_samples * problem.grad(x)
            for s, code in self.codes(n):
                algorithm = CodedGD(lr=0.5 / problem.smoothness, code=code).bind(problem, n)
                tasks = np.array([algorithm.local(x, shard, problem, None)[0]
                                  for shard in algorithm.init(x, n)[1]])
                worst = 0.0
                for late in itertools.combinations(range(n), s):
                    F = sorted(set(range(n)) - set(late))
                    decoded = self.decode(code, F, n) @ tasks[F]
                    worst = max(worst, float(np.abs(decoded - full).max() / np.abs(full).max()))
                gd_error = self.gd_error(problem, code, n, seed)
                cluster = Cluster(workers=n, compute=self.law)
                times = np.diff(simulate(cluster, Coded(code=code), self.rounds, seed).update_times())
                predicted = coded_round_time(code, n, self.law)
                se = times.std(ddof=1) / np.sqrt(len(times))
                rows.append((n, s, kind(code), code.load(n), len(list(itertools.combinations(range(n), s))),
                             worst, gd_error, predicted, times.mean(), se, (times.mean() - predicted) / se))
        table = pd.DataFrame(rows, columns=["workers", "s", "code", "load", "straggler_sets", "decode_error",
                                            "gd_error", "predicted", "measured", "se", "z"])
        table["relative_error"] = (table["measured"] - table["predicted"]).abs() / table["predicted"]
        z = table.loc[table["z"].abs().idxmax()]
        worst = table.loc[table["relative_error"].idxmax()]
        exact = float(max(table["decode_error"].max(), table["gd_error"].max()))
        passed = bool(exact <= self.exact_tol and abs(z["z"]) <= self.z_max
                      and worst["relative_error"] <= self.tolerance)
        criterion = (f"all {int(table['straggler_sets'].sum())} straggler sets decode the exact gradient and coded "
                     f"GD equals GD (worst relative error {exact:.1e} <= {self.exact_tol:.0e}); round times within "
                     f"{self.z_max:g} standard errors (worst |z| {abs(z['z']):.2f}: {z['code']} s = {z['s']}, "
                     f"n = {z['workers']}) and {self.tolerance:.0%} (worst {worst['relative_error']:.2%}) of the "
                     f"order-statistic forms, compute law {kind(self.law)}({describe(self.law)})")
        return Outcome(table, passed, criterion)

    @staticmethod
    def decode(code: Code, finished, n: int) -> np.ndarray:
        """The decoding vector of the finished tasks (the code's own: a test replaces it by a broken one)."""
        return code.decoding(frozenset(finished), n)

    def gd_error(self, problem, code: Code, n: int, seed: int) -> float:
        """max_k ||x_k(coded GD over a simulated trace) - x_k(GD)|| / max ||x_k(GD)|| over ``min(rounds, 200)``
        rounds with changing stragglers."""
        K, x0 = min(self.rounds, 200), np.ones(problem.dim)
        lr = 0.5 / problem.smoothness
        protocol = Coded(code=code)
        trace = simulate(Cluster(workers=n, compute=self.law), protocol, K, seed)
        result = replay(trace, CodedGD(lr=lr).resolve(protocol), problem, x0, seed=seed, record_every=1)
        x = x0
        for _ in range(K):
            x = x - lr * problem.grad(x)
        return float(np.abs(result.x - x).max() / np.abs(x).max())

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(11.5, 4.3))
        markers = {"cyclic": "o", "fractional_repetition": "s"}
        for (code, n), g in t.groupby(["code", "workers"], sort=False):
            line, = a.plot(g["s"], g["predicted"], "-", lw=1, label=f"{code.replace('_', ' ')}, n = {n}")
            a.plot(g["s"], g["measured"], markers[code], ms=6, mfc="none", color=line.get_color())
        a.set_xticks(sorted(set(t["s"])))
        a.set_xlabel("stragglers tolerated s (each part on s + 1 workers)")
        a.set_ylabel("mean round time (s)")
        a.set_title("round time: simulated (markers), order-statistic form (lines)", fontsize=10)
        a.grid(True, alpha=0.3)
        a.legend(fontsize=7, ncol=2)
        labels = [f"{'cyc' if c == 'cyclic' else 'FR'} n={n} s={s}" for c, n, s in zip(t["code"], t["workers"], t["s"])]
        pos = np.arange(len(t))
        floor = 1e-18  # exact zeros drawn at the floor of the log axis
        b.bar(pos - 0.2, np.maximum(t["decode_error"], floor), 0.4, label="worst decoding, all straggler sets")
        b.bar(pos + 0.2, np.maximum(t["gd_error"], floor), 0.4, label="coded GD vs GD iterates")
        b.axhline(self.exact_tol, color="tab:red", ls="--", lw=1, label=f"tolerance {self.exact_tol:.0e}")
        b.set_yscale("log")
        b.set_ylim(floor / 2, 1e-6)
        b.set_xticks(pos, labels, rotation=70, fontsize=7)
        b.set_ylabel("relative error")
        b.set_title(f"exact decoding, to rounding (a bar at {floor:.0e}: exactly 0)", fontsize=10)
        b.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        return fig
