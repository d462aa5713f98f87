"""Real execution against the simulator: Hogwild and a parameter server on least squares.

Least squares with d = 1000, minibatches of 32 and 20,000 updates in all, run on real worker processes with 1 and
2 workers under ``shared_memory`` (lock-free Hogwild) and ``async`` (parameter server in the main process).  For
each real run the script then calibrates the scenario from the run's own observed trace (``asyncsim calibrate
--from``: empirical compute, read, link and service laws) and simulates it, so the simulated throughput is a
prediction of the real one on equal terms.

    python benchmarks/bench_real.py [--updates 20000] [--dim 1000] [--repeats 3]

Prints, per protocol and worker count: the real run's time from start to the last update (median of the
repeats), its throughput, the speedup from 1 to 2 workers, and the calibrated simulation's throughput with its
relative difference.  The run with the median time is the one calibrated.
"""

from __future__ import annotations

import argparse
import statistics

from asyncsim.calibrate import calibrated, observed
from asyncsim.real import run_real
from asyncsim.runner import run
from asyncsim.scenario import from_dict

ZERO = {"kind": "constant", "value": 0.0}


def scenario(protocol: str, workers: int, updates: int, dim: int, n_samples: int) -> dict:
    proto = {"kind": "shared_memory"} if protocol == "hogwild" else {"kind": "async"}
    return {"name": f"bench-{protocol}-{workers}", "seed": 0,
            "problem": {"kind": "least_squares", "n_samples": n_samples, "dim": dim, "noise": 0.1},
            "cluster": {"workers": workers, "compute": {"kind": "constant", "value": 1.0}, "uplink": ZERO,
                        "downlink": ZERO},
            "protocol": proto, "algorithm": {"kind": "sgd", "lr": 0.002, "batch_size": 32},
            "run": {"updates": updates, "record_every": updates // 10}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=4000, help="least-squares rows")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"least squares d = {args.dim}, {args.samples} rows, batch 32, {args.updates} updates; "
          f"median of {args.repeats} real runs\n")
    print(f"{'protocol':<10}{'workers':>8}{'real s':>10}{'real upd/s':>12}{'speedup':>9}{'sim upd/s':>12}"
          f"{'sim/real':>10}{'replay':>10}")
    for protocol in ("hogwild", "ps"):
        base = None
        for workers in (1, 2):
            s = from_dict(scenario(protocol, workers, args.updates, args.dim, args.samples))
            runs = sorted((run_real(s) for _ in range(args.repeats)), key=lambda r: r.summary["simulated_time"])
            real = runs[len(runs) // 2]
            t = statistics.median(r.summary["simulated_time"] for r in runs)
            base = base or t
            sim = run(from_dict(calibrated(s, observed(real.trace))))
            real_rate, sim_rate = args.updates / t, sim.summary["updates_per_second"]
            check = real.summary["replay_check"]["exact"]
            print(f"{protocol:<10}{workers:>8}{t:>10.3f}{real_rate:>12.0f}{base / t:>8.2f}x{sim_rate:>12.0f}"
                  f"{sim_rate / real.summary['updates_per_second'] - 1:>+9.1%} "
                  f"{'n/a' if check is None else 'exact' if check else 'MISMATCH':>9}")


if __name__ == "__main__":
    main()
