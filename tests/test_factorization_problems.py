"""Matrix factorization, NMF, sparse quadratic and sparse least squares: gradients against finite differences,
partial gradients against the full one, known optima, the image loader, determinism and parameter errors."""

import numpy as np
import pytest

import asyncsim.problems.factorization as fz
from asyncsim.params import ParamError, ScenarioError, build
from asyncsim.problems import (NMF, MatrixFactorization, ProblemSpec, SparseLeastSquares, SparseLeastSquaresProblem,
                               SparseQuadratic)
from asyncsim.problems.base import block_bounds
from asyncsim.problems.factorization import load_image
from asyncsim.rng import Stream, generator

SPECS = {
    "mf": MatrixFactorization(m=5, n=4, rank=3, true_rank=2, noise=0.1),
    "mf_square": MatrixFactorization(),
    "nmf": NMF(m=6, n=5, rank=3, true_rank=2, noise=0.1),
    "nmf_image": NMF(data="image", downsample=60, rank=3),  # 10 x 9 pixels
    "sparse_quadratic": SparseQuadratic(dim=30, density=0.2),
    "sparse_least_squares": SparseLeastSquares(n_samples=40, dim=12, nnz_per_row=3),
}
FACTORIZATIONS = ["mf", "mf_square", "nmf", "nmf_image"]


def make(name, seed=0):
    return SPECS[name].build(generator(seed, Stream.DATA))


def readonly(x):
    x = np.array(x, dtype=np.float64)
    x.flags.writeable = False
    return x


def random_point(p, seed=1):
    return readonly(np.random.default_rng(seed).uniform(0.1, 1.0, p.dim))  # positive: NMF's feasible set


def fd_grad(f, x, h=1e-6):
    e = np.eye(len(x))
    return np.array([(f(x + h * e[i]) - f(x - h * e[i])) / (2 * h) for i in range(len(x))])


@pytest.mark.parametrize("name", SPECS)
def test_full_gradient_matches_finite_differences(name):
    p = make(name)
    x = random_point(p)
    np.testing.assert_allclose(p.grad(x), fd_grad(p.loss, x), rtol=1e-6, atol=1e-8)


def test_matrix_factorization_gradient_is_the_mean_squared_error_one():
    p = make("mf")
    U, F = p.unpack(random_point(p))
    R = p.S - U @ F
    assert p.loss(p.pack(U, F)) == pytest.approx(np.mean(R ** 2), rel=1e-13)
    g = p.grad(p.pack(U, F))
    np.testing.assert_allclose(g[:U.size], (-2 / R.size * R @ F.T).ravel(), rtol=1e-13)
    np.testing.assert_allclose(g[U.size:], (-2 / R.size * U.T @ R).ravel(), rtol=1e-13)
    # the seed's per-element averaged gradient is m * dMSE/dU and n * dMSE/dF
    np.testing.assert_allclose((-2 / p.n * R @ F.T).ravel(), p.m * g[:U.size], rtol=1e-13)


def test_nmf_gradient_is_lee_and_seungs():
    p = make("nmf")
    W, H = p.unpack(random_point(p))
    E = W @ H - p.A
    assert p.loss(p.pack(W, H)) == pytest.approx(0.5 * np.sum(E ** 2), rel=1e-13)
    np.testing.assert_allclose(p.grad(p.pack(W, H)), np.concatenate([(E @ H.T).ravel(), (W.T @ E).ravel()]),
                               rtol=1e-13)


