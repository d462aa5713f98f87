"""Asynchronous coordinate descent (asyscd), gradient descent (gd) and the box projection, against plain loops."""

from dataclasses import dataclass

import numpy as np
import pytest

from asyncsim.algorithms import GD, SGD, AsySCD, BlockGrad
from asyncsim.params import ParamError
from asyncsim.problems import Quadratic, StrictSaddle
from asyncsim.replay import replay
from asyncsim.rng import BLOCK, Stream, generator
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.imported import delay_trace
from asyncsim.timing.laws import Exponential
from asyncsim.timing.protocols import Async

SEED = 3


@pytest.fixture(scope="module")
def quad():
    """1/2 (x - x*)^T H (x - x*) in dim 6, x* ~ N(0, I) with negative entries (for the projection tests)."""
    p = Quadratic(dim=6, mu=0.2, L=1.0).build(generator(SEED, Stream.DATA))
    assert (p.x_star < 0).any() and (p.x_star > 0).any()
    return p


def serial(K):
    """One worker, no delay: update k reads version k."""
    return delay_trace(np.zeros(K, dtype=int))


def test_cyclic_coordinate_descent_without_delay_is_a_gauss_seidel_loop_bit_for_bit(quad):
    K, lr, d = 600, 0.9, quad.dim
    res = replay(serial(K), AsySCD(lr=lr, choice="cyclic"), quad, np.zeros(d), SEED, record_every=100)
    x = np.zeros(d)
    for s in range(K):
        i = s % d
        x[i] = x[i] - lr * quad.grad(x)[i]
    assert np.array_equal(res.x, x)
    assert np.linalg.norm(res.x - quad.x_star) < 1e-8
    assert res.metrics["suboptimality"].iloc[-1] < 1e-15
    assert res.algorithm.blocks == d  # blocks: None means one block per coordinate


def test_random_blocks_come_from_the_algorithm_stream(quad):
    K, lr, d = 300, 0.9, quad.dim
    alg = AsySCD(lr=lr)
    res = replay(serial(K), alg, quad, np.zeros(d), SEED)
    drawn = generator(SEED, Stream.ALGORITHM, 0, 0).integers(0, d, BLOCK).tolist()
    drawn += generator(SEED, Stream.ALGORITHM, 0, 1).integers(0, d, BLOCK).tolist()
    x = np.zeros(d)
    for s in range(K):
        i = drawn[s]
        x[i] = x[i] - lr * quad.grad(x)[i]
    assert np.array_equal(res.x, x)
    assert len(set(drawn[:K])) == d and drawn[:d] != list(range(d))  # really random, not cyclic
    again = replay(serial(K), alg, quad, np.zeros(d), SEED)
    other = replay(serial(K), alg, quad, np.zeros(d), SEED + 1)
    assert np.array_equal(again.x, res.x)
    assert not np.array_equal(other.x, res.x)


def test_cyclic_blocks_equal_to_workers_give_each_worker_its_own_chunk():
    problem = StrictSaddle(dim=10).build(generator(SEED, Stream.DATA))
    alg = AsySCD(lr=0.01, blocks=4, choice="cyclic").bind(problem)
    _, cursors = alg.init(np.zeros(10), 4)
    x = np.linspace(-1.0, 1.0, 10)
    edges = [0, 2, 5, 7, 10]
    for w, cursor in enumerate(cursors):
        for _ in range(3):
            msg, cursor = alg.local(x, cursor, problem, alg.draw(problem, np.random.default_rng(0), 1)[0])
            assert isinstance(msg, BlockGrad) and (msg.block, msg.start) == (w, edges[w])
            assert np.array_equal(msg.values, problem.grad(x)[edges[w]:edges[w + 1]])  # sparse: the block only
    # three workers over four blocks: worker w's step s takes block (w + 3 s) mod 4
    alg3 = AsySCD(lr=0.01, blocks=4, choice="cyclic").bind(problem)
    _, cursors = alg3.init(np.zeros(10), 3)
    cursor, seen = cursors[1], []
    for _ in range(4):
        msg, cursor = alg3.local(x, cursor, problem, 0)
        seen.append(msg.block)
    assert seen == [1, 0, 3, 2]


def test_partial_gradient_messages_have_the_block_size_under_async_delays():
    problem = StrictSaddle(dim=10, R0=0.5).build(generator(SEED, Stream.DATA))

    @dataclass(frozen=True, kw_only=True)
    class Sizes(AsySCD):
        def apply(self, server_state, messages, info):
            (m,) = messages
            edges = [0, 3, 6, 10]
            assert len(m.values) == edges[m.block + 1] - edges[m.block] and m.start == edges[m.block]
            return super().apply(server_state, messages, info)

    trace = simulate(Cluster(workers=3, compute=Exponential(mean=1.0)), Async(), 200, SEED)
    res = replay(trace, Sizes(gamma=0.5, blocks=3), problem, np.full(10, 0.3), SEED)
    assert trace.staleness.max() >= 2 and np.isfinite(res.x).all()


