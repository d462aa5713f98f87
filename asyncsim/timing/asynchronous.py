"""The asynchronous family: a parameter server with consistent reads, and its variants (ssp, ringmaster, rennala,
buffered, periodic, drain).

One SimPy implementation, ``run_async``, with options switched on by the protocol; ``shared_memory`` runs it too,
and ``periodic`` with ``synchronous: true`` runs the rounds of ``rounds.py`` instead.  Processes only move time;
they never look at numeric values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import simpy

from ..params import ParamError, optional, require
from .engine import FifoServer, Phase
from .fast import async_trace
from .population import Pool
from .protocol import (APPLIED, CANCELLED, DROPPED, LOST, SELECTIONS, Family, Protocol, RealLoop, Sim, register,
                       selection_weights)

def run_async(sim: Sim, *, ssp: int | None = None, max_staleness: int | None = None, batch: int | None = None,
              keep_stale: bool = False, local_steps: int = 1, read_time=None, drain: float | None = None,
              concurrency: int | None = None, weights=None) -> None:
    """The asynchronous parameter server and its variants (one implementation, options switched on by protocol).

    Worker w loops: get parameters (version v), compute ``local_steps`` gradients, send (uplink), queue at the
    server, get applied as update k, and receive version k+1 in the reply (downlink).  Options:

    - ``ssp``: the server holds a worker's reply while it is more than ``ssp`` steps ahead of the slowest worker
      and sends the then-current parameters when the slowest catches up (Ho et al. 2013);
    - ``max_staleness`` R: when version v appears, computations that read v - R - 1 or older are cancelled and
      their workers restart on v; a queued contribution whose staleness would exceed R is dropped (Maranjyan,
      Tyurin and Richtarik 2025);
    - ``batch`` S: only contributions computed at the current version count; after S of them the server steps
      (one update of S contributions); the others are dropped (Rennala SGD, Tyurin and Richtarik 2023).  A kept
      contribution is acknowledged at once and its worker computes again on the server's current version; the
      S-th waits for the update and gets the new version.  With ``keep_stale`` every contribution counts, on the
      version it read: the server's buffer takes the next S arrivals (FedBuff, Nguyen et al. 2022);
    - ``read_time(w, step)``: a read takes time (shared memory): computing starts when it ends (``t_read_end``);
    - ``drain`` g: the server applies, as one update, every contribution that arrived while it was busy (a master
      that drains its queue, as PIAG's does).  An update opens when a contribution arrives at an idle server, or
      when the server finishes its previous update; it takes every contribution that arrived by then (ties
      included: the close comes after the arrivals of its instant) and is applied s (1 + g (m - 1)) later, with m
      its contributions and s the server's service draw of the first of them (g = 0: a fixed cost per update;
      g = 1: each contribution costs s).  Every contributor gets the new version in the reply.

    - ``concurrency`` C: the workers are a population of clients of which at most C train at once (FedBuff's
      concurrency).  C slots each take an idle client that is online, uniformly (``population.Pool``), which reads
      the server's current version (one downlink later), runs its task and is put back when its contribution is
      acknowledged (or when it goes offline); the slot then takes another.  Rows name the client, and its step
      counts the client's own tasks.  With ``weights`` (data sizes), a client is drawn with probability
      proportional to its weight among the idle online ones.

    Failures (``cluster.failures``) and availability (``cluster.availability``): work in progress at a crash, or
    when a client goes offline, is lost (status LOST) and so is an awaited reply; the worker rejoins when it is up
    again and reads the server's current version (one downlink later).  A client offline at time 0 starts when it
    first comes online; one offline for good stops.  (With ``concurrency``, the slot takes another client at once.)
    """
    clock, times, log, n_updates = sim.clock, sim.times, sim.log, sim.n_updates
    n = sim.cluster.workers
    fifo = FifoServer(sim.cluster.server.slots)
    finished = clock.event()
    server = {"version": 0, "full": False}
    completed = [0] * n          # steps each worker has finished (applied, dropped, cancelled or lost): SSP clocks
    computing: dict[int, tuple] = {}  # worker -> (process, read version) while computing or sending
    waiting: list[tuple] = []    # SSP: (step, event) of held replies
    pending: list[tuple] = []    # rennala: the kept contributions of the current version
    drained = {"open": None, "busy": 0.0}  # drain: the update taking arrivals (rows, event); when the server is free

    def finish_step(w, step):
        completed[w] = max(completed[w], step + 1)
        if waiting:
            slowest = min(completed)
            for item in [x for x in waiting if x[0] - slowest <= ssp]:
                waiting.remove(item)
                item[1].succeed(server["version"])

    def created(t):  # a new version exists at time t: cancel what can no longer be used (ringmaster)
        v = server["version"]
        if v == n_updates:
            finished.succeed()  # runs before any keyed event at this time, so the clock stops here
        elif max_staleness is not None:
            for w, (proc, r) in list(computing.items()):
                if v - r > max_staleness:
                    del computing[w]
                    proc.interrupt((t, v))

    def apply(row, t):  # row = (w, step, version, t_read, t_done, t_arrive, t_read_end)
        w, step, version, t_read, t_done, t_arrive, t_read_end = row
        k = server["version"]
        if max_staleness is not None and k - version > max_staleness:
            log.add(k, w, step, version, -1, DROPPED, t_read, t_done, t_arrive, t, t_read_end)
        else:
            log.add(k, w, step, version, -1, APPLIED, t_read, t_done, t_arrive, t, t_read_end)
            server["version"] = k + 1
        finish_step(w, step)
        created(t)

    def apply_batch(rows, t):
        k = server["version"]
        for w, step, version, *times_ in rows:
            log.add(k, w, step, version, -1, APPLIED, *times_[:3], t)
            finish_step(w, step)
        server["version"], server["full"] = k + 1, False
        created(t)

    def at_apply(t, action, arg):
        """Run ``action(arg, t)`` when the server applies at time t: right now if t is now (zero service time),
        else at an APPLY event of the server.  Applies at one instant thus follow the server's queue order: the
        server's APPLY events share one key, so SimPy keeps them in the order they were scheduled, which is the
        order the contributions were served; and an arrival with zero service at t comes after all of them."""
        if t == clock.now:
            action(arg, t)
            return None
        event = clock.at(t, Phase.APPLY, -1)
        event.callbacks.append(lambda _: action(arg, t))
        return event

    def join(row, t_arrive):  # drain: the event of the update that takes this contribution
        batch = drained["open"]
        if batch is None:  # open one: it starts (and closes to arrivals) when the server is free
            t_start = max(t_arrive, drained["busy"])
            batch = drained["open"] = ([], clock.event())
            clock.at(t_start, Phase.CLOSE, -1).callbacks.append(lambda _: close(batch, t_start))
        batch[0].append(row)
        return batch[1]

    def close(batch, t):  # drain: the update takes what arrived by t and is applied after its service
        rows, _ = batch
        drained["open"] = None
        w, step = rows[0][:2]
        drained["busy"] = t_apply = t + service(w, step) * (1.0 + drain * (len(rows) - 1))
        at_apply(t_apply, apply_drained, batch)

    def apply_drained(batch, t):
        rows, event = batch
        k = server["version"]
        for w, step, version, *times_ in rows:
            log.add(k, w, step, version, -1, APPLIED, *times_[:3], t, times_[3])
            finish_step(w, step)
        server["version"] = k + 1
        event.succeed()
        created(t)

    task, downlink, uplink, service, crash_after = (times.task, times.downlink, times.uplink, times.service,
                                                    times.crash_after)
    track = max_staleness is not None
    pool = None if concurrency is None else Pool(n, times.seed, times.up_at, times.always_up, weights)
    steps = [0] * n if pool else None  # population: each client's tasks so far
    wake = [None]                      # population: the event of the next client put back (for slots without one)

    def choose(slot):  # population: take a client, waiting until one is idle and online
        while True:
            c, t_next = pool.take(slot, clock.now)
            if c is not None:
                return c
            if wake[0] is None:
                wake[0] = clock.event()
            yield clock.any_of([wake[0]] + ([clock.at(t_next, Phase.READ, slot)] if t_next < math.inf else []))

    def release(c, step):
        steps[c] = step
        pool.put(c)
        if wake[0] is not None:
            wake[0].succeed()
            wake[0] = None

    def worker(w):  # worker w, or with concurrency the slot w, running client ``who``'s tasks
        step, version, who = 0, 0, w
        t_up = t_send = 0.0 if pool else times.up_at(w, 0.0)  # t_up: a time the worker is known to be up; t_send:
        if t_up > 0.0:      # its parameters leave the server (a client offline at time 0 starts when it is online)
            if t_up == math.inf:
                return
            yield clock.at(t_up, Phase.READ, w)
            version = server["version"]
        if pool:
            who = None
        while True:
            if pool:
                if who is not None:
                    release(who, step)
                who = yield from choose(w)
                step, version, t_up = steps[who], server["version"], clock.now
                t_send = t_up
            if ssp is not None and step - min(completed) > ssp:
                held = clock.event()
                waiting.append((step, held))
                version = yield held
                t_send = clock.now
            t_read = t_send if step == 0 and t_send == 0.0 else t_send + downlink(who, step)
            crash, rejoin = crash_after(who, t_up)
            if crash <= t_read:  # down (or offline) when the parameters arrive: rejoin and ask again
                if pool:  # (a slot takes another client)
                    yield clock.at(crash, Phase.READ, w)
                    continue
                if rejoin == math.inf:
                    return
                if rejoin > clock.now:
                    yield clock.at(rejoin, Phase.READ, w)
                t_up, t_send = rejoin, max(rejoin, clock.now)  # from rejoin on: a later crash is checked next
                version = server["version"]
                continue
            t_read_end = t_read if read_time is None else t_read + read_time(who, step)
            if times.capped:  # ask for a slot at the read instant: requests in (time, worker) order
                yield clock.at(t_read_end, Phase.READ, w)
            t_done = task(who, step, t_read_end, 1.0, local_steps)
            t_arrive = t_done + uplink(who, step)
            if track:
                computing[w] = (procs[w], version)
            try:
                if crash < t_arrive:
                    yield clock.at(crash, Phase.DONE, w)
                    computing.pop(w, None)
                    log.add(server["version"], who, step, version, -1, LOST, t_read, min(t_done, crash), crash,
                            crash)
                    finish_step(who, step)
                    step += 1
                    if pool:
                        continue
                    if rejoin == math.inf:
                        return
                    yield clock.at(rejoin, Phase.READ, w)
                    t_up = t_send = rejoin
                    version = server["version"]
                    continue
                yield clock.at(t_arrive, Phase.ARRIVE, w)
            except simpy.Interrupt as stop:  # ringmaster: too stale to be used
                t_stop, v = stop.cause
                log.add(v, who, step, version, -1, CANCELLED, min(t_read, t_stop), min(t_done, t_stop),
                        min(t_arrive, t_stop), t_stop)
                finish_step(who, step)
                step += 1
                t_up = t_send = t_stop
                version = v
                continue
            if track:
                del computing[w]
            t_up = t_arrive
            row = (who, step, version, t_read, t_done, t_arrive, t_read_end)
            step += 1
            if batch is not None:
                if not keep_stale and (version != server["version"] or server["full"]):  # stale, or complete
                    log.add(server["version"], who, step - 1, version, -1, DROPPED, *row[3:6], t_arrive)
                    finish_step(who, step - 1)
                    t_send, version = t_arrive, server["version"]
                    continue
                pending.append(row)
                t_apply = fifo.serve(t_arrive, service(who, step - 1))
                if len(pending) < batch:  # acknowledged at once: compute again on the current version
                    t_send, version = t_arrive, server["version"]
                    continue
                rows = pending[:]
                pending.clear()
                server["full"] = True
                event = at_apply(t_apply, apply_batch, rows)
            elif drain is not None:  # (no failures: Drain.check_cluster)
                yield join(row, t_arrive)
                version = server["version"]
                t_up = t_send = clock.now
                continue
            else:
                t_apply = fifo.serve(t_arrive, service(who, step - 1))
                event = at_apply(t_apply, apply, row)
            if crash < t_apply and not pool:  # down while queued: the update is still applied, the reply is lost
                if rejoin == math.inf:
                    return
                yield clock.at(rejoin, Phase.READ, w)
                t_up = t_send = rejoin
                version = server["version"]
                continue
            if event is not None:
                yield event
            version = server["version"]
            t_up = t_send = t_apply

    procs = [clock.process(worker(w)) for w in range(concurrency or n)]
    clock.run(until=finished)


def require_concurrency(concurrency: int | None, selection: str) -> None:
    require(concurrency is None or concurrency >= 1, "concurrency", "must be >= 1 (or null: every worker takes part)",
            concurrency)
    require(selection in SELECTIONS, "selection", f"must be one of {', '.join(SELECTIONS)}", selection)
    require(selection == "uniform" or concurrency is not None, "selection", "needs a concurrency (the clients to "
            "draw among)", selection)


def check_local_steps(steps: int, algorithm) -> None:
    """A protocol of ``steps`` local steps per exchange times that many compute draws: the algorithm must take as
    many (``local_steps``), or the time would not be its work's."""
    mine = getattr(algorithm, "local_steps", None)
    require(mine == steps, "algorithm.local_steps",
            f"must equal protocol.local_steps ({steps}) (an algorithm that takes local steps)", mine)


