"""The memory budget's constants against measured peaks (``asyncsim/budget.py``).

Each measurement runs in a fresh process: load a scenario, run it end to end (timing, replay, summary) and write its
results without plots, then read the process's peak resident memory (VmHWM).  Two sizes of one scenario give the
bytes per trace row (or per worker) as the difference of the peaks over the difference of the sizes; the budget's
constant should be at least that.  Also times ``asyncsim validate`` on scenarios that name huge sizes (it must
answer in about the time of an import: under 2 s on the 2-core machine).

    python benchmarks/bench_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

from asyncsim import budget

CHILD = r"""
import json, sys, tempfile
import asyncsim
from asyncsim.results import write_results
s = asyncsim.load_scenario(None, sys.argv[1:])
res = asyncsim.run(s, engine="simpy" if "protocol.kind=async" in sys.argv else "auto")
with tempfile.TemporaryDirectory() as d:
    write_results(res, d + "/r", plots=False)
peak = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
print(json.dumps({"peak": peak, "rows": len(res.trace)}))
"""

SMALL = ["problem.n_samples=200", "problem.dim=10", "run.record_every=1000", "cluster.stragglers=[]"]


def peak(overrides: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, *SMALL, *overrides], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)


def per_unit(name: str, small: list[str], large: list[str], unit: str, constant: float) -> None:
    a, b = peak(small), peak(large)
    units = (b["rows"] - a["rows"]) if unit == "row" else None
    if unit == "worker":
        units = int(large[0].split("=")[1]) - int(small[0].split("=")[1])
    measured = (b["peak"] - a["peak"]) / units
    print(f"{name:<44} {measured:10.0f} B/{unit}   budget {constant:7.0f}   budget / measured {constant / measured:5.2f}")


def validate_time(setting: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "asyncsim.cli", "validate", "--set", setting], capture_output=True,
                   check=False, cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def main() -> None:
    print("peak resident memory per unit, measured as the difference of two runs' peaks")
    per_unit("async, SimPy engine, per trace row", ["run.updates=200000", "protocol.kind=async"],
             ["run.updates=600000", "protocol.kind=async"], "row", budget.ROW_BYTES)
    per_unit("async, fast path, per trace row", ["run.updates=200000"], ["run.updates=600000"], "row",
             budget.ROW_BYTES)
    per_unit("sync rounds (8 workers), per trace row", ["run.updates=25000", "protocol.kind=sync"],
             ["run.updates=75000", "protocol.kind=sync"], "row", budget.ROW_BYTES)
    one = ["protocol.kind=async", "algorithm.batch_size=1"]  # draws of one index per step: timing state alone
    per_unit("async, SimPy, per worker (1 update each)", ["cluster.workers=20000", "run.updates=20000", *one],
             ["cluster.workers=60000", "run.updates=60000", *one], "worker",
             budget.WORKER_BYTES + budget.ROW_BYTES + 8 * 256)
    per_unit("the same with minibatches of 32", ["cluster.workers=20000", "run.updates=20000", "protocol.kind=async"],
             ["cluster.workers=60000", "run.updates=60000", "protocol.kind=async"], "worker",
             budget.WORKER_BYTES + budget.ROW_BYTES + 8 * 32 * 256)
    print("\nasyncsim validate on huge sizes (wall seconds, fresh process each)")
    for setting in ("run.updates=5000", "cluster.workers=1000000000", "run.updates=1000000000000000",
                    "problem.n_samples=100000000000", "problem={kind: quadratic, dim: 10000000}"):
        print(f"  {setting:<44} {validate_time(setting):6.2f} s")


if __name__ == "__main__":
    main()
