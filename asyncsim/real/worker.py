"""Worker processes of the real execution mode, and what they share with the main process.

A worker gets only plain data: the resolved scenario (``Scenario.to_dict()``), its index, the names of the shared
memory segments and its end of a pipe.  It rebuilds the problem, x_0 and the algorithm from the scenario and the
seed (``build.build``, which the simulator uses too), never from pickled closures, so it runs the same under
spawn, fork and forkserver.  Minibatches and other algorithm randomness are the ALGORITHM-stream draws of (seed, worker, step), as in the replay.

Two loops:

- ``server`` (protocols async, periodic, sync): read the reply the server wrote into this worker's slot of shared
  memory, run the algorithm's ``local`` on it, send the message and the times through the pipe, wait for the next
  reply's version (None: stop);
- ``hogwild`` (protocol shared_memory): take a ticket (at most ``run.updates`` in all), copy the shared vector
  without a lock, run ``local``, apply the algorithm's own ``apply`` to the current shared values and add the
  change in place, lock-free (Niu et al. 2011); the times go to the ticket's row of a shared table.  Each worker
  counts its finished writes in its own slot of a shared array, so the writes finished before a read and before
  a write (the sums) give the version read and the update index, and the apply sees the step's staleness.

With ``real.time_scale``, a worker also waits what the scenario's timing model draws for it (:class:`Waits`).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

from ..algorithms.base import ApplyInfo
from ..replay import algorithm_draws
from ..rng import Stream
from ..build import Built, build, timing_model

BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
            "NUMEXPR_NUM_THREADS")
HOGWILD_COLUMNS = ("worker", "step", "t_read", "t_read_end", "t_done", "t_apply", "written")
"""Columns of the shared table of a hogwild run, one row per ticket (``written`` is 1 once the row is complete)."""


@dataclass(frozen=True)
class WorkerArgs:
    scenario: dict
    worker: int
    loop: str
    """'server' or 'hogwild'."""
    segments: dict
    """Shared memory segment names: 'replies' (server) or 'x', 'counters', 'writes', 'table', 'snapshots'
    (hogwild)."""
    conn: object
    lock: object = None


def pin_blas_threads() -> None:
    """One BLAS thread in this process: the environment variables, read when a BLAS library loads (spawn,
    forkserver), and OpenBLAS's own setter for a library already loaded (fork)."""
    for var in BLAS_ENV:
        os.environ[var] = "1"
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        return
    for path in {line.split()[-1] for line in maps.splitlines() if "openblas" in line.split()[-1].lower()}:
        lib = ctypes.CDLL(path)
        for symbol in ("openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
                       "openblas_set_num_threads64_"):
            setter = getattr(lib, symbol, None)
            if setter is not None:
                setter(1)


def sleep_until(t: float) -> None:
    d = t - time.perf_counter()
    if d > 0:
        time.sleep(d)


class Waits:
    """The scenario's timing model as wall-clock waits: ``scale`` wall seconds per simulated second, drawn from
    the same keyed streams as the simulator (``Durations``).  Simulated time is (wall time since the start) /
    scale, so transient slow phases are entered and left on the wall clock."""

    def __init__(self, built: Built, scale: float, t0: float):
        s = built.scenario
        self.times = timing_model(built).durations(s.seed)
        self.scale, self.t0 = scale, t0
        self.local_steps = s.protocol.local_steps
        read = s.protocol.read_law
        self.read_time = None if read is None else self.times.draws(Stream.READ, read)

    def compute(self, w: int, step: int) -> None:
        """Wait the simulated compute time of step ``step`` (``local_steps`` draws for periodic protocols)."""
        now = (time.perf_counter() - self.t0) / self.scale
        end = self.times.task(w, step, now, 1.0, self.local_steps)
        sleep_until(self.t0 + end * self.scale)

    def wait(self, draw, w: int, step: int) -> None:
        """Wait ``draw(w, step)`` simulated seconds (a link, a service time, a read)."""
        time.sleep(self.scale * draw(w, step))


def worker_main(args: WorkerArgs) -> None:
    """Entry point of a worker process: rebuild, say ready, run the loop; report an exception to the main
    process as ('error', text) and exit with status 1.  Ctrl-C and SIGTERM (sent to the whole process group by a
    terminal or a batch scheduler) are left to the main process, which stops the workers and cleans up."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pin_blas_threads()
    conn = args.conn
    try:
        from ..scenario import from_dict

        built = build(from_dict(args.scenario))
        conn.send(("ready",))
        (_server_loop if args.loop == "server" else _hogwild_loop)(built, args)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the main process has gone: nothing to report to
    except BaseException as err:  # noqa: BLE001  (every failure is reported, then the process exits)
        try:
            conn.send(("error", f"{type(err).__name__}: {err}"))
        except OSError:
            pass
        raise SystemExit(1)


def _start(built: Built, args: WorkerArgs):
    """Wait for the main process's ('go', t0, time_scale); return t0 and the Waits (or None)."""
    _, t0, scale = args.conn.recv()
    return t0, (None if scale is None else Waits(built, scale, t0))


