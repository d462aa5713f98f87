"""The vectorized fast path against the SimPy protocols: identical traces, column by column, on random scenarios
full of ties; and the engine choice (``engine='fast'`` refuses what it cannot reproduce exactly)."""

import numpy as np
import pytest

from asyncsim.params import ScenarioError
from asyncsim.timing import Cluster, Server, Straggler, simulate
from asyncsim.timing.cluster import ComputeTrace, Failures, Network, Transient
from asyncsim.timing.laws import Constant, Empirical, Exponential, LogNormal
from asyncsim.timing.protocols import (SSP, AllReduce, Async, Deadline, KOfN, Periodic, Rennala, Ringmaster, Sync,
                                       choose_engine)

COLUMNS = ("update", "worker", "step", "read_version", "round", "status", "t_read", "t_done", "t_arrive", "t_apply")


def assert_same_trace(a, b, context=""):
    assert a.n_workers == b.n_workers, context
    assert a.protocol == b.protocol, context
    for col in COLUMNS:
        x, y = getattr(a, col), getattr(b, col)
        assert x.dtype == y.dtype, f"{context}: column {col} dtype {x.dtype} != {y.dtype}"
        np.testing.assert_array_equal(x, y, err_msg=f"{context}: column {col}")


def small_integer_law(rng, positive):
    """An Empirical law over 1-4 small integers in 0..3 (ties everywhere; zeros allowed).  ``positive``: the law
    must have a mean > 0 (a compute law)."""
    values = [float(v) for v in rng.integers(0, 4, int(rng.integers(1, 5)))]
    if positive and not any(values):
        values.append(float(rng.integers(1, 4)))
    if not positive and rng.random() < 0.2:
        return Constant(value=0.0)
    return Empirical(values=tuple(values))


def random_scenario(rng):
    """A random independent cluster (so the fast path applies) and a message size."""
    n = int(rng.integers(1, 11))
    kw = {}
    if rng.random() < 0.5:
        kw["compute"] = small_integer_law(rng, positive=True)
    else:
        kw["compute"] = tuple(small_integer_law(rng, positive=True) for _ in range(n))
    if rng.random() < 0.5:
        kw["speeds"] = tuple(float(v) for v in rng.choice([0.5, 1.0, 2.0, 4.0], n))
    if rng.random() < 0.6:
        chosen = rng.choice(n, size=int(rng.integers(1, n + 1)), replace=False)
        kw["stragglers"] = tuple(Straggler(worker=int(w), slowdown=float(rng.choice([2.0, 3.0, 8.0])))
                                 for w in chosen)
    kw["uplink"] = small_integer_law(rng, positive=False)
    kw["downlink"] = small_integer_law(rng, positive=False)
    message_bytes = 0
    if rng.random() < 0.4:
        kw["network"] = Network(uplink_bandwidth=float(rng.choice([1.0, 2.0, 4.0])),
                                downlink_bandwidth=None if rng.random() < 0.5 else 2.0)
        message_bytes = int(rng.integers(0, 5))
    if rng.random() < 0.2:  # several slots of a zero-time server: still independent
        kw["server"] = Server(service=Constant(value=0.0), slots=int(rng.integers(1, 4)))
    return Cluster(workers=n, **kw), message_bytes


@pytest.mark.parametrize("protocol", [Async(), Sync()], ids=["async", "sync"])
def test_fast_path_equals_simpy_on_random_integer_scenarios(protocol):
    tied = total = 0
    for i in range(40):
        rng = np.random.default_rng([i, 2024])
        cluster, message_bytes = random_scenario(rng)
        n_updates = int(rng.integers(1, 801))
        seed = int(rng.integers(0, 2**31))
        assert choose_engine(cluster, protocol) == "fast"
        slow = simulate(cluster, protocol, n_updates, seed, message_bytes=message_bytes, engine="simpy")
        fast = simulate(cluster, protocol, n_updates, seed, message_bytes=message_bytes, engine="fast")
        context = f"scenario {i}: {cluster!r}, n_updates={n_updates}, message_bytes={message_bytes}"
        assert_same_trace(slow, fast, context)
        assert fast.n_updates == n_updates, context
        fast.validate()
        _, inverse, counts = np.unique(fast.t_apply, return_inverse=True, return_counts=True)
        if isinstance(protocol, Async):
            tied += int(np.sum(counts[inverse] > 1))
            total += len(fast)
    if isinstance(protocol, Async):
        assert tied / total > 0.2  # the scenarios really are full of simultaneous applies


