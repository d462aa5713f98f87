"""Non-IID client data: a scenario's ``split`` gives each worker (a federated client) its own shard of the
training samples, from which its minibatches are drawn.

``dirichlet`` (alpha, min_samples): the label split of Yurochkin et al., "Bayesian nonparametric federated
learning of neural networks" (ICML 2019), used by Wang et al. (FedMA, ICLR 2020) and Flower's
``DirichletPartitioner``: for each class k, the proportions (p_k1, ..., p_kN) ~ Dir(alpha, ..., alpha) over the N
clients, and client i gets the samples of class k from position floor(n_k P_k,i-1) to floor(n_k P_k,i) of a keyed
permutation of them (P the cumulative sums), so the shards partition the samples.  Client i's share of class k
is then Beta(alpha, (N - 1) alpha) up to the rounding: small alpha gives clients few classes each, large alpha
the IID split.  A draw that leaves a client fewer than ``min_samples`` samples is drawn again (attempts keyed
(seed, SPLIT, attempt), at most ``ATTEMPTS``); the scenario check refuses a split that cannot give every client
``min_samples``.

The shards only change which samples a worker's minibatches come from (``ClientData``); the loss, the gradient
and the metrics stay those of all the training samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import Registry, ScenarioError, require
from .rng import Stream, generator

ATTEMPTS = 100
"""Draws of the proportions before a split that leaves a client short is given up (a one-line error)."""


class Split:
    """Base class of data splits; ``Split.registry`` maps YAML ``kind`` names to splits."""

    registry = Registry("split")

    def shards(self, labels: np.ndarray, clients: int, seed: int) -> tuple[np.ndarray, ...]:
        """The sorted sample indices of each client's shard."""
        raise NotImplementedError

    def check(self, samples: int, clients: int) -> None:
        """Raise ParamError if ``samples`` labelled samples cannot be split over ``clients`` clients."""


@Split.registry.register("dirichlet")
@dataclass(frozen=True, kw_only=True)
class Dirichlet(Split):
    """Per class, Dir(alpha) proportions over the clients (Yurochkin et al. 2019); see the module docstring."""

    alpha: float
    min_samples: int = 1

    def __post_init__(self):
        require(1e-3 <= self.alpha <= 1e6, "alpha", "must be in [0.001, 1e6]", self.alpha)
        require(self.min_samples >= 1, "min_samples", "must be >= 1", self.min_samples)

    def check(self, samples, clients):
        require(samples >= clients * self.min_samples, "min_samples", f"must leave every one of the cluster.workers "
                f"({clients}) clients that many of the {samples} training samples: at most {samples // clients}",
                self.min_samples)

    def shards(self, labels, clients, seed):
        labels = np.asarray(labels)
        by_class = [np.flatnonzero(labels == k) for k in np.unique(labels)]
        for attempt in range(ATTEMPTS):
            g = generator(seed, Stream.SPLIT, 0, attempt)
            parts: list[list[np.ndarray]] = [[] for _ in range(clients)]
            for idx in by_class:
                idx = g.permutation(idx)
                p = g.dirichlet(np.full(clients, self.alpha))
                cuts = np.floor(np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
                for i, part in enumerate(np.split(idx, cuts)):
                    parts[i].append(part)
            shards = tuple(np.sort(np.concatenate(p)) for p in parts)
            if min(len(s) for s in shards) >= self.min_samples:
                for s in shards:
                    s.flags.writeable = False
                return shards
        raise ScenarioError(f"split.alpha: no Dirichlet({self.alpha:g}) draw in {ATTEMPTS} gave each of the "
                            f"{clients} clients at least split.min_samples = {self.min_samples} of the "
                            f"{len(labels)} samples; raise split.alpha or lower split.min_samples or cluster.workers")


class ClientData:
    """Client ``shard``'s view of ``problem`` for drawing minibatches: ``sample_batches`` draws uniformly from the
    shard (global sample indices, so the problem's gradient takes them unchanged) and ``n_samples`` is the shard's
    size; everything else is the problem's."""

    def __init__(self, problem, shard: np.ndarray):
        self._problem, self.shard, self.n_samples = problem, shard, len(shard)

    def sample_batches(self, rng, n_steps, batch_size):
        return self.shard[rng.integers(0, len(self.shard), (n_steps, batch_size))]

    def __getattr__(self, name):
        return getattr(self._problem, name)
