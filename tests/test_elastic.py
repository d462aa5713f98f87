"""EASGD, EAMSGD and DOWNPOUR against independent loops of the papers' algorithms, and the EASGD stability map."""

import numpy as np
import pytest

import asyncsim
from asyncsim.algorithms import EAMSGD, EASGD, SGD, Downpour, LocalSGD
from asyncsim.params import ScenarioError
from asyncsim.problems import LeastSquares, Quadratic
from asyncsim.replay import replay
from asyncsim.rng import StepDraws, Stream, generator
from asyncsim.stability import agreement, easgd_map
from asyncsim.theory import easgd_radius
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import Constant, Exponential
from asyncsim.timing.protocols import Async, Periodic

SEED = 5


@pytest.fixture(scope="module")
def lsq():
    return LeastSquares(n_samples=400, dim=12, noise=0.1).build(generator(SEED, Stream.DATA))


@pytest.fixture(scope="module")
def noisy_quad():
    return Quadratic(dim=8, mu=0.1, L=1.0, noise=0.3).build(generator(SEED, Stream.DATA))


def periodic_trace(workers, tau, K, synchronous=False, law=None):
    cluster = Cluster(workers=workers, compute=law or Exponential(mean=1.0), uplink=Constant(value=0.1),
                      downlink=Constant(value=0.1))
    return simulate(cluster, Periodic(local_steps=tau, synchronous=synchronous), K, SEED)


def draws_of(alg, problem):
    return StepDraws(SEED, Stream.ALGORITHM, lambda g, n: alg.draw(problem, g, n))


def test_easgd_with_one_worker_and_alpha_zero_is_plain_sgd_bit_for_bit(lsq):
    K = 300
    x0 = np.zeros(lsq.dim)
    sgd = replay(simulate(Cluster(workers=1, compute=Exponential(mean=1.0)), Async(), K, SEED),
                 SGD(lr=0.05, batch_size=8), lsq, x0, SEED)
    easgd = replay(periodic_trace(1, 1, K), EASGD(lr=0.05, local_steps=1, alpha=0.0, batch_size=8), lsq, x0, SEED)
    worker_x = easgd.worker_states[0][0]
    assert np.array_equal(worker_x, sgd.x)
    assert np.array_equal(easgd.x, x0)  # alpha = 0: the center never moves


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_async_elastic_averaging_is_the_papers_algorithm_box_in_apply_order(lsq, momentum):
    """Zhang et al. (2015) Algorithm 1 / 2 run literally, each exchange atomic at the master in the trace's apply
    order, with the same minibatches: the same center and worker variables, bit for bit."""
    p, tau, K, lr, alpha = 3, 3, 120, 0.05, 0.2
    trace = periodic_trace(p, tau, K).used()
    assert trace.staleness.max() >= 2  # exchanges really interleave
    alg = EASGD(lr=lr, local_steps=tau, alpha=alpha, momentum=momentum, batch_size=8)
    res = replay(trace, alg, lsq, np.zeros(lsq.dim), SEED)

    draws = draws_of(alg, lsq)
    c = np.zeros(lsq.dim)
    xi = {w: c for w in range(p)}        # x^i after its last exchange
    before = {w: c for w in range(p)}    # x^i just before its last exchange (where the next gradient is taken)
    v = {w: np.zeros(lsq.dim) for w in range(p)}
    for w, step in zip(trace.worker.tolist(), trace.step.tolist()):
        y, vw = xi[w], v[w]
        for h, batch in enumerate(draws(w, step)):
            point = before[w] if h == 0 else y
            vw = momentum * vw - lr * lsq.grad(point + momentum * vw, batch)
            y = y + vw
        v[w] = vw
        d = alpha * (y - c)                 # the exchange, atomic at the master
        before[w], xi[w], c = y, y - d, c + d
    assert np.array_equal(res.x, c)
    for w in range(p):
        assert np.array_equal(res.worker_states[w][0], before[w])


def test_synchronous_easgd_follows_the_papers_equations(noisy_quad):
    """x^i_{t+1} = x^i_t - eta g^i_t - alpha (x^i_t - x~_t),  x~_{t+1} = x~_t + alpha sum_i (x^i_t - x~_t)
    (Zhang et al. eq. 5-8), with the simulator's center at version k equal to the paper's x~_{k+1}."""
    p, K, lr, alpha = 4, 60, 0.1, 0.15
    q = noisy_quad
    alg = EASGD(lr=lr, local_steps=1, alpha=alpha, batch_size=1)
    res = replay(periodic_trace(p, 1, K, synchronous=True), alg, q, np.ones(q.dim), SEED)
    draws = draws_of(alg, q)
    x = [np.ones(q.dim) for _ in range(p)]
    c = np.ones(q.dim)
    for t in range(K + 1):
        new_x = [x[i] - lr * q.grad(x[i], draws(i, t)[0]) - alpha * (x[i] - c) if t < K else x[i] for i in range(p)]
        c = c + alpha * sum(xi - c for xi in x)
        x = new_x
    np.testing.assert_allclose(res.x, c, rtol=1e-12, atol=1e-12)
    for i in range(p):
        np.testing.assert_allclose(res.worker_states[i][0], x[i], rtol=1e-12, atol=1e-12)


