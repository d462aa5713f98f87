"""ADMM for neural networks without gradients (Taylor, Burmeister, Xu, Singh, Patel and Goldstein, "Training neural
networks without gradients: a scalable ADMM approach", ICML 2016, arXiv:1605.02026), data parallel with transpose
reduction (Goldstein, Taylor, Barabin and Sayre, "Unwrapping ADMM: efficient distributed computing via transpose
reduction", AISTATS 2016, arXiv:1504.02147), as in the seed slides (Haltmeyer, "Training neural networks in
parallel with ADMM").

Column convention: a_l has shape (n_l, m) for a shard of m samples, a_0 = X^T.  The network of L layers
a_l = h(W_l a_{l-1}) (no biases, output z_L = W_L a_{L-1}) is split with z_l = W_l a_{l-1}, a_l = h(z_l) and
trained on the relaxed objective (6) of the seed (Taylor et al. eq. 3-4)

    C(z_L, y) + <z_L, lambda> + beta_L ||z_L - W_L a_{L-1}||^2
              + sum_{l=1}^{L-1} [ gamma_l ||a_l - h(z_l)||^2 + beta_l ||z_l - W_l a_{l-1}||^2 ],

C the hinge cost sum_c [y_c max(0, 1 - z_c) + (1 - y_c) max(0, z_c)] of one-hot labels y.  One iteration (the
seed's Algorithm 1, with its index typo fixed: W_l <- z_l a_{l-1}^+):

    for l = 1..L-1:  W_l <- z_l a_{l-1}^+
                     a_l <- (beta_{l+1} W_{l+1}^T W_{l+1} + gamma_l I)^{-1}
                              (beta_{l+1} W_{l+1}^T z_{l+1} + gamma_l h(z_l))
                     z_l <- argmin_z gamma_l ||a_l - h(z)||^2 + beta_l ||z - W_l a_{l-1}||^2
    W_L <- z_L a_{L-1}^+
    z_L <- argmin_z C(z, y) + <z, lambda> + beta_L ||z - W_L a_{L-1}||^2
    lambda <- lambda + beta_L (z_L - W_L a_{L-1})        (not during the first ``warmup`` iterations)

The data are split across the workers; each holds its shard's a, z, lambda, and the weights are solved by transpose
reduction: W_l = (sum_n z_l^n a_{l-1}^n^T) (sum_n a_{l-1}^n a_{l-1}^n^T)^+, the sums all-reduced in worker order.
Every update rule is a small pure function below; :class:`ADMMNet` maps them onto the trace (one ADMM iteration is L
rounds, one per layer).

While lambda = 0 (the warm-up) every step minimizes (6) exactly over its block, so (6) never increases.  As in the
seed and Taylor et al., lambda enters the z_L-update only (the W-updates ignore it), so a fixed point need not be a
stationary point of the training loss: with L = 1 on digits and beta = 0.2 the mean hinge loss stalls near 0.35,
where L-BFGS on the same loss reaches 0.04.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from ..budget import Footprint
from ..params import ParamError, require
from ..problems.mlp import activate, hinge_cost
from .base import Algorithm

ACTIVATIONS = ("relu", "hard_sigmoid")
"""The activations with a closed-form z-update: relu max(0, z) and the seed's discrete sigmoid clip(z, 0, 1)."""

RCOND = 1e-10
"""Default relative cut-off of the Gram pseudo-inverse (eigenvalues <= RCOND * largest are treated as zero).

G = sum_n a a^T is singular on real image data (always-zero pixels give zero rows and columns) and when ReLU units
die; its eigenvalues are the squared singular values of a, computed with an absolute error of about
eps * m * ||G|| (m summed terms, eps = 2.2e-16), i.e. 1e-11 relative for m = 60,000 samples.  A cut-off of 1e-10
stays above that noise (so a direction that is zero up to rounding is dropped, not inverted into a huge weight), while
it drops only directions along which a spreads less than 1e-5 of its largest singular value: for a well-conditioned
Gram the result is the exact least-squares solution z a^+ to rounding."""

ENTRY_FLOPS = 10
"""Flops counted per entry of an entrywise update (the case analysis of a z-update, h(z), the lambda step)."""

