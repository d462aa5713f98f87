"""Problems: objectives with data.  Register your own with ``@ProblemSpec.registry.register("name")``."""

from .base import FiniteSum, Problem, ProblemSpec
from .factorization import NMF, MatrixFactorization, MatrixFactorizationProblem, NMFProblem
from .least_squares import LeastSquares, LeastSquaresProblem
from .logistic import Logistic, LogisticProblem
from .mlp import MLP, MLPProblem
from .quadratic import Quadratic, QuadraticProblem
from .ridge import Ridge, RidgeProblem
from .saddle import StrictSaddle, StrictSaddleProblem
from .sparse import SparseLeastSquares, SparseLeastSquaresProblem, SparseQuadratic, SparseQuadraticProblem

__all__ = ["FiniteSum", "LeastSquares", "LeastSquaresProblem", "Logistic", "LogisticProblem", "Problem",
           "ProblemSpec", "Quadratic", "QuadraticProblem"]
__all__ += ["MatrixFactorization", "MatrixFactorizationProblem", "NMF", "NMFProblem", "SparseLeastSquares",
            "SparseLeastSquaresProblem", "SparseQuadratic", "SparseQuadraticProblem"]
__all__ += ["StrictSaddle", "StrictSaddleProblem"]
__all__ += ["MLP", "MLPProblem"]
__all__ += ["Ridge", "RidgeProblem"]
