"""``asysg-speedup``: the iteration and time speedup tables of AsySG-con (machines, a parameter server) and
AsySG-incon (threads, shared memory with inconsistent reads), measured on simulated clusters next to the published
numbers, and the linear speedup of the theory while n < sqrt(K)/4 (``theory.asysg_linear_speedup_workers``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..algorithms.delay import AsySG
from ..params import require
from ..problems.base import ProblemSpec
from ..replay import replay
from ..rng import Stream, generator
from ..theory import asysg_linear_speedup_workers
from ..timing.cluster import Cluster, Server
from ..timing.laws import Constant, DelayLaw, Exponential
from ..timing.protocols import Async, SharedMemory, simulate
from .base import Outcome, Reproduction, first_hit

TABLES = ("con machines", "incon threads")


@dataclass(frozen=True, kw_only=True)
class Published:
    """A published speedup table: the worker counts, the iteration and time speedups, and the paper's setting."""

    setting: str
    workers: tuple[int, ...]
    iteration: tuple[float, ...]
    time: tuple[float, ...]

    def __post_init__(self):
        require(len(self.iteration) == len(self.workers) == len(self.time), "iteration",
                "and time must have one value per worker count", (len(self.iteration), len(self.time)))

    def at(self, n: int) -> tuple[float, float]:
        """(iteration, time) speedup published for n workers, nan where the paper has no column for n."""
        if n not in self.workers:
            return np.nan, np.nan
        i = self.workers.index(n)
        return self.iteration[i], self.time[i]


