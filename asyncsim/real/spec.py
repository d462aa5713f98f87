"""The ``real:`` section of a scenario: how ``asyncsim run --mode real`` runs it (the simulator ignores it)."""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass

from ..params import require

START_METHODS = ("spawn", "fork", "forkserver")
ON_WORKER_FAILURE = ("stop", "continue")


@dataclass(frozen=True, kw_only=True)
class RealSpec:
    """Real execution on worker processes.

    ``start_method``: how worker processes start (``spawn``: each rebuilds the problem and the algorithm from the
    scenario and the seed; ``fork`` or ``forkserver`` where the platform has them).  ``time_scale``: when set, every
    worker also waits the scenario's timing model (compute-time law with speeds, stragglers and slow phases, link
    latencies, server service time) at ``time_scale`` wall seconds per simulated second, on top of its real
    computation; null runs at the machine's own speed.  ``time_limit``: wall seconds after which the run stops and
    writes its results marked partial.  ``on_worker_failure``: ``stop`` ends the run with an error naming the
    worker that died; ``continue`` (async and shared_memory only) goes on without it.
    """

    start_method: str = "spawn"
    time_scale: float | None = None
    time_limit: float | None = None
    on_worker_failure: str = "stop"

    def __post_init__(self):
        available = [m for m in START_METHODS if m in multiprocessing.get_all_start_methods()]
        require(self.start_method in available, "start_method", f"must be one of {', '.join(available)}",
                self.start_method)
        require(self.time_scale is None or self.time_scale > 0, "time_scale",
                "must be > 0 (wall seconds per simulated second) or null", self.time_scale)
        require(self.time_limit is None or self.time_limit > 0, "time_limit", "must be > 0 (wall seconds) or null",
                self.time_limit)
        require(self.on_worker_failure in ON_WORKER_FAILURE, "on_worker_failure",
                f"must be one of {', '.join(ON_WORKER_FAILURE)}", self.on_worker_failure)
