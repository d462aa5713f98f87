"""Delay laws: frozen, validated, keyword-only distributions of durations in seconds.

Each law has ``sample(rng, size) -> ndarray`` (float64, ``rng`` a ``numpy.random.Generator``) and ``mean``.  Bad
parameters raise at construction with a message naming the parameter (``mean must be > 0, got -1.0``).  Add a law
with ``@DelayLaw.registry.register("name")`` on a frozen dataclass subclass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..params import Registry, require


class DelayLaw:
    """Base class of delay laws; ``DelayLaw.registry`` maps YAML ``kind`` names to laws."""

    registry = Registry("delay law")

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws (float64)."""
        raise NotImplementedError

    # Every law also has ``mean`` (E[X], possibly inf): a field for laws parametrized by it, a property otherwise.


register = DelayLaw.registry.register


@register("constant")
@dataclass(frozen=True, kw_only=True)
class Constant(DelayLaw):
    """X = value (deterministic)."""

    value: float

    def __post_init__(self):
        require(self.value >= 0, "value", "must be >= 0", self.value)

    def sample(self, rng, size):
        return np.full(size, self.value)

    @property
    def mean(self):
        return self.value


@register("exponential")
@dataclass(frozen=True, kw_only=True)
class Exponential(DelayLaw):
    """X ~ Exp with the given mean (rate 1/mean)."""

    mean: float

    def __post_init__(self):
        require(self.mean > 0, "mean", "must be > 0", self.mean)

    def sample(self, rng, size):
        return rng.exponential(self.mean, size)


@register("shifted_exponential")
@dataclass(frozen=True, kw_only=True)
class ShiftedExponential(DelayLaw):
    """X = shift + Exp(scale): the straggler model of Lee et al. (2018), "Speeding up distributed machine learning
    using codes".  ``scale`` is the mean of the exponential part; E[X] = shift + scale."""

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


@register("lognormal")
@dataclass(frozen=True, kw_only=True)
class LogNormal(DelayLaw):
    """X = exp(mu + sigma Z), Z ~ N(0, 1); E[X] = exp(mu + sigma^2 / 2)."""

    mu: float
    sigma: float

    def __post_init__(self):
        require(self.sigma > 0, "sigma", "must be > 0", self.sigma)

    def sample(self, rng, size):
        return rng.lognormal(self.mu, self.sigma, size)

    @property
    def mean(self):
        return math.exp(self.mu + self.sigma**2 / 2)


@register("uniform")
@dataclass(frozen=True, kw_only=True)
class Uniform(DelayLaw):
    """X ~ U[low, high); E[X] = (low + high) / 2."""

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


@register("empirical")
@dataclass(frozen=True, kw_only=True)
class Empirical(DelayLaw):
    """Resampled uniformly, with replacement, from the given measured values."""

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