@register("async")
@dataclass(frozen=True, kw_only=True)
class Async(Protocol):
    """Asynchronous parameter server with consistent reads.

    Worker i loops: compute on the parameters it holds, send the result (uplink), wait in the server's FIFO queue,
    get applied as update k, and receive the parameters of version k+1 in the reply (downlink).  Hence a worker's
    next read is the version right after its own write, and with n always-busy workers the mean staleness tends to
    n - 1 for any compute-time law (the staleness identity; e.g. Lian et al. 2015, Mishchenko et al. 2022).
    """

    concurrency: int | None = optional()
    selection: str = optional("uniform")
    fast_path = staticmethod(async_trace)
    real_loop = RealLoop.SERVER

    def __post_init__(self):
        require_concurrency(self.concurrency, self.selection)

    def run(self, sim):
        self.check_cluster(sim.cluster)  # (again: simulate may be called without a scenario)
        run_async(sim, concurrency=self.concurrency, weights=selection_weights(self, sim.cluster))


@register("ssp")
@dataclass(frozen=True, kw_only=True)
class SSP(Protocol):
    """Stale synchronous parallel (Ho et al., NIPS 2013) on a parameter server: asynchronous, but worker w may
    start its step t only when every worker has finished at least t - ``bound`` steps, so no worker is more than
    ``bound`` steps ahead of the slowest.  bound = 0 is a barrier per step; a large bound is ``async``."""

    bound: int

    def __post_init__(self):
        require(self.bound >= 0, "bound", "must be >= 0", self.bound)

    def run(self, sim):
        run_async(sim, ssp=self.bound)

    def staleness_bound(self, cluster, n_updates):
        return None  # held replies make the schedule uneven even with constant times


