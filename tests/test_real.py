"""Real execution mode: observed traces, bit-exact replay, emulated timing, failures and clean shutdown."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from asyncsim.algorithms.base import Algorithm
from asyncsim.algorithms.sgd import SGD
from asyncsim.calibrate import calibrated, observed
from asyncsim.cli import main
from asyncsim.fidelity import emulated_scale
from asyncsim.params import ScenarioError
from asyncsim.real import RealRunError, run_real
from asyncsim.replay import replay
from asyncsim.results import read_results, write_results
from asyncsim.rng import Stream, generator
from asyncsim.runner import run
from asyncsim.scenario import from_dict
from asyncsim.timing.trace import Trace

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="checks /dev/shm and /proc for leftovers")

ZERO = {"kind": "constant", "value": 0.0}


def spec(workers=2, updates=600, protocol=None, algorithm=None, real=None, **cluster):
    return {"name": "real-test", "seed": 3,
            "problem": {"kind": "least_squares", "n_samples": 300, "dim": 20, "noise": 0.1},
            "cluster": {"workers": workers, "compute": {"kind": "exponential", "mean": 1.0}, **cluster},
            "protocol": protocol or {"kind": "async"},
            "algorithm": algorithm or {"kind": "sgd", "lr": 0.05, "batch_size": 8},
            "run": {"updates": updates, "record_every": 50},
            "real": {"start_method": "fork", **(real or {})}}


def leftovers():
    """Shared memory segments of real runs and child processes of this process that are still there (but for
    multiprocessing's resource tracker and fork server, which live as long as this process; a study's process pool
    starts the fork server)."""
    from multiprocessing import forkserver, resource_tracker

    segments = sorted(p for p in os.listdir("/dev/shm") if p.startswith("asyncsim_"))
    me, children = str(os.getpid()), []
    helpers = {str(resource_tracker._resource_tracker._pid), str(forkserver._forkserver._forkserver_pid)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z" and stat.parent.name not in helpers:
            children.append(stat.parent.name)
    return segments, children + [p.pid for p in multiprocessing.active_children()]


@pytest.fixture
def clean():
    assert leftovers() == ([], [])
    yield
    assert leftovers() == ([], []), "a real run left shared memory or processes behind"


def replayed(result):
    s = result.scenario
    problem = s.problem.build(generator(s.seed, Stream.DATA))
    x0 = problem.initial_point(generator(s.seed, Stream.INIT))
    return replay(result.trace, s.algorithm, problem, x0, s.seed, s.run.record_every)


# -- the acceptance test: bit-exact replay of an observed trace ------------------------------------------------


def test_replaying_the_observed_trace_of_a_spawned_async_run_gives_the_same_parameters(clean):
    result = run_real(from_dict(spec(real={"start_method": "spawn"})))
    trace = result.trace
    assert trace.n_updates == 600 and trace.protocol == "async" and (trace.staleness >= 0).all()
    assert set(trace.worker.tolist()) == {0, 1}
    assert trace.staleness.max() >= 1, "two real workers should overlap at least once"
    assert np.array_equal(replayed(result).x, result.x)
    assert result.summary["replay_check"] == {"exact": True, "max_abs_difference": 0.0,
                                              "replay_final_loss": result.summary["final_loss"]}
    assert result.summary["mode"] == "real" and result.summary["partial"] is False


@pytest.mark.parametrize("protocol, algorithm", [
    ({"kind": "sync"}, None),
    ({"kind": "periodic", "local_steps": 3}, {"kind": "easgd", "lr": 0.05, "batch_size": 8}),
    ({"kind": "periodic", "local_steps": 2, "synchronous": True}, {"kind": "local_sgd", "lr": 0.05,
                                                                    "batch_size": 8}),
    ({"kind": "periodic", "local_steps": 2}, {"kind": "fedasync", "lr": 0.05, "weight": "polynomial",
                                              "batch_size": 8}),
])
def test_sync_and_periodic_real_runs_replay_bit_for_bit(clean, protocol, algorithm):
    result = run_real(from_dict(spec(workers=3, updates=90, protocol=protocol, algorithm=algorithm)))
    assert np.array_equal(replayed(result).x, result.x)
    if protocol["kind"] == "sync" or protocol.get("synchronous"):
        assert (result.trace.staleness == 0).all() and len(result.trace) == 3 * 90
        assert np.array_equal(result.trace.round, result.trace.update)


def test_the_loss_recorded_in_a_real_run_is_the_loss_of_its_own_iterates(clean):
    result = run_real(from_dict(spec()))
    again = replayed(result)
    assert np.array_equal(result.metrics["update"], again.metrics["update"])
    np.testing.assert_array_equal(result.metrics["loss"], again.metrics["loss"])
    # and its times are the observed apply times of those versions
    np.testing.assert_array_equal(result.metrics["time"], result.trace.update_times()[result.metrics["update"]])


# -- lock-free shared memory -----------------------------------------------------------------------------------


def test_hogwild_runs_every_update_once_and_its_trace_is_consistent(clean):
    s = from_dict(spec(updates=3000, protocol={"kind": "shared_memory"}))
    result = run_real(s)
    t = result.trace.validate()
    assert t.n_updates == 3000 and len(t) == 3000 and t.read_blocks == 20
    assert np.all(np.diff(t.t_apply) >= 0)
    # read versions are counts of the writes finished before the read started and ended
    applied = t.t_apply
    assert np.array_equal(t.read_version, np.minimum(np.searchsorted(applied, t.t_read, side="right"), t.update))
    assert np.array_equal(t.read_end, np.minimum(np.searchsorted(applied, t.t_read_end, side="right"), t.update))
    check = result.summary["replay_check"]
    assert check["exact"] is None
    f_star = result.summary["final_loss"] - result.summary["final_suboptimality"]
    assert abs(check["replay_final_loss"] - result.summary["final_loss"]) < 0.05 * (result.summary["final_loss"]
                                                                                   - f_star + 1e-3)


def test_one_hogwild_worker_is_plain_sgd_up_to_rounding(clean):
    result = run_real(from_dict(spec(workers=1, updates=400, protocol={"kind": "shared_memory"})))
    assert (result.trace.staleness == 0).all() and (result.trace.read_end == result.trace.read_version).all()
    np.testing.assert_allclose(replayed(result).x, result.x, rtol=1e-12, atol=1e-14)


# -- emulated timing -------------------------------------------------------------------------------------------


def test_emulated_timing_waits_the_drawn_times_and_reproduces_a_straggler(clean):
    scale = 0.002
    s = from_dict(spec(updates=220, real={"time_scale": scale}, compute={"kind": "constant", "value": 1.0},
                       stragglers=[{"worker": 0, "slowdown": 10.0}], uplink={"kind": "constant", "value": 0.5}))
    t = run_real(s).trace
    simulated = run(s).trace
    share, expected = (np.mean(x.worker == 0) for x in (t, simulated))
    assert expected == pytest.approx((1 / 10.5) / (1 / 10.5 + 1 / 1.5), abs=0.01)  # cycles 10 + 0.5 and 1 + 0.5
    assert abs(share - expected) < 0.04
    for w, factor in ((0, 10.0), (1, 1.0)):
        mine = t.worker == w
        assert np.all(t.t_done[mine] - t.t_read[mine] >= scale * factor - 1e-4)  # each compute waited
        assert np.all(t.t_arrive[mine] - t.t_done[mine] >= scale * 0.5 - 1e-4)  # and the uplink
    assert abs(t.n_updates / t.t_apply[-1] * scale / (simulated.n_updates / simulated.t_apply[-1]) - 1) < 0.5


# -- failures, time limits, Ctrl-C -----------------------------------------------------------------------------


def kill_worker(worker, at):
    def watch(done, pids):
        if done == at:
            os.kill(pids[worker], signal.SIGKILL)
    return watch


@pytest.mark.parametrize("protocol", [{"kind": "async"}, {"kind": "sync"}, {"kind": "shared_memory"}])
def test_a_killed_worker_stops_the_run_with_an_error_naming_it_and_leaves_nothing_behind(clean, protocol):
    s = from_dict(spec(updates=200_000, protocol=protocol))
    with pytest.raises(RealRunError, match=r"^worker 1 was killed by signal 9 at (about )?update \d+ of 200000; "):
        run_real(s, watch=kill_worker(1, 100) if protocol["kind"] != "shared_memory" else
                 lambda done, pids: os.kill(pids[1], signal.SIGKILL))


def test_with_on_worker_failure_continue_an_async_run_goes_on_without_the_dead_worker(clean):
    s = from_dict(spec(workers=3, updates=1500, real={"on_worker_failure": "continue"}))
    result = run_real(s, watch=kill_worker(2, 300))
    t = result.trace
    assert t.n_updates == 1500 and result.summary["partial"] is False
    lost = result.summary["lost_workers"]
    assert [x["worker"] for x in lost] == [2] and lost[0]["cause"] == "was killed by signal 9"
    assert t.update[t.worker == 2].max() < lost[0]["at_update"] + 3
    assert np.array_equal(replayed(result).x, result.x)


def test_on_worker_failure_continue_is_refused_for_a_barrier():
    with pytest.raises(ScenarioError, match="on_worker_failure continue needs an asynchronous protocol"):
        run_real(from_dict(spec(protocol={"kind": "sync"}, real={"on_worker_failure": "continue"})))


@Algorithm.registry.register("test_explodes")
@dataclass(frozen=True, kw_only=True)
class Explodes(SGD):
    """SGD whose worker 1 raises at its 5th step (workers inherit this registration under fork)."""

    def init(self, x0, n_workers):
        return x0, tuple((w, 0) for w in range(n_workers))

    def local(self, snapshot, worker_state, problem, draw):
        w, count = worker_state
        if w == 1 and count == 5:
            raise FloatingPointError("boom at step 5")
        return problem.grad(snapshot, draw), (w, count + 1)


@pytest.mark.parametrize("protocol", ["async", "shared_memory"])
def test_a_worker_that_raises_stops_the_run_with_its_exception(clean, protocol):
    s = from_dict(spec(updates=5000, protocol={"kind": protocol}, algorithm={"kind": "test_explodes", "lr": 0.05}))
    with pytest.raises(RealRunError, match=r"^worker 1 raised FloatingPointError: boom at step 5 at "):
        run_real(s)


def test_a_time_limit_writes_valid_partial_results(clean, tmp_path):
    s = from_dict(spec(updates=100_000, real={"time_limit": 0.6, "time_scale": 0.001}))
    result = run_real(s)
    summary = result.summary
    assert summary["partial"] is True and summary["stopped_by"] == "time_limit"
    assert 0 < summary["updates"] < 100_000 and summary["updates_requested"] == 100_000
    assert result.trace.t_apply[-1] <= 0.6 + 0.05
    assert summary["replay_check"]["exact"] is True
    write_results(result, tmp_path / "partial", plots=False)
    back = read_results(tmp_path / "partial")
    assert back["summary"]["partial"] is True and back["trace"].n_updates == summary["updates"]
    assert int(back["metrics"]["update"].iloc[-1]) == summary["updates"]


def test_ctrl_c_stops_a_real_run_cleanly(tmp_path):
    out = tmp_path / "never"
    proc = subprocess.Popen([sys.executable, "-m", "asyncsim.cli", "run", "--mode", "real", "--out", str(out),
                             "--set", "run.updates=1000000", "--set", "real.time_scale=0.001",
                             "--set", "real.start_method=fork"],
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
    time.sleep(4.0)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted; no result was written" in err
    assert not out.exists()
    assert sorted(p for p in os.listdir("/dev/shm") if p.startswith("asyncsim_")) == []
    def group():  # the processes of the run's process group, by command line
        ps = subprocess.run(["ps", "-eo", "pgid=,args="], capture_output=True, text=True).stdout.splitlines()
        return [line for line in ps if line.split(None, 1)[0] == str(proc.pid)]

    for _ in range(50):  # multiprocessing's resource tracker ends when its last user has gone
        if not group():
            break
        time.sleep(0.1)
    assert group() == [], "a process outlived the interrupted run"


# -- checks and errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"protocol": {"kind": "rennala", "batch": 2}}, "protocol.kind must be one of async, periodic, sync, "
                                                     "shared_memory in real mode; got 'rennala'"),
    ({"real": {"time_scale": -1}}, "real.time_scale must be > 0 (wall seconds per simulated second) or null, "
                                   "got -1.0"),
    ({"real": {"start_method": "threads"}}, "real.start_method must be one of spawn, fork, forkserver, "
                                             "got 'threads'"),
])
def test_bad_real_settings_are_one_line_errors(tmp_path, capsys, change, message):
    data = spec() | change
    if "start_method" not in data["real"]:
        data["real"] = data["real"] | {"start_method": "fork"}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(data))
    assert main(["run", str(path), "--mode", "real", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_cli_real_run_then_compare_prints_the_table_and_writes_the_plots(clean, tmp_path, capsys):
    """The issue's three commands on the quickstart scenario (shortened)."""
    short = ["--set", "run.updates=800", "--set", "real.start_method=fork"]
    assert main(["run", "--mode", "real", "--out", str(tmp_path / "q-real"), *short]) == 0
    real_out = capsys.readouterr().out
    assert "wall-clock time" in real_out and "final parameters equal bit for bit" in real_out
    assert main(["run", "--out", str(tmp_path / "q-sim"), *short]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "q-sim"), str(tmp_path / "q-real"), "--out",
                 str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "staleness KS D" in out and "throughput (updates/s)" in out
    assert out.strip().splitlines()[-2].startswith("VERDICT: ")
    summary = json.loads((tmp_path / "q-real" / "summary.json").read_text())
    assert summary["mode"] == "real" and summary["real"]["time_scale"] == 0.005
    # the real run's times are divided by c against a simulation of the same emulated scenario, not otherwise
    assert emulated_scale(tmp_path / "q-real", tmp_path / "q-sim") == 0.005
    assert emulated_scale(tmp_path / "q-sim", tmp_path / "q-real") is None
    assert main(["calibrate", "--from", str(tmp_path / "q-real"), "--out", str(tmp_path / "cal.yaml"), *short]) == 0
    assert main(["run", str(tmp_path / "cal.yaml"), "--out", str(tmp_path / "q-cal"), "--no-plots"]) == 0
    assert emulated_scale(tmp_path / "q-real", tmp_path / "q-cal") is None
    for name in ("staleness", "loss", "throughput_shares"):
        assert (tmp_path / "cmp" / "plots" / f"{name}.png").stat().st_size > 10_000


