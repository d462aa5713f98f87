"""Algorithm interface (optax-style pure functions, DESIGN.md).

An algorithm is a frozen dataclass of hyper-parameters with pure methods:

- ``draw(problem, rng, n_steps)``: the per-step randomness of ``n_steps`` worker steps, stacked (minibatches, ...),
  made from the ALGORITHM stream keyed by (seed, worker, step block), so draws do not depend on execution order;
- ``init(x0, n_workers) -> (server_state, worker_states)``;
- ``local(snapshot, worker_state, problem, draw) -> (message, worker_state)``: the worker-side computation on the
  (possibly stale) parameters it read;
- ``apply(server_state, messages, info) -> server_state``: the server-side update with the messages of one update,
  in worker order, and ``info`` (an :class:`ApplyInfo`);
- ``params(server_state) -> x``: the current parameters;
- optional: ``bind(problem) -> algorithm`` resolves problem-dependent defaults (a step size from L) and checks
  conditions before a run; ``metrics(server_state) -> dict`` adds columns to the recorded metrics (SEACD's energy);
  ``finished(server_state)`` ends the run early (a declared local minimum).

No method mutates its inputs (the tests pass read-only arrays).  One implementation serves the replay and the real
execution mode.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..params import Registry, ScenarioError


class ApplyInfo(NamedTuple):
    """What the server knows when it applies update k: the contributing workers, their staleness (update minus the
    oldest version read) and the objective (for server-side rules that evaluate f, such as SEACD's energy)."""

    update: int
    workers: tuple[int, ...]
    staleness: tuple[int, ...]
    problem: object = None


class Algorithm:
    """Base class of algorithms; ``Algorithm.registry`` maps YAML ``kind`` names to algorithms."""

    registry = Registry("algorithm")

    def draw(self, problem, rng: np.random.Generator, n_steps: int):
        raise NotImplementedError

    def init(self, x0: np.ndarray, n_workers: int):
        raise NotImplementedError

    def local(self, snapshot: np.ndarray, worker_state, problem, draw):
        raise NotImplementedError

    def apply(self, server_state, messages: list, info: ApplyInfo):
        raise NotImplementedError

    def params(self, server_state) -> np.ndarray:
        raise NotImplementedError

    def bind(self, problem) -> "Algorithm":
        """This algorithm with problem-dependent defaults resolved; raise ParamError if the problem does not meet
        a condition the method needs.  Default: unchanged."""
        return self

    def work(self, problem) -> float:
        """The flops of one worker step (for ``cluster.flops_per_second``): by default one full gradient,
        ``problem.grad_flops()``; a minibatch or a coordinate block is a fraction of it."""
        return step_flops(problem)

    def metrics(self, server_state) -> dict[str, float]:
        """Extra metrics recorded with the loss (default: none)."""
        return {}

    def finished(self, server_state) -> bool:
        """True when the algorithm has stopped (e.g. declared a local minimum); the replay ends there."""
        return False


def average(messages: list[np.ndarray]) -> np.ndarray:
    """(1/m) sum_j messages[j], summed in the given (worker) order so the result does not depend on arrival order;
    a single message is returned as is (bit for bit)."""
    if len(messages) == 1:
        return messages[0]
    total = messages[0] + messages[1]
    for m in messages[2:]:
        total += m
    return total / len(messages)


def step_flops(problem, fraction: float = 1.0) -> float:
    """``fraction`` of a full gradient's flops; a problem that does not count them cannot time steps by work."""
    flops = problem.grad_flops()
    if flops is None:
        raise ScenarioError(f"cluster.flops_per_second needs the problem's gradient flops, which problem "
                         f"{type(problem).__name__} does not count; give compute times in seconds instead")
    return fraction * flops