def test_eamsgd_local_steps_are_nesterov_momentum(lsq):
    """One worker, alpha = 0: the worker runs Nesterov SGD, v <- d v - lr g(x + d v), x <- x + v."""
    K, tau, lr, delta = 40, 4, 0.02, 0.9
    alg = EAMSGD(lr=lr, local_steps=tau, alpha=0.0, momentum=delta, batch_size=8)
    res = replay(periodic_trace(1, tau, K), alg, lsq, np.zeros(lsq.dim), SEED)
    draws = draws_of(alg, lsq)
    x, v = np.zeros(lsq.dim), np.zeros(lsq.dim)
    for step in range(K):
        for batch in draws(0, step):
            v = delta * v - lr * lsq.grad(x + delta * v, batch)
            x = x + v
    np.testing.assert_allclose(res.worker_states[0][0], x, rtol=1e-13, atol=1e-13)
    assert EAMSGD(lr=0.1).momentum == 0.99 and EASGD(lr=0.1).momentum == 0.0


def test_downpour_pushes_the_sum_of_accumulated_changes(lsq):
    K, tau = 50, 2
    x0 = np.zeros(lsq.dim)
    async_trace = periodic_trace(3, tau, K)
    down = replay(async_trace, Downpour(lr=0.05, local_steps=tau), lsq, x0, SEED)
    local = replay(async_trace, LocalSGD(lr=0.05, local_steps=tau), lsq, x0, SEED)
    assert np.array_equal(down.x, local.x)  # one push per update: the same rule
    sync_trace = periodic_trace(3, tau, K, synchronous=True)
    down = replay(sync_trace, Downpour(lr=0.05, local_steps=tau), lsq, x0, SEED)
    alg = Downpour(lr=0.05, local_steps=tau)
    draws = draws_of(alg, lsq)
    x = x0
    for k in range(K):
        change = []
        for w in range(3):
            y = x
            for batch in draws(w, k):
                y = y - 0.05 * lsq.grad(y, batch)
            change.append(y - x)
        x = x + (change[0] + change[1] + change[2])
    np.testing.assert_allclose(down.x, x, rtol=1e-12, atol=1e-12)


def test_easgd_scenarios_take_the_period_from_the_protocol_and_alpha_from_beta(root):
    base = root / "scenarios" / "protocols" / "periodic.yaml"
    s = asyncsim.load_scenario(base, overrides=["algorithm={kind: easgd, lr: 0.01}", "run.updates=40"])
    assert s.algorithm.local_steps == 4
    summary = asyncsim.run(s).summary
    assert summary["algorithm_resolved"]["alpha"] == pytest.approx(0.9 / (8 * 4))
    with pytest.raises(ScenarioError, match="protocol.kind must be one of periodic for algorithm easgd, got 'async'"):
        asyncsim.load_scenario(base, overrides=["algorithm={kind: easgd, lr: 0.01}", "protocol={kind: async}"])
    with pytest.raises(ScenarioError, match=r"algorithm.alpha must be in \[0, 1\], got 1.5"):
        asyncsim.load_scenario(base, overrides=["algorithm={kind: eamsgd, lr: 0.01, alpha: 1.5}"])


def test_easgd_radius_limits():
    assert easgd_radius(0.5, 0.0, 3) == pytest.approx(1.0)  # alpha = 0: the center is frozen (eigenvalue 1)
    assert easgd_radius(2.5, 0.0, 1) == pytest.approx(1.5)  # ... and the worker is plain GD, |1 - eta h|
    assert easgd_radius(0.5, 0.1, 2) < 1 < easgd_radius(0.5, 0.9, 4)  # beta = p alpha > 2 diverges


def test_easgd_stability_map_agrees_with_the_spectral_radius():
    """Divergence observed in the simulator agrees with radius > 1 wherever |radius - 1| > 1e-3."""
    frame = easgd_map(np.linspace(0.02, 2.5, 30), np.linspace(0.02, 0.98, 12), workers=(1, 2, 4), rounds=1000)
    agree, compared = agreement(frame, 1e-3)
    assert compared >= 0.98 * len(frame) and agree == compared
    assert 0.2 < frame["diverged"].mean() < 0.8  # both regions are on the grid
    assert ((frame["radius"] - 1).abs() < 0.02).sum() >= 5  # and points close to the boundary