@pytest.mark.parametrize("protocol, n_updates", [(Async(), 20_000), (Sync(), 600)], ids=["async", "sync"])
def test_fast_path_equals_simpy_with_64_exponential_workers(protocol, n_updates):
    cluster = Cluster(workers=64, compute=Exponential(mean=1.0), speeds=tuple(np.linspace(0.5, 2.0, 64)),
                      stragglers=(Straggler(worker=5, slowdown=7.0), Straggler(worker=63, slowdown=3.0)),
                      uplink=Exponential(mean=0.1), downlink=Exponential(mean=0.05),
                      network=Network(uplink_bandwidth=1e6), server=Server(slots=3))
    slow = simulate(cluster, protocol, n_updates, seed=11, message_bytes=8000, engine="simpy")
    fast = simulate(cluster, protocol, n_updates, seed=11, message_bytes=8000, engine="fast")
    assert_same_trace(slow, fast)
    assert fast.n_updates == n_updates
    fast.validate()


def test_fast_path_equals_simpy_with_per_worker_continuous_laws():
    laws = tuple(LogNormal(mu=0.0, sigma=s) for s in (0.25, 0.5, 1.0, 1.5, 2.0))
    cluster = Cluster(workers=5, compute=laws, uplink=Exponential(mean=0.2), downlink=Exponential(mean=0.2))
    for protocol, n_updates in ((Async(), 3000), (Sync(), 400)):
        slow = simulate(cluster, protocol, n_updates, seed=3, engine="simpy")
        fast = simulate(cluster, protocol, n_updates, seed=3, engine="fast")
        assert_same_trace(slow, fast, type(protocol).__name__)


def test_auto_engine_gives_the_simpy_trace():
    cluster = Cluster(workers=4, compute=Empirical(values=(1.0, 2.0)), uplink=Empirical(values=(0.0, 1.0)))
    for protocol in (Async(), Sync()):
        assert choose_engine(cluster, protocol, "auto") == "fast"
        assert_same_trace(simulate(cluster, protocol, 300, seed=5),
                          simulate(cluster, protocol, 300, seed=5, engine="simpy"))


BASE = dict(workers=3, compute=Exponential(mean=1.0))
NOT_INDEPENDENT = {
    "service": (Cluster(**BASE, server=Server(service=Exponential(mean=0.1))), "service"),
    "constant service": (Cluster(**BASE, server=Server(service=Constant(value=0.5), slots=2)), "service"),
    "failures": (Cluster(**BASE, failures=Failures(rate=0.1, downtime=Constant(value=1.0))), "failures"),
    "transient": (Cluster(**BASE, transient=Transient(mean_normal=1.0, mean_slow=1.0, slowdown=2.0)), "transient"),
}


@pytest.mark.parametrize("name", list(NOT_INDEPENDENT))
@pytest.mark.parametrize("protocol", [Async(), Sync()], ids=["async", "sync"])
def test_engine_fast_refuses_interacting_workers(name, protocol):
    cluster, word = NOT_INDEPENDENT[name]
    assert not cluster.independent
    with pytest.raises(ScenarioError, match="engine fast") as err:
        simulate(cluster, protocol, 10, seed=0, engine="fast")
    assert "interact" in str(err.value) and word in str(err.value)
    assert choose_engine(cluster, protocol, "auto") == "simpy"
    # auto falls back to SimPy and really runs
    assert simulate(cluster, protocol, 10, seed=0, engine="auto").validate().n_updates == 10