EIGH_FLOPS = 9
"""Flops of a symmetric eigendecomposition with eigenvectors, per n^3 (Golub and Van Loan, symmetric QR: ~9 n^3)."""


# ---------------------------------------------------------------------------------------------------------- rules


def weight_update(sum_za: np.ndarray, sum_aa: np.ndarray, rcond: float = RCOND) -> np.ndarray:
    """W_l = (sum_n z_l^n a_{l-1}^n^T) (sum_n a_{l-1}^n a_{l-1}^n^T)^+: the least-squares solution
    argmin_W ||z_l - W a_{l-1}||^2 = z_l a_{l-1}^+ by transpose reduction (seed eq. 8 and 14; Taylor et al. 2016
    eq. 7; Goldstein et al. 2015).  The Gram is pseudo-inverted by a symmetric eigendecomposition, eigenvalues
    <= ``rcond`` times the largest treated as zero (see :data:`RCOND`)."""
    return sum_za @ np.linalg.pinv(sum_aa, rcond=rcond, hermitian=True)


def activation_update(W_next: np.ndarray, z_next: np.ndarray, hz: np.ndarray, beta_next: float,
                      gamma: float) -> np.ndarray:
    """a_l = (beta_{l+1} W_{l+1}^T W_{l+1} + gamma_l I)^{-1} (beta_{l+1} W_{l+1}^T z_{l+1} + gamma_l h(z_l)): the
    minimizer of beta_{l+1} ||z_{l+1} - W_{l+1} a||^2 + gamma_l ||a - h(z_l)||^2 (seed eq. 9-10; Taylor et al.
    2016 eq. 6), solved by a Cholesky factorization of the (n_l, n_l) positive definite matrix."""
    n = W_next.shape[1]
    A = beta_next * (W_next.T @ W_next) + gamma * np.eye(n)
    rhs = beta_next * (W_next.T @ z_next) + gamma * hz
    return cho_solve(cho_factor(A, lower=True), rhs)


def _hidden_objective(z, a, m, beta, gamma, activation):
    return gamma * (a - activate(z, activation)) ** 2 + beta * (z - m) ** 2


def hidden_output_update(a: np.ndarray, m: np.ndarray, beta: float, gamma: float, activation: str) -> np.ndarray:
    """z_l = argmin_z gamma_l (a_l - h(z))^2 + beta_l (z - m)^2 entrywise, m = W_l a_{l-1} (seed eq. 11; Taylor
    et al. 2016 eq. 8).  h is piecewise linear, so the objective is a convex quadratic on each piece; the minimizer
    on a piece is its unconstrained minimizer clipped to the piece, and the global one the candidate with the lowest
    objective (ties: the first candidate):

    - relu: z <= 0 gives min(m, 0); z >= 0 gives max((gamma a + beta m) / (gamma + beta), 0);
    - hard_sigmoid: z <= 0 gives min(m, 0); 0 <= z <= 1 gives clip((gamma a + beta m) / (gamma + beta), 0, 1);
      z >= 1 gives max(m, 1).
    """
    mid = (gamma * a + beta * m) / (gamma + beta)
    if activation == "relu":
        candidates = (np.minimum(m, 0.0), np.maximum(mid, 0.0))
    elif activation == "hard_sigmoid":
        candidates = (np.minimum(m, 0.0), np.clip(mid, 0.0, 1.0), np.maximum(m, 1.0))
    else:
        raise ParamError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    best = candidates[0]
    best_f = _hidden_objective(best, a, m, beta, gamma, activation)
    for c in candidates[1:]:
        f = _hidden_objective(c, a, m, beta, gamma, activation)
        better = f < best_f
        best, best_f = np.where(better, c, best), np.where(better, f, best_f)
    return best


