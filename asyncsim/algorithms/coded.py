"""Gradient descent on coded tasks: the full gradient decoded each round from the tasks that finished."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..params import kind, require
from ..problems.base import block_bounds
from ..timing.codes import Code, Uncoded
from .base import Algorithm, step_flops
from .piag import Shard
from .sgd import check_box, project


@Algorithm.registry.register("coded_gd")
@dataclass(frozen=True, kw_only=True)
class CodedGD(Algorithm):
    """Coded gradient descent: x_{k+1} = P(x_k - lr grad f(x_k)), with grad f(x_k) decoded each round from the
    tasks that finished, whatever the straggler pattern (to rounding).  P is the projection onto the box
    [lower, upper]; the code is the ``coded`` protocol's (``uncoded`` under ``sync``).

    - A gradient code (``uncoded``, ``repetition``, ``fractional_repetition``, ``cyclic``; Tandon, Lei, Dimakis and
      Karampatziakis, "Gradient coding", ICML 2017): the samples are split into the code's P contiguous parts with
      gradient sums G_j(x) = sum_{s in part j} grad f_s(x); worker i's task is t_i = sum_j B[i, j] G_j(x_k) (B the
      encoding matrix); the finished tasks F decode grad f(x_k) = (1/N) sum_{i in F} a_i t_i with a^T B_F = 1^T.
    - An (n, k) ``mds`` code on a quadratic, grad f(x) = M x - c (Lee, Lam, Pedarsani, Papailiopoulos and
      Ramchandran, "Speeding up distributed machine learning using codes", IEEE Trans. Inf. Theory 2018): M's rows
      are split into k blocks M_1..M_k (zero-padded to one size), worker i holds the pre-encoded block
      C_i = sum_j G[i, j] M_j (G the n x k generator) and computes C_i x_k; any k finished tasks give
      [M_j x_k]_j = G_F^{-1} [C_i x_k]_{i in F}, hence M x_k, a matrix-vector product that is 1/k of the job per
      worker.  Encoding M is done once, before the run, and is not timed.

    With ``cluster.flops_per_second`` a task is its load of the job (a full gradient, or the product M x: 2 d^2
    flops) and the server's decoding (``Code.decoding_flops``) is timed after each round."""

    lr: float
    lower: float | None = None
    upper: float | None = None
    code: Code | None = None
    workers: int | None = None
    samples: int | None = None
    loaded: bool = field(default=False, repr=False)
    """True under a coded protocol, which times a task as its load of a step (``work`` is then the job's flops)."""
    encoded: tuple | None = field(default=None, init=False, repr=False, compare=False)
    """(C, c, bounds) for an mds code: the encoded blocks (n x b x d), the linear term and the block edges."""
    vector_state = True

    @staticmethod
    def accepts(protocol):
        """Coded rounds, or rounds of every worker (uncoded)."""
        return (protocol.coded or protocol.every_worker) and not protocol.takes_local_steps

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        check_box(self.lower, self.upper)

    def resolve(self, protocol):
        return replace(self, code=protocol.code if protocol.code is not None else Uncoded(), loaded=protocol.coded)

    def check(self, scenario):
        problem = scenario.problem
        if not self.code.gradient_code:
            require(problem.linear_gradient, "problem.kind", f"must have a linear gradient M x - c (quadratic, "
                    f"least_squares, ridge) for algorithm coded_gd with a {kind(self.code)} code, which codes "
                    f"matrix-vector products (a task's load 1/k assumes data encoded in advance)", kind(problem))
            require(self.code.k <= problem.dim, "protocol.code.k", f"must be <= problem.dim ({problem.dim}): M's "
                    "rows are split into k blocks", self.code.k)
            return
        n_samples = getattr(problem, "n_samples", None)
        require(n_samples is not None, "problem.kind", "must be a finite sum of samples (split into the code's "
                "parts) for algorithm coded_gd with a gradient code", kind(problem))
        parts = self.code.matrix(scenario.cluster.workers).shape[1]
        require(n_samples >= parts, "problem.n_samples", f"must be >= the code's {parts} parts", n_samples)

    def bind(self, problem, n_workers=None):
        require(n_workers is not None, "workers", "must be known (the code's size)", None)
        code = self.code or Uncoded()
        bound = replace(self, code=code, workers=int(n_workers), samples=getattr(problem, "n_samples", None))
        if code.gradient_code:
            return bound
        M, c = problem.linear_gradient()
        bounds = block_bounds(problem.dim, code.k)
        size = int(np.diff(bounds).max())
        blocks = np.zeros((code.k, size, problem.dim))
        for j in range(code.k):
            blocks[j, :bounds[j + 1] - bounds[j]] = M[bounds[j]:bounds[j + 1]]
        C = np.einsum("ij,jbd->ibd", code.matrix(int(n_workers)), blocks)
        C.flags.writeable = False
        object.__setattr__(bound, "encoded", (C, c, bounds))  # derived data: not a parameter (not in summaries)
        return bound

    def _job_flops(self, problem) -> float:
        return step_flops(problem) if (self.code or Uncoded()).gradient_code else 2.0 * problem.dim ** 2

    def work(self, problem, n_workers) -> float:
        """The job's flops (a full gradient, or 2 d^2 for M x) under a coded protocol, which times a task as the
        code's load of it; a task's flops (1/n of a gradient) under rounds of every worker."""
        code = self.code or Uncoded()
        return self._job_flops(problem) * (1.0 if self.loaded else code.load(n_workers))

    def serial_flops(self, problem) -> float:
        """The server's decoding of a round (``Code.decoding_flops`` on results of d, or b entries for mds)."""
        code = self.code or Uncoded()
        size = problem.dim if code.gradient_code else -(-problem.dim // code.k)
        return code.decoding_flops(self.workers, size)

    def draw(self, problem, rng, n_steps):
        return [None] * n_steps  # no randomness: whole parts

    def init(self, x0, n_workers):
        return project(x0, self.lower, self.upper), tuple(Shard(w, n_workers) for w in range(n_workers))

    def local(self, snapshot, worker_state, problem, draw):
        w = worker_state.worker
        if self.encoded is not None:
            return self.encoded[0][w] @ snapshot, worker_state
        B = self.code.matrix(worker_state.n_workers)
        P, N = B.shape[1], problem.n_samples
        task = np.zeros_like(snapshot)
        for j in np.flatnonzero(B[w]):
            lo, hi = j * N // P, (j + 1) * N // P
            task = task + B[w, j] * ((hi - lo) * problem.grad(snapshot, slice(lo, hi)))
        return task, worker_state

    def apply(self, server_state, messages, info):
        if self.encoded is not None:
            grad = self._decode_product(messages, info.workers)
        else:
            a = self.code.decoding(info.workers, self.workers)
            total = a[0] * messages[0]
            for coefficient, message in zip(a[1:], messages[1:]):
                total = total + coefficient * message
            grad = total / self.samples
        return project(server_state - self.lr * grad, self.lower, self.upper)

    def _decode_product(self, messages, workers) -> np.ndarray:
        """M x - c from the finished tasks' C_i x: solve G_F Z = [C_i x]_{i in F} (k x b), then unpad the blocks."""
        _, c, bounds = self.encoded
        if not self.code.decodes(frozenset(workers), self.workers):
            raise ValueError(f"tasks {sorted(workers)} do not decode the job")
        G = self.code.matrix(self.workers)[list(workers)]
        Z = np.linalg.lstsq(G, np.stack(messages), rcond=None)[0]
        Mx = np.concatenate([Z[j, :bounds[j + 1] - bounds[j]] for j in range(len(bounds) - 1)])
        return Mx - c

    def params(self, server_state):
        return server_state
