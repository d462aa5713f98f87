"""Delay laws: frozen, validated, keyword-only distributions of durations in seconds.

Each law has ``sample(rng, size) -> ndarray`` (float64, ``rng`` a ``numpy.random.Generator``), ``mean`` (E[X],
possibly inf), the vectorized distribution function ``cdf(x) = P(X <= x)`` and survival function
``sf(x) = P(X > x)`` (float array in, float array of the same shape out; scalars give 0-d arrays), and
``atoms()``: the points where the cdf jumps (empty for continuous laws), so that integrals of the cdf can be split
there and computed exactly (:mod:`asyncsim.theory`).  Bad parameters raise at construction with a message naming
the parameter (``mean must be > 0, got -1.0``).  Add a law with ``@DelayLaw.registry.register("name")`` on a
frozen dataclass subclass that implements ``sample`` and ``_cdf`` (and ``_sf``, ``atoms`` where useful).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy.special import gammainc, gammaincc, ndtr

from ..params import Registry, require


class DelayLaw:
    """Base class of delay laws; ``DelayLaw.registry`` maps YAML ``kind`` names to laws."""

    registry = Registry("delay law")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (float64)."""
        raise NotImplementedError

    def cdf(self, x) -> np.ndarray:
        """F(x) = P(X <= x), elementwise (float64 array of the shape of ``x``)."""
        return np.asarray(self._cdf(np.asarray(x, dtype=float)), dtype=float)

    def sf(self, x) -> np.ndarray:
        """1 - F(x) = P(X > x), elementwise; accurate in the upper tail where 1 - cdf(x) would round to 0."""
        return np.asarray(self._sf(np.asarray(x, dtype=float)), dtype=float)

    def atoms(self) -> tuple[float, ...]:
        """The points where the cdf jumps (P(X = a) > 0), sorted; empty for continuous laws."""
        return ()

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} has no cdf")

    def _sf(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - self._cdf(x)

    # Every law also has ``mean`` (E[X], possibly inf): a field for laws parametrized by it, a property otherwise.


register = DelayLaw.registry.register


def _step(x: np.ndarray, at: float) -> np.ndarray:
    """1 where x >= at, 0 where x < at, nan where x is nan."""
    return np.where(x >= at, 1.0, np.where(x < at, 0.0, np.nan))


@register("constant")
@dataclass(frozen=True, kw_only=True)
class Constant(DelayLaw):
    """X = value (deterministic); F(x) = 1{x >= value}."""

    value: float

    def __post_init__(self):
        require(self.value >= 0, "value", "must be >= 0", self.value)

    def sample(self, rng, size):
        return np.full(size, self.value)

    @property
    def mean(self):
        return self.value

    def _cdf(self, x):
        return _step(x, self.value)

    def atoms(self):
        return (float(self.value),)


@register("exponential")
@dataclass(frozen=True, kw_only=True)
class Exponential(DelayLaw):
    """X ~ Exp with the given mean (rate 1/mean); F(x) = 1 - exp(-x / mean) for x >= 0."""

    mean: float

    def __post_init__(self):
        require(self.mean > 0, "mean", "must be > 0", self.mean)

    def sample(self, rng, size):
        return rng.exponential(self.mean, size)

    def _cdf(self, x):
        return -np.expm1(-np.maximum(x, 0.0) / self.mean)

    def _sf(self, x):
        return np.exp(-np.maximum(x, 0.0) / self.mean)


@register("shifted_exponential")
@dataclass(frozen=True, kw_only=True)
class ShiftedExponential(DelayLaw):
    """X = shift + Exp(scale): the straggler model of Lee et al. (2018), "Speeding up distributed machine learning
    using codes".  ``scale`` is the mean of the exponential part; E[X] = shift + scale;
    F(x) = 1 - exp(-(x - shift) / scale) for x >= shift."""

    shift: float
    scale: float

    def __post_init__(self):
        require(self.shift >= 0, "shift", "must be >= 0", self.shift)
        require(self.scale > 0, "scale", "must be > 0", self.scale)

    def sample(self, rng, size):
        return self.shift + rng.exponential(self.scale, size)

    @property
    def mean(self):
        return self.shift + self.scale

    def _cdf(self, x):
        return -np.expm1(-np.maximum(x - self.shift, 0.0) / self.scale)

    def _sf(self, x):
        return np.exp(-np.maximum(x - self.shift, 0.0) / self.scale)


@register("lognormal")
@dataclass(frozen=True, kw_only=True)
class LogNormal(DelayLaw):
    """X = exp(mu + sigma Z), Z ~ N(0, 1); E[X] = exp(mu + sigma^2 / 2); F(x) = Phi((log x - mu) / sigma)."""

    mu: float
    sigma: float

    def __post_init__(self):
        require(self.sigma > 0, "sigma", "must be > 0", self.sigma)

    def sample(self, rng, size):
        return rng.lognormal(self.mu, self.sigma, size)

    @property
    def mean(self):
        try:
            return math.exp(self.mu + self.sigma * self.sigma / 2)
        except OverflowError:
            return math.inf

    def _z(self, x):
        return (np.log(np.where(x <= 0, 1.0, x)) - self.mu) / self.sigma

    def _cdf(self, x):
        return np.where(x <= 0, 0.0, ndtr(self._z(x)))

    def _sf(self, x):
        return np.where(x <= 0, 1.0, ndtr(-self._z(x)))


@register("gamma")
@dataclass(frozen=True, kw_only=True)
class Gamma(DelayLaw):
    """X ~ Gamma(shape k, scale theta), density x^(k-1) exp(-x/theta) / (Gamma(k) theta^k); E[X] = k theta;
    F(x) = P(k, x / theta), the regularized lower incomplete gamma function."""

    shape: float
    scale: float

    def __post_init__(self):
        require(self.shape > 0, "shape", "must be > 0", self.shape)
        require(self.scale > 0, "scale", "must be > 0", self.scale)

    def sample(self, rng, size):
        return rng.gamma(self.shape, self.scale, size)

    @property
    def mean(self):
        return self.shape * self.scale

    def _cdf(self, x):
        return gammainc(self.shape, np.maximum(x, 0.0) / self.scale)

    def _sf(self, x):
        return gammaincc(self.shape, np.maximum(x, 0.0) / self.scale)


@register("uniform")
@dataclass(frozen=True, kw_only=True)
class Uniform(DelayLaw):
    """X ~ U[low, high); E[X] = (low + high) / 2; F(x) = (x - low) / (high - low) clipped to [0, 1]."""

    low: float
    high: float

    def __post_init__(self):
        require(self.low >= 0, "low", "must be >= 0", self.low)
        require(self.high > self.low, "high", f"must be > low ({self.low!r})", self.high)

    def sample(self, rng, size):
        return rng.uniform(self.low, self.high, size)

    @property
    def mean(self):
        return (self.low + self.high) / 2

    def _cdf(self, x):
        return np.clip((x - self.low) / (self.high - self.low), 0.0, 1.0)

    def _sf(self, x):
        return np.clip((self.high - x) / (self.high - self.low), 0.0, 1.0)


@register("pareto")
@dataclass(frozen=True, kw_only=True)
class Pareto(DelayLaw):
    """Pareto (type I) with shape alpha and scale x_m: P(X > x) = (x_m / x)^alpha for x >= x_m.
    E[X] = alpha x_m / (alpha - 1) for alpha > 1, infinite otherwise."""

    alpha: float
    scale: float

    def __post_init__(self):
        require(self.alpha > 0, "alpha", "must be > 0", self.alpha)
        require(self.scale > 0, "scale", "must be > 0", self.scale)

    def sample(self, rng, size):
        return self.scale * (1.0 + rng.pareto(self.alpha, size))

    @property
    def mean(self):
        return self.alpha * self.scale / (self.alpha - 1) if self.alpha > 1 else math.inf

    def _log_sf(self, x):
        # log (x_m / x)^alpha = -alpha log1p((x - x_m) / x_m) for x >= x_m; accurate near x_m and at x = inf
        return -self.alpha * np.log1p((np.maximum(x, self.scale) - self.scale) / self.scale)

    def _cdf(self, x):
        return -np.expm1(self._log_sf(x))

    def _sf(self, x):
        return np.exp(self._log_sf(x))


@register("empirical")
@dataclass(frozen=True, kw_only=True)
class Empirical(DelayLaw):
    """Resampled uniformly, with replacement, from the given measured values v_1..v_m:
    F(x) = #{i : v_i <= x} / m."""

    values: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        require(len(self.values) > 0, "values", "must hold at least one value", list(self.values))
        bad = [v for v in self.values if not (v >= 0 and math.isfinite(v))]
        require(not bad, "values", "must all be finite and >= 0", bad[:3])

    def sample(self, rng, size):
        return np.asarray(self.values)[rng.integers(0, len(self.values), size)]

    @property
    def mean(self):
        return float(np.mean(self.values))

    @cached_property
    def _sorted(self) -> np.ndarray:
        return np.sort(np.asarray(self.values))

    def _cdf(self, x):
        counts = np.searchsorted(self._sorted, x, side="right")
        return np.where(np.isnan(x), np.nan, counts / len(self.values))

    def atoms(self):
        return tuple(float(v) for v in np.unique(self._sorted))


@register("mixture")
@dataclass(frozen=True, kw_only=True)
class Mixture(DelayLaw):
    """X = X_I with I = i with probability w_i (the component index drawn independently of the components):
    E[X] = sum_i w_i E[X_i], F(x) = sum_i w_i F_i(x)."""

    components: tuple[DelayLaw, ...]
    weights: tuple[float, ...]

    def __post_init__(self):
        object.__setattr__(self, "components", tuple(self.components))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        require(len(self.components) >= 1, "components", "must hold at least one law", self.components)
        bad = [c for c in self.components if not isinstance(c, DelayLaw)]
        require(not bad, "components", "must all be delay laws", bad[:3])
        require(len(self.weights) == len(self.components), "weights",
                f"must hold one weight per component ({len(self.components)})", self.weights)
        require(all(w >= 0 and math.isfinite(w) for w in self.weights), "weights", "must all be finite and >= 0",
                self.weights)
        require(abs(math.fsum(self.weights) - 1.0) <= 1e-9, "weights", "must sum to 1", self.weights)

    def _used(self):
        return [(w, c) for w, c in zip(self.weights, self.components) if w > 0]

    def sample(self, rng, size):
        # one uniform per draw picks the component; then each component draws its values, in component order
        cum = np.cumsum(self.weights)
        cum /= cum[-1]
        which = np.searchsorted(cum, rng.random(size), side="right")
        out = np.empty(size)
        for i, component in enumerate(self.components):
            chosen = which == i
            count = int(np.count_nonzero(chosen))
            if count:
                out[chosen] = component.sample(rng, count)
        return out

    @property
    def mean(self):
        return math.fsum(w * c.mean for w, c in self._used())

    def _cdf(self, x):
        return sum(w * c.cdf(x) for w, c in self._used())

    def _sf(self, x):
        return sum(w * c.sf(x) for w, c in self._used())

    def atoms(self):
        return tuple(sorted({a for _, c in self._used() for a in c.atoms()}))


@register("bimodal")
@dataclass(frozen=True, kw_only=True)
class Bimodal(DelayLaw):
    """Slow with probability p, s times slower: X = B with probability 1 - p and X = s B with probability p, where
    B ~ ``base`` and s = ``slowdown``.  E[X] = E[B] (1 + p (s - 1)); F(x) = (1 - p) F_B(x) + p F_B(x / s)."""

    base: DelayLaw
    p: float
    slowdown: float

    def __post_init__(self):
        require(isinstance(self.base, DelayLaw), "base", "must be a delay law", self.base)
        require(0 <= self.p <= 1, "p", "must be in [0, 1]", self.p)
        require(self.slowdown >= 1 and math.isfinite(self.slowdown), "slowdown", "must be >= 1 and finite",
                self.slowdown)

    def sample(self, rng, size):
        x = self.base.sample(rng, size)
        return np.where(rng.random(size) < self.p, x * self.slowdown, x)

    @property
    def mean(self):
        return self.base.mean * (1 + self.p * (self.slowdown - 1))

    def _cdf(self, x):
        return (1 - self.p) * self.base.cdf(x) + self.p * self.base.cdf(x / self.slowdown)

    def _sf(self, x):
        return (1 - self.p) * self.base.sf(x) + self.p * self.base.sf(x / self.slowdown)

    def atoms(self):
        fast = self.base.atoms() if self.p < 1 else ()
        slow = tuple(a * self.slowdown for a in self.base.atoms()) if self.p > 0 else ()
        return tuple(sorted(set(fast) | set(slow)))


@dataclass(frozen=True, kw_only=True)
class Scaled(DelayLaw):
    """X = factor * B with B ~ ``base``: E[X] = factor E[B], F(x) = F_B(x / factor).  What :func:`scaled` returns for
    laws it cannot rescale within their own family; not a scenario ``kind``."""

    base: DelayLaw
    factor: float

    def __post_init__(self):
        require(isinstance(self.base, DelayLaw), "base", "must be a delay law", self.base)
        require(self.factor > 0 and math.isfinite(self.factor), "factor", "must be finite and > 0", self.factor)

    def sample(self, rng, size):
        return self.factor * self.base.sample(rng, size)

    @property
    def mean(self):
        return self.factor * self.base.mean

    def _cdf(self, x):
        return self.base.cdf(x / self.factor)

    def _sf(self, x):
        return self.base.sf(x / self.factor)

    def atoms(self):
        return tuple(a * self.factor for a in self.base.atoms())


def scaled(law: DelayLaw, factor: float) -> DelayLaw:
    """The law of factor * X for X ~ ``law`` (a worker's speed or straggler factor applied to its compute law).

    Stays in the law's family where the family is closed under scaling (exponential mean, shifted exponential shift
    and scale, Pareto / gamma scale, lognormal mu + log(factor), uniform bounds, constant and empirical values;
    mixtures and bimodal laws rescale their components), so closed forms keep applying; other laws are wrapped in
    :class:`Scaled`.  ``law`` itself when factor == 1.
    """
    require(factor > 0 and math.isfinite(factor), "factor", "must be finite and > 0", factor)
    f = float(factor)
    if f == 1.0:
        return law
    t = type(law)
    if t is Constant:
        return Constant(value=law.value * f)
    if t is Exponential:
        return Exponential(mean=law.mean * f)
    if t is ShiftedExponential:
        return ShiftedExponential(shift=law.shift * f, scale=law.scale * f)
    if t is LogNormal:
        return LogNormal(mu=law.mu + math.log(f), sigma=law.sigma)
    if t is Gamma:
        return Gamma(shape=law.shape, scale=law.scale * f)
    if t is Uniform:
        return Uniform(low=law.low * f, high=law.high * f)
    if t is Pareto:
        return Pareto(alpha=law.alpha, scale=law.scale * f)
    if t is Empirical:
        return Empirical(values=tuple(v * f for v in law.values))
    if t is Mixture:
        return Mixture(components=tuple(scaled(c, f) for c in law.components), weights=law.weights)
    if t is Bimodal:
        return Bimodal(base=scaled(law.base, f), p=law.p, slowdown=law.slowdown)
    if t is Scaled:
        return scaled(law.base, law.factor * f)
    return Scaled(base=law, factor=f)
