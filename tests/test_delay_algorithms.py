"""Delay-aware SGD rules (asysg, delay_adaptive, koloskova) and the protocol-bound methods, against hand-written
loops over the same trace; the theory helpers they are judged by."""

import math

import numpy as np
import pytest

import asyncsim
from asyncsim import theory
from asyncsim.algorithms import ApplyInfo, AsySG, DelayAdaptive, Koloskova
from asyncsim.params import ParamError, ScenarioError
from asyncsim.problems.least_squares import LeastSquares
from asyncsim.problems.quadratic import QuadraticProblem
from asyncsim.replay import replay
from asyncsim.rng import Stream, generator
from asyncsim.timing.cluster import Cluster, Straggler
from asyncsim.timing.laws import Exponential
from asyncsim.timing.protocols import Async, simulate


def info(*staleness):
    return ApplyInfo(0, tuple(range(len(staleness))), staleness)


def test_delay_adaptive_step_is_eta_n_over_max_n_tau():
    rule = DelayAdaptive(lr=0.3).bind(None, 4)
    assert rule.workers == 4
    assert [rule.step(info(t)) for t in (0, 3, 4, 8, 40)] == [0.3, 0.3, 0.3, 0.15, 0.03]
    with pytest.raises(ParamError, match="^workers must be given"):
        DelayAdaptive(lr=0.3).bind(None, None)


def test_koloskova_step_scales_or_drops_beyond_tau_c():
    problem = QuadraticProblem(np.diag([2.0, 1.0]), np.zeros(2), 0.0)  # L = 2
    scale = Koloskova(lr=0.1).bind(problem, 3)
    assert (scale.tau_c, scale.L) == (3, 2.0)
    assert scale.step(info(3)) == 0.1  # tau <= tau_C: eta
    assert scale.step(info(4)) == pytest.approx(1 / 32)  # min(eta, 1 / (4 L tau)) = 1/32
    assert Koloskova(lr=0.01).bind(problem, 3).step(info(4)) == 0.01  # eta is already smaller
    drop = Koloskova(lr=0.1, stale="drop").bind(problem, 3)
    x = np.array([1.0, 2.0])
    assert drop.apply(x, [np.array([5.0, 5.0])], info(7)) is x  # dropped: the parameters stay
    assert np.array_equal(drop.apply(x, [np.array([5.0, 5.0])], info(2)), x - 0.5)
    with pytest.raises(ParamError, match="^stale must be one of scale, drop, got 'skip'"):
        Koloskova(lr=0.1, stale="skip")


def test_asysg_sums_the_m_per_sample_gradients():
    problem = LeastSquares(n_samples=50, dim=4).build(generator(0, Stream.DATA, 0, 0))
    x = np.linspace(-1, 1, 4)
    batch = np.array([3, 7, 7, 20])
    rule = AsySG(lr=0.01, batch_size=4)
    by_hand = x - 0.01 * sum(problem.grad(x, np.array([i])) for i in batch)
    got = rule.apply(x, [rule.local(x, None, problem, batch)[0]], info(0))
    np.testing.assert_allclose(got, by_hand, rtol=0, atol=1e-14)


def hand_loop(trace, problem, x0, step):
    """x_{k+1} = x_k - step(tau_k) grad f(x_{k - tau_k}), keeping every version (the definition)."""
    xs = [x0]
    for k in range(trace.n_updates):
        r = int(trace.read_version[k])
        xs.append(xs[-1] - step(int(trace.staleness[k])) * problem.grad(xs[r]))
    return xs[-1]


@pytest.mark.parametrize("rule, step", [
    (DelayAdaptive(lr=0.05, batch_size=1), lambda t: 0.05 * 4 / max(4, t)),
    (Koloskova(lr=0.05, batch_size=1, stale="drop"), lambda t: 0.05 if t <= 4 else 0.0),
    (Koloskova(lr=0.05, batch_size=1), lambda t: 0.05 if t <= 4 else min(0.05, 1 / (4 * 1.0 * t))),
])
def test_replay_with_a_straggler_matches_the_definition(rule, step):
    cluster = Cluster(workers=4, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=0, slowdown=20.0),))
    trace = simulate(cluster, Async(), 400, seed=3)
    assert trace.staleness.max() > 20  # the straggler's gradients are very stale
    problem = QuadraticProblem(np.diag(np.linspace(0.1, 1.0, 5)), np.zeros(5), 0.0)
    x0 = np.ones(5)
    got = replay(trace, rule, problem, x0, seed=0, record_every=400).x
    np.testing.assert_allclose(got, hand_loop(trace, problem, x0, step), rtol=1e-12, atol=1e-15)
    assert not np.allclose(got, hand_loop(trace, problem, x0, lambda t: 0.05))  # the rule matters here