@register("ringmaster")
@dataclass(frozen=True, kw_only=True)
class Ringmaster(Protocol):
    """Ringmaster ASGD (Maranjyan, Tyurin and Richtarik, 2025): asynchronous, but no update is applied with
    staleness above ``max_staleness`` R.  When version v appears, every computation on a version older than v - R
    is cancelled (status CANCELLED) and its worker restarts on v (one downlink later); a contribution already
    queued at the server whose staleness would exceed R is dropped."""

    max_staleness: int
    bounds_staleness = True

    def __post_init__(self):
        require(self.max_staleness >= 0, "max_staleness", "must be >= 0", self.max_staleness)

    def check_cluster(self, cluster):
        require(cluster.serverless is None or cluster.serverless.concurrency is None,
                "cluster.serverless.concurrency", "must be null under protocol ringmaster (a cancelled invocation "
                "may still be waiting for a slot, which this protocol does not model)", "given")

    def run(self, sim):
        self.check_cluster(sim.cluster)
        run_async(sim, max_staleness=self.max_staleness)

    def staleness_bound(self, cluster, n_updates):
        return self.max_staleness

    def rows(self, workers, n_updates):
        return 2.0 * n_updates  # applied, plus cancelled and dropped work


@register("rennala")
@dataclass(frozen=True, kw_only=True)
class Rennala(Protocol):
    """Rennala SGD's server (Tyurin and Richtarik, NeurIPS 2023): it collects ``batch`` S gradients computed at the
    current version, from whichever workers finish first (a fast worker may contribute several), then steps.  A
    worker whose gradient is kept is told at once to compute again at the same point; a gradient computed at an
    old version is dropped and its worker gets the current version.  Each update has S contributions with
    staleness 0; with deterministic times tau_i and no latency, the first update is applied at
    min{t : sum_i floor(t / tau_i) >= S}."""

    batch: int
    family = Family.BATCHED
    bounds_staleness = True

    def __post_init__(self):
        require(self.batch >= 1, "batch", "must be >= 1", self.batch)

    def run(self, sim):
        run_async(sim, batch=self.batch)

    def staleness_bound(self, cluster, n_updates):
        return 0

    def rows(self, workers, n_updates):
        return 2.0 * n_updates * self.batch  # kept, plus dropped stale ones


