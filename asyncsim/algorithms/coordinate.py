"""Asynchronous stochastic coordinate descent (AsySCD), and the block-coordinate step it shares with SEACD."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..params import ParamError, kind, require
from ..problems.base import block_bounds
from .base import Algorithm, step_flops
from .sgd import check_box, project

CHOICES = ("random", "cyclic")


class Cursor(NamedTuple):
    """A worker's state in a coordinate method: its id, how many computations it has made, and the number of
    workers (for the cyclic block choice)."""

    worker: int
    steps: int
    n_workers: int


class BlockGrad(NamedTuple):
    """A sparse message: block ``block`` (coordinates [start, start + len(values))) and grad_i f(x_hat) there."""

    block: int
    start: int
    values: np.ndarray


@lru_cache(maxsize=64)
def _edges(dim: int, blocks: int) -> tuple[int, ...]:
    return tuple(int(e) for e in block_bounds(dim, blocks))


@dataclass(frozen=True, kw_only=True)
class CoordinateSteps(Algorithm):
    """The block-coordinate machinery shared by ``asyscd`` and ``seacd`` (not registered itself).

    The coordinates are split into ``blocks`` contiguous blocks (``block_bounds``; None: one block per coordinate).
    A worker that read x_hat computes the message (i, grad_i f(x_hat)) for one block i (``problem.partial_grad``),
    chosen by ``choice``:

    - ``random``: i uniform over the blocks, from the ALGORITHM stream draw of the worker's step;
    - ``cyclic``: worker w's s-th computation takes block (w + n_workers * s) mod blocks, s counting the
      computations the worker made in the replay (work that was cancelled or lost is not counted).  With
      blocks = workers each worker always updates its own contiguous chunk of x.

    The server replaces block i atomically: x_{j+1}[i] = P(x_j[i] - step * g), other blocks unchanged, with P the
    projection onto the box [lower, upper] (None: unbounded).
    """

    blocks: int | None = None
    choice: str = "random"
    lower: float | None = None
    upper: float | None = None

    def _check_coordinates(self) -> None:
        require(self.blocks is None or self.blocks >= 1, "blocks", "must be >= 1", self.blocks)
        require(self.choice in CHOICES, "choice", f"must be one of {', '.join(CHOICES)}", self.choice)
        check_box(self.lower, self.upper)

    def _bound_blocks(self, problem, name: str = "blocks") -> int:
        """The number of blocks for ``problem`` (a problem or its spec; None: its dim), checked against its dim."""
        blocks = problem.dim if self.blocks is None else self.blocks
        require(blocks <= problem.dim, name, f"must be <= the problem's dim ({problem.dim})", blocks)
        return blocks

    def _draw_blocks(self, problem, rng, n_steps) -> np.ndarray:
        """Uniform block indices for n steps (drawn for both choices, so the stream's use does not depend on it)."""
        return rng.integers(0, self.blocks or problem.dim, n_steps)

    def _init(self, x0, n_workers):
        return project(x0, self.lower, self.upper), tuple(Cursor(w, 0, n_workers) for w in range(n_workers))

    def block_gradient(self, snapshot, cursor: Cursor, problem, drawn_block) -> tuple[BlockGrad, Cursor]:
        """The worker side: (i, grad_i f(snapshot)) for the block chosen by ``choice``, and the advanced cursor."""
        dim = len(snapshot)
        blocks = self.blocks or dim
        if self.choice == "cyclic":
            i = (cursor.worker + cursor.n_workers * cursor.steps) % blocks
        else:
            i = int(drawn_block)
        edges = _edges(dim, blocks)
        lo, hi = edges[i], edges[i + 1]
        return BlockGrad(i, lo, problem.partial_grad(snapshot, slice(lo, hi))), cursor._replace(steps=cursor.steps + 1)

    def work(self, problem, n_workers) -> float:
        """One block's share of a full gradient's flops, 1 / blocks (blocks differ in size by at most one)."""
        return step_flops(problem, 1.0 / (self.blocks or problem.dim))

    def block_step(self, x: np.ndarray, message: BlockGrad, step: float) -> np.ndarray:
        """The server side: a copy of x with block i replaced by P(x[i] - step * g)."""
        lo, hi = message.start, message.start + len(message.values)
        out = x.copy()
        out[lo:hi] = project(x[lo:hi] - step * message.values, self.lower, self.upper)
        return out


@Algorithm.registry.register("asyscd")
@dataclass(frozen=True, kw_only=True)
class AsySCD(CoordinateSteps):
    """Asynchronous stochastic coordinate descent (Liu and Wright, "Asynchronous stochastic coordinate descent:
    parallelism and convergence properties", SIAM J. Optim. 2015; Liu, Wright, Re, Bittorf and Sridhar, ICML 2014
    / JMLR 2015), with the constrained (projected) step of the SIAM paper for the box [lower, upper].

    Update j, made by a worker that read x_hat_j (a stale, possibly inconsistent copy of x_j) and chose block i:

        x_{j+1}[i] = P(x_j[i] - step * grad_i f(x_hat_j)),    x_{j+1}[e] = x_j[e] for the other blocks e,

    with step = ``lr``, or ``gamma`` / L_max where L_max = max_i L_i over the block Lipschitz constants of the
    problem (``block_smoothness``), resolved by ``bind`` (the bound algorithm carries lr = gamma / L_max).  Set
    exactly one of ``gamma`` and ``lr``.  The message is sparse: the block index and its values.  Several messages
    in one update (synchronous rounds) are applied in worker order.

    ``gamma`` must be in (0, 2): even without delay, a coordinate step gamma / L_i with gamma >= 2 does not
    decrease f.  The asynchronous analyses need a smaller gamma, shrinking as the delay bound tau grows (Liu and
    Wright 2015 and Liu et al. 2015 bound gamma in terms of tau, the number of blocks and the coupling
    L_res / L_max); this class checks only the delay-free condition.
    """

    gamma: float | None = None
    lr: float | None = None
    vector_state = True

    def __post_init__(self):
        if self.gamma is None:
            require(self.lr is not None, "lr", "must be set when gamma is not (set exactly one of gamma, lr)", None)
            require(self.lr > 0, "lr", "must be > 0", self.lr)
        else:
            require(self.lr is None, "lr", "must not be set together with gamma (set exactly one of gamma, lr)",
                    self.lr)
            require(0 < self.gamma < 2, "gamma",
                    "must be in (0, 2) (a coordinate step gamma / L_i with gamma >= 2 is not a descent step)",
                    self.gamma)
        self._check_coordinates()

    def check(self, scenario):
        spec = scenario.problem
        self._bound_blocks(spec, "algorithm.blocks")
        require(self.lr is not None or spec.knows_block_smoothness, "algorithm.gamma",
                f"needs the block Lipschitz constants L_i, which problem {kind(spec)} does not provide; set lr "
                "instead", self.gamma)

    def bind(self, problem, n_workers=None):
        blocks = self._bound_blocks(problem)
        if self.lr is not None:
            return replace(self, blocks=blocks)
        Ls = problem.block_smoothness(block_bounds(problem.dim, blocks))
        require(Ls is not None, "gamma", f"needs the block Lipschitz constants L_i, which {type(problem).__name__} "
                "does not provide (block_smoothness); set lr instead", self.gamma)
        L_max = float(np.max(Ls))
        require(math.isfinite(L_max) and L_max > 0, "gamma", f"needs L_max = max_i L_i > 0, got L_max = {L_max}; "
                "set lr instead", self.gamma)
        return replace(self, blocks=blocks, gamma=None, lr=self.gamma / L_max)

    def draw(self, problem, rng, n_steps):
        return self._draw_blocks(problem, rng, n_steps)

    def init(self, x0, n_workers):
        return self._init(x0, n_workers)

    def local(self, snapshot, worker_state, problem, draw):
        return self.block_gradient(snapshot, worker_state, problem, draw)

    def apply(self, server_state, messages, info):
        if self.lr is None:
            raise ParamError("gamma: call bind(problem) first, to resolve the step gamma / L_max")
        x = server_state
        for m in messages:
            x = self.block_step(x, m, self.lr)
        return x

    def params(self, server_state):
        return server_state
