"""A 16-run study three ways in one process: serially, on a 2-process pool and on a 2-worker Dask LocalCluster.

Prints the wall time of each, the speedup of the pool and of Dask over the serial run (target >= 1.7x on two
cores), the per-run overhead of Dask against the pool (target <= 50 ms), and checks that every run's metrics.csv
and trace.parquet are byte-identical across the three.  Executors are started and warmed (one run each) before
timing, so the figures compare running, not starting; their start-up times are printed separately.

    python benchmarks/bench_study.py            # about a minute and a half on two cores
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from asyncsim.study import LocalPool, run_study, study_from_dict
from asyncsim.study.execute import local_dask_cluster, run_files

STUDY = {
    "name": "bench_study", "seed": 0,
    "problem": {"kind": "mlp", "data": "digits", "hidden": [64], "activation": "relu"},
    "cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 1.0}, "flops_per_second": 1.0e8,
                "uplink": {"kind": "constant", "value": 0.01}, "downlink": {"kind": "constant", "value": 0.01}},
    "run": {"time": 30.0, "updates": 5000, "record_every": 10},
    "target": {"metric": "test_accuracy", "level": 0.9},
    "seeds": 8,
    "compare": {"easgd": {"protocol": {"kind": "periodic", "local_steps": 4}, "algorithm": {"kind": "easgd", "lr": 0.1}},
                "downpour": {"protocol": {"kind": "periodic", "local_steps": 4},
                             "algorithm": {"kind": "downpour", "lr": 0.03}}},
}


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("runs/*/*"))
            if p.name in ("metrics.csv", "trace.parquet")}


def timed(study, out, executor) -> float:
    start = time.perf_counter()
    run_study(study, out, executor, plots=False, log=lambda *_: None)
    return time.perf_counter() - start


def warm(executor, scenario) -> None:
    """Runs on every worker, so that imports and data loading are not timed."""
    for future in [executor.submit(run_files, scenario) for _ in range(4)]:
        future.result()


def main() -> None:
    from distributed import Client

    study = study_from_dict(STUDY)
    n = len(study)
    first = study.evaluation_runs()[0].scenario
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run_files(first)  # this process warmed too
        serial = timed(study, root / "serial", None)

        start = time.perf_counter()
        pool = LocalPool(2)
        warm(pool, first)
        pool_start = time.perf_counter() - start
        try:
            pooled = timed(study, root / "pool", pool)
        finally:
            pool.shutdown()

        start = time.perf_counter()
        with local_dask_cluster(2) as cluster, Client(cluster) as client:
            executor = client.get_executor()
            client.run(run_files, first)  # once on every worker
            warm(executor, first)
            dask_start = time.perf_counter() - start
            dasked = timed(study, root / "dask", executor)

        same = files(root / "serial") == files(root / "pool") == files(root / "dask")
        count = len(files(root / "serial"))
    print(f"{n} runs: a 64-64-10 network on digits, EASGD and DOWNPOUR, 30 simulated seconds each")
    print("| executor | start-up (s) | study (s) | speedup over serial |")
    print("| --- | --- | --- | --- |")
    print(f"| serial, this process | - | {serial:.2f} | 1.00x |")
    print(f"| LocalPool(2) | {pool_start:.2f} | {pooled:.2f} | {serial / pooled:.2f}x |")
    print(f"| Dask LocalCluster(2) | {dask_start:.2f} | {dasked:.2f} | {serial / dasked:.2f}x |")
    print(f"per-run overhead of Dask against the pool: {1000 * (dasked - pooled) / n:+.1f} ms (target <= 50 ms)")
    print(f"per-run files byte-identical across the three: {same} ({count} files)")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