@register("buffered")
@dataclass(frozen=True, kw_only=True)
class Buffered(Protocol):
    """FedBuff's server (Nguyen, Malik, Zhan, Yousefpour, Rabbat, Malek and Huba, "Federated learning with
    buffered asynchronous aggregation", AISTATS 2022): clients take ``local_steps`` H local steps on the version they
    read and send their change; the server adds each arrival to a buffer and, when it holds ``buffer`` K
    contributions, applies them as one update, each with its own staleness.  A client whose contribution does not
    fill the buffer is acknowledged at once and starts again on the server's current version; the one that fills it
    gets the new version.  With K = 1 it is ``periodic`` (asynchronous), bit for bit.  With n always-busy clients
    and no service time the mean staleness is (n - 1)/K in the long run (``theory.buffered_mean_staleness``:
    only the filler of each buffer reads the version its own contribution makes, so it differs from the draining
    server's n/m - 1, where every contributor does).  The server's step (its learning rate, staleness weights)
    is the algorithm's: ``local_sgd`` with ``server_lr`` and ``weight``."""

    buffer: int
    local_steps: int = 1
    concurrency: int | None = optional()
    selection: str = optional("uniform")
    family = Family.BUFFERED
    takes_local_steps = True

    def __post_init__(self):
        require(self.buffer >= 1, "buffer", "must be >= 1", self.buffer)
        require(self.local_steps >= 1, "local_steps", "must be >= 1", self.local_steps)
        require_concurrency(self.concurrency, self.selection)

    def check(self, algorithm):
        check_local_steps(self.local_steps, algorithm)

    def run(self, sim):
        self.check_cluster(sim.cluster)  # (again: simulate may be called without a scenario)
        run_async(sim, batch=self.buffer, keep_stale=True, local_steps=self.local_steps, concurrency=self.concurrency,
                  weights=selection_weights(self, sim.cluster))

    def staleness_bound(self, cluster, n_updates):
        return None  # (the asynchronous server's deterministic bound is not derived for buffered updates)

    def rows(self, workers, n_updates):
        return float(n_updates) * self.buffer


