"""The SimPy timing layer against hand-derived schedules, an independent heapq loop, and closed forms."""

from dataclasses import replace

import numpy as np
import pytest
from heapq_reference import async_trace

from asyncsim.timing import Cluster, Server, Straggler, Trace, TraceError, simulate
from asyncsim.timing.laws import Constant, Exponential, LogNormal, Pareto, Uniform
from asyncsim.timing.protocols import Async, Sync

ROW = ("update", "worker", "step", "read_version", "t_read", "t_done", "t_arrive", "t_apply")


def rows(trace):
    return [tuple(r) for r in trace.to_frame()[list(ROW)].itertuples(index=False)]


def two_workers(service=0.0):
    # powers of two, so every sum below is exact in floating point
    return Cluster(workers=2, compute=Constant(value=1.0), stragglers=(Straggler(worker=1, slowdown=1.5),),
                   uplink=Constant(value=0.125), downlink=Constant(value=0.25),
                   server=Server(service=Constant(value=service)))


def test_async_two_workers_hand_derived_event_log():
    # (update, worker, step, read version, t_read, t_done, t_arrive, t_apply), derived by hand:
    # a reply carries version k+1 and arrives 0.25 s after the apply; compute 1.0 (worker 0) and 1.5 (worker 1).
    expected = [
        (0, 0, 0, 0, 0.000, 1.000, 1.125, 1.125),
        (1, 1, 0, 0, 0.000, 1.500, 1.625, 1.625),
        (2, 0, 1, 1, 1.375, 2.375, 2.500, 2.500),
        (3, 1, 1, 2, 1.875, 3.375, 3.500, 3.500),
        (4, 0, 2, 3, 2.750, 3.750, 3.875, 3.875),
        (5, 0, 3, 5, 4.125, 5.125, 5.250, 5.250),
    ]
    trace = simulate(two_workers(), Async(), 6, seed=0).validate()
    assert rows(trace) == expected
    assert trace.staleness.tolist() == [0, 1, 1, 1, 1, 0]
    assert trace.round.tolist() == [-1] * 6


def test_sync_two_workers_hand_derived_event_log_with_server_queue():
    # round 0: arrivals 1.125 and 1.625, each served 0.5 s (FIFO): done at 1.625 and 2.125 -> applied at 2.125;
    # round 1: both read version 1 at 2.375; arrivals 3.5 and 4.0 -> served until 4.0 and 4.5 -> applied at 4.5.
    expected = [
        (0, 0, 0, 0, 0.000, 1.000, 1.125, 2.125),
        (0, 1, 0, 0, 0.000, 1.500, 1.625, 2.125),
        (1, 0, 1, 1, 2.375, 3.375, 3.500, 4.500),
        (1, 1, 1, 1, 2.375, 3.875, 4.000, 4.500),
    ]
    trace = simulate(two_workers(service=0.5), Sync(), 2, seed=0).validate()
    assert rows(trace) == expected
    assert trace.round.tolist() == [0, 0, 1, 1]
    assert np.all(trace.staleness == 0)


def test_ties_are_ordered_by_worker_id_not_by_creation_order():
    # Worker 0 computes in 1 s, worker 1 in 2 s, no latency.  At t=2 both arrive; worker 1's arrival was scheduled at
    # t=0, worker 0's at t=1, yet worker 0 goes first.  Same at t=4.
    cluster = Cluster(workers=2, compute=Constant(value=1.0), stragglers=(Straggler(worker=1, slowdown=2.0),))
    trace = simulate(cluster, Async(), 6, seed=0).validate()
    got = list(zip(trace.update.tolist(), trace.worker.tolist(), trace.read_version.tolist(), trace.t_apply.tolist()))
    assert got == [(0, 0, 0, 1.0), (1, 0, 1, 2.0), (2, 1, 0, 2.0), (3, 0, 2, 3.0), (4, 0, 4, 4.0), (5, 1, 3, 4.0)]


