"""Real execution: the scenario's update rules on worker processes, recorded as an observed Trace
(docs/ARCHITECTURE.md, "Real execution").  The ``real:`` section of a scenario is ``asyncsim.scenario.RealSpec``."""

from .runner import RealRunError, check_real, run_real

__all__ = ["RealRunError", "check_real", "run_real"]
