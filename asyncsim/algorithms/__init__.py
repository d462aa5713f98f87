"""Update rules as pure functions.  Register your own with ``@Algorithm.registry.register("name")``."""

from .base import Algorithm, ApplyInfo, average
from .local_sgd import LocalSGD
from .sgd import SGD

__all__ = ["Algorithm", "ApplyInfo", "LocalSGD", "SGD", "average"]
