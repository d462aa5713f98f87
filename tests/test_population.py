"""Client populations (a protocol's ``concurrency``): a hand-derived log, full participation against the plain
protocols bit for bit, uniform selection (chi-square, fixed seeds), and the inputs that are refused."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from asyncsim.cli import main
from asyncsim.params import ParamError, ScenarioError
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.availability import AvailabilityTrace, OnOff
from asyncsim.timing.laws import Constant, LogNormal
from asyncsim.timing.population import ATTEMPTS, Pool
from asyncsim.timing.protocols import Async, Buffered, Periodic
from asyncsim.timing.trace import Status

A, L = int(Status.APPLIED), int(Status.LOST)
COLUMNS = ("update", "worker", "step", "read_version", "round", "status", "t_read", "t_done", "t_arrive", "t_apply",
           "t_read_end")


def assert_same(a, b):
    assert a.n_workers == b.n_workers and len(a.update) == len(b.update)
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)


def test_one_slot_over_a_hand_written_trace_gives_the_hand_derived_log(tmp_path):
    """Concurrency 1, compute 1 s, no latency.  Online: client 0 [0, 2), 1 [2, 4.5), 2 [5, 6), 3 never.  By hand:
    the slot takes 0 twice (its arrival at 2, the end of its interval, counts); at 2 only 1 is online, on version
    2; 1's third task [4, 5) is cut at 4.5 (lost); nobody is online until 5, when 2 takes version 4 and arrives at
    6; then nobody ever is."""
    path = tmp_path / "online.csv"
    path.write_text("client,start,end\n0,0,2\n1,2,4.5\n2,5,6\n")
    cluster = Cluster(workers=4, compute=Constant(value=1.0), availability=AvailabilityTrace(path=str(path)))
    t = simulate(cluster, Async(concurrency=1), 5, seed=0)
    rows = [tuple(float(v) for v in r) for r in zip(t.update, t.worker, t.step, t.read_version, t.status, t.t_read,
                                                     t.t_apply)]
    assert rows == [(0, 0, 0, 0, A, 0, 1), (1, 0, 1, 1, A, 1, 2), (2, 1, 0, 2, A, 2, 3), (3, 1, 1, 3, A, 3, 4),
                    (4, 1, 2, 4, L, 4, 4.5), (4, 2, 0, 4, A, 5, 6)]
    with pytest.raises(ScenarioError, match=r"stops the run at simulated time 6 s, before run.updates \(6\)"):
        simulate(cluster, Async(concurrency=1), 6, seed=0)


CLUSTER = dict(workers=12, compute=LogNormal(mu=0.0, sigma=0.6), uplink=Constant(value=0.05),
               downlink=Constant(value=0.03))


@pytest.mark.parametrize("protocol", [Async(), Buffered(buffer=3, local_steps=2), Periodic(local_steps=2)],
                         ids=["async", "buffered", "periodic"])
@pytest.mark.parametrize("available", [False, True], ids=["always", "on_off"])
def test_concurrency_equal_to_the_clients_is_the_plain_protocol_bit_for_bit(protocol, available):
    """With C = n slots a slot's client is the only idle one when it is put back, so every slot keeps its client:
    the trace is the full-participation one, row for row (timing draws are keyed by client and its own step)."""
    from dataclasses import replace

    cluster = Cluster(**CLUSTER, availability=OnOff(mean_online=20.0, mean_offline=10.0) if available else None)
    plain = simulate(cluster, protocol, 300, seed=3)
    population = simulate(cluster, replace(protocol, concurrency=12), 300, seed=3)
    assert_same(plain, population)
    if available:
        assert (plain.status == L).any()  # (the case is not vacuous)


def test_fedavg_with_every_client_drawn_is_synchronous_local_sgd_bit_for_bit():
    cluster = Cluster(**CLUSTER)
    plain = simulate(cluster, Periodic(local_steps=3, synchronous=True), 50, seed=1)
    drawn = simulate(cluster, Periodic(local_steps=3, synchronous=True, concurrency=12), 50, seed=1)
    assert_same(plain, drawn)


def test_fedavg_draws_uniform_subsets_of_clients_each_round():
    """N = 8, C = 3, 3000 rounds: each round holds 3 distinct clients; each client is drawn in a fraction 3/8 of the
    rounds and each of the 56 subsets in 1/56 (chi-square, fixed seed)."""
    n, c, rounds = 8, 3, 3000
    t = simulate(Cluster(workers=n, compute=Constant(value=1.0)), Periodic(local_steps=1, synchronous=True,
                                                                            concurrency=c), rounds, seed=7)
    members = [tuple(sorted(t.worker[t.update == k].tolist())) for k in range(rounds)]
    assert all(len(set(m)) == c for m in members)
    per_client = np.bincount(t.worker, minlength=n)
    assert stats.chisquare(per_client).pvalue > 0.01
    subsets = list(itertools.combinations(range(n), c))
    counts = [members.count(s) for s in subsets]
    assert stats.chisquare(counts).pvalue > 0.01
    # each client's steps count its own rounds
    for w in range(n):
        assert t.step[t.worker == w].tolist() == list(range(per_client[w]))


class FakeAvailability:
    """Client c online from ``since[c]`` on (inf: never)."""

    def __init__(self, since):
        self.since = since

    def __call__(self, c, t):
        return max(t, self.since[c])


@pytest.mark.parametrize("n, online, takes", [(200, 100, 20000), (1000, 2, 2000)], ids=["rejection", "listing"])
def test_the_pool_draws_uniformly_among_idle_online_clients(n, online, takes):
    """``n`` idle clients of which ``online`` are online: every take (each put back) chooses an online client, each
    as often as the others (chi-square, fixed seed); with 2 of 1000 online, 64 rejections in a row happen with
    probability 0.998^64 = 0.88, so most takes list the online clients."""
    since = [0.0 if c % (n // online) == 0 else 50.0 + c for c in range(n)]
    pool = Pool(n, seed=5, up_at=FakeAvailability(since), always_up=False)
    counts = np.zeros(n, int)
    for j in range(takes):
        c, t = pool.take(j % 7, 1.0)
        assert t == 1.0
        counts[c] += 1
        pool.put(c)
    chosen = counts > 0
    assert chosen.sum() == online and all(since[c] == 0.0 for c in np.flatnonzero(chosen))
    assert stats.chisquare(counts[chosen]).pvalue > 0.01
    if online == 2:  # the listing path made most choices
        assert sum(pool.counts.values()) > takes * ATTEMPTS * 0.8


def test_the_pool_says_when_the_first_idle_client_comes_online():
    pool = Pool(4, seed=0, up_at=FakeAvailability([9.0, 4.0, math.inf, 6.0]), always_up=False)
    assert pool.take(0, 1.0) == (None, 4.0)
    assert pool.take(0, 4.0) == (1, 4.0)
    assert pool.take(0, 5.0) == (None, 6.0)
    pool = Pool(1, seed=0, up_at=FakeAvailability([math.inf]), always_up=False)
    assert pool.take(0, 0.0) == (None, math.inf)


def test_no_more_than_c_clients_train_at_once_and_none_while_offline():
    """FedBuff on 40 on/off clients with concurrency 6: at most 6 tasks in progress at any instant, no client in two
    at once, every kept task within one online period of its client, every lost one cut at its period's end."""
    cluster = Cluster(workers=40, compute=LogNormal(mu=0.0, sigma=0.6), uplink=Constant(value=0.05),
                      downlink=Constant(value=0.05), availability=OnOff(mean_online=8.0, mean_offline=16.0))
    t = simulate(cluster, Buffered(buffer=2, local_steps=1, concurrency=6), 400, seed=2)
    schedules = cluster.availability.schedules(2, 40)
    spans = sorted(zip(t.t_read.tolist(), t.t_arrive.tolist()))
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    assert max(itertools.accumulate(d for _, d in events)) <= 6
    for w in np.unique(t.worker):
        mine = np.flatnonzero(t.worker == w)
        mine = mine[np.argsort(t.step[mine])]
        assert (t.t_read[mine][1:] >= t.t_arrive[mine][:-1]).all()
        for j in mine:
            s = schedules[w]
            assert s.next_on(t.t_read[j]) == t.t_read[j]
            end = s.next_off(t.t_read[j])
            if t.status[j] == L:
                assert t.t_apply[j] == end
            else:
                assert t.t_arrive[j] <= end
    assert (t.status == L).sum() > 10


