"""Engine benchmark: every figure is a ratio measured side by side in this one run.

1. Trace generation: the SimPy engine (asyncsim.timing.simulate, async protocol) against a minimal hand-written
   heapq event loop producing the identical schedule (checked), at 4, 64 and 1024 workers.
2. Simulation overhead: simulating 20,000 async SGD updates on least squares (d = 1000, batch 32), i.e. trace
   generation plus replay, against a bare numpy loop doing 20,000 SGD steps on the same data.
3. Fast path: the vectorized numpy trace generation against SimPy (async at 64 workers and 200,000 updates, sync
   at 64 workers and 5,000 rounds), identical traces (checked).

Each timing is the best of ``--repeat`` interleaved runs.  Run: ``python benchmarks/bench_engine.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heapq_reference import async_trace  # noqa: E402

from asyncsim.algorithms import SGD  # noqa: E402
from asyncsim.problems import LeastSquares  # noqa: E402
from asyncsim.replay import replay  # noqa: E402
from asyncsim.rng import Stream, generator  # noqa: E402
from asyncsim.timing import Cluster, simulate  # noqa: E402
from asyncsim.timing.laws import Constant, Exponential  # noqa: E402
from asyncsim.params import kind  # noqa: E402
from asyncsim.timing.protocols import Async, Sync  # noqa: E402
from asyncsim.timing.trace import INT_COLUMNS, TIME_COLUMNS  # noqa: E402

COLUMNS = INT_COLUMNS + TIME_COLUMNS


def best_of(repeat: int, *fns):
    """Interleave the functions ``repeat`` times; return the best time of each and the last results."""
    best = [float("inf")] * len(fns)
    out = [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            out[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best, out


def engine(repeat: int, updates: int) -> None:
    print(f"1. trace generation, async parameter server, {updates} updates (best of {repeat})")
    print(f"   {'workers':>7} {'SimPy upd/s':>12} {'heapq upd/s':>12} {'SimPy/heapq time':>17}  identical")
    for n in (4, 64, 1024):
        cluster = Cluster(workers=n, compute=Exponential(mean=1.0), uplink=Constant(value=0.01),
                          downlink=Constant(value=0.01))
        (t_sim, t_ref), (sim, ref) = best_of(repeat, lambda: simulate(cluster, Async(), updates, 0, engine="simpy"),
                                             lambda: async_trace(cluster, updates, 0))
        same = all(np.array_equal(getattr(sim, c), getattr(ref, c)) for c in COLUMNS)
        print(f"   {n:>7} {updates / t_sim:>12,.0f} {updates / t_ref:>12,.0f} {t_sim / t_ref:>17.2f}  {same}")


def overhead(repeat: int, updates: int, workers: int) -> None:
    d, n_samples, batch, lr, seed = 1000, 10_000, 32, 1e-4, 0
    problem = LeastSquares(n_samples=n_samples, dim=d).build(generator(seed, Stream.DATA))
    A, y = problem.A, problem.y
    sgd = SGD(lr=lr, batch_size=batch)
    cluster = Cluster(workers=workers, compute=Exponential(mean=1.0))

    def simulated(engine="simpy"):
        trace = simulate(cluster, Async(), updates, seed, engine=engine)
        return replay(trace, sgd, problem, np.zeros(d), seed, record_every=updates).x

    def bare():
        rng = np.random.default_rng(seed)
        x = np.zeros(d)
        for _ in range(updates):
            idx = rng.integers(0, n_samples, batch)
            Ab = A[idx]
            x = x - lr * (Ab.T @ (Ab @ x - y[idx])) / batch
        return x

    def bare_predrawn():  # a stricter baseline: every minibatch drawn in one call before the loop
        idx_all = np.random.default_rng(seed).integers(0, n_samples, (updates, batch))
        x = np.zeros(d)
        for idx in idx_all:
            Ab = A[idx]
            x = x - lr * (Ab.T @ (Ab @ x - y[idx])) / batch
        return x

    def trace_only():
        return simulate(cluster, Async(), updates, seed, engine="simpy")

    (t_sim, t_fast, t_bare, t_pre, t_trace), _ = best_of(repeat, simulated, lambda: simulated("fast"), bare,
                                                         bare_predrawn, trace_only)
    print(f"\n2. simulation overhead: {updates} async SGD updates, least squares d={d}, n={n_samples}, batch {batch}, "
          f"{workers} workers (best of {repeat})")
    print(f"   SimPy trace + replay  {t_sim:7.3f} s   (of which SimPy trace {t_trace:.3f} s)")
    print(f"   fast trace + replay   {t_fast:7.3f} s   (what --engine auto picks here)")
    print(f"   bare numpy SGD loop   {t_bare:7.3f} s")
    print(f"   bare loop, minibatches drawn up front {t_pre:7.3f} s")
    print(f"   overhead ratio        {t_sim / t_bare:7.3f} SimPy, {t_fast / t_bare:.3f} fast   (target <= 1.25; "
          f"{t_sim / t_pre:.3f} / {t_fast / t_pre:.3f} against the up-front-draw loop)")


def fast_path(repeat: int) -> None:
    print(f"\n3. fast path vs SimPy, 64 workers (best of {repeat})")
    print(f"   {'protocol':>8} {'updates':>8} {'SimPy s':>8} {'fast s':>8} {'SimPy/fast':>11}  identical")
    cluster = Cluster(workers=64, compute=Exponential(mean=1.0), uplink=Constant(value=0.01),
                      downlink=Constant(value=0.01))
    for protocol, updates in ((Async(), 200_000), (Sync(), 5_000)):
        (t_sim, t_fast), (sim, fast) = best_of(
            repeat, lambda: simulate(cluster, protocol, updates, 0, engine="simpy"),
            lambda: simulate(cluster, protocol, updates, 0, engine="fast"))
        same = all(np.array_equal(getattr(sim, c), getattr(fast, c)) for c in COLUMNS)
        print(f"   {kind(protocol):>8} {updates:>8} {t_sim:>8.3f} {t_fast:>8.3f} {t_sim / t_fast:>11.1f}  {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--updates", type=int, default=100_000, help="updates per trace-generation run")
    args = parser.parse_args()
    engine(args.repeat, args.updates)
    overhead(args.repeat, 20_000, workers=8)
    fast_path(min(args.repeat, 3))


if __name__ == "__main__":
    main()