@register("periodic")
@dataclass(frozen=True, kw_only=True)
class Periodic(Protocol):
    """Periodic exchange (local SGD, elastic averaging; Stich 2019, Zhang et al. 2015): each worker takes
    ``local_steps`` H local steps (H compute times back to back), then exchanges with the server: asynchronously
    (each exchange is one update) or, with ``synchronous: true``, in rounds with a barrier (each round is one
    update of n contributions).  Needs an algorithm with local steps (``local_sgd``, ``downpour``, ``easgd``,
    ``eamsgd``) and the same H."""

    local_steps: int
    synchronous: bool = False
    concurrency: int | None = optional()
    selection: str = optional("uniform")
    takes_local_steps = True

    def __post_init__(self):
        require(self.local_steps >= 1, "local_steps", "must be >= 1", self.local_steps)
        require_concurrency(self.concurrency, self.selection)

    @property
    def family(self):
        return Family.ROUNDS if self.synchronous else Family.ASYNC

    @property
    def every_worker(self):
        return self.synchronous and self.concurrency is None

    @property
    def bounds_staleness(self):
        return self.synchronous

    @property
    def real_loop(self):
        return RealLoop.BARRIER if self.synchronous else RealLoop.SERVER

    def run(self, sim):
        self.check_cluster(sim.cluster)  # (again: simulate may be called without a scenario)
        if self.synchronous:
            from .rounds import run_rounds  # (here, not at the top: the rounds family registers after periodic)

            run_rounds(sim, local_steps=self.local_steps, select=self.concurrency,
                       weights=selection_weights(self, sim.cluster))
        else:
            run_async(sim, local_steps=self.local_steps, concurrency=self.concurrency,
                      weights=selection_weights(self, sim.cluster))

    def check(self, algorithm):
        check_local_steps(self.local_steps, algorithm)

    def staleness_bound(self, cluster, n_updates):
        return 0 if self.synchronous else super().staleness_bound(cluster, n_updates)

    def rows(self, workers, n_updates):
        return float(n_updates) * ((self.concurrency or workers) if self.synchronous else 1)


