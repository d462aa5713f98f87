"""Distributed sketching: the sketches against their definitions (E[S^T S] = I, the Hadamard transform against
scipy, leverage-score probabilities), every closed form the reproductions judge against an independent Monte Carlo,
sketch_average and sketched_newton run from scenarios against hand computations with the same draws, one-line
errors for bad inputs, and a reproduction fed a wrong formula ends in FAIL."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import yaml

import asyncsim
from asyncsim import reproduce
from asyncsim.algorithms import Algorithm
from asyncsim.algorithms.sketching import SketchedNewton, effective_dimension
from asyncsim.theory import haar_sketch_error, ihs_contraction, sketch_and_solve_error
from asyncsim.cli import main
from asyncsim.params import ParamError, ScenarioError
from asyncsim.problems import Ridge
from asyncsim.rng import Stream, generator
from asyncsim.sketches import SKETCHES, fwht, leverage, leverage_scores, sampling_probabilities, sketch

# -- the sketches --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, n", [("gaussian", 8), ("hadamard", 8), ("hadamard", 6), ("uniform", 8),
                                     ("leverage", 8), ("hybrid", 8)])
def test_every_sketch_is_isotropic_in_expectation(name, n):
    """E[S^T S] = I_n, by Monte Carlo: S is read off as the sketch of A = I (hadamard on 6 rows pads to 8; leverage
    with unequal scores; hybrid samples 6 rows then projects to 4).  Every entry within 5 standard errors."""
    rng = np.random.default_rng(0)
    R, m = 10000, 4
    total, squares = np.zeros((n, n)), np.zeros((n, n))
    for _ in range(R):
        S, Sb = sketch(name, np.eye(n), np.zeros(n), m, rng, scores=np.arange(1.0, n + 1), rows=6)
        assert S.shape == (m, n) and Sb.shape == (m,)
        P = S.T @ S
        total += P
        squares += P * P
    mean = total / R
    se = np.sqrt(np.maximum(squares / R - mean**2, 0) / R)
    assert np.all(np.abs(mean - np.eye(n)) <= 5 * se + 1e-12), np.abs(mean - np.eye(n)).max()
    assert np.abs(mean - np.eye(n)).max() < 0.1


def test_a_sketch_applies_the_same_matrix_to_a_and_b():
    """(S A, S b) is one S: sketching [A b] column by column gives the same rows (same generator state)."""
    rng = np.random.default_rng(3)
    A, b = rng.standard_normal((20, 3)), rng.standard_normal(20)
    for name in SKETCHES:
        scores = np.arange(1.0, 21)
        SA, Sb = sketch(name, A, b, 5, np.random.default_rng(7), rows=10, scores=scores)
        SAb, _ = sketch(name, np.column_stack([A, b]), np.zeros(20), 5, np.random.default_rng(7), rows=10,
                        scores=scores)
        np.testing.assert_allclose(np.column_stack([SA, Sb]), SAb, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("N", [1, 2, 4, 8, 16, 64])
def test_the_fast_hadamard_transform_is_scipys_hadamard_matrix(N):
    X = np.random.default_rng(N).standard_normal((N, 3))
    before = X.copy()
    np.testing.assert_allclose(fwht(X), scipy.linalg.hadamard(N) @ X, atol=1e-12)
    np.testing.assert_allclose(fwht(X[:, 0]), scipy.linalg.hadamard(N) @ X[:, 0], atol=1e-12)
    assert np.array_equal(X, before)
    with pytest.raises(ParamError, match=r"^X must have a power of two rows, got 6$"):
        fwht(np.ones((6, 2)))


def test_leverage_sampling_probabilities_are_the_scores_over_d_and_are_what_it_samples():
    problem = Ridge(n_samples=300, dim=5, coherence=0.6).build(generator(0, Stream.DATA))
    scores = leverage_scores(problem.A)
    np.testing.assert_allclose(scores, problem.leverage, atol=1e-10)  # the construction's own scores
    assert abs(scores.sum() - 5) < 1e-10
    p = sampling_probabilities(scores)
    assert abs(p.sum() - 1) < 1e-12 and np.allclose(p, scores / 5)
    # the rows sampled from A = I reveal their indices and weights 1 / sqrt(m p_i)
    n, m, R = 6, 50, 400
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 15.0])
    q = sampling_probabilities(s)
    rng = np.random.default_rng(1)
    counts = np.zeros(n)
    for _ in range(R):
        S, _ = leverage(np.eye(n), np.zeros(n), m, rng, scores=s)
        idx = np.abs(S).argmax(axis=1)
        np.testing.assert_allclose(S[np.arange(m), idx], 1 / np.sqrt(m * q[idx]))
        counts += np.bincount(idx, minlength=n)
    freq = counts / (R * m)
    assert np.all(np.abs(freq - q) <= 5 * np.sqrt(q * (1 - q) / (R * m)))


# -- the closed forms against independent Monte Carlo --------------------------------------------------------------


def test_gaussian_sketch_and_solve_error_is_d_over_q_times_m_minus_d_minus_1():
    """Plain numpy (not asyncsim.sketches): S with N(0, 1/m) entries, x_S = argmin ||S A x - S b||; the mean of
    ||A (x_S - x*)||^2 / ||A x* - b||^2 is d / (m - d - 1), and the mean of 4 solutions has a quarter of it."""
    rng = np.random.default_rng(1)
    n, d, m, R = 200, 5, 20, 8000
    A, b = rng.standard_normal((n, d)) @ np.diag([1, 2, 3, 4, 50.0]), rng.standard_normal(n)
    x_star = np.linalg.lstsq(A, b, rcond=None)[0]
    r2 = np.sum((A @ x_star - b) ** 2)
    sols = np.array([np.linalg.lstsq(S @ A, S @ b, rcond=None)[0]
                     for S in (rng.standard_normal((m, n)) / np.sqrt(m) for _ in range(R))])
    for q in (1, 4):
        e = np.sum(((sols.reshape(-1, q, d).mean(axis=1) - x_star) @ A.T) ** 2, axis=1) / r2
        assert abs(e.mean() - sketch_and_solve_error(m, d, q)) <= 4 * e.std() / np.sqrt(e.size), (q, e.mean())
    assert sketch_and_solve_error(m, d, 4) == pytest.approx(5 / (4 * 14))


def test_haar_sketch_error_against_random_orthogonal_projections():
    """m rows of a uniformly random rotation (QR of a Gaussian matrix, signs fixed): d (n - m) / ((n - d) (m - d - 1))
    at a size where its proportional limit d (n - m) / ((n - d) (m - d)) is 11% off."""
    rng = np.random.default_rng(2)
    n, d, m, R = 40, 3, 12, 8000
    A, b = rng.standard_normal((n, d)), rng.standard_normal(n)
    x_star = np.linalg.lstsq(A, b, rcond=None)[0]
    r2 = np.sum((A @ x_star - b) ** 2)
    errors = []
    for _ in range(R):
        Q, R_ = np.linalg.qr(rng.standard_normal((n, m)))
        Q = Q * np.sign(np.diag(R_))  # Haar distributed columns
        x = np.linalg.lstsq(Q.T @ A, Q.T @ b, rcond=None)[0]
        errors.append(np.sum((A @ (x - x_star)) ** 2) / r2)
    errors = np.array(errors)
    predicted = haar_sketch_error(n, d, m)
    assert abs(errors.mean() - predicted) <= 4 * errors.std() / np.sqrt(R)
    assert abs(d * (n - m) / ((n - d) * (m - d)) / predicted - 1) > 0.1


def inverse_wisharts(rng, m, d, count):
    return [np.linalg.inv(G.T @ G) for G in (rng.standard_normal((count, m, d)) / np.sqrt(m))]


def test_the_step_corrected_inverse_is_unbiased_and_the_plain_one_is_not():
    """E[(m - d - 1) / m (A^T S^T S A / n)^{-1}] = (A^T A / n)^{-1} for Gaussian S (entrywise within 5 standard
    errors); without the factor the mean is m / (m - d - 1) times too large."""
    rng = np.random.default_rng(4)
    n, d, m, R = 30, 3, 12, 20000
    A = rng.standard_normal((n, d)) @ np.diag([1.0, 3.0, 10.0])
    H_inv = np.linalg.inv(A.T @ A / n)
    draws = np.array([np.linalg.inv((S @ A).T @ (S @ A) / n)
                      for S in rng.standard_normal((R, m, n)) / np.sqrt(m)])
    mu = (m - d - 1) / m
    mean, se = mu * draws.mean(axis=0), mu * draws.std(axis=0) / np.sqrt(R)
    assert np.all(np.abs(mean - H_inv) <= 5 * se)
    assert np.abs(mean / mu - H_inv).max() > 20 * se.max()


@pytest.mark.parametrize("q", [1, 3])
def test_the_newton_contractions_against_monte_carlo(q):
    """E ||(I - mu (1/q) sum_i W_i^{-1}) u||^2 for a unit u and W_i Wishart(m, I) / m: rho / q with the step
    correction, (1 - a)^2 + (c - a^2) / q without (``ihs_contraction``)."""
    rng = np.random.default_rng(5 + q)
    m, d, R = 14, 3, 20000
    u = np.eye(d)[0]
    for debias, mu in (("step", (m - d - 1) / m), ("none", 1.0)):
        ratios = []
        for _ in range(R):
            M = sum(inverse_wisharts(rng, m, d, q)) / q
            ratios.append(np.sum((u - mu * M @ u) ** 2))
        ratios = np.array(ratios)
        assert abs(ratios.mean() - ihs_contraction(m, d, q, debias)) <= 4 * ratios.std() / np.sqrt(R), debias
    rho = ((d + 1) * m - d * d - 2 * d + 1) / ((m - d) * (m - d - 3))
    assert ihs_contraction(m, d, q, "step") == pytest.approx(rho / q)


def test_the_surrogate_regularization_is_its_definition_and_removes_most_of_the_bias():
    """d_lambda = tr(H0 (H0 + lam I)^{-1}) (H0 = A^T A / n) as bind resolves it; mu = 1 - d_lambda / m and
    lam' = lam mu.  By Monte Carlo on Gaussian sketches, ||E[mu H^{1/2} H_i^{-1} H^{1/2}] - I|| is at least 4x
    smaller than without correction, and the shrunk lam' alone (mu = 1) is worse than no correction: in the
    normalization E[S^T S] = I the step factor is part of the rule."""
    problem = Ridge(n_samples=128, dim=12, lam=0.01, condition=100.0).build(generator(0, Stream.DATA))
    A, n, lam, m = problem.A, 128, 0.01, 16
    H0 = A.T @ A / n
    eig = np.linalg.eigvalsh(H0)
    d_lam = float(np.sum(eig / (eig + lam)))
    assert effective_dimension(problem.singular_values, n, lam) == pytest.approx(d_lam, rel=1e-10)
    assert effective_dimension(problem.singular_values, n, 0.0) == 12
    bound = SketchedNewton(rows=m, debias="surrogate").bind(problem)
    assert bound.d_lambda == pytest.approx(d_lam, rel=1e-10)
    mu, lam_s = bound.coefficients(12, lam)
    assert mu == pytest.approx(1 - d_lam / m) and lam_s == pytest.approx(lam * (1 - d_lam / m))
    w, V = np.linalg.eigh(H0 + lam * np.eye(12))
    root = V @ np.diag(np.sqrt(w)) @ V.T
    rng = np.random.default_rng(6)
    sums = {"none": 0, "surrogate": 0, "lam only": 0}
    R = 3000
    for S in rng.standard_normal((R, m, n)) / np.sqrt(m):
        G = (S @ A).T @ (S @ A) / n
        sums["none"] = sums["none"] + root @ np.linalg.inv(G + lam * np.eye(12)) @ root
        Z = root @ np.linalg.inv(G + lam_s * np.eye(12)) @ root
        sums["surrogate"] = sums["surrogate"] + mu * Z
        sums["lam only"] = sums["lam only"] + Z
    bias = {k: np.linalg.norm(v / R - np.eye(12), 2) for k, v in sums.items()}
    assert bias["surrogate"] * 4 <= bias["none"] < bias["lam only"], bias


# -- the algorithms as scenarios, against hand computations --------------------------------------------------------


def hand_sketch(seed, worker, step, m, A, b):
    """The Gaussian sketch of (worker, step): its seed is row ``step`` of the worker's first block of the
    ALGORITHM stream, and S has N(0, 1/m) entries drawn from it."""
    seeds = generator(seed, Stream.ALGORITHM, worker, 0).integers(0, 2**63 - 1, size=256, dtype=np.int64)
    S = np.random.default_rng(int(seeds[step])).standard_normal((m, len(b))) / np.sqrt(m)
    return S @ A, S @ b


def test_sketch_average_under_a_deadline_is_the_mean_of_every_solution_received():
    s = asyncsim.load_scenario(None, ["problem={kind: ridge, n_samples: 40, dim: 3, lam: 0.05}",
                                      "cluster={workers: 3, compute: {kind: exponential, mean: 1.0}}",
                                      "protocol={kind: deadline, deadline: 0.7}",
                                      "algorithm={kind: sketch_average, rows: 8}", "run={updates: 6}"])
    result = asyncsim.run(s)
    p = result.problem
    A, b, n = p.A, p.y, 40
    used = result.trace.used()
    assert len(set(np.bincount(used.update))) > 1  # the deadline keeps different numbers of solutions
    solutions, losses = [], [p.loss(result.metrics["loss"].index * 0 + np.zeros(3))[0] if False else None]
    losses = [p.loss(np.zeros(3))]
    for k in range(6):
        for j in np.flatnonzero(used.update == k):
            SA, Sb = hand_sketch(s.seed, int(used.worker[j]), int(used.step[j]), 8, A, b)
            solutions.append(np.linalg.solve(SA.T @ SA / n + 0.05 * np.eye(3), SA.T @ Sb / n))
        losses.append(p.loss(np.mean(solutions, axis=0)))
    np.testing.assert_allclose(result.x, np.mean(solutions, axis=0), rtol=1e-10)
    np.testing.assert_allclose(result.metrics["loss"], losses, rtol=1e-10)


@pytest.mark.parametrize("debias", ["none", "step", "surrogate"])
def test_sketched_newton_is_the_averaged_sketched_newton_step(debias):
    s = asyncsim.load_scenario(None, ["problem={kind: ridge, n_samples: 60, dim: 4, lam: 0.02, condition: 30}",
                                      "cluster={workers: 3, compute: {kind: exponential, mean: 1.0}}",
                                      "protocol={kind: sync}", "run={updates: 4}",
                                      f"algorithm={{kind: sketched_newton, rows: 12, debias: {debias}, lr: 0.9}}"])
    result = asyncsim.run(s)
    p = result.problem
    A, b, n, lam, m, d = p.A, p.y, 60, 0.02, 12, 4
    sv = np.linalg.svd(A, compute_uv=False)
    d_lam = float(np.sum(sv**2 / (sv**2 + n * lam)))
    mu, lam_s = {"none": (1.0, lam), "step": ((m - d - 1) / m, lam),
                 "surrogate": (1 - d_lam / m, lam * (1 - d_lam / m))}[debias]
    x = np.array(p.initial_point(generator(s.seed, Stream.INIT)), dtype=float)
    for t in range(4):
        g = A.T @ (A @ x - b) / n + lam * x
        steps = []
        for w in range(3):
            SA, _ = hand_sketch(s.seed, w, t, m, A, b)
            steps.append(np.linalg.solve(SA.T @ SA / n + lam_s * np.eye(d), g))
        x = x - 0.9 * mu * np.mean(steps, axis=0)
    np.testing.assert_allclose(result.x, x, rtol=1e-9, atol=1e-12)
    extra = result.summary.algorithm_extra
    assert extra["step_factor"] == pytest.approx(mu) and extra["sketch_lam"] == pytest.approx(lam_s)
    if debias == "surrogate":
        assert extra["d_lambda"] == pytest.approx(d_lam)


@pytest.mark.parametrize("name", ["hadamard", "uniform", "leverage", "hybrid"])
def test_every_sketch_runs_from_a_scenario_and_averaging_helps(name):
    s = asyncsim.load_scenario(None, ["problem={kind: ridge, n_samples: 300, dim: 5, lam: 0.0, coherence: 0.3}",
                                      "cluster={workers: 4, compute: {kind: exponential, mean: 1.0}}",
                                      "protocol={kind: async}", "run={updates: 60}",
                                      f"algorithm={{kind: sketch_average, rows: 40, sketch: {name}}}"])
    sub = asyncsim.run(s).metrics["suboptimality"].to_numpy()
    assert np.isfinite(sub).all() and sub[-1] < sub[1] / 3  # 60 solutions against one


def test_which_protocols_the_methods_accept():
    average, newton = Algorithm.registry.get("sketch_average"), Algorithm.registry.get("sketched_newton")
    assert {"async", "drain", "rennala", "sync", "k_of_n", "deadline", "allreduce"} <= set(average.protocols)
    assert not {"coded", "periodic", "shared_memory"} & set(average.protocols)
    assert {"sync", "k_of_n", "deadline", "allreduce"} <= set(newton.protocols)
    assert not {"async", "coded", "periodic", "shared_memory", "drain"} & set(newton.protocols)


BASE = ["problem={kind: ridge, n_samples: 200, dim: 10, lam: 0.0}", "protocol={kind: deadline, deadline: 1.0}",
        "run={updates: 5}"]


@pytest.mark.parametrize("changes, message", [
    (["algorithm={kind: sketch_average, rows: 20, sketch: foo}"],
     "algorithm.sketch must be one of gaussian, hadamard, uniform, leverage, hybrid, got 'foo'"),
    (["algorithm={kind: sketch_average, rows: 11}"],
     "algorithm.rows must be > problem.dim + 1 (11): the sketched Gram must be invertible and the Gaussian error "
     "d / (m - d - 1) finite, got 11"),
    (["algorithm={kind: sketch_average, rows: 201}"], "algorithm.rows must be <= problem.n_samples (200), got 201"),
    (["algorithm={kind: sketch_average, rows: 20, hybrid_rows: 50}"],
     "algorithm.hybrid_rows is only used by sketch hybrid (leave it out), got 50"),
    (["algorithm={kind: sketch_average, rows: 20, sketch: hybrid, hybrid_rows: 10}"],
     "algorithm.hybrid_rows must be >= rows (20), got 10"),
    (["algorithm={kind: sketch_average, rows: 20}", "problem={kind: quadratic, dim: 4}"],
     "problem.kind must be ridge or least_squares (dense data A, y and a ridge lam for the workers to sketch) for "
     "algorithm sketch_average, got 'quadratic'"),
    (["algorithm={kind: sketch_average, rows: 20}", "protocol={kind: coded, code: {kind: cyclic, s: 1}}"],
     "protocol.kind must be one of async, ssp, ringmaster, rennala, drain, sync, k_of_n, deadline, allreduce, "
     "serial_async, trace_file for algorithm sketch_average, got 'coded'"),
    (["algorithm={kind: sketched_newton, rows: 20}", "protocol={kind: async}"],
     "protocol.kind must be one of sync, k_of_n, deadline, allreduce for algorithm sketched_newton, got 'async'"),
    (["algorithm={kind: sketched_newton, rows: 20, debias: half}"],
     "algorithm.debias must be one of none, step, surrogate, got 'half'"),
    (["algorithm={kind: sketched_newton, rows: 11, debias: step}"],
     "algorithm.rows must be > problem.dim + 1 (11) for debias step (mu = (m - d - 1) / m > 0), got 11"),
    (["algorithm={kind: sketched_newton, rows: 9}"],
     "algorithm.rows must be >= problem.dim (10) when problem.lam is 0 (an invertible sketched Hessian), got 9"),
    (["algorithm={kind: sketched_newton, rows: 20, lr: 0}"], "algorithm.lr must be > 0, got 0.0"),
])
def test_bad_inputs_are_one_line_errors(changes, message):
    with pytest.raises(ScenarioError) as err:
        asyncsim.load_scenario(None, BASE + changes)
    assert str(err.value) == message


def test_a_surrogate_with_too_few_rows_is_refused_when_the_data_are_known(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "problem": {"kind": "ridge", "n_samples": 200, "dim": 20,
                                                             "lam": 1e-4, "condition": 2.0},
                                    "cluster": {"workers": 2, "compute": {"kind": "constant", "value": 1.0}},
                                    "protocol": {"kind": "sync"}, "run": {"updates": 3},
                                    "algorithm": {"kind": "sketched_newton", "rows": 18, "debias": "surrogate"}}))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: algorithm.rows must be > the effective dimension d_lambda (20)") and "\n" not in err
    assert err.endswith("for debias surrogate, got 18")


# -- a reproduction fed a wrong formula fails ----------------------------------------------------------------------


def small(tmp_path, name, **changes):
    data = yaml.safe_load((Path(reproduce.directory()) / f"{name}.yaml").read_text())
    data["quick"] = {**data.get("quick", {}), **changes}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_sketch_averaging_fails_with_a_wrong_formula(tmp_path, monkeypatch, capsys):
    from asyncsim.reproduce import sketch_averaging

    path = small(tmp_path, "sketch-averaging", n_samples=256, repeats=40, hadamard_repeats=4, rounds=60,
                 anytime_rounds=4, anytime_seeds=40, coherent_qs=[1, 4, 16], coherent_repeats=20)
    assert main(["reproduce", path, "--out", str(tmp_path / "right"), "--no-plots"]) == 0
    true_error = sketch_averaging.sketch_and_solve_error
    monkeypatch.setattr(sketch_averaging, "sketch_and_solve_error", lambda m, d, q=1: 1.2 * true_error(m, d, q))
    assert main(["reproduce", path, "--out", str(tmp_path / "wrong"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: Gaussian sketch-and-solve error within 3 standard errors")
    assert json.loads((tmp_path / "wrong" / "summary.json").read_text())["passed"] is False


def test_debiased_newton_fails_with_a_wrong_contraction(tmp_path, monkeypatch, capsys):
    from asyncsim.reproduce import debiased_newton

    path = small(tmp_path, "debiased-newton", qs=[1, 16], runs=[200, 40], none_runs=[100, 20], ridge_n_samples=128,
                 ridge_dim=12, ridge_rows=24, ridge_qs=[1, 64], ridge_runs=1)
    true_rho = debiased_newton.ihs_contraction
    monkeypatch.setattr(debiased_newton, "ihs_contraction",
                        lambda m, d, q=1, debias="step": true_rho(m, d, q, debias) * (1.25 if debias == "step" else 1))
    assert main(["reproduce", path, "--out", str(tmp_path / "wrong"), "--no-plots"]) == 1
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("FAIL: per-step contraction") and "worst -2" in last
