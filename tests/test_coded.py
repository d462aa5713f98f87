"""The coded protocol: codes against linear algebra on every subset, a hand-derived event log with ties, MDS
against k_of_n bit for bit, and the round time of Lee et al.'s load-scaled model against its closed form."""

import itertools
import math

import numpy as np
import pytest

import asyncsim
from asyncsim.params import ScenarioError
from asyncsim.timing import Cluster, Server, simulate
from asyncsim.timing.codes import MDS, Cyclic, FractionalRepetition, Repetition, Uncoded
from asyncsim.timing.laws import Constant, Exponential, LogNormal, ShiftedExponential
from asyncsim.timing.protocols import Coded, KOfN
from asyncsim.timing.trace import Status

COLUMNS = ("update", "worker", "step", "read_version", "round", "status", "t_read", "t_done", "t_arrive", "t_apply")


def codes_for(n):
    yield Uncoded()
    for r in range(1, n + 1):
        if n % r == 0:
            yield Repetition(r=r)
            yield FractionalRepetition(s=r - 1)
    for k in range(1, n + 1):
        yield MDS(k=k)
    for s in range(n):
        yield Cyclic(s=s)


@pytest.mark.parametrize("n", range(1, 9))
def test_every_code_decodes_exactly_the_subsets_that_linear_algebra_allows(n):
    """Exhaustively: for every code and every set F of finished tasks, the code's rule says decodable exactly when
    the job is recoverable from B_F, and then the decoding a satisfies a^T B_F = 1 (the sum of the parts)."""
    for code in codes_for(n):
        B = code.matrix(n)
        # a task's load: its share of the parts; an MDS task is one coded block of the k (Lee et al.)
        share = 1 / code.k if isinstance(code, MDS) else np.count_nonzero(B, axis=1) / B.shape[1]
        assert B.shape[0] == n and np.allclose(code.load(n), share)
        for size in range(n + 1):
            for F in itertools.combinations(range(n), size):
                rule = code.decodes(frozenset(F), n)
                assert rule == code.solvable(B[list(F)]), (code, F)
                if rule:
                    a = code.decoding(F, n)
                    np.testing.assert_allclose(a @ B[list(F)], 1.0, atol=1e-9)
        if code.waits_for(n) is not None:  # the stated count: every set that large decodes, none smaller does
            k = code.waits_for(n)
            assert all(code.decodes(frozenset(F), n) for F in itertools.combinations(range(n), k))
            assert not any(code.decodes(frozenset(F), n) for F in itertools.combinations(range(n), k - 1))


def test_the_cyclic_code_is_gradient_coding_for_every_straggler_set():
    """Tandon et al.: with n = 7 and s = 3, each task covers s + 1 = 4 parts and every one of the C(7, 3) = 35
    straggler sets leaves tasks whose weighted sum is the full gradient, on random gradients."""
    n, s = 7, 3
    code = Cyclic(s=s)
    B = code.matrix(n)
    assert (np.count_nonzero(B, axis=1) == s + 1).all() and code.load(n) == 4 / 7
    g = np.random.default_rng(0).standard_normal((n, 5))  # the gradients of the 7 parts
    tasks = B @ g
    for stragglers in itertools.combinations(range(n), s):
        F = [i for i in range(n) if i not in stragglers]
        a = code.decoding(F, n)
        np.testing.assert_allclose(a @ tasks[F], g.sum(axis=0), atol=1e-9)


def rows(trace):
    return [tuple(r) for r in zip(*(getattr(trace, c).tolist() for c in COLUMNS))]


