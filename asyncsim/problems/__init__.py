"""Problems: objectives with data.  Register your own with ``@ProblemSpec.registry.register("name")``."""

from .base import FiniteSum, Problem, ProblemSpec
from .least_squares import LeastSquares, LeastSquaresProblem
from .logistic import Logistic, LogisticProblem
from .quadratic import Quadratic, QuadraticProblem

__all__ = ["FiniteSum", "LeastSquares", "LeastSquaresProblem", "Logistic", "LogisticProblem", "Problem",
           "ProblemSpec", "Quadratic", "QuadraticProblem"]
