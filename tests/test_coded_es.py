"""coded_es: central differences on coded search directions.  The decoded U^T grad f against numpy's gradient of a
known quadratic on every straggler set, finite differences exact on quadratics (and not on a cubic), the iterates
the same under every straggler pattern and equal to the uncoded method's, the shipped scenario, the cost model,
one-line errors, and the reproduction failing on a broken decoder or a wrong cost."""

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

import asyncsim
from asyncsim import reproduce
from asyncsim.algorithms import coded_es as ces
from asyncsim.build import build, timing_model
from asyncsim.cli import main
from asyncsim.params import ScenarioError
from asyncsim.problems.quadratic import QuadraticProblem
from asyncsim.replay import algorithm_draws, replay
from asyncsim.theory import order_statistic_mean
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.codes import MDS, Uncoded
from asyncsim.timing.laws import LogNormal, scaled
from asyncsim.timing.protocols import Coded, Sync
from asyncsim.timing.trace import Status

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "seed003" / "coded_es.yaml"


def known_quadratic(d=12, seed=0):
    """f(x) = 1/2 (x - c)^T A (x - c) with A = M^T M + I and c given: grad f(x) = A (x - c), computed here by numpy."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((d, d))
    A = M.T @ M / d + np.eye(d)
    c = rng.standard_normal(d)
    return QuadraticProblem(A, c, 0.0), A, c


class Cubic:
    """f(x) = sum_i x_i^3 / 3: grad f = x^2, a central difference is off by h^2 sum_i u_i^3 / 3."""

    def __init__(self, d):
        self.dim = d

    def loss(self, x):
        return float(np.sum(x ** 3) / 3)


@pytest.mark.parametrize("n", [5, 8])
def test_the_decoded_vector_is_the_numpy_gradient_projected_on_the_subspace_for_every_straggler_set(n):
    problem, A, c = known_quadratic()
    x = np.random.default_rng(1).standard_normal(problem.dim)
    grad = A @ (x - c)  # independent of the problem class
    for k in range(1, n + 1):
        algorithm = ces.CodedES(lr=0.5, h=0.5, code=MDS(k=k)).bind(problem, n)
        key = 1000 + k
        U = ces.subspace(key, problem.dim, k)
        np.testing.assert_allclose(U.T @ U, np.eye(k), atol=1e-12)
        t = np.array([algorithm.local(x, ces.Task(w, n), problem, key)[0][0] for w in range(n)])
        G = np.vander(np.linspace(-1.0, 1.0, n), k, increasing=True)  # the (n, k) MDS generator, built here
        np.testing.assert_allclose(t, G @ (U.T @ grad), rtol=1e-10, atol=1e-10)
        truth = U.T @ grad
        for F in itertools.combinations(range(n), k):
            v = ces.decode(ces.encoding(algorithm.code, n)[list(F)], t[list(F)])
            np.testing.assert_allclose(v, truth, rtol=0, atol=1e-9 * np.abs(truth).max(), err_msg=str(F))
        if k > 1:  # one task short cannot decode
            with pytest.raises(ValueError, match="cannot decode"):
                ces.decode(ces.encoding(algorithm.code, n)[: k - 1], t[: k - 1])


def test_the_central_difference_is_exact_on_a_quadratic_for_any_h_and_not_on_a_cubic():
    problem, A, c = known_quadratic(d=9)
    x = np.random.default_rng(2).standard_normal(9)
    n = 4  # sync: identity code, worker j differentiates along column j of U
    U = ces.subspace(77, 9, n)
    for h in (1e-3, 0.1, 1.0, 100.0):
        algorithm = ces.CodedES(lr=1.0, h=h).bind(problem, n)
        t = [algorithm.local(x, ces.Task(j, n), problem, 77)[0][0] for j in range(n)]
        np.testing.assert_allclose(t, U.T @ (A @ (x - c)), rtol=1e-9, atol=1e-9 * (1 + h * h))
    cubic, h = Cubic(9), 0.5
    algorithm = ces.CodedES(lr=1.0, h=h).bind(cubic, n)
    t = np.array([algorithm.local(x, ces.Task(j, n), cubic, 77)[0][0] for j in range(n)])
    np.testing.assert_allclose(t - U.T @ x ** 2, h * h * (U ** 3).sum(axis=0) / 3, atol=1e-12)
    assert np.abs(t - U.T @ x ** 2).max() > 1e-3  # the test can tell an inexact difference


def test_every_worker_of_a_step_draws_the_same_subspace_whatever_the_order():
    problem, _, _ = known_quadratic()
    algorithm = ces.CodedES(lr=1.0).bind(problem, 6)
    draws = algorithm_draws(algorithm, problem, seed=3)
    forward = [[draws(w, s) for s in (0, 1, 300)] for w in range(6)]
    again = algorithm_draws(algorithm, problem, seed=3)
    backward = [[again(w, s) for s in (300, 1, 0)][::-1] for w in reversed(range(6))][::-1]
    assert forward == backward and all(row == forward[0] for row in forward)
    assert len(set(forward[0])) == 3  # a new subspace every step
    assert algorithm_draws(algorithm, problem, seed=4)(0, 0) != forward[0][0]


def literal_loop(problem, x0, lr, keys, k, K):
    xs = [x0]
    for s in range(K):
        U = ces.subspace(keys(0, s), problem.dim, k)
        xs.append(xs[-1] - lr * (U @ (U.T @ problem.grad(xs[-1]))))
    return np.array(xs)


def test_the_iterates_are_the_same_under_every_straggler_pattern_and_equal_the_uncoded_methods():
    """(8, 3) MDS under four timing seeds (different stragglers every round), the algorithm's seed fixed: every
    version's loss and the final iterate equal those of sync on 3 workers (the uncoded method on the same subspaces)
    and of the literal loop x - lr U U^T grad f(x), to 1e-10."""
    from asyncsim.reproduce.coded_es import walk

    problem, _, _ = known_quadratic(d=10)
    x0, K, lr, k, seed = np.ones(10), 40, 0.5, 3, 11
    coded = ces.CodedES(lr=lr, h=0.3).resolve(Coded(code=MDS(k=k)))
    plain = ces.CodedES(lr=lr, h=0.3).resolve(Sync())
    reference = walk(simulate(Cluster(workers=k, compute=LogNormal(mu=0.0, sigma=1.0)), Sync(), K, seed=0),
                     plain, problem, x0, seed)
    literal = literal_loop(problem, x0, lr, algorithm_draws(plain.bind(problem, k), problem, seed), k, K)
    np.testing.assert_allclose(reference, literal, rtol=0, atol=1e-10)
    patterns = []
    for timing_seed in range(4):
        trace = simulate(Cluster(workers=8, compute=LogNormal(mu=0.0, sigma=1.0)), Coded(code=MDS(k=k)), K,
                         seed=timing_seed)
        used = trace.used()
        patterns.append(tuple(tuple(used.worker[used.update == u]) for u in range(K)))
        xs = walk(trace, coded, problem, x0, seed)
        result = replay(trace, coded, problem, x0, seed, record_every=1)
        np.testing.assert_array_equal(result.x, xs[-1])  # the walk is the package's replay
        np.testing.assert_allclose(xs, reference, rtol=0, atol=1e-10)
        np.testing.assert_allclose(result.metrics["loss"], [problem.loss(x) for x in reference], rtol=1e-10)
    assert len(set(patterns)) == 4 and len({p for run in patterns for p in run}) >= 20


def test_the_shipped_scenario_runs_converges_and_times_rounds_by_the_kth_order_statistic():
    s = asyncsim.load_scenario(SCENARIO)
    assert s.algorithm.code == MDS(k=6)
    result = asyncsim.run(s)
    sub = result.metrics["suboptimality"]
    assert sub.iloc[-1] < 1e-6 * sub.iloc[0]
    assert (result.trace.status == int(Status.CANCELLED)).sum() == 4 * (result.summary.updates - 1)
    # a task is one pair of function values: 2 gradients' flops over flops_per_second, times a compute draw
    built = build(s)
    pair = 2 * built.problem.grad_flops() / s.cluster.flops_per_second
    rounds = np.diff(result.trace.update_times())
    predicted = order_statistic_mean(scaled(s.cluster.compute, pair), 6, n=10)
    assert abs(rounds.mean() - predicted) <= 4 * rounds.std(ddof=1) / math.sqrt(len(rounds))
    # the uncoded method on 6 workers has the same iterates, and waits for the slowest of 6
    uncoded = asyncsim.run(asyncsim.load_scenario(SCENARIO, ["protocol={kind: sync}", "cluster.workers=6"]))
    np.testing.assert_allclose(uncoded.x, result.x, rtol=0, atol=1e-10)
    np.testing.assert_allclose(uncoded.metrics["loss"], result.metrics["loss"], rtol=1e-10)
    assert uncoded.summary.simulated_time > 1.5 * result.summary.simulated_time


def test_a_worker_step_is_one_evaluation_pair_and_the_coded_job_k_of_them():
    s = asyncsim.load_scenario(SCENARIO)
    built = build(s)
    pair = 2 * built.problem.grad_flops()
    n = s.cluster.workers
    assert built.algorithm.work(built.problem, n) == 6 * pair  # the job: k pairs; the protocol's load 1/k
    assert ces.CodedES(lr=1.0).resolve(Sync()).work(built.problem, n) == pair
    assert ces.CodedES(lr=1.0).resolve(Coded(code=Uncoded())).work(built.problem, n) == n * pair
    # the task time the simulation uses: a compute draw times one pair over flops_per_second
    timing = timing_model(built)
    load = s.protocol.code.load(n)
    assert timing.cluster.factors[0] * load == pytest.approx(pair / s.cluster.flops_per_second, rel=1e-12)


MISTAKES = {
    "a gradient code": (["protocol.code={kind: cyclic, s: 2}"],
                        r"protocol.code.kind must be mds or uncoded for algorithm coded_es: .*, got 'cyclic'"),
    "k above the dimension": (["protocol.code={kind: mds, k: 8}", "problem.dim=7"],
                              r"protocol.code.k must be <= problem.dim \(7\) for algorithm coded_es: .*, got 8"),
    "more uncoded workers than the dimension": (
        ["protocol={kind: sync}", "problem.dim=7"],
        r"cluster.workers must be <= problem.dim \(7\) for algorithm coded_es without an mds code: .*, got 10"),
    "an asynchronous protocol": (["protocol={kind: async}"],
                                 r"protocol.kind must be one of sync, allreduce, coded(, [a-z_]+)* for algorithm "
                                 r"coded_es, got 'async'"),
    "failures": (["cluster.failures={rate: 0.01, downtime: {kind: constant, value: 1.0}}"],
                 r"cluster.failures must be null for algorithm coded_es: .*"),
    "a step size": (["algorithm.lr=-1"], r"algorithm.lr must be > 0, got -1.0"),
    "a difference step": (["algorithm.h=0"], r"algorithm.h must be finite and > 0, got 0.0"),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_mistakes_are_one_line_errors(name, tmp_path, capsys):
    overrides, pattern = MISTAKES[name]
    with pytest.raises(ScenarioError) as info:
        asyncsim.load_scenario(SCENARIO, overrides)
    message = str(info.value)
    assert re.fullmatch(pattern, message) and "\n" not in message, message
    args = ["validate", str(SCENARIO)] + [a for o in overrides for a in ("--set", o)]
    assert main(args) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_apply_refuses_tasks_of_different_subspaces():
    problem, _, _ = known_quadratic()
    algorithm = ces.CodedES(lr=1.0, code=MDS(k=2)).bind(problem, 4)
    from asyncsim.algorithms.base import ApplyInfo

    with pytest.raises(ValueError, match="different subspaces"):
        algorithm.apply(np.zeros(problem.dim), [(1.0, 5), (2.0, 6)], ApplyInfo.at(3, (0, 1), (3, 3)))


# -- the reproduction fails when the decoder or the cost model is wrong --------------------------------------------

def small(tmp_path):
    data = yaml.safe_load((Path(reproduce.directory()) / "coded-es.yaml").read_text())
    data["quick"] = {"exact_workers": [5], "iterate_ks": [2], "timing_seeds": 2, "iterations": 15,
                     "time_workers": 8, "time_ks": [2, 5], "rounds": 3000}
    path = tmp_path / "coded-es.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_small_reproduction_passes_and_fails_with_a_broken_decoder_or_a_wrong_cost(tmp_path, monkeypatch,
                                                                                        capsys):
    path = small(tmp_path)
    assert main(["reproduce", path, "--out", str(tmp_path / "right"), "--no-plots"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("PASS: decoded U^T grad f exact")

    true_decode = ces.decode
    with monkeypatch.context() as m:  # a decoder off by one part in a million
        m.setattr(ces, "decode", lambda G_F, values: true_decode(G_F, values) * (1 + 1e-6))
        assert main(["reproduce", path, "--out", str(tmp_path / "decoder"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: decoded U^T grad f exact to 1e-09") and "worst 1.0e-06" in last

    with monkeypatch.context() as m:  # a step that forgets the job is k pairs (a task would be 1/k of a pair)
        m.setattr(ces.CodedES, "work", lambda self, problem, n: 2.0 * problem.grad_flops())
        assert main(["reproduce", path, "--out", str(tmp_path / "cost"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: ") and "iteration time E[T_(k:n)]" in last
    worst = re.search(r"and 1% \(worst ([0-9.]+)% at k = 5\)", last)  # k = 5: a round takes 1/5 of the prediction
    assert worst and 78 < float(worst.group(1)) < 82, last

