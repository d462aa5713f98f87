"""Coordination protocols against closed forms, invariants, independent reference schedules and hand-derived event
logs.  Closed forms are computed inline (not through asyncsim.theory) so that the simulator is checked against
independent arithmetic.  Every seed is fixed: each statistical tolerance was checked to hold at that seed with a
margin of a few standard errors, and a plausible bug (an off-by-one in a queue, a wrong tie rule, a missing
cancellation) moves the statistic by far more."""

import math
from heapq import heappop, heappush
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from asyncsim.params import ScenarioError
from asyncsim.timing import Cluster, Server, Straggler, simulate
from asyncsim.timing.cluster import Failures, Network, Transient
from asyncsim.timing.durations import Durations
from asyncsim.timing.imported import delay_trace
from asyncsim.timing.laws import Bimodal, Constant, Empirical, Exponential
from asyncsim.timing.protocols import (SSP, AllReduce, Async, Deadline, KOfN, Periodic, Rennala, Ringmaster, Sync,
                                       TraceFile)
from asyncsim.timing.trace import Status

APPLIED, DROPPED, CANCELLED, LOST = (int(s) for s in (Status.APPLIED, Status.DROPPED, Status.CANCELLED, Status.LOST))
COLUMNS = ("update", "worker", "step", "read_version", "round", "status", "t_read", "t_done", "t_arrive", "t_apply")
DELAYS = Path(__file__).resolve().parents[1] / "scenarios/data/BCD_sun_MNIST.csv"  # measured delays, shipped


def harmonic(n):
    return math.fsum(1.0 / i for i in range(1, n + 1))


def round_times(trace):
    """Durations of the updates: version k+1's time minus version k's."""
    return np.diff(trace.update_times())


def assert_same_trace(a, b):
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)


def rows(trace, cols):
    return [tuple(r) for r in zip(*(getattr(trace, c).tolist() for c in cols))]


def rel(x, target):
    return abs(x / target - 1.0)


# --------------------------------------------------------------------------------------------------- sync / async


def test_sync_round_time_is_the_harmonic_number():
    # E[max of n exponential(1)] = H_n: the classic cost of a barrier.
    n, rounds = 8, 40_000
    cluster = Cluster(workers=n, compute=Exponential(mean=1.0))
    trace = simulate(cluster, Sync(), rounds, seed=1, engine="fast")
    assert len(trace) == n * rounds and trace.applied.all() and np.all(trace.staleness == 0)
    assert rel(round_times(trace).mean(), harmonic(n)) < 0.01
    # exactly: every round closes at its last arrival (no latency, no service)
    last = trace.t_arrive.reshape(rounds, n).max(axis=1)
    np.testing.assert_array_equal(trace.t_apply.reshape(rounds, n)[:, 0], last)


def test_async_throughput_is_the_sum_of_worker_rates():
    speeds, mean, n_updates = (0.5, 1.0, 2.0, 3.0), 2.0, 400_000
    cluster = Cluster(workers=4, compute=Exponential(mean=mean), speeds=speeds)
    trace = simulate(cluster, Async(), n_updates, seed=1, engine="fast")
    assert rel(n_updates / trace.t_apply[-1], sum(speeds) / mean) < 0.01


@pytest.mark.parametrize("latency", [0.0, 0.25])
def test_async_worker_shares_with_deterministic_times(latency):
    # Worker i cycles every m_i = compute_i + uplink + downlink seconds, so it makes a share (1/m_i) / sum_j (1/m_j)
    # of the updates (up to one update per worker).
    speeds = (1.0, 2.0, 4.0, 0.5)
    cluster = Cluster(workers=4, compute=Constant(value=1.0), speeds=speeds, uplink=Constant(value=latency),
                      downlink=Constant(value=latency))
    n_updates = 10_000
    trace = simulate(cluster, Async(), n_updates, seed=0).validate()
    cycle = np.array([1.0 / s + 2 * latency for s in speeds])
    expected = (1 / cycle) / np.sum(1 / cycle)
    shares = np.bincount(trace.worker, minlength=4) / n_updates
    np.testing.assert_allclose(shares, expected, rtol=0.01)
    assert np.all(np.abs(shares * n_updates - expected * n_updates) <= 2)


