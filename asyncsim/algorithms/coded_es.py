"""Derivative-free optimization on coded search directions: k directional derivatives decoded each round from the
k tasks that finished first."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..params import kind, require
from ..rng import generator
from ..timing.codes import MDS, Code, Uncoded
from .base import Algorithm, step_flops

SHARED = 2**64
"""The worker key under which the ALGORITHM stream draws the search subspaces: no worker has it, so the subspace of
step s is one draw that every worker makes alike (``shared_generator``)."""

SUBSPACE_CACHE = 4
"""Subspaces kept after they are built (every worker of a round and the server ask for the same one)."""


class Task(NamedTuple):
    """A worker of ``coded_es``: its id (its row of the encoding matrix) and the number of workers."""

    worker: int
    n_workers: int


def shared_generator(rng: np.random.Generator) -> np.random.Generator:
    """The generator keyed like ``rng`` (seed, stream, worker, block) but with the worker replaced by ``SHARED``:
    the draws of a step block that are the same for every worker.  A generator that is not keyed by the package
    (``rng.generator``, with a spawn key of three entries) is used as it is."""
    seq = getattr(rng.bit_generator, "seed_seq", None)
    key = getattr(seq, "spawn_key", ())
    if len(key) != 3:
        return rng
    stream, _, block = key
    return generator(seq.entropy, stream, SHARED, block)


@lru_cache(maxsize=SUBSPACE_CACHE)
def subspace(key: int, dim: int, k: int) -> np.ndarray:
    """U (dim x k, read-only) with orthonormal columns: the Q factor of a dim x k standard normal matrix drawn from
    the generator seeded with ``key``, its columns signed so that R has a positive diagonal (a uniformly random
    k-dimensional subspace of R^dim with a uniformly random orthonormal basis)."""
    A = np.random.default_rng(int(key)).standard_normal((dim, k))
    Q, R = np.linalg.qr(A)
    Q *= np.where(np.diag(R) < 0, -1.0, 1.0)
    Q.flags.writeable = False
    return Q


def encoding(code: Code | None, n: int) -> np.ndarray:
    """The n x k generator whose row i is worker i's coefficients g_i: an ``mds`` code's matrix, or the identity
    (k = n) for ``uncoded`` and for rounds of every worker without a code."""
    return code.matrix(n) if isinstance(code, MDS) else Uncoded().matrix(n)


def decode(G_F: np.ndarray, values: np.ndarray) -> np.ndarray:
    """v with G_F v = values: the k coordinates of U^T grad f(x) from the results of the finished tasks F (rows
    G_F of the generator, in worker order).  Exactly k tasks: an LU solve; more (ties at a round's close): the
    least-squares solution, which is the same v when the results agree."""
    if G_F.shape[0] < G_F.shape[1]:
        raise ValueError(f"{G_F.shape[0]} tasks cannot decode {G_F.shape[1]} directional derivatives")
    if G_F.shape[0] == G_F.shape[1]:
        return np.linalg.solve(G_F, values)
    return np.linalg.lstsq(G_F, values, rcond=None)[0]


@Algorithm.registry.register("coded_es")
@dataclass(frozen=True, kw_only=True)
class CodedES(Algorithm):
    """Derivative-free descent on coded search directions (Bartan and Pilanci, "Distributed black-box optimization
    via error correcting codes", arXiv:1907.05984, 2019; the evolution-strategies view of structured directions).

    Round t draws U_t, an orthonormal basis (d x k) of a uniformly random k-dimensional subspace.  Worker i's task
    is one pair of function values along its coded direction u_i = U_t g_i (g_i: row i of the n x k generator G of
    the code),

        t_i = (f(x_t + h u_i) - f(x_t - h u_i)) / (2 h)  =  g_i^T U_t^T grad f(x_t) + O(h^2),

    a central difference, exact for a quadratic (to rounding, about eps |f| / h).  The first k tasks F to finish
    decode v (solve G_F v = t_F), and

        x_{t+1} = x_t - lr U_t v,

    which is x_t - lr U_t U_t^T grad f(x_t) for a quadratic, whichever tasks straggled: the iterates are the
    uncoded method's (k workers, one basis direction each) with the same subspaces.  (E[U U^T] = (k/d) I: the mean
    step is lr k/d times the gradient.)  Under ``coded`` the code is the protocol's (``mds`` k: any k of n tasks
    decode; ``uncoded``: G = I, k = n); under ``sync`` or ``allreduce`` it is the identity with k = n.  Only f is
    evaluated (``problem.loss``); ``h`` is the difference step.

    Every worker of a round must use the same U_t.  Step s's subspace comes from the ALGORITHM stream under the
    reserved worker key ``SHARED`` (``shared_generator``): one seed per step, the same for every worker, whatever
    the order of execution.  Under rounds a worker's step is the round (every worker takes one step per round), so
    ``cluster.failures`` is refused: a worker that loses a task and computes again in the same round would take the
    next step's subspace.

    Cost model: a function value is counted as a gradient's flops (problems count only those, and a value costs no
    more), so a task is 2 gradients' flops.  Under ``coded`` the job is k such pairs (``work``) and the protocol
    gives each task its load 1/k of it; under ``sync`` a step is one pair.  The server's decoding and step are not
    timed."""

    lr: float
    h: float = 1e-3
    code: Code | None = None
    workers: int | None = None

    @staticmethod
    def accepts(protocol):
        """Coded rounds (an ``mds`` or ``uncoded`` code, checked by ``check``), or rounds of every worker."""
        return (protocol.coded or protocol.every_worker) and not protocol.takes_local_steps

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(0 < self.h < float("inf"), "h", "must be finite and > 0", self.h)

    def resolve(self, protocol):
        return replace(self, code=protocol.code)

    def directions(self, n_workers: int) -> int:
        """k: the dimension of the search subspace (the code's k, or n without an mds code)."""
        return self.code.k if isinstance(self.code, MDS) else n_workers

    def check(self, scenario):
        code, dim, n = self.code, scenario.problem.dim, scenario.cluster.workers
        if code is not None:
            require(isinstance(code, (MDS, Uncoded)), "protocol.code.kind", "must be mds or uncoded for algorithm "
                    "coded_es: the server needs each of the k directional derivatives (the tasks' coefficients of "
                    "rank k), and a gradient code's tasks give only their sum", kind(code))
        if isinstance(code, MDS):
            require(code.k <= dim, "protocol.code.k", f"must be <= problem.dim ({dim}) for algorithm coded_es: "
                    "the search subspace has k orthonormal directions", code.k)
        else:
            require(n <= dim, "cluster.workers", f"must be <= problem.dim ({dim}) for algorithm coded_es without "
                    "an mds code: every worker has its own orthonormal search direction", n)
        off = scenario.cluster.interruption
        require(off is None, f"cluster.{off}", "must be null for algorithm coded_es: a worker that computes again "
                "within a round would use the next round's search subspace", "given")

    def bind(self, problem, n_workers=None):
        require(n_workers is not None, "workers", "must be known (the code's size)", None)
        k = self.directions(int(n_workers))
        require(k <= problem.dim, "k", f"must be <= the problem's dimension ({problem.dim})", k)
        return replace(self, workers=int(n_workers))

    def work(self, problem, n_workers) -> float:
        """Flops of a worker step: under ``coded``, the job of k evaluation pairs (the protocol times a task as its
        load 1/k of it: one pair); under ``sync``, one pair.  A pair is 2 gradients' flops."""
        pair = step_flops(problem, 2.0)
        return pair if self.code is None else pair / self.code.load(n_workers)

    def message_bytes(self, problem, n_workers):
        """A task's result and its subspace's seed."""
        return 16

    def memory(self, problem, workers, vectors_per_worker=2.0):
        base = super().memory(problem, workers, vectors_per_worker)
        k = min(self.directions(workers), problem.dim)
        return replace(base, bytes=base.bytes + 8.0 * problem.dim * k * (SUBSPACE_CACHE + 2))

    def draw(self, problem, rng, n_steps):
        """One seed per step for the step's subspace, the same for every worker (``shared_generator``)."""
        return shared_generator(rng).integers(0, 2**63 - 1, size=n_steps).tolist()

    def init(self, x0, n_workers):
        return x0, tuple(Task(w, n_workers) for w in range(n_workers))

    def local(self, snapshot, worker_state, problem, draw):
        w, n = worker_state
        U = subspace(draw, problem.dim, self.directions(n))
        u = U @ encoding(self.code, n)[w]
        h = self.h
        value = (problem.loss(snapshot + h * u) - problem.loss(snapshot - h * u)) / (2.0 * h)
        return (float(value), draw), worker_state

    def apply(self, server_state, messages, info):
        keys = {key for _, key in messages}
        if len(keys) != 1:
            raise ValueError(f"the tasks of update {info.update} searched different subspaces (a worker's step is "
                             "not its round)")
        n = self.workers if self.workers is not None else len(messages)
        F = list(info.workers)
        G = encoding(self.code, n)
        v = decode(G[F], np.array([value for value, _ in messages]))
        U = subspace(messages[0][1], server_state.size, G.shape[1])
        return server_state - self.lr * (U @ v)

    def params(self, server_state):
        return server_state
