"""Stability maps: where simulated iterates diverge, next to the spectral radius that predicts it.

``easgd_map`` runs synchronous EASGD through the simulator (a ``periodic`` synchronous trace and the ``easgd``
update rule) on f(x) = sum_j h_j x_j^2 / 2 with one coordinate per value of eta h: the coordinates do not interact,
so one run covers a whole row of the grid.  A grid point is observed to diverge when, started at x = x~ = 1, the
worker's or the center's coordinate has left [-1, 1] after ``rounds`` rounds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .algorithms.elastic import EASGD
from .problems.quadratic import QuadraticProblem
from .replay import replay
from .theory import easgd_radius
from .timing.cluster import Cluster
from .timing.laws import Constant
from .timing.protocols import Periodic, simulate


def easgd_map(eta_h, alphas, workers=(1, 2, 4, 8), rounds: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per grid point (eta_h, alpha, p): ``radius`` (``theory.easgd_radius``), ``diverged`` (observed in
    the simulation) and ``predicted`` (radius > 1).  lr = 1, so h_j = eta_h_j."""
    eta_h = np.asarray(eta_h, dtype=np.float64)
    problem = QuadraticProblem(np.diag(eta_h), np.zeros(len(eta_h)), noise=0.0)
    rows = []
    for p in workers:
        trace = simulate(Cluster(workers=p, compute=Constant(value=1.0)),
                         Periodic(local_steps=1, synchronous=True), rounds, seed)
        for alpha in alphas:
            algorithm = EASGD(lr=1.0, local_steps=1, alpha=float(alpha), batch_size=1)
            result = replay(trace, algorithm, problem, np.ones(len(eta_h)), seed, record_every=rounds)
            worker = result.worker_states[0][0]
            size = np.maximum(np.abs(result.x), np.abs(worker))
            diverged = ~(size <= 1.0)  # NaN and inf count as diverged
            for e, d in zip(eta_h, diverged):
                r = easgd_radius(e, alpha, p)
                rows.append((e, alpha, p, p * alpha, r, bool(d), r > 1))
    return pd.DataFrame(rows, columns=["eta_h", "alpha", "p", "beta", "radius", "diverged", "predicted"])


def agreement(frame: pd.DataFrame, band: float = 1e-3) -> tuple[int, int]:
    """(points where observation and prediction agree, points compared), leaving out |radius - 1| <= band."""
    clear = (frame["radius"] - 1).abs() > band
    return int((frame["diverged"] == frame["predicted"])[clear].sum()), int(clear.sum())