def last_output_update(m: np.ndarray, y_onehot: np.ndarray, lam: np.ndarray, beta: float) -> np.ndarray:
    """z_L = argmin_z C(z, y) + lambda z + beta_L (z - m)^2 entrywise for the hinge cost C, m = W_L a_{L-1} (seed
    eq. 12; Taylor et al. 2016 eq. 9).  With the kink at k = y (1 for the true class, else 0), C is linear with
    slope s_- = -y left of k and s_+ = 1 - y right of it; the piece minimizers are min(m - (lambda + s_-) / (2 beta),
    k) and max(m - (lambda + s_+) / (2 beta), k), and z_L the one with the lower objective (the problem is convex, so
    that is the exact minimizer)."""
    y = np.asarray(y_onehot, dtype=np.float64)
    left = np.minimum(m - (lam - y) / (2.0 * beta), y)
    right = np.maximum(m - (lam + 1.0 - y) / (2.0 * beta), y)

    def objective(z):
        return hinge_cost(z, y) + lam * z + beta * (z - m) ** 2

    return np.where(objective(right) < objective(left), right, left)


def multiplier_update(lam: np.ndarray, z_last: np.ndarray, m: np.ndarray, beta: float) -> np.ndarray:
    """lambda <- lambda + beta_L (z_L - W_L a_{L-1}), m = W_L a_{L-1} (seed eq. 13; Taylor et al. 2016 eq. 10)."""
    return lam + beta * (z_last - m)


def forward(weights: list[np.ndarray], a0: np.ndarray, activation: str) -> tuple[tuple, tuple]:
    """The initial a, z of a shard (Taylor et al. 2016, section 5): z_l = W_l a_{l-1}, a_l = h(z_l); returns
    ((a_0, ..., a_{L-1}), (z_1, ..., z_L))."""
    a, z = [a0], []
    for l, W in enumerate(weights):
        z.append(W @ a[-1])
        if l < len(weights) - 1:
            a.append(activate(z[-1], activation))
    return tuple(a), tuple(z)


def shard_bounds(n_samples: int, n_workers: int, worker: int) -> tuple[int, int]:
    """Worker w's contiguous shard of samples: [floor(w n / N), floor((w + 1) n / N))."""
    return worker * n_samples // n_workers, (worker + 1) * n_samples // n_workers


# ------------------------------------------------------------------------------------------------- cost and memory


def parallel_flops(sizes: tuple[int, ...], m: int) -> float:
    """Flops of one ADMM iteration on a shard of m samples (the work that shrinks with the number of workers):

        m [ sum_{l=1..L} (2 n_l n_{l-1} + 2 n_{l-1}^2)        the partial sums z_l a_{l-1}^T and a_{l-1} a_{l-1}^T
          + sum_{l=1..L} 2 n_l n_{l-1}                        W_l a_{l-1} (the z-updates; lambda reuses W_L a_{L-1})
          + sum_{l=1..L-1} (2 n_{l+1} n_l + 2 n_l^2)          W_{l+1}^T z_{l+1} and the two triangular solves
          + E (2 sum_{l=1..L-1} n_l + 2 n_L) ]                entrywise: a_l, z_l (l < L), z_L and lambda

    with E = ENTRY_FLOPS = 10."""
    L = len(sizes) - 1
    per = sum(4 * sizes[l] * sizes[l - 1] + 2 * sizes[l - 1] ** 2 for l in range(1, L + 1))
    per += sum(2 * sizes[l + 1] * sizes[l] + 2 * sizes[l] ** 2 for l in range(1, L))
    per += ENTRY_FLOPS * (2 * sum(sizes[1:L]) + 2 * sizes[L])
    return float(m * per)


def serial_iteration_flops(sizes: tuple[int, ...]) -> float:
    """Flops of one ADMM iteration that every node spends whatever the number of workers:

        sum_{l=1..L} (11 n_{l-1}^3 + 2 n_l n_{l-1}^2)    the Gram pseudo-inverse (eigendecomposition ~9 n^3, then
                                                         V diag V^T 2 n^3) and the product sum_za G^+
      + sum_{l=1..L-1} (2 n_{l+1} n_l^2 + n_l^3 / 3)     forming beta W_{l+1}^T W_{l+1} + gamma I and its Cholesky
    """
    L = len(sizes) - 1
    flops = sum((EIGH_FLOPS + 2) * sizes[l - 1] ** 3 + 2 * sizes[l] * sizes[l - 1] ** 2 for l in range(1, L + 1))
    flops += sum(2 * sizes[l + 1] * sizes[l] ** 2 + sizes[l] ** 3 / 3 for l in range(1, L))
    return float(flops)


