"""``asyncsim calibrate``: a copy of a scenario whose timing laws are measured on this machine.

Two sources of measurements:

- ``measure(scenario)`` times the algorithm's worker computation (``local`` on worker 0's first steps) and the
  server's ``apply`` in this process, with one BLAS thread;
- ``observed(trace)`` reads the durations of a real run's observed Trace (``asyncsim run --mode real``): per
  worker, compute = t_done - t_read_end; uplink = t_arrive - t_done (the pipe and any wait for the server);
  service = t_apply - t_arrive (a round's apply time shared by its n contributions under ``sync``); downlink =
  the next t_read of the worker - t_apply; under ``shared_memory`` the read law is t_read_end - t_read and the
  write (service) runs from t_done to the worker's next read.

``calibrated(scenario, laws)`` returns the scenario as plain data with those laws as ``empirical`` ones (in
seconds; resampled uniformly, so a simulation draws from what was measured) and everything else that shaped the
timing model removed (speeds, stragglers, slow phases, failures, flops_per_second, real.time_scale): the
measurements already contain it.  Simulating the calibrated scenario predicts the real run on equal terms.
"""

from __future__ import annotations

import copy
import time

import numpy as np

from .algorithms.base import ApplyInfo
from .params import ScenarioError, kind
from .replay import algorithm_draws
from .build import build
from .timing.protocol import ClassCapabilities, Family
from .timing.protocols import Protocol
from .timing.trace import Trace

MAX_VALUES = 1000
"""At most this many measured values per law in the written scenario (evenly spaced in measurement order)."""


def measure(scenario, steps: int = 200) -> dict:
    """Time ``steps`` worker computations (``local`` on the initial parameters with worker 0's draws of steps
    0..steps-1) and as many server applies, in this process with one BLAS thread; return {'compute': seconds,
    'service': seconds} arrays."""
    from .real.worker import pin_blas_threads

    if steps < 1:
        raise ScenarioError(f"--steps must be >= 1, got {steps}")
    pin_blas_threads()
    built = build(scenario)
    algorithm, problem = built.algorithm, built.problem
    draws = algorithm_draws(algorithm, problem, scenario.seed)
    snapshot = algorithm.reply(built.state, 0)
    worker_state, state = built.worker_states[0], built.state
    compute, service = np.empty(steps), np.empty(steps)
    clock = time.perf_counter
    for s in range(steps):
        t = clock()
        message, worker_state = algorithm.local(snapshot, worker_state, problem, draws(0, s))
        compute[s] = clock() - t
        t = clock()
        state = algorithm.apply(state, [message], ApplyInfo.at(s, (0,), (s,), problem))
        service[s] = clock() - t
    return {"compute": compute, "service": service}


def observed(trace: Trace, protocol=None) -> dict:
    """The durations of an observed trace, as described in the module docstring: {'compute': [per worker
    arrays], 'service', 'uplink', 'downlink'} or, for shared memory, {'compute', 'read', 'service'}.
    ``protocol`` (default: the registered protocol the trace names) tells whether reads span time."""
    t = trace.used()
    n = trace.n_workers
    nxt = _next_read(t)
    out = {"compute": [t.t_done[t.worker == w] - t.t_read_end[t.worker == w] for w in range(n)]}
    if protocol is None:
        protocol = ClassCapabilities(Protocol.registry.get(trace.protocol))
    if protocol.family is Family.SHARED_MEMORY:
        has_next = np.isfinite(nxt)
        out["read"] = t.t_read_end - t.t_read
        out["service"] = nxt[has_next] - t.t_done[has_next]
        return out
    out["uplink"] = t.t_arrive - t.t_done
    if (t.round >= 0).all():  # rounds: the apply after the round's last arrival, shared by its contributions
        last = np.maximum.reduceat(t.t_arrive, np.flatnonzero(np.r_[True, np.diff(t.update) != 0]))
        sizes = np.bincount(t.update)
        out["service"] = np.repeat((t.t_apply[np.r_[0, np.cumsum(sizes)[:-1]]] - last) / sizes, sizes)
    else:
        out["service"] = t.t_apply - t.t_arrive
    out["downlink"] = (nxt - t.t_apply)[np.isfinite(nxt)]
    return out


def _next_read(t: Trace) -> np.ndarray:
    """For each row, the same worker's next t_read (inf for its last step)."""
    nxt = np.full(len(t), np.inf)
    order = np.lexsort((t.step, t.worker))
    same = t.worker[order][1:] == t.worker[order][:-1]
    nxt[order[:-1][same]] = t.t_read[order[1:][same]]
    return nxt


def empirical(values) -> dict:
    """An ``empirical`` law of at most MAX_VALUES of ``values`` (evenly spaced in order), 6 significant digits."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise ScenarioError("no measurement to calibrate from (the run has no complete step)")
    if len(v) > MAX_VALUES:
        v = v[np.linspace(0, len(v) - 1, MAX_VALUES).round().astype(int)]
    return {"kind": "empirical", "values": [float(f"{max(x, 0.0):.6g}") for x in v]}


def calibrated(scenario, laws: dict) -> dict:
    """The scenario (plain data) with the measured laws in place; see the module docstring."""
    data = copy.deepcopy(scenario.to_dict())
    data["name"] = f"{scenario.name}-calibrated"
    cluster = data["cluster"]
    compute = laws["compute"]
    cluster["compute"] = [empirical(c) for c in compute] if isinstance(compute, list) else empirical(compute)
    cluster.update(compute_trace=None, speeds=[], stragglers=[], transient=None, failures=None,
                   flops_per_second=None)
    cluster["server"]["service"] = empirical(laws["service"])
    for link in ("uplink", "downlink"):
        if link in laws:
            cluster[link] = empirical(laws[link])
    if "uplink" in laws:
        cluster["network"].update(uplink_bandwidth=None, downlink_bandwidth=None)
    if "read" in laws:
        data["protocol"]["read"] = empirical(laws["read"])
        cluster["server"]["slots"] = scenario.cluster.workers  # lock-free writes proceed side by side
    data["real"]["time_scale"] = None
    return data


def describe(laws: dict) -> str:
    """One line per measured law: its mean and spread in microseconds."""
    lines = []
    for name, values in laws.items():
        parts = values if isinstance(values, list) else [values]
        for i, v in enumerate(parts):
            label = f"{name}[worker {i}]" if isinstance(values, list) else name
            v = np.asarray(v)
            lines.append(f"  {label:<20} mean {1e6 * v.mean():10.2f} us   p50 {1e6 * np.median(v):10.2f} us   "
                         f"p99 {1e6 * np.percentile(v, 99):10.2f} us   ({len(v)} values)")
    return "\n".join(lines)


def check_source(scenario, source, where) -> None:
    """``source`` (a result directory read back, from ``where``) must be a real run of the same shape as the
    scenario: a simulation's durations are the scenario's own laws, not measurements."""
    if source.summary.mode != "real":
        raise ScenarioError(f"--from {where} is a simulated run (summary.json mode: {source.summary.mode}); "
                            "calibrate from a real run (asyncsim run --mode real)")
    trace = source.trace
    if trace.n_workers != scenario.cluster.workers or trace.protocol != kind(scenario.protocol):
        raise ScenarioError(f"--from: the result has {trace.n_workers} workers under protocol {trace.protocol}, "
                            f"the scenario {scenario.cluster.workers} under {kind(scenario.protocol)}")
