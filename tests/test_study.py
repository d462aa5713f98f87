"""Studies (compare / sweep), work-timed clusters, and the seed000 scenarios from the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

import asyncsim
from asyncsim.cli import main
from asyncsim.params import ScenarioError
from asyncsim.problems import NMF
from asyncsim.rng import Stream, generator
from asyncsim.study import load_study, merge, study_from_dict
from asyncsim.timing import Cluster
from asyncsim.timing.laws import Constant

BASE = {
    "name": "s", "problem": {"kind": "quadratic", "dim": 6, "mu": 0.1, "L": 1.0},
    "cluster": {"workers": 2, "compute": {"kind": "constant", "value": 1.0}},
    "run": {"updates": 60, "record_every": 5},
    "compare": {"gd": {"cluster": {"workers": 1}, "protocol": {"kind": "sync"}, "algorithm": {"kind": "gd", "lr": 0.5}},
                "cd": {"algorithm": {"kind": "asyscd", "lr": 0.5, "choice": "cyclic"}}},
}


def test_merge_replaces_mappings_with_a_kind_and_merges_the_others():
    base = {"cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 1.0}}}
    out = merge(base, {"cluster": {"workers": 1, "compute": {"kind": "constant", "value": 2.0}}})
    assert out == {"cluster": {"workers": 1, "compute": {"kind": "constant", "value": 2.0}}}
    assert base["cluster"]["workers"] == 4  # not modified


def test_study_runs_every_variant_at_every_swept_value_and_times_the_common_target(tmp_path):
    study = study_from_dict({**BASE, "sweep": {"problem.dim": [4, 8]}})
    runs = study.evaluation_runs()
    assert [r.label for r in runs] == ["gd_dim=4_seed=0", "cd_dim=4_seed=0", "gd_dim=8_seed=0", "cd_dim=8_seed=0"]
    assert runs[3].scenario.problem.dim == 8 and runs[0].scenario.cluster.workers == 1
    result = asyncsim.study.run_study(study, tmp_path / "out", plots=False, log=lambda *_: None)
    table = pd.read_csv(tmp_path / "out" / "table.csv")
    assert table[["variant", "problem.dim"]].values.tolist() == [["gd", 4], ["cd", 4], ["gd", 8], ["cd", 8]]
    rows = pd.read_parquet(tmp_path / "out" / "runs.parquet")
    for _, row in rows.iterrows():  # the time to target is the first recorded time at or below the common goal
        label = f"{row['variant']}_dim={row['problem.dim']}_seed=0"
        m = pd.read_csv(tmp_path / "out" / "runs" / label / "metrics.csv")
        same = rows[rows["problem.dim"] == row["problem.dim"]]
        worst = same["final_loss"].max()
        goal = worst + 0.01 * (row["initial_loss"] - worst)
        assert row["time_to_target"] == m.loc[m["loss"] <= goal, "time"].iloc[0]
    np.testing.assert_array_equal(table["time_to_target_mean"], rows["time_to_target"])  # one seed: the run's
    assert result.runs.drop(columns="wall_time_s").equals(rows.drop(columns="wall_time_s"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["complete"] and summary["keys"] == ["problem.dim"] and summary["seeds"] == [0]


@pytest.mark.parametrize("change, message", [
    ({"compare": {}}, "compare must map variant names"),
    ({"sweep": {"problem.dim": []}}, "sweep.problem.dim must be a non-empty list of values, got []"),
    ({"target": 1.5}, "target must be a number in (0, 1) or a mapping {metric: ..., level: ...}, got 1.5"),
    ({"compare": {"gd": {"algorithm": {"kind": "gd", "lr": -1}}}}, "compare.gd: algorithm.lr must be > 0, got -1"),
])
def test_bad_studies_fail_with_one_line(change, message):
    with pytest.raises(ScenarioError) as err:
        study_from_dict({**BASE, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_flops_per_second_times_a_step_by_its_arithmetic():
    problem = NMF(m=12, n=10, rank=3).build(generator(0, Stream.DATA))
    flops = problem.grad_flops()
    cluster = Cluster(workers=2, compute=Constant(value=1.0), speeds=(1.0, 2.0), flops_per_second=1e6)
    per_step = cluster.per_step(flops / 4)
    assert per_step.flops_per_second is None
    assert per_step.factors == pytest.approx((flops / 4 / 1e6, flops / 4 / 2e6))
    gd = asyncsim.Algorithm.registry.get("gd", "algorithm.kind")(lr=0.1)
    cd = asyncsim.Algorithm.registry.get("asyscd", "algorithm.kind")(lr=0.1, blocks=4)
    assert gd.work(problem, 2) == flops and cd.work(problem, 2) == flops / 4


def test_flops_timing_needs_a_problem_that_counts_flops():
    with pytest.raises(ScenarioError, match="needs the problem's gradient flops"):
        asyncsim.scenario.from_dict({**{k: v for k, v in BASE.items() if k != "compare"},
                                     "problem": {"kind": "logistic", "n_samples": 50, "dim": 4},
                                     "algorithm": {"kind": "gd", "lr": 0.5}},
                                    ["cluster.flops_per_second=1000.0"])


@pytest.mark.parametrize("name, overrides, seeds", [
    ("mf", ["run.updates=300"], None),
    ("saddle", ["run.updates=300"], None),
    ("nmf", ["run.updates=4"], 1),
])
def test_seed000_scenarios_run_from_the_cli(root, tmp_path, capsys, name, overrides, seeds):
    path = root / "scenarios" / "seed000" / f"{name}.yaml"
    sets = [a for o in overrides for a in ("--set", o)] + (["--seeds", str(seeds)] if seeds else [])
    assert main(["validate", str(path)]) == 0
    assert main(["run", str(path), "--out", str(tmp_path / name), "--workers", "1", *sets]) == 0
    out = capsys.readouterr().out
    assert "Time to target" in out
    study = load_study(path, overrides, seeds=seeds)
    for run in study.evaluation_runs({c: 0 for c in study.cells if c.grid}):
        assert (tmp_path / name / "runs" / run.label / "summary.json").is_file()
    assert (tmp_path / name / "plots" / "curves.png").is_file()
    assert (tmp_path / name / "plots" / "time_to_target.png").is_file()
    assert (tmp_path / name / "plots" / "final.png").is_file() == bool(study.keys)  # the final loss against a sweep
    table = pd.read_csv(tmp_path / name / "table.csv")
    assert table["seeds"].eq(len(study.seeds)).all() and len(table) == len(study.cells)
    if name == "nmf":  # the seed's table: rank against each method's time; and the image with its reconstructions
        assert table["problem.rank"].tolist()[::2] == [6, 11, 21, 42, 84, 112, 167, 334]
        assert table["variant"].tolist()[:2] == ["projected_gd", "projected_seacd"]
        assert (tmp_path / name / "plots" / "images.png").is_file()


def test_running_a_study_run_leaves_the_callers_matplotlib_backend(root):
    """In a notebook, a study run in the kernel must not switch the notebook's backend to Agg (its figures would
    stop showing): with pyplot already imported, the backend stays."""
    import matplotlib
    import matplotlib.pyplot  # noqa: F401  (as in a notebook)

    from asyncsim.study.execute import run_files

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        files = run_files(asyncsim.load_scenario(overrides=["run.updates=50"]), plots=True)
        assert files["plots/loss.png"].startswith(b"\x89PNG")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