def predicted_memory(sizes: tuple[int, ...], n_samples: int, nodes: int) -> dict[str, float]:
    """Bytes per node predicted by the seed (slide "Memory prediction"), float64 everywhere, data left out:

    weights 8 sum_l n_l n_{l-1} (every node has a full copy); activations 8 (n_samples / nodes) sum_{l=1..L} n_l
    (the seed counts the output layer too); outputs (z) the same; multipliers 8 (n_samples / nodes) n_L; and their
    total.  For (784, 500, 500, 10) and 60,000 samples the total is 5.176 + 974.4 / N MB (1 MB = 1e6 bytes)."""
    L = len(sizes) - 1
    per_node = n_samples / nodes
    weights = 8.0 * sum(sizes[l] * sizes[l - 1] for l in range(1, L + 1))
    activations = 8.0 * per_node * sum(sizes[1:])
    multipliers = 8.0 * per_node * sizes[L]
    return {"weights": weights, "activations": activations, "outputs": activations, "multipliers": multipliers,
            "total": weights + 2 * activations + multipliers}


# ---------------------------------------------------------------------------------------------------------- states


class LayerSums(NamedTuple):
    """A worker's message for layer l: its partial sums z_l a_{l-1}^T (n_l, n_{l-1}) and a_{l-1} a_{l-1}^T."""

    layer: int
    za: np.ndarray
    aa: np.ndarray


class ADMMServer(NamedTuple):
    """The server's state: the packed weights and the number of workers (every round needs all of them)."""

    x: np.ndarray
    n_workers: int


class ADMMWorker(NamedTuple):
    """A node's state: its id, the number of workers, the rounds it has computed and, from its first round on, its
    shard's a = (a_0, ..., a_{L-1}) (a_0 = X_shard^T, a view of the data), z = (z_1, ..., z_L), lambda (n_L, m),
    the one-hot labels y (n_L, m) and ``weights``, the parameters it last read (its copy of the weights)."""

    worker: int
    n_workers: int
    rounds: int = 0
    a: tuple | None = None
    z: tuple | None = None
    lam: np.ndarray | None = None
    y: np.ndarray | None = None
    weights: np.ndarray | None = None


def held_memory(worker_state: ADMMWorker, weights=None) -> dict[str, int] | None:
    """The bytes actually held by one node (``.nbytes``), in the categories of :func:`predicted_memory`: weights
    (``weights``: the packed parameters or a list of arrays; default the node's last read copy), activations
    a_1..a_{L-1} (no a_L: the output layer has none), outputs z_1..z_L, multipliers lambda, and separately
    ``input``, the data shard a_0 and its one-hot labels, which the seed's prediction leaves out (one reason its
    observed memory is about twice the prediction); ``total`` includes everything.  None before the first round."""
    if worker_state.a is None:
        return None
    if weights is None:
        weights = worker_state.weights
    if weights is None:
        w_bytes = 0
    elif isinstance(weights, np.ndarray):
        w_bytes = weights.nbytes
    else:
        w_bytes = sum(np.asarray(W).nbytes for W in weights)
    out = {"weights": int(w_bytes),
           "activations": int(sum(a.nbytes for a in worker_state.a[1:])),
           "outputs": int(sum(z.nbytes for z in worker_state.z)),
           "multipliers": int(worker_state.lam.nbytes),
           "input": int(worker_state.a[0].nbytes + worker_state.y.nbytes)}
    out["total"] = sum(out.values())
    return out


def _per_layer(value, count: int, name: str) -> tuple[float, ...]:
    if isinstance(value, tuple):
        require(len(value) == count, name, f"must be one number or a list of {count} (one per layer)",
                value)
        return tuple(float(v) for v in value)
    return (float(value),) * count


