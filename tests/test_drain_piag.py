"""The draining server against a hand-derived event log and against ``async``; the batched staleness identity;
PIAG and Async-BCD with delay-adaptive steps against literal loops of their definitions, on simulated delays and
on the logged PIAG run."""

from pathlib import Path

import numpy as np
import pytest

import asyncsim
from asyncsim import theory
from asyncsim.algorithms import PIAG, AsyncBCD
from asyncsim.algorithms.piag import History, window_step
from asyncsim.params import ParamError, ScenarioError
from asyncsim.problems.logistic import Logistic
from asyncsim.scenario import from_dict
from asyncsim.replay import algorithm_draws, replay
from asyncsim.rng import generator, Stream
from asyncsim.timing import Cluster, Server, simulate
from asyncsim.timing.cluster import Failures
from asyncsim.timing.imported import age_trace, max_ages, read_delays, trace_ages
from asyncsim.timing.laws import Constant, Exponential, LogNormal
from asyncsim.timing.protocols import Async, Drain

DATA = Path(__file__).resolve().parents[1] / "scenarios" / "data"
COLUMNS = ("update", "worker", "step", "read_version", "round", "status", "t_read", "t_done", "t_arrive", "t_apply")


def rows(trace):
    cols = ("update", "worker", "step", "read_version", "t_read", "t_done", "t_arrive", "t_apply")
    return [tuple(r) for r in zip(*(getattr(trace, c).tolist() for c in cols))]


# ------------------------------------------------------------------------------------------- the draining server


def test_drain_hand_derived_event_log_with_ties():
    """Workers 0 and 1 take 1 s per gradient, worker 2 takes 2 s, the master 0.5 s per update.
    t=1: 0 and 1 arrive together at an idle master: one update of both (0), applied at 1.5.
    t=2: 2 arrives at an idle master: update 1, applied at 2.5.
    t=2.5: update 1 is applied, then 0 and 1 arrive (read version 1 at 1.5): update 2 opens at 2.5, applied at 3.
    t=4: 0 and 1 arrive (read version 3 at 3): update 3, applied at 4.5.
    t=4.5: update 3 is applied first; 2's arrival at that instant (read version 2 at 2.5) is not in it: update 4."""
    cluster = Cluster(workers=3, compute=(Constant(value=1.0), Constant(value=1.0), Constant(value=2.0)),
                      server=Server(service=Constant(value=0.5)))
    trace = simulate(cluster, Drain(), 5, seed=0).validate()
    assert rows(trace) == [
        (0, 0, 0, 0, 0.0, 1.0, 1.0, 1.5), (0, 1, 0, 0, 0.0, 1.0, 1.0, 1.5),
        (1, 2, 0, 0, 0.0, 2.0, 2.0, 2.5),
        (2, 0, 1, 1, 1.5, 2.5, 2.5, 3.0), (2, 1, 1, 1, 1.5, 2.5, 2.5, 3.0),
        (3, 0, 2, 3, 3.0, 4.0, 4.0, 4.5), (3, 1, 2, 3, 3.0, 4.0, 4.0, 4.5),
        (4, 2, 1, 2, 2.5, 4.5, 4.5, 5.0)]
    # service_growth g: an update of m contributions takes 0.5 (1 + g (m - 1)); update 0 (m = 2) now ends at 2
    grown = simulate(cluster, Drain(service_growth=1.0), 2, seed=0)
    assert rows(grown)[:2] == [(0, 0, 0, 0, 0.0, 1.0, 1.0, 2.0), (0, 1, 0, 0, 0.0, 1.0, 1.0, 2.0)]
    assert rows(grown)[2] == (1, 2, 0, 0, 0.0, 2.0, 2.0, 2.5)  # m = 1: 0.5 s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_drain_with_every_update_of_one_contribution_is_async_bit_for_bit(seed):
    # continuous times and no service time: no two arrivals share an instant, so every update holds one
    cluster = Cluster(workers=6, compute=LogNormal(mu=0.0, sigma=0.7), uplink=Exponential(mean=0.05),
                      downlink=Exponential(mean=0.05), stragglers=())
    drained = simulate(cluster, Drain(), 3000, seed=seed)
    plain = simulate(cluster, Async(), 3000, seed=seed, engine="simpy")
    assert len(drained) == drained.n_updates == 3000
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(drained, col), getattr(plain, col), err_msg=col)


