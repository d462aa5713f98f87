"""Closed-form predictions against independent truth: Monte Carlo, brute force and hand-computed values."""

import heapq
import math

import numpy as np
import pytest

from asyncsim import theory
from asyncsim.params import ParamError
from asyncsim.timing import laws

N_MC = 200_000


def mc_order_statistics(worker_laws, seed):
    """Monte Carlo means of all order statistics (column k-1 = E[X_(k)])."""
    rng = np.random.default_rng(seed)
    x = np.stack([law.sample(rng, N_MC) for law in worker_laws], axis=1)
    return np.sort(x, axis=1).mean(axis=0)


MIX = laws.Mixture(components=(laws.Exponential(mean=1.0), laws.Constant(value=0.5), laws.Uniform(low=1.0, high=3.0)),
                   weights=(0.5, 0.2, 0.3))
BIMODAL = laws.Bimodal(base=laws.ShiftedExponential(shift=0.2, scale=0.5), p=0.1, slowdown=5.0)
HETEROGENEOUS = [MIX, BIMODAL, laws.Empirical(values=(0.1, 0.4, 0.4, 1.5)), laws.Gamma(shape=2.5, scale=0.4),
                 laws.LogNormal(mu=-0.5, sigma=0.8), laws.Pareto(alpha=3.0, scale=0.5),
                 laws.Mixture(components=(BIMODAL, laws.Pareto(alpha=4.0, scale=1.0)), weights=(0.6, 0.4))]


@pytest.mark.parametrize("law", [
    laws.Exponential(mean=2.0),
    laws.ShiftedExponential(shift=0.5, scale=1.5),
    laws.Pareto(alpha=3.0, scale=1.0),
    laws.Gamma(shape=2.5, scale=0.4),
    laws.LogNormal(mu=-0.5, sigma=0.8),
    MIX,
    BIMODAL,
], ids=lambda l: type(l).__name__)
def test_order_statistics_of_identical_laws_match_monte_carlo(law):
    n = 8
    mc = mc_order_statistics([law] * n, seed=11)
    for k in (1, 2, 5, 8):
        assert theory.order_statistic_mean(law, k, n=n) == pytest.approx(mc[k - 1], rel=0.01)
        assert theory.order_statistic_mean([law] * n, k) == theory.order_statistic_mean(law, k, n=n)


def test_order_statistics_of_heterogeneous_laws_match_monte_carlo():
    mc = mc_order_statistics(HETEROGENEOUS, seed=12)
    predicted = [theory.order_statistic_mean(HETEROGENEOUS, k) for k in range(1, len(HETEROGENEOUS) + 1)]
    np.testing.assert_allclose(predicted, mc, rtol=0.01)
    assert theory.max_mean(HETEROGENEOUS) == predicted[-1]


