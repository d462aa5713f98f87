"""Update rules as pure functions.  Register your own with ``@Algorithm.registry.register("name")``."""

from .base import Algorithm, ApplyInfo, average
from .coordinate import AsySCD, BlockGrad
from .gd import GD
from .local_sgd import LocalSGD
from .seacd import SEACD
from .sgd import SGD, project

__all__ = ["Algorithm", "ApplyInfo", "LocalSGD", "SGD", "average"]
__all__ += ["AsySCD", "BlockGrad", "GD", "SEACD", "project"]
