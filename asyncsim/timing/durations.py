"""Keyed timing draws of one run (docs/ARCHITECTURE.md, "Conventions").

``Durations(cluster, seed, message_bytes)`` answers every timing question a protocol asks, each from its own stream
keyed by (seed, stream, worker, step block): compute times, uplink and downlink transfer times, service times, the
transient slow phases and the failure schedule.  Because a draw is a fixed function of its key, the SimPy protocols,
the fast path and the heapq reference see the same numbers whatever order they ask in.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from heapq import heapify, heapreplace

import numpy as np

from ..params import ScenarioError
from ..rng import BLOCK, StepDraws, Stream, generator
from .availability import Alternating, exponential as _exp
from .cluster import Cluster
from .laws import Constant, DelayLaw


class Durations:
    """``compute(w, s)``: the compute time of worker w's step s (law draw or trace value, times the worker's factor);
    ``done(w, s, t)``: when that computation, started at t, finishes (slow phases included); ``task(w, s, t)``: when
    a worker's task of one or more steps, requested at t, finishes (serverless slots and cold starts included: the
    protocols ask this, in order of t when ``capped``); ``uplink(w, s)``,
    ``downlink(w, s)``: latency + bytes / bandwidth (the downlink of step s delivers the parameters step s reads;
    unused when a worker starts at time 0 with version 0); ``service(w, s)``; ``up_at(w, t)`` and
    ``crash_after(w, t)`` for the failure or availability schedule; ``serial``: the seconds a round protocol spends
    between a round's last contribution and its new version (a serial solve every node makes, ADMM's)."""

    def __init__(self, cluster: Cluster, seed: int, message_bytes: int = 0, serial: float = 0.0):
        if not (math.isfinite(serial) and serial >= 0):
            raise ScenarioError(f"the serial step time must be finite and >= 0, got {serial}")
        self.seed = seed
        self.serial = serial
        self.workers = cluster.workers
        self.factors = cluster.factors
        self.message_bytes = message_bytes
        up, down = cluster.transfers(message_bytes)
        self.samplers = {Stream.UPLINK: cluster.uplink.sample, Stream.DOWNLINK: cluster.downlink.sample,
                         Stream.SERVICE: cluster.server.service.sample}
        self._extra = {Stream.UPLINK: up, Stream.DOWNLINK: down, Stream.SERVICE: (0.0,) * self.workers}
        """Per-worker seconds added to each draw: the links' m / bandwidth."""
        self.uplink = _link(seed, Stream.UPLINK, cluster.uplink, up)
        self.downlink = _link(seed, Stream.DOWNLINK, cluster.downlink, down)
        self.service = _scalar(seed, Stream.SERVICE, cluster.server.service.sample, cluster.server.service)
        self._trace = cluster.compute_trace
        if self._trace is None:
            laws = cluster.laws
            self._law_samplers = [law.sample for law in laws]
            by_law = {law: _scalar(seed, Stream.COMPUTE, law.sample, law) for law in set(laws)}
            self._compute = [by_law[law] for law in laws]
        t = cluster.transient
        self._phases = None if t is None else [
            Alternating(seed, Stream.PHASE, w, _exp(t.mean_normal), _exp(t.mean_slow)) for w in range(self.workers)]
        self._slow = None if t is None else t.slowdown
        f = cluster.failures
        self._schedules = None if f is None else [  # each worker's up/down (failures) or online (availability) periods
            Alternating(seed, Stream.FAILURE, w, _exp(1.0 / f.rate), f.downtime.sample) for w in range(self.workers)]
        if cluster.availability is not None:
            self._schedules = cluster.availability.schedules(seed, self.workers)
        self.always_up = self._schedules is None
        """True when no worker ever goes down or offline (no failures, no availability)."""
        s = cluster.serverless
        cold = None if s is None else s.cold_start
        self._cold = None if cold is None or cold.probability == 0 else _scalar(seed, Stream.COLD_START, _cold(cold))
        self._slots = None if s is None or s.concurrency is None else [0.0] * s.concurrency
        self._queued: deque[tuple[float, float]] = deque()  # (start, end) of invocations promised a slot later
        self.capped = self._slots is not None
        """True when tasks wait for one of a limited number of slots: ``task`` must then be asked in order of its
        request times (the protocols ask at a READ event of the requesting worker, so ties go by worker id)."""

    def draws(self, stream: Stream, law: DelayLaw):
        """Per-(worker, step) scalar draws of ``law`` from ``stream`` (for timing a protocol owns, e.g. READ)."""
        return _scalar(self.seed, stream, law.sample)

    def compute(self, worker: int, step: int) -> float:
        if self._trace is None:
            return self._compute[worker](worker, step) * self.factors[worker]
        table = self._trace.table
        if step >= len(table) and not self._trace.cycle:
            raise self.exhausted(worker)
        return float(table[step % len(table), worker]) * self.factors[worker]

    def exhausted(self, worker: int) -> ScenarioError:
        """The error for a time that is not finite: a non-cycling compute trace ran out, or the sums overflowed."""
        if self._trace is None or self._trace.cycle:
            return overflow(worker)
        rows = len(self._trace.table)
        return ScenarioError(f"cluster.compute_trace.path has {rows} rows but worker {worker} needs step {rows}; "
                             f"set cluster.compute_trace.cycle: true or run fewer updates")

    def compute_block(self, worker: int, block: int) -> np.ndarray:
        """Compute times of steps block*BLOCK ... (block+1)*BLOCK - 1 of ``worker`` (the fast path's view)."""
        if self._trace is None:
            raw = self._law_samplers[worker](generator(self.seed, Stream.COMPUTE, worker, block), BLOCK)
        else:
            steps = np.arange(block * BLOCK, (block + 1) * BLOCK)
            table = self._trace.table
            raw = table[steps % len(table), worker]
            if not self._trace.cycle:  # steps past the end never finish; the fast path raises if it needs one
                raw = np.where(steps < len(table), raw, np.inf)
        return raw * self.factors[worker]

    def steps(self, stream: Stream, n_steps: int) -> np.ndarray:
        """The draws of steps 0 .. n_steps-1 of every worker as an (n_steps, workers) array, from whole keyed
        blocks: compute times (COMPUTE, factors applied) or UPLINK / DOWNLINK transfer times."""
        draw = self.compute_block if stream == Stream.COMPUTE else lambda w, b: self.block(stream, w, b)
        n_blocks = -(-n_steps // BLOCK)
        return np.stack([np.concatenate([draw(w, b) for b in range(n_blocks)])[:n_steps]
                         for w in range(self.workers)], axis=1)

    def block(self, stream: Stream, worker: int, block: int) -> np.ndarray:
        """Draws of ``stream`` (UPLINK, DOWNLINK or SERVICE) for one block of steps of ``worker``."""
        raw = self.samplers[stream](generator(self.seed, stream, worker, block), BLOCK)
        extra = self._extra[stream][worker]
        return raw + extra if extra else raw

    def done(self, worker: int, step: int, t: float, load: float = 1.0) -> float:
        """Finish time of worker's step started at t, a task of ``load`` times the work of a step (a coded task's
        share of the job).  In a slow phase work progresses at rate 1 / slowdown."""
        work = self.compute(worker, step) * load
        if self._phases is None:
            return t + work
        phases = self._phases[worker]
        i = phases.locate(t)
        while True:
            end = phases.end(i)
            slow = i % 2 == 1
            capacity = (end - t) / self._slow if slow else end - t
            if work <= capacity:
                return t + work * self._slow if slow else t + work
            work -= capacity
            t = end
            i += 1

    def task(self, worker: int, step: int, t: float, load: float = 1.0, local_steps: int = 1) -> float:
        """When worker's task ``step`` (its compute steps step * local_steps ... + local_steps - 1, each of ``load``
        times a step's work), requested at t, finishes.  A serverless invocation starts when one of the
        ``concurrency`` slots is free (the earliest freed; once started it holds that slot until it finishes,
        cancelled or not; cancelled before it starts, it frees it: ``cancel_queued``), then waits its cold start
        (drawn from the COLD_START stream by (worker, step)), then computes."""
        slots, queued = self._slots, self._queued
        start = t
        if slots is not None:
            start = max(t, slots[0])
            while queued and queued[0][0] <= t:  # started by now: no longer waiting in the queue
                queued.popleft()
        end = start + (self._cold(worker, step) if self._cold is not None else 0.0)
        for h in range(local_steps):
            end = self.done(worker, step * local_steps + h, end, load)
        if slots is not None:
            heapreplace(slots, end)
            if start > t:
                queued.append((start, end))
        return end

    def cancel_queued(self, t: float) -> None:
        """Every invocation requested but not started by t leaves the queue and frees the slot it was promised
        (a round protocol calls this when a round closes at t, which cancels every unfinished task: the queued
        ones, whose starts are the latest, are all among them)."""
        slots, queued = self._slots, self._queued
        while queued and queued[-1][0] > t:
            start, end = queued.pop()  # the latest promise first: the slot is free again when this one would start
            slots[slots.index(end)] = start
            heapify(slots)

    def up_at(self, worker: int, t: float) -> float:
        """t if the worker is up (online) at time t, else the time it rejoins (inf: never)."""
        if self._schedules is None:
            return t
        return self._schedules[worker].next_on(t)

    def crash_after(self, worker: int, t: float) -> tuple[float, float]:
        """(crash, rejoin) for a worker up at time t: the end of the up period that contains t and the end of the
        down period that follows ((inf, inf) without failures or availability; rejoin inf: offline for good).  A
        worker that crashes at exactly t counts as up at t (its crash comes after the events of that instant)."""
        if self._schedules is None:
            return math.inf, math.inf
        f = self._schedules[worker]
        crash = f.next_off(t)
        return crash, f.next_on(crash)


def overflow(worker: int) -> ScenarioError:
    return ScenarioError(f"simulated time overflowed (worker {worker} reached an infinite time): the cluster's "
                         "durations are too heavy-tailed or too long for float64 sums; use shorter or lighter laws")




def _cold(cold):
    """Cold-start delays: ``cold.time`` with probability ``cold.probability``, else 0 (one uniform and one law draw
    per invocation, so the probability and the law can be changed apart)."""
    def sample(g, n):
        hit = g.random(n) < cold.probability
        return np.where(hit, cold.time.sample(g, n), 0.0)
    return sample


def _link(seed: int, stream: Stream, law: DelayLaw, extras: tuple[float, ...]):
    """A link's per-(worker, step) times: the latency law's draw plus the worker's m / bandwidth (``extras``)."""
    if len(set(extras)) <= 1:
        extra = extras[0] if extras else 0.0
        return _scalar(seed, stream, (lambda g, n: law.sample(g, n) + extra) if extra else law.sample, law, extra)
    draws = _scalar(seed, stream, law.sample, law)
    return lambda worker, step: draws(worker, step) + extras[worker]


def _scalar(seed: int, stream: Stream, sample, law: DelayLaw | None = None, extra: float = 0.0):
    """Per-(worker, step) scalar draws, a block of each worker kept as an array of doubles (2 KB: a population of
    clients holds one per client).  A constant ``law`` (plus ``extra``) needs no draws: the same value, the one the
    draws would give, is returned for every key."""
    if isinstance(law, Constant):
        value = float(np.float64(law.value) + extra) if extra else float(law.value)
        return lambda worker, step: value
    return StepDraws(seed, stream, lambda g, n: array("d", np.ascontiguousarray(sample(g, n), dtype=np.float64)))
