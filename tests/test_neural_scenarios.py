"""The seed001 (ADMM) and seed004 (EASGD) scenarios from the CLI, and ADMM's simulated time against its cost model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import asyncsim
from asyncsim.cli import main
from asyncsim.files import load_yaml
from asyncsim.study import run_study, study_from_dict
from asyncsim.params import ScenarioError
from asyncsim.theory import allreduce_time

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seed001(tmp_path_factory):
    out = tmp_path_factory.mktemp("s1") / "r"
    assert main(["run", str(ROOT / "scenarios" / "seed001" / "admm.yaml"), "--out", str(out), "--workers", "1",
                 "--seeds", "1", "--set", "run.updates=8", "--set", "run.record_every=2"]) == 0
    return out


def test_seed001_writes_the_speedup_and_memory_tables_with_the_published_columns(seed001):
    table = pd.read_csv(seed001 / "table.csv")
    assert table["cluster.workers"].tolist() == [1, 2, 4, 8, 16, 32, 64]
    assert table["seed_predicted_mb"].tolist() == [979.58, 492.38, 248.78, 126.98, 66.08, 35.63, 20.40]
    time = table["time_to_target_mean"]
    np.testing.assert_allclose(table["speedup"], time.iloc[0] / time)
    assert table["speedup"].iloc[3] > 3 and (np.diff(table["speedup"].iloc[:5]) > 0).all()
    assert (np.diff(table["predicted_mb"]) < 0).all() and (table["held_mb"] > 0).all()
    assert (seed001 / "plots" / "curves.png").is_file() and (seed001 / "plots" / "accuracy.png").is_file()
    assert (seed001 / "plots" / "time_to_target.png").is_file()


def test_admm_iterates_do_not_depend_on_the_number_of_nodes(seed001):
    rows = pd.read_parquet(seed001 / "runs.parquet")
    np.testing.assert_allclose(rows["final_loss"], rows["final_loss"].iloc[0], rtol=1e-9)


def test_admm_round_time_is_the_cost_model(seed001):
    """Constant compute: every round takes work(N)/rate (times the slowest worker's factor) + the ring all-reduce
    of the Gram sums + the serial solve, so the simulated time is K times that, to rounding."""
    for workers in (1, 4, 64):
        summary = json.loads((seed001 / "runs" / f"admm_workers={workers}_seed=0" / "summary.json").read_text())
        s = asyncsim.load_scenario(seed001 / "runs" / f"admm_workers={workers}_seed=0" / "scenario.yaml")
        problem = s.problem.build(asyncsim.rng.generator(s.seed, asyncsim.rng.Stream.DATA))
        alg = s.algorithm.bind(problem, workers)
        rate = s.cluster.flops_per_second
        per_round = (alg.work(problem, workers) / rate + alg.serial_flops(problem) / rate
                     + allreduce_time(workers, 1e-5, alg.message_bytes(problem, workers), 1e9))
        assert summary["simulated_time"] == pytest.approx(8 * per_round, rel=1e-12)


def test_admm_rounds_wait_for_a_straggler_and_need_a_flop_rate(seed001):
    path = seed001 / "runs" / "admm_workers=4_seed=0" / "scenario.yaml"
    base = asyncsim.run(asyncsim.load_scenario(path)).summary["simulated_time"]
    slow = asyncsim.run(asyncsim.load_scenario(path, overrides=[
        "cluster.stragglers=[{worker: 2, slowdown: 3.0}]"])).summary["simulated_time"]
    s = asyncsim.load_scenario(path)
    problem = s.problem.build(asyncsim.rng.generator(s.seed, asyncsim.rng.Stream.DATA))
    extra = 8 * 2 * s.algorithm.work(problem, 4) / s.cluster.flops_per_second
    assert slow - base == pytest.approx(extra, rel=1e-9)
    with pytest.raises(ScenarioError, match="admm_nn times its serial step in flops: set cluster.flops_per_second"):
        asyncsim.run(asyncsim.load_scenario(path, overrides=["cluster.flops_per_second=null"]))
    with pytest.raises(ScenarioError, match="protocol.kind must be one of sync, allreduce for algorithm admm_nn"):
        asyncsim.load_scenario(path, overrides=["protocol={kind: async}"])


def test_seed004_compares_elastic_averaging_with_sgd_and_plots_accuracy(root, tmp_path):
    """The study file with a one-value grid and one seed (its tuning is tested in test_study_scale)."""
    data = load_yaml(root / "scenarios" / "seed004" / "easgd.yaml", "study")
    data.update(seeds=1, tune={"algorithm.lr": [0.1], "seeds": 1}, run={"updates": 24, "record_every": 4})
    out = tmp_path / "s4"
    run_study(study_from_dict(data), out, log=lambda *_: None)
    rows = pd.read_parquet(out / "runs.parquet")
    assert set(rows["variant"]) == {"sgd"} | {f"{m}_tau{t}" for m in ("easgd", "eamsgd", "downpour")
                                              for t in (1, 4, 16)}
    assert {"final_test_accuracy", "final_train_accuracy", "time_to_target", "tuned algorithm.lr"} <= set(rows)
    assert (rows["tuned algorithm.lr"] == 0.1).all()
    assert (out / "plots" / "accuracy.png").is_file()
    tau16 = json.loads((out / "runs" / "easgd_tau16_seed=0" / "summary.json").read_text())
    assert tau16["algorithm_resolved"]["alpha"] == pytest.approx(0.9 / (4 * 16))
