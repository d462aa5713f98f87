"""What every process rebuilds from a scenario and its seed, and the one timing model of a run.

``build(scenario)`` makes the problem (DATA stream), x_0 (INIT stream) and the algorithm bound to them with its
initial states, the same in the simulator, in every real worker process and in calibration; ``timing_model(built)``
gives the cluster with compute times in seconds, the serial step and the message size that the simulation, the
real mode's emulated waits, ``predict`` and the plot overlays all use (docs/ARCHITECTURE.md, "The timing model").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .rng import Stream, generator
from .scenario import Scenario
from .timing.cluster import Cluster
from .timing.durations import Durations


@dataclass(frozen=True)
class Built:
    """What every process rebuilds from the scenario and its seed."""

    scenario: Scenario
    problem: object
    x0: np.ndarray
    algorithm: object
    state: object
    worker_states: tuple


@dataclass(frozen=True)
class TimingModel:
    """The timing inputs of a run beyond the seed: the cluster with compute times in seconds (the algorithm's
    flops per step over ``cluster.flops_per_second``, when set), the seconds of the serial step after each round,
    and the bytes of a message on the links."""

    cluster: Cluster
    serial: float
    message_bytes: int

    def durations(self, seed: int) -> Durations:
        """The keyed draws of every duration (``Durations``)."""
        return Durations(self.cluster, seed, self.message_bytes, self.serial)


def build(scenario: Scenario) -> Built:
    """Problem from the DATA stream, x_0 from the INIT stream, the algorithm as it runs (``Scenario.method``: with
    ``compression``, its wrapper) bound to the problem and the cluster, and its initial states: the same in the
    main process and in every worker."""
    seed, n = scenario.seed, scenario.cluster.workers
    problem = scenario.problem.build(generator(seed, Stream.DATA))
    if scenario.split is not None:  # each worker's shard of the training samples (SPLIT stream)
        problem.shards = scenario.split.shards(problem.labels, n, seed)
    x0 = np.array(problem.initial_point(generator(seed, Stream.INIT)), dtype=np.float64)
    x0.flags.writeable = False
    algorithm = scenario.method.bind(problem, n)
    state, worker_states = algorithm.init(x0, n)
    return Built(scenario, problem, x0, algorithm, state, tuple(worker_states))


def timing_model(built: Built) -> TimingModel:
    """The run's :class:`TimingModel`.  With ``cluster.flops_per_second`` a step takes ``algorithm.work`` flops
    (times the compute law's draw and the worker's factors) and the serial step ``algorithm.serial_flops``;
    without it, compute times are the laws' seconds (the scenario check refuses a serial step then).  A message is
    ``cluster.network.message_bytes`` if given, else the algorithm's size (``Algorithm.message_bytes``; with
    ``compression``, the compressor's ``bytes(dim)``), else 8 bytes per parameter."""
    s, algorithm, problem = built.scenario, built.algorithm, built.problem
    cluster, serial = s.cluster, 0.0
    if cluster.flops_per_second is not None:
        serial = algorithm.serial_flops(problem) / cluster.flops_per_second
        cluster = cluster.per_step(algorithm.work(problem, cluster.workers))
    if getattr(problem, "shards", None) is not None:  # a split: the clients' data sizes are their shards'
        cluster = replace(cluster, data_sizes=tuple(float(len(s)) for s in problem.shards))
    given = s.cluster.network.message_bytes
    if given is None:
        given = algorithm.message_bytes(problem, cluster.workers) or 8 * problem.dim
    return TimingModel(cluster, serial, given)
