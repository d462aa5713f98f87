"""Timing layer: delay laws, cluster, protocols (SimPy) and the Trace."""

from .cluster import Cluster, Server, Straggler
from .laws import DelayLaw
from .protocols import Protocol, simulate
from .trace import Trace, TraceError

__all__ = ["Cluster", "DelayLaw", "Protocol", "Server", "Straggler", "Trace", "TraceError", "simulate"]
