"""The fidelity report (asyncsim.fidelity): run against itself, a run with a time scale, hand-built traces."""

import json
import math
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from asyncsim import fidelity
from asyncsim.results import write_results
from asyncsim.runner import run
from asyncsim.scenario import from_dict
from asyncsim.timing.trace import Status, Trace

matplotlib.use("Agg")

SCENARIO = {
    "name": "tiny", "seed": 1, "problem": {"kind": "least_squares", "n_samples": 500, "dim": 20},
    "cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 1.0},
                "stragglers": [{"worker": 0, "slowdown": 3.0}]},
    "protocol": {"kind": "async"}, "algorithm": {"kind": "sgd", "lr": 0.01, "batch_size": 16},
    "run": {"updates": 2000, "record_every": 20},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two simulated result directories: ``fast`` and ``slow`` (every compute time doubled, zero latency)."""
    root = tmp_path_factory.mktemp("fidelity")
    fast = write_results(run(from_dict(SCENARIO)), root / "fast", plots=False)
    slow_scenario = from_dict(SCENARIO, ["cluster.compute.mean=2.0"])
    slow = write_results(run(slow_scenario), root / "slow", plots=False)
    return fast, slow


def tiny_dir(path, workers, staleness, dt=1.0, n_workers=2, protocol="async", summary=None, loss=None,
             dropped=False):
    """A minimal result directory whose trace has update k from ``workers[k]`` with staleness ``staleness[k]``,
    applied at time dt (k + 1) (read, done, arrived as late as the rules allow); with ``dropped``, a last row of
    worker 0 that was dropped.  metrics record updates 0, K/2, K with ``loss``."""
    k_all = len(workers)
    rows, last_done, steps = [], {}, {}
    for k, (w, tau) in enumerate(zip(workers, staleness)):
        r = k - tau
        t_read = max(dt * r, last_done.get(w, 0.0))
        rows.append(dict(update=k, worker=w, step=steps.get(w, 0), read_version=r, status=Status.APPLIED,
                         t_read=t_read, t_done=dt * (k + 0.5), t_arrive=dt * (k + 0.75), t_apply=dt * (k + 1)))
        last_done[w], steps[w] = dt * (k + 0.5), steps.get(w, 0) + 1
    if dropped:
        rows.append(dict(update=k_all, worker=0, step=steps.get(0, 0), read_version=0, status=Status.DROPPED,
                         t_read=last_done.get(0, 0.0), t_done=dt * (k_all + 0.5), t_arrive=dt * (k_all + 0.5),
                         t_apply=dt * (k_all + 0.5)))
    frame = pd.DataFrame(rows).sort_values(["update", "worker", "step"])
    cols = {c: frame[c].to_numpy() for c in frame.columns}
    trace = Trace(n_workers=n_workers, protocol=protocol, round=np.full(len(frame), -1), **cols).validate()
    path.mkdir()
    trace.save(path / "trace.parquet")
    (path / "scenario.yaml").write_text("name: tiny\n")
    loss = loss or [10.0, 2.0, 1.0]
    pd.DataFrame({"update": [0, k_all // 2, k_all], "time": [0.0, dt * (k_all // 2), dt * k_all],
                  "loss": loss}).to_csv(path / "metrics.csv", index=False)
    (path / "summary.json").write_text(json.dumps(summary or {}))
    return path


def test_a_run_against_itself_agrees_exactly(runs):
    fast, _ = runs
    rep = fidelity.compare(fast, fast)
    assert rep.ks == 0.0 and rep.ks_pvalue == 1.0
    assert rep.throughput_diff == 0.0 and rep.share_diff == 0.0
    assert rep.a.staleness == rep.b.staleness and rep.a.phases == rep.b.phases
    assert rep.agree and rep.warnings == ()
    assert rep.verdict == ("VERDICT: agree (throughput +0.0% within ±25%, staleness KS 0.00 <= 0.10, "
                           "max share difference 0.000 <= 0.05)")
    summary = json.loads((fast / "summary.json").read_text())
    assert rep.a.throughput == summary["updates_per_second"]
    assert rep.a.shares == pytest.approx(summary["worker_shares"], abs=1e-6)
    assert rep.a.staleness["mean"] == summary["staleness"]["mean"] and rep.a.final_loss == summary["final_loss"]
    assert rep.a.mode == "sim" and rep.a.name == "fast"  # no "mode" key: a simulated run
    assert rep.time_to_target[0] == rep.time_to_target[1]


def test_doubling_every_compute_time_halves_throughput_and_nothing_else(runs):
    fast, slow = runs
    rep = fidelity.compare(fast, slow)
    assert rep.b.throughput / rep.a.throughput == 0.5 and rep.throughput_diff == -0.5  # exact: times scale by 2
    assert rep.ks == 0.0 and rep.share_diff == 0.0 and rep.a.staleness == rep.b.staleness
    assert rep.b.phases["compute"] == 2 * rep.a.phases["compute"] and rep.b.phases["uplink"] == 0.0
    assert rep.a.loss_at == rep.b.loss_at and rep.a.final_loss == rep.b.final_loss
    assert rep.time_to_target[1] == 2 * rep.time_to_target[0]
    assert not rep.agree
    assert rep.verdict.startswith("VERDICT: differ (throughput -50.0% outside ±25%; staleness KS 0.00 <= 0.10")
    table = fidelity.report_table(rep).set_index("quantity")
    assert table.loc["throughput (updates/s)", "difference"] == -0.5
    assert table.loc["time to common loss (s)", "difference"] == 1.0


def test_ks_shares_throughput_and_losses_by_hand(tmp_path):
    # A: staleness 0 0 0 1 1 2, F_A = 3/6, 5/6, 1 at 0, 1, 2; B: 0 1 1 1 2 2, F_B = 1/6, 4/6, 1 -> D = 1/3
    a = tiny_dir(tmp_path / "a", [0, 1, 0, 1, 0, 0], [0, 0, 0, 1, 1, 2])
    b = tiny_dir(tmp_path / "b", [0, 1, 1, 1, 0, 1], [0, 1, 1, 1, 2, 2], dt=2.0, loss=[10.0, 4.0, 3.0],
                 summary={"mode": "real", "partial": True}, dropped=True)
    rep = fidelity.compare(a, b)
    assert rep.ks == pytest.approx(1 / 3)
    assert rep.a.shares == pytest.approx((4 / 6, 2 / 6)) and rep.b.shares == pytest.approx((2 / 6, 4 / 6))
    assert rep.share_diff == pytest.approx(1 / 3)  # the dropped row of B does not count
    assert rep.a.throughput == 1.0 and rep.b.throughput == 0.5 and rep.throughput_diff == -0.5
    assert rep.a.staleness == {"mean": 4 / 6, "p50": 0.5, "p90": 1.5, "p99": pytest.approx(1.95), "max": 2.0}
    assert rep.a.phases == {"read": 0.0, "compute": pytest.approx(5.5 / 6), "uplink": 0.25, "server": 0.25}
    assert rep.a.loss_at == (10.0, 2.0, 1.0) and rep.b.loss_at == (10.0, 4.0, 3.0)
    assert rep.target_loss == 3.0 and rep.time_to_target == (3.0, 12.0)  # A at update 3 (t 3), B at 6 (t 12)
    assert rep.b.mode == "real" and rep.b.partial
    assert rep.warnings == ("B is a partial run (6 updates)",)
    assert rep.verdict.startswith("VERDICT: differ (throughput -50.0% outside ±25%; staleness KS 0.33 > 0.10; "
                                  "max share difference 0.333 > 0.05)")
    table = fidelity.report_table(rep)
    assert list(table.columns) == ["quantity", "A (sim)", "B (real)", "difference", "difference_is"]
    text = fidelity.format_report(rep)
    assert text.splitlines()[-1] == rep.verdict and "warning: B is a partial run" in text


def test_phase_means_by_hand(tmp_path):
    a = tiny_dir(tmp_path / "a", [0, 1], [0, 1])  # reads at 0 and 0; done at 0.5, 1.5; arrive +0.25; apply +0.25
    rep = fidelity.compare(a, a)
    assert rep.a.phases == {"read": 0.0, "compute": (0.5 + 1.5) / 2, "uplink": 0.25, "server": 0.25}


def test_different_protocols_and_updates_are_warned(tmp_path):
    a = tiny_dir(tmp_path / "a", [0, 1, 0, 1], [0, 1, 1, 1])
    b = tiny_dir(tmp_path / "b", [0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 1, 1], protocol="other")
    rep = fidelity.compare(a, b)
    assert rep.warnings == ("different protocols: A async, B other; the comparison is not like for like",
                            "different updates: A 4, B 6; the comparison is not like for like")
    assert all(f"warning: {w}" in fidelity.format_report(rep) for w in rep.warnings)


def test_different_worker_counts_raise_one_line(tmp_path):
    a = tiny_dir(tmp_path / "a", [0, 1, 0, 1], [0, 1, 1, 1])
    b = tiny_dir(tmp_path / "b", [0, 1, 0, 1], [0, 1, 1, 1], n_workers=3)
    with pytest.raises(ValueError) as err:
        fidelity.compare(a, b)
    assert str(err.value) == "cannot compare runs with different worker counts: A has 2, B has 3"


def test_not_a_result_directory_raises_file_not_found(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="is not a complete asyncsim result directory"):
        fidelity.compare(runs[0], tmp_path)


def test_default_out_names_both_directories(tmp_path):
    out = fidelity.default_out(tmp_path / "sim" / "quick", "results/real-quick/")
    assert out == Path("results/compare/quick-vs-real-quick")


def test_write_report_writes_the_table_the_summary_and_the_plots(tmp_path, runs):
    fast, slow = runs
    rep = fidelity.compare(fast, slow)
    out = fidelity.write_report(rep, tmp_path / "cmp")
    for name in ("fidelity.csv", "summary.json", "plots/staleness.png", "plots/loss.png",
                 "plots/throughput_shares.png", "plots/timeline.png"):
        assert (out / name).stat().st_size > 0, name
    written = pd.read_csv(out / "fidelity.csv", keep_default_na=False, na_values=[""])
    pd.testing.assert_frame_equal(written, fidelity.report_table(rep), check_exact=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"] == rep.verdict and summary["agree"] is False
    assert summary["ks"] == rep.ks and summary["throughput_diff"] == -0.5
    assert summary["a"]["shares"] == list(rep.a.shares) and summary["b"]["mode"] == "sim"
    assert summary["thresholds"] == {"throughput": 0.25, "ks": 0.10, "share": 0.05}
    assert math.isclose(summary["time_to_target"][1], 2 * summary["time_to_target"][0])
    fidelity.write_report(rep, out, plots=False)  # replaces its own earlier report
    assert not (out / "plots").exists()
