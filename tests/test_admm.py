"""ADMM for neural networks (admm_nn, Taylor et al. 2016): the closed-form updates against numerical minimizers, the
transpose reduction against a centralized pseudo-inverse, the round mapping against a plain loop of Algorithm 1,
independence of the number of workers, the seed's memory prediction, and one training run on digits."""

import math

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from asyncsim.algorithms import Algorithm, ADMMNet, ApplyInfo
from asyncsim.algorithms.admm import (
    LayerSums, activate, activation_update, forward, hidden_output_update, hinge_cost, last_output_update,
    multiplier_update, parallel_flops, predicted_memory, serial_iteration_flops, weight_update)
from asyncsim.params import ParamError, build_dataclass
from asyncsim.replay import replay
from asyncsim.rng import Stream, generator
from asyncsim.timing import Cluster, simulate
from asyncsim.timing.laws import Exponential
from asyncsim.timing.rounds import Sync

SEED = 5


class TinyMLP:
    """A stand-in for asyncsim.problems.mlp's problem with just the contract ADMMNet uses: sizes, activation,
    loss_kind, bias, X_train (read-only, one always-zero pixel: a singular Gram), y_train, n_classes, unpack / pack
    (row-major W_l, no bias), plus the loss / grad / optimal_loss that the replay records."""

    optimal_loss = None

    def __init__(self, sizes=(6, 5, 4, 3), n=48, activation="relu", loss_kind="hinge", bias=False, seed=0):
        rng = np.random.default_rng(seed)
        self.sizes, self.activation, self.loss_kind, self.bias = tuple(sizes), activation, loss_kind, bias
        self.n_classes = sizes[-1]
        X = rng.uniform(0.0, 1.0, (n, sizes[0]))
        X[:, 1] = 0.0
        self.X_train, self.y_train = X, rng.integers(0, self.n_classes, n)
        self.X_train.flags.writeable = self.y_train.flags.writeable = False
        self.dim = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            r = math.sqrt(6.0 / (n_in + n_out))
            layers.append((rng.uniform(-r, r, (n_out, n_in)), None))
        self.x0 = self.pack(layers)

    def unpack(self, x):
        out, start = [], 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            out.append((x[start:start + n_in * n_out].reshape(n_out, n_in), None))
            start += n_in * n_out
        return out

    def pack(self, layers):
        return np.concatenate([np.asarray(W).ravel() for W, _ in layers])

    def loss(self, x):
        _, z = forward([W for W, _ in self.unpack(x)], self.X_train.T, self.activation)
        y = np.eye(self.n_classes)[self.y_train].T
        return float(hinge_cost(z[-1], y).sum(axis=0).mean())

    def grad(self, x, batch=None):
        return np.zeros(self.dim)

    def metrics(self, x):
        return {}


def readonly(*arrays):
    for a in arrays:
        a.flags.writeable = False
    return arrays


def brute_minimum(f, params, lo, hi, points=30001):
    """min_t f(t, *params[i]) for every entry i, over [lo, hi]: a dense grid, then bounded Brent (scipy) around the
    best grid point.  ``f`` is elementwise (it broadcasts)."""
    grid = np.linspace(lo, hi, points)
    values = f(grid[None, :], *(p[:, None] for p in params))
    best = values.argmin(axis=1)
    step = grid[1] - grid[0]
    out = np.empty(len(params[0]))
    for i, j in enumerate(best):
        res = minimize_scalar(lambda t: float(f(t, *(p[i] for p in params))), bounds=(grid[j] - step, grid[j] + step),
                              method="bounded", options={"xatol": 1e-13})
        out[i] = min(res.fun, values[i, j])
    return out


KINKS = np.array([-1e-9, 0.0, 1e-9, 1 - 1e-9, 1.0, 1 + 1e-9])


