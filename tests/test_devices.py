"""Device profiles (``cluster.devices``): exact quotas spread over the workers, the hand-computed times of a
two-profile cluster, SimPy equal to the fast path with per-worker links, and the profiles that are refused."""

import itertools

import numpy as np
import pytest

from asyncsim.cli import main
from asyncsim.params import ParamError
from asyncsim.rng import Stream
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.cluster import Network
from asyncsim.timing.devices import Device, assign, quotas
from asyncsim.timing.durations import Durations
from asyncsim.timing.laws import Constant, Exponential, LogNormal
from asyncsim.timing.protocols import Async, Sync


@pytest.mark.parametrize("shares", [(0.5, 0.3, 0.2), (0.7, 0.2, 0.1), (1 / 3, 1 / 3, 1 / 3), (0.05, 0.95)])
def test_every_profile_gets_its_quota_and_every_prefix_is_near_the_mix(shares):
    devices = tuple(Device(name=f"d{i}", share=s) for i, s in enumerate(shares))
    for n in range(1, 61):
        of = assign(devices, n)
        quota = quotas(list(shares), n)
        assert sum(quota) == n and all(abs(q - s * n) < 1 for q, s in zip(quota, shares))
        assert [of.count(p) for p in range(len(shares))] == quota  # exactly the quotas
        for w in range(1, n + 1):  # every prefix within one worker of the mix
            assert all(abs(of[:w].count(p) - quota[p] * w / n) < 1 for p in range(len(shares)))


def test_two_profiles_give_the_hand_computed_times():
    """Constant compute 1 s, a 100-byte message.  Profile fast (speed 2, uplink 1,000 B/s): compute 0.5 s, upload
    0.1 s; slow (speed 0.5, the network's 500 B/s): compute 2 s, upload 0.2 s; both download at 1,000 B/s (0.1 s).
    Workers alternate fast, slow, fast, slow."""
    cluster = Cluster(workers=4, compute=Constant(value=1.0), network=Network(uplink_bandwidth=500.0,
                                                                               downlink_bandwidth=1000.0),
                      devices=(Device(name="fast", share=0.5, speed=2.0, uplink_bandwidth=1000.0),
                               Device(name="slow", share=0.5, speed=0.5)))
    assert cluster.device_of == (0, 1, 0, 1)
    assert cluster.factors == (0.5, 2.0, 0.5, 2.0)
    assert cluster.transfers(100) == ((0.1, 0.2, 0.1, 0.2), (0.1, 0.1, 0.1, 0.1))
    t = simulate(cluster, Sync(), 3, seed=0, message_bytes=100)
    first = t.update == 0
    np.testing.assert_allclose(t.t_done[first], [0.5, 2.0, 0.5, 2.0], rtol=0, atol=0)
    np.testing.assert_allclose(t.t_arrive[first], [0.6, 2.2, 0.6, 2.2], rtol=0, atol=1e-15)
    assert t.update_times()[1] == pytest.approx(2.2, abs=1e-15)  # the slow workers' arrival closes round 0
    second = t.update == 1  # round 1 reads after a 0.1 s download
    np.testing.assert_allclose(t.t_read[second], 2.3, rtol=0, atol=1e-12)


def test_simpy_equals_the_fast_path_with_per_worker_links():
    cluster = Cluster(workers=9, compute=LogNormal(mu=0.0, sigma=0.7), uplink=Exponential(mean=0.05),
                      downlink=Constant(value=0.02), network=Network(uplink_bandwidth=2e4),
                      devices=(Device(name="phone", share=0.6, speed=0.5, uplink_bandwidth=5e3, downlink_bandwidth=1e5),
                               Device(name="laptop", share=0.4, speed=2.0)))
    for protocol in (Async(), Sync()):
        a = simulate(cluster, protocol, 2000, seed=2, message_bytes=800, engine="simpy")
        b = simulate(cluster, protocol, 2000, seed=2, message_bytes=800, engine="fast")
        for col in ("update", "worker", "step", "read_version", "t_read", "t_done", "t_arrive", "t_apply"):
            np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)
    times = Durations(cluster, 2, 800)
    for w in (cluster.device_of.index(0), cluster.device_of.index(1)):  # the scalar and the block views agree
        assert times.block(Stream.UPLINK, w, 0)[5] == times.uplink(w, 5) > 0.04


def test_a_single_plain_profile_changes_nothing():
    """One profile of speed 1 and no bandwidths is no profile at all, bit for bit."""
    base = Cluster(workers=5, compute=Exponential(mean=1.0), uplink=Constant(value=0.1))
    same = Cluster(workers=5, compute=Exponential(mean=1.0), uplink=Constant(value=0.1),
                   devices=(Device(name="all", share=1.0),))
    a, b = simulate(base, Async(), 500, seed=1), simulate(same, Async(), 500, seed=1)
    np.testing.assert_array_equal(a.t_apply, b.t_apply)
    np.testing.assert_array_equal(a.worker, b.worker)


@pytest.mark.parametrize("devices, message", [
    ("[{name: a, share: 0.5}, {name: b, share: 0.4}]", "cluster.devices must have shares adding up to 1, got "
     "'shares adding up to 0.9'"),
    ("[{name: a, share: 0.5}, {name: a, share: 0.5}]", "cluster.devices must have distinct names, got ['a', 'a']"),
    ("[{name: a, share: 1.0, speed: 0}]", "cluster.devices[0].speed must be in [1e-100, 1e+100], got 0.0"),
    ("[{name: a, share: 1.0, uplink_bandwidth: -1}]", "cluster.devices[0].uplink_bandwidth must be >= 1e-100"),
    ("[]", "cluster.devices must list at least one profile (or be null), got []"),
    ("[{name: a, share: 1.0, ram: 4}]", "cluster.devices[0].ram is not a known key"),
])
def test_bad_profiles_are_one_line(root, tmp_path, capsys, devices, message):
    quick = str(root / "scenarios" / "quickstart.yaml")
    for command in (["validate", quick, "--set", f"cluster.devices={devices}"],
                    ["run", quick, "--set", f"cluster.devices={devices}", "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_a_devices_downlink_bandwidth_is_refused_with_compression(root, capsys):
    quick = str(root / "scenarios" / "quickstart.yaml")
    assert main(["validate", quick, "--set", "compression={kind: rand_k, k: 10}", "--set",
                 "cluster.devices=[{name: a, share: 1.0, downlink_bandwidth: 1000}]"]) == 2
    assert "cluster.network.downlink_bandwidth (and every device's) must be null with compression" in \
        capsys.readouterr().err
    with pytest.raises(ParamError):
        Device(name="x", share=0.0)
    assert list(itertools.accumulate(quotas([0.25, 0.25, 0.5], 3))) == [1, 2, 3]