@pytest.mark.parametrize("n, service", [(3, 0.4), (8, 0.15), (8, 0.6), (16, 0.05)])
def test_batched_staleness_identity_holds_exactly_on_simulated_traces(n, service):
    cluster = Cluster(workers=n, compute=Exponential(mean=1.0), server=Server(service=Constant(value=service)))
    trace = simulate(cluster, Drain(), 6000, seed=4).validate()
    K, C = trace.n_updates, len(trace)
    assert C > K  # updates do batch
    assert np.bincount(trace.update).max() <= n and all(  # at most one contribution per worker per update
        len(set(trace.worker[trace.update == k])) == np.sum(trace.update == k) for k in range(0, K, 97))
    last = np.full(n, -1)
    np.maximum.at(last, trace.worker, trace.update)
    exact = theory.batched_mean_staleness(n, K, C, K - 1 - last)
    assert abs(trace.staleness.mean() - exact) <= 1e-9
    assert trace.staleness.mean() == pytest.approx(theory.batched_mean_staleness(n, K, C), rel=0.01)  # n/m - 1
    assert trace.staleness.mean() < n - 1  # batching lowers the staleness below async's n - 1


def test_drain_refuses_what_it_does_not_model():
    with pytest.raises(ScenarioError, match=r"^engine fast cannot simulate protocol drain \(the fast path covers"):
        simulate(Cluster(workers=2, compute=Exponential(mean=1.0)), Drain(), 10, seed=0, engine="fast")
    with pytest.raises(ParamError, match=r"^cluster.server.slots must be 1 under protocol drain"):
        simulate(Cluster(workers=2, compute=Exponential(mean=1.0), server=Server(slots=2)), Drain(), 10, seed=0)
    with pytest.raises(ParamError, match=r"^cluster.failures: protocol drain does not model workers going offline"):
        simulate(Cluster(workers=2, compute=Exponential(mean=1.0), failures=Failures(rate=0.01, downtime=
                                                                                     Constant(value=1.0))),
                 Drain(), 10, seed=0)
    with pytest.raises(ScenarioError, match=r"^protocol.service_growth must be in \[0, 1e6\], got -1"):
        asyncsim.load_scenario(None, ["protocol={kind: drain, service_growth: -1}"])


# ------------------------------------------------------------------------------------------- PIAG's matrix


def test_the_piag_log_imports_as_a_draining_trace_and_back():
    ages = read_delays(DATA / "PIAG_sun_MNIST.csv")
    assert ages.shape == (1500, 8)
    trace = age_trace(ages).validate()
    np.testing.assert_array_equal(trace_ages(trace), ages)  # the matrix is the trace, exactly
    assert trace.n_workers == 8 and trace.n_updates == 1500 and len(trace) == 1723
    assert np.bincount(trace.update)[0] == 8  # the first aggregate holds every worker's gradient at x_0
    # every fresh gradient read the version right after its worker's previous one was applied
    for w in range(8):
        mine = np.flatnonzero(trace.worker == w)
        np.testing.assert_array_equal(trace.read_version[mine[1:]], trace.update[mine[:-1]] + 1)
    last = np.full(8, -1)
    np.maximum.at(last, trace.worker, trace.update)
    assert trace.staleness.mean() == pytest.approx(theory.batched_mean_staleness(8, 1500, 1723, 1499 - last),
                                                   abs=1e-12)
    assert max_ages(ages).mean() == pytest.approx(15.536666666666667)


def test_a_small_matrix_by_hand():
    # iteration 1: worker 0's gradient ages (0 -> 1), worker 1 sends one computed at x_1 (age 0);
    # iteration 2: worker 0 sends one computed at x_1 (age 1), worker 1's ages
    ages = np.array([[0, 0], [1, 0], [1, 1]])
    trace = age_trace(ages)
    assert rows(trace) == [(0, 0, 0, 0, 0.0, 1.0, 1.0, 1.0), (0, 1, 0, 0, 0.0, 1.0, 1.0, 1.0),
                           (1, 1, 1, 1, 1.0, 2.0, 2.0, 2.0), (2, 0, 1, 1, 1.0, 3.0, 3.0, 3.0)]
    np.testing.assert_array_equal(trace_ages(trace), ages)


@pytest.mark.parametrize("ages, message", [
    ([[1, 0]], "at iteration 0 worker 0's gradient is 1 iterations old, more than the iterations before it (0)"),
    ([[0, 0], [0, 1], [1, 2]], "iteration 2 has no fresh gradient (every worker's age grew by one), but the master "
                               "steps only when gradients arrive"),
    ([[0, 0], [0, 1], [3, 2]], "at iteration 2 worker 0's gradient is 3 iterations old"),
    ([[0, 0], [0, 1], [0, 2], [2, 3]], "at iteration 3 worker 0's fresh gradient read version 1, before its "
                                        "previous gradient was applied (iteration 2)"),
])
def test_an_impossible_matrix_is_one_line(ages, message):
    with pytest.raises(ScenarioError) as err:
        age_trace(np.array(ages))
    assert str(err.value).startswith(f"protocol.path: {message}")


