"""A minimal hand-written heapq event loop for the async parameter-server schedule.

It implements the same model as ``asyncsim.timing.protocols.Async`` without SimPy: one pending arrival per worker in
a heap keyed by (arrival time, worker), a single FIFO server, and replies carrying version k+1.  The benchmark
times it against the SimPy engine, and the tests use it as an independent oracle for the SimPy schedule.
"""

from heapq import heappop, heappush

from asyncsim.timing.cluster import Cluster
from asyncsim.timing.durations import Durations
from asyncsim.timing.engine import Log
from asyncsim.timing.trace import Trace


def async_trace(cluster: Cluster, n_updates: int, seed: int) -> Trace:
    d = Durations(cluster, seed)
    heap = []
    for w in range(cluster.workers):
        t_done = 0.0 + d.compute(w, 0)
        heappush(heap, (t_done + d.uplink(w, 0), w, 0, 0, 0.0, t_done))
    free = 0.0
    log = Log()
    for k in range(n_updates):
        t_arrive, w, step, version, t_read, t_done = heappop(heap)
        free = (t_arrive if t_arrive > free else free) + d.service(w, step)
        log.add(k, w, step, version, -1, 0, t_read, t_done, t_arrive, free)
        step += 1
        t_read = free + d.downlink(w, step)
        t_done = t_read + d.compute(w, step)
        heappush(heap, (t_done + d.uplink(w, step), w, step, k + 1, t_read, t_done))
    return log.trace(cluster.workers, "async")
