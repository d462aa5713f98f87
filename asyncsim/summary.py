"""The summary of a run (summary.json) as typed, frozen data.

The package reads a run's numbers through the attributes of :class:`Summary`; ``to_json()`` is the one place that
names the keys of summary.json, and ``Summary.from_json`` the one place that reads them back (from a result
directory, older ones included).  ``summary["key"]`` reads the JSON form, for notebooks and scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Staleness:
    """Staleness tau = update - read_version of the applied contributions."""

    mean: float
    p50: float
    p99: float
    max: int


@dataclass(frozen=True)
class RealOutcome:
    """How a real run went: its settings, whether it was cut short and why, the workers it lost, and the replay of
    its observed trace (``exact``: bit for bit, or None where only compared statistically)."""

    settings: dict
    """The scenario's ``real:`` section."""
    partial: bool
    updates_requested: int
    stopped_by: str | None
    lost_workers: list
    replay_check: dict
    time_unit: str = "wall-clock seconds since the start"


@dataclass(frozen=True)
class Summary:
    """The numbers of one run.  Times are simulated seconds (wall-clock seconds for ``mode == "real"``)."""

    scenario: str
    seed: int
    protocol: str
    algorithm: str
    workers: int
    updates: int
    contributions: int
    unused: dict[str, int]
    simulated_time: float
    updates_per_second: float
    worker_shares: list[float]
    final_loss: float
    staleness: Staleness
    peak_in_flight: int
    diverged_at: int | None
    version: str
    final_suboptimality: float | None = None
    stopped_at: int | None = None
    """The update at which the algorithm stopped itself (simulated runs), or None."""
    reached_at: int | None = None
    """The update at which the run reached its ``run.stop_at`` target and stopped, or None."""
    algorithm_extra: dict = field(default_factory=dict)
    """Entries the algorithm adds (``Algorithm.summary``, e.g. ADMM's memory per node)."""
    algorithm_resolved: dict | None = None
    """The algorithm with its problem-dependent defaults resolved, when they differ from the scenario's."""
    mode: str = "sim"
    engine: str | None = None
    predicted: dict = field(default_factory=dict)
    """Predicted curves for the plots (``predict.overlays``)."""
    wall_time_s: float = 0.0
    real: RealOutcome | None = None
    protocol_notes: dict = field(default_factory=dict)
    """How the protocol formed its trace (``Protocol.notes``), e.g. how a delay log's workers were found."""
    compression: dict | None = None
    """The scenario's ``compression`` with the bytes of a message compressed and not, or None."""

    def to_json(self) -> dict[str, Any]:
        """summary.json as a mapping, in its documented key order."""
        out = {"scenario": self.scenario, "seed": self.seed, "protocol": self.protocol, "algorithm": self.algorithm,
               "workers": self.workers, "updates": self.updates, "contributions": self.contributions,
               "unused": dict(self.unused), "simulated_time": self.simulated_time,
               "updates_per_second": self.updates_per_second, "worker_shares": list(self.worker_shares),
               "final_loss": self.final_loss, "staleness": vars(self.staleness).copy(),
               "peak_in_flight": self.peak_in_flight, "diverged_at": self.diverged_at, "version": self.version}
        if self.compression is not None:
            out["compression"] = dict(self.compression)
        if self.final_suboptimality is not None:
            out["final_suboptimality"] = self.final_suboptimality
        if self.real is not None:
            r = self.real
            out.update(mode=self.mode, time_unit=r.time_unit, real=r.settings, partial=r.partial,
                       updates_requested=r.updates_requested, stopped_by=r.stopped_by, lost_workers=r.lost_workers,
                       replay_check=r.replay_check, wall_time_s=self.wall_time_s)
            return out
        out["stopped_at"] = self.stopped_at
        if self.reached_at is not None:
            out["reached_at"] = self.reached_at
        if self.protocol_notes:
            out["protocol_notes"] = dict(self.protocol_notes)
        out.update(self.algorithm_extra)
        if self.algorithm_resolved is not None:
            out["algorithm_resolved"] = self.algorithm_resolved
        out.update(mode=self.mode, engine=self.engine, predicted=self.predicted, wall_time_s=self.wall_time_s)
        return out

    def __getitem__(self, key: str):
        return self.to_json()[key]

    @classmethod
    def from_json(cls, data: dict) -> "Summary":
        """The inverse of ``to_json``.  Keys it does not know are kept in ``algorithm_extra``; keys that are
        missing (a summary.json written by hand or by an older version) read as empty: NaN for a number, 0 for a
        count, "" for a name; without ``mode`` a run counts as simulated."""
        nan = float("nan")
        get = data.get
        known = set(cls.__dataclass_fields__) | {"time_unit", "partial", "updates_requested", "stopped_by",
                                                 "lost_workers", "replay_check"}
        real = None
        if get("mode") == "real":
            real = RealOutcome(settings=_mapping(get("real")), partial=bool(get("partial", False)),
                               updates_requested=get("updates_requested", get("updates", 0)),
                               stopped_by=get("stopped_by"), lost_workers=get("lost_workers") or [],
                               replay_check=get("replay_check") or {},
                               time_unit=get("time_unit", RealOutcome.time_unit))
        st = _mapping(get("staleness"))
        return cls(scenario=get("scenario", ""), seed=get("seed", 0), protocol=get("protocol", ""),
                   algorithm=get("algorithm", ""), workers=get("workers", 0), updates=get("updates", 0),
                   contributions=get("contributions", get("updates", 0)), unused=get("unused") or {},
                   simulated_time=get("simulated_time", nan), updates_per_second=get("updates_per_second", nan),
                   worker_shares=get("worker_shares") or [], final_loss=get("final_loss", nan),
                   staleness=Staleness(mean=st.get("mean", nan), p50=st.get("p50", nan), p99=st.get("p99", nan),
                                       max=st.get("max", 0)),
                   peak_in_flight=get("peak_in_flight", 0), diverged_at=get("diverged_at"),
                   version=get("version", ""), final_suboptimality=get("final_suboptimality"),
                   stopped_at=get("stopped_at"), reached_at=get("reached_at"), algorithm_extra={k: v for k, v in data.items() if k not in known},
                   algorithm_resolved=get("algorithm_resolved"), mode=get("mode", "sim"), engine=get("engine"),
                   predicted=_mapping(get("predicted")), wall_time_s=get("wall_time_s", 0.0), real=real,
                   protocol_notes=_mapping(get("protocol_notes")),
                   compression=get("compression") if isinstance(get("compression"), dict) else None)


def _mapping(value) -> dict:
    """A mapping read back from summary.json, or an empty one where it holds anything else."""
    return value if isinstance(value, dict) else {}