def _readonly(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


# ------------------------------------------------------------------------------------------------------- algorithm


@Algorithm.registry.register("admm_nn")
@dataclass(frozen=True, kw_only=True)
class ADMMNet(Algorithm):
    """ADMM for neural networks (Taylor et al. 2016; module docstring), data parallel with transpose reduction.

    Hyper-parameters: ``beta`` (beta_1..beta_L) and ``gamma`` (gamma_1..gamma_{L-1}), one number for every layer or a
    list of one per layer, defaults beta = 0.2, gamma = 20 (the seed's); ``warmup`` iterations before lambda is
    first updated (10, the seed's); ``rcond``, the Gram pseudo-inverse cut-off (:data:`RCOND`).  The problem must
    be a bias-free MLP with relu or hard_sigmoid hidden units and the hinge loss (checked by ``bind``); its x0 is
    the Glorot-uniform start, and a, z come from a forward pass of each shard, lambda = 0.

    Mapping onto the trace: worker w holds samples [floor(w n / N), floor((w + 1) n / N)) and their a, z, lambda;
    the server state holds only the weights.  One ADMM iteration is L updates: update k solves layer
    l = k mod L + 1 of iteration k // L.  In round k a worker first finishes the previous round's layer with the
    weights it read (after W_l, l < L: the a_l and z_l updates; after W_L: z_L, then lambda, which stays 0 during
    iterations 0..warmup-1), then sends (z_l a_{l-1}^T, a_{l-1} a_{l-1}^T) over its shard; ``apply`` sums the n
    messages in worker order and solves W_l.  Every worker must take part in every round (``accepts``: sync,
    allreduce), and the iterates depend on the number of workers only through the summation order.

    Cost model, with sizes n_0..n_L, m = ceil(n_samples / N) the largest shard, E = 10 flops per entrywise update:

    - ``work`` (flops per worker per round) = P(m) / L with P(m) = m [sum_{l=1..L} (4 n_l n_{l-1} + 2 n_{l-1}^2)
      + sum_{l=1..L-1} (2 n_{l+1} n_l + 2 n_l^2) + E (2 sum_{l<L} n_l + 2 n_L)]: the Gram sums z a^T and a a^T,
      the products W a and W^T z, the triangular solves of the a-update for m columns, the entrywise updates
      (:func:`parallel_flops`);
    - ``serial_flops`` (per round, on every node after the all-reduce) = S / L with S = sum_{l=1..L} (11 n_{l-1}^3 +
      2 n_l n_{l-1}^2) + sum_{l=1..L-1} (2 n_{l+1} n_l^2 + n_l^3 / 3): the pseudo-inverse of each Gram (a symmetric
      eigendecomposition counted as ~9 n^3 flops, Golub and Van Loan, plus 2 n^3 for V diag V^T), the product
      sum_za G^+, and forming and Cholesky-factoring beta W^T W + gamma I (:func:`serial_iteration_flops`);
    - ``message_bytes`` = 8 (1/L) sum_{l=1..L} (n_l n_{l-1} + n_{l-1}^2): the two partial sums, averaged over the
      layers.

    ``summary`` reports worker 0's memory: the seed's prediction (:func:`predicted_memory`) and what it holds
    (:func:`held_memory`).
    """

    beta: float | tuple[float, ...] = 0.2
    gamma: float | tuple[float, ...] = 20.0
    warmup: int = 10
    rcond: float = RCOND

    serial_step = True

    @staticmethod
    def accepts(protocol):
        return protocol.every_worker

    def __post_init__(self):
        for name in ("beta", "gamma"):
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            values = value if isinstance(value, tuple) else (value,)
            require(all(math.isfinite(v) and v > 0 for v in values), name, "must be > 0 (every entry)", value)
        require(self.warmup >= 0, "warmup", "must be >= 0", self.warmup)
        require(0 <= self.rcond < 1, "rcond", "must be in [0, 1)", self.rcond)

    # -- problem checks and per-layer values

    def check(self, scenario):
        """The problem spec must be a network ADMM can train (``_check_network``), before any data are built."""
        spec = scenario.problem
        self._check_network(getattr(spec, "loss", None), getattr(spec, "bias", None),
                            getattr(spec, "activation", None), getattr(spec, "sizes", None),
                            scenario.cluster.workers, getattr(spec, "samples", (None,))[0], "algorithm.")

    def bind(self, problem, n_workers=None):
        """Check that ``problem`` is an MLP ADMM can train (``_check_network``); unchanged otherwise."""
        self._check_network(getattr(problem, "loss_kind", None), getattr(problem, "bias", None),
                            getattr(problem, "activation", None), getattr(problem, "sizes", None), n_workers,
                            len(problem.y_train) if hasattr(problem, "y_train") else None)
        require(problem.sizes[-1] == problem.n_classes, "problem.sizes",
                f"must end with the number of classes ({problem.n_classes})", problem.sizes)
        return self

    def _check_network(self, loss, bias, activation, sizes, n_workers, train, prefix: str = "") -> None:
        """Hinge loss, no bias, relu or hard_sigmoid, at least one layer, per-layer beta and gamma with L and L - 1
        entries, and no more workers than training samples (each holds a shard)."""
        require(loss == "hinge", "problem.loss", "must be hinge for admm_nn (its z_L-update is the hinge's closed "
                "form)", loss)
        require(bias is False, "problem.bias", "must be false for admm_nn (the layers are z_l = W_l a_{l-1})", bias)
        require(activation in ACTIVATIONS, "problem.activation",
                f"must be one of {', '.join(ACTIVATIONS)} for admm_nn (the z-update needs a piecewise-linear h)",
                activation)
        L = len(sizes) - 1
        require(L >= 1, "problem.sizes", "must have at least one layer", sizes)
        self.betas(L, prefix)
        self.gammas(L, prefix)
        if n_workers is not None and train is not None:
            require(n_workers <= train, "cluster.workers", f"must be <= the training samples ({train}) for admm_nn",
                    n_workers)

    def memory(self, problem, workers, vectors_per_worker=2.0):
        """The workers' shards: a_l, z_l and lambda for every training sample, besides the weights."""
        sizes, train = getattr(problem, "sizes", (problem.dim,)), getattr(problem, "samples", (0,))[0]
        base = super().memory(problem, workers, vectors_per_worker)
        shards = 8.0 * train * (2 * sum(sizes) + 2 * sizes[-1])
        return base if base.bytes > shards else Footprint(
            base.bytes + shards, "problem.n_train", getattr(problem, "n_train", None),
            f"the shards' activations of {train} samples")

    def betas(self, L: int, prefix: str = "") -> tuple[float, ...]:
        """(beta_1, ..., beta_L)."""
        return _per_layer(self.beta, L, prefix + "beta")

    def gammas(self, L: int, prefix: str = "") -> tuple[float, ...]:
        """(gamma_1, ..., gamma_{L-1})."""
        return _per_layer(self.gamma, L - 1, prefix + "gamma")

    # -- the Algorithm interface

    def draw(self, problem, rng, n_steps):
        """No randomness: an empty array per step."""
        return np.zeros((n_steps, 0))

    def init(self, x0, n_workers):
        return ADMMServer(x0, n_workers), tuple(ADMMWorker(w, n_workers) for w in range(n_workers))

    def start(self, worker_state: ADMMWorker, problem, weights: list[np.ndarray]) -> ADMMWorker:
        """The node's shard (a_0 = X_shard^T, one-hot y), a forward pass for a and z, and lambda = 0."""
        lo, hi = shard_bounds(len(problem.y_train), worker_state.n_workers, worker_state.worker)
        a0 = np.asarray(problem.X_train, dtype=np.float64)[lo:hi].T
        labels = np.asarray(problem.y_train)[lo:hi]
        y = np.zeros((problem.sizes[-1], hi - lo))
        y[labels, np.arange(hi - lo)] = 1.0
        a, z = forward(weights, a0, problem.activation)
        return worker_state._replace(a=a, z=z, lam=np.zeros_like(z[-1]), y=_readonly(y))

    def finish_layer(self, worker_state: ADMMWorker, problem, weights: list[np.ndarray], k: int) -> ADMMWorker:
        """The local updates that follow round k's solve of W_l (l = k mod L + 1), with the new weights: a_l and
        z_l for l < L; z_L and (from iteration ``warmup`` on) lambda for l = L."""
        L = len(weights)
        l, iteration = k % L + 1, k // L
        betas = self.betas(L)
        a, z = list(worker_state.a), list(worker_state.z)
        m = weights[l - 1] @ a[l - 1]
        if l < L:
            gamma = self.gammas(L)[l - 1]
            a[l] = activation_update(weights[l], z[l], activate(z[l - 1], problem.activation), betas[l], gamma)
            z[l - 1] = hidden_output_update(a[l], m, betas[l - 1], gamma, problem.activation)
            return worker_state._replace(a=tuple(a), z=tuple(z))
        z[L - 1] = last_output_update(m, worker_state.y, worker_state.lam, betas[L - 1])
        lam = worker_state.lam
        if iteration >= self.warmup:
            lam = multiplier_update(lam, z[L - 1], m, betas[L - 1])
        return worker_state._replace(z=tuple(z), lam=lam)

    def local(self, snapshot, worker_state, problem, draw):
        """Round k = the rounds done: finish round k - 1's layer, then send layer (k mod L + 1)'s partial sums."""
        weights = [W for W, _ in problem.unpack(snapshot)]
        L = len(weights)
        k = worker_state.rounds
        if worker_state.a is None:
            if k != 0:
                raise ValueError(f"admm_nn worker {worker_state.worker} has no shard at round {k}")
            state = self.start(worker_state, problem, weights)
        else:
            state = self.finish_layer(worker_state, problem, weights, k - 1)
        l = k % L + 1
        a_prev, z = state.a[l - 1], state.z[l - 1]
        message = LayerSums(l, z @ a_prev.T, a_prev @ a_prev.T)
        return message, state._replace(rounds=k + 1, weights=snapshot)

    def apply(self, server_state, messages, info):
        """W_l = (sum_n za_n) (sum_n aa_n)^+, the sums in worker order, for layer l = info.update mod L + 1."""
        n = server_state.n_workers
        if len(messages) != n:
            raise ValueError(f"admm_nn update {info.update} has {len(messages)} messages but needs one from each of "
                             f"the {n} workers: run it under protocol sync or allreduce (every worker in every round)")
        problem = info.problem
        if problem is None:
            raise ValueError("admm_nn needs the problem in ApplyInfo (to unpack and pack the weights)")
        layers = list(problem.unpack(server_state.x))
        L = len(layers)
        l = info.update % L + 1
        if any(msg.layer != l for msg in messages):
            raise ValueError(f"admm_nn update {info.update} solves layer {l} but got messages for layers "
                             f"{[msg.layer for msg in messages]}")
        sum_za, sum_aa = messages[0].za, messages[0].aa
        for msg in messages[1:]:
            sum_za = sum_za + msg.za
            sum_aa = sum_aa + msg.aa
        layers[l - 1] = (weight_update(sum_za, sum_aa, self.rcond), None)
        return server_state._replace(x=problem.pack(layers))

    def params(self, server_state):
        return server_state.x

    # -- cost model and memory

    def work(self, problem, n_workers):
        """P(m) / L flops (class docstring), m the largest shard."""
        m = -(-len(problem.y_train) // n_workers)
        return parallel_flops(tuple(problem.sizes), m) / (len(problem.sizes) - 1)

    def serial_flops(self, problem):
        """S / L flops (class docstring)."""
        return serial_iteration_flops(tuple(problem.sizes)) / (len(problem.sizes) - 1)

    def message_bytes(self, problem, n_workers):
        """8 (1/L) sum_l (n_l n_{l-1} + n_{l-1}^2) bytes."""
        s = problem.sizes
        L = len(s) - 1
        return int(round(8 * sum(s[l] * s[l - 1] + s[l - 1] ** 2 for l in range(1, L + 1)) / L))

    def summary(self, problem, worker_states):
        """Worker 0's memory: {"memory_bytes_per_node": {"predicted": ..., "held": ...}}."""
        ws = worker_states[0]
        predicted = predicted_memory(tuple(problem.sizes), len(problem.y_train), ws.n_workers)
        return {"memory_bytes_per_node": {"predicted": predicted, "held": held_memory(ws)}}
