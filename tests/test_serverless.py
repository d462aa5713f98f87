"""Serverless workers (``cluster.serverless``): a hand-derived event log of the concurrency cap with ties and a
cancelled queued invocation, cold starts against their law, the cap's throughput against its closed form, the
neutral settings bit for bit, and one-line errors."""

import numpy as np
import pytest

import asyncsim
from asyncsim.params import ScenarioError
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.cluster import ColdStart, Serverless
from asyncsim.timing.laws import Constant, Exponential, LogNormal, Pareto
from asyncsim.timing.protocols import Async, Coded, KOfN, Sync, choose_engine
from asyncsim.timing.codes import Cyclic
from asyncsim.timing.trace import Status

COLUMNS = ("update", "worker", "step", "status", "t_read", "t_done", "t_apply")
A, C = int(Status.APPLIED), int(Status.CANCELLED)


def rows(trace):
    return [tuple(r) for r in zip(*(getattr(trace, c).tolist() for c in COLUMNS))]


def test_concurrency_cap_hand_derived_event_log_with_ties():
    """5 invocations, 2 slots, k_of_n with k = 2; tasks take 1, 1.5, 3, 2, 1 s.  Round 0, all requested at 0 in
    worker order: 0 runs [0, 1], 1 runs [0, 1.5]; 2 is promised the slot freed at 1 (to 4), 3 the one freed at 1.5
    (to 3.5), 4 the one freed at 3.5.  Workers 0 and 1 close the round at 1.5; 2 started at 1 and 3 at 1.5 (a
    slot freed at an instant is taken before the round closes then), so they hold their slots to 4 and 3.5
    although cancelled; 4 had not started and leaves the queue.  Round 1, requested at 1.5: 0 gets the slot freed
    at 3.5 (done 4.5), 1 the one freed at 4 (done 5.5), and the round closes at 5.5."""
    cluster = Cluster(workers=5, compute=tuple(Constant(value=v) for v in (1.0, 1.5, 3.0, 2.0, 1.0)),
                      serverless=Serverless(concurrency=2))
    trace = simulate(cluster, KOfN(k=2), 2, seed=0).validate()
    assert rows(trace) == [
        (0, 0, 0, A, 0.0, 1.0, 1.5), (0, 1, 0, A, 0.0, 1.5, 1.5),
        (1, 0, 1, A, 1.5, 4.5, 5.5), (1, 1, 1, A, 1.5, 5.5, 5.5),
        (1, 2, 0, C, 0.0, 1.5, 1.5), (1, 3, 0, C, 0.0, 1.5, 1.5), (1, 4, 0, C, 0.0, 1.5, 1.5)]


def test_a_cancelled_queued_invocation_frees_its_slot():
    """Without the release the third round would wait for worker 4's phantom invocation: with 2 slots and tasks of
    1, 1.5, 3, 2, 1 s the round closes at 1.5, 5.5, then 9.0 (computed by hand as above)."""
    cluster = Cluster(workers=5, compute=tuple(Constant(value=v) for v in (1.0, 1.5, 3.0, 2.0, 1.0)),
                      serverless=Serverless(concurrency=2))
    np.testing.assert_array_equal(simulate(cluster, KOfN(k=2), 3, seed=0).update_times()[1:], [1.5, 5.5, 9.0])


@pytest.mark.parametrize("protocol", [Sync(), KOfN(k=3), Async(), Coded(code=Cyclic(s=1))], ids=repr)
def test_neutral_serverless_settings_change_nothing(protocol):
    """Cold starts of probability 0, and a cap of n where no task is ever cancelled (sync, async): the trace of
    the plain cluster, bit for bit.  (Where tasks are cancelled a cap of n is not neutral: a cancelled invocation
    keeps its slot until it would have finished.)"""
    plain = Cluster(workers=4, compute=LogNormal(mu=0.0, sigma=1.0), uplink=Exponential(mean=0.1))
    want = simulate(plain, protocol, 300, seed=5, engine="simpy")
    neutral = [Serverless(cold_start=ColdStart(probability=0.0, time=Constant(value=9.0)))]
    if isinstance(protocol, (Sync, Async)):
        neutral.append(Serverless(concurrency=4))
    else:
        capped = simulate(Cluster(**{**plain.__dict__, "serverless": Serverless(concurrency=4)}), protocol, 300, 5)
        assert capped.update_times()[-1] > want.update_times()[-1]
    for serverless in neutral:
        got = simulate(Cluster(**{**plain.__dict__, "serverless": serverless}), protocol, 300, seed=5)
        for column in COLUMNS:
            np.testing.assert_array_equal(getattr(got, column), getattr(want, column))


