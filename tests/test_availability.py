"""Client availability (``cluster.availability``): a hand-written trace file honoured exactly, the stationary on/off
model and the daily window against their closed forms, and the inputs that are refused."""

import math

import numpy as np
import pytest
from scipy import stats

from asyncsim.cli import main
from asyncsim.params import ParamError, ScenarioError
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.availability import AvailabilityTrace, Daily, OnOff, Window
from asyncsim.timing.laws import Constant, Exponential
from asyncsim.timing.protocols import Async, KOfN, Sync
from asyncsim.timing.trace import Status

INTERVALS = "client,start,end\n1,6,9\n0,0,10\n1,2,4.5\n"  # client 2 has no row: never online


@pytest.fixture
def trace_file(tmp_path):
    path = tmp_path / "online.csv"
    path.write_text(INTERVALS)
    return str(path)


def test_a_hand_written_trace_file_gives_the_hand_derived_log(trace_file):
    """Three clients, compute 1 s, no latency.  Client 0 is online [0, 10), client 1 [2, 4.5) and [6, 9), client 2
    never.  Derived by hand: client 1 starts at 2 on version 1; its task [4, 5) is cut at 4.5 (lost); it rejoins at
    6 on version 7; its arrival at exactly 9, the end of its interval, counts, and it starts nothing after; client
    0's arrival at 10 is the 15th update.  Arrivals at one instant go in worker order."""
    cluster = Cluster(workers=3, compute=Constant(value=1.0), availability=AvailabilityTrace(path=trace_file))
    t = simulate(cluster, Async(), 15, seed=0)
    rows = list(zip(t.update, t.worker, t.step, t.read_version, t.status, t.t_read, t.t_apply))
    A, L = int(Status.APPLIED), int(Status.LOST)
    expected = [  # (update, worker, step, read version, status, t_read, t_apply)
        (0, 0, 0, 0, A, 0, 1), (1, 0, 1, 1, A, 1, 2), (2, 0, 2, 2, A, 2, 3), (3, 1, 0, 1, A, 2, 3),
        (4, 0, 3, 3, A, 3, 4), (5, 1, 1, 4, A, 3, 4), (6, 0, 4, 5, A, 4, 5), (6, 1, 2, 6, L, 4, 4.5),
        (7, 0, 5, 7, A, 5, 6), (8, 0, 6, 8, A, 6, 7), (9, 1, 3, 7, A, 6, 7), (10, 0, 7, 9, A, 7, 8),
        (11, 1, 4, 10, A, 7, 8), (12, 0, 8, 11, A, 8, 9), (13, 1, 5, 12, A, 8, 9), (14, 0, 9, 13, A, 9, 10)]
    assert [tuple(float(v) for v in r) for r in rows] == [tuple(float(v) for v in r) for r in expected]
    assert 2 not in set(t.worker.tolist())  # never online, never in the trace


def test_a_sync_round_waits_for_an_offline_client_and_says_when_none_comes(trace_file):
    cluster = Cluster(workers=3, compute=Constant(value=1.0), availability=AvailabilityTrace(path=trace_file))
    with pytest.raises(ScenarioError, match=r"stops the run at simulated time 3 s, .*protocol sync waits for every"):
        simulate(cluster, Sync(), 1, seed=0)  # clients 0 and 1 have arrived by 3; client 2 is never online
    with pytest.raises(ScenarioError, match=r"stops the run at simulated time 10 s, before run.updates \(16\)"):
        simulate(cluster, Async(), 16, seed=0)


def online_at(intervals, c, t0, t1):
    """True if [t0, t1] lies within one of client c's online intervals (t1 may be the interval's end)."""
    flat = intervals.get(c, [])
    return any(s <= t0 and t1 <= e for s, e in zip(flat[::2], flat[1::2]))


def test_no_client_computes_while_offline_under_random_times(tmp_path):
    rng = np.random.default_rng(5)
    lines = ["client,start,end"]
    for c in range(6):
        edges = np.sort(rng.uniform(0, 60, 8))
        lines += [f"{c},{s:.3f},{e:.3f}" for s, e in zip(edges[::2], edges[1::2])]
    path = tmp_path / "random.csv"
    path.write_text("\n".join(lines))
    model = AvailabilityTrace(path=str(path))
    for protocol in (Async(), KOfN(k=2)):
        cluster = Cluster(workers=8, compute=Exponential(mean=0.5), uplink=Constant(value=0.1),
                          downlink=Constant(value=0.1), availability=model)
        t = simulate(cluster, protocol, 60, seed=3)
        assert not set(t.worker.tolist()) & {6, 7}  # clients 6 and 7 have no interval
        assert (t.status == int(Status.LOST)).sum() > 0 and (t.status == int(Status.APPLIED)).sum() == 60 * (
            1 if isinstance(protocol, Async) else 2)
        for w, status, t_read, t_arrive in zip(t.worker, t.status, t.t_read, t.t_arrive):
            if status == int(Status.LOST):  # cut at the end of its interval, after starting inside it
                assert online_at(model.intervals, w, t_read, t_arrive)
                assert t_arrive in model.intervals[w][1::2]
            elif status == int(Status.APPLIED):
                assert online_at(model.intervals, w, t_read, t_arrive)