@pytest.mark.parametrize("activation", ["relu", "hard_sigmoid"])
@pytest.mark.parametrize("beta, gamma", [(0.2, 20.0), (1.0, 1.0), (5.0, 0.5)])
def test_hidden_output_update_is_the_minimizer_of_its_subproblem(activation, beta, gamma):
    rng = np.random.default_rng(1)
    values = np.concatenate([KINKS, [-0.7, 0.5, 1.6], rng.uniform(-2, 3, 6)])
    a, m = (v.ravel() for v in np.meshgrid(values, values))  # every pair, kinks included
    # entries whose interior candidate (gamma a + beta m) / (gamma + beta) sits on a kink (or 1e-9 from it)
    a_mid = rng.uniform(-1, 2, len(KINKS))
    a = np.concatenate([a, a_mid])
    m = np.concatenate([m, ((gamma + beta) * KINKS - gamma * a_mid) / beta])
    z = hidden_output_update(*readonly(a, m), beta, gamma, activation)

    def objective(t, a, m):
        return gamma * (a - activate(t, activation)) ** 2 + beta * (t - m) ** 2

    best = brute_minimum(objective, (a, m), -6.0, 6.0)
    closed = objective(z, a, m)
    assert np.all(closed <= best + 1e-10 * (1 + np.abs(best)))
    # and a wrong piece would lose: the plain average (ignoring h) is not the minimizer everywhere
    naive = (gamma * a + beta * m) / (gamma + beta)
    assert np.any(objective(naive, a, m) > best + 1e-6)


@pytest.mark.parametrize("beta", [0.2, 1.0, 3.0])
def test_last_output_update_is_the_minimizer_of_the_hinge_subproblem(beta):
    rng = np.random.default_rng(2)
    n = 90
    y = rng.integers(0, 2, n).astype(float)
    lam = rng.uniform(-1.5, 1.5, n)
    m = rng.uniform(-2.0, 3.0, n)
    # a third of the entries with the left piece's minimizer on the kink, a third with the right one's, +- 1e-9
    eps = rng.choice([-1e-9, 0.0, 1e-9], n)
    m[:30] = y[:30] + (lam[:30] - y[:30]) / (2 * beta) + eps[:30]
    m[30:60] = y[30:60] + (lam[30:60] + 1 - y[30:60]) / (2 * beta) + eps[30:60]
    z = last_output_update(*readonly(m, y, lam), beta)

    def objective(t, y, lam, m):
        return hinge_cost(t, y) + lam * t + beta * (t - m) ** 2

    best = brute_minimum(objective, (y, lam, m), -12.0, 12.0)
    closed = objective(z, y, lam, m)
    assert np.all(closed <= best + 1e-10 * (1 + np.abs(best)))
    assert np.all(closed >= best - 1e-8)  # the brute force is a sound check: it reaches the same minimum


def test_activation_update_solves_the_normal_equations_and_matches_scipy():
    rng = np.random.default_rng(3)
    beta, gamma = 0.7, 2.5
    W, z_next, hz = rng.normal(size=(4, 3)), rng.normal(size=(4, 5)), rng.uniform(0, 1, (3, 5))
    a = activation_update(*readonly(W, z_next, hz), beta, gamma)
    assert a.shape == (3, 5)
    residual = beta * W.T @ (W @ a - z_next) + gamma * (a - hz)  # half the gradient
    assert np.abs(residual).max() < 1e-12

    def f(v):
        A = v.reshape(3, 5)
        r1, r2 = z_next - W @ A, A - hz
        return beta * np.sum(r1 ** 2) + gamma * np.sum(r2 ** 2), (-2 * beta * W.T @ r1 + 2 * gamma * r2).ravel()

    res = minimize(f, np.zeros(15), jac=True, method="BFGS", options={"gtol": 1e-12})
    assert np.allclose(a, res.x.reshape(3, 5), atol=1e-7)
    assert f(a.ravel())[0] <= res.fun + 1e-12


def test_distributed_weight_update_equals_the_centralized_pseudo_inverse():
    rng = np.random.default_rng(4)
    a, z = rng.normal(size=(7, 101)), rng.normal(size=(5, 101))
    a[2] = 0.0  # an always-zero input (a dead pixel or unit): the Gram is singular
    cuts = [0, 9, 40, 41, 77, 101]  # five uneven shards
    za = [z[:, lo:hi] @ a[:, lo:hi].T for lo, hi in zip(cuts[:-1], cuts[1:])]
    aa = [a[:, lo:hi] @ a[:, lo:hi].T for lo, hi in zip(cuts[:-1], cuts[1:])]
    W = weight_update(sum(za[1:], za[0]), sum(aa[1:], aa[0]))
    expected = z @ np.linalg.pinv(a)
    assert np.abs(W - expected).max() <= 1e-10 * np.abs(expected).max()
    assert np.abs(W[:, 2]).max() < 1e-14 * np.abs(W).max()  # the minimum-norm solution: no weight on the dead input

    # the same through ADMMNet.apply (messages in worker order)
    problem = TinyMLP(sizes=(7, 5), n=101)
    alg = ADMMNet()
    server, _ = alg.init(problem.x0, 5)
    msgs = [LayerSums(1, *readonly(p, q)) for p, q in zip(za, aa)]
    new = alg.apply(server, msgs, ApplyInfo(0, tuple(range(5)), (0,) * 5, problem))
    assert np.array_equal(problem.unpack(new.x)[0][0], W)


