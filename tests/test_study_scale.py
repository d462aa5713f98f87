"""Studies at scale: grids and seeds, tuning on seeds of its own, simulated-time budgets and early stops, three
executors with the same bytes, resuming, and confidence intervals that cover at their stated rate."""

import concurrent.futures as cf
import json
import math
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asyncsim import load_scenario, run
from asyncsim.cli import main
from asyncsim.scenario import from_dict
from asyncsim.study import LocalPool, StudyFailed, mean_ci, run_study, study_from_dict
from asyncsim.study.execute import Progress, Store, execute
from asyncsim.timing.protocols import simulate
from asyncsim.timing.trace import COLUMNS

BASE = {
    "name": "scale", "seed": 0,
    "problem": {"kind": "quadratic", "dim": 6, "mu": 0.1, "L": 1.0, "noise": 0.5},
    "cluster": {"workers": 3, "compute": {"kind": "exponential", "mean": 1.0}},
    "run": {"updates": 300, "record_every": 10, "time": 40.0},
    "target": {"metric": "loss", "level": 0.2},
    "seeds": 2,
    "compare": {"async": {"protocol": {"kind": "async"}, "algorithm": {"kind": "sgd", "lr": 0.2}},
                "sync": {"protocol": {"kind": "sync"}, "algorithm": {"kind": "sgd", "lr": 0.2}}},
    "sweep": {"cluster.workers": [2, 4]},
}
TABLES = ("table.csv", "table.md", "curves.parquet")


