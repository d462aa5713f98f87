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
import math
import time
from dataclasses import dataclass

import numpy as np

from .algorithms.base import ApplyInfo
from .params import ScenarioError, kind, to_plain
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
    cluster.update(compute_trace=None, speeds=[], stragglers=[], transient=None, failures=None, availability=None,
                   flops_per_second=None)
    cluster.pop("devices", None)  # (the measured times include the devices' speeds and links)
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


# ------------------------------------------------------------------------------------------ from a delay log

LAWS = ("lognormal", "gamma")
"""The compute-time laws ``fit_delays`` can fit (by their coefficient of variation; the mean does not matter)."""


@dataclass(frozen=True)
class DelayLog:
    """A delay log as a trace (``timing.imported``: the log's own worker chains, or one worker per column of a
    per-worker-age matrix) and, for a matrix, the per-iteration maximum delay tau_k = max_w ages[k, w]."""

    path: str
    trace: Trace
    maximum: np.ndarray | None

    @property
    def per_worker(self) -> bool:
        return self.maximum is not None

    @property
    def workers(self) -> int:
        return self.trace.n_workers

    @property
    def updates(self) -> int:
        return self.trace.n_updates

    @property
    def fresh(self) -> np.ndarray:
        """The delay of every contribution (for a matrix: of the fresh gradients)."""
        return self.trace.staleness


def delay_log(path, field: str = "--from-delays") -> DelayLog:
    """Read a delay log (``timing.imported.read_delays``; errors name ``field``) into the delays calibration
    compares."""
    from .timing.imported import age_trace, delay_trace, read_delays

    values = read_delays(path, field=field)
    if values.ndim == 2:
        trace = age_trace(values)
        return DelayLog(str(path), trace, maxima(trace))
    return DelayLog(str(path), delay_trace(values), None)


def maxima(trace: Trace) -> np.ndarray:
    """tau_k = max_w (the age of worker w's latest gradient at update k), from the first update at which every
    worker has contributed (PIAG's aggregate is complete from then on; a PIAG log starts there)."""
    from .timing.imported import max_ages, trace_ages

    ages = trace_ages(trace)
    return max_ages(ages[(ages >= 0).all(axis=1)])


@dataclass(frozen=True)
class DelayFit:
    """The fitted timing of a delay log: the compute law (``law`` with coefficient of variation ``cv``, mean
    ``mean``), for a draining server its service time as a fraction of the mean compute time, the KS distances
    reached and the simulated delays at the fit (``fresh``, ``maximum``)."""

    log: DelayLog
    law: str
    cv: float
    mean: float
    service_ratio: float | None
    ks: float
    ks_max: float | None
    fresh: np.ndarray
    maximum: np.ndarray | None
    simulations: int

    def compute_law(self) -> dict:
        """The fitted compute law as scenario data."""
        return to_plain(law_of(self.law, self.cv, self.mean))


def law_of(law: str, cv: float, mean: float):
    """A ``lognormal`` (sigma^2 = log(1 + cv^2), mu = log(mean) - sigma^2 / 2) or ``gamma`` (shape 1 / cv^2, scale
    mean cv^2) law with the given mean and coefficient of variation."""
    from .timing.laws import Gamma, LogNormal

    if law == "lognormal":
        s2 = math.log1p(cv * cv)
        return LogNormal(mu=math.log(mean) - s2 / 2, sigma=math.sqrt(s2))
    return Gamma(shape=1.0 / (cv * cv), scale=mean * cv * cv)


MAX_SIMULATED = 200_000
"""At most this many updates in each simulated candidate (enough for the KS distance; a long log would be slow)."""
CV_GRID = (0.005, 2.0)
"""The range of compute-time coefficients of variation searched (log-spaced)."""
RATIO_GRID = (0.0, 1.0)
"""The range of service / compute ratios searched for a draining server."""


