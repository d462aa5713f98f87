"""Gradients against central finite differences, and the optima against independent solutions."""

import numpy as np
import pytest

from asyncsim.problems import LeastSquares, Logistic, Quadratic, Ridge
from asyncsim.rng import Stream, generator

SPECS = [LeastSquares(n_samples=200, dim=7, noise=0.3), Logistic(n_samples=300, dim=6, l2=0.01),
         Quadratic(dim=5, mu=0.1, L=3.0, noise=0.5), Ridge(n_samples=120, dim=6, lam=0.05, coherence=0.9)]


def fd_grad(f, x, h=1e-6):
    e = np.eye(len(x))
    return np.array([(f(x + h * e[i]) - f(x - h * e[i])) / (2 * h) for i in range(len(x))])


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: type(s).__name__)
def test_full_gradient_matches_finite_differences(spec):
    p = spec.build(generator(0, Stream.DATA))
    x = np.random.default_rng(1).standard_normal(p.dim)
    np.testing.assert_allclose(p.grad(x), fd_grad(p.loss, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: type(s).__name__)
def test_minibatch_gradient_is_the_gradient_of_the_minibatch_loss(spec):
    p = spec.build(generator(0, Stream.DATA))
    idx = p.sample_batches(np.random.default_rng(2), 1, 16)[0]
    sub = type(p)(p.A[idx], p.y[idx], *([p.l2] if hasattr(p, "l2") else []))
    x = np.random.default_rng(3).standard_normal(p.dim)
    np.testing.assert_allclose(p.grad(x, idx), fd_grad(sub.loss, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("spec", SPECS[:2], ids=lambda s: type(s).__name__)
def test_minibatch_gradients_average_to_the_full_gradient(spec):
    p = spec.build(generator(0, Stream.DATA))
    x = np.random.default_rng(4).standard_normal(p.dim)
    every_sample = np.arange(p.n_samples)
    np.testing.assert_allclose(p.grad(x, every_sample), p.grad(x), rtol=1e-12, atol=1e-14)


def test_quadratic_noise_has_the_chosen_variance_and_zero_mean():
    p = Quadratic(dim=4, noise=2.0).build(generator(0, Stream.DATA))
    batches = p.sample_batches(np.random.default_rng(0), 50_000, 16)
    x = np.ones(4)
    g = np.array([p.grad(x, b) for b in batches[:2000]])
    np.testing.assert_allclose(g.mean(0), p.grad(x), atol=0.05)
    assert batches.var() == pytest.approx(4.0 / 16, rel=0.02)
    assert p.sample_batches(np.random.default_rng(0), 3, 16).shape == (3, 4)
    exact = Quadratic(dim=4).build(generator(0, Stream.DATA))
    np.testing.assert_array_equal(exact.grad(x, exact.sample_batches(np.random.default_rng(0), 1, 8)[0]), exact.grad(x))


def test_quadratic_spectrum_is_the_chosen_one():
    p = Quadratic(dim=6, mu=0.01, L=2.0).build(generator(5, Stream.DATA))
    np.testing.assert_allclose(np.linalg.eigvalsh(p.H), np.geomspace(0.01, 2.0, 6), rtol=1e-10)
    q = Quadratic(dim=3, eigenvalues=(3.0, 1.0, 2.0)).build(generator(5, Stream.DATA))
    np.testing.assert_allclose(np.linalg.eigvalsh(q.H), [1.0, 2.0, 3.0], rtol=1e-12)
    assert q.optimal_loss == 0.0 and q.smoothness == pytest.approx(3.0)


def test_least_squares_optimum_solves_the_normal_equations():
    p = LeastSquares(n_samples=100, dim=5, noise=0.5).build(generator(0, Stream.DATA))
    x_star = np.linalg.solve(p.A.T @ p.A, p.A.T @ p.y)
    np.testing.assert_allclose(p.optimum, x_star, rtol=1e-10)
    assert np.linalg.norm(p.grad(p.optimum)) < 1e-12
    assert p.smoothness == pytest.approx(np.linalg.eigvalsh(p.A.T @ p.A / 100)[-1])


def test_logistic_optimum_is_stationary_and_minimal():
    p = Logistic(n_samples=400, dim=5, l2=0.05).build(generator(1, Stream.DATA))
    assert np.linalg.norm(p.grad(p.optimum)) < 1e-10
    rng = np.random.default_rng(0)
    assert all(p.loss(p.optimum + 0.01 * rng.standard_normal(5)) > p.optimal_loss for _ in range(20))
    assert Logistic(l2=0.0).build(generator(1, Stream.DATA)).optimum is None


def test_problem_data_depend_only_on_the_seed():
    a = LeastSquares().build(generator(3, Stream.DATA))
    b = LeastSquares().build(generator(3, Stream.DATA))
    c = LeastSquares().build(generator(4, Stream.DATA))
    assert np.array_equal(a.A, b.A) and np.array_equal(a.y, b.y) and not np.array_equal(a.A, c.A)


def test_logistic_newton_reaches_its_tolerance_where_the_loss_cannot_tell_steps_apart():
    """Nearly separable data (small l2, strong signal): near the optimum the loss changes below its rounding, so
    a line search on it stalls; Newton must still reach a gradient norm of 1e-12 (seed 2 stalled with one BLAS
    thread, the thread count every run pins)."""
    from threadpoolctl import threadpool_limits

    from asyncsim.problems.logistic import Logistic
    from asyncsim.rng import Stream, generator

    with threadpool_limits(1):
        for seed in range(4):
            problem = Logistic(n_samples=2000, dim=100, l2=1e-4, signal=10.0).build(generator(seed, Stream.DATA))
            assert np.linalg.norm(problem.grad(problem.optimum)) < 1e-12


@pytest.mark.parametrize("coherence", [0.0, 0.5, 0.95])
def test_ridge_has_its_spectrum_leverage_and_optimum(coherence):
    """The construction against independent computations: the singular values by an SVD, the leverage scores by a
    QR of A (||Q_i||^2), the optimum by the normal equations' stationarity, L by the largest eigenvalue."""
    spec = Ridge(n_samples=300, dim=8, lam=0.01, condition=100.0, coherence=coherence)
    p = spec.build(generator(2, Stream.DATA))
    s = np.linalg.svd(p.A, compute_uv=False)
    np.testing.assert_allclose(s, np.sqrt(300) * np.geomspace(1.0, 0.01, 8), rtol=1e-10)
    Q, _ = np.linalg.qr(p.A)
    np.testing.assert_allclose(p.leverage, np.einsum("ij,ij->i", Q, Q), atol=1e-12)
    assert p.leverage.sum() == pytest.approx(8.0)
    if coherence:
        np.testing.assert_allclose(p.leverage[:8], coherence, atol=1e-12)  # the coherent rows
        assert p.leverage[8:].max() < coherence  # and the rest share what is left
    assert np.linalg.norm(p.grad(p.optimum)) < 1e-12
    H = p.A.T @ p.A / 300 + 0.01 * np.eye(8)
    assert p.smoothness == pytest.approx(np.linalg.eigvalsh(H).max(), rel=1e-12)
