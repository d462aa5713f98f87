"""Timing a client population: FedBuff on 100,000 clients with on/off availability, 1,000 training at once, a buffer
of 10 and 100,000 server updates (a million contributions), against ``async`` on 1,000 always-available workers in
the same run.  Timing only (the SimPy trace, no replay); each case runs in a fresh process, which reports its wall
time and its peak resident memory (VmHWM).  Targets on the 2-core machine: under 60 s and 2 GB.

    python benchmarks/bench_population.py                  # the sizes above
    python benchmarks/bench_population.py --scale 0.1      # a tenth of the clients, slots and updates
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.availability import OnOff
from asyncsim.timing.laws import Constant, LogNormal
from asyncsim.timing.protocols import Async, Buffered
kind, workers, concurrency, updates = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
law = dict(compute=LogNormal(mu=0.0, sigma=0.5), uplink=Constant(value=0.05), downlink=Constant(value=0.05))
if kind == "population":
    cluster = Cluster(workers=workers, availability=OnOff(mean_online=600.0, mean_offline=1200.0), **law)
    protocol, engine = Buffered(buffer=10, concurrency=concurrency), "simpy"
else:
    cluster, protocol, engine = Cluster(workers=workers, **law), Async(), kind
start = time.perf_counter()
trace = simulate(cluster, protocol, updates, seed=0, engine=engine)
wall = time.perf_counter() - start
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
print(json.dumps({"wall": wall, "peak": peak, "rows": len(trace), "clients": len(set(trace.worker.tolist())),
                  "lost": int((trace.status == 3).sum()), "end": float(trace.t_apply.max())}))
"""


def run(kind: str, workers: int, concurrency: int, updates: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(workers), str(concurrency), str(updates)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the clients, slots and updates")
    args = parser.parse_args()
    clients, slots, updates = (max(1, round(x * args.scale)) for x in (100_000, 1_000, 100_000))
    cases = [("population", f"buffered, {clients:,} on/off clients, concurrency {slots:,}, buffer 10", clients, slots,
              updates),
             ("simpy", f"async, {slots:,} workers, SimPy", slots, slots, 10 * updates),
             ("fast", f"async, {slots:,} workers, fast path", slots, slots, 10 * updates)]
    print(f"{'case':<62} {'updates':>9} {'contrib.':>10} {'wall s':>7} {'peak GB':>8} {'contrib./s':>11}")
    rates = {}
    for kind, label, workers, concurrency, n in cases:
        r = run(kind, workers, concurrency, n)
        rates[kind] = r["rows"] / r["wall"]
        print(f"{label:<62} {n:>9,} {r['rows']:>10,} {r['wall']:>7.1f} {r['peak'] / 1e9:>8.2f} {rates[kind]:>11,.0f}")
        if kind == "population":
            print(f"  {r['clients']:,} distinct clients took part, {r['lost']:,} tasks lost to a client going offline, "
                  f"{r['end']:.0f} simulated seconds")
    print(f"contributions per second, population / async SimPy: {rates['population'] / rates['simpy']:.2f}; "
          f"population / async fast path: {rates['population'] / rates['fast']:.3f}")


if __name__ == "__main__":
    main()
