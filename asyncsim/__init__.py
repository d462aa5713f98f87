"""asyncsim: a discrete-event simulator of asynchronous and distributed optimization.

Timing (SimPy) produces a Trace; the same pure update rules replay it.  Quick start::

    import asyncsim
    res = asyncsim.run(asyncsim.load_scenario())      # the built-in quickstart scenario
    res.metrics, res.trace.to_frame()                  # pandas DataFrames
"""

from . import theory
from .algorithms import Algorithm
from .params import ParamError, ScenarioError
from .problems import ProblemSpec
from .replay import replay
from .results import write_results
from .predict import predict
from .runner import RunResult, run
from .real.runner import RealRunError, run_real
from .scenario import Scenario, load_scenario
from .summary import Summary
from .timing import Cluster, DelayLaw, Protocol, Trace, simulate
from .version import __version__

__all__ = ["Algorithm", "Cluster", "DelayLaw", "ParamError", "ProblemSpec", "Protocol", "RealRunError", "RunResult",
           "Scenario", "ScenarioError", "Summary", "Trace", "__version__", "load_scenario", "predict", "replay", "run",
           "run_real", "simulate", "theory", "write_results"]
