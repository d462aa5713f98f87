"""Local SGD and DOWNPOUR: H local steps per exchange, for the ``periodic`` protocol."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..params import require
from .base import Algorithm, local_draw_size, average, local_batches, minibatch_flops, total
from .fedasync import WEIGHTS, staleness_weight


@Algorithm.registry.register("local_sgd")
@dataclass(frozen=True, kw_only=True)
class LocalSGD(Algorithm):
    """Local SGD (Stich 2019; "model averaging"): a worker that read x takes H = ``local_steps`` SGD steps on its
    own minibatches, y_0 = x, y_{h+1} = y_h - lr g(y_h; B_h), and sends the change y_H - x.  The server adds the
    average change of the messages of an update:
        x_{k+1} = x_k + (1/m) sum_j (y_H^(j) - x_{r_j}),
    asynchronously (m = 1, each exchange one update) or in synchronous rounds (m = n: periodic averaging).  With
    H = 1 this is ``sgd`` (up to rounding).  Runs under ``protocol: {kind: periodic, local_steps: H}`` or FedBuff's
    ``buffered`` server; ``local_steps`` defaults to the protocol's H.  FedBuff's server step (Nguyen et al. 2022,
    Algorithm 1) weighs each change by its staleness and scales the sum by the server learning rate eta_g =
    ``server_lr``:
        x_{k+1} = x_k + eta_g (1/m) sum_j s(tau_j) (y_H^(j) - x_{r_j}),
    with s = ``weight`` (``fedasync.staleness_weight``: ``constant`` 1, ``polynomial`` (tau + 1)^(-a), FedBuff's
    1/sqrt(1 + tau) at a = 1/2, or ``hinge``).  The defaults (eta_g = 1, constant) are the plain average above,
    bit for bit.
    """

    lr: float
    local_steps: int | None = None
    batch_size: int = 32
    server_lr: float = 1.0
    weight: str = "constant"
    a: float = 0.5
    b: int = 4
    vector_state = True
    compressible = True
    minibatches = True

    @staticmethod
    def accepts(protocol):
        return protocol.takes_local_steps

    def resolve(self, protocol):
        """``local_steps: null`` takes the protocol's period."""
        return self if self.local_steps is not None else replace(self, local_steps=protocol.local_steps)

    def __post_init__(self):
        require(self.lr > 0, "lr", "must be > 0", self.lr)
        require(self.local_steps is None or self.local_steps >= 1, "local_steps", "must be >= 1", self.local_steps)
        require(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        require(self.server_lr > 0, "server_lr", "must be > 0", self.server_lr)
        require(self.weight in WEIGHTS, "weight", f"must be one of {', '.join(WEIGHTS)}", self.weight)
        require(self.a >= 0, "a", "must be >= 0", self.a)
        require(self.b >= 0, "b", "must be >= 0", self.b)

    def draw(self, problem, rng, n_steps):
        return local_batches(problem, rng, n_steps, self.local_steps, self.batch_size)

    def draw_size(self):
        """``local_steps`` minibatches of ``batch_size`` sample indices."""
        return local_draw_size(self.local_steps or 1, self.batch_size)

    def work(self, problem, n_workers):
        """One local step, a minibatch gradient (the periodic protocol draws a compute time per local step)."""
        return minibatch_flops(problem, self.batch_size)

    def init(self, x0, n_workers):
        return x0, (None,) * n_workers

    def local(self, snapshot, worker_state, problem, draw):
        y = snapshot
        for batch in draw:
            y = y - self.lr * problem.grad(y, batch)
        return y - snapshot, worker_state

    def apply(self, server_state, messages, info):
        if self.server_lr == 1.0 and self.weight == "constant":
            return server_state + average(messages)
        weights = [self.server_lr * staleness_weight(t, self.weight, self.a, self.b) / len(messages)
                   for t in info.staleness]
        return server_state + total([w * m for w, m in zip(weights, messages)])

    def params(self, server_state):
        return server_state


@Algorithm.registry.register("downpour")
@dataclass(frozen=True, kw_only=True)
class Downpour(LocalSGD):
    """DOWNPOUR (Dean et al., "Large scale distributed deep networks", NIPS 2012; in the form of Zhang et al. 2015):
    every tau = ``local_steps`` steps a worker pushes its accumulated change v = -lr sum_h g(y_h; B_h) and pulls
    the parameters, x~ <- x~ + v, x^i <- x~, v <- 0.  The master adds the changes of an update (summed, not
    averaged, in worker order); asynchronously (one push per update) this is ``local_sgd``."""

    def __post_init__(self):
        super().__post_init__()
        require(self.server_lr == 1.0 and self.weight == "constant", "server_lr",
                "and weight are local_sgd's server step (FedBuff's); downpour adds the changes as they are",
                {"server_lr": self.server_lr, "weight": self.weight})

    def apply(self, server_state, messages, info):
        return server_state + total(messages)
