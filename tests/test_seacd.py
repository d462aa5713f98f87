"""SEACD: the energy by hand, saddle escape against closed forms, delays, and 'GD is stuck, SEACD escapes'."""

import math
from dataclasses import dataclass

import numpy as np
import pytest

from asyncsim.algorithms import GD, SEACD, ApplyInfo
from asyncsim.algorithms.seacd import uniform_ball
from asyncsim.params import ParamError
from asyncsim.problems import Problem, StrictSaddle
from asyncsim.replay import replay
from asyncsim.rng import BLOCK, Stream, generator
from asyncsim.timing.imported import delay_trace

SEED = 11


class HalfNorm(Problem):
    """f(x) = ||x||^2 / 2 (grad f = x), so that every step and energy below is exact in binary."""

    def __init__(self, dim, smoothness=1.0):
        self.dim, self.smoothness = dim, smoothness

    def loss(self, x):
        return 0.5 * float(x @ x)

    def grad(self, x, batch=None):
        return np.array(x)

    def sample_batches(self, rng, n_steps, batch_size):
        return np.empty((n_steps, 0))


def serial(K):
    return delay_trace(np.zeros(K, dtype=int))


def energies(res):
    return res.metrics.set_index("update")["energy"]


def test_energy_by_hand_without_delay():
    # tau = 2, eta = 1/4, L = 1, f = ||x||^2 / 2, x^0 = (4, 8); one worker, cyclic blocks 0, 1, 0, 1, ...
    #   step 0 (block 0): x^1 = (3, 8)        ||x^1 - x^0|| = 1
    #   step 1 (block 1): x^2 = (3, 6)        ||.|| = 2
    #   step 2 (block 0): x^3 = (2.25, 6)     ||.|| = 0.75     call ends (tau + 1 = 3 steps), j = 3:
    #     E_3 = f(x^3) + (L/2) (1 * 2^2 + 2 * 0.75^2) = (5.0625 + 36) / 2 + (4 + 1.125) / 2 = 23.09375
    #   step 3 (block 1): x^4 = (2.25, 4.5)   ||.|| = 1.5
    #   step 4 (block 0): x^5 = (1.6875, 4.5) ||.|| = 0.5625
    #   step 5 (block 1): x^6 = (1.6875, 3.375) ||.|| = 1.125  call ends, j = 6:
    #     E_6 = (2.84765625 + 11.390625) / 2 + (1 * 0.5625^2 + 2 * 1.125^2) / 2 = 7.119140625 + 1.423828125
    alg = SEACD(tau=2, lr=0.25, blocks=2, choice="cyclic")  # ||grad f|| > g_thres: no perturbation
    res = replay(serial(6), alg, HalfNorm(2), np.array([4.0, 8.0]), SEED)
    assert np.array_equal(res.x, [1.6875, 3.375])
    e = energies(res)
    assert e[:2].isna().all()  # before the first call ends
    assert e[3] == e[4] == e[5] == 23.09375 and e[6] == 8.54296875
    assert res.algorithm.L == 1.0 and res.metrics["perturbations"].eq(0).all()


def test_energy_by_hand_with_early_call_ends():
    # The same steps with M = 1: a step of length >= 1 ends the call.
    #   step 0: ||.|| = 1 >= M, j = 1: E_1 = f(3, 8) + (L/2) (k = -1: 0, k = 0: 2 * 1^2) = 36.5 + 1 = 37.5
    #   step 1: ||.|| = 2 >= M, j = 2: E_2 = f(3, 6) + (1 * 1^2 + 2 * 2^2) / 2 = 22.5 + 4.5 = 27
    #   step 2: 0.75 < M;  step 3: 1.5 >= M, j = 4: E_4 = f(2.25, 4.5) + (1 * 0.75^2 + 2 * 1.5^2) / 2
    #                                                = 12.65625 + 2.53125 = 15.1875
    alg = SEACD(tau=2, lr=0.25, blocks=2, choice="cyclic", M=1.0)
    e = energies(replay(serial(4), alg, HalfNorm(2), np.array([4.0, 8.0]), SEED))
    assert math.isnan(e[0]) and e[1] == 37.5 and e[2] == e[3] == 27.0 and e[4] == 15.1875