@Reproduction.registry.register("asysg_speedup")
@dataclass(frozen=True, kw_only=True)
class AsySGSpeedup(Reproduction):
    """AsySG (``asysg``: x_{k+1} = x_k - gamma sum_{m=1}^M G(x_{k-tau_k}; xi_{k,m}), gamma = ``lr``, M =
    ``batch_size``, the same for every n as in the theorem) on ``problem`` from x_0, in two settings:

    - AsySG-con, n = ``machines``: ``async`` parameter server (consistent reads), compute times ``compute``, links
      ``uplink`` / ``downlink`` and one server slot of service time ``service``, whose queue makes the time speedup
      fall below the iteration speedup as n grows;
    - AsySG-incon, n = ``threads``: ``shared_memory``, reads of ``read`` seconds in ``blocks`` coordinate blocks
      (null: one per coordinate), so a read sees updates applied during it, and atomic writes of ``write`` seconds
      through one memory slot.

    K(n) is the number of updates until the suboptimality first falls to ``target`` times its initial value and
    T(n) the simulated time then, each averaged over ``repeats`` seeds derived from the run seed (each seed: its
    data, timing and minibatches, common to every n).  Measured: the iteration speedup n K(1) / K(n) and the time
    speedup T(1) / T(n).  Predicted (Lian, Huang, Li and Liu, "Asynchronous parallel stochastic gradient for
    nonconvex optimization", NeurIPS 2015, Corollaries 2 and 4): linear speedup while the staleness bound (about n)
    is O(sqrt(K)); required: iteration speedup >= ``fraction`` n for every n < c sqrt(K(1)), c = ``regime``
    (asysg_linear_speedup_workers).  The paper's tables (``published_*``) are shown alongside, not compared.
    (In the transient of a quadratic a stale gradient, taken further from x*, is slightly larger, so K(n) may fall
    a little below K(1): a speedup slightly above n is real, not noise.)"""

    problem: ProblemSpec
    lr: float
    batch_size: int = 4
    target: float = 0.01
    updates: int = 5000
    repeats: int = 3
    compute: DelayLaw = field(default_factory=lambda: Exponential(mean=1.0))
    uplink: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    downlink: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    service: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    read: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    write: DelayLaw = field(default_factory=lambda: Constant(value=0.0))
    blocks: int | None = None
    machines: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    threads: tuple[int, ...] = (1, 4, 8, 12, 16, 20, 24, 28, 32)
    published_machines: Published
    published_threads: Published
    fraction: float = 0.8
    regime: float = 0.25

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        require(0 < self.target < 1, "target", "must be in (0, 1) (a fraction of the initial suboptimality)",
                self.target)
        require(self.updates >= 10, "updates", "must be >= 10", self.updates)
        require(self.repeats >= 1, "repeats", "must be >= 1", self.repeats)
        require(self.blocks is None or self.blocks >= 1, "blocks", "must be >= 1 (or null: one per coordinate)",
                self.blocks)
        for name in ("machines", "threads"):
            ns = getattr(self, name)
            require(1 in ns and min(ns) >= 1 and len(set(ns)) == len(ns), name,
                    "must be distinct worker counts >= 1 including 1 (the baseline)", ns)
        require(0 < self.fraction <= 1, "fraction", "must be in (0, 1]", self.fraction)
        require(self.regime > 0, "regime", "must be > 0", self.regime)

    def settings(self, dim: int):
        """(table, n, cluster, protocol) of every run."""
        for n in self.machines:
            yield TABLES[0], n, Cluster(workers=n, compute=self.compute, uplink=self.uplink, downlink=self.downlink,
                                        server=Server(service=self.service)), Async()
        for n in self.threads:
            yield TABLES[1], n, Cluster(workers=n, compute=self.compute, server=Server(service=self.write)), \
                SharedMemory(read=self.read, blocks=self.blocks or dim)

    def run(self, seed):
        algorithm = AsySG(lr=self.lr, batch_size=self.batch_size)
        runs: dict[tuple[str, int], list] = {}
        for s in _subseeds(seed, self.repeats):
            problem = self.problem.build(generator(s, Stream.DATA))
            require(problem.optimal_loss is not None, "problem", "must have a known optimum (suboptimality)",
                    type(problem).__name__)
            x0 = problem.initial_point(generator(s, Stream.INIT))
            for table, n, cluster, protocol in self.settings(problem.dim):
                trace = simulate(cluster, protocol, self.updates, s)
                metrics = replay(trace, algorithm, problem, x0, s).metrics
                runs.setdefault((table, n), []).append((*_first_crossing(metrics, self.target),
                                                        float(trace.staleness.mean())))
        rows = []
        for table, published in zip(TABLES, (self.published_machines, self.published_threads)):
            K1, T1 = np.mean([r[:2] for r in runs[(table, 1)]], axis=0)
            bound = asysg_linear_speedup_workers(int(round(K1)), self.regime) if np.isfinite(K1) else np.nan
            for (t, n), values in runs.items():
                if t != table:
                    continue
                K, T, tau = np.mean(values, axis=0)
                iteration = n * K1 / K
                rows.append((table, n, K, T, tau, iteration, T1 / T, *published.at(n), bool(n < bound),
                             bool(iteration >= self.fraction * n), bound))
        table = pd.DataFrame(rows, columns=["table", "n", "K", "time_to_target", "mean_staleness",
                                           "iteration_speedup", "time_speedup", "published_iteration",
                                           "published_time", "in_regime", "meets_fraction_n", "regime_bound"])
        return self._verdict(table)

    def _verdict(self, table: pd.DataFrame) -> Outcome:
        ratio = table["iteration_speedup"] / table["n"]
        inside = table[table["in_regime"]]
        covered = {t: sorted(inside.loc[inside["table"] == t, "n"]) for t in TABLES}
        passed = bool(inside["meets_fraction_n"].all() and all(max(ns, default=1) > 1 for ns in covered.values()))
        if inside.empty:
            worst = "none in the regime (K(1) not reached?)"
        else:
            w = ratio[inside.index].idxmin()
            worst = f"worst {ratio[w]:.3f} n ({table.at[w, 'table']}, n = {table.at[w, 'n']})"

        def regime(t):
            first = table[(table["table"] == t) & (table["n"] == 1)].iloc[0]
            return (f"{t}: K(1) = {first.K:.0f}, n < {first.regime_bound:.1f}: n = "
                    f"{', '.join(map(str, covered[t])) or 'none'}")

        criterion = (f"iteration speedup n K(1)/K(n) >= {self.fraction} n for every n < {self.regime} sqrt(K(1)) ("
                     + "; ".join(map(regime, TABLES)) + f"), {worst}")
        notes = [f"K(n): updates until f - f* <= {self.target:g} (f(x_0) - f*), mean over {self.repeats} seeds; "
                 f"gamma = {self.lr:g}, M = {self.batch_size} for every n"]
        outside = table[~table["in_regime"]]
        if not outside.empty:
            notes.append("out of the regime (not required): " + ", ".join(
                f"{r.table} n = {r.n}: {r.iteration_speedup / r.n:.3f} n" for r in outside.itertuples()))
        for t, published in zip(TABLES, (self.published_machines, self.published_threads)):
            below = [n for n, s in zip(published.workers, published.iteration) if s < self.fraction * n]
            last = table[table["table"] == t].iloc[-1]
            notes.append(f"{t}: at n = {last.n} time/iteration speedup {last.time_speedup / last.iteration_speedup:.3f}"
                         f" (published {published.time[-1] / published.iteration[-1]:.3f}), mean staleness "
                         f"{last.mean_staleness:.1f}; published ({published.setting}) below {self.fraction} n at "
                         f"n = {', '.join(map(str, below)) or 'none'}")
        return Outcome(table, passed, criterion, tuple(notes))

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for ax, t in zip(axes, TABLES):
            rows = outcome.table[outcome.table["table"] == t]
            n = rows["n"].to_numpy(float)
            grid = np.linspace(1, n.max(), 100)
            ax.plot(grid, grid, "k-", lw=1, label="ideal y = n")
            ax.plot(grid, self.fraction * grid, "k--", lw=1, label=f"{self.fraction} n")
            bound = rows["regime_bound"].iloc[0]
            shaded = grid[grid <= bound]
            if len(shaded):
                ax.fill_between(shaded, self.fraction * shaded, shaded, color="tab:green", alpha=0.15,
                                label=f"required: n < sqrt(K(1))/4 = {bound:.1f}")
            ax.plot(n, rows["iteration_speedup"], "o-", color="tab:blue", label="iteration speedup (simulated)")
            ax.plot(n, rows["time_speedup"], "s-", color="tab:orange", ms=4, label="time speedup (simulated)")
            ax.plot(n, rows["published_iteration"], "x", color="tab:blue", ms=9, mew=2,
                    label="iteration speedup (published)")
            ax.plot(n, rows["published_time"], "+", color="tab:orange", ms=10, mew=2, label="time speedup (published)")
            ax.set_xlabel("threads n" if "threads" in t else "machines n")
            ax.set_ylabel("speedup")
            ax.set_title(f"AsySG-{t}")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig


def _subseeds(seed: int, repeats: int) -> list[int]:
    """``repeats`` seeds derived from ``seed`` (numpy SeedSequence spawning)."""
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(repeats)]


def _first_crossing(metrics: pd.DataFrame, target: float) -> tuple[float, float]:
    """(update, time) of the first recorded version with f - f* <= target (f(x_0) - f*), or (nan, nan)."""
    gap = metrics["suboptimality"].to_numpy()
    hit = first_hit(metrics, gap, target * gap[0])
    return (np.nan, np.nan) if hit is None else (float(hit[0]), hit[1])
