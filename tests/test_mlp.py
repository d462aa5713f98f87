"""The multilayer perceptron problem and its data loaders: backpropagation against finite differences, losses
against hand-computed values, the parameter layout, Glorot initialization, IDX files and MNIST, scikit-learn's
digits, metrics, spec validation and an end-to-end SGD run."""

import gzip
import math
import struct
import sys

import numpy as np
import pytest

import asyncsim
from asyncsim.params import ParamError, ScenarioError, relative_to
from asyncsim.problems import MLP, MLPProblem
from asyncsim.problems import datasets as ds
from asyncsim.problems.datasets import MNIST_FILES, load_digits, load_mnist, read_idx, write_idx
from asyncsim.rng import Stream, generator
from asyncsim.scenario import from_dict

KINK_MARGIN = 1e-3


def readonly(x):
    x = np.array(x, dtype=np.float64)
    x.flags.writeable = False
    return x


def fd_grad(f, x, h=1e-6):
    e = np.eye(len(x))
    return np.array([(f(x + h * e[i]) - f(x - h * e[i])) / (2 * h) for i in range(len(x))])


def small_problem(activation="tanh", loss="cross_entropy", bias=True, hidden=(5, 4), seed=0, n=7):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 4))
    y = np.arange(n) % 3  # every class present
    return MLPProblem(X, y, X[:3], y[:3], hidden, activation, loss, bias)


def kink_distance(p, x):
    """How far the training samples' pre-activations are from the kinks of the activation and of the loss."""
    _, _, pre = p._forward(x, p.X_train)
    kinks = {"relu": (0.0,), "tanh": (), "hard_sigmoid": (0.0, 1.0)}[p.activation]
    out_kinks = (0.0, 1.0) if p.loss_kind == "hinge" else ()
    d = [np.abs(z - k).min() for z in pre[:-1] for k in kinks] + [np.abs(pre[-1] - k).min() for k in out_kinks]
    return min(d, default=np.inf)


def point_away_from_kinks(p, seed=1):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        x = readonly(rng.uniform(-1, 1, p.dim))
        if kink_distance(p, x) > KINK_MARGIN:
            return x
    raise AssertionError("no point away from the kinks")


