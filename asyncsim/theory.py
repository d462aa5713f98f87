"""Closed-form predictions for the timing layer, as small pure functions.

Order statistics of compute times (the synchronous barrier), synchronous round time, asynchronous throughput and
worker shares, the staleness law of the asynchronous parameter server, the probability of a slow synchronous round,
the ring all-reduce cost, Rennala SGD's collection time, the round time of coded computation and the errors of
sketched least squares (sketch-and-solve averages, the iterative Hessian sketch).  Compute-time laws are
:class:`asyncsim.timing.laws.DelayLaw` objects; a sequence of laws gives one law per worker (heterogeneous
workers), and a single law with ``n=`` gives n identical workers.  Unless stated otherwise, predictions assume
constant link latencies and no contention at the server.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import integrate, special

from .params import require
from .timing.laws import Bimodal, DelayLaw, Exponential, Mixture, Pareto, Scaled, ShiftedExponential
from .timing.rounds import allreduce_time  # noqa: F401  (the all-reduce model is the simulator's own)

Laws = DelayLaw | Sequence[DelayLaw]


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _worker_laws(laws: Laws, n: int | None) -> tuple[DelayLaw, ...]:
    """One law per worker: ``(law,) * n`` for a single law, else the sequence itself."""
    if isinstance(laws, DelayLaw):
        require(_is_int(n) and n >= 1, "n", "must be an integer >= 1 when laws is a single law", n)
        return (laws,) * int(n)
    laws = tuple(laws)
    require(len(laws) >= 1, "laws", "must hold at least one law", laws)
    bad = [law for law in laws if not isinstance(law, DelayLaw)]
    require(not bad, "laws", "must all be delay laws", bad[:3])
    require(n is None or n == len(laws), "n", f"must be None or len(laws) ({len(laws)})", n)
    return laws


def _harmonic_gap(n: int, k: int) -> float:
    """H_n - H_{n-k} = sum_{j=n-k+1}^{n} 1/j."""
    return math.fsum(1.0 / j for j in range(n - k + 1, n + 1))


def _closed_form(law: DelayLaw, k: int, n: int) -> float | None:
    """E[X_(k:n)] for n i.i.d. copies of ``law`` when a closed form is known, else None."""
    if type(law) is Exponential:
        return law.mean * _harmonic_gap(n, k)
    if type(law) is ShiftedExponential:
        return law.shift + law.scale * _harmonic_gap(n, k)
    if type(law) is Pareto:
        a, m = law.alpha, n - k + 1
        if m * a <= 1:
            return math.inf
        log_ratio = (special.gammaln(n + 1) + special.gammaln(m - 1 / a)
                     - special.gammaln(m) - special.gammaln(n + 1 - 1 / a))
        return law.scale * math.exp(log_ratio)
    return None


def _tail_index(law: DelayLaw) -> float:
    """a with P(X > x) ~ c x^(-a) (inf for laws with all moments: bounded, exponential-type and lognormal tails).
    Laws this module does not know are treated as having all moments."""
    if isinstance(law, Pareto):
        return law.alpha
    if isinstance(law, Mixture):
        return min(_tail_index(c) for w, c in zip(law.weights, law.components) if w > 0)
    if isinstance(law, (Bimodal, Scaled)):
        return _tail_index(law.base)
    return math.inf


def _survival_of_kth(laws: tuple[DelayLaw, ...], k: int):
    """x -> P(X_(k) > x) = P(fewer than k of the n workers are done by x) = P(at least n-k+1 exceed x)."""
    groups = Counter(laws)
    n = len(laws)
    if len(groups) == 1:
        (law,) = groups

        def surv(x: float) -> float:
            # P(Binomial(n, q) >= n-k+1) = I_q(n-k+1, k), q = P(X > x)
            return float(special.betainc(n - k + 1, k, law.sf(x)))

        return surv

    def surv(x: float) -> float:
        # Poisson-binomial recursion over workers on the number done by x, truncated to 0..k-1
        done = np.zeros(k)
        done[0] = 1.0
        for law, count in groups.items():
            p, q = float(law.cdf(x)), float(law.sf(x))
            for _ in range(count):
                done[1:] = done[1:] * q + done[:-1] * p
                done[0] *= q
        return float(done.sum())

    return surv


def _level_point(surv, level: float) -> float:
    """inf {x : surv(x) <= level}, to within a relative 1e-12 (where the integrand changes on its own scale)."""
    if surv(0.0) <= level:
        return 0.0
    lo, hi = 1.0, 1.0
    while surv(hi) > level and hi < 1e300:
        lo, hi = hi, hi * 2.0
    while surv(lo) <= level and lo > 1e-300:
        lo, hi = lo / 2.0, lo
    while hi - lo > 1e-12 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if surv(mid) > level else (lo, mid)
    return hi


LEVELS = (1 - 1e-6, 0.5, 1e-3, 1e-6)
"""Levels of P(X_(k) > x) at which the integral is split: the bulk and the start of the tail get pieces of their
own, so that a survival function that falls steeply (the maximum of many workers) or ends at a support edge
(uniform) is integrated as accurately as a smooth one."""


def _integrate_survival(surv, laws: tuple[DelayLaw, ...]) -> float:
    """int_0^inf surv(x) dx, split at the laws' atoms (where surv jumps) and where surv crosses the ``LEVELS``; the
    last piece runs to infinity in units of that scale."""
    points = {0.0} | {_level_point(surv, level) for level in LEVELS}
    for law in dict.fromkeys(laws):
        points.update(a for a in law.atoms() if math.isfinite(a) and a >= 0)
    points = sorted(points)
    scale = points[-1] if points[-1] > 0 else 1.0
    opts = dict(epsabs=1e-14 * scale, epsrel=1e-11, limit=500)
    pieces = [integrate.quad(surv, a, b, **opts)[0] for a, b in zip(points[:-1], points[1:])]
    last = points[-1]
    pieces.append(scale * integrate.quad(lambda u: surv(last + scale * u), 0.0, math.inf, **opts)[0])
    return math.fsum(pieces)


def order_statistic_mean(laws: Laws, k: int, *, n: int | None = None, method: str = "auto") -> float:
    """E[X_(k:n)]: the mean of the k-th smallest (1-based) of n independent compute times X_1..X_n, X_i ~ laws[i]
    (or n copies of one law with ``n=``).

    Closed forms for n identical laws (``method="auto"``), with H_j the harmonic numbers:

    - exponential with mean mu: mu (H_n - H_{n-k}) = mu sum_{j=n-k+1}^{n} 1/j (Renyi's representation of exponential
      spacings; David and Nagaraja, "Order Statistics", 3rd ed., 2003, sec. 2.5);
    - shifted exponential: shift + scale (H_n - H_{n-k});
    - Pareto(alpha, x_m): x_m Gamma(n+1) Gamma(n-k+1-1/alpha) / (Gamma(n-k+1) Gamma(n+1-1/alpha)), infinite when
      n-k+1 <= 1/alpha (Malik, "Exact moments of order statistics from the Pareto distribution", 1966).

    Otherwise (and always with ``method="numeric"``), for nonnegative X_i,
    E[X_(k)] = int_0^inf P(X_(k) > x) dx, with P(X_(k) > x) = P(fewer than k of the X_i are <= x) computed from the
    laws' cdfs by the Poisson-binomial recursion (a regularized incomplete beta function when the laws are
    identical), integrated by adaptive quadrature piecewise between the laws' atoms (exact for constant and
    empirical laws).  The mean is infinite (returned as ``inf``) when the n-k+1 smallest Pareto tail indices of the
    laws sum to at most 1, since P(X_(k) > x) decays like x^(-that sum).
    """
    workers = _worker_laws(laws, n)
    n = len(workers)
    require(_is_int(k) and 1 <= k <= n, "k", f"must be an integer in [1, {n}]", k)
    require(method in ("auto", "numeric"), "method", "must be 'auto' or 'numeric'", method)
    k = int(k)
    if method == "auto" and len(set(workers)) == 1:
        closed = _closed_form(workers[0], k, n)
        if closed is not None:
            return closed
    if math.fsum(sorted(_tail_index(law) for law in workers)[: n - k + 1]) <= 1:
        return math.inf
    return _integrate_survival(_survival_of_kth(workers, k), workers)


def max_mean(laws: Laws, *, n: int | None = None, method: str = "auto") -> float:
    """E[max_i X_i] = E[X_(n:n)]: the compute part of a synchronous barrier round (see
    :func:`order_statistic_mean`)."""
    workers = _worker_laws(laws, n)
    return order_statistic_mean(workers, len(workers), method=method)


def sync_round_time(laws: Laws, latency: float = 0.0, *, n: int | None = None) -> float:
    """Mean time of one synchronous (barrier) round: E[max_i X_i] + latency, where latency is the constant uplink
    plus downlink time.

    Each round every worker computes from the same parameters, the server waits for all n contributions, applies
    them and sends the new parameters back.  Exact for constant latencies and no server contention (zero service
    time); with random latencies the round is E[max_i (X_i + U_i)] + ..., which this does not cover.
    """
    require(latency >= 0 and math.isfinite(latency), "latency", "must be finite and >= 0", latency)
    return max_mean(laws, n=n) + latency


def coded_round_time(code, n: int, law: DelayLaw) -> float:
    """Mean time of one round of the ``coded`` protocol with n workers whose compute times are i.i.d. ``law``
    (no latency, no server contention): a task of load l = ``code.load(n)`` takes l X, and the round ends when the
    finished tasks decode.

    - A code that decodes from any m tasks (``waits_for``: uncoded m = n, mds m = k, cyclic m = n - s):
      l E[X_(m:n)], the m-th order statistic (:func:`order_statistic_mean`).  For Lee et al.'s load-scaled
      shifted exponential, X = 1 + E/mu, this is uncoded (1/n)(1 + H_n/mu) and (n, k) MDS
      (1/k)(1 + (H_n - H_{n-k})/mu) (Lee, Lam, Pedarsani, Papailiopoulos and Ramchandran, "Speeding up distributed
      machine learning using codes", IEEE Trans. Inf. Theory 2018, Theorems 1 and 2).
    - Groups of g workers that compute the same parts (repetition r = g, fractional repetition s = g - 1): the
      last of the n/g groups to have one finished task, l E[max_groups min_{i in group} X_i] =
      l int_0^inf (1 - (1 - S(x)^g)^{n/g}) dx with S = P(X > x); for the shifted exponential
      (g/n)(1 + H_{n/g}/(g mu)) (the minimum of g is 1 + Exp(g mu)).
    """
    code.check(n)
    load = code.load(n)
    m = code.waits_for(n)
    if m is not None:
        return load * order_statistic_mean(law, m, n=n)
    g = getattr(code, "group", None)
    require(g is not None, "code", "must decode from any m tasks or from one task per group", code)
    groups = n // g
    if type(law) is ShiftedExponential:
        return load * (law.shift + law.scale * _harmonic_gap(groups, groups) / g)
    if type(law) is Exponential:
        return load * law.mean * _harmonic_gap(groups, groups) / g

    def survival(x):
        return 1.0 - (1.0 - float(law.sf(x)) ** g) ** groups

    return load * integrate.quad(survival, 0.0, math.inf, limit=200)[0]


def best_mds_k(n: int, law: DelayLaw) -> int:
    """The k that minimizes the mean (n, k) MDS round time (:func:`coded_round_time`), by enumeration of
    k = 1..n (Lee et al. 2018, Theorem 2: an interior optimum, k* ~ n (1 - 1/(mu ...)) for large n, with a
    Theta(log n) gain over uncoded computation)."""
    from .timing.codes import MDS

    times = [coded_round_time(MDS(k=k), n, law) for k in range(1, n + 1)]
    return int(np.argmin(times)) + 1


def ihs_contraction(m: int, d: int, q: float = 1, debias: str = "step") -> float:
    """E ||x_{t+1} - x*||_H^2 / ||x_t - x*||_H^2 of ``sketched_newton`` with q Gaussian sketches of m rows, lam = 0,
    lr = 1 (exact, for any x_t: the distribution of the step is rotation invariant).

    With W_i = U^T S_i^T S_i U (U the left singular vectors of A) Wishart(m, I_d) / m, the error e = H^{1/2}
    (x - x*) maps to (I - mu (1/q) sum_i W_i^{-1}) e (in the right singular basis), and with E[W^{-1}] =
    m / (m - d - 1) I, E[W^{-2}] = m^2 (m - 1) / ((m - d) (m - d - 1) (m - d - 3)) I (inverse Wishart moments):

    - ``step`` (mu = (m - d - 1) / m): rho / q with rho = ((d + 1) m - d^2 - 2 d + 1) / ((m - d) (m - d - 3));
    - ``none`` (mu = 1): (1 - a)^2 + (c - a^2) / q with a = m / (m - d - 1), c = E[W^{-2}]'s scalar: the floor
      (1 - a)^2 = ((d + 1) / (m - d - 1))^2 that no number of workers removes.

    Needs m > d + 3."""
    require(m > d + 3, "m", f"must be > d + 3 ({d + 3}) for a finite second moment", m)
    a = m / (m - d - 1)
    c = m * m * (m - 1) / ((m - d) * (m - d - 1) * (m - d - 3))
    if debias == "step":
        mu = 1 / a
        return (mu * mu * c - 1) / q
    require(debias == "none", "debias", "must be step or none (the closed forms)", debias)
    return (1 - a) ** 2 + (c - a * a) / q


def sketch_and_solve_error(m: int, d: int, q: float = 1) -> float:
    """E ||A (x_hat - x*)||^2 / ||A x* - y||^2 for the mean x_hat of q Gaussian sketch-and-solve solutions with
    m rows (lam = 0): d / (q (m - d - 1)), exact for m > d + 1.

    Given S A = G_1 (m x d, N(0, 1/m) entries in the left singular basis), S r = ||r|| g_2 with g_2 ~ N(0, I / m)
    independent of G_1 (r = y - A x* is orthogonal to range(A)), so the error of one solution is ||r||^2 g_2^T
    G_1 (G_1^T G_1)^{-2} G_1^T g_2, of mean ||r||^2 tr E[(G_1^T G_1)^{-1}] / m = ||r||^2 d / (m - d - 1); the
    solutions are unbiased and independent, so their mean's error is 1/q of it."""
    require(m > d + 1, "m", f"must be > d + 1 ({d + 1})", m)
    return d / (q * (m - d - 1))


def haar_sketch_error(n: int, d: int, m: int) -> float:
    """E ||A (x_hat - x*)||^2 / ||A x* - y||^2 for one sketch-and-solve with a Haar sketch (m of the n rows of a
    uniformly random rotation, an orthogonal projection onto a random m-dimensional subspace), lam = 0:
    d (n - m) / ((n - d) (m - d - 1)), exact for m > d + 1.

    By invariance, sketching with a random subspace is subsampling m rows of a Gaussian design X (n x d) whose
    residual direction is uniform in range(X)'s complement; then the error is (tr(X^T X (X_m^T X_m)^{-1}) - d) /
    (n - d), and E[X_b^T X_b] = (n - m) I for the other rows, E[(X_m^T X_m)^{-1}] = I / (m - d - 1).  (Derived
    here and checked by Monte Carlo in tests/test_sketching.py; with d / n -> g and m / n -> k it tends to
    g (1 - k) / ((1 - g) (k - g)), the regime of Dobriban and Liu, "Asymptotics for sketching in least squares
    regression", NeurIPS 2019.)  The SRHT (``hadamard``, with n replaced by the padded N) comes within a few
    percent of it in the reproduction ``sketch-averaging``, but is not a Haar sketch."""
    require(m > d + 1 and n >= m, "m", f"must be in ({d + 1}, n = {n}]", m)
    return d * (n - m) / ((n - d) * (m - d - 1))


def _cycle_means(means) -> np.ndarray:
    m = np.asarray(means, dtype=float).ravel()
    require(m.size >= 1, "means", "must hold at least one mean", m.tolist())
    require(bool(np.all(m > 0)), "means", "must all be > 0 (inf allowed)", m.tolist())
    return m


def async_throughput(means) -> float:
    """Updates per second of the asynchronous parameter server: sum_i 1 / m_i, where m_i = E[cycle of worker i]
    = E[compute] + E[uplink] + E[downlink] + E[service].

    Each worker alternates independent cycles, so its updates form a renewal process with rate 1/m_i (elementary
    renewal theorem, the renewal-reward theorem with reward 1 per cycle; e.g. Ross, "Stochastic Processes", 1996,
    sec. 3.6).  Holds in the long run and without server contention (the service time then only adds to the cycle).
    """
    return float(math.fsum(1.0 / _cycle_means(means)))


def worker_shares(means) -> np.ndarray:
    """Long-run fraction of updates made by each worker: (1/m_i) / sum_j (1/m_j) (see :func:`async_throughput`)."""
    rates = 1.0 / _cycle_means(means)
    return rates / math.fsum(rates)


def _check_n(n) -> int:
    require(_is_int(n) and n >= 1, "n", "must be an integer >= 1", n)
    return int(n)


def staleness_pmf(n: int, taus) -> np.ndarray:
    """P(tau = j) = (1/n) (1 - 1/n)^j for integers j >= 0 (0 elsewhere): the staleness law of the asynchronous
    parameter server with n always-busy workers, i.i.d. exponential compute times and zero latency and service.

    Derivation.  By memorylessness, whatever happened so far, the next completion comes from each of the n workers
    with probability 1/n, independently of the past: the sequence of workers that make updates is i.i.d. uniform on
    the n workers.  The server replies with the parameters it just produced, so a worker's read is the version right
    after its own previous write (or version 0 at the start), and the staleness of its next update is the number of
    updates by the other workers before its own next one: the number of failures before the first success in
    Bernoulli(1/n) trials, geometric on {0, 1, ...} with mean n - 1.  For the update with index k, counting back
    stops at 0, so its staleness is min(G, k) with G of this law; the law is exact for every update that follows
    another update of the same worker, and it is the steady-state law.
    """
    n = _check_n(n)
    t = np.asarray(taus, dtype=float)
    ok = (t >= 0) & (t == np.floor(t)) & np.isfinite(t)
    return np.where(ok, (1.0 / n) * (1.0 - 1.0 / n) ** np.where(ok, t, 0.0), 0.0)


def staleness_cdf(n: int, taus) -> np.ndarray:
    """P(tau <= t) = 1 - (1 - 1/n)^(floor(t) + 1) for t >= 0, 0 for t < 0 (see :func:`staleness_pmf`)."""
    n = _check_n(n)
    t = np.asarray(taus, dtype=float)
    j = np.floor(np.where(t >= 0, t, 0.0)) + 1.0
    below = 1.0 if n == 1 else -np.expm1(j * math.log1p(-1.0 / n))
    return np.where(t >= 0, below, 0.0)


def p_slow_round(p: float, n: int) -> float:
    """1 - (1 - p)^n: the probability that a synchronous round of n workers contains at least one slow worker when
    each is slow independently with probability p (the ``bimodal`` law)."""
    require(0 <= p <= 1, "p", "must be in [0, 1]", p)
    n = _check_n(n)
    return 1.0 if p == 1 else -math.expm1(n * math.log1p(-p))


def _count_done(t: float, taus: np.ndarray) -> int:
    """#{(i, j) : j >= 1, j tau_i <= t}, exactly for the float products j * tau_i."""
    j = np.floor(t / taus)
    j -= j * taus > t  # the division may round up by one
    j += (j + 1) * taus <= t  # ... or down by one
    return int(j.astype(np.int64).sum())


def rennala_collection_time(taus, S: int) -> float:
    """t_S = min {t : sum_i floor(t / tau_i) >= S}: the time workers with deterministic compute times tau_i take to
    collect S stochastic gradients when each computes back to back (Rennala SGD's collection phase; Tyurin and
    Richtarik, "Optimal time complexities of parallel stochastic optimization methods under a fixed computation
    model", NeurIPS 2023).

    Computed exactly as the S-th smallest element of the multiset {j tau_i : i, j >= 1} (the times at which
    gradients complete), which avoids floating-point errors of floor(t / tau_i) at t = j tau_i.  Since
    t R - n <= sum_i floor(t / tau_i) <= t R with R = sum_i 1/tau_i, t_S lies in [S/R, (S+n)/R]; only the about 2n
    multiples in that window are examined.
    """
    t = np.asarray(taus, dtype=float).ravel()
    require(t.size >= 1, "taus", "must hold at least one time", t.tolist())
    require(bool(np.all(np.isfinite(t) & (t > 0))), "taus", "must all be finite and > 0", t.tolist())
    require(_is_int(S) and S >= 1, "S", "must be an integer >= 1", S)
    rate = math.fsum(1.0 / t)
    lo, hi = S / rate * (1 - 1e-9), (S + t.size) / rate * (1 + 1e-9)
    while _count_done(hi, t) < S:  # not reached in exact arithmetic; guards against rounding
        hi *= 2
    candidates = np.unique(np.concatenate([
        np.arange(max(1, math.floor(lo / tau)), math.ceil(hi / tau) + 1, dtype=float) * tau for tau in t]))
    candidates = candidates[candidates <= hi]
    first, last = 0, candidates.size - 1  # smallest candidate with count >= S, by bisection
    while first < last:
        mid = (first + last) // 2
        if _count_done(candidates[mid], t) >= S:
            last = mid
        else:
            first = mid + 1
    return float(candidates[first])


def sync_vs_async_speedup(laws: Laws, latency: float = 0.0, *, n: int | None = None) -> float:
    """Predicted ratio of gradient throughputs, asynchronous over synchronous:
    (sum_i 1 / (E[X_i] + latency)) / (n / (E[max_i X_i] + latency)).

    The asynchronous rate is :func:`async_throughput` with cycle means E[X_i] + latency; the synchronous one is n
    gradients per :func:`sync_round_time`.  Same assumptions: constant latency (uplink plus downlink), no server
    contention.
    """
    workers = _worker_laws(laws, n)
    require(latency >= 0 and math.isfinite(latency), "latency", "must be finite and >= 0", latency)
    async_rate = async_throughput([law.mean + latency for law in workers])
    return async_rate * sync_round_time(workers, latency) / len(workers)


def easgd_radius(eta_h: float, alpha: float, p: int) -> float:
    """Spectral radius of synchronous EASGD's iteration on the quadratic f(x) = h x^2 / 2 without noise, with p
    identical workers (Zhang, Choromanska and LeCun 2015, section 4 and appendix):

        (x, x~)_{t+1} = M (x, x~)_t,   M = [[1 - eta h - alpha, alpha], [beta, 1 - beta]],   beta = p alpha.

    The iteration converges iff the radius is < 1 and diverges iff it is > 1."""
    require(p >= 1, "p", "must be >= 1", p)
    beta = p * alpha
    M = np.array([[1.0 - eta_h - alpha, alpha], [beta, 1.0 - beta]])
    return float(np.max(np.abs(np.linalg.eigvals(M))))


def async_mean_staleness(n: int, ages=None, updates: int | None = None) -> float:
    """Mean staleness of the asynchronous parameter server with n always-busy workers: n - 1 in the long run, for
    any compute-time law (Lian et al. 2015 take T proportional to n; Mishchenko et al. 2022, sec. 2).

    Exactly, over the first K = ``updates`` updates: if worker w made c_w >= 1 of them, the last at index l_w, its
    staleness values sum to l_w - (c_w - 1) (its first update read version 0, each later one the version right
    after its previous write), so summing over the workers

        mean tau = n - 1 - (1/K) sum_w (K - 1 - l_w),

    with ``ages`` = (K - 1 - l_w)_w the number of updates since each worker's last one.  Without ``ages``, n - 1.
    This is :func:`batched_mean_staleness` with one contribution per update.
    """
    n = _check_n(n)
    if ages is None:
        return float(n - 1)
    return batched_mean_staleness(n, updates, updates, ages)


def batched_mean_staleness(n: int, updates: int, contributions: int, ages=None) -> float:
    """Mean staleness when updates batch several contributions and every contributor is answered with the new
    version (a draining server, a logged PIAG run): n/m - 1 in the long run, with m = C/K the mean number of
    contributions per update (FedBuff's buffer answers all but one at once: :func:`buffered_mean_staleness`).

    Exactly, over K = ``updates`` updates holding C = ``contributions`` contributions, when every worker's first
    contribution read version 0 and each later one the version right after the update that took its previous one
    (a server that replies with the new version): worker w's staleness values sum to l_w + 1 - c_w (l_w its last
    update, c_w its contributions), so

        mean tau = (1/C) sum_w (l_w + 1) - 1 = (n K - sum_w (K - 1 - l_w)) / C - 1,

    with ``ages`` = (K - 1 - l_w)_w.  Without ``ages``, n K / C - 1 = n/m - 1.  C = K gives n - 1 - (1/K) sum_w
    ages_w (:func:`async_mean_staleness`).
    """
    n = _check_n(n)
    require(updates is not None and updates >= 1, "updates", "must be >= 1", updates)
    require(contributions is not None and contributions >= 1, "contributions", "must be >= 1", contributions)
    if ages is None:
        return n * updates / contributions - 1.0
    ages = np.asarray(ages, dtype=float)
    require(ages.size == n, "ages", f"must hold one age per worker ({n})", ages.size)
    return (n * updates - math.fsum(ages)) / contributions - 1.0


def buffered_mean_staleness(n: int, updates: int, contributions: int, reads=None) -> float:
    """Mean staleness of FedBuff's buffered server (protocol ``buffered``) with n always-busy clients and no service
    time: (n - 1) U / C in the long run, (n - 1)/K for U updates of K = C/U contributions each.

    Exactly: a client's contribution applied in update k_i is followed by a read of version k_i + f_i, with f_i = 1
    when it filled the buffer (it waits for the update and gets the new version) and 0 otherwise (acknowledged at
    once, it reads the current version, whose pending buffer is update k_i).  Its staleness values telescope,
    sum_i (k_i - r_i) = r_next - r_1 - (buffers it filled), and every update has one filler, so

        mean tau = (sum_w r_next_w - U) / C,

    with ``reads`` = (r_next_w)_w the version each client read after its last applied contribution (0 for a
    client with none): l_w + f_w.  Without ``reads``, r_next_w = U for all w: (n U - U) / C.  (The draining server
    replies to every contributor with the new version, which gives n/m - 1 instead:
    :func:`batched_mean_staleness`.)"""
    n = _check_n(n)
    require(updates is not None and updates >= 1, "updates", "must be >= 1", updates)
    require(contributions is not None and contributions >= 1, "contributions", "must be >= 1", contributions)
    if reads is None:
        return (n - 1) * updates / contributions
    reads = np.asarray(reads, dtype=float)
    require(reads.size == n, "reads", f"must hold one version per client ({n})", reads.size)
    return (math.fsum(reads) - updates) / contributions


def delayed_gd_critical_step(tau: int) -> float:
    """h* = 2 sin(pi / (2 (2 tau + 1))): gradient descent with a constant delay tau on a quadratic,
    x_{k+1} = x_k - eta lambda x_{k-tau}, is asymptotically stable exactly when h = eta lambda is in (0, h*)
    (Levin and May, "A note on difference-delay equations", Theoretical Population Biology 9, 178-187, 1976).
    tau = 0 gives the classical eta lambda < 2; for large tau, h* ~ pi / (2 tau + 1)."""
    require(_is_int(tau) and tau >= 0, "tau", "must be an integer >= 0", tau)
    return 2.0 * math.sin(math.pi / (2 * (2 * int(tau) + 1)))


def delayed_gd_radius(h: float, tau: int) -> float:
    """The spectral radius of x_{k+1} = x_k - h x_{k-tau}: the largest |z| over the roots of
    z^(tau+1) - z^tau + h = 0 (the characteristic polynomial; see :func:`delayed_gd_critical_step`)."""
    require(_is_int(tau) and tau >= 0, "tau", "must be an integer >= 0", tau)
    coefficients = np.zeros(int(tau) + 2)
    coefficients[0] = 1.0
    coefficients[1] -= 1.0
    coefficients[-1] += h
    return float(np.max(np.abs(np.roots(coefficients))))


def _sorted_times(taus) -> np.ndarray:
    t = np.sort(np.asarray(taus, dtype=float).ravel())
    require(t.size >= 1 and bool(np.all(np.isfinite(t) & (t > 0))), "taus", "must be finite times > 0",
            t.tolist())
    return t


def optimal_time(taus, L: float, delta: float, eps: float, sigma2: float) -> tuple[float, int]:
    """(T, m*): the optimal time complexity of parallel stochastic optimization with worker i taking tau_i seconds
    per stochastic gradient (Tyurin and Richtarik, "Optimal time complexities of parallel stochastic optimization
    methods under a fixed computation model", NeurIPS 2023, Theorems 6.4 and 7.5), up to its universal constant:

        T = min_{m in 1..n} [ (1/m sum_{i=1}^{m} 1/tau_(i))^{-1} (L Delta / eps + sigma^2 L Delta / (m eps^2)) ],

    for an L-smooth f with f(x_0) - f* <= Delta and gradient noise variance sigma^2, to reach E||grad f||^2 <= eps;
    tau_(1) <= ... <= tau_(n) are the sorted times and m* the minimizing number of fastest workers.  Rennala SGD
    and Ringmaster ASGD attain it; the slowest workers beyond m* should not be waited for."""
    t = _sorted_times(taus)
    for name, v in (("L", L), ("delta", delta), ("eps", eps)):
        require(v > 0 and math.isfinite(v), name, "must be finite and > 0", v)
    require(sigma2 >= 0 and math.isfinite(sigma2), "sigma2", "must be finite and >= 0", sigma2)
    m = np.arange(1, t.size + 1)
    values = m / np.cumsum(1.0 / t) * (L * delta / eps) * (1.0 + sigma2 / (m * eps))
    best = int(np.argmin(values))
    return float(values[best]), best + 1


def minibatch_sgd_time(taus, L: float, delta: float, eps: float, sigma2: float) -> float:
    """tau_(n) (L Delta / eps + sigma^2 L Delta / (n eps^2)): the time complexity of synchronous minibatch SGD with
    n workers, up to the same constant as :func:`optimal_time` (Tyurin and Richtarik 2023, sec. 4): every round waits
    for the slowest worker and averages n gradients.  Its ratio to :func:`optimal_time` grows with
    tau_(n) / tau_(1)."""
    t = _sorted_times(taus)
    n = t.size
    optimal_time(t, L, delta, eps, sigma2)  # validates the constants
    return float(t[-1] * (L * delta / eps) * (1.0 + sigma2 / (n * eps)))


def heavy_ball_trajectory(grad, y0, eta: float, n: int, steps: int) -> np.ndarray:
    """y_0 .. y_steps of the momentum recursion that asynchrony implies (Mitliagkas, Zhang, Hadjis and Re,
    "Asynchrony begets momentum, with an application to deep learning", Allerton 2016):

        y_1 = y_0 - eta grad f(y_0),
        y_{k+1} = y_k + (1 - 1/n) (y_k - y_{k-1}) - (eta / n) grad f(y_k).

    With n always-busy workers, exponential compute times and no latency, the worker of each update is uniform and
    independent of the past, so the staleness is geometric (:func:`staleness_pmf`) and, for a linear gradient,
    E[x_k] follows this recursion exactly: the implicit momentum is 1 - 1/n and the effective step eta / n.
    ``grad`` maps y to grad f(y); rows of the result are y_k."""
    n = _check_n(n)
    require(_is_int(steps) and steps >= 0, "steps", "must be an integer >= 0", steps)
    y = np.empty((steps + 1, np.size(y0)))
    y[0] = y0
    if steps:
        y[1] = y[0] - eta * grad(y[0])
    for k in range(1, steps):
        y[k + 1] = y[k] + (1.0 - 1.0 / n) * (y[k] - y[k - 1]) - (eta / n) * grad(y[k])
    return y


def asysg_linear_speedup_workers(K: int, c: float = 0.25) -> float:
    """c sqrt(K): the number of workers up to which AsySG keeps its linear speedup for K updates (Lian et al.,
    "Asynchronous parallel stochastic gradient for nonconvex optimization", NeurIPS 2015, Corollaries 2 and 4: the
    rate O(1/sqrt(M K)) holds while the staleness bound T, about the number of workers, is O(sqrt(K)))."""
    require(_is_int(K) and K >= 1, "K", "must be an integer >= 1", K)
    require(c > 0, "c", "must be > 0", c)
    return c * math.sqrt(K)