def test_all_tied_arrivals_queue_in_worker_order_at_a_busy_server():
    # 3 identical workers (compute 1 s), service 0.5 s: all arrive at t=1 and are served in worker order; from then
    # on each worker finds the server free exactly when it arrives, and every staleness is n - 1 = 2.
    cluster = Cluster(workers=3, compute=Constant(value=1.0), server=Server(service=Constant(value=0.5)))
    trace = simulate(cluster, Async(), 9, seed=0).validate()
    assert trace.worker.tolist() == [0, 1, 2] * 3
    assert trace.t_apply.tolist() == [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5]
    assert trace.t_arrive.tolist() == [1.0, 1.0, 1.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]
    assert trace.staleness.tolist() == [0, 1, 2] + [2] * 6


@pytest.mark.parametrize("seed", range(12))
def test_simpy_schedule_equals_independent_heapq_loop_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    values = tuple(float(v) for v in rng.integers(1, 4, 5))  # integer times: ties everywhere
    from asyncsim.timing.laws import Empirical
    cluster = Cluster(
        workers=n, compute=Empirical(values=values),
        stragglers=(Straggler(worker=int(rng.integers(n)), slowdown=float(rng.integers(1, 4))),),
        uplink=Empirical(values=(0.0, 1.0)), downlink=Empirical(values=(0.0, 0.0, 1.0)),
        server=Server(service=Empirical(values=(0.0, 0.0, 1.0)) if seed % 2 else Constant(value=0.0)),
    )
    sim = simulate(cluster, Async(), 400, seed).validate()
    ref = async_trace(cluster, 400, seed)
    _, inverse, counts = np.unique(sim.t_arrive, return_inverse=True, return_counts=True)
    assert np.mean(counts[inverse] > 1) > 0.2  # the schedule really is full of ties
    for col in ROW:
        np.testing.assert_array_equal(getattr(sim, col), getattr(ref, col), err_msg=col)


def test_simpy_schedule_equals_heapq_loop_continuous_laws():
    cluster = Cluster(workers=16, compute=LogNormal(mu=0.0, sigma=1.0), stragglers=(Straggler(worker=3, slowdown=5.0),),
                      uplink=Exponential(mean=0.1), downlink=Uniform(low=0.0, high=0.2),
                      server=Server(service=Exponential(mean=0.05)))
    sim, ref = simulate(cluster, Async(), 3000, 5).validate(), async_trace(cluster, 3000, 5)
    for col in ROW:
        np.testing.assert_array_equal(getattr(sim, col), getattr(ref, col), err_msg=col)


def test_staleness_identity_is_exact():
    # For the async protocol, a worker's read after its update k is version k+1, so summing k_j - r_j over one
    # worker's updates telescopes: sum(staleness) = sum_w (last update of w + 1) - K.
    cluster = Cluster(workers=5, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=2, slowdown=3.0),))
    trace = simulate(cluster, Async(), 5000, seed=3)
    last = [trace.update[trace.worker == w].max() for w in range(5)]
    assert trace.staleness.sum() == sum(l + 1 for l in last) - trace.n_updates


@pytest.mark.parametrize("law", [Exponential(mean=1.0), LogNormal(mu=0.0, sigma=1.0), Pareto(alpha=2.5, scale=1.0),
                                 Constant(value=1.0)], ids=lambda l: type(l).__name__)
def test_mean_staleness_is_n_minus_1_for_always_busy_workers(law):
    n = 8
    cluster = Cluster(workers=n, compute=law, uplink=Constant(value=0.01), downlink=Constant(value=0.01))
    trace = simulate(cluster, Async(), 100_000, seed=11)
    assert trace.staleness.mean() == pytest.approx(n - 1, rel=0.01)


def test_sync_round_time_is_expected_max_of_exponentials():
    # E[max of n i.i.d. Exp(mu)] = H_n / mu  (order statistics), with zero latency and no server time.
    n, mu, rounds = 8, 2.0, 40_000
    cluster = Cluster(workers=n, compute=Exponential(mean=1 / mu))
    trace = simulate(cluster, Sync(), rounds, seed=4).validate()
    harmonic = sum(1 / i for i in range(1, n + 1))
    assert trace.t_apply[-1] / rounds == pytest.approx(harmonic / mu, rel=0.01)


