"""SGD whose step depends on the update's delay, and the protocol-bound SGD methods of optimal-time theory.

Every method here is ``sgd``'s update x_{k+1} = P(x_k - eta_k * (1/m) sum_j g_j) with one rule for eta_k
(``SGD.step``); only that rule, or the protocol the method is defined on, differs:

- ``asysg``: AsySG-con / AsySG-incon with minibatch M (Lian et al. 2015), eta_k = gamma M (the sum of M gradients);
- ``delay_adaptive``: eta_k = eta n / max(n, tau_k) (Mishchenko, Bach, Even and Woodworth 2022);
- ``koloskova``: eta_k = eta if tau_k <= tau_C, else min(eta, 1/(4 L tau_k)) or 0 (Koloskova, Stich and Jaggi 2022);
- ``rennala_sgd``, ``ringmaster_asgd``, ``minibatch_sgd``: constant step on the ``rennala``, ``ringmaster`` and
  ``sync`` protocols (Tyurin and Richtarik 2023; Maranjyan, Tyurin and Richtarik 2025; the synchronous baseline).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..params import kind, require
from ..timing.protocol import Family
from .base import Algorithm
from .sgd import SGD

register = Algorithm.registry.register


def asynchronous(protocol) -> bool:
    """One gradient per update, applied at whatever staleness it has: an asynchronous server (or a given schedule
    of delays) or lock-free shared memory, without local steps."""
    return protocol.family in (Family.ASYNC, Family.SHARED_MEMORY) and not protocol.takes_local_steps


@register("asysg")
@dataclass(frozen=True, kw_only=True)
class AsySG(SGD):
    """Asynchronous parallel stochastic gradient with minibatch M = ``batch_size`` and steplength gamma = ``lr``
    (Lian, Huang, Li and Liu, "Asynchronous parallel stochastic gradient for nonconvex optimization", NeurIPS 2015):

        x_{k+1} = x_k - gamma sum_{m=1}^{M} G(x_{k - tau_k}; xi_{k,m}),

    with consistent reads on the ``async`` parameter server (AsySG-con) or inconsistent reads x_hat_k on
    ``shared_memory`` (AsySG-incon).  The worker sends the mean of its M gradients, so the step is gamma M.
    The theory takes gamma = O(1 / sqrt(M K sigma^2)) and promises linear speedup while the staleness bound T
    satisfies K >= O(M T^2 / sigma^2)."""

    accepts = staticmethod(asynchronous)

    def step(self, info):
        return self.lr * self.batch_size


@register("delay_adaptive")
@dataclass(frozen=True, kw_only=True)
class DelayAdaptive(SGD):
    """Delay-adaptive asynchronous SGD (Mishchenko, Bach, Even and Woodworth, "Asynchronous SGD beats minibatch
    SGD under arbitrary delays", NeurIPS 2022):

        x_{k+1} = x_k - eta_k g(x_{k - tau_k}),   eta_k = eta n / max(n, tau_k) = eta min(1, n / tau_k),

    with n = ``workers`` (default: the cluster's workers).  Gradients as stale as the number of workers or less
    get the full step; a straggler's very stale gradient is scaled down in proportion to its delay, so the
    method's guarantee depends on n and not on the largest delay."""

    workers: int | None = None
    accepts = staticmethod(asynchronous)

    def __post_init__(self):
        super().__post_init__()
        require(self.workers is None or self.workers >= 1, "workers", "must be >= 1 (or null: the cluster's)",
                self.workers)

    def bind(self, problem, n_workers=None):
        if self.workers is not None:
            return self
        require(n_workers is not None, "workers", "must be given when the number of workers is not known", None)
        return replace(self, workers=int(n_workers))

    def step(self, info):
        n = self.workers
        return self.lr * n / max(n, max(info.staleness))


@register("koloskova")
@dataclass(frozen=True, kw_only=True)
class Koloskova(SGD):
    """Asynchronous SGD with the delay threshold of Koloskova, Stich and Jaggi ("Sharper convergence guarantees for
    asynchronous SGD for distributed and federated learning", NeurIPS 2022):

        eta_k = eta                          if tau_k <= tau_C,
        eta_k = min(eta, 1 / (4 L tau_k))    otherwise (``stale: scale``), or 0 (``stale: drop``: the gradient is
                                             dropped and the parameters stay as they are),

    with tau_C = ``tau_c`` (default: the cluster's workers) and L = ``L`` (default: the problem's smoothness)."""

    tau_c: int | None = None
    L: float | None = None
    stale: str = "scale"
    accepts = staticmethod(asynchronous)

    def __post_init__(self):
        super().__post_init__()
        require(self.tau_c is None or self.tau_c >= 0, "tau_c", "must be >= 0 (or null: the cluster's workers)",
                self.tau_c)
        require(self.L is None or self.L > 0, "L", "must be > 0 (or null: the problem's smoothness)", self.L)
        require(self.stale in ("scale", "drop"), "stale", "must be one of scale, drop", self.stale)

    def check(self, scenario):
        require(self.L is not None or scenario.problem.knows_smoothness, "algorithm.L",
                f"must be given: problem {kind(scenario.problem)} has no known smoothness constant", None)

    def bind(self, problem, n_workers=None):
        L = problem.smoothness if self.L is None else self.L
        require(L is not None, "L", f"must be given: {type(problem).__name__} has no known smoothness constant", None)
        tau_c = n_workers if self.tau_c is None else self.tau_c
        require(tau_c is not None, "tau_c", "must be given when the number of workers is not known", None)
        return replace(self, L=float(L), tau_c=int(tau_c))

    def step(self, info):
        tau = max(info.staleness)
        if tau <= self.tau_c:
            return self.lr
        return 0.0 if self.stale == "drop" else min(self.lr, 1.0 / (4.0 * self.L * tau))


@register("rennala_sgd")
@dataclass(frozen=True, kw_only=True)
class RennalaSGD(SGD):
    """Rennala SGD (Tyurin and Richtarik, "Optimal time complexities of parallel stochastic optimization methods
    under a fixed computation model", NeurIPS 2023) on the ``rennala`` protocol, which collects S = ``batch``
    gradients at the current point from whichever workers finish first:

        x_{k+1} = x_k - gamma (1/S) sum_{s=1}^{S} g(x_k; xi_{k,s}).

    The theory takes S = max(1, ceil(sigma^2 / eps)) and gamma = min(1/L, eps S / (2 L sigma^2))."""

    @staticmethod
    def accepts(protocol):
        return protocol.family is Family.BATCHED


@register("ringmaster_asgd")
@dataclass(frozen=True, kw_only=True)
class RingmasterASGD(SGD):
    """Ringmaster ASGD (Maranjyan, Tyurin and Richtarik, "Ringmaster ASGD: the first asynchronous SGD with optimal
    time complexity", ICML 2025) on the ``ringmaster`` protocol, which never applies a gradient with delay above
    ``max_staleness`` and stops computations that would be:

        x_{k+1} = x_k - gamma g(x_{k - tau_k}; xi_k),   tau_k <= max_staleness = R - 1.

    The theory takes R = max(1, ceil(sigma^2 / eps)) and gamma = min(1 / (2 R L), eps / (4 L sigma^2))."""

    @staticmethod
    def accepts(protocol):
        return protocol.family is Family.ASYNC and protocol.bounds_staleness and not protocol.takes_local_steps


@register("minibatch_sgd")
@dataclass(frozen=True, kw_only=True)
class MinibatchSGD(SGD):
    """Synchronous minibatch SGD, the baseline of asynchronous theory: every round waits for all n workers,

        x_{k+1} = x_k - eta (1/n) sum_{i=1}^{n} g(x_k; xi_{k,i}),

    so a round takes as long as the slowest worker (e.g. Mishchenko et al. 2022; Tyurin and Richtarik 2023)."""

    @staticmethod
    def accepts(protocol):
        return protocol.family is Family.ROUNDS and not protocol.takes_local_steps