def test_energy_by_hand_with_delays():
    # f = x^2 / 2 in 1-D, eta = 1/4, tau = 2, delays 0, 1, 2, 2, 2, 2 (update k reads version k - delay):
    #   k = 0 reads x^0 = 8: x^1 = 8 - 2 = 6;     k = 1 reads x^0: x^2 = 6 - 2 = 4;   k = 2 reads x^0: x^3 = 2
    #     steps 2, 2, 2;  E_3 = 2^2 / 2 + (1 * 2^2 + 2 * 2^2) / 2 = 8
    #   k = 3 reads x^1 = 6: x^4 = 0.5;  k = 4 reads x^2 = 4: x^5 = -0.5;  k = 5 reads x^3 = 2: x^6 = -1
    #     steps 1.5, 1, 0.5;  E_6 = 1 / 2 + (1 * 1^2 + 2 * 0.5^2) / 2 = 1.25
    alg = SEACD(tau=2, lr=0.25)
    res = replay(delay_trace(np.array([0, 1, 2, 2, 2, 2])), alg, HalfNorm(1), np.array([8.0]), SEED)
    e = energies(res)
    assert res.x.tolist() == [-1.0] and e[3] == 8.0 and e[6] == 1.25


@pytest.mark.parametrize("constant", [False, True], ids=["random-delays", "constant-delay"])
def test_energy_does_not_increase_at_the_default_step(constant):
    # eta = 1 / ((2 tau + 1) L) is half the bound under which E is a Lyapunov function of delayed coordinate
    # descent (Sun, Hannah and Yin 2017): between perturbations (none here: g_thres tiny) E never increases.
    tau, K = 2, 3000
    problem = StrictSaddle(dim=10, init="random").build(generator(SEED, Stream.DATA))  # L on ||x|| <= 2
    x0 = 0.5 * problem.initial_point(generator(SEED, Stream.INIT))
    delays = np.full(K, tau) if constant else np.random.default_rng(SEED).integers(0, tau + 1, K)
    res = replay(delay_trace(np.minimum(np.arange(K), delays)), SEACD(tau=tau, blocks=5, g_thres=1e-300), problem,
                 x0, SEED)
    e = res.metrics["energy"].dropna().to_numpy()
    assert res.metrics["perturbations"].iloc[-1] == 0 and e[0] > e[-1] + 1
    assert (np.diff(e) <= 1e-15).all()


def test_the_perturbation_is_keyed_by_the_step_seed():
    # At the saddle (grad = 0) the first step does not move and the first call end perturbs: x^1 = xi, drawn from
    # default_rng(seed) with seed the ALGORITHM stream's draw for (worker 0, step 0).
    problem = StrictSaddle(dim=5).build(generator(SEED, Stream.DATA))
    alg = SEACD(r=1e-3)
    res = replay(serial(1), alg, problem, np.zeros(5), SEED)
    bound = res.algorithm
    seed = int(bound.draw(problem, generator(SEED, Stream.ALGORITHM, 0, 0), BLOCK)[0, 1])
    assert np.array_equal(res.x, uniform_ball(np.random.default_rng(seed), 5, 1e-3))
    assert 0 < np.linalg.norm(res.x) <= 1e-3 and res.metrics["perturbations"].iloc[-1] == 1
    assert not np.array_equal(replay(serial(1), alg, problem, np.zeros(5), SEED + 1).x, res.x)


def test_perturbations_are_uniform_in_the_ball():
    rng = np.random.default_rng(SEED)
    xi = np.array([uniform_ball(rng, 2, 3.0) for _ in range(4000)])
    radius = np.linalg.norm(xi, axis=1)
    assert radius.max() <= 3.0
    assert abs(np.mean(radius <= 1.5) - 0.25) < 0.03  # P(||xi|| <= r/2) = 2^-d in the d-ball (a sphere gives 0)
    assert abs(np.mean(xi[:, 0] > 0) - 0.5) < 0.03


def test_a_minimum_is_declared_when_the_energy_does_not_fall_and_params_is_the_point_before_the_perturbation():
    # f = x^2 / 2 started at its minimum 0: update 0 stays at 0, the call ends (tau = 0) with grad f = 0, so the
    # server perturbs (x_tilde = 0, E_tilde = 0).  window = 3 updates later (j = 4) the energy x^2 / 2 > 0 has not
    # fallen by F below E_tilde: a local minimum is declared, the replay stops and the result is x_tilde = 0.
    alg = SEACD(lr=0.5, r=0.1, t_thres=0, window=3, F=1e-3)
    res = replay(serial(50), alg, HalfNorm(1), np.zeros(1), SEED)
    assert res.stopped_at == 4 and res.x.tolist() == [0.0]
    assert res.metrics["perturbations"].tolist() == [0, 1, 1, 1, 1]
    assert res.metrics["energy"].iloc[-1] > 0 and res.metrics["loss"].iloc[-1] == 0.0


R_ESCAPE = 1e-2