def per_run_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*/*"))
            if p.name in ("metrics.csv", "trace.parquet")}


def quiet(*_):
    pass


# -- the study file -------------------------------------------------------------------------------------------------

def test_a_grid_is_the_product_of_the_swept_keys_times_the_zipped_ones():
    study = study_from_dict({**BASE, "sweep": {"problem.dim": [4, 8],
                                               "zip": {"cluster.workers": [2, 5], "run.updates": [50, 20]}}})
    assert study.keys == ("problem.dim", "cluster.workers", "run.updates")
    assert list(study.points) == [(("problem.dim", 4), ("cluster.workers", 2), ("run.updates", 50)),
                            (("problem.dim", 4), ("cluster.workers", 5), ("run.updates", 20)),
                            (("problem.dim", 8), ("cluster.workers", 2), ("run.updates", 50)),
                            (("problem.dim", 8), ("cluster.workers", 5), ("run.updates", 20))]
    runs = study.evaluation_runs()
    assert len(runs) == 4 * 2 * 2 and [r.seed for r in runs[:4]] == [0, 1, 0, 1]
    last = runs[-1].scenario
    assert (last.problem.dim, last.cluster.workers, last.run.updates, last.seed) == (8, 5, 20, 1)
    assert runs[-1].label == "sync_dim=8_workers=5_updates=20_seed=1"


@pytest.mark.parametrize("change, message", [
    ({"seeds": 0}, "seeds must be between 1 and 10000, got 0"),
    ({"seeds": [3, 3]}, "seeds must list distinct seeds in [0, 2**63), got [3, 3]"),
    ({"sweep": {"zip": {"problem.dim": [4, 8], "cluster.workers": [2]}}}, "sweep.zip lists must have one length"),
    ({"tune": {"algorithm.lr": [0.1], "seeds": [1]}}, "tune.seeds must be disjoint from the evaluation seeds"),
    ({"tune": {"algorithm.lr": [0.1], "by": "luck"}}, "tune.by must be one of time_to_target, final_loss, "
                                                      "got 'luck'"),
    ({"tune": {"algorithm.lr": [0.1, 0.1]}}, "tune.algorithm.lr must list each value once"),
    ({"tune": {"algorithm.lr": [0.1, -1.0]}}, "compare.async (cluster.workers=2) (algorithm.lr=-1.0): "
                                              "algorithm.lr must be > 0, got -1.0"),
    ({"tune": {"cluster.workers": [1, 2]}}, "compare.async.tune: cluster.workers is also swept"),
    ({"target": 0.05, "tune": {"algorithm.lr": [0.1], "by": "time_to_target"}},
     "tune.by time_to_target needs a target {metric: ..., level: ...}"),
    ({"run": {"updates": 300, "stop_at": {"metric": "test_accuracy", "level": 0.9}}},
     "compare.async (cluster.workers=2): run.stop_at.metric must be a metric the run records"),
    ({"tune": {"algorithm.lr": [1, 1.0]}}, "tune.algorithm.lr must list each value once, got [1, 1.0]"),
    ({"sweep": {"run.time": [60, 60.0]}}, "sweep.run.time must list each value once, got [60, 60.0]"),
    ({"sweep": {"seed": [1, 2]}}, "sweep.seed: the study names its runs and gives their seeds; use seeds:"),
    ({"tune": {"name": ["a"]}}, "tune.name: the study names its runs and gives their seeds"),
    ({"compare": {"a": {"seed": 7}}}, "compare.a.seed: a variant cannot set its seed"),
    ({"target": {"metric": "loss", "level": float("nan")}}, "target.level must be finite, got nan"),
    ({"sweep": {"cluster..workers": [2]}}, "sweep: a swept key must be a dotted name such as problem.rank, got "
                                           "'cluster..workers'"),
    ({"tune": {"": [0.1]}}, "tune: a tuned key must be a dotted name such as problem.rank, got ''"),
    ({"seeds": [2**63 - 1], "tune": {"algorithm.lr": [0.1]}}, "tune.seeds: the tuning seeds follow the evaluation "
                                                             "seeds (9223372036854775808, ...) and pass 2**63 - 1"),
    ({"sweep": {f"problem.k{i}": list(range(20)) for i in range(5)}}, "sweep makes 3200000 points; at most 10000"),
    ({"seeds": 10000, "sweep": {"problem.dim": list(range(2, 8))}}, "the study makes 120000 runs"),
])
def test_bad_grids_seeds_and_tuning_fail_with_one_line(change, message):
    import time

    start = time.perf_counter()
    with pytest.raises(Exception) as err:
        study_from_dict({**BASE, **change})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert time.perf_counter() - start < 1.0  # found before any run is built


def test_a_sweep_over_mappings_and_lists_names_its_runs_by_their_values(tmp_path):
    study = study_from_dict({**BASE, "seeds": 1, "sweep": {"cluster.compute": [
        {"kind": "exponential", "mean": 1.0}, {"kind": "constant", "value": 1.0}]}})
    assert study.evaluation_runs()[3].label == 'sync_compute=kind-constant-value-1.0_seed=0'
    result = run_study(study, tmp_path / "s", log=quiet)
    assert result.table["cluster.compute"].tolist()[::2] == ['{"kind": "exponential", "mean": 1.0}',
                                                             '{"kind": "constant", "value": 1.0}']
    assert (tmp_path / "s" / "plots" / "curves.png").is_file()


def test_a_rerun_refuses_files_of_the_user_inside_the_study_directory(serial, tmp_path):
    import shutil

    out, _ = serial
    for inside in ("runs/my_analysis/notes.txt", "plots/mine.png"):
        copy = tmp_path / inside.split("/")[0]
        shutil.copytree(out, copy)
        (copy / inside).parent.mkdir(exist_ok=True)
        (copy / inside).write_text("mine")
        with pytest.raises(FileExistsError, match=f"holds files asyncsim did not write \\({inside.rsplit('/', 1)[0]}"):
            run_study(study_from_dict(BASE), copy, log=quiet)
        assert (copy / inside).read_text() == "mine"


# -- run.time and run.stop_at -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["async", "sync", "periodic", "shared_memory", "rennala", "ringmaster", "k_of_n"])
def test_a_time_budget_is_the_full_run_cut_at_that_time(root, name):
    """run.time T: the trace is the full run's rows applied (or discarded) by T, the metrics the full run's
    recorded rows up to the last update before T, which is recorded too."""
    path = root / "scenarios" / "protocols" / f"{name}.yaml"
    full = run(load_scenario(path, ["run.updates=600", "run.record_every=7"]))
    t_end = float(full.metrics["time"].iloc[-1])
    T = 0.6 * t_end
    cut = run(load_scenario(path, ["run.updates=600", "run.record_every=7", f"run.time={T!r}"]))
    expected = full.trace.until(T)
    assert all(np.array_equal(getattr(cut.trace, c), getattr(expected, c)) for c in COLUMNS)
    K = cut.summary.updates
    assert K == expected.n_updates and cut.summary.simulated_time <= T < full.trace.update_times()[K + 1]
    m = cut.metrics
    pd.testing.assert_frame_equal(m.iloc[:-1], full.metrics[full.metrics["update"] < K].reset_index(drop=True)
                                  .loc[lambda f: f["update"] % 7 == 0].reset_index(drop=True))
    by_count = run(load_scenario(path, [f"run.updates={K}", "run.record_every=7"]))
    pd.testing.assert_series_equal(m.iloc[-1], by_count.metrics.iloc[-1], check_names=False)


def test_a_longer_simulation_has_the_shorter_one_as_its_prefix_for_every_protocol(root):
    """What run.time relies on: simulating more updates never changes the earlier ones."""
    for path in sorted((root / "scenarios" / "protocols").glob("*.yaml")):
        s = load_scenario(path)
        a = simulate(s.cluster, s.protocol, 150, s.seed)
        b = simulate(s.cluster, s.protocol, 450, s.seed)
        T = float(a.used().t_apply[-1]) * (1 - 1e-9)
        A, B = a.until(T), b.until(T)
        assert len(A) > 0 and all(np.array_equal(getattr(A, c), getattr(B, c)) for c in COLUMNS), path.name


def test_stop_at_ends_the_run_at_the_first_recorded_crossing(root):
    path = root / "scenarios" / "quickstart.yaml"
    full = run(load_scenario(path))
    level = float(full.metrics["loss"].iloc[len(full.metrics) // 3])
    early = run(load_scenario(path, [f"run.stop_at={{metric: loss, level: {level!r}}}"]))
    first = int(np.flatnonzero(full.metrics["loss"].to_numpy()[1:] <= level)[0]) + 1
    pd.testing.assert_frame_equal(early.metrics, full.metrics.iloc[:first + 1])
    assert early.summary.reached_at == full.metrics["update"].iloc[first] == early.summary.updates
    assert early.summary.simulated_time == full.metrics["time"].iloc[first]
    np.testing.assert_array_equal(early.x, run(load_scenario(
        path, [f"run.updates={early.summary.updates}"])).x)


def test_a_time_budget_before_the_first_update_is_one_line(root):
    with pytest.raises(Exception, match=r"run.time must be at least the time of the first update \("):
        run(load_scenario(root / "scenarios" / "quickstart.yaml", ["run.time=1e-9"]))
    with pytest.raises(Exception, match="run.time must be > 0"):
        load_scenario(root / "scenarios" / "quickstart.yaml", ["run.time=0"])


# -- executors, bytes and resuming ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "study"
    result = run_study(study_from_dict(BASE), out, log=quiet)
    return out, result


def test_the_tables_are_the_runs_summarized_over_seeds(serial):
    out, result = serial
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 8 and runs.columns[:3].tolist() == ["variant", "cluster.workers", "seed"]
    for _, row in runs.iterrows():  # time to target: the first recorded time the loss is at or below 0.2
        m = pd.read_csv(out / "runs" / f"{row['variant']}_workers={row['cluster.workers']}_seed={row['seed']}"
                        / "metrics.csv")
        hit = m.loc[m["loss"] <= 0.2, "time"]
        assert row["reached"] == (len(hit) > 0)
        assert (row["time_to_target"] == hit.iloc[0]) if len(hit) else math.isnan(row["time_to_target"])
        assert row["simulated_time"] <= 40.0
    table = pd.read_csv(out / "table.csv")
    for _, cell in table.iterrows():
        mine = runs[(runs["variant"] == cell["variant"]) & (runs["cluster.workers"] == cell["cluster.workers"])]
        mean, sd, lo, hi = mean_ci(mine["final_loss"])
        assert cell["final_loss_mean"] == pytest.approx(mean) and cell["final_loss_sd"] == pytest.approx(sd)
        assert (lo, hi) == pytest.approx((mean - 12.706204736 * sd / math.sqrt(2), mean + 12.706204736 * sd /
                                          math.sqrt(2)))  # t_{0.975, 1}
        reached = int(mine["reached"].sum())
        assert cell["reached"] == (f"{reached} of 2 seeds" if reached == 2 else
                                   f"not reached in {2 - reached} of 2 seeds")
    curves = pd.read_parquet(out / "curves.parquet")
    assert set(curves["metric"]) == {"loss", "grad_norm", "suboptimality"}
    assert len(curves) == 3 * sum(len(pd.read_csv(p)) for p in out.glob("runs/*/metrics.csv"))
    np.testing.assert_allclose(result.table["final_loss_mean"], table["final_loss_mean"], rtol=1e-9)