def test_concurrency_is_checked_when_the_scenario_loads(root, tmp_path, capsys):
    scenario = (root / "scenarios" / "clusters" / "availability.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(scenario.replace("buffer: 4,", "buffer: 4, concurrency: 33,"))
    for command in (["validate", str(bad)], ["run", str(bad), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == ["error: protocol.concurrency must be in [1, cluster.workers = 32] (or null: every worker takes part), "
                       "got 33"]
    assert not (tmp_path / "out").exists()
    quick = (root / "scenarios" / "quickstart.yaml").read_text()
    bad.write_text(quick.replace("{kind: async}", "{kind: async, concurrency: 4}"))
    assert main(["validate", str(bad)]) == 0
    assert main(["validate", str(bad), "--mode", "real"]) == 2
    assert "protocol.concurrency must be null in real mode" in capsys.readouterr().err
    with pytest.raises(ScenarioError, match="engine fast cannot simulate a client population"):
        simulate(Cluster(workers=4, compute=Constant(value=1.0)), Async(concurrency=2), 3, 0, engine="fast")
    with pytest.raises(ParamError, match="concurrency must be >= 1"):
        Async(concurrency=0)


def test_a_population_runs_end_to_end_and_predict_says_it_has_no_formulas(root, tmp_path, capsys):
    """The shipped FedBuff population (2,000 clients, 100 slots): the run's summary records the concurrency, the
    contributions are 10 per update, and no worker-share overlay is claimed; predict refuses in one line."""
    import json

    scenario = root / "scenarios" / "federated" / "fedbuff_population.yaml"
    out = tmp_path / "r"
    assert main(["run", str(scenario), "--out", str(out), "--set", "run.updates=100"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol_notes"] == {"concurrency": 100}
    assert summary["contributions"] == 1000 and summary["workers"] == 2000
    assert "worker_shares" not in summary.get("predicted", {})
    capsys.readouterr()
    assert main(["predict", str(scenario)]) == 2
    assert capsys.readouterr().err.startswith("error: protocol.concurrency: predict compares every worker")


def test_fedavg_replaces_a_client_that_goes_offline_within_its_round():
    """FedAvg on 30 on/off clients, 6 drawn per round: every round applies 6 contributions of distinct clients;
    a client cut off mid-task (lost) is replaced by another, which reads the round's version one downlink after
    the cut (or after the first idle client comes online, if none is at the cut); nobody computes while offline."""
    down = 0.25
    cluster = Cluster(workers=30, compute=LogNormal(mu=0.0, sigma=0.5), uplink=Constant(value=0.1),
                      downlink=Constant(value=down), availability=OnOff(mean_online=12.0, mean_offline=6.0))
    rounds = 300
    t = simulate(cluster, Periodic(local_steps=2, synchronous=True, concurrency=6), rounds, seed=4)
    applied = t.status == A
    for k in range(rounds):
        mine = applied & (t.update == k)
        assert mine.sum() == 6 and len(set(t.worker[mine].tolist())) == 6, k
    lost = np.flatnonzero(t.status == L)
    assert len(lost) > 20
    at_once = 0
    for j in lost:
        k, cut = t.round[j], t.t_apply[j]
        later = (t.round == k) & (t.t_read >= cut + down - 1e-9) & (t.worker != t.worker[j])
        assert later.any(), j  # the replacement
        at_once += bool((later & np.isclose(t.t_read, cut + down, rtol=0, atol=1e-9)).any())
    assert at_once >= 0.8 * len(lost)
    schedules = cluster.availability.schedules(4, 30)
    for j in range(len(t.worker)):
        s = schedules[t.worker[j]]
        assert s.next_on(t.t_read[j]) == t.t_read[j] and t.t_done[j] <= s.next_off(t.t_read[j])


def test_the_federated_study_shares_its_clients_times_across_variants(root):
    """scenarios/federated/population.yaml: its variants see the same population (common random numbers).  FedBuff
    and FedAsync free a slot at each arrival (no service time), so their clients' tasks are the same, row for row;
    FedAvg's rounds differ, but a client's k-th task takes the same compute time in all three."""
    from asyncsim.build import build, timing_model
    from asyncsim.study.spec import load_study

    study = load_study(root / "scenarios" / "federated" / "population.yaml")
    runs = {r.cell.variant: r.scenario for r in study.evaluation_runs({c: 1 for c in study.cells}) if r.seed == 0}
    traces = {}
    for name, updates in (("fedavg", 20), ("fedbuff", 100), ("fedasync", 500)):  # 200 to 500 contributions each
        s = runs[name]
        tm = timing_model(build(s))
        traces[name] = simulate(tm.cluster, s.protocol, updates, s.seed, tm.message_bytes)
    end = min(t.t_apply.max() for t in traces.values())  # (compare what every run has made by then)
    rows = {name: sorted((w, s, r, a) for w, s, r, a in zip(t.worker.tolist(), t.step.tolist(), t.t_read.tolist(),
                                                              t.t_arrive.tolist()) if a < end)
            for name, t in traces.items()}
    assert rows["fedbuff"] == rows["fedasync"] and len(rows["fedbuff"]) > 100
    span = {name: {(w, s): round(a - r, 9) for w, s, r, a in rows[name]} for name in rows}
    common = set(span["fedavg"]) & set(span["fedbuff"])
    assert len(common) > 50
    lost = {(w, s) for t in traces.values() for w, s, st in zip(t.worker, t.step, t.status) if st == L}
    assert all(span["fedavg"][k] == span["fedbuff"][k] for k in common - lost)


@pytest.mark.parametrize("online_every, takes", [(1, 20000), (25, 4000)], ids=["rejection", "listing"])
def test_the_weighted_pool_draws_in_proportion_to_size_among_idle_online_clients(online_every, takes):
    """Weights 0, 1, 2, ... over 200 clients, every ``online_every``-th online: the takes are proportional to the
    weights among the online ones (chi-square, fixed seed), and a client of weight 0 is never drawn."""
    n = 200
    weights = [float(c % 7) for c in range(n)]
    since = [0.0 if c % online_every == 0 else 99.0 for c in range(n)]
    pool = Pool(n, seed=8, up_at=FakeAvailability(since), always_up=online_every == 1, weights=weights)
    counts = np.zeros(n, int)
    for j in range(takes):
        c, _ = pool.take(j % 3, 1.0)
        counts[c] += 1
        pool.put(c)
    eligible = np.array([since[c] == 0.0 and weights[c] > 0 for c in range(n)])
    assert counts[~eligible].sum() == 0
    expected = np.array(weights)[eligible] / sum(np.array(weights)[eligible]) * takes
    assert stats.chisquare(counts[eligible], expected).pvalue > 0.01


def test_fedavg_draws_clients_in_proportion_to_their_data_sizes():
    sizes = (1.0, 2.0, 3.0, 4.0, 0.0, 10.0)
    cluster = Cluster(workers=6, compute=Constant(value=1.0), data_sizes=sizes)
    t = simulate(cluster, Periodic(local_steps=1, synchronous=True, concurrency=1, selection="data_size"), 4000,
                 seed=3)
    counts = np.bincount(t.worker, minlength=6)
    assert counts[4] == 0
    keep = np.array(sizes) > 0
    assert stats.chisquare(counts[keep], np.array(sizes)[keep] / 20 * 4000).pvalue > 0.01
    with pytest.raises(ScenarioError, match="selection data_size needs the clients' data sizes"):
        simulate(Cluster(workers=6, compute=Constant(value=1.0)),
                 Async(concurrency=2, selection="data_size"), 10, seed=0)
    with pytest.raises(ParamError, match="selection needs a concurrency"):
        Async(selection="data_size")


def test_with_a_split_the_data_sizes_are_the_shards(root, capsys):
    """selection data_size under a split: the run draws clients by their shard sizes; without a split or
    cluster.data_sizes the scenario is refused when it loads."""
    import asyncsim
    from asyncsim.build import build, timing_model

    quick = root / "scenarios" / "quickstart.yaml"
    sets = ["problem={kind: logistic, n_samples: 400, dim: 10}", "protocol={kind: async, concurrency: 3, selection: "
            "data_size}"]
    assert main(["validate", str(quick), *[x for s in sets for x in ("--set", s)]]) == 2
    assert "protocol.selection data_size needs the clients' data sizes" in capsys.readouterr().err
    s = asyncsim.load_scenario(quick, sets + ["split={kind: dirichlet, alpha: 0.3}"])
    built = build(s)
    sizes = timing_model(built).cluster.data_sizes
    assert sizes == tuple(float(len(x)) for x in built.problem.shards) and sum(sizes) == 400
    assert s.to_dict()["protocol"] == {"kind": "async", "concurrency": 3, "selection": "data_size"}
    assert asyncsim.load_scenario(quick).to_dict()["protocol"] == {"kind": "async"}


def test_data_sizes_that_cannot_serve_the_concurrency_or_that_a_split_overrides_are_refused(root, capsys):
    quick = str(root / "scenarios" / "quickstart.yaml")
    sizes = "[" + ", ".join(["0"] * 7 + ["1"]) + "]"
    for sets, message in (
            ([f"cluster.data_sizes={sizes}", "protocol={kind: async, concurrency: 4, selection: data_size}"],
             "error: protocol.concurrency must be at most the clients with a data size > 0 (1), got 4"),
            (["cluster.data_sizes=[1, 1, 1, 1, 1, 1, 1, -1]"], "error: cluster.data_sizes[7] must be in [0, 1e+100], "
             "got -1.0"),
            (["problem={kind: logistic, n_samples: 400, dim: 10}", "split={kind: dirichlet, alpha: 0.5}",
              f"cluster.data_sizes={sizes}"], "error: cluster.data_sizes must be null with a split")):
        assert main(["validate", quick, *[x for s in sets for x in ("--set", s)]]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(message), err
