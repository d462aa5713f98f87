"""``compression-variance``: the compressors of ``asyncsim.compression`` against their closed forms: rand_k and
QSGD are unbiased with the variances their papers state, top_k and the scaled sign contract."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..compression import QSGD, Compressor, RandK, Sign, TopK
from ..params import kind, require, to_plain
from ..rng import Stream, generator
from .base import Outcome, Reproduction

VECTORS = ("gaussian", "sparse", "heavy_tailed")


def fixed_vector(name: str, d: int, seed: int, sparsity: float = 0.05, df: float = 1.5) -> np.ndarray:
    """A fixed vector of R^d from the DATA stream (keyed by its name and d): ``gaussian`` N(0, I); ``sparse`` a
    fraction ``sparsity`` of N(0, 1) entries (at least one), the rest 0; ``heavy_tailed`` Student t with ``df``
    degrees of freedom (infinite variance for df <= 2: a few entries dominate the norm)."""
    rng = generator(seed, Stream.DATA, VECTORS.index(name), d)
    if name == "gaussian":
        return rng.standard_normal(d)
    if name == "sparse":
        x = np.zeros(d)
        support = rng.choice(d, size=max(1, round(sparsity * d)), replace=False)
        x[support] = rng.standard_normal(support.size)
        return x
    return rng.standard_t(df, d)


def parameters(compressor: Compressor) -> str:
    """The operator's parameters on one line (``k 10``), without ``error_feedback`` (a property of a run)."""
    return ", ".join(f"{k} {v}" for k, v in to_plain(compressor).items() if k not in ("kind", "error_feedback"))


def expected_error(compressor: Compressor, x: np.ndarray) -> float:
    """E||C(x) - x||^2 for this x in closed form, computed apart from ``compress``:

    - rand_k: each coordinate is (d/k) x_i with probability k/d, else 0: sum_i (d/k - 1) x_i^2;
    - qsgd: coordinate i is (||x|| / s) times l_i or l_i + 1 (r_i = s |x_i| / ||x||, l_i = floor r_i, p_i = r_i - l_i),
      a variance of (||x|| / s)^2 p_i (1 - p_i);
    - top_k: the sum of the d - k smallest x_i^2;
    - sign: ||x||^2 - ||x||_1^2 / d."""
    d = x.shape[0]
    sq = x * x
    if isinstance(compressor, RandK):
        return float((d / compressor.k - 1.0) * sq.sum())
    if isinstance(compressor, QSGD):
        s, norm = compressor.levels, float(np.linalg.norm(x))
        if norm == 0.0:
            return 0.0
        r = np.minimum(s * np.abs(x) / norm, s)
        p = r - np.floor(r)
        return float((norm / s) ** 2 * (p * (1.0 - p)).sum())
    if isinstance(compressor, TopK):
        return float(np.sort(sq)[:max(0, d - compressor.k)].sum())
    if isinstance(compressor, Sign):
        return float(sq.sum() - np.abs(x).sum() ** 2 / d)
    raise ValueError(f"no closed form for compressor {kind(compressor)}")


