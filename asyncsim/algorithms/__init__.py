"""Update rules as pure functions.  Register your own with ``@Algorithm.registry.register("name")``."""

from .admm import ADMMNet
from .base import Algorithm, ApplyInfo, average
from .coded import CodedGD
from .coded_es import CodedES
from .coordinate import AsySCD, BlockGrad
from .delay import AsySG, DelayAdaptive, Koloskova, MinibatchSGD, RennalaSGD, RingmasterASGD
from .gd import GD
from .piag import PIAG, AsyncBCD
from .elastic import EAMSGD, EASGD
from .fedasync import FedAsync
from .local_sgd import Downpour, LocalSGD
from .seacd import SEACD
from .sketching import SketchAverage, SketchedNewton
from .sgd import SGD, project

__all__ = ["Algorithm", "ApplyInfo", "LocalSGD", "SGD", "average"]
__all__ += ["AsySCD", "BlockGrad", "GD", "SEACD", "project"]
__all__ += ["Downpour", "EAMSGD", "EASGD"]
__all__ += ["ADMMNet"]
__all__ += ["AsySG", "DelayAdaptive", "Koloskova", "MinibatchSGD", "RennalaSGD", "RingmasterASGD"]
__all__ += ["AsyncBCD", "PIAG"]
__all__ += ["CodedES", "CodedGD", "SketchAverage", "SketchedNewton"]
__all__ += ["FedAsync"]
