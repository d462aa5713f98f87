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
- optional: ``bind(problem, n_workers) -> algorithm`` resolves problem- and cluster-dependent defaults (a step size from L) and checks
  conditions before a run; ``reply(server_state, worker)``: what the server sends a worker that reads (default: the
  parameters; EASGD replies with the center its exchange used); ``metrics(server_state) -> dict`` adds columns to
  the recorded metrics (SEACD's energy); ``finished(server_state)`` ends the run early (a declared local minimum);
  ``summary(problem, worker_states) -> dict`` adds entries to summary.json (ADMM's memory per node);
- cost model (for ``cluster.flops_per_second``): ``work(problem, n_workers)`` flops of one worker step,
  ``message_bytes(problem, n_workers)`` the size of a message (None: 8 bytes per parameter), ``serial_flops(problem)``
  the flops every node spends after each round's reduction before the next version exists (ADMM's solve);
- ``protocols``: the protocol kinds the method runs under (None: any).

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
    protocols: tuple[str, ...] | None = None
    """The protocol kinds this algorithm runs under (None: any); checked when a scenario loads."""

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

    def bind(self, problem, n_workers: int | None = None) -> "Algorithm":
        """This algorithm with problem- and cluster-dependent defaults resolved (``n_workers``: the cluster's
        workers, when known); raise ParamError if the problem does not meet a condition the method needs.
        Default: unchanged."""
        return self

    def reply(self, server_state, worker: int):
        """What the server sends ``worker`` when it reads (the ``snapshot`` its ``local`` gets): the parameters."""
        return self.params(server_state)

    def work(self, problem, n_workers: int) -> float:
        """The flops of one worker step (for ``cluster.flops_per_second``): by default one full gradient,
        ``problem.grad_flops()``; a minibatch or a coordinate block is a fraction of it."""
        return step_flops(problem)

    def message_bytes(self, problem, n_workers: int) -> int | None:
        """Bytes of one message on the links (None: the scenario's default, 8 bytes per parameter)."""
        return None

    def serial_flops(self, problem) -> float:
        """Flops of the serial step after each round's reduction (default: none)."""
        return 0.0

    def summary(self, problem, worker_states) -> dict:
        """Entries added to summary.json at the end of a run (default: none)."""
        return {}

    def metrics(self, server_state) -> dict[str, float]:
        """Extra metrics recorded with the loss (default: none)."""
        return {}

    def finished(self, server_state) -> bool:
        """True when the algorithm has stopped (e.g. declared a local minimum); the replay ends there."""
        return False


def total(messages: list[np.ndarray]) -> np.ndarray:
    """sum_j messages[j], summed in the given (worker) order so the result does not depend on arrival order; a
    single message is returned as is (bit for bit)."""
    if len(messages) == 1:
        return messages[0]
    out = messages[0] + messages[1]
    for m in messages[2:]:
        out += m
    return out


def average(messages: list[np.ndarray]) -> np.ndarray:
    """(1/m) sum_j messages[j], summed in worker order (``total``); a single message is returned as is."""
    return messages[0] if len(messages) == 1 else total(messages) / len(messages)


def local_batches(problem, rng, n_steps: int, local_steps: int, batch_size: int) -> np.ndarray:
    """The minibatches of ``n_steps`` periods of ``local_steps`` local steps each, shape (n_steps, local_steps, ...)."""
    b = problem.sample_batches(rng, n_steps * local_steps, batch_size)
    return b.reshape(n_steps, local_steps, *b.shape[1:])


def step_flops(problem, fraction: float = 1.0) -> float:
    """``fraction`` of a full gradient's flops; a problem that does not count them cannot time steps by work."""
    flops = problem.grad_flops()
    if flops is None:
        raise ScenarioError(f"cluster.flops_per_second needs the problem's gradient flops, which problem "
                         f"{type(problem).__name__} does not count; give compute times in seconds instead")
    return fraction * flops


def minibatch_flops(problem, batch_size: int) -> float:
    """The flops of one minibatch gradient: batch_size / n_samples of a full gradient for finite sums (a full
    gradient otherwise)."""
    n = getattr(problem, "n_samples", None)
    return step_flops(problem, 1.0 if n is None else min(1.0, batch_size / n))
