"""``debiased-newton``: the distributed iterative Hessian sketch contracts by rho / q per step with the step
correction, stalls at a bias floor without it, and on ridge regression the scaled regularization lambda' removes the
floor (Derezinski, Bartan, Pilanci and Mahoney 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..algorithms.sketching import SketchedNewton, effective_dimension
from ..theory import ihs_contraction
from ..params import require
from ..problems.ridge import Ridge
from ..replay import replay
from ..rng import Stream, generator
from ..timing.cluster import Cluster
from ..timing.laws import Constant
from ..timing.protocols import simulate
from ..timing.rounds import Sync
from .base import Outcome, Reproduction, span

COLUMNS = ["part", "debias", "q", "samples", "measured", "standard_error", "predicted", "relative_error", "judged"]


@Reproduction.registry.register("debiased_newton")
@dataclass(frozen=True, kw_only=True)
class DebiasedNewton(Reproduction):
    """``sketched_newton`` with Gaussian sketches under ``sync`` rounds of q workers (every worker's direction kept),
    replayed from x_0 = 0 with independent algorithm seeds.  Measured: the per-step contraction
    E ||x_{t+1} - x*||_H^2 / ||x_t - x*||_H^2 (H the Hessian; = ||A (x - x*)||^2 / n for lam = 0), the mean of the
    ratios of successive suboptimalities f(x_t) - f* = ||x_t - x*||_H^2 / 2 over ``steps`` steps of each run.

    1. Least squares (``ridge`` with lam = 0, ``n_samples`` x ``dim``, ``rows`` = m): the step is rotation invariant
       in distribution, so the ratios are independent with the same mean for every x_t (``ihs_contraction``):
       ``debias: step`` (mu = (m - d - 1) / m) gives rho / q with rho = ((d + 1) m - d^2 - 2 d + 1) /
       ((m - d) (m - d - 3)); ``debias: none`` gives (1 - a)^2 + (c - a^2) / q (a = m / (m - d - 1), c the second
       inverse-Wishart moment), which never falls below the floor ((d + 1) / (m - d - 1))^2.  ``runs`` (and
       ``none_runs``) runs of ``steps`` steps for each q in ``qs``.
    2. Ridge (``ridge_*``: lam > 0, condition ``ridge_condition``, m = ``ridge_rows``): no closed form; ``none``,
       ``surrogate`` (lam' = lam (1 - d_lam / m) with the step 1 - d_lam / m) and, reported, ``step`` for q in
       ``ridge_qs``, ``ridge_runs`` runs of ``ridge_steps`` steps.

    PASS: with the step correction the measured contraction is within ``tolerance`` of rho / q for every q, without
    it within ``tolerance`` of its closed form (so at least the floor) for every q, and on ridge the surrogate's
    contraction at the largest q is at least ``ridge_ratio`` times lower than the uncorrected one's."""

    n_samples: int = 64
    dim: int = 10
    rows: int = 50
    qs: tuple[int, ...] = (1, 4, 16, 64)
    steps: int = 5
    runs: tuple[int, ...] = (600, 320, 240, 160)
    none_runs: tuple[int, ...] = (600, 320, 120, 60)
    tolerance: float = 0.05
    ridge_n_samples: int = 256
    ridge_dim: int = 24
    ridge_lam: float = 0.01
    ridge_condition: float = 100.0
    ridge_rows: int = 48
    ridge_qs: tuple[int, ...] = (1, 4, 16, 64, 256)
    ridge_steps: int = 3
    ridge_runs: int = 3
    ridge_ratio: float = 5.0

    def __post_init__(self):
        require(self.rows > self.dim + 3, "rows", f"must be > dim + 3 ({self.dim + 3}): a finite contraction",
                self.rows)
        require(self.rows <= self.n_samples, "rows", f"must be <= n_samples ({self.n_samples})", self.rows)
        require(len(self.qs) >= 2 and min(self.qs) >= 1, "qs", "must be >= 2 integers >= 1", list(self.qs))
        for name in ("runs", "none_runs"):
            value = getattr(self, name)
            require(len(value) == len(self.qs) and min(value) >= 2, name, f"must be {len(self.qs)} integers >= 2 "
                    "(one per q)", list(value))
        require(self.steps >= 1 and self.ridge_steps >= 1, "steps", "and ridge_steps must be >= 1", self.steps)
        require(0 < self.tolerance < 1, "tolerance", "must be in (0, 1)", self.tolerance)
        require(self.ridge_lam > 0, "ridge_lam", "must be > 0", self.ridge_lam)
        require(self.ridge_rows <= self.ridge_n_samples, "ridge_rows", f"must be <= ridge_n_samples "
                f"({self.ridge_n_samples})", self.ridge_rows)
        require(len(self.ridge_qs) >= 2 and min(self.ridge_qs) >= 1, "ridge_qs", "must be >= 2 integers >= 1",
                list(self.ridge_qs))
        require(self.ridge_runs >= 1, "ridge_runs", "must be >= 1", self.ridge_runs)
        require(self.ridge_ratio > 1, "ridge_ratio", "must be > 1", self.ridge_ratio)

    def run(self, seed):
        with threadpool_limits(limits=1):  # small matrices: one BLAS thread is faster, and the sums repeat
            return self._run(seed)

    def _run(self, seed):
        rows = []
        plain = Ridge(n_samples=self.n_samples, dim=self.dim, lam=0.0, noise=0.1).build(generator(seed, Stream.DATA))
        m, d = self.rows, self.dim
        for debias, runs in (("step", self.runs), ("none", self.none_runs)):
            for q, count in zip(self.qs, runs):
                ratios = _ratios(plain, SketchedNewton(rows=m, debias=debias), q, self.steps, count, seed)
                rows.append(_row("least squares", debias, q, ratios, ihs_contraction(m, d, q, debias), True))
        spec = Ridge(n_samples=self.ridge_n_samples, dim=self.ridge_dim, lam=self.ridge_lam,
                     condition=self.ridge_condition, noise=0.1)
        ridge = spec.build(generator(seed, Stream.DATA))
        d_lam = effective_dimension(ridge.singular_values, ridge.n_samples, ridge.lam)
        for debias in ("none", "surrogate", "step"):
            for q in self.ridge_qs:
                ratios = _ratios(ridge, SketchedNewton(rows=self.ridge_rows, debias=debias), q, self.ridge_steps,
                                 self.ridge_runs, seed)
                rows.append(_row("ridge", debias, q, ratios, np.nan, debias != "step"))
        table = pd.DataFrame(rows, columns=COLUMNS)
        return self.verdict(table, d_lam)

    def verdict(self, table, d_lam):
        ls = table[table["part"] == "least squares"]
        step, none = ls[ls["debias"] == "step"], ls[ls["debias"] == "none"]
        worst_step = step.loc[step["relative_error"].abs().idxmax()]
        worst_none = none.loc[none["relative_error"].abs().idxmax()]
        ridge = table[table["part"] == "ridge"]
        top = max(self.ridge_qs)
        at = ridge[ridge["q"] == top].set_index("debias")["measured"]
        ratio = float(at["none"] / at["surrogate"])
        passed = bool(abs(worst_step["relative_error"]) <= self.tolerance
                      and abs(worst_none["relative_error"]) <= self.tolerance and ratio >= self.ridge_ratio)
        m, d = self.rows, self.dim
        rho = ihs_contraction(m, d, 1, "step")
        floor = ((d + 1) / (m - d - 1)) ** 2
        criterion = (f"per-step contraction E||x+ - x*||_H^2 / ||x - x*||_H^2 with the step correction within "
                     f"{self.tolerance:.0%} of rho / q (rho {rho:.4f}; d {d}, m {m}) for q = {span(self.qs)} (worst "
                     f"{worst_step['relative_error']:+.1%} at q = {worst_step['q']:g}), without it within "
                     f"{self.tolerance:.0%} of its closed form, floor {floor:.4f} (worst "
                     f"{worst_none['relative_error']:+.1%} at q = {worst_none['q']:g}); on ridge (d_lambda "
                     f"{d_lam:.1f}, m {self.ridge_rows}) the surrogate lambda' contracts at least "
                     f"{self.ridge_ratio:g}x more than no correction at q = {top} (measured {ratio:.1f}x)")
        none_top = none.set_index("q")["measured"]
        step_top = step.set_index("q")["measured"]
        ridge_step = ridge[ridge["debias"] == "step"].set_index("q")["measured"]
        q_ls = max(self.qs)
        notes = (f"least squares at q = {q_ls}: no correction {none_top[q_ls]:.4g} per step (floor {floor:.4g}), step "
                 f"correction {step_top[q_ls]:.4g} ({none_top[q_ls] / step_top[q_ls]:.1f}x lower)",
                 f"ridge, reported: the least-squares step correction (m - d - 1) / m contracts by "
                 f"{ridge_step[top]:.4g} per step at q = {top}: it assumes the full dimension d, not d_lambda")
        return Outcome(table, passed, criterion, notes)

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
        ls = t[t["part"] == "least squares"]
        m, d = self.rows, self.dim
        qs = np.geomspace(min(self.qs), max(self.qs), 50)
        a.plot(qs, [ihs_contraction(m, d, q, "step") for q in qs], "-", color="tab:blue", lw=1,
               label="step: rho / q")
        a.plot(qs, [ihs_contraction(m, d, q, "none") for q in qs], "-", color="tab:red", lw=1,
               label="none: (1 - a)^2 + (c - a^2) / q")
        a.axhline(((d + 1) / (m - d - 1)) ** 2, color="tab:red", ls=":", lw=1, label="floor ((d + 1) / (m - d - 1))^2")
        for debias, marker, color in (("step", "o", "tab:blue"), ("none", "s", "tab:red")):
            s = ls[ls["debias"] == debias]
            a.errorbar(s["q"], s["measured"], yerr=2 * s["standard_error"], fmt=marker, color=color, ms=5,
                       label=f"{debias}, measured (±2 s.e.)")
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("workers per round q")
        a.set_ylabel("per-step ratio ||x_t+1 - x*||_H^2 / ||x_t - x*||_H^2")
        a.set_title(f"least squares, Gaussian sketches (d {d}, m {m})")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7, loc="lower left")
        ridge = t[t["part"] == "ridge"]
        for debias, marker, color in (("none", "s", "tab:red"), ("surrogate", "o", "tab:green"),
                                      ("step", "^", "tab:gray")):
            s = ridge[ridge["debias"] == debias]
            b.errorbar(s["q"], s["measured"], yerr=2 * s["standard_error"], fmt=marker + "-", color=color, ms=5, lw=1,
                       label=debias + (" (reported)" if debias == "step" else ""))
        b.set_xscale("log", base=2)
        b.set_yscale("log")
        b.set_xlabel("workers per round q")
        b.set_ylabel("per-step ratio ||x_t+1 - x*||_H^2 / ||x_t - x*||_H^2")
        b.set_title(f"ridge (d {self.ridge_dim}, lam {self.ridge_lam:g}, m {self.ridge_rows}): measured")
        b.grid(True, which="both", alpha=0.3)
        b.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        return fig


def _ratios(problem, algorithm, q: int, steps: int, runs: int, seed: int) -> np.ndarray:
    """The ratios of successive suboptimalities of ``runs`` replays (algorithm seeds seed + 1, ...) of ``steps``
    sync rounds of q workers from x_0 = 0."""
    trace = simulate(Cluster(workers=q, compute=Constant(value=1.0)), Sync(), steps, seed)
    x0 = np.zeros(problem.dim)
    out = []
    for r in range(runs):
        sub = replay(trace, algorithm, problem, x0, seed=seed + 1 + r).metrics["suboptimality"].to_numpy()
        out.append(sub[1:] / sub[:-1])
    return np.concatenate(out)


def _row(part, debias, q, ratios, predicted, judged):
    mean = float(ratios.mean())
    se = float(ratios.std(ddof=1) / np.sqrt(ratios.size))
    rel = mean / predicted - 1 if np.isfinite(predicted) else np.nan
    return (part, debias, q, ratios.size, mean, se, float(predicted), rel, judged)