# gradients ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["tanh", "relu", "hard_sigmoid"])
@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
@pytest.mark.parametrize("bias", [True, False])
def test_gradient_matches_finite_differences(activation, loss, bias):
    p = small_problem(activation, loss, bias)
    x = point_away_from_kinks(p)
    g = p.grad(x)
    assert g.shape == (p.dim,)
    np.testing.assert_allclose(g, fd_grad(p.loss, x), rtol=1e-5, atol=1e-7)
    assert np.abs(g).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_softmax_regression_gradient(activation):
    p = small_problem(activation, hidden=())
    assert p.sizes == (4, 3)
    x = point_away_from_kinks(p)
    np.testing.assert_allclose(p.grad(x), fd_grad(p.loss, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("loss", ["cross_entropy", "hinge"])
def test_minibatch_gradient_is_the_mean_of_per_sample_gradients(loss):
    p = small_problem("relu", loss)
    x = point_away_from_kinks(p)
    batch = np.array([0, 3, 3, 6])  # with a repeat, as drawn with replacement
    per_sample = np.mean([p.grad(x, np.array([i])) for i in batch], axis=0)
    np.testing.assert_allclose(p.grad(x, batch), per_sample, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(p.grad(x, np.arange(p.n_samples)), p.grad(x), rtol=1e-12, atol=1e-15)
    # and a one-sample gradient is that sample's finite-difference gradient
    one = MLPProblem(p.X_train[[3]], p.y_train[[3]], p.X_test, p.y_test, p.hidden, "relu", loss, n_classes=3)
    np.testing.assert_allclose(p.grad(x, np.array([3])), fd_grad(one.loss, x), rtol=1e-5, atol=1e-7)


def test_inputs_are_not_mutated():
    X = np.random.default_rng(0).standard_normal((6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    p = MLPProblem(X, y, X, y, (4,), "relu", "cross_entropy", True)
    assert X.flags.writeable and y.flags.writeable  # the caller's arrays keep their flags
    for a in (p.X_train, p.y_train, p.X_test, p.y_test):
        assert not a.flags.writeable
    assert p.X_train.dtype == np.float64 and p.y_train.dtype == np.int64
    x = readonly(np.random.default_rng(1).standard_normal(p.dim))
    before = x.copy()
    p.grad(x), p.grad(x, np.array([1, 2])), p.loss(x), p.metrics(x)
    np.testing.assert_array_equal(x, before)


# losses by hand -----------------------------------------------------------------------------------------------------

def hand_problem(loss):
    """2 samples, one layer (no hidden layer): z_i = W x_i + b with the scores worked out below."""
    X = np.array([[1.0, 0.0], [0.0, 2.0]])
    y = np.array([0, 2])
    p = MLPProblem(X, y, X, y, (), "relu", loss, True)
    W = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    b = np.array([0.5, 0.0, -0.5])
    return p, p.pack([(W, b)])  # z_1 = (1.5, 0, 0.5), z_2 = (0.5, 2, -2.5)


def test_cross_entropy_by_hand():
    p, x = hand_problem("cross_entropy")
    np.testing.assert_allclose(p.forward(x, p.X_train), [[1.5, 0.0, 0.5], [0.5, 2.0, -2.5]])
    c1 = math.log(math.exp(1.5) + math.exp(0.0) + math.exp(0.5)) - 1.5
    c2 = math.log(math.exp(0.5) + math.exp(2.0) + math.exp(-2.5)) + 2.5
    assert p.loss(x) == pytest.approx((c1 + c2) / 2, rel=1e-14)
    # stable for huge scores (no overflow in exp): the loss is then the score gap of the misclassified sample
    assert p.loss(1000 * x) == pytest.approx((0.0 + 1000 * 4.5) / 2, rel=1e-12)


def test_hinge_by_hand():
    p, x = hand_problem("hinge")
    # sample 1 (y = 0): max(0, 1 - 1.5) + max(0, 0) + max(0, 0.5) = 0.5
    # sample 2 (y = 2): max(0, 0.5) + max(0, 2) + max(0, 1 + 2.5) = 6
    assert p.loss(x) == pytest.approx(3.25, rel=1e-15)
    # the bias gradient is the mean of dC/dz: sample 1 (0, 0 at the kink z = 0, 1), sample 2 (1, 1, -1)
    W, b = p.unpack(p.grad(x))[0]
    np.testing.assert_allclose(b, [0.5, 0.5, 0.0])
    np.testing.assert_allclose(W, [[0.0, 1.0], [0.0, 1.0], [0.5, -1.0]])  # mean of dz_i x_i^T
    # b_1 = 0: z_1 = (1, 0, 0.5) puts the true class on its kink z = 1 and z_2 = (0, 2, -2.5) a wrong one on z = 0
    W, b = p.unpack(x)[0]
    at_kinks = p.pack([(W, b - [0.5, 0.0, 0.0])])
    np.testing.assert_array_equal(p.forward(at_kinks, p.X_train), [[1.0, 0.0, 0.5], [0.0, 2.0, -2.5]])
    np.testing.assert_allclose(p.unpack(p.grad(at_kinks))[0][1], [0.0, 0.5, 0.0])


@pytest.mark.parametrize("activation, z", [("relu", 0.0), ("hard_sigmoid", 0.0), ("hard_sigmoid", 1.0),
                                           ("hard_sigmoid", 1.5), ("hard_sigmoid", -0.5)])
def test_activation_derivative_is_zero_at_kinks_and_flats(activation, z):
    """One hidden unit with pre-activation exactly z: its incoming weights get no gradient (h'(z) = 0)."""
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1])
    p = MLPProblem(X, y, X, y, (2,), activation, "cross_entropy", True)
    # unit 0 has pre-activation z on both samples, unit 1 is x_1 + 0.5 (inside (0, 1): h' = 1)
    x = p.pack([(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([z, 0.5])), (np.ones((2, 2)) + np.eye(2), np.zeros(2))])
    (W1, b1), _ = p.unpack(p.grad(x))
    np.testing.assert_array_equal(W1[0], 0.0)
    assert b1[0] == 0.0 and b1[1] != 0.0


# parameters ---------------------------------------------------------------------------------------------------------

def test_pack_unpack_round_trip_and_views():
    p = small_problem(hidden=(5, 4))
    assert p.sizes == (4, 5, 4, 3)
    assert p.dim == 5 * 4 + 5 + 4 * 5 + 4 + 3 * 4 + 3
    x = np.arange(p.dim, dtype=np.float64)
    layers = p.unpack(x)
    assert [(W.shape, b.shape) for W, b in layers] == [((5, 4), (5,)), ((4, 5), (4,)), ((3, 4), (3,))]
    np.testing.assert_array_equal(layers[0][0], np.arange(20).reshape(5, 4))  # W_1 row-major first
    np.testing.assert_array_equal(layers[0][1], np.arange(20, 25))  # then b_1
    np.testing.assert_array_equal(layers[1][0][0], np.arange(25, 30))
    for W, b in layers:
        assert np.shares_memory(W, x) and np.shares_memory(b, x)
    layers[2][1][0] = -1.0
    assert x[-3] == -1.0
    np.testing.assert_array_equal(p.pack(p.unpack(x)), x)

    q = small_problem(bias=False, hidden=(5,))
    assert q.dim == 5 * 4 + 3 * 5
    layers = q.unpack(np.arange(q.dim, dtype=np.float64))
    assert [b for _, b in layers] == [None, None]
    np.testing.assert_array_equal(q.pack(layers), np.arange(q.dim))


def test_glorot_initialization():
    p = small_problem(hidden=(40, 20))
    x = p.initial_point(np.random.default_rng(0))
    np.testing.assert_array_equal(x, p.initial_point(np.random.default_rng(0)))
    for W, b in p.unpack(x):
        r = math.sqrt(6 / (W.shape[0] + W.shape[1]))
        assert np.abs(W).max() <= r and np.abs(W).max() > 0.9 * r
        assert W.min() < 0 < W.max()
        assert abs(W.std() - r / math.sqrt(3)) < 0.2 * r  # uniform on [-r, r]
        np.testing.assert_array_equal(b, 0.0)


def test_sample_batches_and_flops():
    p = small_problem(hidden=(5,))
    batches = p.sample_batches(np.random.default_rng(0), 50, 4)
    np.testing.assert_array_equal(batches, np.random.default_rng(0).integers(0, p.n_samples, (50, 4)))
    assert p.grad_flops() == 6 * 7 * (4 * 5 + 5 * 3)
    assert p.smoothness is None and p.optimum is None and p.optimal_loss is None


# metrics ------------------------------------------------------------------------------------------------------------

def test_metrics_of_a_perfect_hand_built_network():
    X = np.repeat(np.eye(3), 2, axis=0) * 4.0  # one-hot inputs: the label is the hot coordinate
    y = np.repeat(np.arange(3), 2)
    p = MLPProblem(X, y, X[::-1], y[::-1], (3,), "relu", "cross_entropy", True)
    x = p.pack([(np.eye(3), np.zeros(3)), (np.eye(3), np.zeros(3))])
    m = p.metrics(x)
    assert set(m) == {"train_accuracy", "test_accuracy", "test_loss"}
    assert all(isinstance(v, float) for v in m.values())
    assert m["train_accuracy"] == 1.0 and m["test_accuracy"] == 1.0
    assert m["test_loss"] == pytest.approx(math.log(math.exp(4) + 2) - 4, rel=1e-14)
    np.testing.assert_array_equal(p.predict(x, X), y)
    wrong = p.pack([(np.eye(3), np.zeros(3)), (np.roll(np.eye(3), 1, axis=0), np.zeros(3))])
    assert p.accuracy(wrong, X, y) == 0.0


# IDX files and MNIST ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    a = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a.idx{suffix}", a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_idx_layout_is_big_endian(tmp_path):
    raw = write_idx(tmp_path / "a", np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int16)).read_bytes()
    assert raw == bytes([0, 0, 0x0B, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + struct.pack(">6h", 1, 2, 3, 4, 5, 6)
    (tmp_path / "b").write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 2]) + struct.pack(">2f", 1.5, -2.0))
    np.testing.assert_array_equal(read_idx(tmp_path / "b"), np.array([1.5, -2.0], dtype=np.float32))


@pytest.mark.parametrize("raw, words", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unknown type byte 0x07"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x02\x07\x07\x07", "truncated"),
    (b"\x00\x00\x08\x02\x00\x00", "truncated"),
])
def test_bad_idx_files_give_one_line_errors(tmp_path, raw, words):
    path = tmp_path / "bad-idx"
    path.write_bytes(raw)
    with pytest.raises(ScenarioError) as err:
        read_idx(path)
    assert words in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:-6])  # a cut gzip stream
    with pytest.raises(ScenarioError, match="bad.gz"):
        read_idx(tmp_path / "bad.gz")