def test_bimodal_probability_of_a_slow_round():
    # A round is slow (takes 10 s instead of 1 s) iff at least one of the n workers drew a slow time.
    n, p, rounds = 8, 0.05, 200_000
    cluster = Cluster(workers=n, compute=Bimodal(base=Constant(value=1.0), p=p, slowdown=10.0))
    trace = simulate(cluster, Sync(), rounds, seed=1, engine="fast")
    times = round_times(trace)
    slow = np.isclose(times, 10.0, rtol=1e-9)
    assert np.all(slow | np.isclose(times, 1.0, rtol=1e-9))
    assert rel(slow.mean(), 1 - (1 - p) ** n) < 0.01


def test_async_staleness_is_geometric_for_exponential_workers():
    # Memorylessness: after a worker's update k, each of the next completions is that worker's with probability
    # 1/n, so its staleness is geometric, P(tau = j) = (1/n)(1 - 1/n)^j, with mean n - 1.
    n, n_updates = 4, 100_000
    trace = simulate(Cluster(workers=n, compute=Exponential(mean=1.0)), Async(), n_updates, seed=1, engine="fast")
    tau = trace.staleness
    assert rel(tau.mean(), n - 1) < 0.01
    sample = tau[1000::10]  # past the start-up, thinned to weaken the dependence between neighbours
    bins = 20
    observed = np.bincount(np.minimum(sample, bins), minlength=bins + 1)
    pmf = (1 / n) * (1 - 1 / n) ** np.arange(bins)
    expected = len(sample) * np.append(pmf, 1 - pmf.sum())
    assert expected.min() > 5
    assert stats.chisquare(observed, expected).pvalue > 0.01
    # and a KS test: tau + U (U uniform on [0, 1), independent) has the continuous cdf
    # G(x) = P(tau < floor x) + P(tau = floor x)(x - floor x) exactly when tau has the geometric law
    def cdf(q):  # of tau + U when tau + 1 ~ Geometric(q) on {1, 2, ...}
        return lambda x: stats.geom(q).cdf(np.floor(x)) + stats.geom(q).pmf(np.floor(x) + 1) * (x - np.floor(x))

    jittered = sample + np.random.default_rng(0).random(len(sample))
    assert stats.kstest(jittered, cdf(1 / n)).pvalue > 0.01
    assert stats.kstest(jittered, cdf(1 / (n + 1))).pvalue < 1e-6  # the law of n + 1 workers is rejected


# ------------------------------------------------------------------------------------------------------------ SSP


SSP_CLUSTERS = {
    "exponential": Cluster(workers=5, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=6.0),),
                           uplink=Exponential(mean=0.1), downlink=Exponential(mean=0.1)),
    "integer ties": Cluster(workers=4, compute=Empirical(values=(1.0, 1.0, 2.0)),
                            stragglers=(Straggler(worker=1, slowdown=5.0),), uplink=Empirical(values=(0.0, 1.0)),
                            downlink=Empirical(values=(0.0, 0.0, 1.0))),
}


def ssp_lead(trace):
    """For every row (worker w, step t): t minus the fewest steps any worker had finished (rows of any status with
    t_apply <= t_read) when that row read."""
    finished = [np.sort(trace.t_apply[trace.worker == v]) for v in range(trace.n_workers)]
    slowest = np.min([np.searchsorted(f, trace.t_read, side="right") for f in finished], axis=0)
    return trace.step - slowest


@pytest.mark.parametrize("name", list(SSP_CLUSTERS))
@pytest.mark.parametrize("bound", [0, 1, 3])
def test_ssp_never_exceeds_its_bound(name, bound):
    cluster = SSP_CLUSTERS[name]
    trace = simulate(cluster, SSP(bound=bound), 3000, seed=2).validate()
    assert trace.applied.all() and trace.n_updates == 3000
    lead = ssp_lead(trace)
    assert lead.max() <= bound
    assert lead.max() == bound  # ... and the bound is used: SSP is not a barrier in disguise


def test_ssp_with_a_huge_bound_is_async():
    cluster = SSP_CLUSTERS["exponential"]
    assert_same_trace(simulate(cluster, SSP(bound=10**9), 3000, seed=2), simulate(cluster, Async(), 3000, seed=2))
    async_lead = ssp_lead(simulate(cluster, Async(), 3000, seed=2))
    assert async_lead.max() > 3  # so the bound tests above do constrain something


# ----------------------------------------------------------------------------------------------------- Ringmaster


RING_ZERO_LATENCY = Cluster(workers=5, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=6.0),))
RING_LATENCY = Cluster(workers=5, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=6.0),),
                       uplink=Exponential(mean=0.1), downlink=Exponential(mean=0.1))