@register("drain")
@dataclass(frozen=True, kw_only=True)
class Drain(Protocol):
    """A parameter server that drains its queue (the PIAG master of Aytekin, Feyzmahdavian and Johansson 2016, as
    run by Wu et al. 2022): when it finishes an update it applies every contribution that arrived meanwhile as one
    update, each with its own staleness, and replies to each contributor with the new version.  An update of m
    contributions takes s (1 + ``service_growth`` (m - 1)), s the server's service draw (``cluster.server.service``)
    of its first contribution.  With n always-busy workers and m contributions per update on average, the mean
    staleness is n/m - 1 (the batched staleness identity; exactly sum_w (l_w + 1) / C - 1 for a finite run, l_w the
    last update worker w contributed to and C the contributions: ``theory.batched_mean_staleness``).  With service
    time 0 only simultaneous arrivals share an update; when every update has one contribution the trace is
    ``async``'s, bit for bit."""

    service_growth: float = 0.0
    family = Family.DRAINED

    def __post_init__(self):
        require(0.0 <= self.service_growth <= 1e6, "service_growth", "must be in [0, 1e6]", self.service_growth)

    def run(self, sim):
        self.check_cluster(sim.cluster)  # (again: simulate may be called without a scenario)
        run_async(sim, drain=self.service_growth)

    def check_cluster(self, cluster):
        require(cluster.server.slots == 1, "cluster.server.slots",
                "must be 1 under protocol drain (one master applies the updates)", cluster.server.slots)
        off = cluster.interruption
        if off is not None:
            raise ParamError(f"cluster.{off}: protocol drain does not model workers going offline (a crash while an "
                             f"update is pending); remove cluster.{off}, or use protocol async")

    def staleness_bound(self, cluster, n_updates):
        return None  # (the asynchronous server's deterministic bound is not derived for batched updates)

    def rows(self, workers, n_updates):
        return float(n_updates) * workers  # at most: an update holds at most one contribution per worker
