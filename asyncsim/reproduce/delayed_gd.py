"""``delayed-gd-stability``: gradient descent with a constant delay tau on a quadratic is stable exactly when
eta lambda < 2 sin(pi / (2 (2 tau + 1))) (``theory.delayed_gd_critical_step``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..algorithms.gd import GD
from ..params import require
from ..problems.quadratic import QuadraticProblem
from ..replay import replay
from ..theory import delayed_gd_critical_step
from ..timing.cluster import Cluster
from ..timing.laws import Constant
from ..timing.protocols import Async, simulate
from .base import Outcome, Reproduction, span


class _Coordinates(QuadraticProblem):
    """f(x) = sum_j h_j x_j^2 / 2 with every coordinate recorded (one coordinate per step h_j = eta lambda_j)."""

    def metrics(self, x):
        return {f"x{j}": v for j, v in enumerate(x.tolist())}


def growth_rates(taus_trace, h: np.ndarray, updates: int, seed: int, records: int = 400) -> np.ndarray:
    """Per-update log growth rate of x_{k+1} = x_k - h x_{k - tau_k} along a trace, for each h (gradient descent,
    lr = 1, on ``_Coordinates``): log(rms of the last quarter of the recorded iterates / rms of the second quarter)
    divided by the updates between the quarters' centres.  Positive: the iteration grows.  The iteration is linear,
    so the scale of x_0 does not matter: x_0 = 1e-150 keeps growing iterates (and their squares, in the loss)
    finite for growth factors up to e^300, and decaying ones normal for decay factors down to e^-300."""
    problem = _Coordinates(np.diag(h), np.zeros(len(h)), noise=0.0)
    every = max(1, updates // records)
    result = replay(taus_trace, GD(lr=1.0), problem, np.full(len(h), 1e-150), seed, record_every=every)
    frame = result.metrics
    require(result.diverged_at is None, "updates", "must keep the iterates finite (fewer updates)", updates)
    x = frame[[f"x{j}" for j in range(len(h))]].to_numpy()
    quarter = len(x) // 4
    early, late = x[quarter:2 * quarter], x[-quarter:]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(np.sqrt(np.mean(late ** 2, axis=0))) - np.log(np.sqrt(np.mean(early ** 2, axis=0)))
    ratio[np.isnan(ratio)] = -np.inf  # decayed to zero in both quarters
    span = frame["update"].to_numpy()[-quarter:].mean() - frame["update"].to_numpy()[quarter:2 * quarter].mean()
    return ratio / span


def crossing(h: np.ndarray, rate: np.ndarray) -> float:
    """The h where the growth rate first turns positive, by linear interpolation between the last grid point that
    decays and the next one (NaN when the grid does not bracket a change of sign)."""
    up = np.flatnonzero(rate > 0)
    if up.size == 0 or up[0] == 0:
        return float("nan")
    i = up[0]
    a, b = rate[i - 1], rate[i]
    if not np.isfinite(a):
        return float(h[i])
    return float(h[i - 1] + (h[i] - h[i - 1]) * (-a) / (b - a))


@Reproduction.registry.register("delayed_gd_stability")
@dataclass(frozen=True, kw_only=True)
class DelayedGDStability(Reproduction):
    """The critical step of gradient descent with a constant delay, measured in the simulator.

    A constant delay tau comes from the async parameter server with n = tau + 1 workers of constant compute time
    and no latency: the workers finish together, the server applies them in queue order, and from the second round
    on every update has staleness exactly n - 1 = tau (the first round reads version 0, which is the usual constant
    initial history x_{-tau} = ... = x_0).  Along that trace, ``gd`` with lr = 1 on f(x) = sum_j h_j x_j^2 / 2
    runs x_{k+1} = x_k - h_j x_{k-tau} in every coordinate at once.  The critical h is measured without the
    prediction: a geometric grid of ``coarse_points`` steps over [0.05, 4] / (tau + 1) run for 30 (2 tau + 1)
    updates brackets the first growing step; then ``fine_points`` steps spanning the bracket (one coarse step
    wider on each side) run for ``updates_per_worker`` (tau + 1) updates, and the growth rate's change of sign is
    interpolated.  Predicted: h* = 2 sin(pi / (2 (2 tau + 1))) (Levin and May 1976).  PASS when every measured h*
    is within ``tolerance`` of the prediction."""

    taus: tuple[int, ...]
    updates_per_worker: int = 1000
    coarse_points: int = 60
    fine_points: int = 41
    tolerance: float = 0.02

    def __post_init__(self):
        require(len(self.taus) >= 1 and min(self.taus) >= 0, "taus", "must be delays >= 0", self.taus)
        require(self.updates_per_worker >= 100, "updates_per_worker", "must be >= 100", self.updates_per_worker)
        require(self.coarse_points >= 10, "coarse_points", "must be >= 10", self.coarse_points)
        require(self.fine_points >= 5, "fine_points", "must be >= 5", self.fine_points)
        require(self.tolerance > 0, "tolerance", "must be > 0", self.tolerance)

    def measure(self, tau: int, seed: int) -> tuple[float, int, int]:
        """(measured h*, updates of the fine run, the delay every update after the first round had)."""
        n = tau + 1
        cluster = Cluster(workers=n, compute=Constant(value=1.0))
        coarse = np.geomspace(0.05, 4.0, self.coarse_points) / n
        K = 30 * (2 * tau + 1)
        up = np.flatnonzero(growth_rates(simulate(cluster, Async(), K, seed), coarse, K, seed) > 0)
        if up.size == 0 or up[0] == 0:
            return float("nan"), K, tau
        lo, hi = coarse[max(up[0] - 2, 0)], coarse[min(up[0] + 1, len(coarse) - 1)]
        fine = np.linspace(lo, hi, self.fine_points)
        K = self.updates_per_worker * n
        trace = simulate(cluster, Async(), K, seed)
        delays = np.unique(trace.staleness[n:])
        delay = int(delays[0]) if delays.size == 1 else -1
        return crossing(fine, growth_rates(trace, fine, K, seed)), K, delay

    def run(self, seed):
        rows = []
        for tau in self.taus:
            measured, K, delay = self.measure(int(tau), seed)
            predicted = delayed_gd_critical_step(int(tau))
            rows.append((int(tau), delay, K, predicted, measured, abs(measured - predicted) / predicted))
        table = pd.DataFrame(rows, columns=["tau", "simulated_delay", "updates", "predicted_critical_step",
                                            "measured_critical_step", "relative_error"])
        errors = table["relative_error"].to_numpy()
        ok_delay = bool((table["simulated_delay"] == table["tau"]).all())
        worst = int(np.nanargmax(errors)) if np.isfinite(errors).any() else 0
        passed = bool(ok_delay and np.all(np.isfinite(errors)) and np.all(errors <= self.tolerance))
        missing = int(np.isnan(errors).sum())
        criterion = (f"measured critical step eta lambda within {self.tolerance:.0%} of 2 sin(pi / (2 (2 tau + 1))) "
                     f"for tau = {span(self.taus)} (worst {errors[worst]:.3%} at tau = {table['tau'][worst]}"
                     f"{f'; {missing} not bracketed' if missing else ''}{'' if ok_delay else '; delay not constant'})")
        return Outcome(table, passed, criterion)

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        tau = np.arange(0, max(self.taus) + 1)
        a.plot(tau, [delayed_gd_critical_step(int(v)) for v in tau], "k-", lw=1,
               label="predicted 2 sin(pi / (2 (2 tau + 1)))")
        a.plot(t["tau"], t["measured_critical_step"], "o", ms=4, color="tab:red", label="measured (simulated)")
        a.set_yscale("log")
        a.set_xlabel("delay tau")
        a.set_ylabel("critical step eta lambda")
        a.set_title("delayed gradient descent: stability boundary")
        a.legend()
        a.grid(True, which="both", alpha=0.3)
        b.plot(t["tau"], t["relative_error"], "o", ms=4, color="tab:red", label="|measured / predicted - 1|")
        b.axhline(self.tolerance, color="k", lw=1, ls="--", label=f"criterion {self.tolerance:.0%}")
        b.set_yscale("log")
        b.set_xlabel("delay tau")
        b.set_ylabel("relative error")
        b.set_title("relative error")
        b.legend()
        b.grid(True, alpha=0.3)
        fig.tight_layout()
        return fig