@pytest.mark.parametrize("cluster", [RING_ZERO_LATENCY, RING_LATENCY], ids=["no latency", "latency"])
@pytest.mark.parametrize("bound", [0, 1, 3])
def test_ringmaster_applies_nothing_staler_than_its_bound(cluster, bound):
    trace = simulate(cluster, Ringmaster(max_staleness=bound), 3000, seed=2)
    applied = trace.applied
    assert trace.n_updates == 3000
    np.testing.assert_array_equal(trace.update[applied], np.arange(3000))
    assert trace.staleness[applied].max() == bound
    cancelled = trace.status == CANCELLED
    assert cancelled.sum() > 100
    assert np.all(trace.staleness[cancelled] > bound)  # cancelled because the new version made them too stale
    assert set(np.unique(trace.status)) <= {APPLIED, CANCELLED}  # no queue, so nothing reaches the server stale
    assert len(set(zip(trace.worker.tolist(), trace.step.tolist()))) == len(trace)


def test_ringmaster_without_latency_gives_a_valid_trace():
    for bound in (0, 1, 3):
        simulate(RING_ZERO_LATENCY, Ringmaster(max_staleness=bound), 3000, seed=2).validate()


def test_ringmaster_with_latency_gives_a_valid_trace():
    # A worker cancelled while its parameters are still on the downlink: its row is cut at the cancel time, read
    # included (t_read <= t_done), as for the cancelled rows of the round protocols.
    trace = simulate(RING_LATENCY, Ringmaster(max_staleness=1), 3000, seed=2)
    assert np.all(trace.t_read <= trace.t_done)
    trace.validate()


def test_ringmaster_drops_stale_contributions_queued_at_a_busy_server():
    cluster = Cluster(workers=5, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=6.0),),
                      server=Server(service=Exponential(mean=0.3)))
    for bound in (0, 2):
        trace = simulate(cluster, Ringmaster(max_staleness=bound), 2000, seed=2).validate()
        assert trace.staleness[trace.applied].max() <= bound
        dropped = trace.status == DROPPED
        assert dropped.sum() > 100
        assert np.all(trace.staleness[dropped] > bound)
        assert np.all(trace.t_apply[dropped] >= trace.t_arrive[dropped])


def test_ringmaster_with_a_huge_bound_is_async():
    assert_same_trace(simulate(RING_LATENCY, Ringmaster(max_staleness=10**9), 3000, seed=2),
                      simulate(RING_LATENCY, Async(), 3000, seed=2))


# ---------------------------------------------------------------------------------------------------------- k of n


def check_k_of_n_rounds(trace, n, k, n_updates):
    assert trace.n_updates == n_updates
    for r in range(n_updates):
        mine = trace.round == r
        applied = mine & trace.applied
        assert applied.sum() == k, r
        np.testing.assert_array_equal(trace.update[applied], r)
        assert np.all(trace.read_version[mine] == r)
        if r < n_updates - 1:  # the last round's unfinished work is not logged
            assert sorted(trace.worker[mine].tolist()) == list(range(n)), r
            assert set(trace.status[mine & ~applied].tolist()) <= {DROPPED, CANCELLED}


@pytest.mark.parametrize("k", [1, 3, 6])
def test_k_of_n_round_time_is_exactly_the_kth_order_statistic(k):
    n, seed, n_updates = 6, 4, 400
    cluster = Cluster(workers=n, compute=Exponential(mean=1.0))
    trace = simulate(cluster, KOfN(k=k), n_updates, seed=seed).validate()
    check_k_of_n_rounds(trace, n, k, n_updates)
    times = Durations(cluster, seed)
    T = trace.update_times()
    for r in range(n_updates):
        assert np.all(trace.step[trace.round == r] == r)  # no failures: one step per round per worker
        kth = sorted(T[r] + times.compute(w, r) for w in range(n))[k - 1]
        assert T[r + 1] == kth, r
        kept = trace.worker[(trace.round == r) & trace.applied]
        # the kept ones are the k fastest of that round
        fastest = sorted(range(n), key=lambda w: (T[r] + times.compute(w, r), w))[:k]
        assert sorted(kept.tolist()) == sorted(fastest)


def test_k_of_n_mean_round_time_is_the_expected_order_statistic():
    n, k, mean, rounds = 8, 3, 2.0, 20_000
    trace = simulate(Cluster(workers=n, compute=Exponential(mean=mean)), KOfN(k=k), rounds, seed=3)
    assert rel(round_times(trace).mean(), mean * (harmonic(n) - harmonic(n - k))) < 0.01


