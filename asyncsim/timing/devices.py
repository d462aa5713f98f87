"""Device profiles: ``cluster.devices``, a few named kinds of client device, each with a compute speed and link
bandwidths, and the share of the workers that has it.

Worker w's device is the w-th of all the workers ordered by (j + 1/2) / quota_p, profile p's j-th worker at that
place (Webster's divisor sequence; ties to the first listed profile), with integer quotas from the shares by the
largest remainder (Hamilton's method): exactly quota_p workers get profile p, and every prefix of the workers is
within one worker of the mix.  No randomness: which client has which device is part of the population's
definition, the same in every run (client ids carry no other meaning: selection and timing draws are keyed by id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..params import require

LONGEST = 1e100
"""The widest speed factor and the smallest bandwidth's reciprocal (as for every other cluster setting)."""


@dataclass(frozen=True, kw_only=True)
class Device:
    """A device profile: ``share`` of the workers compute ``speed`` times as fast as the compute law says and send
    and receive at ``uplink_bandwidth`` / ``downlink_bandwidth`` bytes per second (null: the network's)."""

    name: str
    share: float
    speed: float = 1.0
    uplink_bandwidth: float | None = None
    downlink_bandwidth: float | None = None

    def __post_init__(self):
        require(self.name != "", "name", "must not be empty", self.name)
        require(0 < self.share <= 1, "share", "must be in (0, 1]", self.share)
        require(1 / LONGEST <= self.speed <= LONGEST, "speed", f"must be in [{1 / LONGEST:g}, {LONGEST:g}]",
                self.speed)
        for name in ("uplink_bandwidth", "downlink_bandwidth"):
            value = getattr(self, name)
            require(value is None or 1 / LONGEST <= value, name, f"must be >= {1 / LONGEST:g} (or null: the "
                    "network's)", value)


MAX_PROFILES = 1000
"""The most device profiles a cluster may list (a few named kinds of device are the use)."""


def check_devices(devices: tuple[Device, ...]) -> None:
    """At most MAX_PROFILES, names distinct, shares adding up to 1 (within 1e-9)."""
    require(len(devices) <= MAX_PROFILES, "devices", f"must list at most {MAX_PROFILES} profiles",
            f"{len(devices)} profiles")
    names = [d.name for d in devices]
    require(len(set(names)) == len(names), "devices", "must have distinct names", names)
    total = math.fsum(d.share for d in devices)
    require(abs(total - 1.0) <= 1e-9, "devices", "must have shares adding up to 1", f"shares adding up to {total:g}")


def quotas(shares: list[float], workers: int) -> list[int]:
    """Integer quotas adding up to ``workers``, by the largest remainder of share x workers (ties to the first)."""
    exact = [s * workers for s in shares]
    out = [math.floor(x) for x in exact]
    order = sorted(range(len(shares)), key=lambda p: (-(exact[p] - out[p]), p))
    for p in order[:workers - sum(out)]:
        out[p] += 1
    return out


def assign(devices: tuple[Device, ...], workers: int) -> tuple[int, ...]:
    """Each worker's profile index: profile p's j-th worker (j < quota_p) goes at the place of (j + 1/2) / quota_p
    in one ordering of all of them (ties to the first listed profile; Webster's divisor sequence), so every prefix
    of the workers is within one worker of the mix.  O(n log n)."""
    quota = quotas([d.share for d in devices], workers)
    profile = np.repeat(np.arange(len(devices)), quota)
    rank = np.concatenate([(np.arange(q) + 0.5) / q for q in quota if q]) if workers else np.empty(0)
    return tuple(profile[np.lexsort((profile, rank))].tolist())