@pytest.mark.parametrize("protocol", [SSP(bound=1), Ringmaster(max_staleness=2), Rennala(batch=2),
                                      Periodic(local_steps=2), Periodic(local_steps=1),
                                      Periodic(local_steps=2, synchronous=True), KOfN(k=2),
                                      Deadline(deadline=1.0), AllReduce(latency=0.1)],
                         ids=lambda p: repr(p))
def test_engine_fast_refuses_other_protocols(protocol):
    cluster = Cluster(**BASE)
    assert cluster.independent
    with pytest.raises(ScenarioError, match="engine fast") as err:
        simulate(cluster, protocol, 5, seed=0, engine="fast")
    assert "protocol" in str(err.value)
    assert choose_engine(cluster, protocol, "auto") == "simpy"
    assert choose_engine(cluster, protocol, "simpy") == "simpy"


def test_engine_choice_on_an_independent_cluster_and_bad_engine_names():
    cluster = Cluster(**BASE, server=Server(service=Constant(value=0.0), slots=2))
    for protocol in (Async(), Sync()):
        assert choose_engine(cluster, protocol, "auto") == "fast"
        assert choose_engine(cluster, protocol, "fast") == "fast"
        assert choose_engine(cluster, protocol, "simpy") == "simpy"
    with pytest.raises(ScenarioError, match="engine must be one of"):
        simulate(cluster, Async(), 5, seed=0, engine="turbo")


def _write_compute_csv(path, rows, workers, seed=0):
    table = np.random.default_rng(seed).integers(1, 4, (rows, workers)).astype(float)
    np.savetxt(path, table, delimiter=",", fmt="%.1f")
    return table


def test_fast_path_equals_simpy_with_a_compute_trace(tmp_path):
    path = tmp_path / "compute.csv"
    _write_compute_csv(path, 300, 4)
    cluster = Cluster(workers=4, compute_trace=ComputeTrace(path=str(path), cycle=True),
                      uplink=Empirical(values=(0.0, 1.0)))
    for protocol, n_updates in ((Async(), 1500), (Sync(), 400)):  # both cycle through the file
        assert_same_trace(simulate(cluster, protocol, n_updates, seed=1, engine="simpy"),
                          simulate(cluster, protocol, n_updates, seed=1, engine="fast"), type(protocol).__name__)


@pytest.mark.parametrize("protocol", [Async(), Sync()], ids=["async", "sync"])
def test_fast_path_handles_a_short_non_cycling_compute_trace(tmp_path, protocol):
    path = tmp_path / "compute.csv"
    _write_compute_csv(path, 100, 3)  # 100 rows: enough for 60 updates in either protocol
    cluster = Cluster(workers=3, compute_trace=ComputeTrace(path=str(path), cycle=False))
    slow = simulate(cluster, protocol, 60, seed=0, engine="simpy")
    assert slow.step.max() < 100
    # the fast path draws whole blocks of 256 steps: steps past the end of the file must not be an error unless used
    assert choose_engine(cluster, protocol) == "fast"
    assert_same_trace(slow, simulate(cluster, protocol, 60, seed=0, engine="auto"))


@pytest.mark.parametrize("protocol, n_updates", [(Async(), 400), (Sync(), 150)], ids=["async", "sync"])
def test_a_non_cycling_compute_trace_too_short_for_the_run_fails_on_both_engines(tmp_path, protocol, n_updates):
    path = tmp_path / "compute.csv"
    _write_compute_csv(path, 100, 3)
    cluster = Cluster(workers=3, compute_trace=ComputeTrace(path=str(path), cycle=False))
    for engine in ("simpy", "fast"):
        with pytest.raises(ScenarioError, match="100 rows"):
            simulate(cluster, protocol, n_updates, seed=0, engine=engine)