def test_k_of_n_with_latency_and_a_busy_server_keeps_k_per_round():
    n, k = 6, 4
    cluster = Cluster(workers=n, compute=Exponential(mean=1.0), uplink=Exponential(mean=0.2),
                      downlink=Exponential(mean=0.2), server=Server(service=Exponential(mean=0.2)))
    trace = simulate(cluster, KOfN(k=k), 500, seed=6).validate()
    check_k_of_n_rounds(trace, n, k, 500)
    statuses = np.bincount(trace.status, minlength=4)
    assert statuses[DROPPED] > 0 and statuses[CANCELLED] > 0
    assert np.all(trace.staleness[trace.applied] == 0)


def test_k_of_n_hand_derived_event_log_with_cancellations():
    # Compute 1, 2, 3 s, no latency, k = 2.  Every round starts at 2r: worker 0 arrives at 2r+1, worker 1 at 2r+2 and
    # closes the round; worker 2 (due at 2r+3) is cancelled at 2r+2 and restarts on the new version.  Its row names
    # the next update, its own round, and is cut at the cancel time.  The last round's running work is not logged.
    cluster = Cluster(workers=3, compute=Constant(value=1.0),
                      stragglers=(Straggler(worker=1, slowdown=2.0), Straggler(worker=2, slowdown=3.0)))
    trace = simulate(cluster, KOfN(k=2), 4, seed=0).validate()
    # (update, worker, step, read_version, round, status, t_read, t_done, t_arrive, t_apply)
    expected = [
        (0, 0, 0, 0, 0, APPLIED, 0.0, 1.0, 1.0, 2.0),
        (0, 1, 0, 0, 0, APPLIED, 0.0, 2.0, 2.0, 2.0),
        (1, 0, 1, 1, 1, APPLIED, 2.0, 3.0, 3.0, 4.0),
        (1, 1, 1, 1, 1, APPLIED, 2.0, 4.0, 4.0, 4.0),
        (1, 2, 0, 0, 0, CANCELLED, 0.0, 2.0, 2.0, 2.0),
        (2, 0, 2, 2, 2, APPLIED, 4.0, 5.0, 5.0, 6.0),
        (2, 1, 2, 2, 2, APPLIED, 4.0, 6.0, 6.0, 6.0),
        (2, 2, 1, 1, 1, CANCELLED, 2.0, 4.0, 4.0, 4.0),
        (3, 0, 3, 3, 3, APPLIED, 6.0, 7.0, 7.0, 8.0),
        (3, 1, 3, 3, 3, APPLIED, 6.0, 8.0, 8.0, 8.0),
        (3, 2, 2, 2, 2, CANCELLED, 4.0, 6.0, 6.0, 6.0),
    ]
    assert rows(trace, COLUMNS) == expected


def test_k_of_n_hand_derived_event_log_with_drops_at_a_busy_server():
    # Compute 1, 2, 2.5 s, service 1 s, k = 2.  Round r starts at 3r: worker 0 arrives at 3r+1 and is served until
    # 3r+2; worker 1 arrives at 3r+2, served until 3r+3 = the close.  Worker 2 arrives at 3r+2.5, while the round is
    # closing: dropped on arrival (never served), and it waits for the new version like everyone else.
    cluster = Cluster(workers=3, compute=Constant(value=1.0),
                      stragglers=(Straggler(worker=1, slowdown=2.0), Straggler(worker=2, slowdown=2.5)),
                      server=Server(service=Constant(value=1.0)))
    trace = simulate(cluster, KOfN(k=2), 3, seed=0).validate()
    expected = []
    for r in range(3):
        s = 3.0 * r
        expected += [(r, 0, r, r, r, APPLIED, s, s + 1, s + 1, s + 3), (r, 1, r, r, r, APPLIED, s, s + 2, s + 2, s + 3),
                     (r, 2, r, r, r, DROPPED, s, s + 2.5, s + 2.5, s + 2.5)]
    assert rows(trace, COLUMNS) == expected


# -------------------------------------------------------------------------------------------------------- deadline