# -- calibration -----------------------------------------------------------------------------------------------


def test_observed_durations_of_a_hand_built_trace():
    # worker 0: two steps; worker 1: one step; async, one server
    t = Trace(n_workers=2, protocol="async", update=[0, 1, 2], worker=[0, 1, 0], step=[0, 0, 1],
              read_version=[0, 0, 1], round=[-1] * 3, status=[0] * 3, t_read=[0.0, 0.0, 1.5],
              t_done=[1.0, 2.0, 2.5], t_arrive=[1.25, 2.5, 2.75], t_apply=[1.5, 3.0, 3.5])
    laws = observed(t)
    np.testing.assert_array_equal(laws["compute"][0], [1.0, 1.0])
    np.testing.assert_array_equal(laws["compute"][1], [2.0])
    np.testing.assert_array_equal(laws["uplink"], [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(laws["service"], [0.25, 0.5, 0.75])
    np.testing.assert_array_equal(laws["downlink"], [0.0])  # worker 0 read again right at 1.5


def test_a_calibrated_scenario_simulates_the_real_runs_throughput(clean):
    s = from_dict(spec(updates=1500))
    real = run_real(s)
    data = calibrated(s, observed(real.trace))
    assert data["cluster"]["stragglers"] == [] and data["real"]["time_scale"] is None
    sim = run(from_dict(data))
    assert abs(sim.summary["updates_per_second"] / real.summary["updates_per_second"] - 1) < 0.25


def test_cli_calibrate_writes_a_loadable_scenario_with_measured_laws(tmp_path, capsys):
    out = tmp_path / "cal.yaml"
    assert main(["calibrate", "--steps", "50", "--out", str(out)]) == 0
    assert "compute" in capsys.readouterr().out
    from asyncsim.scenario import load_scenario

    s = load_scenario(out)
    assert s.name == "quickstart-calibrated" and len(s.cluster.compute.values) == 50
    assert all(v > 0 for v in s.cluster.compute.values) and s.cluster.stragglers == ()
    assert len(s.cluster.server.service.values) == 50


@Algorithm.registry.register("test_counts_staleness")
@dataclass(frozen=True, kw_only=True)
class CountsStaleness(SGD):
    """Adds each update's staleness (as its ApplyInfo says) to coordinate 0, and nothing else (workers inherit
    this registration under fork)."""

    def apply(self, server_state, messages, info):
        out = server_state.copy()
        out[0] += sum(info.staleness)
        return out


def test_real_hogwild_applies_see_the_staleness_of_their_step(clean):
    """The live staleness of a lock-free apply (writes finished before the write minus those finished before the
    read) adds up to about the staleness of the trace rebuilt from the times; before, every apply saw 0, so
    delay-adaptive steps never adapted under real Hogwild."""
    s = from_dict(spec(workers=2, updates=4000, protocol={"kind": "shared_memory"},
                       algorithm={"kind": "test_counts_staleness", "lr": 0.05},
                       compute={"kind": "constant", "value": 1.0}, real={"time_scale": 0.0002}))
    result = run_real(s)
    seen = result.x[0]  # coordinate 0 starts at 0 and only counts staleness
    rebuilt = float(result.trace.staleness.sum())
    assert rebuilt > 1000  # two workers in turn: most writes land while the other is computing
    assert seen == pytest.approx(rebuilt, rel=0.1)