@dataclass(frozen=True, kw_only=True)
class EscapeTimer(SEACD):
    """SEACD that stops once it has perturbed and ||x|| >= R_ESCAPE: ``stopped_at`` times the escape."""

    def finished(self, server_state):
        return server_state.perturbations > 0 and float(np.linalg.norm(server_state.x)) >= R_ESCAPE


@pytest.mark.parametrize("d", [10, 100, 1000])
def test_escape_time_from_the_saddle_matches_the_closed_form(d):
    # f = x^T D x / 2 + ||x||^4 / 4, D = diag(-g, 1, ..., 1), g = 1, started exactly at the saddle x = 0.  One block
    # and no delay, so each SEACD update is a full gradient step.  Update 0 does not move (grad f(0) = 0), the
    # call ends (tau = 0) and the server perturbs: x = xi, uniform in the ball of radius r.  Then
    #     x_1 <- (1 + eta (g - ||x||^2)) x_1,     x_i <- (1 - eta (1 + ||x||^2)) x_i   (i > 1).
    # Choices: eta = 0.5 (ratio 1.5 per step, ~40 steps); R = 1e-2 << sqrt(g), so ||x||^2 <= 1e-4 changes the
    # growth rate by < 1e-4 relative; the positive directions start below r = 1e-8 and halve every step, so
    # ||x|| >= R happens when |xi_1| (1 + eta g)^n >= R:  n = ceil(log(R / |xi_1|) / log(1 + eta g)).
    # The median of |xi_1| is about 0.674 r / sqrt(d) (0.652 for d = 10), so
    #     median n ~ [log(R sqrt(d) / r) + log(1 / 0.674)] / log(1 + eta g) + 1/2,
    # i.e. the prediction log(R sqrt(d) / r) / log(1 + eta g) times 1 + (0.39 + 0.5 log 1.5) / log(R sqrt(d) / r).
    # With R / r = 1e6, log(R sqrt(d) / r) >= 15, so the bias is <= 4%, and the median of 200 runs varies by
    # ~0.7% (log|xi_1| has spread ~1.1): the 10% tolerance holds with margin, while a perturbation uniform in a
    # cube (|xi_1| ~ r / 2), or on coordinate axes, or a growth factor other than 1 + eta g, breaks it for some d.
    # R0 = 0.1: the smoothness ball need only hold the visited region; L = 1.03 lets eta = 0.5 < 2 / L.
    eta, g, r = 0.5, 1.0, 1e-8
    problem = StrictSaddle(dim=d, g=g, R0=0.1).build(generator(SEED, Stream.DATA))
    alg = EscapeTimer(lr=eta, r=r, blocks=1, t_thres=10**9)
    trace = serial(100)
    steps = [replay(trace, alg, problem, np.zeros(d), seed, record_every=10**6).stopped_at - 1
             for seed in range(200)]
    predicted = math.log(R_ESCAPE * math.sqrt(d) / r) / math.log(1 + eta * g)
    assert abs(np.median(steps) / predicted - 1) < 0.10


@dataclass(frozen=True, kw_only=True)
class WatchX1(SEACD):
    def metrics(self, server_state):
        return {**super().metrics(server_state), "x1": float(server_state.x[0])}