def test_async_throughput_and_straggler_share_match_renewal_rates():
    # Without contention each worker is a renewal process with cycle compute + uplink + downlink, so worker i makes
    # updates at rate 1 / E[cycle_i] and the throughput is sum_i 1 / E[cycle_i].
    cluster = Cluster(workers=4, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=0, slowdown=10.0),),
                      uplink=Constant(value=0.05), downlink=Constant(value=0.05))
    trace = simulate(cluster, Async(), 50_000, seed=2)
    rates = np.array([1 / 10.1] + [1 / 1.1] * 3)
    assert trace.n_updates / trace.t_apply[-1] == pytest.approx(rates.sum(), rel=0.01)
    assert np.mean(trace.worker == 0) == pytest.approx(rates[0] / rates.sum(), rel=0.1)


def test_same_seed_same_trace_other_seed_other_trace():
    cluster = Cluster(workers=4, compute=Exponential(mean=1.0))
    a, b, c = (simulate(cluster, Async(), 500, s) for s in (1, 1, 2))
    assert all(np.array_equal(getattr(a, col), getattr(b, col)) for col in ROW)
    assert not np.array_equal(a.t_apply, c.t_apply)


def test_adding_latency_keeps_the_compute_draws():
    # timing draws are keyed per source stream: common random numbers across scenarios
    base = Cluster(workers=3, compute=Exponential(mean=1.0))
    slow_net = replace(base, uplink=Constant(value=0.5))
    a, b = simulate(base, Async(), 300, 9), simulate(slow_net, Async(), 300, 9)
    key = lambda t: {(w, s): d - r for w, s, d, r in zip(t.worker, t.step, t.t_done, t.t_read)}
    ka, kb = key(a), key(b)
    common = set(ka) & set(kb)
    assert len(common) > 200
    assert all(ka[k] == pytest.approx(kb[k], rel=1e-12, abs=1e-12) for k in common)


def test_trace_roundtrips_through_parquet(tmp_path):
    trace = simulate(two_workers(0.5), Sync(), 5, seed=0)
    trace.save(tmp_path / "t.parquet")
    back = Trace.load(tmp_path / "t.parquet")
    assert (back.n_workers, back.protocol) == (2, "sync")
    for col in ROW + ("round",):
        np.testing.assert_array_equal(getattr(back, col), getattr(trace, col))


def test_loading_a_foreign_parquet_file_fails_clearly(tmp_path):
    import pandas as pd
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(TraceError, match="not an asyncsim trace"):
        Trace.load(tmp_path / "x.parquet")


@pytest.mark.parametrize("corrupt, message", [
    (lambda t: dict(read_version=np.where(t.update == 3, 4, t.read_version)), "staleness < 0"),
    (lambda t: dict(step=np.where((t.worker == 0) & (t.step == 1), 2, t.step)), "not consecutive from 0"),
    (lambda t: dict(t_done=np.where(t.update == 2, t.t_read - 0.1, t.t_done)), "t_done < t_read"),
    (lambda t: dict(t_apply=np.where(t.update == 4, t.t_arrive - 0.125, t.t_apply)), "t_apply < t_arrive"),
    (lambda t: dict(update=np.where(t.update == 5, 7, t.update)), "not consecutive"),
    # update 2 reads version 1, which only exists from t = 1.125 on
    (lambda t: dict(t_read=np.where(t.update == 2, 1.0, t.t_read), t_done=np.where(t.update == 2, 2.0, t.t_done)),
     "read a version before it was applied"),
])
def test_validate_rejects_broken_traces(corrupt, message):
    trace = simulate(two_workers(), Async(), 6, seed=0).validate()
    with pytest.raises(TraceError, match=message):
        replace(trace, **corrupt(trace)).validate()