def test_coded_hand_derived_event_log_with_ties():
    """Repetition r = 2 on 4 workers (groups {0, 1}, {2, 3}), each task half the job: tasks take 0.5, 1, 1, 1.5 s.
    Round 0: worker 0 at 0.5 covers group 0; at 1.0 workers 1 and 2 arrive together, 1 first (worker order), and 2
    completes group 1, so the round closes at 1.0 with tasks 0, 1, 2; worker 3 is cancelled at 1.0.  Round 1 is
    the same one second later (its cancelled task is never logged: the run ends at that close)."""
    cluster = Cluster(workers=4, compute=(Constant(value=1.0), Constant(value=2.0), Constant(value=2.0),
                                          Constant(value=3.0)))
    trace = simulate(cluster, Coded(code=Repetition(r=2)), 2, seed=0).validate()
    A, C = int(Status.APPLIED), int(Status.CANCELLED)
    assert rows(trace) == [
        (0, 0, 0, 0, 0, A, 0.0, 0.5, 0.5, 1.0), (0, 1, 0, 0, 0, A, 0.0, 1.0, 1.0, 1.0),
        (0, 2, 0, 0, 0, A, 0.0, 1.0, 1.0, 1.0),
        (1, 0, 1, 1, 1, A, 1.0, 1.5, 1.5, 2.0), (1, 1, 1, 1, 1, A, 1.0, 2.0, 2.0, 2.0),
        (1, 2, 1, 1, 1, A, 1.0, 2.0, 2.0, 2.0), (1, 3, 0, 0, 0, C, 0.0, 1.0, 1.0, 1.0)]


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_mds_rounds_are_k_of_n_bit_for_bit(k):
    """An (8, k) MDS task is 1/k of the job; on a cluster whose workers are k times faster, k_of_n has the same
    times (x * (1/k) == x / k exactly for k a power of two), links and a busy server included."""
    laws = dict(compute=LogNormal(mu=0.0, sigma=0.6), uplink=Exponential(mean=0.05), downlink=Exponential(mean=0.05),
                server=Server(service=Constant(value=0.01)))
    coded = simulate(Cluster(workers=8, **laws), Coded(code=MDS(k=k)), 400, seed=3)
    plain = simulate(Cluster(workers=8, speeds=(float(k),) * 8, **laws), KOfN(k=k), 400, seed=3)
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(coded, col), getattr(plain, col), err_msg=col)


def harmonic(n):
    return math.fsum(1.0 / i for i in range(1, n + 1))


@pytest.mark.parametrize("code, formula", [
    (Uncoded(), lambda n, mu: (1 + harmonic(n) / mu) / n),
    (MDS(k=5), lambda n, mu: (1 + (harmonic(n) - harmonic(n - 5)) / mu) / 5),
])
def test_round_time_follows_lee_et_al(code, formula):
    """A task of load l takes l (1 + E/mu), E ~ Exp(1) (compute law: shifted exponential, shift 1, scale 1/mu):
    uncoded E[T] = (1/n)(1 + H_n/mu), (n, k) MDS E[T] = (1/k)(1 + (H_n - H_{n-k})/mu) (Lee et al. 2018)."""
    n, mu, K = 10, 2.0, 20_000
    cluster = Cluster(workers=n, compute=ShiftedExponential(shift=1.0, scale=1 / mu))
    rounds = np.diff(simulate(cluster, Coded(code=code), K, seed=5).update_times())
    assert abs(rounds.mean() - formula(n, mu)) <= 4 * rounds.std() / math.sqrt(K)


def test_coded_scenario_mistakes_are_one_line():
    with pytest.raises(ScenarioError, match=r"^cluster.workers must be a multiple of the code's group size 3, got 8"):
        asyncsim.load_scenario(None, ["protocol={kind: coded, code: {kind: repetition, r: 3}}"])
    with pytest.raises(ScenarioError, match=r"^protocol.code.k must be <= cluster.workers \(8\), got 9"):
        asyncsim.load_scenario(None, ["protocol={kind: coded, code: {kind: mds, k: 9}}"])
    with pytest.raises(ScenarioError, match=r"^protocol.code.kind must be one of cyclic, fractional_repetition, mds, repetition, "
                                            r"uncoded; got 'turbo'"):
        asyncsim.load_scenario(None, ["protocol={kind: coded, code: {kind: turbo}}"])


def gd_loop(problem, x0, lr, K):
    xs = [x0]
    for _ in range(K):
        xs.append(xs[-1] - lr * problem.grad(xs[-1]))
    return np.array(xs)


@pytest.mark.parametrize("code", [Uncoded(), Repetition(r=2), FractionalRepetition(s=3), MDS(k=5), Cyclic(s=3)],
                         ids=lambda c: type(c).__name__)