@pytest.mark.parametrize("tau", [1, 3, 5])
def test_growth_rate_under_constant_delay_is_the_root_of_the_delay_equation(tau):
    # With one block and every update tau versions stale (delays min(k, tau)), the negative direction follows
    #     x_1^{k+1} = x_1^k + eta g x_1^{k-tau}   (minus eta ||x||^2 x_1, negligible while |x_1| << sqrt(g)),
    # so |x_1^k| ~ c z*^k with z* the largest real root of z^{tau+1} - z^tau - eta g; the other roots are smaller
    # in modulus, so their modes have died out over the late updates.  eta is SEACD's default 1 / ((2 tau + 1) L).
    problem = StrictSaddle(dim=10, R0=0.5).build(generator(SEED, Stream.DATA))
    res = replay(delay_trace(np.minimum(np.arange(2000), tau)), WatchX1(tau=tau, blocks=1, r=1e-10), problem,
                 np.zeros(10), SEED)
    eta = res.algorithm.lr
    assert eta == 1 / ((2 * tau + 1) * problem.smoothness)
    roots = np.roots([1.0, -1.0] + [0.0] * (tau - 1) + [-eta * problem.g])
    z = max(c.real for c in roots if abs(c.imag) < 1e-9)
    x1 = np.abs(res.metrics["x1"].to_numpy())
    end = int(np.argmax(x1 > 1e-3))  # still well inside the quadratic regime (|x_1|^2 <= 1e-6 g)
    assert end > 100 and res.metrics["perturbations"].iloc[end] == 1
    k = np.arange(end // 2, end)
    slope = np.polyfit(k, np.log(x1[k]), 1)[0]
    assert abs(slope / math.log(z) - 1) < 0.05
    assert abs(slope / math.log(1 + eta * problem.g) - 1) > 0.05 * (tau > 0)  # the delay matters


def test_gd_is_stuck_at_the_saddle_while_seacd_escapes_and_declares_the_minimum():
    spec = StrictSaddle(dim=10)  # init: stable, x0 on the saddle's stable manifold (x0[0] = 0)
    problem = spec.build(generator(SEED, Stream.DATA))
    x0 = problem.initial_point(generator(SEED, Stream.INIT))
    f_star = problem.optimal_loss
    assert x0[0] == 0 and f_star == -0.25
    gd = replay(serial(3000), GD(lr=0.1), problem, x0, SEED, record_every=100)
    assert gd.x[0] == 0 and gd.metrics["grad_norm"].iloc[-1] < 1e-12
    assert abs(gd.metrics["loss"].iloc[-1]) < 1e-12 and gd.metrics["suboptimality"].iloc[-1] > 0.249

    # SEACD with its defaults, tau = 2 and random delays in {0, 1, 2}
    delays = np.minimum(np.arange(40000), np.random.default_rng(SEED).integers(0, 3, 40000))
    res = replay(delay_trace(delays), SEACD(tau=2), problem, x0, SEED, record_every=100)
    assert res.stopped_at is not None  # a local minimum was declared ...
    assert problem.loss(res.x) - f_star < 1e-9  # ... at the minimum, f = -g^2 / 4
    assert np.linalg.norm(problem.grad(res.x)) <= res.algorithm.g_thres
    assert res.metrics["perturbations"].iloc[-1] >= 2  # one to leave the saddle, one to certify the minimum
    saddle = res.metrics[res.metrics["perturbations"] == 1]
    assert saddle["loss"].iloc[0] > -1e-6  # the first perturbation happened near the saddle (f ~ 0)


def test_delays_beyond_tau_are_refused():
    problem = StrictSaddle(dim=3).build(generator(SEED, Stream.DATA))
    with pytest.raises(ParamError, match=r"^tau must bound every update's staleness: SEACD assumes delays bounded "
                                         r"by tau = 1, but update 2 has staleness 2; run it under protocol "
                                         r"ringmaster \(max_staleness: 1\) or serial_async \(tau: 1\), or raise tau$"):
        replay(delay_trace(np.array([0, 1, 2])), SEACD(tau=1), problem, np.ones(3), SEED)


def test_step_size_and_smoothness_are_checked():
    problem = StrictSaddle(dim=3, R0=0.5).build(generator(SEED, Stream.DATA))  # L = 1.75
    bound = SEACD(tau=3).bind(problem)
    assert bound.lr == 1 / (7 * 1.75) and bound.L == 1.75 and bound.r == 1e-3 / 1.75 and bound.window == bound.t_thres
    with pytest.raises(ParamError, match=r"^lr must be < 2 / \(\(2 tau \+ 1\) L\) = 0.163265 \(tau = 3, L = 1.75\)"):
        SEACD(tau=3, lr=0.17).bind(problem)
    with pytest.raises(ParamError, match=r"^L must be given: HalfNorm has no known smoothness constant"):
        SEACD().bind(HalfNorm(2, smoothness=None))
    assert SEACD(L=2.0).bind(HalfNorm(2, smoothness=None)).lr == 0.5
    with pytest.raises(ParamError, match=r"^tau must be >= 0, got -1$"):
        SEACD(tau=-1)


def test_seacd_does_not_mutate_read_only_inputs():
    problem = StrictSaddle(dim=4).build(generator(SEED, Stream.DATA))
    alg = SEACD(lr=0.01, blocks=2, t_thres=0, g_thres=1e9, lower=-1.0, upper=1.0).bind(problem)
    x = np.full(4, 0.5)
    x.flags.writeable = False
    state, cursors = alg.init(x, 1)
    draw = alg.draw(problem, np.random.default_rng(0), 1)[0]
    draw.flags.writeable = False
    msg, _ = alg.local(x, cursors[0], problem, draw)
    new = alg.apply(state, [msg], ApplyInfo(0, (0,), (0,), problem))  # ends the call and perturbs
    assert new.perturbations == 1 and np.array_equal(x, np.full(4, 0.5)) and new.x_tilde is not new.x
    assert np.array_equal(state.x, np.full(4, 0.5)) and state.perturbations == 0
