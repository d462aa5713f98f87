"""The replay engine against plain loops and a brute-force replay that stores every version."""

from dataclasses import dataclass

import numpy as np
import pytest

from asyncsim.algorithms import SGD
from asyncsim.params import ParamError
from asyncsim.problems import LeastSquares, Quadratic
from asyncsim.replay import replay
from asyncsim.rng import BLOCK, Stream, generator
from asyncsim.timing import Cluster, Straggler, simulate
from asyncsim.timing.laws import Exponential
from asyncsim.timing.protocols import Async, Sync

SEED = 5


def batch(problem, worker, step, size):
    """The minibatch of (worker, step), drawn directly from its keyed generator (independent of StepDraws)."""
    g = generator(SEED, Stream.ALGORITHM, worker, step // BLOCK)
    return problem.sample_batches(g, BLOCK, size)[step % BLOCK]


@pytest.fixture(scope="module")
def problem():
    return LeastSquares(n_samples=500, dim=20, noise=0.1).build(generator(SEED, Stream.DATA))


def test_one_worker_async_sgd_is_a_plain_sgd_loop_bit_for_bit(problem):
    K, sgd = 600, SGD(lr=0.02, batch_size=8)
    trace = simulate(Cluster(workers=1, compute=Exponential(mean=1.0)), Async(), K, SEED)
    res = replay(trace, sgd, problem, np.zeros(problem.dim), SEED, record_every=100)
    x = np.zeros(problem.dim)
    for s in range(K):
        x = x - sgd.lr * problem.grad(x, batch(problem, 0, s, 8))
    assert np.array_equal(res.x, x)
    assert res.metrics["update"].tolist() == [0, 100, 200, 300, 400, 500, 600]
    assert res.metrics["loss"].iloc[-1] == problem.loss(x)


def test_sync_sgd_averages_the_round_in_worker_order(problem):
    K, n, sgd = 50, 3, SGD(lr=0.05, batch_size=4)
    trace = simulate(Cluster(workers=n, compute=Exponential(mean=1.0)), Sync(), K, SEED)
    res = replay(trace, sgd, problem, np.zeros(problem.dim), SEED)
    x = np.zeros(problem.dim)
    for k in range(K):
        g = [problem.grad(x, batch(problem, w, k, 4)) for w in range(n)]
        x = x - sgd.lr * ((g[0] + g[1] + g[2]) / n)
    assert np.array_equal(res.x, x)


def test_async_replay_equals_brute_force_replay_that_keeps_every_version(problem):
    K, sgd = 2000, SGD(lr=0.01, batch_size=4)
    cluster = Cluster(workers=6, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=20.0),))
    trace = simulate(cluster, Async(), K, SEED)
    res = replay(trace, sgd, problem, np.zeros(problem.dim), SEED, record_every=250)
    versions = [np.zeros(problem.dim)]
    for k in range(K):
        w, s, r = trace.worker[k], trace.step[k], trace.read_version[k]
        versions.append(versions[-1] - sgd.lr * problem.grad(versions[r], batch(problem, w, s, 4)))
    assert np.array_equal(res.x, versions[-1])
    recorded = res.metrics.set_index("update")["loss"]
    for v in (0, 250, 1000, K):
        assert recorded[v] == problem.loss(versions[v])
    assert res.metrics["time"].tolist()[1] == trace.t_apply[249]


def test_memory_is_bounded_by_workers_not_by_staleness(problem):
    cluster = Cluster(workers=4, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=0, slowdown=100.0),))
    trace = simulate(cluster, Async(), 3000, SEED)
    res = replay(trace, SGD(lr=0.01), problem, np.zeros(problem.dim), SEED, record_every=3000)
    assert trace.staleness.max() > 100
    assert res.peak_in_flight <= 4


@dataclass(frozen=True)
class MutatesSnapshot(SGD):
    def local(self, snapshot, worker_state, problem, draw):
        snapshot -= 0.0
        return super().local(snapshot, worker_state, problem, draw)


@dataclass(frozen=True)
class MutatesState(SGD):
    def apply(self, server_state, messages, info):
        server_state -= self.lr * messages[0]
        return server_state


@pytest.mark.parametrize("algorithm", [MutatesSnapshot(lr=0.1), MutatesState(lr=0.1)], ids=type)
def test_update_rules_that_mutate_their_inputs_fail_loudly(problem, algorithm):
    trace = simulate(Cluster(workers=2, compute=Exponential(mean=1.0)), Async(), 10, SEED)
    with pytest.raises(ValueError, match="read-only"):
        replay(trace, algorithm, problem, np.zeros(problem.dim), SEED)


def test_divergence_is_detected_and_reported():
    p = Quadratic(dim=3, mu=1.0, L=10.0).build(generator(0, Stream.DATA))
    trace = simulate(Cluster(workers=1, compute=Exponential(mean=1.0)), Async(), 5000, SEED)
    res = replay(trace, SGD(lr=0.5), p, np.zeros(3), SEED, record_every=10)  # lr > 2 / L
    assert res.diverged_at is not None and res.diverged_at < 5000
    assert res.metrics["update"].iloc[-1] == res.diverged_at
    assert not np.isfinite(res.metrics["loss"].iloc[-1])
    stable = replay(trace, SGD(lr=0.19), p, np.zeros(3), SEED, record_every=1000)  # lr < 2 / L
    assert stable.diverged_at is None and stable.metrics["suboptimality"].iloc[-1] < 1e-12


def test_sgd_parameters_are_validated():
    with pytest.raises(ParamError, match=r"^lr must be > 0, got -0.1$"):
        SGD(lr=-0.1)
    with pytest.raises(ParamError, match=r"^batch_size must be >= 1, got 0$"):
        SGD(lr=0.1, batch_size=0)