def test_deadline_rounds_close_at_the_deadline_with_what_arrived():
    n, D, seed, n_updates = 6, 0.7, 5, 2000
    cluster = Cluster(workers=n, compute=Exponential(mean=1.0), uplink=Exponential(mean=0.1),
                      downlink=Exponential(mean=0.1))
    trace = simulate(cluster, Deadline(deadline=D), n_updates, seed=seed).validate()
    times = Durations(cluster, seed)
    T = trace.update_times()
    cases = {"deadline": 0, "all early": 0, "first late": 0}
    for r in range(n_updates):
        start, end, due = T[r], T[r + 1], T[r] + D
        mine = trace.round == r
        applied = mine & trace.applied
        arrived = trace.t_arrive[applied]
        assert np.all(trace.read_version[mine] == r)
        if arrived.min() <= due:
            assert np.all(arrived <= due), r  # nothing late is used
            if applied.sum() == n:
                assert end == arrived.max(), r
                cases["all early"] += 1
            else:
                assert end == due, r
                cases["deadline"] += 1
        else:  # nothing by the deadline: the first arrival closes the round
            assert applied.sum() == 1 and end == arrived[0], r
            cases["first late"] += 1
        # what was not used really would have arrived after the deadline (recomputed from the keyed draws)
        for i in np.flatnonzero(mine & ~trace.applied):
            w, step = int(trace.worker[i]), int(trace.step[i])
            t_read = start if step == 0 else start + times.downlink(w, step)
            t_arrive = t_read + times.compute(w, step) + times.uplink(w, step)
            assert t_arrive > due and t_arrive > end, (r, w)
    assert min(cases.values()) >= 5, cases  # every branch of the rule was exercised


# ------------------------------------------------------------------------------------------------------- allreduce


@pytest.mark.parametrize("n", [1, 2, 5])
def test_allreduce_round_time_is_compute_plus_ring_cost(n):
    c, alpha, beta, m = 0.3, 0.01, 1e6, 4000
    cost = 2 * (n - 1) * (alpha + m / (n * beta))
    explicit = Cluster(workers=n, compute=Constant(value=c), uplink=Exponential(mean=0.5))  # links unused
    defaults = Cluster(workers=n, compute=Constant(value=c), uplink=Constant(value=alpha),
                       network=Network(uplink_bandwidth=beta))
    for cluster, protocol in ((explicit, AllReduce(latency=alpha, bandwidth=beta)), (defaults, AllReduce())):
        trace = simulate(cluster, protocol, 50, seed=0, message_bytes=m).validate()
        np.testing.assert_allclose(round_times(trace), c + cost, rtol=1e-12, atol=0)
        T = trace.update_times()
        np.testing.assert_array_equal(trace.t_read, np.repeat(T[:-1], n))  # no server, no downlink
        np.testing.assert_array_equal(trace.t_done, np.repeat(T[:-1] + c, n))
        assert np.all(trace.t_arrive == trace.t_done)


# --------------------------------------------------------------------------------------------------------- rennala


def rennala_reference(taus, S, K):
    """An independent event loop for Rennala with deterministic times and no latency.  Returns the rows
    (update, worker, step, read_version, status, t_apply) in trace order."""
    heap = [(tau, w, 0, 0) for w, tau in enumerate(taus)]  # (arrival, worker, step, read version): the tie rule
    version, pending, out = 0, [], []
    while version < K:
        t, w, step, read = heappop(heap)
        if read != version:
            out.append((version, w, step, read, DROPPED, t))
            read = version
        else:
            pending.append((w, step, read))
            if len(pending) == S:
                out += [(version, v, s, r, APPLIED, t) for v, s, r in pending]
                pending, version = [], version + 1
                read = version
        heappush(heap, (t + taus[w], w, step + 1, read))
    return sorted(out, key=lambda row: row[:3])


def first_collection_time(taus, S):
    """min {t : sum_i floor(t / tau_i) >= S}, by brute force over the completion times j * tau_i."""
    candidates = sorted(j * tau for tau in taus for j in range(1, S + 1))
    return next(t for t in candidates if sum(math.floor(t / tau) for tau in taus) >= S)


@pytest.mark.parametrize("S", [1, 3, 7, 12])
def test_rennala_with_deterministic_times(S):
    # per-worker laws and speeds together give the exact times 1, 1.5, 2.5 and 4 s
    cluster = Cluster(workers=4, compute=(Constant(value=1.0), Constant(value=3.0), Constant(value=2.5),
                                          Constant(value=1.0)), speeds=(1.0, 2.0, 1.0, 0.25))
    taus = [Durations(cluster, 0).compute(w, 0) for w in range(4)]
    assert taus == [1.0, 1.5, 2.5, 4.0]
    K = 30
    trace = simulate(cluster, Rennala(batch=S), K, seed=0).validate()
    applied = trace.applied
    assert trace.t_apply[applied][0] == first_collection_time(taus, S)
    np.testing.assert_array_equal(np.bincount(trace.update[applied]), np.full(K, S))
    assert np.all(trace.staleness[applied] == 0)
    assert set(np.unique(trace.status)) <= {APPLIED, DROPPED}
    assert np.all(trace.read_version[trace.status == DROPPED] < trace.update[trace.status == DROPPED])
    # the first update's contributions are the S earliest completions (ties by worker id)
    earliest = sorted((j * tau, w) for w, tau in enumerate(taus) for j in range(1, S + 1))[:S]
    assert sorted(trace.worker[applied & (trace.update == 0)].tolist()) == sorted(w for _, w in earliest)
    # and the whole schedule equals an independent event loop
    assert rows(trace, ("update", "worker", "step", "read_version", "status", "t_apply")) == \
        rennala_reference(taus, S, K)