def test_apply_needs_every_worker_and_the_right_layer():
    problem = TinyMLP()
    alg = ADMMNet()
    server, workers = alg.init(problem.x0, 3)
    msgs = [alg.local(problem.x0, w, problem, None)[0] for w in workers]
    info = ApplyInfo(0, (0, 1), (0, 0), problem)
    with pytest.raises(ValueError, match=r"2 messages but needs one from each of the 3 workers.*sync or allreduce"):
        alg.apply(server, msgs[:2], info)
    with pytest.raises(ValueError, match="solves layer 2"):
        alg.apply(server, msgs, ApplyInfo(1, (0, 1, 2), (0, 0, 0), problem))
    assert set(ADMMNet.protocols) == {"sync", "allreduce"}


@pytest.mark.parametrize("change, message", [
    ({"loss_kind": "cross_entropy"}, "problem.loss must be hinge for admm_nn"),
    ({"bias": True}, "problem.bias must be false for admm_nn"),
    ({"activation": "tanh"}, "problem.activation must be one of relu, hard_sigmoid for admm_nn"),
])
def test_bind_refuses_problems_admm_cannot_train(change, message):
    with pytest.raises(ParamError) as err:
        ADMMNet().bind(TinyMLP(**change))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_per_layer_hyper_parameters_are_checked():
    problem = TinyMLP()  # L = 3: three betas, two gammas
    ADMMNet(beta=(0.1, 0.2, 0.3), gamma=(1.0, 2.0)).bind(problem)
    with pytest.raises(ParamError, match=r"^beta must be one number or a list of 3"):
        ADMMNet(beta=(0.1, 0.2)).bind(problem)
    with pytest.raises(ParamError, match=r"^gamma must be one number or a list of 2"):
        ADMMNet(gamma=(1.0, 2.0, 3.0)).bind(problem)
    with pytest.raises(ParamError, match=r"^beta must be > 0"):
        ADMMNet(beta=(0.1, -1.0, 0.3))
    alg = build_dataclass(Algorithm.registry.get("admm_nn"), {"beta": [0.1, 0.2, 0.3], "gamma": 5}, "algorithm")
    assert alg == ADMMNet(beta=(0.1, 0.2, 0.3), gamma=5.0)
    with pytest.raises(ParamError, match=r"^cluster.workers must be <= the training samples \(48\)"):
        ADMMNet().bind(problem, 49)


def test_lambda_stays_zero_during_warm_up_and_then_takes_the_multiplier_step():
    problem = TinyMLP(sizes=(6, 5, 3))  # L = 2 rounds per iteration
    alg = ADMMNet(warmup=3, beta=(0.3, 0.4))
    server, (worker,) = alg.init(problem.x0, 1)
    for k in range(10):
        before = worker
        msg, worker = alg.local(server.x, worker, problem, None)
        if k >= 2 and k % 2 == 0:  # round k finished iteration k/2 - 1 (its W_L solve was round k - 1)
            it = k // 2 - 1
            if it < 3:
                assert np.all(worker.lam == 0.0), (k, it)
            else:
                W_L = problem.unpack(server.x)[1][0]
                m = W_L @ worker.a[1]
                assert np.allclose(worker.lam, before.lam + 0.4 * (worker.z[1] - m), rtol=0, atol=1e-14)
                assert np.abs(worker.lam).max() > 1e-3
        server = alg.apply(server, [msg], ApplyInfo(k, (0,), (0,), problem))
    assert np.abs(worker.lam).max() > 1e-3