@pytest.mark.parametrize("algorithm, protocol", [("rennala_sgd", "{kind: async}"), ("ringmaster_asgd", "{kind: sync}"),
                                                 ("minibatch_sgd", "{kind: async}"), ("asysg", "{kind: sync}")])
def test_methods_refuse_protocols_they_are_not_defined_on(algorithm, protocol):
    with pytest.raises(ScenarioError, match=f"^protocol.kind must be one of .* for algorithm {algorithm}"):
        asyncsim.load_scenario(None, [f"algorithm={{kind: {algorithm}, lr: 0.01}}", f"protocol={protocol}"])


def test_rennala_and_ringmaster_run_end_to_end_from_a_scenario():
    for overrides in (["algorithm={kind: rennala_sgd, lr: 0.05}", "protocol={kind: rennala, batch: 4}"],
                      ["algorithm={kind: ringmaster_asgd, lr: 0.05}", "protocol={kind: ringmaster, max_staleness: 3}"]):
        result = asyncsim.run(asyncsim.load_scenario(None, overrides + ["run.updates=300", "run.record_every=300"]))
        assert result.metrics["suboptimality"].iloc[-1] < 0.1 * result.metrics["suboptimality"].iloc[0]
        used = result.trace.used()
        assert used.staleness.max() <= (0 if "rennala" in overrides[1] else 3)


def test_critical_step_is_where_the_characteristic_roots_leave_the_unit_disc():
    for tau in range(0, 30):
        h = theory.delayed_gd_critical_step(tau)
        assert theory.delayed_gd_radius(h * (1 - 1e-6), tau) < 1 < theory.delayed_gd_radius(h * (1 + 1e-6), tau)
    assert theory.delayed_gd_critical_step(0) == 2.0 and theory.delayed_gd_critical_step(1) == pytest.approx(1.0)


def test_optimal_time_against_a_brute_force_minimum_and_minibatch_for_equal_workers():
    taus = [3.0, 1.0, 10.0, 2.0, 50.0]
    L, delta, eps, s2 = 2.0, 5.0, 0.1, 4.0
    t = sorted(taus)
    brute = min((m / sum(1 / v for v in t[:m])) * (L * delta / eps) * (1 + s2 / (m * eps)) for m in range(1, 6))
    value, m = theory.optimal_time(taus, L, delta, eps, s2)
    assert value == pytest.approx(brute, rel=1e-12) and m == 4  # the 50 s worker is not worth waiting for
    same = theory.optimal_time([2.0] * 5, L, delta, eps, s2)
    assert same == (pytest.approx(theory.minibatch_sgd_time([2.0] * 5, L, delta, eps, s2), rel=1e-12), 5)
    assert theory.minibatch_sgd_time(taus, L, delta, eps, s2) > 10 * value


def test_heavy_ball_with_one_worker_is_gradient_descent():
    grad = lambda y: np.array([2.0, 0.5]) * y  # noqa: E731
    y = theory.heavy_ball_trajectory(grad, np.ones(2), 0.1, 1, 20)
    np.testing.assert_allclose(y[-1], (1 - 0.1 * np.array([2.0, 0.5])) ** 20, rtol=1e-12)
    y4 = theory.heavy_ball_trajectory(grad, np.ones(2), 0.1, 4, 3)
    np.testing.assert_allclose(y4[2], y4[1] + 0.75 * (y4[1] - y4[0]) - 0.025 * grad(y4[1]))


def test_finite_k_staleness_identity_is_exact_on_a_straggling_cluster():
    cluster = Cluster(workers=6, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=50.0),))
    trace = simulate(cluster, Async(), 3000, seed=1)
    K = trace.n_updates
    last = np.array([trace.update[trace.worker == w].max() for w in range(6)])
    assert theory.async_mean_staleness(6, K - 1 - last, K) == pytest.approx(trace.staleness.mean(), abs=1e-12)
    assert abs(trace.staleness.mean() - 5) > 0.01  # the finite-K correction is visible here
    assert theory.asysg_linear_speedup_workers(16384) == 32.0
    assert math.isclose(theory.asysg_linear_speedup_workers(100, c=1.0), 10.0)


def test_readme_documents_every_new_algorithm_kind():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for name in ("asysg", "delay_adaptive", "koloskova", "rennala_sgd", "ringmaster_asgd", "minibatch_sgd"):
        assert f"| `{name}` |" in readme, name
