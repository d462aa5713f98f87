"""Algorithm interface (optax-style pure functions; docs/ARCHITECTURE.md, "Algorithm").

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
- requirements, checked when a scenario loads (so ``validate`` and ``run`` agree): ``accepts(protocol)`` says from the
  protocol's capabilities (its family, ``every_worker``, ``takes_local_steps``, ...) whether the method is defined
  under it, and ``check(scenario)`` checks what else it needs of the problem spec, the cluster and the run;
  ``serial_step``: the method has a serial step after each round (so ``cluster.flops_per_second`` must time it);
  ``compressible``: a message is one vector the server only adds up, which a scenario's ``compression:`` may compress
  (``algorithms.compressed``).

No method mutates its inputs (the tests pass read-only arrays).  One implementation serves the replay and the real
execution mode.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import numpy as np

from ..budget import Footprint
from ..params import Registry, ScenarioError
from ..params import kind as registry_kind
from ..timing.protocol import ClassCapabilities


class ApplyInfo(NamedTuple):
    """What the server knows when it applies update k: the contributing workers, their staleness (update minus the
    oldest version read) and the objective (for server-side rules that evaluate f, such as SEACD's energy)."""

    update: int
    workers: tuple[int, ...]
    staleness: tuple[int, ...]
    problem: object = None

    @classmethod
    def at(cls, update: int, workers, read_versions, problem=None) -> "ApplyInfo":
        """The info of update k = ``update`` made of the contributions of ``workers`` (in worker order), which read
        ``read_versions``: staleness tau_j = k - r_j (docs/ARCHITECTURE.md, "Versions and staleness").  Every
        apply in the package (replay, real server and barrier, real Hogwild, calibration) builds its info here."""
        return cls(update, tuple(workers), tuple(update - r for r in read_versions), problem)


class _AcceptedKinds:
    """``Algorithm.protocols``: the registered protocol kinds whose class capabilities the algorithm accepts, in
    registration order (derived from ``accepts``; the messages of the scenario check list them)."""

    def __get__(self, obj, cls) -> tuple[str, ...]:
        from ..timing.protocols import Protocol  # (every protocol family registered)

        return tuple(k for k, p in Protocol.registry.items() if cls.accepts(ClassCapabilities(p)))


class Algorithm:
    """Base class of algorithms; ``Algorithm.registry`` maps YAML ``kind`` names to algorithms."""

    registry = Registry("algorithm")
    vector_state: ClassVar[bool] = False
    """True when the server state is the parameter vector itself (``init``'s state, what ``apply`` takes and
    returns), so lock-free shared memory can hold it (real Hogwild)."""
    recorded: ClassVar[tuple[str, ...]] = ()
    """The names of the extra metrics the algorithm records (``metrics``)."""
    serial_step: ClassVar[bool] = False
    """True when every round ends with a serial step timed in flops (``serial_flops``), as ADMM's solve."""
    minibatches: ClassVar[bool] = False
    """True when a worker's draw is minibatches of training samples (``Problem.sample_batches``), which a
    scenario's ``split`` takes from the worker's own shard."""
    compressible: ClassVar[bool] = False
    """True when a worker's message is one float64 vector of the problem's dimension that the server only adds up
    (a gradient or a model change), so a scenario's ``compression:`` may compress it (``algorithms.compressed``)."""

    @staticmethod
    def accepts(protocol) -> bool:
        """Whether this method is defined under ``protocol``, answered from the protocol's capabilities
        (``asyncsim.timing.protocol``); default: under any protocol."""
        return True

    protocols = _AcceptedKinds()

    def memory(self, problem, workers: int, vectors_per_worker: float = 2.0) -> Footprint:
        """About the bytes of parameter-sized arrays a run holds (``problem``: the spec): the server state and
        ``vectors_per_worker`` per worker (a message in flight, a read buffer)."""
        dim = problem.dim
        total = 8.0 * dim * (vectors_per_worker * workers + 8)
        if workers > dim:
            return Footprint(total, "cluster.workers", workers, f"{vectors_per_worker:g} vectors of {dim} per worker")
        return Footprint(total, "problem.dim", dim, f"parameter vectors of {dim} entries")

    def draw_size(self) -> Footprint:
        """About the bytes of one worker step's randomness (``draw``), with the field that sizes it; the ALGORITHM
        stream keeps a block of 256 steps of it per worker.  Default: one number per step."""
        return Footprint(8.0, "algorithm.kind", registry_kind(self), "draws")

    def resolve(self, protocol) -> "Algorithm":
        """This algorithm with the defaults the protocol sets filled in (default: unchanged; the local-step
        methods take the protocol's ``local_steps``)."""
        return self

    def check(self, scenario) -> None:
        """Raise ParamError (naming the YAML path) if the scenario's problem spec, cluster or run do not meet a
        condition of this method; called when a scenario loads.  Default: nothing to check."""

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


def local_draw_size(local_steps: int, batch_size: int) -> Footprint:
    """The draws of one period of local steps (``local_batches``), named by the larger of its two factors."""
    field, value = (("algorithm.local_steps", local_steps) if local_steps >= batch_size else
                    ("algorithm.batch_size", batch_size))
    return Footprint(8.0 * local_steps * batch_size, field, value, f"{local_steps} minibatches of {batch_size}")


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