# -------------------------------------------------------------------------------------------------------- periodic


def test_periodic_contributions_take_local_steps_compute_times():
    H, c = 4, 0.25
    speeds = (1.0, 0.5, 0.25)
    cluster = Cluster(workers=3, compute=Constant(value=c), speeds=speeds, uplink=Constant(value=0.125),
                      downlink=Constant(value=0.125))
    per_worker = np.array([H * c / s for s in speeds])
    trace = simulate(cluster, Periodic(local_steps=H), 60, seed=0).validate()
    np.testing.assert_array_equal(trace.t_done - trace.t_read, per_worker[trace.worker])
    assert trace.applied.all() and np.array_equal(trace.update, np.arange(60))

    sync = simulate(cluster, Periodic(local_steps=H, synchronous=True), 20, seed=0).validate()
    np.testing.assert_array_equal(np.bincount(sync.update), np.full(20, 3))
    np.testing.assert_array_equal(sync.round, sync.update)
    assert np.all(sync.staleness == 0) and sync.applied.all()
    np.testing.assert_array_equal(sync.t_done - sync.t_read, per_worker[sync.worker])
    # the barrier: round r's contributions all read when round r - 1 was applied (+ the downlink)
    T = sync.update_times()
    np.testing.assert_array_equal(sync.t_read[sync.update > 0], T[sync.update[sync.update > 0]] + 0.125)


def test_periodic_local_steps_use_the_keyed_draws_of_steps_s_h_to_s_h_plus_h():
    H, seed = 3, 8
    cluster = Cluster(workers=3, compute=Exponential(mean=1.0))
    times = Durations(cluster, seed)
    for protocol in (Periodic(local_steps=H), Periodic(local_steps=H, synchronous=True)):
        trace = simulate(cluster, protocol, 40, seed=seed).validate()
        for i in range(len(trace)):
            w, s, t = int(trace.worker[i]), int(trace.step[i]), float(trace.t_read[i])
            for h in range(H):
                t = t + times.compute(w, s * H + h)
            assert trace.t_done[i] == t


# ------------------------------------------------------------------------------------------------------ trace_file


@pytest.fixture
def measured_delays():
    if not DELAYS.is_file():
        pytest.skip(f"{DELAYS} is missing")
    return np.loadtxt(DELAYS)


def test_delay_trace_reproduces_the_measured_staleness(measured_delays):
    trace = delay_trace(measured_delays.astype(np.int64), seconds_per_update=0.5)
    np.testing.assert_array_equal(trace.staleness, measured_delays)
    assert trace.n_updates == len(measured_delays) and trace.applied.all()
    np.testing.assert_array_equal(trace.t_apply, 0.5 * (np.arange(len(measured_delays)) + 1))
    # the protocol reads the same file
    protocol = TraceFile(path=str(DELAYS), seconds_per_update=0.5)
    via_simulate = simulate(Cluster(workers=1, compute=Constant(value=1.0)), protocol, 1000, seed=0)
    np.testing.assert_array_equal(via_simulate.staleness, measured_delays[:1000])


def test_delay_trace_of_measured_delays_validates(measured_delays):
    # Reads are not monotone in k (update 10 of this file reads version 1, update 9 version 4), so a worker freed
    # for a late read must not be handed to a later update with an earlier read.
    delays = measured_delays.astype(np.int64)
    trace = delay_trace(delays)
    trace.validate()
    assert len(np.unique(trace.worker)) == trace.n_workers
    k = np.arange(len(delays))
    read = k - delays
    in_flight = max(int(np.sum((read <= v) & (v <= k))) for v in range(len(delays)))
    assert trace.n_workers >= in_flight  # no worker holds two computations at once


