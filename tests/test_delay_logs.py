"""Delay logs measured on real systems: one reader for their formats, and the workers a log implies (its own chains
when it determines them, else the fewest workers that can have made it)."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from asyncsim import load_scenario, run
from asyncsim.params import ScenarioError
from asyncsim.scenario import from_dict
from scipy.stats import ks_2samp

from asyncsim.calibrate import DelayLog, fit_delays, law_of, maxima
from asyncsim.timing import Cluster, Server, simulate
from asyncsim.timing.imported import TraceFile, assign_workers, delay_trace, first_read, read_delays
from asyncsim.timing.laws import Constant
from asyncsim.timing.protocols import Async, Drain

DATA = Path(__file__).resolve().parents[1] / "scenarios" / "data"
LOGS = ["BCD_sun_MNIST.csv", "BCD_sun_CIFAR100.csv", "BCD_sun_RCV1.csv"]


def in_flight(read: np.ndarray) -> int:
    """The largest number of computations in flight: update k computes from version r_k until version k + 1."""
    K = len(read)
    return max(int(np.sum((read <= v) & (v < np.arange(K) + 1))) for v in range(K))


@pytest.mark.parametrize("name", LOGS)
def test_a_shipped_bcd_log_determines_its_eight_workers(name):
    delays = read_delays(DATA / name)
    trace = delay_trace(delays).validate()
    assert trace.n_workers == 8 and in_flight(first_read(delays)) == 8
    np.testing.assert_array_equal(trace.staleness, delays)  # the replayed staleness is the file's
    for w in range(8):  # each worker's next read is the version right after its own write
        mine = np.flatnonzero(trace.worker == w)
        assert trace.step[mine].tolist() == list(range(len(mine)))
        assert trace.read_version[mine[0]] == 0
        np.testing.assert_array_equal(trace.read_version[mine[1:]], mine[:-1] + 1)
    assert assign_workers(first_read(delays))[2].startswith("chains: ")


def test_every_short_log_gets_the_fewest_workers_that_can_have_made_it():
    """Exhaustively, every sequence of 6 delays (each at most the number of earlier updates): no worker holds two
    computations at once, a worker's steps follow its reads, and the workers are as few as the computations in
    flight (the log's own chains too: all of them compute from version 0 at once)."""
    for delays in itertools.product(*(range(k + 1) for k in range(6))):
        read = first_read(np.array(delays))
        worker, step, how = assign_workers(read)
        n = int(worker.max()) + 1
        assert n == in_flight(read)
        for w in range(n):
            mine = np.flatnonzero(worker == w)
            order = mine[np.argsort(step[mine])]
            assert sorted(step[mine].tolist()) == list(range(len(mine)))
            # consecutive computations of one worker do not overlap: the next reads at or after the previous ends
            assert all(read[b] >= a + 1 for a, b in zip(order[:-1], order[1:]))


def test_a_log_that_is_not_chain_consistent_says_why():
    read = first_read(np.array([0, 0, 1, 2, 0]))  # versions 0, 1, 1, 1, 4: version 1 is read three times
    worker, step, how = assign_workers(read)
    assert worker.tolist() == [0, 0, 1, 2, 0] and step.tolist() == [0, 1, 0, 0, 2]
    assert how == ("fewest workers: version 1 is read by more than one update after the start, so the log does not "
                   "determine the workers; 3 is the largest number of computations in flight")


@pytest.mark.parametrize("text", [
    "0\n1\n1\n2\n",
    "delay\n0\n1\n1\n2\n",
    "k,delay\n0,0\n1,1\n2,1\n3,2\n",
    "k delay\n1 0\n2 1\n3 1\n4 2\n",
    "\ufeffk,delay\r\n0,0\r\n1,1\r\n2,1\r\n3,2\r\n",
    "# measured on 8 workers\n0.000000000000000000e+00\n\n1.0  # a comment\n1\n2.0\n",
])
def test_every_layout_of_one_delay_per_update_reads_the_same_delays(tmp_path, text):
    path = tmp_path / "log.csv"
    path.write_bytes(text.encode())
    assert read_delays(path).tolist() == [0, 1, 1, 2]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("# only a comment\n\n", "holds no delays (only comments or blank lines)"),
    ("1.5x\n0\n", "line 1: expected numbers (delays), got '1.5x'"),
    ("delay\n", "holds no delays (a header and no numbers)"),
    ("0\n1\nabc\n", "line 3: expected numbers (delays), got 'abc'"),
    ("0\n1,2\n", "line 2: expected 1 value like the first row, got 2"),
    ("k,delay\n0,0\n2,1\n", ": column 'k' must count updates 0, 1, 2, ... (or from 1)"),
    ("0\n1\n1.5\n", "line 3: a delay must be a whole number >= 0, got 1.5"),
    ("0,0,0\n1,0,1.5\n", "line 2: a delay must be a whole number >= 0, got 1.5"),
    ("k,delay\n0,\n1,\n", "line 2: an empty field (value 2)"),
    ("0,,0\n1,0,0\n", "line 1: an empty field (value 2)"),
    ("w0,w1,w2\n0,0\n1,0\n", "line 2: expected 3 values like the header, got 2"),
    ("k,delay,extra\n0,0\n", "line 2: expected 3 values like the header, got 2"),
    (",".join(["0"] * 100_001) + "\n", "line 1: at most 100,000 values (workers) per line, got 100,001"),
])
def test_a_malformed_log_is_one_line_naming_the_file_and_the_line(tmp_path, text, message):
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        TraceFile(path=str(path))
    assert str(err.value) == f"protocol.path {str(path)!r}{'' if message.startswith((':', ' ')) else ' '}{message}"


