"""An algorithm whose worker messages are compressed: ``Compressed(inner, compressor)``, built from a scenario's
``compression:`` section (``Scenario.method``) and itself an :class:`Algorithm`, so the replay, the real mode and
calibration run it unchanged (docs/ARCHITECTURE.md, "Compressed messages")."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..compression import Compressor
from ..params import ParamError, kind
from .base import Algorithm


def compressible_kinds() -> list[str]:
    """The registered algorithms whose message is one vector (``Algorithm.compressible``), sorted."""
    return sorted(k for k, cls in Algorithm.registry.items() if cls.compressible)


class _Keyed:
    """A block of the wrapper's draws: row i is (the inner algorithm's draw i, the compressor's key of that step).

    The compressor's generator of worker w's step s is ``SeedSequence(seed, spawn_key=(ALGORITHM, w, s // 256,
    s % 256))``: the key of the ALGORITHM block the inner draw comes from, plus the row, so it is a fixed function
    of (seed, worker, step), like every draw, and independent of the inner draws (which come first, unchanged)."""

    __slots__ = ("inner", "entropy", "key", "pool")

    def __init__(self, inner, rng: np.random.Generator | None):
        self.inner = inner
        seq = None if rng is None else rng.bit_generator.seed_seq
        self.entropy, self.key, self.pool = (None, (), 0) if seq is None else (seq.entropy, seq.spawn_key,
                                                                                seq.pool_size)

    def __getitem__(self, row: int):
        if self.entropy is None:
            return self.inner[row], None
        seq = np.random.SeedSequence(self.entropy, spawn_key=(*self.key, int(row)), pool_size=self.pool)
        return self.inner[row], seq

    def __len__(self):
        return len(self.inner)


@dataclass(frozen=True, kw_only=True)
class Compressed(Algorithm):
    """``inner`` with its worker messages compressed by ``compressor``: ``local`` runs the inner ``local``, which
    gives the message m (a gradient, or a model change), and sends C(m), or with error feedback c = C'(e + m) while
    the worker keeps e <- e + m - c in its state (which is then (inner state, e), e = None standing for 0); C' is
    the compressor's contraction (``Compressor.contractive``: C itself for top_k and sign, C / (1 + omega) for the
    unbiased rand_k and qsgd).
    The server applies the compressed messages with the inner ``apply``.  A message is
    ``compressor.bytes(d)`` bytes on the links; everything else is the inner algorithm's."""

    inner: Algorithm
    compressor: Compressor

    def __post_init__(self):
        if not self.inner.compressible:
            raise ParamError(f"compression.kind {kind(self.compressor)} needs an algorithm whose message is one "
                             f"vector (a gradient or a model change: {', '.join(compressible_kinds())}); algorithm "
                             f"{kind(self.inner)} sends another kind of message")

    # -- what the inner algorithm says, for the whole wrapper --
    @property
    def vector_state(self):
        return self.inner.vector_state

    @property
    def recorded(self):
        return self.inner.recorded

    @property
    def serial_step(self):
        return self.inner.serial_step

    compressible = False  # compressed once

    def accepts(self, protocol):
        return self.inner.accepts(protocol)

    @property
    def protocols(self):
        return self.inner.protocols

    def resolve(self, protocol):
        return replace(self, inner=self.inner.resolve(protocol))

    def check(self, scenario):
        self.inner.check(scenario)

    def bind(self, problem, n_workers=None):
        self.compressor.check(problem.dim)
        inner = self.inner.bind(problem, n_workers)
        return self if inner is self.inner else replace(self, inner=inner)

    def memory(self, problem, workers, *args):
        """The inner algorithm's arrays, and with error feedback one more vector per worker (e)."""
        inner = self.inner.memory(problem, workers, *args)
        extra = 8.0 * problem.dim * workers if self.compressor.error_feedback else 0.0
        return replace(inner, bytes=inner.bytes + extra)

    def draw_size(self):
        """The inner algorithm's draws (a step's compressor generator is made when the step is computed)."""
        return self.inner.draw_size()

    # -- the update rule --
    def draw(self, problem, rng, n_steps):
        return _Keyed(self.inner.draw(problem, rng, n_steps), rng if self.compressor.random else None)

    def init(self, x0, n_workers):
        state, worker_states = self.inner.init(x0, n_workers)
        return state, tuple((w, None) for w in worker_states)

    def local(self, snapshot, worker_state, problem, draw):
        inner_state, e = worker_state
        inner_draw, key = draw
        m, inner_state = self.inner.local(snapshot, inner_state, problem, inner_draw)
        if not isinstance(m, np.ndarray) or m.ndim != 1:
            raise TypeError(f"compression needs a message that is one vector; algorithm {kind(self.inner)} sent "
                            f"{type(m).__name__}")
        rng = None if key is None else np.random.default_rng(key)
        if not self.compressor.error_feedback:
            return self.compressor.compress(m, rng), (inner_state, None)
        v = m if e is None else e + m
        c = self.compressor.contractive(v, rng)
        return c, (inner_state, v - c)

    def apply(self, server_state, messages, info):
        return self.inner.apply(server_state, messages, info)

    def params(self, server_state):
        return self.inner.params(server_state)

    def reply(self, server_state, worker):
        return self.inner.reply(server_state, worker)

    # -- cost model and reporting --
    def work(self, problem, n_workers):
        return self.inner.work(problem, n_workers)

    def message_bytes(self, problem, n_workers):
        """The compressor's size of a message of the problem's dimension (``Compressor.bytes``)."""
        return self.compressor.bytes(problem.dim)

    def serial_flops(self, problem):
        return self.inner.serial_flops(problem)

    def summary(self, problem, worker_states):
        return self.inner.summary(problem, [w for w, _ in worker_states])

    def metrics(self, server_state):
        return self.inner.metrics(server_state)

    def finished(self, server_state):
        return self.inner.finished(server_state)


def unwrapped(algorithm: Algorithm) -> Algorithm:
    """The algorithm a compressed one wraps (itself otherwise): what the summaries name."""
    return algorithm.inner if isinstance(algorithm, Compressed) else algorithm


__all__ = ["Compressed", "compressible_kinds", "unwrapped"]
