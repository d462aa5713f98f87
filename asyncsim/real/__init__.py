"""Real execution: the scenario's update rules on worker processes, recorded as an observed Trace (DESIGN.md).

``run_real`` and ``RealRunError`` live in ``asyncsim.real.runner`` and are imported on first use (the scenario
module imports ``RealSpec`` from here, and the runner imports the scenario module)."""

from .spec import RealSpec

__all__ = ["RealRunError", "RealSpec", "run_real"]


def __getattr__(name):
    if name in ("RealRunError", "run_real"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