@pytest.mark.parametrize("law, n", [
    (laws.Exponential(mean=2.0), 8),
    (laws.Exponential(mean=1e-3), 1000),
    (laws.ShiftedExponential(shift=0.5, scale=1.5), 10),
    (laws.Pareto(alpha=3.0, scale=1.0), 8),
    (laws.Pareto(alpha=0.55, scale=1.0), 2),  # k = 1: n alpha = 1.1, barely finite
], ids=lambda v: type(v).__name__ if isinstance(v, laws.DelayLaw) else str(v))
def test_closed_forms_agree_with_the_numeric_path(law, n):
    for k in sorted({1, (n + 1) // 2, n}):
        closed = theory.order_statistic_mean(law, k, n=n)
        if math.isinf(closed):
            assert theory.order_statistic_mean(law, k, n=n, method="numeric") == math.inf
            continue
        assert theory.order_statistic_mean(law, k, n=n, method="numeric") == pytest.approx(closed, rel=1e-8)


def test_closed_forms_by_hand():
    # exponential: mean * (1/n + ... + 1/(n-k+1))
    assert theory.order_statistic_mean(laws.Exponential(mean=2.0), 1, n=4) == pytest.approx(0.5)
    assert theory.max_mean(laws.Exponential(mean=1.0), n=3) == pytest.approx(1 + 1 / 2 + 1 / 3)
    assert theory.order_statistic_mean(laws.ShiftedExponential(shift=1.0, scale=2.0), 2, n=3) == pytest.approx(
        1.0 + 2.0 * (1 / 3 + 1 / 2))
    # Pareto(alpha, x_m): the minimum of n is Pareto(n alpha, x_m), mean n alpha x_m / (n alpha - 1)
    assert theory.order_statistic_mean(laws.Pareto(alpha=2.0, scale=3.0), 1, n=3) == pytest.approx(6 * 3 / 5)
    assert theory.order_statistic_mean(laws.Pareto(alpha=0.5, scale=1.0), 3, n=3) == math.inf
    assert theory.order_statistic_mean(laws.Pareto(alpha=0.5, scale=1.0), 2, n=3) == math.inf  # 2 * 0.5 <= 1
    assert math.isfinite(theory.order_statistic_mean(laws.Pareto(alpha=0.5, scale=1.0), 1, n=3))


def test_infinite_means_of_heterogeneous_heavy_tails():
    heavy = [laws.Pareto(alpha=0.5, scale=1.0), laws.Exponential(mean=1.0), laws.Exponential(mean=2.0)]
    assert theory.max_mean(heavy) == math.inf
    assert math.isfinite(theory.order_statistic_mean(heavy, 2))
    # X_(1) <= min of the two exponentials, i.e. <= an Exp with mean 2/3
    mc = mc_order_statistics(heavy, seed=5)
    assert theory.order_statistic_mean(heavy, 1) == pytest.approx(mc[0], rel=0.01)
    assert theory.order_statistic_mean(heavy, 2) == pytest.approx(mc[1], rel=0.01)
    mixed = laws.Mixture(components=(laws.Pareto(alpha=0.9, scale=1.0), laws.Constant(value=1.0)), weights=(0.1, 0.9))
    assert theory.max_mean([mixed, laws.Exponential(mean=1.0)]) == math.inf
    assert math.isfinite(theory.order_statistic_mean([mixed, mixed], 1))  # tail index 0.9 + 0.9 > 1
    wrapped = laws.Scaled(base=laws.Pareto(alpha=0.5, scale=1.0), factor=2.0)
    assert theory.max_mean([wrapped, laws.Exponential(mean=1.0)]) == math.inf


def test_discrete_laws_are_integrated_exactly():
    emp = laws.Empirical(values=(0.1, 0.4, 0.4, 1.5))
    worker_laws = [laws.Constant(value=1.0), laws.Constant(value=2.0), emp, emp]
    values = [(1.0, 2.0, a, b) for a in emp.values for b in emp.values]
    for k in range(1, 5):
        exact = np.mean([sorted(v)[k - 1] for v in values])
        assert theory.order_statistic_mean(worker_laws, k) == pytest.approx(exact, rel=1e-12)
    assert theory.max_mean(laws.Constant(value=3.0), n=5) == pytest.approx(3.0, rel=1e-12)


def test_sync_round_time_and_speedup_by_hand():
    h8 = sum(1 / j for j in range(1, 9))
    assert theory.sync_round_time(laws.Exponential(mean=1.0), 0.1, n=8) == pytest.approx(h8 + 0.1)
    # identical exponential workers, no latency: async does n / E[X], sync n / E[max] = n / H_n
    assert theory.sync_vs_async_speedup(laws.Exponential(mean=1.0), n=8) == pytest.approx(h8)
    assert theory.sync_vs_async_speedup(laws.Exponential(mean=1.0), 0.5, n=8) == pytest.approx(
        (8 / 1.5) / (8 / (h8 + 0.5)))
    # constant compute times: one straggler sets the barrier
    consts = [laws.Constant(value=1.0), laws.Constant(value=1.0), laws.Constant(value=4.0)]
    assert theory.sync_round_time(consts, 1.0) == pytest.approx(5.0)
    assert theory.sync_vs_async_speedup(consts, 1.0) == pytest.approx((1 / 2 + 1 / 2 + 1 / 5) / (3 / 5))


def test_async_throughput_and_shares():
    assert theory.async_throughput([1.0, 2.0, 4.0]) == pytest.approx(1.75)
    np.testing.assert_allclose(theory.worker_shares([1.0, 2.0, 4.0]), [4 / 7, 2 / 7, 1 / 7])
    assert theory.async_throughput([1.0, math.inf]) == 1.0
    # renewal check: workers with uniform cycles of means 1, 2, 4 over a long horizon
    rng = np.random.default_rng(3)
    horizon = 20_000.0
    counts = [np.searchsorted(np.cumsum(rng.uniform(0.5 * m, 1.5 * m, int(2 * horizon / m))), horizon)
              for m in (1.0, 2.0, 4.0)]
    assert sum(counts) / horizon == pytest.approx(1.75, rel=0.01)
    np.testing.assert_allclose(np.asarray(counts) / sum(counts), [4 / 7, 2 / 7, 1 / 7], atol=0.005)


def simulated_staleness(n, updates, seed):
    """Staleness of every update of an async parameter server with zero latency, simulated directly: each worker
    computes back to back (exponential times), its next read is the version right after its own write."""
    rng = np.random.default_rng(seed)
    per_worker = updates // n + 50
    times = np.cumsum(rng.exponential(1.0, (n, per_worker)), axis=1)
    order = np.argsort(times.ravel(), kind="stable")[:updates]
    workers = order // per_worker
    last = np.full(n, -1)
    stale = np.empty(updates, dtype=np.int64)
    for k, w in enumerate(workers):
        stale[k] = k - (last[w] + 1)
        last[w] = k
    return stale


@pytest.mark.parametrize("n", [1, 2, 5])
def test_staleness_law(n):
    j = np.arange(2000)
    pmf = theory.staleness_pmf(n, j)
    assert pmf.sum() == pytest.approx(1.0)
    assert (j * pmf).sum() == pytest.approx(n - 1)
    np.testing.assert_allclose(theory.staleness_cdf(n, j), np.cumsum(pmf), atol=1e-12)
    stale = simulated_staleness(n, 100_000, seed=n)[1000:]
    observed = np.bincount(stale, minlength=20)[:20] / stale.size
    np.testing.assert_allclose(observed, pmf[:20], atol=0.005)
    assert stale.mean() == pytest.approx(n - 1, abs=0.05)


def test_staleness_pmf_and_cdf_off_the_support():
    np.testing.assert_allclose(theory.staleness_pmf(4, [0, 1, 2]), [0.25, 0.1875, 0.140625])
    np.testing.assert_array_equal(theory.staleness_pmf(4, [-1, 1.5]), [0.0, 0.0])
    np.testing.assert_allclose(theory.staleness_cdf(4, [-1, 0, 1.5, np.inf]), [0.0, 0.25, 0.4375, 1.0])
    assert theory.staleness_pmf(1, 0) == 1.0 and theory.staleness_cdf(1, 3) == 1.0


def test_p_slow_round():
    assert theory.p_slow_round(0.1, 2) == pytest.approx(0.19)
    assert theory.p_slow_round(0.0, 10) == 0.0
    assert theory.p_slow_round(1.0, 3) == 1.0
    assert theory.p_slow_round(1e-12, 1000) == pytest.approx(1e-9, rel=1e-6)
    law = laws.Bimodal(base=laws.Constant(value=1.0), p=0.05, slowdown=10.0)
    x = law.sample(np.random.default_rng(0), 8 * 50_000).reshape(-1, 8)
    assert np.mean(x.max(axis=1) > 1.0) == pytest.approx(theory.p_slow_round(0.05, 8), abs=0.01)


def test_allreduce_time_by_hand():
    # 2 (n-1) (alpha + m / (n beta)) = 6 (1 ms + 4 MB / (4 * 1 GB/s)) = 6 * 2 ms
    assert theory.allreduce_time(4, 1e-3, 4e6, 1e9) == pytest.approx(0.012)
    assert theory.allreduce_time(4, 1e-3, 4e6) == pytest.approx(0.006)
    assert theory.allreduce_time(4, 1e-3, 4e6, None) == pytest.approx(0.006)
    assert theory.allreduce_time(1, 1e-3, 4e6, 1e9) == 0.0
    assert theory.allreduce_time(8, 0.0, 8e9, 1e10) == pytest.approx(2 * 7 * 0.1)


def rennala_brute_force(taus, S):
    """Smallest integer t with sum_i floor(t / tau_i) >= S (integer taus: the answer is an integer)."""
    t = 0
    while sum(t // tau for tau in taus) < S:
        t += 1
    return t


def rennala_merge(taus, S):
    """The S-th smallest of {j * tau_i : j >= 1} by merging the workers' completion times."""
    heap = [(tau, 1, tau) for tau in taus]
    heapq.heapify(heap)
    for _ in range(S):
        t, j, tau = heapq.heappop(heap)
        heapq.heappush(heap, ((j + 1) * tau, j + 1, tau))
    return t


def test_rennala_collection_time():
    assert theory.rennala_collection_time((1, 2, 3), 5) == 3.0  # 3 + 1 + 1 = 5 gradients at t = 3
    assert theory.rennala_collection_time((1, 2, 3), 6) == 4.0  # 4 + 2 + 1 = 7 >= 6 and 3 + 1 + 1 < 6
    assert theory.rennala_collection_time([2.0], 4) == 8.0
    rng = np.random.default_rng(0)
    for _ in range(200):
        taus = [int(v) for v in rng.integers(1, 10, rng.integers(1, 6))]
        S = int(rng.integers(1, 40))
        assert theory.rennala_collection_time(taus, S) == rennala_brute_force(taus, S)
    for _ in range(200):
        taus = list(rng.uniform(0.01, 3.0, rng.integers(1, 8)))
        S = int(rng.integers(1, 200))
        assert theory.rennala_collection_time(taus, S) == rennala_merge(taus, S)
    # the 9th gradient of three workers at 0.1 s completes at 3 * 0.1 (= 0.30000000000000004 in floating point)
    assert theory.rennala_collection_time([0.1, 0.1, 0.1], 9) == 3 * 0.1
    assert theory.rennala_collection_time([0.1, 0.3], 10**7) == pytest.approx(0.75e6)


@pytest.mark.parametrize("call, message", [
    (lambda: theory.order_statistic_mean(laws.Exponential(mean=1.0), 1),
     "n must be an integer >= 1 when laws is a single law, got None"),
    (lambda: theory.order_statistic_mean(laws.Exponential(mean=1.0), 0, n=3), "k must be an integer in [1, 3], got 0"),
    (lambda: theory.order_statistic_mean([laws.Exponential(mean=1.0)] * 2, 3), "k must be an integer in [1, 2], got 3"),
    (lambda: theory.order_statistic_mean([laws.Exponential(mean=1.0)] * 2, 1, n=3),
     "n must be None or len(laws) (2), got 3"),
    (lambda: theory.order_statistic_mean([], 1), "laws must hold at least one law, got ()"),
    (lambda: theory.order_statistic_mean(laws.Exponential(mean=1.0), 1, n=2, method="exact"),
     "method must be 'auto' or 'numeric', got 'exact'"),
    (lambda: theory.sync_round_time(laws.Exponential(mean=1.0), -0.1, n=2), "latency must be finite and >= 0, got -0.1"),
    (lambda: theory.async_throughput([1.0, 0.0]), "means must all be > 0 (inf allowed), got [1.0, 0.0]"),
    (lambda: theory.staleness_pmf(0, [0]), "n must be an integer >= 1, got 0"),
    (lambda: theory.p_slow_round(1.5, 2), "p must be in [0, 1], got 1.5"),
    (lambda: theory.allreduce_time(4, 1e-3, 1e6, 0.0), "bandwidth must be > 0 or None (infinite), got 0.0"),
    (lambda: theory.allreduce_time(4, -1.0, 1e6), "alpha must be finite and >= 0, got -1.0"),
    (lambda: theory.rennala_collection_time([1.0, 0.0], 3), "taus must all be finite and > 0, got [1.0, 0.0]"),
    (lambda: theory.rennala_collection_time([1.0], 0), "S must be an integer >= 1, got 0"),
])
def test_bad_arguments_raise_naming_the_argument(call, message):
    with pytest.raises(ParamError) as err:
        call()
    assert str(err.value) == message


@pytest.mark.parametrize("n", [2, 16, 128, 1024])
def test_numeric_maximum_of_many_uniforms_matches_its_closed_form(n):
    # E[max of n U(a, b)] = a + (b - a) n / (n + 1); the survival function ends at the support edge b, which the
    # quadrature must not smear (it was 0.1% off at n = 128 before the integral was split at levels of P(max > x))
    assert theory.max_mean(laws.Uniform(low=0.5, high=1.5), n=n) == pytest.approx(0.5 + n / (n + 1), rel=1e-9)