def ks(a, b) -> float:
    """The two-sample Kolmogorov-Smirnov distance sup_x |F_a(x) - F_b(x)| of samples ``a`` and ``b`` (scipy's
    statistic; ``method="asymp"`` only spares the exact p-value, which is not used and costs more than a
    simulation)."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(a, b, method="asymp").statistic)


def fit_delays(scenario, log, law: str = "lognormal") -> DelayFit:
    """Fit the scenario's cluster to a delay log: the compute-time dispersion (and, under protocol ``drain``, the
    server's service time relative to the mean compute time) that make the simulated delays closest to those of
    ``log`` (a path, or a :class:`DelayLog`) in Kolmogorov-Smirnov distance.

    Staleness counts updates, so it depends only on the shape of the timing laws, not their scale: the cluster is
    reduced to ``cluster.workers`` identical workers with compute law ``law`` (mean: the scenario's compute mean,
    or 1 s) and no links, stragglers, slow phases or failures; the server's service time is 0 (``async``) or a
    constant ratio r of the compute mean (``drain``).  Every candidate is simulated with the scenario's seed
    (common random numbers: the candidates differ by their parameters only), on a coarse grid of the
    coefficient of variation (log-spaced over ``CV_GRID``) and r (over ``RATIO_GRID``), then twice on a 5 x 5 grid
    of half the spacing around the best point.  The distance minimized is the KS distance of the delays, or for
    a per-worker-age matrix the larger of the fresh gradients' and the per-iteration maxima's.  The simulations
    are 4 times as long as the log (2 times for ``drain``), up to ``MAX_SIMULATED`` updates."""
    from . import budget
    from .timing.cluster import Cluster, Server
    from .timing.laws import Constant, DelayLaw
    from .timing.protocols import simulate

    if law not in LAWS:
        raise ScenarioError(f"--law must be one of {', '.join(LAWS)}, got {law!r}")
    log = log if isinstance(log, DelayLog) else delay_log(log)
    protocol = scenario.protocol
    drain = protocol.family is Family.DRAINED
    if not fits(protocol):
        kinds = ", ".join(k for k, cls in Protocol.registry.items() if fits(ClassCapabilities(cls)))
        raise ScenarioError(f"protocol.kind must be one of {kinds} for calibration from a delay log (a simulated "
                            f"asynchronous or draining server), got {kind(protocol)!r}")
    if log.per_worker and not drain:
        raise ScenarioError(f"--from-delays {log.path} is a per-worker-age matrix (PIAG's log), the trace of a "
                            f"draining server; give a scenario with protocol drain, not {kind(protocol)}")
    if scenario.cluster.workers != log.workers:
        raise ScenarioError(f"cluster.workers must be the {log.workers} workers of the log "
                            f"({'its columns' if log.per_worker else 'as its updates imply them'}), got "
                            f"{scenario.cluster.workers}")
    compute = scenario.cluster.compute
    mean = compute.mean if isinstance(compute, DelayLaw) and math.isfinite(compute.mean) else 1.0
    n_updates = min((2 if drain else 4) * log.updates, MAX_SIMULATED)
    rows = protocol.rows(log.workers, n_updates)
    budget.check([budget.Footprint(budget.ROW_BYTES * rows, "--from-delays", log.path,
                                   f"the trace rows of each simulated candidate ({rows:,.0f})")])
    counted = [0]

    def simulated(cv, ratio):
        counted[0] += 1
        cluster = Cluster(workers=log.workers, compute=law_of(law, cv, mean),
                          server=Server(service=Constant(value=ratio * mean)))
        trace = simulate(cluster, protocol, n_updates, scenario.seed)
        return trace.staleness, maxima(trace) if drain else None

    def score(cv, ratio):
        fresh, maximum = simulated(cv, ratio)
        distance = ks(fresh, log.fresh)
        return max(distance, ks(maximum, log.maximum)) if log.per_worker else distance

    # a grid in (log cv, ratio), then twice a 5 x 5 grid around the best point with half the spacing
    log_cv = np.linspace(*np.log(CV_GRID), 14 if drain else 40)
    ratios = np.linspace(*RATIO_GRID, 11) if drain else np.zeros(1)
    best = min((score(math.exp(c), r), c, r) for c in log_cv for r in ratios)
    step_c, step_r = log_cv[1] - log_cv[0], (ratios[1] - ratios[0]) if drain else 0.0
    for _ in range(2):
        step_c, step_r = step_c / 2, step_r / 2
        around = [(best[1] + i * step_c, max(0.0, best[2] + j * step_r)) for i in range(-2, 3)
                  for j in (range(-2, 3) if drain else (0,))]
        best = min([best] + [(score(math.exp(c), r), c, r) for c, r in dict.fromkeys(around)])
    _, cv, ratio = best
    cv = math.exp(cv)
    fresh, maximum = simulated(cv, ratio)
    return DelayFit(log, law, float(cv), float(mean), float(ratio) if drain else None, ks(fresh, log.fresh),
                    ks(maximum, log.maximum) if log.per_worker else None, fresh, maximum, counted[0])


def fits(protocol) -> bool:
    """Whether ``fit_delays`` can fit a scenario with this protocol (or protocol class's capabilities): one that
    simulates an asynchronous or a draining server."""
    return protocol.simulated and protocol.family in (Family.ASYNC, Family.DRAINED)


def delay_calibrated(scenario, fit: DelayFit) -> dict:
    """The scenario (plain data) with the fitted timing: the compute law, the service time (``drain``), and
    everything else that shaped the timing removed (links, speeds, stragglers, slow phases, failures, flops)."""
    data = copy.deepcopy(scenario.to_dict())
    data["name"] = f"{scenario.name}-calibrated"
    cluster = data["cluster"]
    cluster.update(compute=fit.compute_law(), compute_trace=None, speeds=[], stragglers=[], transient=None,
                   failures=None, availability=None, flops_per_second=None, uplink={"kind": "constant", "value": 0.0},
                   downlink={"kind": "constant", "value": 0.0})
    cluster.pop("devices", None)
    cluster["network"].update(uplink_bandwidth=None, downlink_bandwidth=None)
    cluster["server"]["service"] = {"kind": "constant", "value": (fit.service_ratio or 0.0) * fit.mean}
    return data


def describe_fit(fit: DelayFit) -> str:
    """The fitted values, the KS distances, and the mean and p99 of the log's and the simulation's delays."""
    law = fit.compute_law()
    params = ", ".join(f"{k} {v:.4g}" for k, v in law.items() if k != "kind")
    lines = [f"  compute law        {fit.law} ({params}; coefficient of variation {fit.cv:.3g})"]
    if fit.service_ratio is not None:
        lines.append(f"  server service     {fit.service_ratio:.4g} x the mean compute time "
                     f"({fit.service_ratio * fit.mean:.4g} s)")

    def row(label, log, sim, distance):
        return (f"  {label:<18} KS {distance:.3f}   mean {log.mean():.3f} log / {sim.mean():.3f} sim   "
                f"p99 {np.percentile(log, 99):.0f} log / {np.percentile(sim, 99):.0f} sim")

    lines.append(row("fresh delays" if fit.log.per_worker else "delays", fit.log.fresh, fit.fresh, fit.ks))
    if fit.log.per_worker:
        lines.append(row("max delay tau_k", fit.log.maximum, fit.maximum, fit.ks_max))
    lines.append(f"  ({fit.simulations} simulations of {fit.log.workers} identical workers without links, "
                 f"stragglers, slow phases or failures: the log's delays cannot tell them from the compute law)")
    return "\n".join(lines)