def test_run_updates_is_the_file_unless_given(tmp_path):
    base = {"name": "log", "problem": {"kind": "quadratic", "dim": 4},
            "cluster": {"workers": 8, "compute": {"kind": "constant", "value": 1.0}},
            "protocol": {"kind": "trace_file", "path": str(DATA / "BCD_sun_RCV1.csv")},
            "algorithm": {"kind": "sgd", "lr": 0.1}, "run": {}}
    s = from_dict(base)
    assert s.run.updates == 2001 and s.run.record_every == 20 and s.to_dict()["run"]["updates"] == 2001
    assert from_dict({**base, "run": {"updates": 50}}).run.updates == 50
    with pytest.raises(ScenarioError, match=r"^run.updates is required \(a number of updates; protocol async "
                                            r"holds none of its own\)"):
        from_dict({**base, "protocol": {"kind": "async"}})


def test_the_shipped_scenario_replays_any_log_whole_and_says_how_it_found_the_workers(root):
    path = root / "scenarios" / "protocols" / "trace_file.yaml"
    res = run(load_scenario(path, [f"protocol.path={DATA / 'BCD_sun_CIFAR100.csv'}"]))
    assert res.summary.updates == 2001 and res.summary.workers == 8
    assert res.summary.protocol_notes["workers_from"].startswith("chains: ")
    assert res.summary.to_json()["protocol_notes"] == res.summary.protocol_notes
    np.testing.assert_array_equal(res.trace.staleness, read_delays(DATA / "BCD_sun_CIFAR100.csv"))


# ------------------------------------------------------------------------------------------- calibration from a log


def run_cli(argv, capsys):
    from asyncsim.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", LOGS)
def test_calibrating_to_a_bcd_log_writes_the_scenario_that_was_fitted(root, tmp_path, capsys, name):
    out = tmp_path / "cal.yaml"
    scenario = root / "scenarios" / "real_delays" / "async_bcd.yaml"
    code, text, _ = run_cli(["calibrate", str(scenario), "--from-delays", str(DATA / name), "--out", str(out)], capsys)
    assert code == 0
    reported = float(text.split("KS ")[1].split()[0])
    assert reported <= 0.05  # at the noise floor of the logs themselves (half a log against its other half)
    calibrated = load_scenario(out)
    assert calibrated.cluster.compute.sigma > 0 and calibrated.cluster.server.service.value == 0.0
    # the written scenario, simulated as the fit did (4 times the log's length, its seed), gives the reported KS
    log = read_delays(DATA / name)
    trace = simulate(calibrated.cluster, calibrated.protocol, 4 * len(log), calibrated.seed)
    assert round(ks_2samp(trace.staleness, delay_trace(log).staleness).statistic, 3) == reported


def test_calibration_recovers_the_dispersion_of_a_simulated_log(tmp_path):
    """A log made by a cluster of known compute-time dispersion (cv 0.3, another seed) is fitted back to it."""
    truth = Cluster(workers=8, compute=law_of("lognormal", 0.3, 1.0))
    path = tmp_path / "log.csv"
    path.write_text("\n".join(map(str, simulate(truth, Async(), 3000, seed=11).staleness)) + "\n")
    scenario = from_dict({"name": "fit", "problem": {"kind": "quadratic", "dim": 4},
                          "cluster": {"workers": 8, "compute": {"kind": "exponential", "mean": 2.0}},
                          "protocol": {"kind": "async"}, "algorithm": {"kind": "sgd", "lr": 0.1},
                          "run": {"updates": 100}})
    fit = fit_delays(scenario, path)
    assert 0.22 <= fit.cv <= 0.4 and fit.ks <= 0.03 and fit.mean == 2.0 and fit.service_ratio is None
    gamma = fit_delays(scenario, path, "gamma")
    assert 0.22 <= gamma.cv <= 0.4 and gamma.compute_law()["kind"] == "gamma"


