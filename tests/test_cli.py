"""End to end through the CLI: result files, reproducibility from the resolved scenario, atomic writes."""

import json

import pandas as pd
import pytest

import asyncsim
from asyncsim.cli import main
from asyncsim.timing import Trace

SHORT = ["--set", "run.updates=400", "--set", "run.record_every=20", "--no-plots"]


def test_run_without_argument_writes_every_result_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run"]) == 0
    out = tmp_path / "results" / "quickstart"
    for name in ("scenario.yaml", "trace.parquet", "metrics.csv", "summary.json", "plots/loss.png",
                 "plots/staleness.png", "plots/shares.png", "plots/timeline.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    trace = Trace.load(out / "trace.parquet")
    assert summary["updates"] == 5000 == trace.n_updates
    assert summary["staleness"]["mean"] == pytest.approx(trace.staleness.mean())
    assert summary["staleness"]["max"] == trace.staleness.max()
    assert summary["simulated_time"] == trace.t_apply[-1]
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["update"].tolist() == list(range(0, 5001, 50))
    assert metrics["suboptimality"].iloc[-1] < 1e-3 * metrics["suboptimality"].iloc[0]  # it actually converges
    printed = capsys.readouterr().out
    assert "quickstart  (async, sgd, 8 workers, seed 0)" in printed and "staleness        mean" in printed


def test_rerunning_the_resolved_scenario_reproduces_the_results(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    assert main(["run", "--out", str(first), "--seed", "3", "--set", "algorithm.lr=0.02", *SHORT]) == 0
    assert main(["run", str(first / "scenario.yaml"), "--out", str(second), "--no-plots"]) == 0
    assert (first / "metrics.csv").read_bytes() == (second / "metrics.csv").read_bytes()
    pd.testing.assert_frame_equal(pd.read_parquet(first / "trace.parquet"), pd.read_parquet(second / "trace.parquet"))
    assert (first / "scenario.yaml").read_text() == (second / "scenario.yaml").read_text()
    resolved = asyncsim.load_scenario(first / "scenario.yaml")
    assert resolved.seed == 3 and resolved.algorithm.lr == 0.02


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["run", "--out", str(tmp_path / name), "--seed", seed, *SHORT]) == 0
    for f in ("metrics.csv", "trace.parquet", "scenario.yaml"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    assert (tmp_path / "a" / "metrics.csv").read_bytes() != (tmp_path / "c" / "metrics.csv").read_bytes()


def test_python_api_matches_the_cli(tmp_path):
    res = asyncsim.run(asyncsim.load_scenario(None, ["run.updates=400", "run.record_every=20"], seed=1))
    assert main(["run", "--out", str(tmp_path / "a"), "--seed", "1", *SHORT]) == 0
    pd.testing.assert_frame_equal(res.metrics, pd.read_csv(tmp_path / "a" / "metrics.csv"), check_exact=True)
    pd.testing.assert_frame_equal(res.trace.to_frame(), pd.read_parquet(tmp_path / "a" / "trace.parquet"))


def test_sync_scenario_runs_and_counts_rounds(tmp_path):
    out = tmp_path / "s"
    assert main(["run", "--out", str(out), "--set", "protocol.kind=sync", *SHORT]) == 0
    trace = Trace.load(out / "trace.parquet")
    assert len(trace) == 8 * 400 and trace.n_updates == 400 and (trace.staleness == 0).all()
    assert json.loads((out / "summary.json").read_text())["protocol"] == "sync"


def test_plot_command_redraws_plots(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), *SHORT]) == 0
    assert not (out / "plots").exists()
    assert main(["plot", str(out)]) == 0
    assert {p.name for p in (out / "plots").iterdir()} == {"loss.png", "staleness.png", "shares.png", "timeline.png"}
    assert main(["plot", str(tmp_path)]) == 2
    assert "is not a complete asyncsim result directory" in capsys.readouterr().err


def test_validate_prints_ok(capsys):
    assert main(["validate", "--set", "cluster.workers=3"]) == 0
    assert capsys.readouterr().out == ("ok: quickstart (3 workers, protocol async, algorithm sgd, problem least_squares,"
                                       " 5000 updates)\n")


def test_out_directory_that_is_not_a_result_is_never_replaced(tmp_path, capsys):
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    assert main(["run", "--out", str(precious), *SHORT]) == 2
    assert "is not an asyncsim result directory" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "do not delete"


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import asyncsim.plotting

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(asyncsim.plotting, "save_plots", boom)
    assert main(["run", "--out", str(tmp_path / "r"), "--set", "run.updates=50"]) == 130
    assert list(tmp_path.iterdir()) == []


def test_progress_is_shown_on_a_terminal_only(tmp_path, monkeypatch, capsys):
    import sys

    assert main(["run", "--out", str(tmp_path / "a"), *SHORT]) == 0
    assert "replay" not in capsys.readouterr().err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["run", "--out", str(tmp_path / "b"), *SHORT]) == 0
    err = capsys.readouterr().err
    assert "replay:  50%" in err and "200/400" in err and "400/400" in err  # a tqdm bar of updates
