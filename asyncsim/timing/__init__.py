"""Timing layer: delay laws, cluster, protocols (SimPy), the fast path and the Trace."""

from .cluster import Cluster, ComputeTrace, Failures, Network, Server, Straggler, Transient
from .laws import DelayLaw
from .protocols import Protocol, choose_engine, simulate
from .trace import Status, Trace, TraceError

__all__ = ["Cluster", "ComputeTrace", "DelayLaw", "Failures", "Network", "Protocol", "Server", "Status", "Straggler",
           "Trace", "TraceError", "Transient", "choose_engine", "simulate"]