def test_coded_gd_is_gradient_descent_whatever_the_stragglers(code):
    """Every round decodes the full gradient from whichever tasks finished (the parts' gradient sums for a gradient
    code, the MDS-coded blocks of the product M x for mds): the iterates are gd's (a literal loop
    x_{k+1} = x_k - lr grad f(x_k)) to 1e-10 at every version, over many different straggler sets."""
    from asyncsim.algorithms import CodedGD
    from asyncsim.problems import Ridge
    from asyncsim.replay import replay
    from asyncsim.rng import Stream, generator

    problem = Ridge(n_samples=240, dim=6, lam=0.01, coherence=0.5).build(generator(0, Stream.DATA))
    x0, K, lr = np.ones(6), 60, 0.5 / problem.smoothness
    protocol = Coded(code=code)
    trace = simulate(Cluster(workers=8, compute=LogNormal(mu=0.0, sigma=1.0)), protocol, K, seed=2)
    used = trace.used()
    patterns = {tuple(used.worker[used.update == k]) for k in range(K)}
    assert len(patterns) >= (1 if isinstance(code, Uncoded) else 10)  # the stragglers change from round to round
    result = replay(trace, CodedGD(lr=lr).resolve(protocol), problem, x0, seed=0, record_every=1)
    got = np.array([result.x])  # the final iterate, and the loss at every version
    want = gd_loop(problem, x0, lr, K)
    np.testing.assert_allclose(got[0], want[-1], rtol=0, atol=1e-10)
    np.testing.assert_allclose(result.metrics["loss"], [problem.loss(x) for x in want], rtol=1e-10)


def test_coded_gd_runs_from_the_shipped_scenario_and_refuses_what_it_cannot_decode(root):
    result = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "protocols" / "coded.yaml"))
    assert result.metrics["suboptimality"].iloc[-1] < 1e-6 * result.metrics["suboptimality"].iloc[0]
    assert (result.trace.status == int(Status.CANCELLED)).sum() >= 2 * (result.summary.updates - 1)
    with pytest.raises(ScenarioError, match=r"^protocol.kind must be one of sync, allreduce, coded for algorithm "
                                            r"coded_gd, got 'async'"):
        asyncsim.load_scenario(root / "scenarios" / "protocols" / "coded.yaml", ["protocol={kind: async}"])
    with pytest.raises(ScenarioError, match=r"^problem.kind must be a finite sum of samples"):
        asyncsim.load_scenario(root / "scenarios" / "protocols" / "coded.yaml", ["problem={kind: quadratic, dim: 4}"])
    mds = ["protocol.code={kind: mds, k: 6}"]
    with pytest.raises(ScenarioError, match=r"^problem.kind must have a linear gradient M x - c \(quadratic, "
                                            r"least_squares, ridge\) for algorithm coded_gd with a mds code, .*, "
                                            r"got 'logistic'"):
        asyncsim.load_scenario(root / "scenarios" / "protocols" / "coded.yaml", mds + ["problem={kind: logistic}"])
    with pytest.raises(ScenarioError, match=r"^protocol.code.k must be <= problem.dim \(4\): .*, got 6"):
        asyncsim.load_scenario(root / "scenarios" / "protocols" / "coded.yaml",
                               mds + ["problem={kind: quadratic, dim: 4}"])
    coded = asyncsim.run(asyncsim.load_scenario(root / "scenarios" / "protocols" / "coded.yaml",
                                                mds + ["run.updates=40"]))
    assert coded.metrics["suboptimality"].iloc[-1] < 1e-3 * coded.metrics["suboptimality"].iloc[0]


@pytest.mark.parametrize("changes, task, decoding", [
    (["problem={kind: ridge, n_samples: 400, dim: 5}", "protocol={kind: sync}", "cluster.flops_per_second=8010.0"],
     0.25, 4 * 5 / 8010),  # uncoded: a quarter of a gradient's 4 N d + 2 d = 8010 flops; the sum of 4 results
    (["problem={kind: quadratic, dim: 6}", "protocol={kind: coded, code: {kind: mds, k: 2}}",
      "cluster.flops_per_second=72.0"], 0.5, (2 / 3 * 8 + 2 * 4 * 3) / 72),  # half of M x (2 d^2 = 72 flops); LU
])
def test_a_coded_task_is_its_load_of_the_job_and_decoding_is_charged_to_the_server(changes, task, decoding):
    """With cluster.flops_per_second a task takes its load of the job's flops (once: not its load squared) and each
    round ends with the server's decoding (``Code.decoding_flops``): constant draws make every round
    task + decoding seconds long."""
    scenario = asyncsim.load_scenario(None, ["cluster={workers: 4, compute: {kind: constant, value: 1.0}}",
                                             "algorithm={kind: coded_gd, lr: 0.1}", "run.updates=5"] + changes)
    times = asyncsim.run(scenario).trace.update_times()
    np.testing.assert_allclose(np.diff(times), task + decoding, rtol=1e-12)