def test_a_process_pool_and_a_dask_cluster_write_the_same_bytes(serial, tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client

    from asyncsim.study.execute import local_dask_cluster

    out, _ = serial
    study = study_from_dict(BASE)
    pool = LocalPool(2)
    try:
        run_study(study, tmp_path / "pool", pool, log=quiet)
    finally:
        pool.shutdown()
    with local_dask_cluster(2) as cluster, Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        run_study(study, tmp_path / "dask", client.get_executor(), log=quiet)
    reference = per_run_files(out)
    assert len(reference) == 16
    for other in ("pool", "dask"):
        assert per_run_files(tmp_path / other) == reference, other
        for name in TABLES:
            assert (tmp_path / other / name).read_bytes() == (out / name).read_bytes(), (other, name)


def test_an_interrupted_study_resumes_to_the_same_tables(serial, tmp_path):
    out, _ = serial
    lines = []

    def stop_after_three(line):
        lines.append(line)
        if len(lines) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(study_from_dict(BASE), tmp_path / "s", log=stop_after_three)
    assert len(list((tmp_path / "s" / "runs").iterdir())) == 3
    assert not (tmp_path / "s" / "table.csv").exists()
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["complete"] is False
    again = []
    run_study(study_from_dict(BASE), tmp_path / "s", log=again.append)
    assert again[0] == "  3 runs already complete (resumed)" and len(again) == 1 + 5
    for name in TABLES:
        assert (tmp_path / "s" / name).read_bytes() == (out / name).read_bytes(), name
    assert per_run_files(tmp_path / "s") == per_run_files(out)
    forced = []
    run_study(study_from_dict(BASE), tmp_path / "s", log=forced.append, force=True)
    assert len(forced) == 8  # recomputed, nothing skipped


def test_a_worker_that_dies_is_retried_once_then_reported(tmp_path):
    class Dying(cf.Executor):
        """Runs inline; the first ``deaths`` submissions of each run fail as if their process died."""

        def __init__(self, deaths):
            self.deaths, self.seen = deaths, {}

        def submit(self, fn, scenario, *args):
            future = cf.Future()
            n = self.seen[scenario.seed] = self.seen.get(scenario.seed, 0) + 1
            if n <= self.deaths:
                future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            else:
                future.set_result(fn(scenario, *args))
            return future

    study = study_from_dict({**BASE, "sweep": None, "compare": {"async": BASE["compare"]["async"]}})
    runs = study.evaluation_runs()
    lines = []
    failures = execute(runs, Store(tmp_path / "a"), Dying(1), "auto", False, Progress(2, lines.append))
    assert failures == {} and len(list((tmp_path / "a" / "runs").iterdir())) == 2
    failures = execute(runs, Store(tmp_path / "b"), Dying(2), "auto", False, Progress(2, lines.append))
    assert failures == {r.label: "its worker process died twice" for r in runs}
    with pytest.raises(StudyFailed, match=r"^2 of 2 evaluation runs failed \(async_seed=[01]: its worker process "
                                          r"died twice; async_seed=[01]: its worker process died twice\); "
                                          r"no run completed$"):
        run_study(study, tmp_path / "c", Dying(2), log=quiet)
    assert not (tmp_path / "c").exists()  # nothing completed: nothing left behind


# -- tuning -----------------------------------------------------------------------------------------------------------

NOISY = {**BASE, "problem": {**BASE["problem"], "noise": 3.0}, "sweep": None, "seeds": [10, 11, 12],
         "target": {"metric": "loss", "level": 0.3}, "run": {**BASE["run"], "record_every": 2},
         "tune": {"algorithm.lr": [0.4, 0.2, 0.05], "seeds": [100, 101]}}


def test_tuning_reads_only_its_own_seeds_and_picks_the_best_by_the_stated_rule(tmp_path):
    a = run_study(study_from_dict(NOISY), tmp_path / "a", log=quiet)
    tuned = {json.loads((d / "summary.json").read_text())["seed"] for d in (tmp_path / "a" / "tuning").iterdir()}
    assert tuned == {100, 101} and set(a.runs["seed"]) == {10, 11, 12}
    for variant in ("async", "sync"):  # the rule, recomputed from the tuning runs' own metrics
        scores = []
        for i, lr in enumerate((0.4, 0.2, 0.05)):
            times, finals = [], []
            for seed in (100, 101):
                m = pd.read_csv(tmp_path / "a" / "tuning" / f"{variant}_lr={lr}_seed={seed}" / "metrics.csv")
                hit = m.loc[m["loss"] <= 0.3, "time"]
                times.append(hit.iloc[0] if len(hit) else math.nan)
                finals.append(m["loss"].iloc[-1])
            missed = sum(map(math.isnan, times))
            scores.append((missed, np.nanmean(times) if missed < 2 else 0.0, np.mean(finals), i))
        best = (0.4, 0.2, 0.05)[min(scores)[3]]
        assert (a.table.loc[a.table["variant"] == variant, "tuned algorithm.lr"] == best).all()
        assert (a.runs.loc[a.runs["variant"] == variant, "tuned algorithm.lr"] == best).all()
    # other evaluation seeds, the same tuning seeds: the same tuning runs and choice, whatever the evaluation noise
    b = run_study(study_from_dict({**NOISY, "seeds": [20, 21, 22]}), tmp_path / "b", log=quiet)
    assert (tmp_path / "a" / "tuning.csv").read_bytes() == (tmp_path / "b" / "tuning.csv").read_bytes()
    assert a.table["tuned algorithm.lr"].tolist() == b.table["tuned algorithm.lr"].tolist()
    assert not a.table["final_loss_mean"].equals(b.table["final_loss_mean"])  # the noise differs; the choice not


def test_the_criterion_follows_the_target_unless_given():
    assert study_from_dict({**NOISY}).tune.by == "time_to_target"
    assert study_from_dict({**NOISY, "target": 0.05}).tune.by == "final_loss"


def test_a_variant_tunes_its_own_key_or_nothing(tmp_path):
    data = {**NOISY, "compare": {
        "async": {"protocol": {"kind": "async"}, "algorithm": {"kind": "sgd"}},
        "sync": {"protocol": {"kind": "sync"}, "algorithm": {"kind": "sgd", "lr": 0.1}, "tune": None},
        "ssp": {"protocol": {"kind": "ssp"}, "algorithm": {"kind": "sgd", "lr": 0.1},
                "tune": {"protocol.bound": [0, 2]}}}}
    study = study_from_dict(data)
    assert [(c.key, c.grid) for c in study.cells] == [("algorithm.lr", (0.4, 0.2, 0.05)), (None, ()),
                                                      ("protocol.bound", (0, 2))]
    assert len(study.tuning_runs()) == (3 + 2) * 2
    result = run_study(study, tmp_path / "s", plots=False, log=quiet)
    assert result.table.columns[:5].tolist() == ["variant", "seeds", "tuned algorithm.lr", "tuned protocol.bound",
                                                 "time_to_target_mean"]
    assert math.isnan(result.table["tuned algorithm.lr"].iloc[1])
    assert result.table["tuned protocol.bound"].iloc[2] in (0, 2)


# -- confidence intervals ----------------------------------------------------------------------------------------------

def test_the_confidence_interval_covers_the_true_mean_at_its_stated_rate():
    """Asynchronous SGD with exponential compute times: gradients arrive as a Poisson process of rate n / mean,
    so the time of S updates is Gamma(S, n / mean) with mean S * mean / n.  Over 400 studies of 8 seeds each,
    the 95% interval covers it in 95% of them, up to binomial noise (sd 1.1%)."""
    s = from_dict({"name": "poisson", "problem": {"kind": "quadratic", "dim": 2},
                   "cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 2.0}},
                   "algorithm": {"kind": "sgd", "lr": 0.1}, "run": {"updates": 10}})
    truth = 10 * 2.0 / 4
    covered = 0
    for study in range(400):
        times = [float(simulate(s.cluster, s.protocol, 10, 8 * study + i).t_apply[-1]) for i in range(8)]
        _, _, lo, hi = mean_ci(times)
        covered += lo <= truth <= hi
    assert 0.915 <= covered / 400 <= 0.985


# -- the command line -------------------------------------------------------------------------------------------------

def test_the_study_command_runs_on_local_processes_resumes_and_agrees_with_run(tmp_path, capsys):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, "seeds": 1}))
    assert main(["study", str(path), "--out", str(tmp_path / "a"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "4 cells (2 variants x 2 points) x 1 seed = 4 runs, on 2 local processes" in out
    assert "| variant | cluster.workers | time to target (s) |" in out
    assert main(["study", str(path), "--out", str(tmp_path / "a"), "--no-plots"]) == 0
    assert "4 runs already complete (resumed)" in capsys.readouterr().out
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--no-plots", "--workers", "1"]) == 0
    assert per_run_files(tmp_path / "a") == per_run_files(tmp_path / "b")
    assert (tmp_path / "a" / "table.csv").read_bytes() == (tmp_path / "b" / "table.csv").read_bytes()


def test_dask_that_is_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    import sys

    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(BASE))
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["study", str(path), "--dask", "local", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --dask needs Dask distributed, which is not installed: python -m pip install "
                   "'dask[distributed]' (or the dask extra)\n")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, message", [
    ({"sweep": {"seed": [1, 2]}}, "error: sweep.seed: the study names its runs and gives their seeds; use seeds: "
                                  "(a number or a list) to replicate over seeds\n"),
    ({"tune": {"algorithm.lr": [1, 1.0]}}, "error: tune.algorithm.lr must list each value once, got [1, 1.0]\n"),
    ({"target": {"metric": "loss", "level": float("inf")}}, "error: target.level must be finite, got inf\n"),
    ({"seeds": [3, 4]}, None),  # fine on its own; with --seed below it is a mistake
])
def test_validate_and_study_give_the_same_line_and_leave_nothing(tmp_path, capsys, change, message):
    import yaml

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, **change}))
    extra = ["--seed", "5"] if message is None else []
    message = message or ("error: --seed sets the first of the study's seeds, but its file lists them (seeds: "
                          "[3, 4]); use --seeds N with --seed, or edit the list\n")
    assert main(["validate", str(path), *extra]) == 2
    assert capsys.readouterr().err == message
    assert main(["study", str(path), "--out", str(tmp_path / "o"), *extra]) == 2
    assert capsys.readouterr().err == message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]
