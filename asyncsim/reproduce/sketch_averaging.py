"""``sketch-averaging``: the mean of q Gaussian sketch-and-solve solutions has error d / (q (m - d - 1)) ||r||^2,
for fixed q and for the random q a deadline leaves; uniform row sampling on coherent rows stalls where Gaussian
sketches keep improving (Bartan and Pilanci 2020; Derezinski, Bartan, Pilanci and Mahoney 2020)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..algorithms.sketching import SketchAverage
from ..theory import haar_sketch_error, sketch_and_solve_error
from ..params import require
from ..problems.ridge import Ridge
from ..replay import algorithm_draws, replay
from ..rng import Stream, generator
from ..timing.cluster import Cluster
from ..timing.laws import DelayLaw, Exponential
from ..timing.protocols import simulate
from ..timing.rounds import Deadline
from .base import Outcome, Reproduction, span

COLUMNS = ["part", "sketch", "q", "estimates", "measured", "standard_error", "predicted", "z", "judged"]


@Reproduction.registry.register("sketch_averaging")
@dataclass(frozen=True, kw_only=True)
class SketchAveraging(Reproduction):
    """Averaged sketch-and-solve (algorithm ``sketch_average``) on least squares (``ridge`` with lam = 0, A = U S V^T
    with ``n_samples`` x ``dim`` entries and condition number ``condition``), sketches of ``rows`` = m rows.  The
    error of an estimate x_hat is e = ||A (x_hat - x*)||^2 / ||A x* - y||^2, x* the least-squares solution.  Every
    solution is ``SketchAverage.local`` on the ALGORITHM-stream draw of a (worker, step), as in a run.

    1. Fixed q in ``qs``: a pool of ``repeats`` x max(qs) Gaussian solutions, cut into groups of q; the mean e over
       the groups against d / (q (m - d - 1)) (``sketch_and_solve_error``, exact).
    2. A deadline: ``rounds`` rounds of ``Deadline(deadline)`` on ``workers`` workers with ``compute`` times,
       simulated by the timing layer; round k keeps q_k solutions.  The mean over rounds of the error of each
       round's average against E[1/q] d / (m - d - 1), E[1/q] the mean of 1/q_k over the simulated rounds (the
       timing never sees the numbers, so q and the sketches are independent).
    3. The anytime estimator: ``sketch_average`` replayed on the first ``anytime_rounds`` rounds of that trace with
       ``anytime_seeds`` algorithm seeds; its final estimate (the mean of all Q solutions that arrived) against
       d / (Q (m - d - 1)).
    4. Reported, not judged: the Hadamard sketch (SRHT) against the Haar sketch's exact error
       d (N - m) / ((N - d) (m - d - 1)) / q (``haar_sketch_error``, N the padded rows), which the SRHT approaches.
    5. Coherent rows (``coherence``: ``dim`` rows hold that fraction of every column): Gaussian (judged against the
       same formula, which holds for any A), uniform, leverage-score and hybrid sampling for q in
       ``coherent_qs`` (``coherent_repeats`` estimates at the largest q).  Uniform sampling rarely sees the
       coherent rows, so its average converges to a biased answer.

    PASS: every judged Gaussian measurement within ``z_max`` standard errors of its prediction, and uniform
    sampling's error at the largest coherent q at least ``plateau_ratio`` times Gaussian's."""

    n_samples: int = 512
    dim: int = 10
    rows: int = 60
    condition: float = 10.0
    noise: float = 0.1
    qs: tuple[int, ...] = (1, 2, 4, 8, 16)
    repeats: int = 150
    hadamard_repeats: int = 100
    workers: int = 8
    compute: DelayLaw = field(default_factory=lambda: Exponential(mean=1.0))
    deadline: float = 1.0
    rounds: int = 300
    anytime_rounds: int = 8
    anytime_seeds: int = 60
    coherence: float = 0.9
    coherent_qs: tuple[int, ...] = (1, 4, 16, 64)
    coherent_repeats: int = 30
    z_max: float = 3.0
    plateau_ratio: float = 5.0

    def __post_init__(self):
        require(self.rows > self.dim + 1, "rows", f"must be > dim + 1 ({self.dim + 1})", self.rows)
        require(self.rows <= self.n_samples, "rows", f"must be <= n_samples ({self.n_samples})", self.rows)
        for name in ("qs", "coherent_qs"):
            qs = getattr(self, name)
            require(len(qs) >= 2 and min(qs) >= 1 and all(max(qs) % q == 0 for q in qs), name,
                    "must be >= 2 integers >= 1 that divide the largest", list(qs))
        for name in ("repeats", "hadamard_repeats", "rounds", "anytime_rounds", "anytime_seeds", "coherent_repeats"):
            require(getattr(self, name) >= 2, name, "must be >= 2", getattr(self, name))
        require(self.workers >= 2, "workers", "must be >= 2", self.workers)
        require(self.deadline > 0, "deadline", "must be > 0", self.deadline)
        require(0 < self.coherence < 1, "coherence", "must be in (0, 1)", self.coherence)
        require(self.z_max > 0 and self.plateau_ratio > 1, "z_max", "must be > 0 (and plateau_ratio > 1)",
                self.z_max)

    def problem(self, seed: int, coherence: float = 0.0):
        spec = Ridge(n_samples=self.n_samples, dim=self.dim, lam=0.0, condition=self.condition, coherence=coherence,
                     noise=self.noise)
        return spec.build(generator(seed, Stream.DATA))

    def run(self, seed):
        with threadpool_limits(limits=1):  # small matrices: one BLAS thread is faster, and the sums repeat
            return self._run(seed)

    def _run(self, seed):
        rows = []
        plain, coherent = self.problem(seed), self.problem(seed, self.coherence)
        m, d = self.rows, self.dim
        gaussian = SketchAverage(rows=m)
        # 1 and 4: fixed q, Gaussian (judged) and Hadamard (reported)
        for part, sketch, repeats, worker in (("fixed q", "gaussian", self.repeats, 0),
                                              ("fixed q", "hadamard", self.hadamard_repeats, 1)):
            algorithm = SketchAverage(rows=m, sketch=sketch)
            solutions = _pool(algorithm, plain, seed, worker, repeats * max(self.qs))
            for q in self.qs:
                if sketch == "gaussian":
                    predicted, judged = sketch_and_solve_error(m, d, q), True
                else:
                    N = 1 << (self.n_samples - 1).bit_length()
                    predicted, judged = haar_sketch_error(N, d, m) / q, False
                rows.append(_row(part, sketch, q, _errors(plain, _group(solutions, q)), predicted, judged))
        # 2: one deadline's rounds, each averaging the solutions that made it
        cluster = Cluster(workers=self.workers, compute=self.compute)
        trace = simulate(cluster, Deadline(deadline=self.deadline), self.rounds, seed).used()
        draws = algorithm_draws(gaussian, plain, seed)
        x = np.zeros(d)
        per_round = []
        q = np.bincount(trace.update, minlength=self.rounds)
        for k in range(self.rounds):
            members = np.flatnonzero(trace.update == k)
            solutions = [gaussian.local(x, None, plain, draws(int(trace.worker[j]), int(trace.step[j])))[0]
                         for j in members]
            per_round.append(np.mean(solutions, axis=0))
        errors = _errors(plain, np.array(per_round))
        inverse_q = float(np.mean(1.0 / q))
        rows.append(_row(f"deadline {self.deadline:g} s", "gaussian", 1 / inverse_q, errors,
                         inverse_q * sketch_and_solve_error(m, d), True))
        # 3: the anytime estimator, replayed
        prefix = simulate(cluster, Deadline(deadline=self.deadline), self.anytime_rounds, seed)
        Q = len(prefix.used())
        finals = [replay(prefix, gaussian, plain, x, seed=seed + 1 + s, record_every=self.anytime_rounds).x
                  for s in range(self.anytime_seeds)]
        rows.append(_row(f"anytime, {self.anytime_rounds} deadline rounds", "gaussian", Q,
                         _errors(plain, np.array(finals)), sketch_and_solve_error(m, d, Q), True))
        # 5: coherent rows
        for worker, sketch in enumerate(("gaussian", "uniform", "leverage", "hybrid"), start=2):
            algorithm = SketchAverage(rows=m, sketch=sketch)
            solutions = _pool(algorithm, coherent, seed, worker, self.coherent_repeats * max(self.coherent_qs))
            if sketch == "leverage":
                single = _errors(coherent, solutions)
            for q in self.coherent_qs:
                judged = sketch == "gaussian"
                rows.append(_row(f"coherence {self.coherence:g}", sketch, q, _errors(coherent, _group(solutions, q)),
                                 sketch_and_solve_error(m, d, q) if judged else np.nan, judged))
        table = pd.DataFrame(rows, columns=COLUMNS)
        return self.verdict(table, inverse_q, Q, single)

    def verdict(self, table, inverse_q, Q, leverage_errors):
        judged = table[table["judged"]]
        worst = judged.loc[judged["z"].abs().idxmax()]
        co = table[table["part"].str.startswith("coherence")]
        top = max(self.coherent_qs)
        at = co[co["q"] == top].set_index("sketch")["measured"]
        ratio = float(at["uniform"] / at["gaussian"])
        fall = co[(co["sketch"] == "uniform")].set_index("q")["measured"]
        quarter = top // 4 if top // 4 in fall.index else min(self.coherent_qs)
        passed = bool(abs(worst["z"]) <= self.z_max and ratio >= self.plateau_ratio)
        m, d = self.rows, self.dim
        criterion = (f"Gaussian sketch-and-solve error within {self.z_max:g} standard errors of d / (q (m - d - 1)) "
                     f"||r||^2 (d {d}, m {m}) for q = {span(self.qs)}, under a deadline (E[1/q] = {inverse_q:.3f}) "
                     f"and for the anytime mean of Q = {Q} solutions (worst |z| {abs(worst['z']):.2f}: "
                     f"{worst['part']}, q = {worst['q']:.3g}); uniform sampling on coherent rows at q = {top} at "
                     f"least {self.plateau_ratio:g}x Gaussian's (measured {ratio:.1f}x)")
        hadamard = table[table["sketch"] == "hadamard"]
        rel = (hadamard["measured"] / hadamard["predicted"] - 1).abs().max()
        notes = (f"hadamard (SRHT) against the Haar sketch's exact error d (N - m) / ((N - d) (m - d - 1)) / q: within "
                 f"{rel:.1%} for every q (reported, not judged: the SRHT is not exactly a Haar sketch)",
                 f"uniform sampling on coherent rows: error {fall[quarter]:.3g} at q = {quarter}, {fall[top]:.3g} at "
                 f"q = {top} ({fall[quarter] / fall[top]:.2f}x lower for {top // quarter}x the solutions, where 1/q "
                 f"would give {top // quarter}x)",
                 f"leverage-score sampling on coherent rows, one solution: mean error {leverage_errors.mean():.3g}, "
                 f"median {np.median(leverage_errors):.3g}; heavy-tailed because a sketch misses one of the {d} "
                 f"coherent rows (p_i = {self.coherence / d:.3g} each) with probability about "
                 f"{1 - (1 - (1 - self.coherence / d) ** m) ** d:.1%}, which leaves its Gram nearly singular")
        return Outcome(table, passed, criterion, notes)

    def plot(self, outcome):
        import matplotlib.pyplot as plt

        t = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
        fixed = t[t["part"] == "fixed q"]
        m, d = self.rows, self.dim
        left = t[~t["part"].str.startswith("coherence")]
        line = np.geomspace(1, max(left["q"].max(), 2), 50)
        a.plot(line, [sketch_and_solve_error(m, d, q) for q in line], "-", color="tab:blue", lw=1,
               label="d / (q (m - d - 1))")
        g = fixed[fixed["sketch"] == "gaussian"]
        a.errorbar(g["q"], g["measured"], yerr=2 * g["standard_error"], fmt="o", color="tab:blue", ms=5,
                   label="Gaussian, fixed q (±2 s.e.)")
        h = fixed[fixed["sketch"] == "hadamard"]
        a.plot(h["q"], h["predicted"], "--", color="tab:orange", lw=1, label="Haar sketch: d (N - m) / ((N - d) (m - d - 1) q)")
        a.plot(h["q"] * 1.06, h["measured"], "s", color="tab:orange", ms=5, label="Hadamard (SRHT), fixed q")
        for part, marker, color in ((t["part"].str.startswith("deadline"), "D", "tab:green"),
                                    (t["part"].str.startswith("anytime"), "^", "tab:red")):
            row = t[part].iloc[0]
            a.errorbar([row["q"]], [row["measured"]], yerr=[2 * row["standard_error"]], fmt=marker, color=color,
                       ms=7, label=f"{row['part']} (q: {'1 / E[1/q]' if marker == 'D' else 'all solutions'})")
            a.plot([row["q"]], [row["predicted"]], "x", color="k", ms=8)
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("solutions averaged q")
        a.set_ylabel("relative error ||A (x_hat - x*)||^2 / ||A x* - y||^2")
        a.set_title(f"incoherent rows (n {self.n_samples}, d {d}, m {m}); x: prediction")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7, loc="lower left")
        co = t[t["part"].str.startswith("coherence")]
        cq = np.array(sorted(set(co["q"])), dtype=float)
        b.plot(cq, [sketch_and_solve_error(m, d, q) for q in cq], "-", color="tab:blue", lw=1,
               label="Gaussian: d / (q (m - d - 1))")
        g = co[co["sketch"] == "gaussian"]
        b.errorbar(g["q"], g["measured"], yerr=2 * g["standard_error"], fmt="o", ms=5, color="tab:blue",
                   label="gaussian (±2 s.e.)")
        for sketch, marker, color in (("uniform", "s", "tab:orange"), ("leverage", "^", "tab:green"),
                                      ("hybrid", "v", "tab:purple")):
            s = co[co["sketch"] == sketch]  # means only: their errors are heavy-tailed (reported, not judged)
            b.plot(s["q"], s["measured"], marker + "--", ms=5, lw=1, color=color, label=f"{sketch} (mean)")
        b.set_xscale("log", base=2)
        b.set_yscale("log")
        b.set_xlabel("solutions averaged q")
        b.set_ylabel("relative error ||A (x_hat - x*)||^2 / ||A x* - y||^2")
        b.set_title(f"coherent rows (coherence {self.coherence:g}): sampling sketches")
        b.grid(True, which="both", alpha=0.3)
        b.legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        return fig


def _pool(algorithm, problem, seed: int, worker: int, count: int) -> np.ndarray:
    """``count`` solutions: steps 0 .. count - 1 of ``worker`` in the ALGORITHM stream of ``seed``."""
    draws = algorithm_draws(algorithm, problem, seed)
    x = np.zeros(problem.dim)
    return np.array([algorithm.local(x, None, problem, draws(worker, s))[0] for s in range(count)])


def _errors(problem, estimates: np.ndarray) -> np.ndarray:
    """||A (x_hat - x*)||^2 / ||A x* - y||^2 for each row of ``estimates``."""
    A, y = problem.A, problem.y
    x_star = np.linalg.lstsq(A, y, rcond=None)[0]
    r2 = float(np.sum((A @ x_star - y) ** 2))
    return np.sum(((estimates - x_star) @ A.T) ** 2, axis=1) / r2


def _group(solutions: np.ndarray, q: int) -> np.ndarray:
    """The means of consecutive groups of q solutions (disjoint, so the estimates are independent)."""
    return solutions.reshape(-1, q, solutions.shape[1]).mean(axis=1)


def _row(part, sketch, q, errors, predicted, judged):
    errors = np.asarray(errors, dtype=float)
    se = float(errors.std(ddof=1) / np.sqrt(errors.size))
    z = (errors.mean() - predicted) / se if judged else np.nan
    return (part, sketch, float(q), errors.size, float(errors.mean()), se, float(predicted), float(z), judged)