@pytest.mark.parametrize("code", [Uncoded(), MDS(k=3), MDS(k=5), Cyclic(s=2), Repetition(r=2),
                                  FractionalRepetition(s=2)], ids=repr)
@pytest.mark.parametrize("law", [ShiftedExponential(shift=1.0, scale=0.5), LogNormal(mu=0.0, sigma=0.8)], ids=repr)
def test_coded_round_time_against_monte_carlo(code, law):
    """theory.coded_round_time against an independent Monte Carlo in numpy (200,000 rounds of 6 i.i.d. draws,
    loaded, and the decoding rule applied by hand: the m-th smallest, or the slowest group's fastest task), within
    4 standard errors; for the shifted exponential also against Lee et al.'s harmonic forms to 1e-12."""
    from asyncsim.theory import coded_round_time

    n, R = 6, 200_000
    X = law.sample(np.random.default_rng(11), n * R).reshape(R, n) * code.load(n)
    if isinstance(code, (Repetition, FractionalRepetition)):
        g = code.group
        T = X.reshape(R, n // g, g).min(axis=2).max(axis=1)
    else:
        T = np.sort(X, axis=1)[:, code.waits_for(n) - 1]
    predicted = coded_round_time(code, n, law)
    assert abs(T.mean() - predicted) <= 4 * T.std() / math.sqrt(R)
    if isinstance(law, ShiftedExponential):
        mu = 1 / law.scale
        lee = {Uncoded: lambda: (1 + harmonic(n) / mu) / n,
               MDS: lambda: (1 + (harmonic(n) - harmonic(n - code.k)) / mu) / code.k,
               Cyclic: lambda: (code.s + 1) / n * (1 + (harmonic(n) - harmonic(code.s)) / mu),
               Repetition: lambda: code.r / n * (1 + harmonic(n // code.r) / (code.r * mu)),
               FractionalRepetition: lambda: (code.s + 1) / n * (1 + harmonic(n // (code.s + 1)) / ((code.s + 1) * mu))}
        assert predicted == pytest.approx(lee[type(code)](), rel=1e-12)


def test_best_mds_k_by_enumeration_and_monte_carlo():
    """The exact best k minimizes (1/k)(1 + (H_n - H_{n-k})/mu); a paired Monte Carlo (the same draws for every k)
    finds the same k for cases whose optimum is not flat, and the gain over uncoded grows with n."""
    from asyncsim.theory import best_mds_k, coded_round_time

    for n, mu, want in [(8, 4.0, 7), (10, 2.0, 8), (8, 0.5, 5)]:
        law = ShiftedExponential(shift=1.0, scale=1 / mu)
        assert best_mds_k(n, law) == want
        assert want == 1 + int(np.argmin([(1 + (harmonic(n) - harmonic(n - k)) / mu) / k for k in range(1, n + 1)]))
        E = np.sort(np.random.default_rng(n).exponential(1.0, (100_000, n)), axis=1)
        means = [((1 + E[:, k - 1] / mu) / k).mean() for k in range(1, n + 1)]
        assert 1 + int(np.argmin(means)) == want
    law = ShiftedExponential(shift=1.0, scale=1.0)
    gains = [coded_round_time(Uncoded(), n, law) / coded_round_time(MDS(k=best_mds_k(n, law)), n, law)
             for n in (4, 8, 16, 30)]
    assert np.all(np.diff(gains) > 0)


def test_coded_without_a_code_is_one_line(root, tmp_path, capsys):
    from asyncsim.cli import main

    scenario = tmp_path / "s.yaml"
    scenario.write_text("name: c\nproblem: {kind: least_squares, n_samples: 200, dim: 5}\n"
                        "cluster: {workers: 4, compute: {kind: exponential, mean: 1.0}}\nprotocol: {kind: coded}\n"
                        "algorithm: {kind: coded_gd, lr: 0.1}\nrun: {updates: 5}\n")
    for command in (["validate", str(scenario)], ["run", str(scenario), "--out", str(tmp_path / "out")]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: protocol.code is required (a mapping with a kind: one of"), err
