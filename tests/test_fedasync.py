"""FedAsync (staleness-weighted mixing): its weights, a literal loop of its definition along simulated traces, model
replacement bit for bit at alpha = 1, FedAvg under rounds, and one-line errors."""

import numpy as np
import pytest

import asyncsim
from asyncsim.algorithms import FedAsync, LocalSGD
from asyncsim.algorithms.fedasync import staleness_weight
from asyncsim.params import ScenarioError
from asyncsim.problems import LeastSquares
from asyncsim.replay import algorithm_draws, replay
from asyncsim.rng import Stream, generator
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import Exponential
from asyncsim.timing.protocols import Async, Periodic


def test_staleness_weights_by_hand():
    assert [staleness_weight(t, "constant") for t in (0, 5)] == [1.0, 1.0]
    assert staleness_weight(0, "polynomial", a=0.5) == 1.0
    assert staleness_weight(3, "polynomial", a=0.5) == pytest.approx(0.5)  # (3 + 1)^(-1/2)
    assert [staleness_weight(t, "hinge", a=0.5, b=4) for t in (0, 4, 5, 8)] == [1.0, 1.0, 1 / 1.5, 1 / 3.0]


def setup(K=200, n=4, protocol=None):
    problem = LeastSquares(n_samples=400, dim=6, noise=0.1).build(generator(0, Stream.DATA))
    protocol = protocol or Periodic(local_steps=3)
    trace = simulate(Cluster(workers=n, compute=Exponential(mean=1.0)), protocol, K, seed=4)
    return problem, protocol, trace


def literal(problem, trace, algorithm, seed):
    """FedAsync read literally: keep every version; contribution j of update k ran H local steps from version r_j
    with its (worker, step) draws; x_{k+1} = (1 - sum_j a_j/m) x_k + sum_j (a_j/m) y_j in worker order."""
    draws = algorithm_draws(algorithm, problem, seed)
    used = trace.used()
    xs = [np.zeros(problem.dim)]
    for k in range(used.n_updates):
        rows = np.flatnonzero(used.update == k)
        ys, weights = [], []
        for i in rows:
            y = xs[used.read_version[i]]
            for batch in draws(int(used.worker[i]), int(used.step[i])):
                y = y - algorithm.lr * problem.grad(y, batch)
            ys.append(y)
            weights.append(algorithm.alpha * staleness_weight(k - used.read_version[i], algorithm.weight,
                                                              algorithm.a, algorithm.b) / len(rows))
        x = (1.0 - sum(weights)) * xs[k]
        for w, y in zip(weights, ys):
            x = x + w * y
        xs.append(x)
    return np.array(xs)


@pytest.mark.parametrize("weight", ["constant", "polynomial", "hinge"])
def test_replay_is_the_literal_loop(weight):
    problem, protocol, trace = setup()
    algorithm = FedAsync(lr=0.05, alpha=0.6, weight=weight, a=0.5, b=2).resolve(protocol)
    assert algorithm.local_steps == 3
    result = replay(trace, algorithm, problem, np.zeros(6), seed=1, record_every=1)
    want = literal(problem, trace, algorithm, 1)
    np.testing.assert_allclose(result.x, want[-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.metrics["loss"], [problem.loss(x) for x in want], rtol=1e-12)
    assert trace.used().staleness.max() > 2  # the weights were exercised beyond the hinge


def test_alpha_one_is_asynchronous_model_replacement_bit_for_bit():
    """alpha = 1, s = 1: x_{k+1} = y, the model of the contribution, exactly (0 x + 1 y)."""
    problem, protocol, trace = setup(protocol=Async())
    algorithm = FedAsync(lr=0.05, alpha=1.0).resolve(protocol)
    result = replay(trace, algorithm, problem, np.zeros(6), seed=1, record_every=1)
    draws = algorithm_draws(algorithm, problem, 1)
    used, xs = trace.used(), [np.zeros(6)]
    for k in range(used.n_updates):
        (i,) = np.flatnonzero(used.update == k)
        (batch,) = draws(int(used.worker[i]), int(used.step[i]))
        xs.append(xs[used.read_version[i]] - 0.05 * problem.grad(xs[used.read_version[i]], batch))
    assert np.array_equal(result.x, xs[-1])


def test_under_rounds_alpha_one_is_fedavg():
    """Under sync rounds every model is fresh: alpha = 1 replaces x by the average model, local SGD's
    x + mean(y_j - x) up to rounding."""
    problem, protocol, trace = setup(K=40, protocol=Periodic(local_steps=2, synchronous=True))
    fed = replay(trace, FedAsync(lr=0.05, alpha=1.0).resolve(protocol), problem, np.zeros(6), seed=1)
    avg = replay(trace, LocalSGD(lr=0.05).resolve(protocol), problem, np.zeros(6), seed=1)
    np.testing.assert_allclose(fed.x, avg.x, rtol=1e-12, atol=1e-14)


def test_scenario_errors_are_one_line():
    for change, message in [
        ("algorithm={kind: fedasync, lr: 0.1, alpha: 0}", "algorithm.alpha must be in (0, 1], got 0.0"),
        ("algorithm={kind: fedasync, lr: 0.1, weight: linear}",
         "algorithm.weight must be one of constant, polynomial, hinge, got 'linear'"),
        ("algorithm={kind: fedasync, lr: 0.1, a: -1}", "algorithm.a must be >= 0, got -1.0"),
    ]:
        with pytest.raises(ScenarioError) as err:
            asyncsim.load_scenario(None, [change])
        assert str(err.value) == message
    with pytest.raises(ScenarioError, match=r"^protocol.kind must be one of .* for algorithm fedasync, "
                                            r"got 'shared_memory'"):
        asyncsim.load_scenario(None, ["algorithm={kind: fedasync, lr: 0.1}", "protocol={kind: shared_memory}",
                                      "cluster={workers: 2, compute: {kind: exponential, mean: 1.0}}"])
    scenario = asyncsim.load_scenario(None, ["algorithm={kind: fedasync, lr: 0.02, weight: polynomial}",
                                             "run.updates=300"])
    result = asyncsim.run(scenario)
    assert result.metrics["loss"].iloc[-1] < 0.5 * result.metrics["loss"].iloc[0]
