"""FedBuff's buffered server (``buffered``): a hand-derived event log with ties, K = 1 is asynchronous local SGD bit
for bit, the buffered staleness identity exactly, and the server step's staleness weights against a literal loop."""

import numpy as np
import pytest

import asyncsim
from asyncsim import theory
from asyncsim.algorithms import LocalSGD
from asyncsim.algorithms.fedasync import staleness_weight
from asyncsim.params import ScenarioError
from asyncsim.problems import LeastSquares
from asyncsim.replay import algorithm_draws, replay
from asyncsim.rng import Stream, generator
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import Constant, Exponential, LogNormal
from asyncsim.timing.protocols import Buffered, Periodic
from asyncsim.timing.trace import Status

COLUMNS = ("update", "worker", "step", "read_version", "status", "t_read", "t_done", "t_arrive", "t_apply")


def rows(trace):
    return [tuple(r) for r in zip(*(getattr(trace, c).tolist() for c in COLUMNS))]


def test_buffered_hand_derived_event_log_with_ties():
    """3 clients with tasks of 1, 1 and 3 s, buffer K = 2, no latency.  At 1 clients 0 and 1 arrive together
    (worker order): 0 is acknowledged and restarts on version 0, 1 fills the buffer, update 0 is applied at 1 and 1
    restarts on version 1.  At 2 client 0 (read v0) and 1 (read v1) arrive: 0 is acknowledged on version 1, 1
    fills update 1 at 2 (staleness 1 and 0).  At 3 clients 0 (v1) and 1 (v2) fill update 2, the run's last
    (client 2's arrival at 3 comes after it)."""
    cluster = Cluster(workers=3, compute=(Constant(value=1.0), Constant(value=1.0), Constant(value=3.0)))
    trace = simulate(cluster, Buffered(buffer=2), 3, seed=0).validate()
    A = int(Status.APPLIED)
    assert rows(trace) == [
        (0, 0, 0, 0, A, 0.0, 1.0, 1.0, 1.0), (0, 1, 0, 0, A, 0.0, 1.0, 1.0, 1.0),
        (1, 0, 1, 0, A, 1.0, 2.0, 2.0, 2.0), (1, 1, 1, 1, A, 1.0, 2.0, 2.0, 2.0),
        (2, 0, 2, 1, A, 2.0, 3.0, 3.0, 3.0), (2, 1, 2, 2, A, 2.0, 3.0, 3.0, 3.0)]


def test_a_buffer_of_one_is_asynchronous_local_sgd_bit_for_bit():
    cluster = Cluster(workers=5, compute=LogNormal(mu=0.0, sigma=1.0), uplink=Exponential(mean=0.1),
                      downlink=Exponential(mean=0.1))
    a = simulate(cluster, Buffered(buffer=1, local_steps=3), 500, seed=2)
    b = simulate(cluster, Periodic(local_steps=3), 500, seed=2, engine="simpy")
    for column in COLUMNS:
        assert np.array_equal(getattr(a, column), getattr(b, column)), column
    problem = LeastSquares(n_samples=300, dim=5).build(generator(0, Stream.DATA))
    algorithm = LocalSGD(lr=0.05).resolve(Buffered(buffer=1, local_steps=3))
    assert np.array_equal(replay(a, algorithm, problem, np.zeros(5), seed=1).x,
                          replay(b, algorithm, problem, np.zeros(5), seed=1).x)


@pytest.mark.parametrize("n, K", [(8, 1), (8, 2), (8, 4), (8, 8), (5, 3)])
def test_buffered_staleness_identity_holds_exactly(n, K):
    """mean tau = (sum_w r_next_w - U) / C with r_next_w = l_w + f_w (l_w the worker's last update, f_w = 1 when
    it filled that buffer: the last arrival of the update, ties in worker order), and (n - 1)/K in the long run."""
    cluster = Cluster(workers=n, compute=Exponential(mean=1.0), uplink=Constant(value=0.05))
    trace = simulate(cluster, Buffered(buffer=K), 4000, seed=1).used()
    U, C = trace.n_updates, len(trace)
    assert C == U * K
    reads = np.zeros(n)
    for w in range(n):
        mine = np.flatnonzero(trace.worker == w)
        last = int(trace.update[mine].max())
        members = np.flatnonzero(trace.update == last)
        filler = max(members, key=lambda i: (trace.t_arrive[i], trace.worker[i]))
        reads[w] = last + (trace.worker[filler] == w)
    assert trace.staleness.mean() == pytest.approx(theory.buffered_mean_staleness(n, U, C, reads), abs=1e-12)
    assert trace.staleness.mean() == pytest.approx((n - 1) / K, rel=0.02)