def write_mnist(directory, n_train=5, n_test=3, gz=(True, False, False, True)):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (n, 28, 28)).astype(np.uint8) for n in (n_train, n_test)]
    for im in images:
        im[0, 0, 0] = 255
    labels = [rng.integers(0, 10, n).astype(np.uint8) for n in (n_train, n_test)]
    directory.mkdir(exist_ok=True)
    for name, array, zipped in zip(MNIST_FILES, (images[0], labels[0], images[1], labels[1]), gz):
        write_idx(directory / (name + (".gz" if zipped else "")), array)
    return images, labels


def test_load_mnist(tmp_path):
    images, labels = write_mnist(tmp_path)
    X_train, y_train, X_test, y_test = load_mnist(tmp_path)
    assert X_train.shape == (5, 784) and X_test.shape == (3, 784)
    assert X_train.dtype == np.float64 and y_train.dtype == np.int64
    np.testing.assert_array_equal(X_train, images[0].reshape(5, 784) / 255.0)
    np.testing.assert_array_equal(X_test[1].reshape(28, 28), images[1][1] / 255.0)
    assert X_train.max() == 1.0 and X_train.min() >= 0.0
    np.testing.assert_array_equal(y_train, labels[0])
    np.testing.assert_array_equal(y_test, labels[1])
    X_train, y_train, X_test, y_test = load_mnist(tmp_path, n_train=2, n_test=1)
    assert X_train.shape == (2, 784) and y_test.shape == (1,)
    np.testing.assert_array_equal(y_train, labels[0][:2])


