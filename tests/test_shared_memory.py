"""Shared memory with inconsistent reads: hand-derived schedules, the mixed iterate against a brute-force per-block
reconstruction, and equality with consistent reads when reads take no time."""

from dataclasses import dataclass, field, replace

import numpy as np

import asyncsim
import pytest

from asyncsim.algorithms import SGD
from asyncsim.params import ScenarioError
from asyncsim.problems import LeastSquares, Quadratic
from asyncsim.problems.base import block_bounds
from asyncsim.replay import replay
from asyncsim.rng import BLOCK, Stream, generator
from asyncsim.scenario import from_dict
from asyncsim.timing import Cluster, Straggler, simulate
from asyncsim.timing.laws import Constant, Exponential, Uniform
from asyncsim.timing.protocols import Async
from asyncsim.timing.shared_memory import SerialAsync, SharedMemory
from asyncsim.timing.trace import Trace

SEED = 3


def test_hand_derived_schedule_with_a_tie_between_a_write_and_a_block_read():
    # w0 computes 1.0, w1 1.5, reads take 0.5 and are split into 2 blocks read at the start and at the end.
    # w0: read [0, .5], done 1.5 -> update 0 at 1.5; w1: read [0, .5], done 2.0 -> update 1 at 2.0.
    # w0 reads [1.5, 2.0]: block 0 at 1.5 sees update 0 (version 1); block 1 at 2.0 sees update 1, applied at
    # the same instant (applies before reads): version 2.  Done 3.0 -> update 2.  w1 reads [2.0, 2.5]: version 2
    # in both blocks, done 4.0 -> update 3.  w0 reads [3.0, 3.5]: version 3, done 4.5 -> update 4.
    cluster = Cluster(workers=2, compute=(Constant(value=1.0), Constant(value=1.5)))
    t = simulate(cluster, SharedMemory(read=Constant(value=0.5), blocks=2), 5, SEED).validate()
    assert t.worker.tolist() == [0, 1, 0, 1, 0]
    assert t.read_version.tolist() == [0, 0, 1, 2, 3]
    assert t.read_end.tolist() == [0, 0, 2, 2, 3]
    assert t.t_read.tolist() == [0.0, 0.0, 1.5, 2.0, 3.0]
    assert t.t_read_end.tolist() == [0.5, 0.5, 2.0, 2.5, 3.5]
    assert t.t_apply.tolist() == [1.5, 2.0, 3.0, 4.0, 4.5]
    # one block is read at the start of the read: every read is then consistent
    one = simulate(cluster, SharedMemory(read=Constant(value=0.5), blocks=1), 5, SEED)
    assert one.read_end.tolist() == one.read_version.tolist() == [0, 0, 1, 2, 3]


@dataclass(frozen=True, kw_only=True)
class Spy(SGD):
    """SGD that also sends the iterate it computed on, and keeps what the server saw (versions and reads)."""

    seen: dict = field(default_factory=dict, compare=False)

    def local(self, snapshot, worker_state, problem, draw):
        return (problem.grad(snapshot, draw), snapshot.copy()), worker_state

    def apply(self, server_state, messages, info):
        (grad, snapshot), = messages
        self.seen[info.update] = snapshot
        return server_state - self.lr * grad


def brute_force_reads(trace: Trace, versions: list, dim: int) -> dict:
    """x_hat of every update from all stored versions: block b is read at its instant and takes the version made by
    every update applied at or before it (a plain loop, independent of the replay's searchsorted plan)."""
    bounds = block_bounds(dim, trace.read_blocks)
    B = trace.read_blocks
    out = {}
    for j in range(len(trace)):
        t0, t1 = trace.t_read[j], trace.t_read_end[j]
        x_hat = np.empty(dim)
        for b in range(B):
            at = t0 if B == 1 else np.linspace(t0, t1, B)[b]
            v = sum(1 for u in range(trace.n_updates) if trace.t_apply[u] <= at and u < trace.update[j])
            x_hat[bounds[b]:bounds[b + 1]] = versions[v][bounds[b]:bounds[b + 1]]
        out[int(trace.update[j])] = x_hat
    return out