def test_sparse_least_squares_minibatch_gradient_is_that_of_the_minibatch_loss():
    p = make("sparse_least_squares")
    batch = p.sample_batches(np.random.default_rng(2), 1, 7)[0]
    sub = SparseLeastSquaresProblem(p.A[batch], p.y[batch])
    x = random_point(p)
    np.testing.assert_allclose(p.grad(x, batch), fd_grad(sub.loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(p.grad(x, np.arange(p.n_samples)), p.grad(x), rtol=1e-12, atol=1e-14)


def slices(dim, split, n, rng, count=60):
    """Random contiguous slices, plus those that straddle the boundary of the two factors or a row of the right
    one, the whole vector, and Python's slice forms."""
    out = [slice(i, i + 1) for i in range(dim)]
    out += [slice(split - 1, split + 1), slice(split - 2, split + n + 1), slice(split - 1, dim), slice(0, split + 1),
            slice(split + n - 1, split + n + 1), slice(split + 1, split + n + 2), slice(None), slice(-3, None),
            slice(0, dim), slice(split, split)]
    for _ in range(count):
        a, b = sorted(rng.integers(0, dim + 1, 2))
        out.append(slice(a, b + 1))
    return out


@pytest.mark.parametrize("name", FACTORIZATIONS)
def test_factorization_partial_gradient_is_the_sliced_gradient_without_a_full_gradient(name, monkeypatch):
    p = make(name)
    x = random_point(p, seed=3)
    full = p.grad(x)
    split = p.m * p.rank
    monkeypatch.setattr(p, "grad", lambda *a, **k: pytest.fail("partial_grad computed the full gradient"))
    for s in slices(p.dim, split, p.n, np.random.default_rng(4)):
        np.testing.assert_allclose(p.partial_grad(x, s), full[s], rtol=1e-12, atol=1e-15, err_msg=str(s))
    assert p.partial_grad(x, slice(2, 2)).shape == (0,)


def test_sparse_quadratic_partial_gradient_is_the_sliced_gradient_bit_for_bit():
    p = make("sparse_quadratic")
    x = random_point(p)
    full = p.grad(x)
    for s in slices(p.dim, p.dim // 2, 5, np.random.default_rng(6)) + [slice(0, p.dim, 2)]:
        np.testing.assert_array_equal(p.partial_grad(x, s), full[s], err_msg=str(s))


def test_deterministic_problems_have_empty_minibatches_and_refuse_others():
    for name in FACTORIZATIONS + ["sparse_quadratic"]:
        p = make(name)
        batches = p.sample_batches(np.random.default_rng(0), 4, 32)
        assert batches.shape == (4, 0)
        x = random_point(p)
        np.testing.assert_array_equal(p.grad(x, batches[0]), p.grad(x))
        with pytest.raises(ValueError, match="must be empty"):
            p.grad(x, np.array([1, 2]))


@pytest.mark.parametrize("spec", [MatrixFactorization(m=6, n=4, rank=2, true_rank=2),
                                  NMF(m=7, n=5, rank=3, true_rank=3)], ids=["mf", "nmf"])
def test_the_true_factors_of_noiseless_data_have_zero_loss(spec):
    p = spec.build(generator(2, Stream.DATA))
    assert p.loss(p.true_point) == 0.0
    assert p.optimal_loss == pytest.approx(0.0, abs=1e-24)
    assert np.all(p.grad(p.true_point) == 0)
    if isinstance(spec, NMF):
        assert p.relative_error(p.true_point) == 0.0 and np.all(p.true_point >= 0)


def test_matrix_factorization_optimum_is_the_truncated_svd():
    p = MatrixFactorization(m=6, n=5, rank=2, true_rank=4, noise=0.3).build(generator(1, Stream.DATA))
    sigma = np.linalg.svd(p.S, compute_uv=False)
    assert p.optimal_loss == pytest.approx(np.sum(sigma[2:] ** 2) / p.S.size, rel=1e-10)
    assert np.linalg.norm(p.grad(p.optimum)) < 1e-12
    assert p.true_point is None  # the generating factors have rank 4, not 2
    wide = MatrixFactorization(m=3, n=4, rank=5, true_rank=3, noise=0.1).build(generator(1, Stream.DATA))
    assert wide.optimal_loss == pytest.approx(0.0, abs=1e-25)  # over-parameterized: S is fitted exactly


def test_initial_points_are_random_with_the_chosen_scale():
    mf = MatrixFactorization(m=30, n=20, rank=4, init_scale=0.5).build(generator(0, Stream.DATA))
    x0 = mf.initial_point(generator(0, Stream.INIT))
    assert x0.shape == (mf.dim,) and mf.dim == 30 * 4 + 4 * 20
    assert np.std(x0) == pytest.approx(0.5, rel=0.1)
    assert not np.array_equal(x0, mf.initial_point(generator(1, Stream.INIT)))
    np.testing.assert_array_equal(x0, mf.initial_point(generator(0, Stream.INIT)))

    nmf = NMF(m=50, n=40, rank=5, noise=0.5).build(generator(0, Stream.DATA))
    w0 = nmf.initial_point(generator(0, Stream.INIT))
    assert np.all(w0 >= 0) and np.all(nmf.A >= 0)
    assert nmf.init_scale == pytest.approx(2 * np.sqrt(nmf.A.mean() / 5))
    assert nmf.reconstruction(w0).mean() == pytest.approx(nmf.A.mean(), rel=0.2)
    fixed = NMF(m=5, n=4, rank=2, true_rank=2, init_scale=0.01).build(generator(0, Stream.DATA))
    assert 0 <= fixed.initial_point(generator(0, Stream.INIT)).max() < 0.01


def test_image_loader_gives_the_grayscale_photograph():
    img = load_image()
    assert img.shape == (600, 512) and img.ndim == 2
    assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.05
    assert not img.flags.writeable
    assert load_image() is img  # cached per process
    half = load_image(2)
    assert half.shape == (300, 256) == fz.image_shape(2)
    np.testing.assert_array_equal(half, img[::2, ::2])
    import matplotlib.cbook
    import matplotlib.image
    rgb = matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert img[123, 45] == pytest.approx(rgb[123, 45].astype(float).mean() / 255, abs=1e-15)


def test_image_nmf_uses_the_downsampled_photograph_and_checks_the_rank():
    p = NMF(data="image", downsample=8, rank=4).build(generator(0, Stream.DATA))
    np.testing.assert_array_equal(p.A, load_image(8))
    assert (p.m, p.n, p.dim) == (75, 64, 4 * (75 + 64))
    assert p.relative_error(np.zeros(p.dim)) == 1.0
    assert p.optimum is None
    NMF(data="image", rank=334)  # the seed experiment's largest rank fits the 600 x 512 image
    with pytest.raises(ParamError, match=r"^rank must be in \[1, min\(m, n\) = 256\] for the image downsampled by 2"):
        NMF(data="image", downsample=2, rank=257)


def test_missing_image_is_one_clear_line(monkeypatch):
    import matplotlib.cbook
    monkeypatch.setattr(matplotlib.cbook, "get_sample_data", lambda *a, **k: "/nonexistent/grace_hopper.jpg")
    fz._read_image.cache_clear()
    fz.load_image.cache_clear()
    try:
        with pytest.raises(ScenarioError) as err:
            load_image(3)
        msg = str(err.value)
        assert msg.startswith("problem.data: image needs") and "grace_hopper.jpg" in msg and "\n" not in msg
    finally:
        fz._read_image.cache_clear()
        fz.load_image.cache_clear()


def test_sparse_quadratic_structure_optimum_and_smoothness():
    spec = SparseQuadratic(dim=40, density=0.1, dominance=1.5)
    p = spec.build(generator(3, Stream.DATA))
    Q = p.Q.toarray()
    np.testing.assert_array_equal(Q, Q.T)
    off = np.abs(Q - np.diag(np.diag(Q))).sum(1)
    np.testing.assert_allclose(np.diag(Q), 1 + 1.5 * off, rtol=1e-14)
    assert np.count_nonzero(np.triu(Q, 1)) == round(0.1 * 40 * 39 / 2)
    assert np.linalg.norm(p.grad(p.optimum)) < 1e-10
    np.testing.assert_allclose(p.optimum, np.linalg.solve(Q, p.b), rtol=1e-10)
    eig = np.linalg.eigvalsh(Q)
    assert eig[0] >= 1 - 1e-12
    assert p.smoothness == pytest.approx(eig[-1], rel=1e-12)
    np.testing.assert_array_equal(p.block_smoothness(np.arange(41)), np.diag(Q))
    assert p.block_smoothness(np.array([0, 40]))[0] == pytest.approx(p.smoothness, rel=1e-12)
    bounds = block_bounds(40, 6)
    expected = [np.linalg.eigvalsh(Q[a:b, a:b])[-1] for a, b in zip(bounds[:-1], bounds[1:])]
    np.testing.assert_allclose(p.block_smoothness(bounds), expected, rtol=1e-12)
    assert p.grad_flops() == 2 * np.count_nonzero(Q)
    x = random_point(p)
    assert p.loss(x) == pytest.approx(0.5 * x @ Q @ x - p.b @ x, rel=1e-12)
    diagonal = SparseQuadratic(dim=5, density=0.0).build(generator(0, Stream.DATA))
    np.testing.assert_array_equal(diagonal.Q.toarray(), np.eye(5))


def test_sparse_smoothness_uses_lanczos_beyond_the_dense_size():
    p = SparseQuadratic(dim=520, density=0.005).build(generator(0, Stream.DATA))
    dense = p.Q.toarray()
    assert p.smoothness == pytest.approx(np.linalg.eigvalsh(dense)[-1], rel=1e-10)
    assert p.block_smoothness(np.array([0, 520]))[0] == pytest.approx(p.smoothness, rel=1e-10)


def test_sparse_least_squares_gradient_support_and_optimum():
    p = make("sparse_least_squares")
    A = p.A.toarray()
    assert np.all(np.count_nonzero(A, axis=1) == 3)
    batches = p.sample_batches(np.random.default_rng(0), 20, 4)
    assert batches.shape == (20, 4) and batches.min() >= 0 and batches.max() < p.n_samples
    x = random_point(p)
    for batch in batches:
        g = p.grad(x, batch)
        support = p.support(batch)
        np.testing.assert_array_equal(np.flatnonzero(g), support)
        np.testing.assert_array_equal(support, np.flatnonzero(np.abs(A[batch]).sum(0)))
        r = A[batch] @ x - p.y[batch]
        np.testing.assert_allclose(g, A[batch].T @ r / len(batch), rtol=1e-12, atol=1e-15)
    assert len(p.support(batches[0])) < p.dim  # the sparsity Hogwild exploits
    np.testing.assert_allclose(p.optimum, np.linalg.lstsq(A, p.y, rcond=None)[0], rtol=1e-9, atol=1e-12)
    assert np.linalg.norm(p.grad(p.optimum)) < 1e-12
    assert p.smoothness == pytest.approx(np.linalg.norm(A, 2) ** 2 / p.n_samples, rel=1e-12)
    np.testing.assert_allclose(p.block_smoothness(np.arange(p.dim + 1)), (A ** 2).sum(0) / p.n_samples, rtol=1e-13)
    assert p.block_smoothness(np.array([0, p.dim]))[0] == pytest.approx(p.smoothness, rel=1e-12)
    assert p.grad_flops() == 4 * 40 * 3


def test_grad_flops_count_the_dense_products():
    assert make("mf").grad_flops() == 6 * 5 * 4 * 3
    assert make("nmf").grad_flops() == 6 * 6 * 5 * 3
    assert make("mf").smoothness is None and make("mf").block_smoothness(np.array([0, 1])) is None


def data_of(p):
    if hasattr(p, "Q"):
        return [p.Q.data, p.Q.indices, p.b]
    if hasattr(p, "A") and hasattr(p, "support"):
        return [p.A.data, p.A.indices, p.y]
    return [p.target]


@pytest.mark.parametrize("name", SPECS)
def test_problem_data_depend_only_on_the_seed(name):
    a, b, c = make(name, seed=7), make(name, seed=7), make(name, seed=8)
    for u, v in zip(data_of(a), data_of(b)):
        np.testing.assert_array_equal(u, v)
    if name != "nmf_image":  # the photograph does not depend on the seed
        assert any(not np.array_equal(u, v) for u, v in zip(data_of(a), data_of(c)) if u.shape == v.shape)


@pytest.mark.parametrize("cls, kwargs, field", [
    (MatrixFactorization, {"m": 0}, "m"),
    (MatrixFactorization, {"rank": 0}, "rank"),
    (MatrixFactorization, {"true_rank": 11}, "true_rank"),
    (MatrixFactorization, {"noise": -1.0}, "noise"),
    (MatrixFactorization, {"init_scale": 0.0}, "init_scale"),
    (NMF, {"data": "photo"}, "data"),
    (NMF, {"rank": 41}, "rank"),
    (NMF, {"true_rank": 0}, "true_rank"),
    (NMF, {"downsample": 0}, "downsample"),
    (NMF, {"init_scale": -1.0}, "init_scale"),
    (NMF, {"noise": -0.1}, "noise"),
    (SparseQuadratic, {"dim": 0}, "dim"),
    (SparseQuadratic, {"density": 1.5}, "density"),
    (SparseQuadratic, {"dominance": 0.5}, "dominance"),
    (SparseLeastSquares, {"nnz_per_row": 1001}, "nnz_per_row"),
    (SparseLeastSquares, {"n_samples": 0}, "n_samples"),
    (SparseLeastSquares, {"noise": -1.0}, "noise"),
])
def test_bad_parameters_give_one_line_naming_the_field(cls, kwargs, field):
    with pytest.raises(ParamError) as err:
        cls(**kwargs)
    msg = str(err.value)
    assert msg.startswith(f"{field} must") and ", got " in msg and "\n" not in msg


def test_specs_load_from_scenario_mappings():
    spec = build(ProblemSpec, {"kind": "nmf", "data": "image", "downsample": 4, "rank": 10}, "problem")
    assert spec == NMF(data="image", downsample=4, rank=10)
    assert build(ProblemSpec, {"kind": "sparse_quadratic", "dim": 50}, "problem") == SparseQuadratic(dim=50)
    with pytest.raises(ScenarioError, match=r"^problem\.rank must be in \[1, min\(m, n\) = 2\]"):
        build(ProblemSpec, {"kind": "nmf", "m": 2, "n": 3, "rank": 3, "true_rank": 1}, "problem")
    with pytest.raises(ScenarioError, match=r"^problem\.nnz_per_row must be in \[1, dim = 5\], got 6$"):
        build(ProblemSpec, {"kind": "sparse_least_squares", "dim": 5, "nnz_per_row": 6}, "problem")
