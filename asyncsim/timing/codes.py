"""Codes for straggler-resilient computation: which sets of finished tasks can be decoded, and how.

A job (a gradient sum_j g_j over P data parts, or the P row blocks of a matrix-vector product) is split into n
tasks, one per worker.  A code is its encoding matrix B (n x P): task i computes sum_j B[i, j] g_j, a load of
``load(n)`` of the whole job (its share of the parts, weighted by nothing: each part costs the same).  A set F of
finished tasks decodes the job's sum when the all-ones vector is in the row space of B_F, and then
``decoding(F)`` gives a with a^T B_F = 1^T, so sum_{i in F} a_i (task i's result) = sum_j g_j.  Each code states
its decodability by its own rule (``decodes``), which the tests check against the linear algebra (``solvable``) on
every subset for small n.  The job is the sum of the parts for the gradient codes and every part for ``mds``
(a matrix-vector product needs each block: rank k).

- ``uncoded``: B = I (P = n): every task is needed.
- ``repetition`` r: n/r groups of r workers; the workers of a group all compute the sum of the group's r parts
  (P = n), so one finished task per group decodes (Lee et al. 2017's repetition; Tandon et al. 2017's fractional
  repetition gradient code for s = r - 1 stragglers, which ``fractional_repetition`` names by s).
- ``mds`` k: B = G, an n x k real MDS generator (a Vandermonde matrix at points 1..n), P = k: any k tasks decode
  (Lee et al. 2017; with a task of load 1/k).
- ``cyclic`` s: task i covers parts i, ..., i + s (mod n), P = n, with coefficients that put every row of B in the
  null space of a random s x n matrix H with H 1 = 0 (Tandon et al. 2017, Algorithm 2): any n - s tasks decode.

The draws of ``cyclic`` come from a generator keyed by (n, s): the same code for the same sizes, no global random
state.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from ..params import Registry, require

DECODE_TOL = 1e-9
"""A decoding must reproduce the all-ones vector to this tolerance (relative to its size)."""


class Code:
    """Base class of codes; ``Code.registry`` maps YAML ``kind`` names to codes."""

    registry = Registry("code")
    gradient_code: ClassVar[bool] = True
    """True when a task's load is its share of the raw parts, so it can compute the coded sum of the parts'
    gradients from the data itself (Tandon et al.'s gradient codes).  False for ``mds``, whose load 1/k assumes data
    encoded in advance: it codes linear computations (matrix-vector products), not a nonlinear loss's gradient."""

    def check(self, n: int) -> None:
        """Raise ParamError (naming the YAML path) if the code is not defined for n workers."""

    def matrix(self, n: int) -> np.ndarray:
        """The encoding matrix B (n x P), read-only."""
        raise NotImplementedError

    def load(self, n: int) -> float:
        """A task's share of the job, in closed form (the tests check it against ``matrix``): its parts over all
        parts, or one coded block of k for ``mds``."""
        raise NotImplementedError

    def decodes(self, done: frozenset, n: int) -> bool:
        """Whether the finished tasks ``done`` decode the job (the code's closed rule, used while simulating)."""
        raise NotImplementedError

    def solvable(self, B_F: np.ndarray) -> bool:
        """The job is decodable from the rows ``B_F`` of the finished tasks, by linear algebra: the all-ones vector
        is in their row space (the sum of the parts)."""
        if not len(B_F):
            return False
        a, *_ = np.linalg.lstsq(B_F.T, np.ones(B_F.shape[1]), rcond=None)
        return bool(np.allclose(a @ B_F, 1.0, rtol=0.0, atol=DECODE_TOL * max(1.0, float(np.abs(a).max()))))

    def waits_for(self, n: int) -> int | None:
        """The number of finished tasks that always decodes and no fewer ever does (None: it depends on which)."""
        return None

    def decoding_flops(self, n: int, size: int) -> float:
        """Flops of decoding one round from the fewest tasks that always decode (``waits_for``, else n), each a
        result of ``size`` numbers: by default a least-squares solve for a (about 2 P f^2 for f tasks and P parts)
        and the weighted sum of the results (2 f size)."""
        f = self.waits_for(n) or n
        return 2.0 * self.matrix(n).shape[1] * f * f + 2.0 * f * size

    def decoding(self, done, n: int) -> np.ndarray:
        """a with a^T B_F = 1^T for the finished tasks F = sorted(``done``) (a vector over F, in that order): the
        sum of their results, weighted by a, is the sum of the parts."""
        F = sorted(done)
        B = self.matrix(n)[F]
        if not self.decodes(frozenset(F), n):
            raise ValueError(f"tasks {F} do not decode the job")
        a, *_ = np.linalg.lstsq(B.T, np.ones(B.shape[1]), rcond=None)
        return a


def _readonly(B: np.ndarray) -> np.ndarray:
    B.flags.writeable = False
    return B


@Code.registry.register("uncoded")
@dataclass(frozen=True, kw_only=True)
class Uncoded(Code):
    """Every worker computes its own 1/n of the job; all n are needed."""

    def matrix(self, n):
        return _identity(n)

    def load(self, n):
        return 1.0 / n

    def decodes(self, done, n):
        return len(done) == n

    def waits_for(self, n):
        return n

    def decoding_flops(self, n, size):
        """The sum of the n results."""
        return float(n * size)


@lru_cache(maxsize=32)
def _identity(n: int) -> np.ndarray:
    return _readonly(np.eye(n))


class Groups(Code):
    """Codes of groups of workers that compute the same parts (``group``: the workers per group)."""

    group: int

    def check(self, n):
        require(n % self.group == 0, "cluster.workers", f"must be a multiple of the code's group size {self.group}",
                n)

    def matrix(self, n):
        return _grouped(n, self.group)

    def load(self, n):
        return self.group / n

    def decodes(self, done, n):
        return len({w // self.group for w in done}) == n // self.group

    def decoding_flops(self, n, size):
        """The sum of one result per group."""
        return float(n // self.group * size)


@Code.registry.register("repetition")
@dataclass(frozen=True, kw_only=True)
class Repetition(Groups):
    """Groups of ``r`` workers compute the same r parts of n; one finished task per group decodes."""

    r: int

    def __post_init__(self):
        require(self.r >= 1, "r", "must be >= 1", self.r)

    @property
    def group(self) -> int:
        return self.r


@lru_cache(maxsize=32)
def _grouped(n: int, g: int) -> np.ndarray:
    groups = np.arange(n) // g
    return _readonly((groups[:, None] == groups[None, :]).astype(np.float64))


@Code.registry.register("fractional_repetition")
@dataclass(frozen=True, kw_only=True)
class FractionalRepetition(Groups):
    """Tandon et al.'s fractional repetition gradient code for ``s`` stragglers: repetition in groups of s + 1."""

    s: int

    def __post_init__(self):
        require(self.s >= 0, "s", "must be >= 0", self.s)

    @property
    def group(self) -> int:
        return self.s + 1


@Code.registry.register("mds")
@dataclass(frozen=True, kw_only=True)
class MDS(Code):
    """An (n, k) MDS code: each task is a combination of the k parts (load 1/k); any k finished tasks decode."""

    k: int
    gradient_code = False

    def __post_init__(self):
        require(self.k >= 1, "k", "must be >= 1", self.k)

    def check(self, n):
        require(self.k <= n, "protocol.code.k", f"must be <= cluster.workers ({n})", self.k)
        require(n <= 30, "cluster.workers", "must be <= 30 for an mds code (a real Vandermonde generator is "
                "ill-conditioned beyond)", n)

    def matrix(self, n):
        return _vandermonde(n, self.k)

    def load(self, n):
        return 1.0 / self.k

    def decodes(self, done, n):
        return len(done) >= self.k

    def solvable(self, B_F):
        """Every one of the k blocks is recovered: B_F has rank k."""
        return len(B_F) > 0 and np.linalg.matrix_rank(B_F) == B_F.shape[1]

    def waits_for(self, n):
        return self.k

    def decoding_flops(self, n, size):
        """An LU solve with the k x k generator of the finished tasks, (2/3) k^3, applied to the k results of
        ``size`` numbers, 2 k^2 size."""
        return 2.0 / 3.0 * self.k ** 3 + 2.0 * self.k ** 2 * size


@lru_cache(maxsize=32)
def _vandermonde(n: int, k: int) -> np.ndarray:
    points = np.linspace(-1.0, 1.0, n)  # Chebyshev-like spread keeps every k x k minor well conditioned for n <= 30
    return _readonly(np.vander(points, k, increasing=True))


@Code.registry.register("cyclic")
@dataclass(frozen=True, kw_only=True)
class Cyclic(Code):
    """Tandon et al.'s cyclic gradient code for ``s`` stragglers: task i covers parts i..i+s (mod n); any n - s
    finished tasks decode."""

    s: int

    def __post_init__(self):
        require(self.s >= 0, "s", "must be >= 0", self.s)

    def check(self, n):
        require(self.s < n, "protocol.code.s", f"must be < cluster.workers ({n})", self.s)

    def matrix(self, n):
        return _cyclic(n, self.s)

    def load(self, n):
        return (self.s + 1) / n

    def decodes(self, done, n):
        return len(done) >= n - self.s

    def waits_for(self, n):
        return n - self.s


@lru_cache(maxsize=32)
def _cyclic(n: int, s: int) -> np.ndarray:
    B = np.zeros((n, n))
    if s == 0:
        return _readonly(np.eye(n))
    rng = np.random.default_rng([n, s])
    H = rng.standard_normal((s, n))
    H[:, -1] = -H[:, :-1].sum(axis=1)  # H 1 = 0, so 1 is in the null space that the rows of B span
    for i in range(n):
        support = [(i + j) % n for j in range(s + 1)]
        B[i, i] = 1.0
        B[i, support[1:]] = np.linalg.solve(H[:, support[1:]], -H[:, i])  # H b_i = 0
    return _readonly(B)