def test_fedbuff_server_step_with_staleness_weights_is_the_literal_loop():
    """x_{k+1} = x_k + eta_g (1/K) sum_j (1 + tau_j)^(-1/2) Delta_j, each Delta_j H local steps from the version
    its client read."""
    protocol = Buffered(buffer=3, local_steps=2)
    trace = simulate(Cluster(workers=6, compute=Exponential(mean=1.0)), protocol, 150, seed=3)
    problem = LeastSquares(n_samples=300, dim=5).build(generator(0, Stream.DATA))
    algorithm = LocalSGD(lr=0.05, server_lr=1.5, weight="polynomial", a=0.5).resolve(protocol)
    result = replay(trace, algorithm, problem, np.zeros(5), seed=1)
    draws = algorithm_draws(algorithm, problem, 1)
    used, xs = trace.used(), [np.zeros(5)]
    for k in range(used.n_updates):
        step = np.zeros(5)
        for i in np.flatnonzero(used.update == k):
            y = x_read = xs[used.read_version[i]]
            for batch in draws(int(used.worker[i]), int(used.step[i])):
                y = y - 0.05 * problem.grad(y, batch)
            step = step + 1.5 * staleness_weight(k - used.read_version[i], "polynomial", 0.5) / 3 * (y - x_read)
        xs.append(xs[k] + step)
    np.testing.assert_allclose(result.x, xs[-1], rtol=0, atol=1e-12)
    assert used.staleness.max() >= 3


def test_buffered_scenarios_and_their_errors():
    base = ["protocol={kind: buffered, buffer: 4, local_steps: 2}", "algorithm={kind: local_sgd, lr: 0.02}",
            "run.updates=200"]
    result = asyncsim.run(asyncsim.load_scenario(None, base))
    assert result.trace.used().update.max() == 199 and len(result.trace.used()) == 800
    assert result.metrics["loss"].iloc[-1] < 0.5 * result.metrics["loss"].iloc[0]
    for change, message in [
        ("protocol.buffer=0", "protocol.buffer must be >= 1, got 0"),
        ("algorithm.server_lr=0", "algorithm.server_lr must be > 0, got 0.0"),
        ("algorithm.weight=sqrt", "algorithm.weight must be one of constant, polynomial, hinge, got 'sqrt'"),
    ]:
        with pytest.raises(ScenarioError) as err:
            asyncsim.load_scenario(None, base + [change])
        assert str(err.value) == message
    with pytest.raises(ScenarioError, match=r"^protocol.kind must be one of rennala for algorithm rennala_sgd, "
                                            r"got 'buffered'"):
        asyncsim.load_scenario(None, base + ["algorithm={kind: rennala_sgd, lr: 0.1}"])
    with pytest.raises(ScenarioError, match=r"^algorithm.server_lr and weight are local_sgd's server step"):
        asyncsim.load_scenario(None, base + ["algorithm={kind: downpour, lr: 0.1, server_lr: 2.0}"])


def test_the_buffered_staleness_reproduction_fails_with_the_draining_servers_identity(tmp_path, monkeypatch, capsys):
    """Fed the draining server's long-run form n/K - 1 instead of (n - 1)/K, the reproduction FAILs."""
    import yaml

    from asyncsim import reproduce
    from asyncsim.cli import main

    data = yaml.safe_load((reproduce.directory() / "buffered-staleness.yaml").read_text())
    data["quick"] = {"workers": [4], "updates": 2000}
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "right"), "--no-plots"]) == 0
    monkeypatch.setattr(reproduce.buffered, "buffered_mean_staleness",
                        lambda n, U, C, reads=None: theory.batched_mean_staleness(n, U, C))
    assert main(["reproduce", str(path), "--out", str(tmp_path / "wrong"), "--no-plots"]) == 1
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("FAIL: mean staleness equals")


def test_a_huge_buffer_is_refused_naming_the_protocol(tmp_path, capsys):
    """The trace's rows grow with the buffer: the memory check names the protocol, not run.updates."""
    from asyncsim.cli import main

    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: b\nproblem: {kind: least_squares, n_samples: 400, dim: 10}\n"
                        "cluster: {workers: 4, compute: {kind: exponential, mean: 1.0}}\n"
                        "protocol: {kind: buffered, buffer: 1000000000000, local_steps: 2}\n"
                        "algorithm: {kind: local_sgd, lr: 0.01, local_steps: 2}\nrun: {updates: 50}\n")
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: protocol must keep the run within the memory limit"), err
    assert "'buffer': 1000000000000" in err[0] and "5e+13 trace rows" in err[0]