def test_a_client_always_online_changes_nothing():
    base = Cluster(workers=4, compute=Exponential(mean=1.0), uplink=Constant(value=0.1))
    always = Cluster(workers=4, compute=Exponential(mean=1.0), uplink=Constant(value=0.1),
                     availability=OnOff(mean_online=1e100, mean_offline=1e-3))
    for protocol in (Async(), Sync()):
        a, b = simulate(base, protocol, 300, seed=1), simulate(always, protocol, 300, seed=1, engine="simpy")
        for column in ("update", "worker", "step", "read_version", "status", "t_read", "t_done", "t_apply"):
            assert np.array_equal(getattr(a, column), getattr(b, column)), column


def test_on_off_starts_stationary_and_is_online_its_long_run_fraction():
    """P(online at t) = mean_online / (mean_online + mean_offline) at every t, from t = 0 on (binomial test over
    4000 clients at t = 0 and t = 37), and the time online over a long window approaches it."""
    model = OnOff(mean_online=2.0, mean_offline=6.0)
    p = model.online_fraction
    schedules = model.schedules(seed=11, workers=4000)
    for t in (0.0, 37.0):
        online = sum(s.next_on(t) == t for s in schedules)
        assert stats.binomtest(online, 4000, p).pvalue > 1e-3
    s, t, on = schedules[0], 0.0, 0.0
    while t < 20000.0:
        start = s.next_on(t)
        t = s.next_off(start)
        on += min(t, 20000.0) - min(start, 20000.0)
    assert abs(on / 20000.0 - p) < 0.03  # about 1700 periods: standard error ~0.008


def test_the_daily_window_gives_each_client_its_hours_every_day():
    """Client c is online exactly when (t - o_c) mod P < h, with o_c uniform in [0, P) (KS test over 400 clients)."""
    h, period = 6.0 * 3600, 86400.0
    schedules = Daily(online_hours=6.0).schedules(seed=2, workers=400)
    grid = np.linspace(0.0, 3 * period, 1201)[:-1] + 7.0
    for s in schedules[:20]:
        s.next_on(0.0)  # draws the offset
        for t in grid:
            online = (t - s.offset) % period < h
            assert (s.next_on(t) == t) == online
            if online:
                assert s.next_off(t) == pytest.approx(t + h - (t - s.offset) % period)
            else:
                days = (s.next_on(t) - s.offset) / period  # the next window opens a whole number of days on
                assert s.next_on(t) > t and abs(days - round(days)) < 1e-12 and s.next_on(t) - t < period
    for s in schedules:
        s.next_on(0.0)
    offsets = [s.offset for s in schedules]
    assert stats.kstest(np.asarray(offsets) / period, "uniform").pvalue > 1e-3


def test_on_off_with_a_daily_window_is_online_only_when_both_are():
    both = OnOff(mean_online=3600.0, mean_offline=3600.0, daily=Daily(online_hours=8.0))
    onoff = OnOff(mean_online=3600.0, mean_offline=3600.0)
    window = Daily(online_hours=8.0)
    b, a, w = (m.schedules(seed=4, workers=3) for m in (both, onoff, window))
    for c in range(3):
        for t in np.linspace(0, 5 * 86400, 2001):
            assert (b[c].next_on(t) == t) == (a[c].next_on(t) == t and w[c].next_on(t) == t)
            if b[c].next_on(t) == t:
                assert b[c].next_off(t) == min(a[c].next_off(t), w[c].next_off(t))