def admm_objective(problem, x, workers, betas, gammas):
    """The seed's objective (6), summed over the workers' shards."""
    Ws = [W for W, _ in problem.unpack(x)]
    L = len(Ws)
    total = 0.0
    for ws in workers:
        a, z = ws.a, ws.z
        r = z[L - 1] - Ws[L - 1] @ a[L - 1]
        total += hinge_cost(z[L - 1], ws.y).sum() + np.sum(z[L - 1] * ws.lam) + betas[L - 1] * np.sum(r ** 2)
        for l in range(1, L):
            total += gammas[l - 1] * np.sum((a[l] - activate(z[l - 1], problem.activation)) ** 2)
            total += betas[l - 1] * np.sum((z[l - 1] - Ws[l - 1] @ a[l - 1]) ** 2)
    return total


@pytest.mark.parametrize("activation", ["relu", "hard_sigmoid"])
def test_every_block_update_decreases_the_objective_while_lambda_is_zero(activation):
    """With lambda = 0 (warm-up) each update exactly minimizes (6) over its block (W_l, a_l, z_l, z_L), so the
    objective never increases: this catches a block solved with the wrong layer's beta or gamma."""
    problem = TinyMLP(activation=activation)
    betas, gammas = (0.3, 0.5, 0.7), (2.0, 20.0)
    alg = ADMMNet(beta=betas, gamma=gammas, warmup=100)
    server, workers = alg.init(problem.x0, 2)
    workers = list(workers)
    values = []
    for k in range(18):
        msgs = []
        for w in range(2):
            msg, workers[w] = alg.local(server.x, workers[w], problem, None)
            msgs.append(msg)
        values.append(admm_objective(problem, server.x, workers, betas, gammas))
        server = alg.apply(server, msgs, ApplyInfo(k, (0, 1), (0, 0), problem))
        values.append(admm_objective(problem, server.x, workers, betas, gammas))
    steps = np.diff(values)
    assert np.all(steps <= 1e-10 * values[0]), steps.max()
    assert values[-1] < 0.5 * values[0]


def reference_admm(problem, iterations, betas, gammas, warmup):
    """The seed's Algorithm 1 on all the data at once, with W_l = z_l pinv(a_{l-1}) (no transpose reduction)."""
    L = len(problem.sizes) - 1
    Ws = [W.copy() for W, _ in problem.unpack(problem.x0)]
    a, z = (list(v) for v in forward(Ws, problem.X_train.T, problem.activation))
    y = np.eye(problem.n_classes)[problem.y_train].T
    lam = np.zeros_like(z[-1])
    for t in range(iterations):
        for l in range(1, L):
            Ws[l - 1] = z[l - 1] @ np.linalg.pinv(a[l - 1])
            a[l] = activation_update(Ws[l], z[l], activate(z[l - 1], problem.activation), betas[l], gammas[l - 1])
            z[l - 1] = hidden_output_update(a[l], Ws[l - 1] @ a[l - 1], betas[l - 1], gammas[l - 1],
                                            problem.activation)
        Ws[L - 1] = z[L - 1] @ np.linalg.pinv(a[L - 1])
        m = Ws[L - 1] @ a[L - 1]
        z[L - 1] = last_output_update(m, y, lam, betas[L - 1])
        if t >= warmup:
            lam = multiplier_update(lam, z[L - 1], m, betas[L - 1])
    return problem.pack([(W, None) for W in Ws])


@pytest.mark.parametrize("activation", ["relu", "hard_sigmoid"])
def test_replay_on_sync_rounds_is_algorithm_1_whatever_the_number_of_workers(activation):
    problem = TinyMLP(activation=activation)
    betas, gammas, iterations = (0.3, 0.5, 0.7), (10.0, 20.0), 8
    alg = ADMMNet(beta=betas, gamma=gammas, warmup=2)
    K = 3 * iterations
    runs = {}
    for n in (1, 3):
        trace = simulate(Cluster(workers=n, compute=Exponential(mean=1.0)), Sync(), K, SEED)
        runs[n] = replay(trace, alg, problem, problem.x0, SEED, record_every=K)
        assert runs[n].diverged_at is None and len(runs[n].metrics) == 2
    x1, x3 = runs[1].x, runs[3].x
    scale = np.abs(x1).max()
    assert np.abs(x3 - x1).max() <= 1e-9 * scale  # summation order only
    assert not np.allclose(x1, problem.x0, atol=1e-3)  # the weights did move
    expected = reference_admm(problem, iterations, betas, gammas, warmup=2)
    assert np.abs(x1 - expected).max() <= 1e-8 * scale
    assert runs[3].metrics["loss"].iloc[-1] < runs[3].metrics["loss"].iloc[0]

    # the memory actually held by worker 0 (16 of the 48 samples) against the seed's prediction
    mem = alg.summary(problem, runs[3].worker_states)["memory_bytes_per_node"]
    held, predicted = mem["held"], mem["predicted"]
    assert held["weights"] == predicted["weights"] == 8 * problem.dim
    assert held["activations"] == 8 * 16 * (5 + 4) and predicted["activations"] == 8 * 16 * (5 + 4 + 3)
    assert held["outputs"] == predicted["outputs"] == 8 * 16 * (5 + 4 + 3)
    assert held["multipliers"] == predicted["multipliers"] == 8 * 16 * 3
    assert held["input"] == 8 * 16 * (6 + 3)
    assert held["total"] == sum(v for k, v in held.items() if k != "total")