def test_load_mnist_missing_file_names_it(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ScenarioError) as err:
        load_mnist(tmp_path)
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg and "\n" not in msg
    with pytest.raises(ScenarioError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_mnist_spec_resolves_a_relative_path(tmp_path):
    write_mnist(tmp_path / "mnist")
    with relative_to(tmp_path):
        sc = from_dict(scenario({"kind": "mlp", "data": "mnist", "path": "mnist", "hidden": [8], "n_test": 2}))
    assert sc.problem.path == str((tmp_path / "mnist").resolve())
    p = sc.problem.build(generator(0, Stream.DATA))
    assert p.X_train.shape == (5, 784) and p.X_test.shape == (2, 784)
    assert p.sizes == (784, 8, 10) == sc.problem.sizes and p.dim == sc.problem.dim


# digits -------------------------------------------------------------------------------------------------------------

def test_digits_loader_and_split():
    X, y = load_digits()
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.min() == 0.0 and X.max() == 1.0 and set(np.unique(y)) == set(range(10))
    p = MLP().build(generator(0, Stream.DATA))
    assert p.X_train.shape == (1347, 64) and p.X_test.shape == (450, 64)  # ceil(0.25 * 1797) test samples
    assert p.n_samples == 1347 and p.n_classes == 10 and p.sizes == (64, 32, 10) and p.dim == MLP().dim
    np.testing.assert_array_equal(np.sort(np.concatenate([p.y_train, p.y_test])), np.sort(y))
    assert np.all((p.X_train >= 0) & (p.X_train <= 1))
    q = MLP().build(generator(0, Stream.DATA))
    np.testing.assert_array_equal(p.X_train, q.X_train)
    np.testing.assert_array_equal(p.y_test, q.y_test)
    r = MLP().build(generator(1, Stream.DATA))
    assert not np.array_equal(p.y_train, r.y_train)
    half = MLP(test_fraction=0.5, n_train=100, n_test=40).build(generator(0, Stream.DATA))
    assert half.X_train.shape == (100, 64) and half.X_test.shape == (40, 64) and half.n_classes == 10


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ScenarioError) as err:
        ds.load_digits()
    assert str(err.value) == ("problem.data needs scikit-learn for digits, which is not installed: python -m pip "
                              "install scikit-learn (or the datasets extra)")
    with pytest.raises(ScenarioError) as err:  # found when the scenario loads, so validate says it too
        from_dict({"name": "d", "problem": {"kind": "mlp"}, "cluster": {"workers": 1, "compute": {
            "kind": "constant", "value": 1.0}}, "algorithm": {"kind": "sgd", "lr": 0.1}, "run": {"updates": 2}})
    assert str(err.value) == ("problem.data needs scikit-learn for digits, which is not installed: python -m pip "
                              "install scikit-learn (or the datasets extra), got 'digits'")