def test_calibration_of_a_draining_server_recovers_its_service_ratio(tmp_path):
    truth = Cluster(workers=6, compute=law_of("lognormal", 0.3, 1.0), server=Server(service=Constant(value=0.25)))
    trace = simulate(truth, Drain(), 800, seed=11)
    log = DelayLog("simulated", trace, maxima(trace))
    scenario = from_dict({"name": "fit", "problem": {"kind": "quadratic", "dim": 4},
                          "cluster": {"workers": 6, "compute": {"kind": "exponential", "mean": 1.0}},
                          "protocol": {"kind": "drain"}, "algorithm": {"kind": "sgd", "lr": 0.1},
                          "run": {"updates": 100}})
    fit = fit_delays(scenario, log)
    assert abs(fit.service_ratio - 0.25) <= 0.1 and 0.15 <= fit.cv <= 0.5
    assert fit.ks <= 0.06 and fit.ks_max <= 0.1


@pytest.mark.parametrize("args, message", [
    (["real_delays/async_bcd.yaml", "PIAG_sun_MNIST.csv"], "is a per-worker-age matrix (PIAG's log), the trace of a "
                                                           "draining server; give a scenario with protocol drain, "
                                                           "not async"),
    (["protocols/sync.yaml", "BCD_sun_RCV1.csv"], "protocol.kind must be one of async, ssp, ringmaster, periodic, "
                                                  "drain for calibration from a delay log (a simulated asynchronous "
                                                  "or draining server), got 'sync'"),
    (["protocols/drain.yaml", "BCD_sun_RCV1.csv", "--set", "cluster.workers=4"],
     "cluster.workers must be the 8 workers of the log (as its updates imply them), got 4"),
    (["real_delays/async_bcd.yaml", "BCD_sun_RCV1.csv", "--from", "results/x"],
     "give one of --from (a real run) and --from-delays (a delay log), not both"),
    (["real_delays/async_bcd.yaml", "BCD_sun_RCV1.csv", "--law", "weibull"],
     "--law must be one of lognormal, gamma, got 'weibull'"),
    (["real_delays/async_bcd.yaml", "BCD_sun_RCV1.csv", "--steps", "5"],
     "--steps is the number of steps timed on this machine; it does not apply with --from or --from-delays"),
    (["real_delays/async_bcd.yaml", "BCD_sun_RCV1.csv", "--set", "protocol={kind: shared_memory}",
      "--set", "problem={kind: sparse_least_squares, n_samples: 100, dim: 20}"],
     "protocol.kind must be one of async, ssp, ringmaster, periodic, drain for calibration from a delay log (a "
     "simulated asynchronous or draining server), got 'shared_memory'"),
])
def test_calibration_mistakes_are_one_line(root, tmp_path, capsys, args, message):
    scenario, log, *rest = args
    out = tmp_path / "cal.yaml"
    code, _, err = run_cli(["calibrate", str(root / "scenarios" / scenario), "--from-delays", str(DATA / log),
                            "--out", str(out), *rest], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_calibration_refuses_an_output_it_cannot_or_must_not_write_before_fitting(root, tmp_path, capsys):
    scenario = str(root / "scenarios" / "real_delays" / "async_bcd.yaml")
    log = tmp_path / "log.csv"
    log.write_bytes((DATA / "BCD_sun_RCV1.csv").read_bytes())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, message in [(blocker / "cal.yaml", f"--out {blocker / 'cal.yaml'}: cannot write in '{blocker}' (not a "
                                                "directory)"),
                         (log, f"--out {log} is an input of this command ({log}); give another file"),
                         (tmp_path, f"--out {tmp_path} is a directory; give the calibrated scenario's file name")]:
        code, _, err = run_cli(["calibrate", scenario, "--from-delays", str(log), "--out", str(out)], capsys)
        assert (code, err.strip()) == (2, f"error: {message}")
    assert log.read_bytes() == (DATA / "BCD_sun_RCV1.csv").read_bytes()
    code, _, err = run_cli(["calibrate", scenario, "--law", "gamma", "--out", str(tmp_path / "c.yaml")], capsys)
    assert (code, err.strip()) == (2, "error: --law is the law fitted with --from-delays; give --from-delays LOG")
    assert not (tmp_path / "c.yaml").exists()
