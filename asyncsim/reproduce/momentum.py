"""``async-momentum``: asynchrony begets momentum.  The mean trajectory of asynchronous SGD on a quadratic with
exponential compute times follows the heavy-ball recursion with momentum 1 - 1/n (``theory.heavy_ball_trajectory``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..algorithms.sgd import SGD
from ..params import require
from ..replay import replay
from ..theory import heavy_ball_trajectory
from ..timing.cluster import Cluster
from ..timing.laws import Exponential
from ..timing.protocols import Async, simulate
from .base import Outcome, Reproduction, span
from .delayed_gd import _Coordinates


def run_seed(seed: int, *keys: int) -> int:
    """A timing seed for one run, derived from the reproduction's seed and the run's keys."""
    return int(np.random.SeedSequence((seed, *keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


@Reproduction.registry.register("async_momentum")
@dataclass(frozen=True, kw_only=True)
class AsyncMomentum(Reproduction):
    """Mean asynchronous SGD trajectory against the heavy-ball recursion (Mitliagkas, Zhang, Hadjis and Re,
    "Asynchrony begets momentum, with an application to deep learning", Allerton 2016).

    For each n: ``runs`` independent timings of the async parameter server with n workers of exponential compute
    times (mean 1, no latency), each replayed with ``sgd`` (lr = ``lr``, gradient noise ``noise``) on
    f(x) = sum_j lambda_j (x_j - 0)^2 / 2 with lambda = ``eigenvalues`` from x_0 = 1, for ``steps`` updates.  The
    average of the runs' iterates x_k is compared with y_k of

        y_1 = y_0 - eta grad f(y_0),   y_{k+1} = y_k + (1 - 1/n)(y_k - y_{k-1}) - (eta / n) grad f(y_k),

    by the relative L2 error ||mean x - y|| / ||y|| over all k and coordinates.  The error of the momentum-free
    recursion y_{k+1} = y_k - eta grad f(y_k) is reported alongside, and so is the Monte Carlo error expected from
    the spread of the runs alone, sqrt(sum_k var(x_k) / runs) / ||y||.  PASS when every error against heavy ball
    is at most ``tolerance`` and smaller than the error against the momentum-free recursion."""

    workers: tuple[int, ...]
    runs: int = 200
    steps: int = 300
    lr: float = 0.05
    eigenvalues: tuple[float, ...] = (1.0, 0.25)
    noise: float = 0.0
    tolerance: float = 0.05

    def __post_init__(self):
        require(len(self.workers) >= 1 and min(self.workers) >= 1, "workers", "must be integers >= 1", self.workers)
        require(self.runs >= 2, "runs", "must be >= 2", self.runs)
        require(self.steps >= 2, "steps", "must be >= 2", self.steps)
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(len(self.eigenvalues) >= 1 and min(self.eigenvalues) > 0, "eigenvalues", "must be > 0",
                self.eigenvalues)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)
        require(self.tolerance > 0, "tolerance", "must be > 0", self.tolerance)

    def trajectories(self, n: int, seed: int) -> np.ndarray:
        """The iterates x_0..x_steps of every run, shape (runs, steps + 1, dim)."""
        lam = np.array(self.eigenvalues, dtype=float)
        problem = _Coordinates(np.diag(lam), np.zeros(lam.size), noise=self.noise)
        columns = [f"x{j}" for j in range(lam.size)]
        cluster = Cluster(workers=n, compute=Exponential(mean=1.0))
        out = np.empty((self.runs, self.steps + 1, lam.size))
        for r in range(self.runs):
            s = run_seed(seed, n, r)
            result = replay(simulate(cluster, Async(), self.steps, s), SGD(lr=self.lr, batch_size=1), problem,
                            np.ones(lam.size), s)
            out[r] = result.metrics[columns].to_numpy()
        return out

    def run(self, seed):
        lam = np.array(self.eigenvalues, dtype=float)
        grad = lambda y: lam * y  # noqa: E731
        rows, curves = [], {}
        for n in self.workers:
            x = self.trajectories(int(n), seed)
            mean = x.mean(axis=0)
            y = heavy_ball_trajectory(grad, np.ones(lam.size), self.lr, int(n), self.steps)
            plain = heavy_ball_trajectory(grad, np.ones(lam.size), self.lr, 1, self.steps)  # n = 1: no momentum
            norm = np.linalg.norm(y)
            error = np.linalg.norm(mean - y) / norm
            mc = np.sqrt(x.var(axis=0, ddof=1).sum() / self.runs) / norm
            rows.append((int(n), 1 - 1 / n, self.runs, self.steps, error, mc, np.linalg.norm(mean - plain) / norm))
            curves[int(n)] = (mean[:, 0], y[:, 0], plain[:, 0])
        table = pd.DataFrame(rows, columns=["workers", "implicit_momentum", "runs", "steps",
                                            "relative_error_heavy_ball", "monte_carlo_error",
                                            "relative_error_no_momentum"])
        errors = table["relative_error_heavy_ball"].to_numpy()
        worst = int(np.argmax(errors))
        closer = bool(np.all(errors < table["relative_error_no_momentum"].to_numpy()))
        passed = bool(np.all(errors <= self.tolerance)) and closer
        criterion = (f"mean async-SGD trajectory within {self.tolerance:.0%} relative L2 of the heavy-ball recursion "
                     f"with momentum 1 - 1/n for n = {span(self.workers)} (worst {errors[worst]:.2%} at n = "
                     f"{table['workers'][worst]}), and closer to it than to GD without momentum "
                     f"({'every n' if closer else 'not for every n'})")
        return Outcome(table, passed, criterion, extra={"curves": curves})

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        curves = outcome.extra["curves"]
        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        keys = sorted(curves)
        shown = [keys[i] for i in np.unique(np.linspace(0, len(keys) - 1, min(4, len(keys))).round().astype(int))]
        for n in shown:
            mean, y, plain = curves[n]
            line, = a.plot(mean, lw=2.5, alpha=0.5, label=f"mean async SGD, n = {n}")
            a.plot(y, "-", lw=1, color="k")
        a.plot(curves[shown[0]][2], "--", lw=1, color="0.4", label="GD without momentum")
        a.plot([], [], "-", lw=1, color="k", label="heavy ball, momentum 1 - 1/n")
        a.set_xlabel("update k")
        a.set_ylabel(f"x_k, coordinate with lambda = {self.eigenvalues[0]:g}")
        a.set_title(f"mean of {self.runs} runs, eta = {self.lr:g}")
        a.legend(fontsize=8)
        a.grid(True, alpha=0.3)
        b.plot(t["workers"], t["relative_error_heavy_ball"], "o-", label="vs heavy ball (1 - 1/n)")
        b.plot(t["workers"], t["relative_error_no_momentum"], "s--", label="vs GD without momentum")
        b.plot(t["workers"], t["monte_carlo_error"], ":", color="0.4", label="Monte Carlo error of the mean")
        b.axhline(self.tolerance, color="tab:red", lw=1, label=f"criterion {self.tolerance:.0%}")
        b.set_yscale("log")
        b.set_xlabel("workers n")
        b.set_ylabel("relative L2 error of the mean trajectory")
        b.legend(fontsize=8)
        b.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        return fig