def test_an_impossible_matrix_file_names_its_line(tmp_path):
    path = tmp_path / "ages.csv"
    path.write_text("# ages\n0,0\n0,1\n\n3,2\n")
    with pytest.raises(ScenarioError) as err:
        read_delays(path)
    assert str(err.value) == (f"protocol.path {str(path)!r} line 5: at iteration 2 worker 0's gradient is 3 "
                              "iterations old, more than the iterations before it (2)")


def test_trace_file_reads_the_matrix_as_a_draining_trace(tmp_path):
    path = tmp_path / "ages.csv"
    path.write_text("# PIAG, 2 workers\nw0,w1\n0,0\n1,0\n1,1\n")
    s = from_dict({"name": "piag", "problem": {"kind": "logistic", "n_samples": 20, "dim": 3},
                   "cluster": {"workers": 2, "compute": {"kind": "constant", "value": 1.0}},
                   "protocol": {"kind": "trace_file", "path": str(path)}, "algorithm": {"kind": "piag", "lr": 0.1},
                   "run": {"record_every": 1}})
    assert s.run.updates == 3 and s.protocol.family.name == "DRAINED"
    result = asyncsim.run(s)
    assert result.summary.protocol_notes["contributions_per_update"] == pytest.approx(4 / 3)
    assert result.summary.protocol_notes["workers_from"].startswith("columns: a per-worker-age matrix of 2 workers")
    one = tmp_path / "one.csv"
    one.write_text("0\n0\n0\n")
    assert read_delays(one, "per_worker").shape == (3, 1)  # stated: a matrix of one worker


# ------------------------------------------------------------------------------------------- step policies


def steps(policy, taus, lr=1.0, budget=2.5):
    history, out = History([], 0), []
    for tau in taus:
        gamma = window_step(policy, lr, budget, history, tau)
        out.append(gamma)
        history = history.append(gamma)
    return out


