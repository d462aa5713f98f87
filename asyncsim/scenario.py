"""Scenario files: YAML <-> frozen dataclasses, with every ``kind`` resolved through a registry at load time.

Errors are one line naming the YAML path, the rule and the value given (``algorithm.lr must be > 0, got -0.1``)
and raise :class:`~asyncsim.params.ScenarioError`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .algorithms.base import Algorithm
from .params import ScenarioError, build_dataclass, kind, relative_to, require, to_plain
from .problems.base import ProblemSpec
from .real.spec import RealSpec
from .timing.cluster import Cluster
from .timing.protocols import Async, Protocol

DEFAULT_SCENARIO = "quickstart.yaml"


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """How long to run and how often to record metrics (every ``record_every`` updates; default: 100 points)."""

    updates: int
    record_every: int | None = None

    def __post_init__(self):
        require(self.updates >= 1, "updates", "must be >= 1", self.updates)
        if self.record_every is None:
            object.__setattr__(self, "record_every", max(1, self.updates // 100))
        require(self.record_every >= 1, "record_every", "must be >= 1", self.record_every)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A complete experiment: problem, cluster, protocol, algorithm, run length and the root seed; ``real`` says how
    ``--mode real`` runs it on worker processes (the simulator ignores it)."""

    name: str
    seed: int = 0
    problem: ProblemSpec
    cluster: Cluster
    protocol: Protocol = field(default_factory=Async)
    algorithm: Algorithm
    run: RunSpec
    real: RealSpec = field(default_factory=RealSpec)

    def __post_init__(self):
        require(bool(re.fullmatch(r"[A-Za-z0-9_.-]+", self.name)), "name",
                "must be letters, digits, '_', '.' or '-' (it names the result directory)", self.name)
        require(0 <= self.seed < 2**63, "seed", "must be in [0, 2**63)", self.seed)
        self.protocol.check_cluster(self.cluster)
        if hasattr(self.protocol, "blocks"):  # shared_memory: default one read block per coordinate
            dim = self.problem.dim
            if self.protocol.blocks is None:
                object.__setattr__(self, "protocol", replace(self.protocol, blocks=dim))
            require(self.protocol.blocks <= dim, "protocol.blocks", f"must be <= the problem's dim ({dim})",
                    self.protocol.blocks)
        allowed = self.algorithm.protocols
        if allowed is not None:
            require(kind(self.protocol) in allowed, "protocol.kind",
                    f"must be one of {', '.join(allowed)} for algorithm {kind(self.algorithm)}", kind(self.protocol))
        if hasattr(self.algorithm, "local_steps") and self.algorithm.local_steps is None:  # the protocol's period
            object.__setattr__(self, "algorithm", replace(self.algorithm, local_steps=self.protocol.local_steps))
        self.protocol.check(self.algorithm)

    @property
    def message_bytes(self) -> int:
        """Size of a message on the links: cluster.network.message_bytes, else 8 bytes per parameter."""
        given = self.cluster.network.message_bytes
        return 8 * self.problem.dim if given is None else given

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved scenario (defaults filled in) as plain data."""
        return to_plain(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` and ``1e4`` as floats (YAML 1.1 wants a dot: ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError(f"{source}: invalid YAML{where}: {problem}") from None


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
        text, source = default_scenario_text(), f"<built-in {DEFAULT_SCENARIO}>"
    else:
        p = Path(path)
        if not p.is_file():
            raise ScenarioError(f"scenario file {str(p)!r} not found")
        text, source = p.read_text(), str(p)
        with relative_to(p.parent):
            return from_dict(parse_yaml(text, source), overrides, seed)
    return from_dict(parse_yaml(text, source), overrides, seed)
