"""Scenario files: YAML <-> frozen dataclasses, with every ``kind`` resolved through a registry at load time, and
the one validation pass that checks everything a run could fail on (docs/ARCHITECTURE.md, "Validation").

Errors are one line naming the YAML path, the rule and the value given (``algorithm.lr must be > 0, got -0.1``)
and raise :class:`~asyncsim.params.ScenarioError`.
"""

from __future__ import annotations

import copy
import multiprocessing
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import budget
from .algorithms.base import Algorithm
from .algorithms.compressed import Compressed
from .compression import Compressor
from .split import Split
from .files import load_yaml, parse_yaml
from .params import ParamError, ScenarioError, build_dataclass, kind, optional, relative_to, require, to_plain
from .problems.base import ProblemSpec
from .rng import BLOCK, CACHED_WORKERS
from .targets import Target
from .timing.cluster import Cluster
from .timing.protocol import Family
from .timing.protocols import Async, Protocol, simulate

DEFAULT_SCENARIO = "quickstart.yaml"


def check_name(name: str, what: str, field: str = "name") -> None:
    """A name that becomes a directory name (a scenario's, a study variant's, a reproduction's)."""
    require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", name)), field, f"must be letters, digits, '_', '.' or '-' (it "
            f"names {what})", name)
    require(len(name) <= 100 and name.strip(".") != "", field, "must be at most 100 characters, not only dots",
            name)