@Reproduction.registry.register("compression_variance")
@dataclass(frozen=True, kw_only=True)
class CompressionVariance(Reproduction):
    """For each fixed vector x (``vectors``: a dense Gaussian, a sparse one, a heavy-tailed one) of each dimension
    d in ``dims`` and each compressor C in ``compressors``: draw ``samples`` independent C(x) (one keyed generator
    per case) and measure the mean error vector and E||C(x) - x||^2.  Predicted:

    - unbiasedness of rand_k and QSGD: ||mean C(x) - x|| against its root mean square if C were unbiased,
      sqrt(tr Cov C(x) / samples) (the standard error of the norm; a z-score for one dominant coordinate);
    - rand_k: E||C(x) - x||^2 = (d/k - 1) ||x||^2 (``RandK.variance_factor``), as a z-score against the standard
      error of the measured mean;
    - QSGD (Alistarh et al. 2017, Lemma 3.1): the exact variance sum_i (||x||/s)^2 p_i (1 - p_i) as a z-score, and
      that variance under min(d/s^2, sqrt(d)/s) ||x||^2 (``QSGD.variance_factor``);
    - top_k and the scaled sign, deterministic: ||C(x) - x||^2 equal to its closed form (the d - k smallest squares;
      ||x||^2 - ||x||_1^2 / d) to ``rtol``, and at most (1 - delta) ||x||^2 with delta = k/d and 1/d
      (``contraction``).

    PASS when every z-score is at most ``z_max`` in absolute value and every bound and closed form holds."""

    compressors: tuple[Compressor, ...]
    dims: tuple[int, ...] = (100, 1000)
    vectors: tuple[str, ...] = VECTORS
    samples: int = 4000
    sparsity: float = 0.05
    df: float = 1.5
    z_max: float = 4.0
    rtol: float = 1e-9

    def __post_init__(self):
        require(len(self.compressors) >= 1, "compressors", "must hold at least one compressor", self.compressors)
        require(len(self.dims) >= 1 and min(self.dims) >= 2, "dims", "must be integers >= 2", self.dims)
        bad = sorted(set(self.vectors) - set(VECTORS))
        require(not bad and len(self.vectors) >= 1, "vectors", f"must be a list of {', '.join(VECTORS)}",
                list(self.vectors))
        require(self.samples >= 100, "samples", "must be >= 100", self.samples)
        require(0 < self.sparsity <= 1, "sparsity", "must be in (0, 1]", self.sparsity)
        require(self.df > 0, "df", "must be > 0", self.df)
        require(self.z_max > 0 and self.rtol > 0, "z_max", "and rtol must be > 0", self.z_max)
        for i, c in enumerate(self.compressors):
            c.check(min(self.dims), f"compressors[{i}]", "the smallest of dims")

    def run(self, seed):
        rows = []
        cases = itertools.product(enumerate(self.compressors), self.vectors, self.dims)
        for case, ((i, c), vector, d) in enumerate(cases):
            x = fixed_vector(vector, d, seed, self.sparsity, self.df)
            norm2 = float(x @ x)
            exact = expected_error(c, x)
            if c.random:
                rows.append(self._sampled(c, x, generator(seed, Stream.ALGORITHM, i, case), norm2, exact) +
                            (vector, d))
            else:
                err = float(np.sum((c.compress(x, None) - x) ** 2))
                rows.append((kind(c), parameters(c), 1, c.bytes(d) / (8 * d), exact / norm2, err / norm2, 0.0,
                             np.nan, np.nan, 1.0 - c.contraction(d), vector, d))
        table = pd.DataFrame(rows, columns=["compressor", "parameters", "samples", "bytes_ratio", "predicted",
                                            "measured", "standard_error", "z", "mean_z", "bound", "vector", "d"])
        table = table[["compressor", "parameters", "vector", "d", "samples", "bytes_ratio", "predicted", "measured",
                       "standard_error", "z", "mean_z", "bound"]]
        table["within_bound"] = table["predicted"] <= table["bound"] * (1 + self.rtol)
        return self._verdict(table)

    def _sampled(self, c: Compressor, x: np.ndarray, rng, norm2: float, exact: float) -> tuple:
        """``samples`` draws of C(x): the relative mean squared error, its standard error and z-score against the
        prediction, and the unbiasedness statistic ||mean C(x) - x|| / sqrt(tr Cov / samples)."""
        d, n = x.shape[0], self.samples
        total, squares, errors = np.zeros(d), np.zeros(d), np.empty(n)
        for j in range(n):
            e = c.compress(x, rng) - x
            total += e
            squares += e * e
            errors[j] = e @ e
        mean = total / n
        variance = np.maximum(squares / n - mean * mean, 0.0) * n / (n - 1)
        rms = np.sqrt(variance.sum() / n)
        mean_z = float(np.linalg.norm(mean) / max(rms, self.rtol * np.sqrt(norm2)))
        predicted = c.variance_factor(d) * norm2 if isinstance(c, RandK) else exact
        se = float(errors.std(ddof=1) / np.sqrt(n))
        z = (errors.mean() - predicted) / max(se, self.rtol * predicted)  # rand_k with k = d/2: ||C(x) - x|| is fixed
        return (kind(c), parameters(c), n, c.bytes(d) / (8 * d), predicted / norm2, errors.mean() / norm2,
                se / norm2, float(z), mean_z, c.variance_factor(d))

    def _verdict(self, table: pd.DataFrame) -> Outcome:
        def where(row) -> str:
            return f"{row['compressor']} ({row['parameters']}), {row['vector']}, d = {row['d']}"

        sampled = table[table["samples"] > 1]
        fixed = table[table["samples"] == 1]
        parts, passed = [], bool(table["within_bound"].all())
        if len(sampled):
            zi = sampled["z"].abs().idxmax()
            mi = sampled["mean_z"].idxmax()
            passed &= bool(sampled["z"].abs().max() <= self.z_max and sampled["mean_z"].max() <= self.z_max)
            parts.append(f"E[C(x)] = x for the unbiased ones (||mean - x|| <= {self.z_max:g} standard errors; worst "
                         f"{table.at[mi, 'mean_z']:.2f}: {where(table.loc[mi])})")
            parts.append(f"E||C(x) - x||^2 = (d/k - 1)||x||^2 for rand_k and QSGD's exact variance within "
                         f"{self.z_max:g} standard errors (worst |z| {abs(table.at[zi, 'z']):.2f}: "
                         f"{where(table.loc[zi])})")
        qsgd = table[table["compressor"] == kind(QSGD(levels=1))]
        if len(qsgd):
            ratio = qsgd["predicted"] / qsgd["bound"]
            qi = ratio.idxmax()
            parts.append(f"QSGD's variance under min(d/s^2, sqrt(d)/s)||x||^2 (largest ratio "
                         f"{ratio[qi]:.3f}: {where(table.loc[qi])})")
        if len(fixed):
            gap = ((fixed["measured"] - fixed["predicted"]).abs() / fixed["predicted"].abs().clip(lower=1e-300))
            passed &= bool(gap.max() <= self.rtol)
            parts.append(f"top_k and sign errors equal their closed forms (relative gap {gap.max():.1e} <= "
                         f"{self.rtol:g}) and contract by k/d and 1/d")
        bad = table[~table["within_bound"]]
        if len(bad):
            parts.append(f"bound broken at {where(bad.iloc[0])}")
        return Outcome(table, passed, "; ".join(parts))

    def plot(self, outcome):
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter

        table = outcome.table
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
        values = table[["predicted", "measured"]].to_numpy()
        lo = float(np.nanmin(values[values > 0])) / 2
        hi = float(np.nanmax(table[["predicted", "measured", "bound"]].to_numpy())) * 2
        a.plot([lo, hi], [lo, hi], "k-", lw=1, label="measured = formula")
        markers = {"gaussian": "o", "sparse": "s", "heavy_tailed": "^"}
        colors = {}
        for (name, params), group in table.groupby(["compressor", "parameters"], sort=False):
            label = f"{name} ({params})" if params else name
            for vector, g in group.groupby("vector", sort=False):
                line = a.errorbar(g["predicted"], g["measured"], yerr=3 * g["standard_error"], fmt=markers[vector],
                                  ms=5, alpha=0.8, color=colors.get(label), capsize=2,
                                  label=label if label not in colors else None)
                colors.setdefault(label, line[0].get_color())
        for vector, m in markers.items():
            a.plot([], [], m, color="gray", label=vector.replace("_", "-"))
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("formula: E||C(x) - x||^2 / ||x||^2")
        a.set_ylabel("measured mean of ||C(x) - x||^2 / ||x||^2 (bars: 3 s.e.)")
        a.set_title("compression error, measured vs formula")
        a.legend(fontsize=6.5, ncol=2)
        a.grid(True, which="both", alpha=0.3)
        for (name, params), group in table.groupby(["compressor", "parameters"], sort=False):
            label = f"{name} ({params})" if params else name
            dense = group[group["vector"] == "gaussian"]
            color = colors[label]
            b.plot(dense["bytes_ratio"], dense["measured"], "o", color=color, label=label)
            b.plot(dense["bytes_ratio"], dense["bound"], "_", ms=14, mew=2, color=color)
            for _, r in dense.iterrows():
                b.plot([r["bytes_ratio"]] * 2, [r["measured"], r["bound"]], ":", color=color, lw=1)
                b.annotate(f"d={r['d']}", (r["bytes_ratio"], r["measured"]), fontsize=6, xytext=(3, -8),
                           textcoords="offset points")
        b.set_xscale("log")
        b.set_yscale("log")
        b.xaxis.set_minor_formatter(NullFormatter())
        ticks = [t for t in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
                 if table["bytes_ratio"].min() / 2 <= t <= table["bytes_ratio"].max() * 2]
        b.set_xticks(ticks, [f"{t:g}" for t in ticks])
        b.set_xlabel("message bytes / uncompressed bytes (8 d)")
        b.set_ylabel("||C(x) - x||^2 / ||x||^2 (Gaussian x)")
        b.set_title("error against size; dashes: the bound omega or 1 - delta")
        b.legend(fontsize=6.5)
        b.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        return fig