# spec validation ----------------------------------------------------------------------------------------------------

def scenario(problem, **algorithm):
    return {"name": "t", "problem": problem, "cluster": {"workers": 2, "compute": {"kind": "constant", "value": 1.0}},
            "algorithm": {"kind": "sgd", "lr": 0.1, **algorithm}, "run": {"updates": 10}}


@pytest.mark.parametrize("problem, message", [
    ({"activation": "sigmoid"}, "problem.activation must be one of relu, tanh, hard_sigmoid, got 'sigmoid'"),
    ({"hidden": [32, -1]}, "problem.hidden[1] must be an integer >= 1, got -1"),
    ({"data": "mnist"}, "problem.path is required for data mnist"),
    ({"data": "mnist", "path": "/no/such/mnist/dir"}, "problem.path must be an existing directory"),
    ({"path": "."}, "problem.path must be null for data digits"),
    ({"data": "cifar"}, "problem.data must be one of digits, mnist, got 'cifar'"),
    ({"loss": "mse"}, "problem.loss must be one of cross_entropy, hinge, got 'mse'"),
    ({"test_fraction": 1.0}, "problem.test_fraction must be in (0, 1), got 1.0"),
    ({"n_train": 0}, "problem.n_train must be >= 1, got 0"),
    ({"n_test": 451}, "problem.n_test must be <= the 450 digits samples"),
])
def test_spec_errors_are_one_line(problem, message):
    with pytest.raises(ScenarioError) as err:
        from_dict(scenario({"kind": "mlp", **problem}))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_spec_hidden_becomes_a_tuple():
    sc = from_dict(scenario({"kind": "mlp", "hidden": [16, 8], "bias": False}))
    assert sc.problem.hidden == (16, 8) and sc.problem.sizes == (64, 16, 8, 10)
    assert sc.problem.dim == 64 * 16 + 16 * 8 + 8 * 10
    assert from_dict(sc.to_dict()) == sc
    assert MLP(hidden=[4]).hidden == (4,)
    assert MLP(hidden=[]).sizes == (64, 10)
    with pytest.raises(ParamError, match="hidden"):
        MLP(hidden=[0])


# end to end ---------------------------------------------------------------------------------------------------------

def test_async_sgd_trains_the_digits_mlp():
    sc = from_dict({**scenario({"kind": "mlp", "hidden": [32]}, lr=0.3, batch_size=32),
                    "run": {"updates": 1500, "record_every": 500}})
    res = asyncsim.run(sc)
    m = res.metrics
    assert {"train_accuracy", "test_accuracy", "test_loss"} <= set(m.columns)
    assert m["test_accuracy"].iloc[0] < 0.5
    assert m["test_accuracy"].iloc[-1] > 0.85
    assert m["loss"].iloc[-1] < 0.5 * m["loss"].iloc[0]
    p = res.problem
    assert p.accuracy(res.x, p.X_test, p.y_test) == m["test_accuracy"].iloc[-1]