START_METHODS = ("spawn", "fork", "forkserver")
ON_WORKER_FAILURE = ("stop", "continue")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """How long to run and how often to record metrics (every ``record_every`` updates; default: 100 points).

    ``updates``: the number of updates, or with ``time`` the most the run may take (the memory budget is counted
    from it); left out, the number the protocol's own data hold (a delay log's, ``Protocol.given_updates``).  ``time``: the run is the updates applied at or before simulated time ``time`` (or the first
    ``updates`` of them, whichever ends first), so variants with different update rates are compared over the same
    time.  ``stop_at``: a :class:`~asyncsim.targets.Target` (``{metric: loss, level: 0.01}``); the run stops at the
    first recorded version (every ``record_every`` updates, from version 1 on) whose metric reaches the level.
    """

    updates: int | None = None
    record_every: int | None = None
    time: float | None = None
    stop_at: Target | None = None

    def __post_init__(self):
        if self.updates is None:  # resolved by ``check`` from the protocol
            return
        require(self.updates >= 1, "updates", "must be >= 1", self.updates)
        if self.record_every is None:
            object.__setattr__(self, "record_every", max(1, self.updates // 100))
        require(self.record_every >= 1, "record_every", "must be >= 1", self.record_every)
        require(self.time is None or self.time > 0, "time", "must be > 0 (simulated seconds) or null", self.time)


@dataclass(frozen=True, kw_only=True)
class RealSpec:
    """How ``asyncsim run --mode real`` runs the scenario on worker processes (the simulator ignores it).

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


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A complete experiment: problem, cluster, protocol, algorithm, run length and the root seed; ``compression``
    compresses the workers' messages (``asyncsim.compression``; null: none), ``split`` gives each worker its own
    shard of the training samples (``asyncsim.split``; null: every worker draws from all), ``real`` says how
    ``--mode real`` runs
    it on worker processes (the simulator ignores it).  Constructing one runs the validation pass (:func:`check`),
    so a Scenario that exists can run."""

    name: str
    seed: int = 0
    problem: ProblemSpec
    cluster: Cluster
    protocol: Protocol = field(default_factory=Async)
    algorithm: Algorithm
    compression: Compressor | None = None
    split: Split | None = optional()
    run: RunSpec
    real: RealSpec = field(default_factory=RealSpec)

    def __post_init__(self):
        check_name(self.name, "the result directory")
        require(0 <= self.seed < 2**63, "seed", "must be in [0, 2**63)", self.seed)
        check(self)

    @property
    def method(self) -> Algorithm:
        """The algorithm as it runs: ``algorithm``, or with ``compression`` the :class:`Compressed` wrapper of it."""
        if self.compression is None:
            return self.algorithm
        return Compressed(inner=self.algorithm, compressor=self.compression)

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved scenario (defaults filled in) as plain data (``compression`` only when given)."""
        out = to_plain(self)
        if out["compression"] is None:
            del out["compression"]
        return out

    def to_yaml(self) -> str:
        """The resolved scenario as YAML (the result's scenario.yaml; loading it gives this scenario again)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)


def check(s: Scenario) -> None:
    """The validation pass: every condition a simulated run of ``s`` could fail on, checked before anything is
    built (ParamError naming the YAML path).  Resolves, in place, the defaults the protocol takes from the problem
    (``Protocol.resolve``) and the algorithm from the protocol (``Algorithm.resolve``).

    In order: the defaults (cheap), the memory budget (before anything that grows with the sizes), the protocol
    against the cluster and the run length, the algorithm against the protocol (``Algorithm.accepts``, from its
    capabilities) and against the problem spec, cluster and run (``Algorithm.check``), the cost model (flop
    counts), and a compute trace long enough for the run.
    """
    protocol = s.protocol.resolve(s.problem)
    if s.run.updates is None:
        require(protocol.given_updates is not None, "run.updates", f"is required (a number of updates; protocol "
                f"{kind(protocol)} holds none of its own)", None)
        object.__setattr__(s, "run", replace(s.run, updates=protocol.given_updates))
    cluster, K = s.cluster, s.run.updates
    object.__setattr__(s, "protocol", protocol)
    algorithm = s.algorithm.resolve(protocol)
    object.__setattr__(s, "algorithm", algorithm)
    if s.compression is not None:
        _check_compression(s)
    if s.split is not None:
        _check_split(s)
    budget.check(footprint(s))
    protocol.check_cluster(cluster)
    require(s.split is None or cluster.data_sizes is None, "cluster.data_sizes", "must be null with a split (the "
            "clients' data sizes are then their shards' sizes)", "given")
    require(protocol.selection == "uniform" or s.split is not None or cluster.data_sizes is not None,
            "protocol.selection", "data_size needs the clients' data sizes: a split (the shards' sizes) or "
            "cluster.data_sizes", protocol.selection)
    protocol.check_updates(K)
    if not algorithm.accepts(protocol) and kind(protocol) in algorithm.protocols:  # the kind can, not as given
        name, what = protocol.family.value.split(": ", 1)
        raise ScenarioError(f"protocol.kind: {kind(protocol)} as given here forms {name} updates ({what}), which "
                            f"algorithm {kind(algorithm)} is not defined under")
    require(algorithm.accepts(protocol), "protocol.kind", f"must be one of {', '.join(algorithm.protocols)} for "
            f"algorithm {kind(algorithm)}", kind(protocol))
    protocol.check(algorithm)
    algorithm.check(s)
    if s.run.stop_at is not None:
        recorded = recorded_metrics(s)
        require(s.run.stop_at.metric in recorded, "run.stop_at.metric", f"must be a metric the run records "
                f"({', '.join(recorded)})", s.run.stop_at.metric)
    if cluster.flops_per_second is not None:
        require(s.problem.counts_flops, "cluster.flops_per_second", f"needs the problem's gradient flops, which "
                f"problem {kind(s.problem)} does not count; give compute times in seconds instead (null)",
                cluster.flops_per_second)
    elif algorithm.serial_step:
        raise ParamError(f"algorithm {kind(algorithm)} times its serial step in flops: set "
                         f"cluster.flops_per_second")
    _check_compute_trace(s)


def _check_compression(s: Scenario) -> None:
    """A compressed message: an algorithm whose message is one vector, a k within the dimension, and links that
    carry the compressed size one way only (the timing model has one message size, for both directions)."""
    c, net = s.compression, s.cluster.network
    Compressed(inner=s.algorithm, compressor=c)  # refuses an algorithm whose message is not one vector
    c.check(s.problem.dim)
    require(net.message_bytes is None, "cluster.network.message_bytes", f"must be null with compression (the "
            f"compressor sizes the message: {c.bytes(s.problem.dim)} bytes here)", net.message_bytes)
    require(not s.cluster.downlink_limited, "cluster.network.downlink_bandwidth", "(and every device's) must be "
            "null with compression (a run has one message size for both directions, and compression shrinks only the "
            "upload)", net.downlink_bandwidth or "a device's")


def _check_split(s: Scenario) -> None:
    """A data split: labelled samples to split (a classification problem), enough of them for every worker, and
    an algorithm that draws minibatches (the split changes nothing else)."""
    samples = s.problem.labelled_samples
    require(samples is not None, "split", f"needs a classification problem (logistic, mlp), not {kind(s.problem)}",
            to_plain(s.split))
    require(s.algorithm.minibatches, "split", f"needs an algorithm that draws minibatches (the sgd family, "
            f"local_sgd, downpour, fedasync, easgd, eamsgd), not {kind(s.algorithm)}", to_plain(s.split))
    try:
        s.split.check(samples, s.cluster.workers)
    except ParamError as err:
        raise ParamError(f"split.{err}") from None


def recorded_metrics(s: Scenario) -> tuple[str, ...]:
    """The metrics a run of ``s`` records (suboptimality only where the built problem knows f*)."""
    return ("loss", "grad_norm", "suboptimality", *s.problem.recorded, *s.algorithm.recorded)


def footprint(s: Scenario, processes: int = 1) -> list[budget.Footprint]:
    """The parts of the memory a run of ``s`` holds (``asyncsim.budget``); ``processes`` copies of the problem
    (real mode: every worker process rebuilds it)."""
    n, K = s.cluster.workers, s.run.updates
    method = s.method
    data, draws = s.problem.memory(), method.draw_size()
    rows = s.protocol.rows(n, K)
    cached = min(n, CACHED_WORKERS)  # (the replay keeps the draws of at most that many workers)
    per_worker = replace(draws, bytes=draws.bytes * BLOCK * cached,
                         what=f"{draws.what} for {BLOCK} steps of {cached} workers")
    if cached > draws.bytes / 8:  # more workers than numbers in a step's draw: the workers make it large
        per_worker = replace(per_worker, field="cluster.workers", value=n)
    timing, who = ((budget.CLIENT_BYTES, "clients") if s.protocol.concurrency is not None
                   else (budget.WORKER_BYTES, "workers"))
    return [
        replace(data, bytes=data.bytes * processes),
        method.memory(s.problem, n),
        per_worker,
        budget.Footprint(rows * budget.ROW_BYTES, *_rows_field(s, rows), f"{rows:.3g} trace rows"),
        budget.Footprint(n * timing, "cluster.workers", n, f"timing state of {n} {who}"),
        budget.Footprint((K // s.run.record_every + 2) * budget.RECORD_BYTES, "run.record_every",
                         s.run.record_every, "recorded metrics"),
    ]


def _rows_field(s: Scenario, rows: float) -> tuple[str, object]:
    """The field that makes the trace's ``rows`` large: ``run.updates``, unless an update holds more rows than there
    are updates: then the workers (rounds) or the protocol's own size (a buffer, a batch)."""
    K, n = s.run.updates, s.cluster.workers
    per_update = rows / K
    if per_update <= K:
        return "run.updates", K
    return ("cluster.workers", n) if per_update <= n else ("protocol", to_plain(s.protocol))


def _check_compute_trace(s: Scenario) -> None:
    """A compute trace that does not cycle must have a row for every step a worker takes.  Under rounds every worker
    takes one step per update; otherwise the steps depend on the schedule, which is simulated here when the file
    is shorter than the run (the file bounds the steps: at most SIMULATED_CHECK of them, so validation stays
    quick), unless the durations depend on the problem's flops or message sizes, which only the run knows.  In
    the cases left, a run that needs a missing row stops while simulating, before its replay."""
    trace, steps = s.cluster.compute_trace, s.run.updates * s.protocol.local_steps
    if trace is None or trace.cycle or not s.protocol.simulated:
        return
    rows, failures = len(trace.table), s.cluster.interruption is not None
    if rows >= steps and not failures:  # no worker takes more steps than there are updates
        return
    if s.protocol.family is Family.ROUNDS and not failures:  # every worker takes exactly one step per round
        raise ParamError(f"cluster.compute_trace.path has {rows} rows but every worker takes {steps} steps in "
                         f"{s.run.updates} rounds; set cluster.compute_trace.cycle: true or run fewer updates")
    if (s.cluster.flops_per_second is None and not s.cluster.bandwidth_limited
            and rows * s.cluster.workers <= SIMULATED_CHECK):
        simulate(s.cluster, s.protocol, s.run.updates, s.seed)  # raises the same error as the run would


SIMULATED_CHECK = 100_000
"""The most worker steps (rows x workers of a compute trace) the validation simulates to check the trace's length."""


def default_scenario_text() -> str:
    """The built-in quickstart scenario shipped inside the package."""
    return resources.files("asyncsim").joinpath("data", DEFAULT_SCENARIO).read_text()


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``dotted.key=value`` override (value parsed as YAML) to the raw scenario mapping in place."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ScenarioError(f"--set needs dotted.key=value, got {assignment!r}")
    value = parse_yaml(raw, f"--set {key}") if raw else None
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ScenarioError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a mapping")
    node[parts[-1]] = value


def from_dict(data: Any, overrides: Iterable[str] = (), seed: int | None = None) -> Scenario:
    """Validate a raw scenario mapping (after ``--set`` overrides and an optional seed) into a Scenario."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"a scenario must be a mapping at the top level, got {type(data).__name__}")
    data = copy.deepcopy(dict(data))
    for assignment in overrides:
        apply_override(data, assignment)
    if seed is not None:
        data["seed"] = seed
    return build_dataclass(Scenario, data, "")


def load_scenario(path: str | Path | None = None, overrides: Iterable[str] = (), seed: int | None = None) -> Scenario:
    """Load and validate a scenario file; with no path, the built-in quickstart.

    ``overrides`` are ``dotted.key=value`` strings (as the CLI's ``--set``); ``seed`` replaces the root seed.
    """
    if path is None:
        return from_dict(parse_yaml(default_scenario_text(), f"<built-in {DEFAULT_SCENARIO}>"), overrides, seed)
    p = Path(path)
    data = load_yaml(p, "scenario file")
    with relative_to(p.parent):
        return from_dict(data, overrides, seed)