@dataclass(frozen=True, kw_only=True)
class Lowest(AsySCD):
    """Records min(x) of every version, to check that every iterate is projected."""

    def metrics(self, server_state):
        return {"min_x": float(server_state.min())}


@dataclass(frozen=True, kw_only=True)
class LowestGD(GD):
    def metrics(self, server_state):
        return {"min_x": float(server_state.min())}


@dataclass(frozen=True, kw_only=True)
class LowestSGD(SGD):
    def metrics(self, server_state):
        return {"min_x": float(server_state.min())}


def kkt_nonnegative(problem, x, tol):
    """x minimizes f over x >= 0: grad_i f = 0 where x_i > 0 and grad_i f >= 0 where x_i = 0."""
    g = problem.grad(x)
    free = x > 0
    return (x >= 0).all() and np.abs(g[free]).max() < tol and (g[~free] > -tol).all()


@pytest.mark.parametrize("algorithm", [Lowest(lr=0.9, lower=0.0), Lowest(lr=0.9, lower=0.0, choice="cyclic"),
                                       LowestGD(lr=0.9, lower=0.0), LowestSGD(lr=0.9, lower=0.0)], ids=repr)
def test_projection_keeps_every_iterate_in_the_box_and_finds_the_constrained_minimum(quad, algorithm):
    trace = simulate(Cluster(workers=2, compute=Exponential(mean=1.0)), Async(), 3000, SEED)
    res = replay(trace, algorithm, quad, np.ones(quad.dim), SEED)
    assert len(res.metrics) == 3001 and (res.metrics["min_x"] >= 0).all()
    assert (res.x == 0).any()  # some constraint is active: the projection did something
    assert kkt_nonnegative(quad, res.x, 1e-8)


def test_projection_of_the_start_and_an_upper_bound(quad):
    res = replay(serial(1), Lowest(lr=0.5, lower=-0.25, upper=0.25), quad, np.array([-3.0, 3, 0, 0, 0, 0]), SEED)
    assert res.metrics["min_x"].iloc[0] == -0.25  # version 0 is P(x0)
    assert (np.abs(res.x) <= 0.25).all()


def test_gd_is_delayed_full_gradient_descent_bit_for_bit(quad):
    K, lr, tau = 200, 0.5, 2
    res = replay(delay_trace(np.minimum(np.arange(K), tau)), GD(lr=lr), quad, np.zeros(quad.dim), SEED)
    versions = [np.zeros(quad.dim)]
    for k in range(K):
        versions.append(versions[-1] - lr * quad.grad(versions[max(k - tau, 0)]))
    assert np.array_equal(res.x, versions[-1])
    assert np.linalg.norm(res.x - quad.x_star) < 1e-6


def test_gamma_is_resolved_from_the_block_constants():
    problem = StrictSaddle(dim=6, L_pos=4.0, R0=0.5).build(generator(SEED, Stream.DATA))
    bound = AsySCD(gamma=0.5, blocks=3).bind(problem)
    Ls = problem.block_smoothness(np.array([0, 2, 4, 6]))
    assert bound.lr == 0.5 / Ls.max() and bound.gamma is None and bound.blocks == 3


def test_parameters_are_validated(quad):
    with pytest.raises(ParamError, match=r"^gamma must be in \(0, 2\) \(a coordinate step gamma / L_i with gamma "
                                         r">= 2 is not a descent step\), got 2.0$"):
        AsySCD(gamma=2.0)
    with pytest.raises(ParamError, match=r"^gamma needs the block Lipschitz constants L_i, which QuadraticProblem "
                                         r"does not provide \(block_smoothness\); set lr instead, got 1.0$"):
        AsySCD(gamma=1.0).bind(quad)
    with pytest.raises(ParamError, match="^lr must be set when gamma is not"):
        AsySCD()
    with pytest.raises(ParamError, match="^lr must not be set together with gamma"):
        AsySCD(gamma=1.0, lr=0.1)
    with pytest.raises(ParamError, match=r"^choice must be one of random, cyclic, got 'greedy'$"):
        AsySCD(lr=0.1, choice="greedy")
    with pytest.raises(ParamError, match=r"^blocks must be <= the problem's dim \(6\), got 7$"):
        AsySCD(lr=0.1, blocks=7).bind(quad)
    for cls in (AsySCD, GD, SGD):
        with pytest.raises(ParamError, match=r"^upper must be > lower \(1.0\), got 0.0$"):
            cls(lr=0.1, lower=1.0, upper=0.0)


def test_update_rules_do_not_mutate_read_only_inputs(quad):
    x = np.arange(6.0)
    x.flags.writeable = False
    for alg in (AsySCD(lr=0.5, lower=0.0, upper=2.0).bind(quad), GD(lr=0.5, lower=0.0)):
        state, workers = alg.init(x, 2)
        msg, _ = alg.local(x, workers[0], quad, alg.draw(quad, np.random.default_rng(0), 1)[0])
        new = alg.apply(state, [msg], None)
        assert np.array_equal(x, np.arange(6.0)) and not np.array_equal(new, state)