@pytest.mark.parametrize("text, message", [
    ("client,start,end\n0,3,1\n", "start < end"),
    ("client,start,end\n0,0,5\n0,4,6\n", "overlapping intervals of one client, got 'client 0: [0.0, 5.0) and"),
    ("client,start,end\n0.5,0,1\n", "client (an integer >= 0)"),
    ("client,start,end\n0,0,inf\n", "all finite"),
    ("client,start\n0,0\n", "three numbers client,start,end"),
    ("a,b,c\nx,y,z\n", "must be a CSV file of rows client,start,end"),
    ("client,start,end\n9,0,1\n", "must number clients below cluster.workers (3), got 'client 9'"),
    ("client,start,end\n", "(it has no data row)"),
    ("client,start,end\n0,1e20,2e20\n", "path (its last start) must be at most 1e+12 x the shortest mean step"),
])
def test_a_bad_trace_file_is_refused_in_one_line(tmp_path, text, message, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"""name: bad
problem: {{kind: least_squares, n_samples: 200, dim: 5}}
cluster: {{workers: 3, compute: {{kind: constant, value: 1.0}}, availability: {{kind: trace, path: {path.name}}}}}
protocol: {{kind: async}}
algorithm: {{kind: sgd, lr: 0.01}}
run: {{updates: 10}}
""")
    for command in (["validate", str(scenario)], ["run", str(scenario), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cluster.availability.path" in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_availability_is_refused_where_it_is_not_modelled():
    with pytest.raises(ParamError, match="availability must be null with failures"):
        from asyncsim.timing.cluster import Failures

        Cluster(workers=2, compute=Constant(value=1.0), failures=Failures(rate=0.1, downtime=Constant(value=1.0)),
                availability=OnOff(mean_online=1.0, mean_offline=1.0))
    cluster = Cluster(workers=2, compute=Constant(value=1.0), availability=OnOff(mean_online=1.0, mean_offline=1.0))
    with pytest.raises(ScenarioError, match="client availability"):
        simulate(cluster, Async(), 10, seed=0, engine="fast")
    assert not cluster.independent and cluster.interruption == "availability"
    assert math.isclose(OnOff(mean_online=1.0, mean_offline=3.0).online_fraction, 0.25)


def test_real_mode_and_the_protocols_that_do_not_model_it_refuse_availability(root, capsys):
    scenario = str(root / "scenarios" / "clusters" / "availability_trace.yaml")
    for command, field in ((["validate", scenario, "--mode", "real"], "cluster.availability must be null in real "
                            "mode"),
                           (["validate", scenario, "--set", "protocol.kind=drain"],
                            "cluster.availability: protocol drain does not model workers going offline")):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and field in err, err


BASE = """name: attack
problem: {kind: least_squares, n_samples: 200, dim: 5}
cluster: {workers: 3, compute: {kind: constant, value: 1.0}, availability: AVAILABILITY}
protocol: {kind: PROTOCOL}
algorithm: {kind: sgd, lr: 0.01}
run: {updates: 10}
"""


@pytest.mark.parametrize("availability, protocol, message", [
    ("{kind: on_off, mean_online: 1.0e-300, mean_offline: 1.0e-300}", "async",
     "cluster.availability.mean_online must leave time to finish a step: the longest mean step (1 s) must be at most "
     "5 x mean_online"),
    ("{kind: daily, online_hours: 0.0001}", "sync",
     "cluster.availability.online_hours must give a window at least as long as the longest mean step"),
    ("{kind: on_off, mean_online: 5, mean_offline: 5, daily: {online_hours: 0.0001}}", "async",
     "cluster.availability.daily.online_hours must give a window"),
    ("{kind: on_off, mean_online: 1, mean_offline: 1.0e+100}", "async",
     "cluster.availability.mean_offline must be at most 1e+12 x the shortest mean step (1e+12 s; beyond, a step "
     "vanishes in the float64 sums of simulated time), got 1e+100"),
    ("{kind: daily, online_hours: 1, period: 1.0e+20}", "async", "cluster.availability.period (less the window: "
     "the night) must be at most 1e+12 x"),
    ("{kind: on_off, mean_online: 5, mean_offline: 5, daily: {kind: on_off, online_hours: 8}}", "async",
     "cluster.availability.daily.kind is not a known key"),
    ("{kind: trace, path: online.csv}", "sync", "cluster.availability must bring every worker online under protocol "
     "sync (each round waits for every worker), got 'clients never online: [2]'"),
])
def test_availability_that_cannot_run_is_refused_when_the_scenario_loads(tmp_path, capsys, availability, protocol,
                                                                          message):
    """What an attacker tried (each used to hang, run a wrong clock, or be refused only by the run)."""
    (tmp_path / "online.csv").write_text(INTERVALS)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(BASE.replace("AVAILABILITY", availability).replace("PROTOCOL", protocol))
    for command in (["validate", str(scenario)], ["run", str(scenario), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_daily_window_inside_on_off_takes_no_kind(tmp_path, capsys):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(BASE.replace("AVAILABILITY", "{kind: on_off, mean_online: 60, mean_offline: 120, daily: "
                                     "{online_hours: 8}}").replace("PROTOCOL", "async"))
    assert main(["validate", str(scenario)]) == 0


@pytest.mark.parametrize("model", [Daily(online_hours=1.0), Daily(online_hours=0.01, period=3601.0),
                                   OnOff(mean_online=5.0, mean_offline=50.0, daily=None),
                                   OnOff(mean_online=600.0, mean_offline=60.0, daily=Window(online_hours=2.0))],
                         ids=["daily", "short window", "on_off", "on_off and daily"])
def test_a_client_is_online_at_the_instant_its_schedule_says_it_comes_online(model):
    """next_on(t) is online when asked again, with an online period of positive length: the float sums of the
    window starts must not round a start into the previous window (a client then never came online, and its
    process spun at one instant)."""
    rng = np.random.default_rng(0)
    for s in model.schedules(seed=0, workers=32):
        for t in np.sort(rng.uniform(0, 3e5, 50)).tolist():
            on = s.next_on(t)
            assert s.next_on(on) == on and s.next_off(on) > on, (t, on)