def test_window_step_policies_by_hand():
    taus = (0, 1, 2, 1, 0)
    assert steps("constant", taus) == [1.0] * 5
    # clip: the largest step that keeps sum_{t=k-tau_k}^{k} gamma_t <= 2.5
    assert steps("clip", taus) == [1.0, 1.0, 0.5, 1.0, 1.0]
    # hold: a full step when it fits in the budget, else none
    assert steps("hold", taus) == [1.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("policy", ["clip", "hold"])
def test_an_adaptive_step_is_taken_only_within_the_budget_of_its_delay_window(policy):
    taus = read_delays(DATA / "BCD_sun_MNIST.csv")
    gammas = np.array(steps(policy, taus, lr=0.3, budget=1.0))
    windows = np.array([gammas[k - t:k + 1].sum() for k, t in enumerate(taus)])
    assert windows[gammas > 0].max() <= 1.0 + 1e-12 and gammas.min() >= 0
    assert gammas.mean() > 0.05 and windows.max() > 1.0  # they move, and the budget binds


def test_history_is_shared_but_never_changes_an_earlier_state():
    a = History([], 0).append(1.0)
    b = a.append(2.0)
    c = a.append(3.0)  # a branch from an older state copies its prefix
    assert (a.length, b.values[:b.length], c.values[:c.length]) == (1, [1.0, 2.0], [1.0, 3.0])


# ------------------------------------------------------------------------------------------- PIAG, Async-BCD


def problem_of(n_samples=64, dim=6):
    return Logistic(n_samples=n_samples, dim=dim, l2=0.01).build(generator(0, Stream.DATA))


def piag_loop(trace, problem, x0, lr, policy, budget):
    """PIAG by its definition: keep every version; at iteration k refresh the fresh gradients (each at the
    version it read, over its worker's shard), then x_{k+1} = x_k - gamma_k (1/n) sum of the table."""
    n = trace.n_workers
    N = problem.n_samples
    xs, table, reads, gammas = [x0], {}, {}, []
    for k in range(trace.n_updates):
        for i in np.flatnonzero(trace.update == k):
            w, r = int(trace.worker[i]), int(trace.read_version[i])
            table[w] = problem.grad(xs[r], slice(w * N // n, (w + 1) * N // n))
            reads[w] = r
        tau = k - min(reads.values())
        if policy == "constant":
            gamma = lr
        else:
            used = float(np.sum(gammas[k - tau:k]))
            gamma = max(0.0, min(lr, budget - used)) if policy == "clip" else (lr if used + lr <= budget else 0.0)
        gammas.append(gamma)
        present = sorted(table)
        total = table[present[0]]
        for w in present[1:]:
            total = total + table[w]
        xs.append(xs[-1] - gamma * (total / n) if gamma > 0 else xs[-1])
    return xs[-1], gammas


def simulated_drain(n=5, K=400):
    cluster = Cluster(workers=n, compute=LogNormal(mu=0.0, sigma=0.5), server=Server(service=Constant(value=0.3)))
    return simulate(cluster, Drain(), K, seed=7)


@pytest.mark.parametrize("policy", ["constant", "clip", "hold"])
@pytest.mark.parametrize("source", ["simulated", "logged"])
def test_piag_replay_is_the_literal_loop_bit_for_bit(policy, source):
    trace = simulated_drain() if source == "simulated" else age_trace(read_delays(DATA / "PIAG_sun_MNIST.csv")[:300])
    problem = problem_of()
    x0 = np.linspace(-1.0, 1.0, problem.dim)
    lr, budget = 8.0, 24.0
    rule = PIAG(lr=lr, policy=policy, budget=budget)
    result = replay(trace, rule, problem, x0, seed=0, record_every=1)
    want, gammas = piag_loop(trace, problem, x0, lr, policy, budget)
    np.testing.assert_array_equal(result.x, want)
    np.testing.assert_array_equal(result.metrics["step_size"].to_numpy()[1:], gammas)
    if policy != "constant":
        assert min(gammas) < lr  # the window rule acted
        assert result.metrics["loss"].iloc[-1] < result.metrics["loss"].iloc[0]
    else:
        assert max(trace_ages(trace).max(axis=1)) * lr > budget  # it would have


def test_async_bcd_replay_is_the_literal_loop():
    from asyncsim.timing.imported import delay_trace

    trace = delay_trace(read_delays(DATA / "BCD_sun_CIFAR100.csv")[:500])
    problem = problem_of()
    x0 = np.zeros(problem.dim)
    rule = AsyncBCD(lr=30.0, policy="clip", budget=90.0, blocks=3)
    result = replay(trace, rule, problem, x0, seed=2, record_every=500)
    bound = rule.bind(problem, trace.n_workers)
    draws = algorithm_draws(bound, problem, 2)
    xs, gammas = [x0], []
    for k in range(trace.n_updates):
        w, s, r = int(trace.worker[k]), int(trace.step[k]), int(trace.read_version[k])
        tau = k - r
        used = float(np.sum(gammas[k - tau:k]))
        gamma = max(0.0, min(30.0, 90.0 - used))
        gammas.append(gamma)
        block = int(draws(w, s))
        lo, hi = (0, 2, 4, 6)[block], (0, 2, 4, 6)[block + 1]
        x = xs[-1].copy()
        x[lo:hi] = xs[-1][lo:hi] - gamma * problem.partial_grad(xs[r], slice(lo, hi))
        xs.append(x)
    np.testing.assert_array_equal(result.x, xs[-1])


def test_piag_checks_what_it_needs_when_the_scenario_loads():
    with pytest.raises(ScenarioError, match=r"^problem.kind must be a finite sum of samples"):
        asyncsim.load_scenario(None, ["algorithm={kind: piag, lr: 0.1}", "problem={kind: quadratic, dim: 4}",
                                      "run.updates=10"])
    with pytest.raises(ScenarioError, match=r"^protocol.kind must be one of .* for algorithm piag"):
        asyncsim.load_scenario(None, ["algorithm={kind: piag, lr: 0.1}", "protocol={kind: rennala, batch: 2}"])
    with pytest.raises(ScenarioError, match=r"^algorithm.policy must be one of constant, clip, hold, got 'fast'"):
        asyncsim.load_scenario(None, ["algorithm={kind: piag, lr: 0.1, policy: fast}"])
    with pytest.raises(ScenarioError, match=r"^problem.n_samples must be >= cluster.workers \(8\)"):
        asyncsim.load_scenario(None, ["algorithm={kind: piag, lr: 0.1}", "problem.n_samples=4", "problem.dim=2"])


def test_the_shipped_scenarios_run(root):
    for name in ("protocols/drain.yaml", "real_delays/piag.yaml", "real_delays/piag_log.yaml",
                 "real_delays/async_bcd.yaml"):
        result = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / name))
        m = result.metrics
        assert m["loss"].iloc[-1] < m["loss"].iloc[0], name
        assert (m["step_size"].iloc[1:] > 0).mean() > 0.5, name


def test_predict_gives_the_batched_identity_for_drain(root):
    from asyncsim.predict import predict

    table = predict(asyncsim.load_scenario(root / "scenarios" / "protocols" / "drain.yaml"), updates=20_000)
    row = table[table["quantity"].str.startswith("drain mean staleness (n/m - 1")].iloc[0]
    assert row["rel_diff"] < 0.005 and row["predicted"] < 7  # batching: below async's n - 1
