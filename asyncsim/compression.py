"""Compressed messages: the operators C that shrink what a worker sends, as in the simulators of federated and
communication-efficient learning (docs/ARCHITECTURE.md, "Compressed messages").

A compressor is a frozen dataclass of its parameters, registered under a YAML ``kind`` (``compression:`` at the top
of a scenario), with pure methods:

- ``compress(x, rng) -> y``: a new array (``x`` is never modified); ``rng`` is the step's keyed generator, unused
  (None) by the deterministic operators;
- ``bytes(d) -> int``: the size of the compressed message of a d-vector, by the rule its docstring states (an
  uncompressed message is 8 d bytes, float64);
- ``variance_factor(d)``: for the unbiased operators, omega with E||C(x) - x||^2 <= omega ||x||^2 (an equality for
  ``rand_k``), else None; ``contraction(d)``: delta with E||C'(x) - x||^2 <= (1 - delta) ||x||^2 for every x, where
  C' is the operator error feedback sends (``contractive``);
- ``check(dim)``: the conditions on the problem's dimension (``k <= dim``).

``error_feedback: true`` (Seide, Fu, Droppo, Li and Yu, "1-bit stochastic gradient descent and its application to
data-parallel distributed training of speech DNNs", Interspeech 2014; Karimireddy, Rebjock, Stich and Jaggi,
"Error feedback fixes SignSGD and other gradient compression schemes", ICML 2019) keeps the part of the message
that was not sent: the worker holds e (0 at the start), sends c = C'(e + m) and keeps e <- e + m - c, so that after
T steps sum_t c_t + e_T = sum_t m_t (``error_feedback``, to rounding).  Error feedback needs a contraction C'
(otherwise e grows: unbiased rand_k keeps -(d/k - 1) v_i of a sent coordinate, and e is multiplied by that each
time).  The biased operators are contractions; an unbiased one of variance factor omega is sent as
C' = C / (1 + omega), a contraction with delta = 1 / (1 + omega) (Stich and Karimireddy, "The error-feedback
framework: better rates for SGD with delayed gradients and compressed communication", JMLR 2020); for
rand_k that is the unscaled random-k sparsifier of Stich, Cordonnier and Jaggi (2018), C'(x) = x on the k drawn
coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .params import Registry, require

VALUE_BYTES = 8
"""A value sent as float64."""


def index_bytes(d: int) -> int:
    """The bytes of one coordinate index of a d-vector: 4 (uint32) up to d = 2**32, else 8."""
    return 4 if d <= 2**32 else 8


class Compressor:
    """Base class of compressors; ``Compressor.registry`` maps YAML ``kind`` names to them.  Every subclass is a
    frozen dataclass whose last field is ``error_feedback`` (default false)."""

    registry = Registry("compression")
    unbiased: ClassVar[bool] = False
    """E[C(x)] = x for every x (over the operator's own randomness)."""
    random: ClassVar[bool] = False
    """The operator draws random numbers (``compress`` needs its step's generator)."""
    error_feedback: bool = False

    def compress(self, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        raise NotImplementedError

    def bytes(self, d: int) -> int:
        raise NotImplementedError

    def variance_factor(self, d: int) -> float | None:
        """omega with E||C(x) - x||^2 <= omega ||x||^2 for every x in R^d (unbiased operators), else None."""
        return None

    def contraction(self, d: int) -> float:
        """delta with E||C'(x) - x||^2 <= (1 - delta) ||x||^2 for every x in R^d, C' = ``contractive``: for an
        unbiased operator 1 / (1 + omega)."""
        return 1.0 / (1.0 + self.variance_factor(d))

    def contractive(self, x: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
        """C'(x), what error feedback sends: ``compress`` for a contraction (the biased operators), C(x) / (1 + omega)
        for an unbiased one of variance factor omega."""
        y = self.compress(x, rng)
        return y if not self.unbiased else y / (1.0 + self.variance_factor(x.shape[0]))

    def check(self, dim: int, path: str = "compression", what: str = "problem.dim") -> None:
        """Raise ParamError (naming ``path``) if the operator is not defined on vectors of ``dim`` entries (``what``
        names where that dimension comes from)."""


def error_feedback(compressor: Compressor, messages, rngs=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Error feedback over a sequence of raw messages m_1..m_T: e_0 = 0, c_t = C'(e_{t-1} + m_t),
    e_t = e_{t-1} + m_t - c_t.  Returns the sent messages c_1..c_T and e_T; sum_t c_t + e_T = sum_t m_t up to
    rounding.  (``rngs``: one generator per step, for the random operators.)"""
    sent, e = [], None
    for t, m in enumerate(messages):
        v = m if e is None else e + m
        c = compressor.contractive(v, None if rngs is None else rngs[t])
        sent.append(c)
        e = v - c
    return sent, (np.zeros_like(messages[0]) if e is None else e)


def _check_k(k: int, dim: int, path: str, what: str) -> None:
    require(k <= dim, f"{path}.k", f"must be <= {what} ({dim})", k)


@Compressor.registry.register("top_k")
@dataclass(frozen=True, kw_only=True)
class TopK(Compressor):
    """Top-k sparsification (Aji and Heafield, "Sparse communication for distributed gradient descent", EMNLP 2017;
    Stich, Cordonnier and Jaggi, "Sparsified SGD with memory", NeurIPS 2018): keep the k coordinates of largest
    |x_i| and set the others to 0,

        C(x)_i = x_i if i is among the k largest |x_j| (ties broken by the smaller index), else 0.

    Deterministic and biased; a contraction, ||C(x) - x||^2 <= (1 - k/d) ||x||^2 (the d - k smallest squares are at
    most their share of the sum).  Used with error feedback in practice.

    Bytes: k values as float64 and k indices as uint32, 12 k (8-byte indices for d > 2**32)."""

    k: int
    error_feedback: bool = False

    def __post_init__(self):
        require(self.k >= 1, "k", "must be >= 1", self.k)

    def check(self, dim, path="compression", what="problem.dim"):
        _check_k(self.k, dim, path, what)

    def compress(self, x, rng=None):
        d, k = x.shape[0], self.k
        y = np.zeros_like(x)
        if k >= d:
            y[:] = x
            return y
        a = np.abs(x)
        t = np.partition(a, d - k)[d - k]  # the k-th largest |x_i|
        above = np.flatnonzero(a > t)
        ties = np.flatnonzero(a == t)[:k - above.size]  # the smaller indices first
        keep = np.concatenate([above, ties])
        y[keep] = x[keep]
        return y

    def bytes(self, d):
        k = min(self.k, d)
        return k * (VALUE_BYTES + index_bytes(d))

    def contraction(self, d):
        return min(self.k, d) / d


@Compressor.registry.register("rand_k")
@dataclass(frozen=True, kw_only=True)
class RandK(Compressor):
    """Random-k sparsification, scaled to be unbiased (Stich, Cordonnier and Jaggi, "Sparsified SGD with memory",
    NeurIPS 2018; Wangni, Wang, Liu and Zhang, "Gradient sparsification for communication-efficient distributed
    optimization", NeurIPS 2018): k coordinates S drawn uniformly without replacement,

        C(x)_i = (d/k) x_i for i in S, else 0.

    E[C(x)] = x and E||C(x) - x||^2 = (d/k - 1) ||x||^2 exactly (each coordinate is kept with probability k/d).
    With k = d it is the identity (bit for bit).

    Bytes: the k values as float64 and their k indices as uint32, 12 k (8-byte indices for d > 2**32).  The indices
    are sent, not the seed that drew them (which would be 8 bytes instead of 4 k): the same rule as ``top_k``, so
    the two differ only in which coordinates they keep."""

    k: int
    error_feedback: bool = False
    unbiased = True
    random = True

    def __post_init__(self):
        require(self.k >= 1, "k", "must be >= 1", self.k)

    def check(self, dim, path="compression", what="problem.dim"):
        _check_k(self.k, dim, path, what)

    def compress(self, x, rng):
        d, k = x.shape[0], self.k
        idx = rng.choice(d, size=k, replace=False)
        y = np.zeros_like(x)
        y[idx] = x[idx] * (d / k)
        return y

    def contractive(self, x, rng):
        """C(x) / (1 + omega) = (k/d) C(x): x on the k drawn coordinates, unscaled (the same draws as ``compress``)."""
        idx = rng.choice(x.shape[0], size=self.k, replace=False)
        y = np.zeros_like(x)
        y[idx] = x[idx]
        return y

    def bytes(self, d):
        return self.k * (VALUE_BYTES + index_bytes(d))

    def variance_factor(self, d):
        return d / self.k - 1.0


@Compressor.registry.register("qsgd")
@dataclass(frozen=True, kw_only=True)
class QSGD(Compressor):
    """QSGD's stochastic quantization with s = ``levels`` levels (Alistarh, Grubic, Li, Tomioka and Vojnovic,
    "QSGD: communication-efficient SGD via gradient quantization and encoding", NeurIPS 2017):

        C(x)_i = ||x||_2 sign(x_i) xi_i(x, s) / s,

    where, with r = s |x_i| / ||x||_2 in [0, s] and l = floor(r), xi_i = l + 1 with probability r - l and l
    otherwise (stochastic rounding to the levels 0, 1/s, ..., 1), and C(0) = 0.  Unbiased, with
    E||C(x) - x||^2 <= min(d / s^2, sqrt(d) / s) ||x||^2 (the paper's Lemma 3.1).

    Bytes, a fixed-width code (not the paper's Elias code): the norm as float64, then per coordinate its sign bit
    and its level in ceil(log2(s + 1)) bits, rounded up to whole bytes: 8 + ceil(d (1 + ceil(log2(s + 1))) / 8)."""

    levels: int
    error_feedback: bool = False
    unbiased = True
    random = True

    def __post_init__(self):
        require(self.levels >= 1, "levels", "must be >= 1", self.levels)

    def compress(self, x, rng):
        s = self.levels
        u = rng.random(x.shape[0])
        norm = float(np.linalg.norm(x))
        if norm == 0.0 or not math.isfinite(norm):
            return np.zeros_like(x) if norm == 0.0 else x * np.nan
        r = np.minimum(np.abs(x) * (s / norm), s)
        low = np.floor(r)
        xi = low + (u < r - low)
        return (norm / s) * np.sign(x) * xi

    def bytes(self, d):
        bits = 1 + int(self.levels).bit_length()  # the sign, and the level 0..s in ceil(log2(s + 1)) bits
        return VALUE_BYTES + -(-d * bits // 8)

    def variance_factor(self, d):
        s = self.levels
        return min(d / s**2, math.sqrt(d) / s)


@Compressor.registry.register("sign")
@dataclass(frozen=True, kw_only=True)
class Sign(Compressor):
    """Scaled sign compression (Bernstein, Wang, Azizzadenesheli and Anandkumar, "signSGD: compressed optimisation
    for non-convex problems", ICML 2018; with the scale of Karimireddy, Rebjock, Stich and Jaggi, "Error feedback
    fixes SignSGD and other gradient compression schemes", ICML 2019):

        C(x) = (||x||_1 / d) sign(x),   sign(x_i) = +1 for x_i >= 0, -1 otherwise (one bit: a 0 is sent as +1).

    Deterministic and biased; ||C(x) - x||^2 = ||x||^2 - ||x||_1^2 / d <= (1 - 1/d) ||x||^2, a contraction with
    delta = ||x||_1^2 / (d ||x||_2^2) >= 1/d.  Without error feedback SignSGD can fail to converge; with it, it does.

    Bytes: one bit per coordinate and the scale as float64: 8 + ceil(d / 8)."""

    error_feedback: bool = False

    def compress(self, x, rng=None):
        scale = np.abs(x).sum() / x.shape[0]
        return np.where(x >= 0, scale, -scale)

    def bytes(self, d):
        return VALUE_BYTES + -(-d // 8)

    def contraction(self, d):
        return 1.0 / d


__all__ = ["QSGD", "Compressor", "RandK", "Sign", "TopK", "error_feedback", "index_bytes"]