@pytest.mark.parametrize("workers, blocks, dim, read", [
    (4, 7, 13, Exponential(mean=0.7)),     # uneven blocks, random read times
    (6, 20, 20, Uniform(low=0.0, high=2.0)),  # one coordinate per block, long reads
    (3, 1, 5, Constant(value=0.5)),        # a single block
])
def test_mixed_iterate_equals_brute_force_per_block_reconstruction(workers, blocks, dim, read):
    problem = Quadratic(dim=dim, noise=0.1).build(generator(SEED, Stream.DATA))
    cluster = Cluster(workers=workers, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=0, slowdown=4.0),))
    trace = simulate(cluster, SharedMemory(read=read, blocks=blocks), 300, SEED).validate()
    if blocks > 1:
        assert trace.inconsistent and (trace.read_end > trace.read_version).mean() > 0.2
    spy = Spy(lr=0.05)
    res = replay(trace, spy, problem, np.ones(dim), SEED)
    # every version, rebuilt from the iterates the server saw and each (worker, step)'s keyed gradient noise
    versions = [np.ones(dim)]
    for k in range(trace.n_updates):
        j = int(np.flatnonzero(trace.update == k)[0])
        w, s = int(trace.worker[j]), int(trace.step[j])
        noise = problem.sample_batches(generator(SEED, Stream.ALGORITHM, w, s // BLOCK), BLOCK, 32)[s % BLOCK]
        versions.append(versions[-1] - 0.05 * problem.grad(spy.seen[k], noise))
    assert np.array_equal(versions[-1], res.x)
    expected = brute_force_reads(trace, versions, dim)
    for k in range(trace.n_updates):
        assert np.array_equal(spy.seen[k], expected[k]), f"update {k}"
    # Lian et al.'s form: x_hat_k = x_k - sum over the updates a block missed of (x_{j+1} - x_j), per block
    k = int(np.argmax(trace.read_end - trace.read_version)) if blocks > 1 else trace.n_updates - 1
    row = int(np.flatnonzero(trace.update == k)[0])
    lian = versions[k] - sum(((versions[j + 1] - versions[j]) * missed(trace, row, j, dim))
                             for j in range(trace.read_version[row], k))
    np.testing.assert_allclose(spy.seen[k], lian, atol=1e-12)


def missed(trace, row, j, dim):
    """Mask of the coordinates whose block was read before update j was applied."""
    bounds = block_bounds(dim, trace.read_blocks)
    at = np.linspace(trace.t_read[row], trace.t_read_end[row], trace.read_blocks)
    mask = np.zeros(dim)
    for b in range(trace.read_blocks):
        if at[b] < trace.t_apply[j]:
            mask[bounds[b]:bounds[b + 1]] = 1.0
    return mask


def test_zero_length_reads_replay_bit_for_bit_like_consistent_reads():
    problem = LeastSquares(n_samples=300, dim=12).build(generator(SEED, Stream.DATA))
    cluster = Cluster(workers=5, compute=Exponential(mean=1.0), stragglers=(Straggler(worker=1, slowdown=5.0),))
    shared = simulate(cluster, SharedMemory(read=Constant(value=0.0), blocks=12), 1500, SEED).validate()
    ps = simulate(cluster, Async(), 1500, SEED)
    assert not shared.inconsistent
    for col in ("update", "worker", "step", "read_version", "t_read", "t_apply"):
        assert np.array_equal(getattr(shared, col), getattr(ps, col)), col
    sgd = SGD(lr=0.02, batch_size=8)
    a = replay(shared, sgd, problem, np.zeros(12), SEED)
    b = replay(ps, sgd, problem, np.zeros(12), SEED)
    assert np.array_equal(a.x, b.x)
    assert a.metrics.equals(b.metrics)


def test_inconsistent_reads_change_the_numbers():
    problem = Quadratic(dim=10).build(generator(SEED, Stream.DATA))
    cluster = Cluster(workers=4, compute=Exponential(mean=1.0))
    trace = simulate(cluster, SharedMemory(read=Exponential(mean=1.0), blocks=10), 200, SEED)
    assert trace.inconsistent
    flat = replace(trace, read_end=trace.read_version)  # as if every block saw the first version
    x0 = np.ones(10)
    assert not np.array_equal(replay(trace, SGD(lr=0.1), problem, x0, SEED).x,
                              replay(flat, SGD(lr=0.1), problem, x0, SEED).x)


def test_trace_keeps_read_columns_through_parquet(tmp_path):
    trace = simulate(Cluster(workers=3, compute=Exponential(mean=1.0)),
                     SharedMemory(read=Exponential(mean=0.5), blocks=6), 100, SEED)
    trace.save(tmp_path / "t.parquet")
    back = Trace.load(tmp_path / "t.parquet")
    assert back.read_blocks == 6
    for col in ("read_version", "read_end", "t_read", "t_read_end"):
        assert np.array_equal(getattr(back, col), getattr(trace, col))


def test_serial_async_schedule_by_hand():
    # tau = 3 fast updates by workers 0, 1 in turn, then the slow worker 2 on the iterate after its last update
    t = simulate(Cluster(workers=3, compute=Constant(value=1.0)), SerialAsync(tau=3), 12, SEED).validate()
    assert t.worker.tolist() == [0, 1, 0, 2, 1, 0, 1, 2, 0, 1, 0, 2]
    assert t.read_version.tolist() == [0, 1, 2, 0, 4, 5, 6, 4, 8, 9, 10, 8]
    assert t.staleness.max() == 3 and (t.staleness[t.worker == 2] == 3).all()
    assert (t.staleness[t.worker != 2] == 0).all()


SCENARIO = {
    "name": "sm", "problem": {"kind": "least_squares", "n_samples": 100, "dim": 8},
    "cluster": {"workers": 2, "compute": {"kind": "exponential", "mean": 1.0}}, "protocol": {"kind": "shared_memory", "read": {"kind": "constant", "value": 0.1}},
    "algorithm": {"kind": "sgd", "lr": 0.01}, "run": {"updates": 10},
}


def test_scenario_resolves_one_block_per_coordinate_and_checks_the_cluster():
    s = from_dict(SCENARIO)
    assert s.protocol.blocks == 8 and s.to_dict()["protocol"]["blocks"] == 8
    with pytest.raises(ScenarioError, match=r"^protocol.blocks must be <= the problem's dim \(8\), got 9$"):
        from_dict(SCENARIO, ["protocol.blocks=9"])
    with pytest.raises(ScenarioError, match=r"^cluster.uplink must be 0 under protocol shared_memory"):
        from_dict(SCENARIO, ["cluster.uplink={kind: constant, value: 0.5}"])
    with pytest.raises(ScenarioError, match=r"^cluster.workers must be >= 2 under serial_async"):
        from_dict(SCENARIO, ["protocol={kind: serial_async, tau: 2}", "cluster.workers=1"])


def test_hogwild_and_asyscd_converge_under_inconsistent_reads(root):
    # AsySG-incon / Hogwild on sparse least squares (the example scenario), and AsySCD on a sparse quadratic
    s = asyncsim.load_scenario(root / "scenarios" / "protocols" / "shared_memory.yaml", ["run.updates=4000"])
    res = asyncsim.run(s)
    assert res.trace.inconsistent and res.summary["staleness"]["mean"] > 5
    assert res.metrics["suboptimality"].iloc[-1] < 0.1 * res.metrics["suboptimality"].iloc[0]
    cd = from_dict({**SCENARIO, "problem": {"kind": "sparse_quadratic", "dim": 60, "density": 0.05},
                    "cluster": {"workers": 4, "compute": {"kind": "exponential", "mean": 1.0}},
                    "protocol": {"kind": "shared_memory", "read": {"kind": "exponential", "mean": 1.0}},
                    "algorithm": {"kind": "asyscd", "gamma": 0.5, "lower": 0.0}, "run": {"updates": 12000}})
    res = asyncsim.run(cd)
    assert res.trace.inconsistent
    x = res.x
    assert x.min() >= 0.0
    # the projected problem's optimality (KKT) conditions: grad_i = 0 where x_i > 0, grad_i >= 0 where x_i = 0
    g = res.problem.grad(x)
    assert np.abs(g[x > 0]).max() < 1e-4 and g[x == 0].min() > -1e-4
