"""``run_real(scenario)``: the scenario's update rules on real worker processes, recorded as an observed Trace.

The main process starts ``cluster.workers`` worker processes (``real.start_method``), waits until each has rebuilt
the problem and the algorithm, starts the clock and then:

- ``async`` and ``periodic`` (asynchronous): is the parameter server.  It applies each arriving message with the
  algorithm's own ``apply``, as update k in the order it takes them, and writes the reply (``reply(state, w)``,
  version k+1) into the worker's slot of shared memory before telling it the version;
- ``sync`` and ``periodic`` with ``synchronous: true``: collects one message per worker (a barrier), applies them
  in worker order as one update and writes every worker's reply;
- ``shared_memory``: only watches; the workers update the shared vector lock-free (Hogwild).

Row by row the observed Trace has the schema of ``asyncsim.timing.trace`` with wall-clock seconds since the start in place of
simulated ones: t_read when a worker has its parameters, t_done when its computation (and any emulated compute
wait) ends, t_arrive when the server takes the message, t_apply when the new version exists.  Because the
workers draw their minibatches from the keyed (seed, worker, step) streams, replaying the observed Trace through
the simulator's ``replay`` gives the real run's final parameters bit for bit under the consistent-read protocols;
``run_real`` checks this and records the outcome in summary.json (``replay_check``).  A hogwild trace's read
versions are rebuilt from the times (the number of writes finished before the read started and ended), and its
replay is compared statistically (final loss).

Whatever happens (a worker dies, an exception, Ctrl-C) every worker process is stopped and every shared memory
segment unlinked before ``run_real`` returns or raises.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from multiprocessing import connection, get_context, shared_memory

import numpy as np

from .. import budget
from ..algorithms.base import ApplyInfo
from ..params import ParamError, ScenarioError, kind, require, to_plain
from ..replay import Recorder, replay
from ..build import build
from ..runner import RunResult, summarize
from ..scenario import footprint
from ..summary import RealOutcome
from ..timing.protocol import Protocol, RealLoop
from ..timing.shared_memory import inconsistent_reads
from ..timing.trace import Status, Trace
from .worker import BLAS_ENV, HOGWILD_COLUMNS, Waits, WorkerArgs, sleep_until, worker_main

SEGMENT_PREFIX = "asyncsim_"
"""Every shared memory segment of a real run is named asyncsim_<pid>_<token>_<what> (tests look for leftovers)."""
STARTUP_TIMEOUT = 120.0
"""Seconds the workers have to rebuild the problem and say they are ready."""


class RealRunError(RuntimeError):
    """A real run that could not finish: a worker died or raised.  One line, naming the worker."""


def check_real(scenario) -> None:
    """Every condition of a real run of ``scenario``, checked before anything starts (``asyncsim validate --mode
    real`` and ``run --mode real`` call it when the scenario loads): a protocol with a real loop, failures that
    real mode cannot emulate, an algorithm whose state shared memory can hold, and the memory of the worker
    processes, each of which rebuilds the problem.  Raises ScenarioError, one line."""
    try:
        _check_real(scenario)
    except ParamError as err:
        raise ScenarioError(str(err)) from None


def _check_real(scenario) -> None:
    protocol, spec, cluster = scenario.protocol, scenario.real, scenario.cluster
    loop = protocol.real_loop
    if loop is None:
        allowed = [k for k, cls in Protocol.registry.items()  # (a property: the loop depends on the parameters)
                   if isinstance(cls.real_loop, property) or cls.real_loop is not None]
        raise ParamError(f"protocol.kind must be one of {', '.join(allowed)} in real mode; got {kind(protocol)!r}")
    if spec.on_worker_failure == "continue" and loop is RealLoop.BARRIER:
        raise ParamError(f"real.on_worker_failure continue needs an asynchronous protocol (a barrier waits for "
                         f"every worker); got protocol {kind(protocol)}, which runs in rounds")
    require(scenario.run.time is None, "run.time", "must be null in real mode (it is a simulated-time budget; "
            "real.time_limit bounds the wall time)", scenario.run.time)
    require(scenario.run.stop_at is None, "run.stop_at", "must be null in real mode (the simulator stops at a "
            "target; a real run takes run.updates)", to_plain(scenario.run.stop_at))
    require(cluster.failures is None, "cluster.failures", "must be null in real mode: failures are not emulated "
            "(workers fail for real there; see real.on_worker_failure)", to_plain(cluster.failures))
    require(cluster.availability is None, "cluster.availability", "must be null in real mode: worker processes "
            "are always online (client availability is not emulated)", to_plain(cluster.availability))
    require(protocol.concurrency is None, "protocol.concurrency", "must be null in real mode: every worker "
            "process takes part throughout (a client population is simulated only)", protocol.concurrency)
    require(cluster.serverless is None, "cluster.serverless", "must be null in real mode: worker processes are "
            "not serverless invocations (their slots are not shared across processes)", to_plain(cluster.serverless))
    if spec.time_scale is not None and loop is not RealLoop.HOGWILD:
        require(cluster.server.slots == 1, "cluster.server.slots", "must be 1 to emulate the server in real mode "
                "(one server loop)", cluster.server.slots)
    if loop is RealLoop.HOGWILD:
        require(scenario.algorithm.vector_state, "algorithm.kind", "must be an algorithm whose state is the "
                "parameter vector for protocol shared_memory in real mode (" + ", ".join(
                    k for k, cls in type(scenario.algorithm).registry.items() if cls.vector_state) + ")",
                kind(scenario.algorithm))
    budget.check(footprint(scenario, processes=1 + cluster.workers))


def run_real(scenario, progress: Callable[[int, int], None] | None = None,
             watch: Callable[[int, tuple[int, ...]], None] | None = None) -> RunResult:
    """Run ``scenario`` on real processes and return its RunResult (trace in wall-clock seconds).

    ``progress(done, total)`` is called now and then; ``watch(done, pids)`` after each update the server applies
    (or each wait of a hogwild run) with the worker processes' ids, for monitoring and fault injection.
    """
    start = time.perf_counter()
    check_real(scenario)
    built = build(scenario)
    hogwild = scenario.protocol.real_loop is RealLoop.HOGWILD
    if not hogwild:
        for w in range(scenario.cluster.workers):
            if not _is_vector(built.algorithm.reply(built.state, w), built.problem.dim):
                raise ParamError(f"algorithm {kind(scenario.algorithm)} replies with something other than a "
                                    f"vector of the problem's dim; real mode cannot send it through shared memory")
    with _processes(scenario, hogwild) as (procs, conns, segments, lock):
        _await_ready(procs, conns)
        loop = _hogwild if hogwild else _serve
        outcome = loop(built, procs, conns, segments, lock, progress, watch)
    return _result(built, outcome, time.perf_counter() - start)


def _is_vector(x, dim: int) -> bool:
    return isinstance(x, np.ndarray) and x.shape == (dim,) and x.dtype == np.float64


@contextmanager
def _processes(scenario, hogwild: bool):
    """Create the shared memory segments and start the workers; on exit stop every worker and unlink every
    segment, whatever happened."""
    n, dim, K = scenario.cluster.workers, scenario.problem.dim, scenario.run.updates
    sizes = ({"x": dim * 8, "counters": 2 * 8, "writes": n * 8, "table": K * len(HOGWILD_COLUMNS) * 8,
              "snapshots": (K // scenario.run.record_every + 1) * (dim + 1) * 8} if hogwild else
             {"replies": n * dim * 8})
    ctx = get_context(scenario.real.start_method)
    token = f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    segments: dict[str, shared_memory.SharedMemory] = {}
    procs, conns = [], []
    saved = {var: os.environ.get(var) for var in BLAS_ENV}
    try:
        for what, size in sizes.items():
            segments[what] = shared_memory.SharedMemory(name=f"{token}_{what}", create=True, size=max(size, 8))
        if hogwild:
            _view(segments["counters"], (2,), np.int64)[:] = 0
            _view(segments["writes"], (n,), np.int64)[:] = 0
            _view(segments["table"], (K, len(HOGWILD_COLUMNS)))[:, -1] = 0.0
        lock = ctx.Lock() if hogwild else None
        names = {what: seg.name for what, seg in segments.items()}
        plain = scenario.to_dict()
        os.environ.update({var: "1" for var in BLAS_ENV})  # read by the BLAS of spawned workers when it loads
        for w in range(n):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=worker_main, name=f"asyncsim-worker-{w}", daemon=True,
                            args=(WorkerArgs(plain, w, "hogwild" if hogwild else "server", names, theirs, lock),))
            p.start()
            theirs.close()
            procs.append(p)
            conns.append(mine)
        _restore(saved)
        yield procs, conns, segments, lock
    finally:
        _restore(saved)
        _stop(procs, conns)
        for seg in segments.values():
            seg.close()
            seg.unlink()


def _restore(saved: dict) -> None:
    for var, value in saved.items():
        if value is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = value


def _view(seg, shape, dtype=np.float64) -> np.ndarray:
    return np.ndarray(shape, dtype=dtype, buffer=seg.buf)


def _stop(procs, conns) -> None:
    """Tell every worker to stop, drain what they still send, then kill the ones that do not exit."""
    for c in conns:
        try:
            c.send(None)
        except OSError:
            pass
    deadline = time.perf_counter() + 5.0
    alive = [(p, c) for p, c in zip(procs, conns) if p.is_alive()]
    while alive and time.perf_counter() < deadline:
        ready = connection.wait([c for _, c in alive] + [p.sentinel for p, _ in alive], timeout=0.1)
        for p, c in alive:
            if c in ready:
                try:
                    c.recv()
                except (EOFError, OSError):
                    pass
        alive = [(p, c) for p, c in alive if p.is_alive()]
    for p in procs:  # workers ignore SIGTERM (the main process handles it), so a worker still alive is killed
        if p.is_alive():
            p.kill()
        p.join()
    for c in conns:
        c.close()


def _describe_exit(p, conn) -> str:
    """Why a worker process ended: the exception it reported, or its exit status."""
    try:
        while conn.poll():
            item = conn.recv()
            if item and item[0] == "error":
                return f"raised {item[1]}"
    except (EOFError, OSError):
        pass
    p.join(1.0)
    code = p.exitcode
    if code is not None and code < 0:
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


def _await_ready(procs, conns) -> None:
    waiting = set(range(len(procs)))
    deadline = time.perf_counter() + STARTUP_TIMEOUT
    while waiting:
        ready = connection.wait([conns[w] for w in waiting] + [procs[w].sentinel for w in waiting],
                                timeout=max(0.0, deadline - time.perf_counter()))
        if not ready:
            raise RealRunError(f"workers {sorted(waiting)} did not start within {STARTUP_TIMEOUT:g} s")
        for w in sorted(waiting):
            if conns[w] in ready or procs[w].sentinel in ready:
                item = None
                try:
                    item = conns[w].recv() if conns[w].poll() else None
                except (EOFError, OSError):
                    pass
                if item == ("ready",):
                    waiting.discard(w)
                else:
                    why = f"raised {item[1]}" if item and item[0] == "error" else _describe_exit(procs[w], conns[w])
                    hint = (" (under spawn, a script that starts a real run must guard it with "
                            "if __name__ == '__main__':)") if why.startswith("exited") else ""
                    raise RealRunError(f"worker {w} {why} while starting; no result was written{hint}")


@dataclass
class _Outcome:
    """What a real run observed: trace rows (or the hogwild trace), recorded (version, time, server state)
    points, the final parameters and how the run ended."""

    rows: list = field(default_factory=list)
    points: list = field(default_factory=list)
    x: np.ndarray | None = None
    stopped_by: str | None = None
    lost_workers: list = field(default_factory=list)
    trace: Trace | None = None


def _go(conns, spec) -> float:
    t0 = time.perf_counter()
    for c in conns:
        c.send(("go", t0, spec.time_scale))
    return t0


def _worker_failed(w, p, conn, k, K, spec, alive, outcome) -> None:
    why = _describe_exit(p, conn)
    if spec.on_worker_failure == "stop":
        raise RealRunError(f"worker {w} {why} at update {k} of {K}; the run was stopped and no result was written "
                           f"(real.on_worker_failure: continue lets asynchronous runs go on without it)")
    alive.discard(w)
    outcome.lost_workers.append({"worker": w, "at_update": k, "cause": why})
    if not alive:
        raise RealRunError(f"every worker died (the last, worker {w}, {why} at update {k} of {K}); no result was "
                           f"written")


def _serve(built, procs, conns, segments, lock, progress, watch) -> _Outcome:
    """The parameter server (async, periodic) or the barrier (sync, synchronous periodic) in the main process."""
    s = built.scenario
    spec, K, every, n = s.real, s.run.updates, s.run.record_every, s.cluster.workers
    algorithm, problem = built.algorithm, built.problem
    rounds = s.protocol.real_loop is RealLoop.BARRIER
    replies = _view(segments["replies"], (n, problem.dim))
    state = built.state
    for w in range(n):
        replies[w] = algorithm.reply(state, w)
    waits = None
    outcome = _Outcome()
    pids = tuple(p.pid for p in procs)
    alive = set(range(n))
    t0 = _go(conns, spec)
    if spec.time_scale is not None:
        waits = Waits(built, spec.time_scale, t0)
    deadline = None if spec.time_limit is None else t0 + spec.time_limit
    clock = time.perf_counter
    outcome.points.append((0, 0.0, state))
    pending: dict[int, tuple] = {}
    k = 0
    tick = max(1, K // 100)
    try:
        while k < K:
            timeout = None if deadline is None else max(0.0, deadline - clock())
            ready = connection.wait([conns[w] for w in alive] + [procs[w].sentinel for w in alive], timeout)
            if not ready:
                outcome.stopped_by = "time_limit"
                break
            for w in sorted(alive):
                if conns[w] not in ready or k == K:
                    continue
                try:
                    item = conns[w].recv()
                except (EOFError, OSError):
                    _worker_failed(w, procs[w], conns[w], k, K, spec, alive, outcome)
                    continue
                if item[0] == "error":
                    raise RealRunError(f"worker {w} raised {item[1]} at update {k} of {K}; the run was stopped and "
                                       f"no result was written")
                _, step, version, t_read, t_done, message = item
                t_arrive = clock() - t0
                if waits is not None:
                    waits.wait(waits.times.service, w, step)
                if rounds:
                    pending[w] = (step, t_read, t_done, t_arrive, message)
                    if len(pending) < n:
                        continue
                    order = sorted(pending)
                    state = algorithm.apply(state, [pending[v][4] for v in order],
                                            ApplyInfo.at(k, order, (k,) * n, problem))
                    if waits is not None and waits.times.serial:
                        sleep_until(clock() + spec.time_scale * waits.times.serial)
                    t_apply = clock() - t0
                    outcome.rows.extend((k, v, pending[v][0], k, k) + pending[v][1:4] + (t_apply,) for v in order)
                    targets = order
                    pending.clear()
                else:
                    state = algorithm.apply(state, [message], ApplyInfo.at(k, (w,), (version,), problem))
                    t_apply = clock() - t0
                    outcome.rows.append((k, w, step, version, -1, t_read, t_done, t_arrive, t_apply))
                    targets = (w,)
                k += 1
                if k % every == 0 or k == K:
                    outcome.points.append((k, t_apply, state))
                if k < K:
                    for v in targets:
                        replies[v] = algorithm.reply(state, v)
                        try:
                            conns[v].send(k)
                        except OSError:  # it died after sending its message
                            _worker_failed(v, procs[v], conns[v], k, K, spec, alive, outcome)
                if watch is not None:
                    watch(k, pids)
                if progress is not None and k % tick == 0:
                    progress(k, K)
            for w in sorted(alive):  # a worker that exited without a message (killed between messages)
                if procs[w].sentinel in ready and not procs[w].is_alive() and not conns[w].poll():
                    _worker_failed(w, procs[w], conns[w], k, K, spec, alive, outcome)
    finally:
        del replies
    if outcome.points[-1][0] != k:
        outcome.points.append((k, outcome.rows[-1][-1] if outcome.rows else 0.0, state))
    outcome.x = algorithm.params(state)
    return outcome


def _hogwild(built, procs, conns, segments, lock, progress, watch) -> _Outcome:
    """Watch a lock-free shared memory run: start it, wait for the workers to use up the updates (or the time
    limit), then read the shared table."""
    s = built.scenario
    spec, K, every, n, dim = s.real, s.run.updates, s.run.record_every, s.cluster.workers, s.problem.dim
    x = _view(segments["x"], (dim,))
    counters = _view(segments["counters"], (2,), np.int64)
    table = _view(segments["table"], (K, len(HOGWILD_COLUMNS)))
    snapshots = _view(segments["snapshots"], (K // every + 1, dim + 1))
    outcome = _Outcome()
    try:
        x[:] = built.state
        snapshots[:, 0] = np.nan
        snapshots[0, 0], snapshots[0, 1:] = 0.0, x
        pids = tuple(p.pid for p in procs)
        alive = set(range(n))
        t0 = _go(conns, spec)
        deadline = None if spec.time_limit is None else t0 + spec.time_limit
        while alive:
            timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.perf_counter()))
            ready = connection.wait([conns[w] for w in alive] + [procs[w].sentinel for w in alive], timeout)
            done = int(min(counters[0], K))
            if watch is not None:
                watch(done, pids)
            if progress is not None:
                progress(done, K)
            for w in sorted(alive):
                if conns[w] in ready:
                    try:
                        item = conns[w].recv()
                    except (EOFError, OSError):  # it exited: its sentinel says how
                        item = None
                        procs[w].join(1.0)
                    if item and item[0] == "error":
                        counters[1] = 1
                        raise RealRunError(f"worker {w} raised {item[1]} at about update {done} of {K}; the run "
                                           f"was stopped and no result was written")
                if not procs[w].is_alive():
                    procs[w].join(1.0)
                    if procs[w].exitcode == 0:
                        alive.discard(w)
                    else:
                        counters[1] = spec.on_worker_failure == "stop"
                        _worker_failed(w, procs[w], conns[w], done, K, spec, alive, outcome)
            if deadline is not None and time.perf_counter() >= deadline and alive:
                counters[1] = 1
                outcome.stopped_by = "time_limit"
                for w in sorted(alive):
                    procs[w].join(5.0)
                break
        rows = table[table[:, -1] == 1.0].copy()
        outcome.x = x.copy()
        shots = snapshots[np.isfinite(snapshots[:, 0])].copy()
    finally:
        del x, counters, table, snapshots
    outcome.trace = _hogwild_trace(rows, n, built.scenario.protocol.blocks)
    applied = outcome.trace.update_times()[1:]
    for t, snap in zip(shots[:, 0], shots[:, 1:]):
        snap.flags.writeable = False
        outcome.points.append((int(np.searchsorted(applied, t, side="right")), float(t), snap))
    final = outcome.trace.n_updates
    outcome.x.flags.writeable = False
    if outcome.points[-1][0] != final or outcome.points[-1][1] != applied[-1]:
        outcome.points.append((final, float(applied[-1]), outcome.x))
    if final < K and outcome.stopped_by is None:
        outcome.stopped_by = "worker_failure"
    return outcome


def _hogwild_trace(rows: np.ndarray, n: int, blocks: int) -> Trace:
    """The observed trace of a hogwild run: writes ordered by the time they finished (update k is the k-th
    write to finish); each read's first and last versions are the numbers of writes finished before the read
    started and ended (``inconsistent_reads``)."""
    if len(rows) == 0:
        raise RealRunError("the shared memory run finished no update; no result was written")
    order = np.argsort(rows[:, 5], kind="stable")
    r = rows[order]
    K = len(r)
    worker, step = r[:, 0].astype(np.int64), r[:, 1].astype(np.int64)
    k = np.arange(K)
    trace = Trace(n_workers=n, protocol="shared_memory", update=k, worker=worker, step=step, read_version=k,
                  round=np.full(K, -1), status=np.full(K, int(Status.APPLIED)), t_read=r[:, 2], t_done=r[:, 4],
                  t_arrive=r[:, 4], t_apply=r[:, 5], t_read_end=r[:, 3])
    return inconsistent_reads(trace, blocks)


def _result(built, outcome: _Outcome, wall: float) -> RunResult:
    s = built.scenario
    trace = outcome.trace if outcome.trace is not None else _server_trace(outcome.rows, s)
    trace.validate()
    recorder = Recorder(built.problem, built.algorithm)
    diverged_at = None
    for version, t, state in outcome.points:
        if not recorder(version, t, built.algorithm.params(state), state) and diverged_at is None:
            diverged_at = version
    metrics = recorder.frame()
    check = replay(trace, built.algorithm, built.problem, built.x0, s.seed, s.run.record_every)
    summary = replace(summarize(s, trace, metrics, check.peak_in_flight, diverged_at), mode="real",
                      wall_time_s=round(wall, 3), real=RealOutcome(
                          settings=to_plain(s.real), partial=trace.n_updates < s.run.updates,
                          updates_requested=s.run.updates, stopped_by=outcome.stopped_by,
                          lost_workers=outcome.lost_workers,
                          replay_check=_replay_check(trace, outcome.x, check, s.protocol.real_loop)))
    return RunResult(scenario=s, trace=trace, metrics=metrics, summary=summary, x=outcome.x, problem=built.problem)


def _server_trace(rows: list[tuple], scenario) -> Trace:
    if not rows:
        raise RealRunError("the run applied no update before it stopped; no result was written")
    cols = list(zip(*rows))
    names = ("update", "worker", "step", "read_version", "round", "t_read", "t_done", "t_arrive", "t_apply")
    data = {name: np.asarray(col) for name, col in zip(names, cols)}
    return Trace(n_workers=scenario.cluster.workers, protocol=kind(scenario.protocol),
                 status=np.full(len(rows), int(Status.APPLIED)), **data)


def _replay_check(trace: Trace, x: np.ndarray, check, loop: RealLoop) -> dict:
    """The replay of the observed trace against the real run's final parameters: bit for bit for consistent
    reads; for lock-free shared memory, the final losses side by side (the writes race, so no exact claim)."""
    replayed_loss = float(check.metrics["loss"].iloc[-1])
    if loop is RealLoop.HOGWILD:
        return {"exact": None, "reason": "lock-free shared memory: reads and writes race, compared statistically",
                "replay_final_loss": replayed_loss}
    same = bool(np.array_equal(check.x, x))
    diff = float(np.max(np.abs(np.asarray(check.x) - x))) if not same else 0.0
    return {"exact": same, "max_abs_difference": diff, "replay_final_loss": replayed_loss}
