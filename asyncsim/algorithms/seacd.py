"""SEACD: saddle-escaping asynchronous coordinate descent."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..params import ParamError, kind, require
from .base import Algorithm
from .coordinate import BlockGrad, CoordinateSteps
from .sgd import project


class SEACDMessage(NamedTuple):
    """A worker's block gradient and the 63-bit seed of its step (keys the perturbation, if the server makes one
    while applying this update)."""

    grad: BlockGrad
    seed: int


class SEACDState(NamedTuple):
    """Server state.  ``x`` is x^j after ``updates`` = j updates (the perturbed point right after a perturbation)."""

    x: np.ndarray
    updates: int
    call_steps: int
    """Steps made so far in the current GACD call."""
    norms: tuple[float, ...]
    """||x^{k+1} - x^k||_2 for the last min(j, tau) steps k, oldest first."""
    energy: float
    """E at the end of the last GACD call (NaN before the first call ends)."""
    perturbations: int
    last_perturbation: int | None
    """The update count j at the last perturbation, or None."""
    x_tilde: np.ndarray | None
    """The point just before the pending perturbation (None when no escape check is pending)."""
    e_tilde: float
    """Its energy."""
    done: bool
    """A local minimum has been declared (``params`` is then x_tilde)."""


def uniform_ball(rng: np.random.Generator, dim: int, radius: float) -> np.ndarray:
    """A point uniform in the Euclidean ball of ``radius`` in R^dim: radius U^(1/dim) z / ||z||, z ~ N(0, I)."""
    z = rng.standard_normal(dim)
    return (radius * rng.random() ** (1.0 / dim) / np.linalg.norm(z)) * z


@Algorithm.registry.register("seacd")
@dataclass(frozen=True, kw_only=True)
class SEACD(CoordinateSteps):
    """Saddle-escaping asynchronous coordinate descent (M. Bornstein, "Escaping from saddle points using
    asynchronous coordinate descent", AMSC 663/664, University of Maryland, 2021), with the perturbation and
    stopping rule of perturbed gradient descent (PGD, Jin, Ge, Netrapalli, Kakade and Jordan, "How to escape saddle
    points efficiently", ICML 2017).

    **Steps.**  Every update of the trace is one SWACD coordinate step, computed by a worker on the (delayed)
    iterate x_hat^j it read, for block i chosen as in ``asyscd`` (``blocks``, ``choice``):

        x_i^{j+1} = P(x_i^j - eta grad_i f(x_hat^j)),    x_e^{j+1} = x_e^j for the other blocks e,

    P the projection onto [lower, upper].  The delays must be bounded by ``tau``: an update with staleness > tau
    raises ParamError (run under ``protocol: {kind: ringmaster, max_staleness: tau}`` or
    ``{kind: serial_async, tau: tau}``).

    **GACD calls.**  The server groups consecutive updates into calls of GACD: a call ends after tau + 1 steps, or
    early after a step with ||x^{j+1} - x^j||_2 >= M.  At the end of a call, with j the new iterate index,

        E_j = f(x^j) + (L/2) sum_{k=j-tau}^{j-1} (k - (j - tau) + 1) ||x^{k+1} - x^k||_2^2     (terms k < 0 are 0),

    the Lyapunov function of delayed coordinate descent (Sun, Hannah and Yin, NeurIPS 2017), recorded as the
    ``energy`` metric (NaN before the first call ends).  f is evaluated through ``ApplyInfo.problem``.

    **Perturbation (PGD).**  At the end of a call, if ||grad f(x^j)|| <= g_thres, no escape check is pending and at
    least t_thres updates have passed since the last perturbation (or there was none), the server remembers
    x_tilde = x^j and E_tilde = E_j and sets x^j <- P(x^j + xi), xi uniform in the ball of radius r, drawn from
    ``numpy.random.default_rng(seed)`` with ``seed`` the 63-bit integer that the ALGORITHM stream drew for the
    worker step of the update being applied (keyed randomness; the first message's, in worker order).  The jump
    is not a step of the energy's sum.  At the first call end at least ``window`` updates later: if
    E_j > E_tilde - F, the energy has not fallen by F, so x_tilde is declared a local minimum: ``finished`` is
    True (the replay stops) and ``params`` returns x_tilde, the point before the perturbation, as PGD returns
    x_tilde_{t_noise}.  Otherwise the saddle was escaped and the method goes on.  Metrics: ``energy`` and
    ``perturbations`` (count).

    **Parameters** (None: resolved by ``bind`` from the problem; the bound algorithm shows the values used).

    - ``tau`` (default 0): the delay bound, an integer >= 0; calls have tau + 1 steps.
    - ``L`` (default: ``problem.smoothness``): the Lipschitz constant of grad f; an error if neither is known.
    - ``lr`` (eta; default 1 / ((2 tau + 1) L)): chosen explicitly, not searched.  It is half the bound
      2 / ((2 tau + 1) L) under which E is a Lyapunov function for delayed coordinate descent (Sun, Hannah and
      Yin 2017); a given lr must be below that bound.
    - ``M`` (default None: no early end, every call has tau + 1 steps): the step length that ends a call early.
    - ``g_thres`` (default 1e-3): the gradient norm under which the server perturbs.
    - ``r`` (default g_thres / L, PGD's ratio r = g_thres / ell): the perturbation radius.
    - ``t_thres`` (default ceil(10 blocks log(sqrt(dim) / r) / (lr L)), log at least 1): the number of updates
      between perturbations.  The default is the number of coordinate updates that grow a component along a
      negative curvature of -L/10 by the factor sqrt(dim) / r (PGD's t_thres ~ (L / gamma) log d); set it (and
      ``window``) for the flattest negative curvature you want to escape.
    - ``F`` (default g_thres^2 / L): the energy decrease that counts as an escape.
    - ``window`` (default t_thres, at least 1, as in PGD): the number of updates after a perturbation before the
      escape check.
    - ``blocks``, ``choice``, ``lower``, ``upper``: as in ``asyscd``.

    Cost: every call end evaluates f, and the full gradient when a perturbation is allowed.
    """

    tau: int = 0
    recorded = ("energy", "perturbations")
    lr: float | None = None
    L: float | None = None
    M: float | None = None
    r: float | None = None
    g_thres: float = 1e-3
    t_thres: int | None = None
    F: float | None = None
    window: int | None = None

    def __post_init__(self):
        require(self.tau >= 0, "tau", "must be >= 0", self.tau)
        for name in ("lr", "L", "M", "r"):
            value = getattr(self, name)
            require(value is None or value > 0, name, "must be > 0", value)
        require(self.g_thres > 0, "g_thres", "must be > 0", self.g_thres)
        require(self.t_thres is None or self.t_thres >= 0, "t_thres", "must be >= 0", self.t_thres)
        require(self.F is None or self.F >= 0, "F", "must be >= 0", self.F)
        require(self.window is None or self.window >= 1, "window", "must be >= 1", self.window)
        self._check_coordinates()

    def check(self, scenario):
        """Blocks within the dim, a known L, the step bound when L is given, and delays bounded by tau: the
        protocol must promise it (``Protocol.staleness_bound``), since an update over the bound stops the run."""
        spec, protocol = scenario.problem, scenario.protocol
        self._bound_blocks(spec, "algorithm.blocks")
        require(self.L is not None or spec.knows_smoothness, "algorithm.L", f"must be given: problem {kind(spec)} "
                "has no known smoothness constant, and SEACD's step and energy need L", None)
        if self.L is not None:  # the defaults that follow from L, resolved now as the run will
            self._resolved(self.L, spec.dim, self._bound_blocks(spec), "algorithm.")
        bound = protocol.staleness_bound(scenario.cluster, scenario.run.updates)
        if bound is None or bound > self.tau:
            promise = ("does not bound them (random or interacting durations)" if bound is None else
                       f"bounds them only by {bound}")
            raise ParamError(f"algorithm.tau must bound every update's staleness: SEACD assumes delays bounded by "
                             f"tau = {self.tau}, but protocol {kind(protocol)} {promise}; run it under protocol "
                             f"ringmaster (max_staleness: {self.tau}) or serial_async (tau: {self.tau})"
                             + ("" if bound is None else f", or set tau >= {bound}") + f", got {self.tau}")

    def _resolved(self, L: float, dim: int, blocks: int, prefix: str = "") -> "SEACD":
        """The defaults that follow from L (class docstring), checked: the step below its bound, and finite
        derived values (an extreme L, lr or r would make them overflow)."""
        bound = 2.0 / ((2 * self.tau + 1) * L)
        lr = bound / 2 if self.lr is None else self.lr  # half the bound
        require(0 < lr < bound, prefix + "lr", f"must be < 2 / ((2 tau + 1) L) = {bound:.6g} (tau = {self.tau}, "
                f"L = {L:.6g}), the step-size bound of delayed coordinate descent, and > 0", lr)
        r = self.g_thres / L if self.r is None else self.r
        t_thres = self.t_thres
        if t_thres is None:  # coordinate steps grow a component along curvature -L/10 by sqrt(dim) / r
            steps = 10 * blocks * max(1.0, math.log(math.sqrt(dim) / r)) / (lr * L) if r > 0 else math.inf
            require(math.isfinite(steps) and steps < 2**62, prefix + "t_thres", "must be given: its default "
                    "10 blocks log(sqrt(dim) / r) / (lr L) is not a finite count for these lr, L and r", None)
            t_thres = math.ceil(steps)
        try:
            F = self.g_thres ** 2 / L if self.F is None else self.F
        except OverflowError:
            F = math.inf
        require(math.isfinite(F), prefix + "F", "must be given: its default g_thres^2 / L is not finite", None)
        return replace(self, blocks=blocks, L=float(L), lr=lr, r=r, t_thres=t_thres, F=F,
                       window=max(1, t_thres) if self.window is None else self.window)

    def bind(self, problem, n_workers=None):
        L = problem.smoothness if self.L is None else self.L
        require(L is not None, "L", f"must be given: {type(problem).__name__} has no known smoothness constant, "
                "and SEACD's step and energy need L", None)
        return self._resolved(L, problem.dim, self._bound_blocks(problem))

    def draw(self, problem, rng, n_steps):
        """Per step: a uniform block index and a 63-bit perturbation seed."""
        return np.stack([self._draw_blocks(problem, rng, n_steps), rng.integers(0, 2**63 - 1, n_steps)], axis=1)

    def init(self, x0, n_workers):
        x, cursors = self._init(x0, n_workers)
        return SEACDState(x=x, updates=0, call_steps=0, norms=(), energy=math.nan, perturbations=0,
                          last_perturbation=None, x_tilde=None, e_tilde=math.nan, done=False), cursors

    def local(self, snapshot, worker_state, problem, draw):
        grad, cursor = self.block_gradient(snapshot, worker_state, problem, draw[0])
        return SEACDMessage(grad, int(draw[1])), cursor

    def apply(self, server_state, messages, info):
        s = server_state
        if s.done:
            return s
        if self.lr is None or self.L is None:
            raise ParamError("lr: call bind(problem) first, to resolve lr and L")
        stale = max(info.staleness, default=0)
        if stale > self.tau:
            raise ParamError(f"tau must bound every update's staleness: SEACD assumes delays bounded by tau = "
                             f"{self.tau}, but update {info.update} has staleness {stale}; run it under protocol "
                             f"ringmaster (max_staleness: {self.tau}) or serial_async (tau: {self.tau}), or raise tau")
        x = s.x
        for m in messages:
            x = self.block_step(x, m.grad, self.lr)
        if len(messages) == 1:
            lo = messages[0].grad.start
            hi = lo + len(messages[0].grad.values)
            step = float(np.linalg.norm(x[lo:hi] - s.x[lo:hi]))
        else:
            step = float(np.linalg.norm(x - s.x))
        j = s.updates + 1
        norms = (s.norms + (step,))[-self.tau:] if self.tau > 0 else ()
        ended = s.call_steps + 1 == self.tau + 1 or (self.M is not None and step >= self.M)
        s = s._replace(x=x, updates=j, call_steps=0 if ended else s.call_steps + 1, norms=norms)
        return self._end_call(s, info, messages[0].seed) if ended else s

    def energy(self, f: float, norms: tuple[float, ...]) -> float:
        """E_j = f(x^j) + (L/2) sum_k (k - (j - tau) + 1) ||x^{k+1} - x^k||^2 over the last len(norms) <= tau
        steps (oldest first; the newest, k = j - 1, has weight tau)."""
        first = self.tau - len(norms) + 1
        return f + self.L / 2 * sum((first + a) * n * n for a, n in enumerate(norms))

    def _end_call(self, s: SEACDState, info, seed: int) -> SEACDState:
        problem = info.problem
        if problem is None:
            raise ParamError("problem: SEACD evaluates f on the server; ApplyInfo.problem must be set")
        j, x = s.updates, s.x
        e = self.energy(problem.loss(x), s.norms)
        s = s._replace(energy=e)
        if s.x_tilde is not None and j - s.last_perturbation >= self.window:
            if e > s.e_tilde - self.F:
                return s._replace(done=True)  # no escape: x_tilde is a local minimum
            s = s._replace(x_tilde=None, e_tilde=math.nan)
        if (s.x_tilde is None and (s.last_perturbation is None or j - s.last_perturbation >= self.t_thres)
                and np.linalg.norm(problem.grad(x)) <= self.g_thres):
            xi = uniform_ball(np.random.default_rng(seed), len(x), self.r)
            s = s._replace(x=project(x + xi, self.lower, self.upper), perturbations=s.perturbations + 1,
                           last_perturbation=j, x_tilde=x, e_tilde=e)
        return s

    def params(self, server_state):
        s = server_state
        return s.x_tilde if s.done else s.x

    def metrics(self, server_state):
        return {"energy": server_state.energy, "perturbations": float(server_state.perturbations)}

    def finished(self, server_state):
        return server_state.done