def test_memory_prediction_is_the_seeds_table():
    published = {1: 979.58, 2: 492.38, 4: 248.78, 8: 126.98, 16: 66.08, 32: 35.63, 64: 20.40}
    for N, mb in published.items():
        p = predicted_memory((784, 500, 500, 10), 60_000, N)
        assert p["weights"] == 5_176_000
        assert p["activations"] == pytest.approx(484_800_000 / N, rel=1e-15)
        assert p["total"] / 1e6 == pytest.approx(5.176 + 974.4 / N, rel=1e-14)
        assert round(p["total"] / 1e6, 2) == mb


def test_cost_model():
    problem = TinyMLP(sizes=(784, 500, 500, 10), n=12)
    problem.y_train = np.zeros(60_000, dtype=int)  # only the sample count enters the cost model
    alg = ADMMNet()
    s = problem.sizes
    assert alg.message_bytes(problem, 4) == round(8 * ((500 * 784 + 784 ** 2) + 2 * 500 ** 2 + (10 * 500 + 500 ** 2))
                                                  / 3)
    assert alg.work(problem, 4) == pytest.approx(alg.work(problem, 1) / 4) == parallel_flops(s, 15_000) / 3
    assert alg.work(problem, 7) == parallel_flops(s, 8572) / 3  # the largest shard, ceil(60000 / 7)
    # per sample and iteration, the Gram sums dominate: 4 n_l n_{l-1} + 2 n_{l-1}^2 summed, plus the a-updates
    per = (4 * 784 * 500 + 2 * 784 ** 2) + (4 * 500 * 500 + 2 * 500 ** 2) + (4 * 10 * 500 + 2 * 500 ** 2)
    per += (2 * 500 * 500 + 2 * 500 ** 2) + (2 * 10 * 500 + 2 * 500 ** 2) + 10 * 2 * (500 + 500 + 10)
    assert parallel_flops(s, 1) == per
    serial = sum(11 * a ** 3 + 2 * b * a ** 2 for a, b in zip(s[:-1], s[1:]))
    serial += (2 * 500 * 500 ** 2 + 500 ** 3 / 3) + (2 * 10 * 500 ** 2 + 500 ** 3 / 3)
    assert serial_iteration_flops(s) == pytest.approx(serial) and alg.serial_flops(problem) == pytest.approx(serial / 3)
    assert np.array_equal(alg.draw(problem, generator(0, Stream.ALGORITHM), 4), np.zeros((4, 0)))


def test_admm_trains_the_real_mlp_on_digits():
    mlp = pytest.importorskip("asyncsim.problems.mlp")
    pytest.importorskip("sklearn")
    problem = mlp.MLP(hidden=(64,), activation="relu", loss="hinge", bias=False).build(
        generator(SEED, Stream.DATA))
    x0 = problem.initial_point(generator(SEED, Stream.INIT))
    alg = ADMMNet(beta=0.2, gamma=20.0)
    iterations = 10
    K = 2 * iterations
    trace = simulate(Cluster(workers=2, compute=Exponential(mean=1.0)), Sync(), K, SEED)
    res = replay(trace, alg, problem, x0, SEED, record_every=K)
    assert res.diverged_at is None
    accuracy = problem.accuracy(res.x, problem.X_test, problem.y_test)
    assert accuracy >= 0.8, accuracy
    assert problem.accuracy(x0, problem.X_test, problem.y_test) < 0.5