def test_cold_starts_follow_their_law():
    """With constant 1 s tasks every compute span is 1 s plus a cold start: exactly 2.5 s more with probability
    p = 0.2, drawn per invocation (a binomial count: within 4 standard deviations over 4 x 2000 invocations)."""
    cluster = Cluster(workers=4, compute=Constant(value=1.0),
                      serverless=Serverless(cold_start=ColdStart(probability=0.2, time=Constant(value=2.5))))
    trace = simulate(cluster, Sync(), 2000, seed=1)
    span = trace.t_done - trace.t_read
    assert set(np.round(span, 12)) == {1.0, 3.5}
    cold = np.mean(span > 2)
    assert abs(cold - 0.2) < 4 * np.sqrt(0.2 * 0.8 / len(span))
    assert np.all(np.diff(trace.update_times()) == np.where(
        (span.reshape(-1, 4) > 2).any(axis=1), 3.5, 1.0))  # a round is as long as its slowest invocation


def test_the_cap_bounds_async_throughput_at_c_over_the_task_time():
    """n = 6 asynchronous workers, each task 2 s, at most C = 2 running: the slots never idle (a worker asks again
    the instant its result is applied), so two updates are applied every 2 s; with Pareto tasks the rate is C / E[X]
    (each slot a renewal process), within 5% over 4000 updates."""
    cluster = Cluster(workers=6, compute=Constant(value=2.0), serverless=Serverless(concurrency=2))
    trace = simulate(cluster, Async(), 600, seed=0)
    np.testing.assert_array_equal(trace.update_times()[1:], np.repeat(2.0 * np.arange(1, 301), 2))  # C at a time
    heavy = Cluster(workers=6, compute=Pareto(alpha=2.5, scale=1.0), serverless=Serverless(concurrency=2))
    t = simulate(heavy, Async(), 4000, seed=0).update_times()[1:]
    rate = len(t) / t[-1]
    mean = Pareto(alpha=2.5, scale=1.0).mean
    assert rate == pytest.approx(2 / mean, rel=0.05)  # renewal: C slots each busy all the time


def test_serverless_clusters_take_the_event_engine_and_bad_settings_are_one_line():
    cluster = Cluster(workers=4, compute=Constant(value=1.0), serverless=Serverless(concurrency=2))
    assert choose_engine(cluster, Sync()) == "simpy"
    with pytest.raises(ScenarioError, match="serverless invocations"):
        choose_engine(cluster, Sync(), "fast")
    base = ["cluster.compute={kind: pareto, alpha: 2.5, scale: 1.0}"]
    for change, message in [
        ("cluster.serverless={concurrency: 0}", "cluster.serverless.concurrency must be >= 1 (or null: no cap), got 0"),
        ("cluster.serverless={cold_start: {probability: 1.5, time: {kind: constant, value: 1}}}",
         "cluster.serverless.cold_start.probability must be in [0, 1], got 1.5"),
        ("cluster.serverless={cold_start: {probability: 0.1}}", "cluster.serverless.cold_start.time"),
        ("cluster.serverless={concurrency: 2, slots: 3}", "cluster.serverless"),
    ]:
        with pytest.raises(ScenarioError) as err:
            asyncsim.load_scenario(None, base + [change])
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
    with pytest.raises(ScenarioError, match=r"^cluster.failures must be null with serverless workers"):
        asyncsim.load_scenario(None, base + ["cluster.serverless={concurrency: 2}",
                                             "cluster.failures={rate: 0.01, downtime: {kind: constant, value: 1}}"])
    with pytest.raises(ScenarioError, match=r"^cluster.serverless.concurrency must be null under protocol ringmaster"):
        asyncsim.load_scenario(None, base + ["cluster.serverless={concurrency: 2}",
                                             "protocol={kind: ringmaster, max_staleness: 2}"])
    with pytest.raises(ScenarioError, match=r"^cluster.serverless must be null in real mode"):
        from asyncsim.real.runner import check_real
        check_real(asyncsim.load_scenario(None, base + ["cluster.serverless={concurrency: 2}"]))


def test_the_shipped_serverless_scenario_runs_and_waits_for_slots(root):
    scenario = asyncsim.load_scenario(root / "scenarios" / "clusters" / "serverless.yaml")
    assert scenario.cluster.serverless.concurrency < scenario.cluster.workers
    result = asyncsim.run(scenario)
    assert result.metrics["suboptimality"].iloc[-1] < 0.1 * result.metrics["suboptimality"].iloc[0]
    uncapped = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "clusters" / "serverless.yaml",
                                                   ["cluster.serverless.concurrency=null"]))
    assert result.trace.update_times()[-1] > 1.1 * uncapped.trace.update_times()[-1]  # waiting for slots