def test_delay_trace_of_a_small_sequence_is_exact():
    # Update k reads version k - d_k at (k - d_k) dt and is applied at (k + 1) dt.  Reads 0, 1, 1, 1, 4: update 0
    # runs on worker 0 until version 1, so update 1 (read 1) can reuse it (busy until version 2); updates 2 and 3
    # also read version 1 and need new workers 1 and 2; update 4 (read 4) finds all idle and takes worker 0.
    trace = delay_trace(np.array([0, 0, 1, 2, 0]), seconds_per_update=2.0).validate()
    assert trace.read_version.tolist() == [0, 1, 1, 1, 4]
    assert trace.staleness.tolist() == [0, 0, 1, 2, 0]
    assert trace.t_read.tolist() == [0.0, 2.0, 2.0, 2.0, 8.0]
    assert trace.t_apply.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert trace.worker.tolist() == [0, 0, 1, 2, 0]
    assert trace.step.tolist() == [0, 1, 0, 0, 2]
    assert trace.n_workers == 3  # three computations in flight at version 1


def test_trace_file_errors_name_the_problem(tmp_path):
    with pytest.raises(ScenarioError, match="delay 3 of update 2"):
        delay_trace(np.array([0, 1, 3]))
    path = tmp_path / "delays.txt"
    path.write_text("0\n1\n1.5\n2\n")
    with pytest.raises(ScenarioError, match="line 3"):
        TraceFile(path=str(path))
    path.write_text("0\n1\n2\n-1\n")
    with pytest.raises(ScenarioError, match="line 4"):
        TraceFile(path=str(path))
    path.write_text("0\n1\n5\n")
    with pytest.raises(ScenarioError, match="line 3: delay 5 of update 2 is larger than the number of earlier"):
        TraceFile(path=str(path))  # refused when the file is read, naming its line
    path.write_text("0\n1\n1\n")
    protocol = TraceFile(path=str(path))
    cluster = Cluster(workers=1, compute=Constant(value=1.0))
    with pytest.raises(ScenarioError, match="run.updates must be <= the 3 delays"):
        simulate(cluster, protocol, 4, seed=0)
    assert simulate(cluster, protocol, 2, seed=0).staleness.tolist() == [0, 1]


# -------------------------------------------------------------------------------------------------------- failures


FAILING = Cluster(workers=4, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=0, slowdown=8.0),),
                  failures=Failures(rate=0.3, downtime=Exponential(mean=0.5)), uplink=Exponential(mean=0.1),
                  downlink=Exponential(mean=0.1))
FAILURE_PROTOCOLS = {"async": (Async(), 3000), "sync": (Sync(), 800), "ssp": (SSP(bound=1), 2000),
                     "k_of_n": (KOfN(k=2), 800), "deadline": (Deadline(deadline=1.0), 500),
                     "ringmaster": (Ringmaster(max_staleness=2), 2000), "rennala": (Rennala(batch=3), 500),
                     "periodic": (Periodic(local_steps=2), 1000),
                     "periodic sync": (Periodic(local_steps=2, synchronous=True), 300)}


@pytest.mark.parametrize("name", list(FAILURE_PROTOCOLS))
def test_failures_lose_work_but_keep_the_trace_consistent(name):
    protocol, n_updates = FAILURE_PROTOCOLS[name]
    trace = simulate(FAILING, protocol, n_updates, seed=1).validate()
    assert len(set(zip(trace.worker.tolist(), trace.step.tolist()))) == len(trace)  # every (worker, step) once
    applied = trace.applied
    assert trace.n_updates == n_updates
    np.testing.assert_array_equal(np.unique(trace.update[applied]), np.arange(n_updates))
    if name in ("async", "ssp", "ringmaster", "periodic"):
        np.testing.assert_array_equal(trace.update[applied], np.arange(n_updates))  # one row per update
    lost = np.flatnonzero(trace.status == LOST)
    assert len(lost) > 20
    times = Durations(FAILING, 1)
    for i in lost:  # lost at a crash of the worker's failure schedule, after the work started
        w = int(trace.worker[i])
        assert times.crash_after(w, trace.t_read[i])[0] == trace.t_apply[i]
        assert trace.t_done[i] <= trace.t_apply[i] and trace.t_arrive[i] == trace.t_apply[i]


@pytest.mark.parametrize("name", list(FAILURE_PROTOCOLS))
def test_no_work_starts_or_completes_while_the_worker_is_down(name):
    # In particular a worker that crashes twice while it waits (at a barrier, or for a held SSP reply) must not
    # compute before its second rejoin.
    protocol, n_updates = FAILURE_PROTOCOLS[name]
    trace = simulate(FAILING, protocol, n_updates, seed=1)
    times = Durations(FAILING, 1)
    for i in range(len(trace)):
        w, t_read = int(trace.worker[i]), float(trace.t_read[i])
        assert times.up_at(w, t_read) == t_read, f"row {i}: worker {w} reads at {t_read} while down"
        if trace.status[i] == LOST:  # lost at the crash that ends the up period in which the work started
            assert times.crash_after(w, t_read)[0] == trace.t_apply[i], f"row {i}"
        else:
            assert times.crash_after(w, t_read)[0] >= trace.t_arrive[i], f"row {i}: a crash during the work"


