"""Synchronous protocols: rounds with a barrier, backup workers, deadlines, ring all-reduce and coded tasks.

In round k every worker computes on version k.  The server closes the round when its rule is met, applies one
update made of the kept contributions (averaged by the algorithm, in worker order) and broadcasts version k+1.
Work still running when a round closes is cancelled (status CANCELLED) and its worker starts the next round; a
contribution that reaches the server after the round's contributions are complete is dropped (status DROPPED).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import simpy

from ..params import require
from .cluster import LONGEST
from .codes import Code
from .engine import FifoServer, Phase
from .fast import sync_trace
from .population import Pool
from .protocol import APPLIED, CANCELLED, DROPPED, LOST, Family, Protocol, RealLoop, Sim, register


def allreduce_time(n: int, alpha: float, message_bytes: float, bandwidth: float | None = None) -> float:
    """Ring all-reduce of a message of m bytes over n nodes: 2 (n - 1) (alpha + m / (n beta)), with alpha the
    per-message latency in seconds and beta the link bandwidth in bytes per second (``None``: infinite).

    A reduce-scatter and an all-gather, each n - 1 steps in which every node sends one chunk of m/n bytes to its
    neighbour (Patarasuk and Yuan, "Bandwidth optimal all-reduce algorithms for clusters of workstations", JPDC
    2009; Thakur, Rabenseifner and Gropp, "Optimization of collective communication operations in MPICH", IJHPCA
    2005).  Zero for n = 1.
    """
    require(isinstance(n, (int, np.integer)) and n >= 1, "n", "must be an integer >= 1", n)
    require(alpha >= 0 and math.isfinite(alpha), "alpha", "must be finite and >= 0", alpha)
    require(message_bytes >= 0 and math.isfinite(message_bytes), "message_bytes", "must be finite and >= 0",
            message_bytes)
    require(bandwidth is None or bandwidth > 0, "bandwidth", "must be > 0 or None (infinite)", bandwidth)
    transfer = 0.0 if bandwidth is None else message_bytes / (n * bandwidth)
    return 2 * (n - 1) * (alpha + transfer)


class Rounds(Protocol):
    """Base of the synchronous round protocols: every contribution of round k reads version k (staleness 0)."""

    family = Family.ROUNDS
    bounds_staleness = True

    def staleness_bound(self, cluster, n_updates):
        return 0

    def waits_for(self, workers: int) -> int | None:
        return workers if self.every_worker else None

    def rows(self, workers, n_updates):
        return float(n_updates) * workers


def run_rounds(sim: Sim, *, keep: int | None = None, deadline: float | None = None,
               allreduce: float | None = None, local_steps: int = 1, code=None, select: int | None = None,
               weights=None) -> None:
    """One implementation of the round protocols.

    ``keep`` k: close when k contributions have been served (default n: all workers); ``code`` (a
    ``codes.Code``): every worker's task is ``code.load(n)`` of a step's work, and the round closes as soon as the
    served tasks decode (``code.decodes``); ``deadline`` D: close at
    round start + D with what has been served by then (or, if nothing has arrived, with the first arrival);
    ``allreduce`` c: no server and no links; the round closes c seconds after the last worker finishes (the ring
    all-reduce), and the result is on every worker at once.  A round's new version exists ``sim.times.serial``
    seconds after it closes (a serial step every node makes; 0 by default).  Failures and availability: a crashed (or
    offline) worker's work is lost; when it rejoins during the round it computes again on the round's version, and
    a round waits for it (under ``sync``, a client offline for good stops the run with an error).

    ``select`` C: the workers are a population of clients, C of which take part in each round (FedAvg's partial
    participation, McMahan et al. 2017): when a round opens, C clients online at that instant are drawn uniformly
    without replacement (``population.Pool``; all of them if fewer are online, and if none is the round opens when
    the first comes online), and the round waits for C contributions: a drawn client that goes offline before
    its contribution arrives is replaced at once by another drawn the same way (when one is online), which
    computes on the round's version.  Rows name the client, and its step counts the client's own tasks.  With
    ``weights`` (data sizes) the draws are proportional to them (successive sampling without replacement).
    """
    clock, times, log, K = sim.clock, sim.times, sim.log, sim.n_updates
    n = sim.cluster.workers
    need = n if keep is None else keep
    load = 1.0 if code is None else code.load(n)
    if code is None:
        def complete(kept):
            return len(kept) == (need if pool is None else len(rnd["roster"]))
    else:
        def complete(kept):
            return code.decodes(frozenset(w for w, *_ in kept), n)
    fifo = FifoServer(sim.cluster.server.slots)
    finished = clock.event()
    rnd = {"k": 0, "start": 0.0, "kept": [], "last": 0.0, "closing": False, "timed_out": False,
           "closed": clock.event()}
    computing: dict[int, simpy.Process] = {}
    link = allreduce is None
    pool = None if select is None else Pool(n, times.seed, times.up_at, times.always_up, weights)
    steps = [0] * n if pool else None  # population: each client's tasks so far

    def roster(k, t):  # population: the clients of round k, and when it opens (at t, or when one comes online)
        while True:
            chosen = []
            while len(chosen) < select:
                c, t_next = pool.take(k, t)
                if c is None:
                    break
                chosen.append(c)
            if chosen or t_next == math.inf:
                return chosen, t
            t = t_next

    if pool:
        rnd["roster"], rnd["start"] = roster(0, 0.0)

    def close_at(t):
        rnd["closing"] = True
        event = clock.at(t + sim.times.serial, Phase.APPLY, -1)
        event.callbacks.append(close)

    def close(event):
        t, k = event.env.now, rnd["k"]
        for w, step, *row in sorted(rnd["kept"]):
            log.add(k, w, step, k, k, APPLIED, *row, t)
        rnd.update(k=k + 1, start=t, kept=[], closing=False, timed_out=False)
        if k + 1 == K:
            finished.succeed()
            return
        if times.capped:
            times.cancel_queued(t)
        for proc in list(computing.values()):
            proc.interrupt(t)
        computing.clear()
        if pool:
            for c in rnd["roster"]:
                pool.put(c)
            rnd["roster"], rnd["start"] = roster(k + 1, t)
            if rnd["start"] > t:  # nobody online: the round opens when the first client comes online
                if rnd["start"] < math.inf:
                    clock.at(rnd["start"], Phase.CLOSE, -1).callbacks.append(lambda e: open_round(k + 1))
                return
        open_round(k + 1)

    def open_round(k):
        t = rnd["start"]
        if deadline is not None:
            timer = clock.at(t + deadline, Phase.CLOSE, -1)
            timer.callbacks.append(lambda e, k=k: time_out(k))
        closed, rnd["closed"] = rnd["closed"], clock.event()
        closed.succeed()

    def time_out(k):
        if rnd["k"] != k or rnd["closing"]:
            return
        rnd["timed_out"] = True
        if rnd["kept"]:
            close_at(max(clock.now, rnd["last"]))

    def arrive(w, step, k, t_read, t_done, t_arrive):
        if rnd["closing"]:
            log.add(k, w, step, k, k, DROPPED, t_read, t_done, t_arrive, t_arrive)
            return
        t_served = fifo.serve(t_arrive, times.service(w, step)) if link else t_arrive
        rnd["last"] = max(rnd["last"], t_served)
        rnd["kept"].append((w, step, t_read, t_done, t_arrive))
        if complete(rnd["kept"]) or rnd["timed_out"]:
            close_at(rnd["last"] + (allreduce or 0.0))

    def replace_client(w, k):  # population: slot w's client went offline; draw another for round k
        pool.put(rnd["roster"][w])
        while True:
            c, t_next = pool.take(k, clock.now)
            if c is not None:
                rnd["roster"][w] = c
                return c
            if t_next == math.inf:
                return None
            yield clock.at(t_next, Phase.READ, w)

    def worker(w):  # worker w, or with ``select`` the slot w, running client ``who``'s tasks
        step, who, mine = 0, w, -1
        t_up = t_back = rnd["start"] if pool else times.up_at(w, 0.0)  # t_back: when it last rejoined (came online)
        if t_up > 0.0:
            if t_up == math.inf:
                return
            yield clock.at(t_up, Phase.READ, w)
        while True:
            k = rnd["k"]
            closed = rnd["closed"]
            if pool:
                if k != mine:  # a new round: the slot's client in it, if it has one
                    mine = k
                    if w >= len(rnd["roster"]):
                        yield closed
                        continue
                    who, t_up, t_back = rnd["roster"][w], rnd["start"], rnd["start"]
                step = steps[who]
            t_send = max(rnd["start"], t_back)
            t_read = t_send if (step == 0 and t_send == 0.0) or not link else t_send + times.downlink(who, step)
            crash, rejoin = times.crash_after(who, t_up)
            if crash <= t_read:  # down (or offline) when the parameters arrive: rejoin and ask again
                if pool:  # (the slot draws another client when this one goes)
                    yield clock.at(crash, Phase.READ, w)
                    who = yield from replace_client(w, k)
                    if who is None:
                        return
                    t_up = t_back = clock.now
                    continue
                if rejoin == math.inf:
                    return
                if rejoin > clock.now:
                    yield clock.at(rejoin, Phase.READ, w)
                t_up, t_back = rejoin, max(rejoin, clock.now)  # from rejoin on: a later crash is checked next
                continue
            t_done = t_arrive = t_read
            computing[w] = procs[w]
            if pool:
                steps[who] = step + 1
            try:
                if times.capped:  # ask for a slot at the read instant: requests in (time, worker) order
                    yield clock.at(t_read, Phase.READ, w)
                t_done = times.task(who, step, t_read, load, local_steps)
                t_arrive = t_done + times.uplink(who, step) if link else t_done
                if crash < t_arrive:
                    yield clock.at(crash, Phase.DONE, w)
                    del computing[w]
                    log.add(k, who, step, k, k, LOST, t_read, min(t_done, crash), crash, crash)
                    step += 1
                    if pool:
                        who = yield from replace_client(w, k)
                        if who is None:
                            return
                        t_up = t_back = clock.now
                        continue
                    if rejoin == math.inf:
                        return
                    yield clock.at(rejoin, Phase.READ, w)
                    t_up = t_back = rejoin
                    continue
                yield clock.at(t_arrive, Phase.ARRIVE, w)
            except simpy.Interrupt as stop:  # the round closed before this contribution arrived
                t = stop.cause
                log.add(k + 1, who, step, k, k, CANCELLED, min(t_read, t), min(t_done, t), min(t_arrive, t), t)
                step, t_up = step + 1, t
                continue
            del computing[w]
            arrive(who, step, k, t_read, t_done, t_arrive)
            step, t_up = step + 1, t_arrive
            yield closed

    procs = [clock.process(worker(w)) for w in range(select or n)]
    if deadline is not None and rnd["start"] < math.inf:
        clock.at(rnd["start"] + deadline, Phase.CLOSE, -1).callbacks.append(lambda e: time_out(0))
    clock.run(until=finished)


@register("sync")
@dataclass(frozen=True, kw_only=True)
class Sync(Rounds):
    """Synchronous rounds with a barrier: in round k every worker computes on version k; contributions queue at the
    server (FIFO); when the last one has been served, the server applies one aggregated update (k -> k+1) and
    broadcasts version k+1.  Update k is made of n contributions with staleness 0.  The round time is
    max_i (compute_i + latencies_i) plus queueing, so E[round] = H_n / mu for n exponential(mu) workers."""

    fast_path = staticmethod(sync_trace)
    real_loop = RealLoop.BARRIER
    every_worker = True

    def run(self, sim):
        run_rounds(sim)


@register("k_of_n")
@dataclass(frozen=True, kw_only=True)
class KOfN(Rounds):
    """Synchronous rounds with backup workers (Chen et al. 2016, "Revisiting distributed synchronous SGD"): the
    round closes when the first ``k`` contributions have been served; the other n - k are dropped or cancelled and
    every worker starts the next round on the new version.  With no latency the round time is the k-th order
    statistic of the n compute times."""

    k: int

    def __post_init__(self):
        require(self.k >= 1, "k", "must be >= 1", self.k)

    def check_cluster(self, cluster):
        require(self.k <= cluster.workers, "protocol.k", f"must be <= cluster.workers ({cluster.workers})", self.k)

    def waits_for(self, workers):
        return self.k

    def run(self, sim):
        self.check_cluster(sim.cluster)  # (again: simulate may be called without a scenario)
        run_rounds(sim, keep=self.k)


@register("deadline")
@dataclass(frozen=True, kw_only=True)
class Deadline(Rounds):
    """Synchronous rounds with a deadline (as in anytime / deadline-based SGD, e.g. Ferdinand et al. 2020): the
    round closes ``deadline`` seconds after it starts, with the contributions served by then; later ones are
    dropped or cancelled.  If none has arrived by the deadline the round closes with the first that does; if all
    n arrive earlier it closes when they have been served."""

    deadline: float

    def __post_init__(self):
        require(0 < self.deadline <= LONGEST, "deadline", f"must be in (0, {LONGEST:g}] s", self.deadline)

    def run(self, sim):
        run_rounds(sim, deadline=self.deadline)


@register("allreduce")
@dataclass(frozen=True, kw_only=True)
class AllReduce(Rounds):
    """Synchronous data parallel without a server: after every worker has computed its gradient, a ring
    all-reduce averages them in 2(n-1)(alpha + m/(n beta)) seconds (Patarasuk and Yuan 2009), and every worker
    holds version k+1.  alpha is ``latency`` (default: the mean of cluster.uplink), beta ``bandwidth`` in bytes/s
    (default: cluster.network.uplink_bandwidth; null is infinite), m the message size."""

    every_worker = True

    latency: float | None = None
    bandwidth: float | None = None

    def __post_init__(self):
        require(self.latency is None or 0 <= self.latency <= LONGEST, "latency", f"must be in [0, {LONGEST:g}] s",
                self.latency)
        require(self.bandwidth is None or self.bandwidth >= 1 / LONGEST, "bandwidth", f"must be >= {1 / LONGEST:g}",
                self.bandwidth)

    def cost(self, cluster, message_bytes: int) -> float:
        alpha = cluster.uplink.mean if self.latency is None else self.latency
        beta = cluster.network.uplink_bandwidth if self.bandwidth is None else self.bandwidth
        return allreduce_time(cluster.workers, alpha, message_bytes, beta)

    def run(self, sim):
        run_rounds(sim, allreduce=self.cost(sim.cluster, sim.times.message_bytes))


@register("coded")
@dataclass(frozen=True, kw_only=True)
class Coded(Rounds):
    """Coded rounds (Lee, Lam, Pedarsani, Papailiopoulos and Ramchandran, "Speeding up distributed machine learning
    using codes", IEEE Trans. Inf. Theory 2018; Tandon, Lei, Dimakis and Karampatziakis, "Gradient coding", ICML
    2017): every worker computes one coded task of ``code.load(n)`` of the job (a compute draw times that load: Lee
    et al.'s load-scaled law is the cluster's compute law), and the round closes at the first instant at which the
    served tasks decode the job (``codes.Code.decodes``); the others are dropped or cancelled, as in ``k_of_n``.  The
    round's applied rows are the tasks that decoded it.  With an (n, k) MDS code the round time is the k-th order
    statistic of the loaded times, so on a cluster whose speeds are k (the same work per task) it is ``k_of_n``'s
    trace, bit for bit when k is a power of two."""

    code: Code
    coded = True

    def __post_init__(self):
        require(self.code is not None, "code", f"is required (a mapping with a kind: one of "
                f"{', '.join(Code.registry.kinds())})", self.code)

    def check_cluster(self, cluster):
        self.code.check(cluster.workers)

    def waits_for(self, workers):
        return self.code.waits_for(workers)

    def run(self, sim):
        self.check_cluster(sim.cluster)  # (again: simulate may be called without a scenario)
        run_rounds(sim, code=self.code)
