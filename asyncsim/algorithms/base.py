"""Algorithm interface (optax-style pure functions, DESIGN.md).

An algorithm is a frozen dataclass of hyper-parameters with pure methods:

- ``draw(problem, rng, n_steps)``: the per-step randomness of ``n_steps`` worker steps, stacked (minibatches, ...),
  made from the ALGORITHM stream keyed by (seed, worker, step block), so draws do not depend on execution order;
- ``init(x0, n_workers) -> (server_state, worker_states)``;
- ``local(snapshot, worker_state, problem, draw) -> (message, worker_state)``: the worker-side computation on the
  (possibly stale) parameters it read;
- ``apply(server_state, messages, info) -> server_state``: the server-side update with the messages of one update,
  in worker order, and ``info`` (an :class:`ApplyInfo`);
- ``params(server_state) -> x``: the current parameters.

No method mutates its inputs (the tests pass read-only arrays).  One implementation serves the replay and the real
execution mode.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..params import Registry


class ApplyInfo(NamedTuple):
    """What the server knows when it applies update k: the contributing workers and their staleness."""

    update: int
    workers: tuple[int, ...]
    staleness: tuple[int, ...]


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


def average(messages: list[np.ndarray]) -> np.ndarray:
    """(1/m) sum_j messages[j], summed in the given (worker) order so the result does not depend on arrival order;
    a single message is returned as is (bit for bit)."""
    if len(messages) == 1:
        return messages[0]
    total = messages[0] + messages[1]
    for m in messages[2:]:
        total += m
    return total / len(messages)