# ------------------------------------------------------------------------------------------------------- transient


def test_transient_slow_phases_slow_down_the_right_fraction_of_compute_time():
    # A worker is slow a fraction f = mean_slow / (mean_normal + mean_slow) of the time, whatever it does.  An
    # always-busy worker (no latency) computing work c per step spends time u normal and v slow on a step with
    # u + v / s = c, so over all steps the slow share of the compute time is (D - K c) s / ((s - 1) D), which must
    # tend to f; equivalently the mean duration is c / (1 - f + f / s).  (Note: this is the harmonic form; the
    # time-average slowdown c (1 + (s - 1) f) is not the mean duration per computation, since fewer computations
    # fit into the slow phases.)
    c, mean_normal, mean_slow, s = 1.0, 3.0, 1.0, 4.0
    f = mean_slow / (mean_normal + mean_slow)
    cluster = Cluster(workers=4, compute=Constant(value=c),
                      transient=Transient(mean_normal=mean_normal, mean_slow=mean_slow, slowdown=s))
    trace = simulate(cluster, Async(), 100_000, seed=7).validate()
    duration = trace.t_done - trace.t_read
    assert duration.min() >= c * (1 - 1e-9) and duration.max() <= s * c * (1 + 1e-9)
    assert np.any(np.isclose(duration, c)) and np.any(np.isclose(duration, s * c))  # wholly normal, wholly slow
    D, K = duration.sum(), len(duration)
    assert rel((D - K * c) * s / ((s - 1) * D), f) < 0.03
    assert rel(duration.mean(), c / (1 - f + f / s)) < 0.01
    assert np.all(trace.t_read[trace.step == 0] == 0.0)


# --------------------------------------------------------------------------------------------------- server slots


def test_async_server_with_two_slots_hand_derived_schedule():
    # 3 workers, compute 1, service 1, 2 slots, no latency.  t=1: all three arrive; workers 0 and 1 take the two
    # slots (applied at 2, in worker order), worker 2 waits for the first free slot (applied at 3).  Workers 0 and
    # 1 read versions 1 and 2 at t=2 and arrive at 3: slots free at 2 and 3 -> served until 4 and 4.  Worker 2 reads
    # version 3 at 3, arrives at 4, finds both slots busy until 4 -> applied at 5.  Then the pattern repeats every
    # 2 s: two applies at an even time, one at the next odd time.
    cluster = Cluster(workers=3, compute=Constant(value=1.0), server=Server(service=Constant(value=1.0), slots=2))
    trace = simulate(cluster, Async(), 12, seed=0).validate()
    assert trace.t_apply.tolist() == [2.0, 2.0, 3.0, 4.0, 4.0, 5.0, 6.0, 6.0, 7.0, 8.0, 8.0, 9.0]
    assert trace.worker.tolist() == [0, 1, 2] * 4
    assert trace.t_arrive.tolist() == [1.0, 1.0, 1.0, 3.0, 3.0, 4.0, 5.0, 5.0, 6.0, 7.0, 7.0, 8.0]
    assert trace.read_version.tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    # one slot instead: a single queue, applied at 2, 3, 4, then one per second
    one = simulate(Cluster(workers=3, compute=Constant(value=1.0), server=Server(service=Constant(value=1.0))),
                   Async(), 6, seed=0)
    assert one.t_apply.tolist() == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]


def test_sync_server_with_two_slots_hand_derived_schedule():
    # Each round: all 3 arrive 1 s after it starts; two are served at once, the third after them: the round takes 3 s.
    cluster = Cluster(workers=3, compute=Constant(value=1.0), server=Server(service=Constant(value=1.0), slots=2))
    trace = simulate(cluster, Sync(), 3, seed=0).validate()
    assert trace.t_apply.tolist() == [3.0] * 3 + [6.0] * 3 + [9.0] * 3
    assert trace.t_read.tolist() == [0.0] * 3 + [3.0] * 3 + [6.0] * 3
    assert trace.t_arrive.tolist() == [1.0] * 3 + [4.0] * 3 + [7.0] * 3