def _compute(built: Built, waits, draws, w: int, step: int, snapshot: np.ndarray, worker_state):
    """The algorithm's ``local`` on the parameters read (made read-only), then the emulated compute wait."""
    snapshot.flags.writeable = False
    out = built.algorithm.local(snapshot, worker_state, built.problem, draws(w, step))
    if waits is not None:
        waits.compute(w, step)
    return out


def _server_loop(built: Built, args: WorkerArgs) -> None:
    w, conn = args.worker, args.conn
    n, dim = built.scenario.cluster.workers, built.problem.dim
    shm = shared_memory.SharedMemory(name=args.segments["replies"])
    replies = np.ndarray((n, dim), np.float64, buffer=shm.buf)
    try:
        draws, worker_state = algorithm_draws(built.algorithm, built.problem, built.scenario.seed), built.worker_states[w]
        t0, waits = _start(built, args)
        version, step, clock = 0, 0, time.perf_counter
        while True:
            if waits is not None and step > 0:
                waits.wait(waits.times.downlink, w, step)
            snapshot = replies[w].copy()
            t_read = clock() - t0
            message, worker_state = _compute(built, waits, draws, w, step, snapshot, worker_state)
            t_done = clock() - t0
            if waits is not None:
                waits.wait(waits.times.uplink, w, step)
            conn.send(("m", step, version, t_read, t_done, message))
            step += 1
            version = conn.recv()
            if version is None:
                return
    finally:
        del replies
        shm.close()


def _hogwild_loop(built: Built, args: WorkerArgs) -> None:
    w, problem, algorithm = args.worker, built.problem, built.algorithm
    run, dim = built.scenario.run, built.problem.dim
    K = run.updates
    n = built.scenario.cluster.workers
    names = ("x", "counters", "writes", "table", "snapshots")
    shms = [shared_memory.SharedMemory(name=args.segments[k]) for k in names]
    x, counters, writes, table, snapshots = (np.ndarray(shape, dtype, buffer=shm.buf) for shm, shape, dtype in zip(
        shms, [(dim,), (2,), (n,), (K, len(HOGWILD_COLUMNS)), (K // run.record_every + 1, dim + 1)],
        [np.float64, np.int64, np.int64, np.float64, np.float64]))
    try:
        draws, worker_state = algorithm_draws(built.algorithm, built.problem, built.scenario.seed), built.worker_states[w]
        t0, waits = _start(built, args)
        step, clock = 0, time.perf_counter
        while not counters[1]:  # counters: [tickets taken, stop]
            if not args.lock.acquire(timeout=10.0):
                raise RuntimeError("the ticket lock was not released for 10 s (a worker died holding it)")
            ticket = int(counters[0])
            counters[0] = ticket + 1
            args.lock.release()
            if ticket >= K:
                return
            t_read = clock() - t0
            seen = int(writes.sum())  # the version read: writes finished before the read
            if waits is not None and waits.read_time is not None:
                waits.wait(waits.read_time, w, step)
            snapshot = x.copy()  # the lock-free read
            t_read_end = clock() - t0
            message, worker_state = _compute(built, waits, draws, w, step, snapshot, worker_state)
            t_done = clock() - t0
            if waits is not None:
                waits.wait(waits.times.service, w, step)
            current = x.copy()
            current.flags.writeable = False
            new = algorithm.apply(current, [message], ApplyInfo.at(int(writes.sum()), (w,), (seen,), problem))
            np.add(x, new - current, out=x)  # lock-free: concurrent writes interleave coordinate by coordinate
            writes[w] += 1  # only this worker writes its slot
            t_apply = clock() - t0
            if (ticket + 1) % run.record_every == 0:
                snapshots[(ticket + 1) // run.record_every, 1:] = x
                snapshots[(ticket + 1) // run.record_every, 0] = t_apply
            table[ticket] = (w, step, t_read, t_read_end, t_done, t_apply, 1.0)
            step += 1
    finally:
        del x, counters, writes, table, snapshots
        for shm in shms:
            shm.close()
