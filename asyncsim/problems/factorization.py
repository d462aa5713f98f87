"""Matrix factorization problems: unconstrained (S ~ U F, mean squared error) and non-negative (A ~ W H).

Both flatten their two factors into one parameter vector ``x = concat(U.ravel(), F.ravel())`` (row-major), so a
contiguous coordinate block is a run of rows of the left factor and/or a run of the right factor's entries; the
partial gradient of such a block is computed from the rows of the left factor and the columns of the right factor
it touches only, exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..budget import Footprint
from ..params import ScenarioError, require
from .base import Problem, ProblemSpec

IMAGE_NAME = "grace_hopper.jpg"
IMAGE_SHAPE = (600, 512)
"""Shape (rows, columns) of matplotlib's sample photograph, before downsampling."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.flags.writeable = False
    return a


def image_shape(downsample: int = 1) -> tuple[int, int]:
    """The shape of ``load_image(downsample)``: every ``downsample``-th pixel of 600 x 512, i.e. ceil(600/d) x
    ceil(512/d)."""
    return tuple(-(-s // downsample) for s in IMAGE_SHAPE)


@lru_cache(maxsize=None)
def _read_image() -> np.ndarray:
    try:
        import matplotlib.cbook
        import matplotlib.image

        path = Path(matplotlib.cbook.get_sample_data(IMAGE_NAME, asfileobj=False))
        if not path.is_file():
            raise FileNotFoundError(f"no file {path}")
        rgb = matplotlib.image.imread(str(path))
    except Exception as err:  # one line for the user, whatever went wrong inside matplotlib or Pillow
        msg = " ".join(str(err).split())
        raise ScenarioError(f"problem.data: image needs matplotlib's sample photograph {IMAGE_NAME}, which could not "
                            f"be read ({type(err).__name__}: {msg})") from None
    rgb = np.asarray(rgb)
    if rgb.shape[:2] != IMAGE_SHAPE:
        raise ScenarioError(f"problem.data: image expects {IMAGE_NAME} of {IMAGE_SHAPE[0]} x {IMAGE_SHAPE[1]} pixels, "
                            f"got {rgb.shape}")
    gray = rgb[..., :3].astype(np.float64).mean(axis=2) if rgb.ndim == 3 else rgb.astype(np.float64)
    if rgb.dtype == np.uint8:
        gray /= 255.0
    return _readonly(gray)


@lru_cache(maxsize=None)
def load_image(downsample: int = 1) -> np.ndarray:
    """matplotlib's sample photograph ``grace_hopper.jpg`` (shipped with the package, never downloaded) as a
    read-only grayscale array in [0, 1]: the mean of the three 8-bit channels divided by 255, keeping every
    ``downsample``-th pixel in both directions (600 x 512 at 1, 300 x 256 at 2).  Cached per process."""
    if not (isinstance(downsample, (int, np.integer)) and downsample >= 1):
        raise ValueError(f"downsample must be an integer >= 1, got {downsample!r}")
    return _readonly(_read_image()[::downsample, ::downsample])


class _Factorization(Problem):
    """f(L, R) = c ||L R - T||_F^2 over x = concat(L.ravel(), R.ravel()), L m x k, R k x n;
    grad_L = 2c (L R - T) R^T, grad_R = 2c L^T (L R - T).  Deterministic: a minibatch is empty."""

    _c: float

    def __init__(self, target: np.ndarray, rank: int, init_scale: float):
        self.target = _readonly(target)
        self.m, self.n = self.target.shape
        self.rank = int(rank)
        self.init_scale = float(init_scale)
        self._split = self.m * self.rank
        self.dim = self._split + self.rank * self.n

    def unpack(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The two factors (views of ``x``): left m x k, right k x n."""
        x = np.asarray(x)
        return x[:self._split].reshape(self.m, self.rank), x[self._split:].reshape(self.rank, self.n)

    def pack(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The parameter vector of two factors: concat(left.ravel(), right.ravel())."""
        return np.concatenate([np.ravel(left), np.ravel(right)]).astype(np.float64)

    @property
    def true_point(self) -> np.ndarray | None:
        """The packed factors that generated the data, when known and of rank ``rank`` (else None)."""
        factors = self.true_factors
        if factors is None or factors[0].shape[1] != self.rank:
            return None
        return self.pack(*factors)

    def reconstruction(self, x: np.ndarray) -> np.ndarray:
        """The product of the two factors."""
        left, right = self.unpack(x)
        return left @ right

    def _check_batch(self, batch):
        if batch is not None and np.size(batch) != 0:
            raise ValueError(f"{type(self).__name__} has deterministic gradients: a minibatch must be empty, "
                             f"got {np.size(batch)} entries")

    def loss(self, x):
        r = self.reconstruction(x) - self.target
        return self._c * float(np.vdot(r, r))

    def grad(self, x, batch=None):
        self._check_batch(batch)
        left, right = self.unpack(x)
        r = left @ right - self.target
        return np.concatenate([((2 * self._c) * (r @ right.T)).ravel(), ((2 * self._c) * (left.T @ r)).ravel()])

    def partial_grad(self, x, block, batch=None):
        """The gradient on ``block`` from the rows of the left factor and the columns of the right factor that the
        block touches: 2c (L_rows R - T_rows) R^T and 2c L^T (L R_cols - T_cols); exact, and proportionally cheaper
        than the full gradient for small blocks.  A block may span the end of the left factor and the start of the
        right one."""
        self._check_batch(batch)
        if not isinstance(block, slice):
            return self.grad(x, batch)[block]
        start, stop, step = block.indices(self.dim)
        if step != 1:
            return self.grad(x, batch)[block]
        if stop <= start:
            return np.zeros(0)
        left, right = self.unpack(x)
        k, n, split, scale = self.rank, self.n, self._split, 2 * self._c
        parts = []
        if start < split:  # rows r0 .. r1-1 of the left factor
            end = min(stop, split)
            r0, r1 = start // k, -(-end // k)
            res = left[r0:r1] @ right - self.target[r0:r1]
            g = (scale * (res @ right.T)).ravel()
            parts.append(g[start - r0 * k:end - r0 * k])
        if stop > split:  # entries j0 .. j1-1 of the right factor (row-major, k x n)
            j0, j1 = max(start, split) - split, stop - split
            a0, a1 = j0 // n, (j1 - 1) // n
            if a0 == a1:
                cols = np.arange(j0 % n, (j1 - 1) % n + 1)
            elif j1 - j0 >= n:
                cols = np.arange(n)
            else:  # the tail of row a0 and the head of row a0 + 1
                cols = np.union1d(np.arange(j0 % n, n), np.arange(0, (j1 - 1) % n + 1))
            res = left @ right[:, cols] - self.target[:, cols]
            g = scale * (left.T @ res)  # k x len(cols)
            j = np.arange(j0, j1)
            parts.append(g[j // n, np.searchsorted(cols, j % n)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def grad_flops(self):
        """6 m n k: the three dense products L R, (L R - T) R^T and L^T (L R - T), 2 m n k each."""
        return 6.0 * self.m * self.n * self.rank

    def sample_batches(self, rng, n_steps, batch_size):
        return np.empty((n_steps, 0))


class MatrixFactorizationProblem(_Factorization):
    """f(U, F) = (1/(mn)) ||S - U F||_F^2, the mean squared error of a rank-k factorization of S (m x n), with
    U m x k, F k x n and x = concat(U.ravel(), F.ravel()).  With R = S - U F:

        grad_U f = -(2/(mn)) R F^T,    grad_F f = -(2/(mn)) U^T R.

    The seed experiment (asynchronous coordinate descent for matrix factorization, AMSC 664 SEACD presentation,
    Bornstein 2021) averages its gradients per element of the factor instead: -(2/n) R F^T and -(2/m) U^T R, i.e.
    m * grad_U f and n * grad_F f.  For square S (m = n) this is the constant factor m, absorbed in the step size.

    The problem is non-convex but its global minimum is known (Eckart-Young): ``optimum`` is the truncated SVD
    S_k = P_k Sigma_k Q_k^T split as U = P_k Sigma_k^(1/2), F = Sigma_k^(1/2) Q_k^T (zero-padded when k > min(m, n)),
    and ``optimal_loss`` = (1/(mn)) sum_{i>k} sigma_i^2.  ``smoothness`` is None (grad f is not globally Lipschitz).
    """

    def __init__(self, S, rank, init_scale, true_factors=None):
        super().__init__(S, rank, init_scale)
        self._c = 1.0 / (self.m * self.n)
        self.true_factors = true_factors

    @property
    def S(self) -> np.ndarray:
        return self.target

    def initial_point(self, rng):
        """U0, F0 with i.i.d. init_scale * N(0, 1) entries (U0 first, row-major), from the INIT stream: a random,
        non-zero start (the origin is a saddle point where every gradient vanishes)."""
        return self.init_scale * rng.standard_normal(self.dim)

    @cached_property
    def optimum(self):
        P, sigma, Qt = np.linalg.svd(self.S, full_matrices=False)
        k = min(self.rank, len(sigma))
        root = np.sqrt(sigma[:k])
        U, F = np.zeros((self.m, self.rank)), np.zeros((self.rank, self.n))
        U[:, :k] = P[:, :k] * root
        F[:k] = root[:, None] * Qt[:k]
        x = self.pack(U, F)
        x.flags.writeable = False
        return x


@ProblemSpec.registry.register("matrix_factorization")
@dataclass(frozen=True, kw_only=True)
class MatrixFactorization(ProblemSpec):
    """S = U* F* + noise * N(0, 1) (m x n) with U* (m x true_rank), F* (true_rank x n) of i.i.d. N(0, 1) entries
    from the DATA stream, fitted by U F of rank ``rank`` under the mean squared error; U0, F0 ~ init_scale * N(0, 1)
    from the INIT stream.  ``rank`` may exceed min(m, n) (over-parameterized); ``true_rank`` may not."""

    m: int = 10
    n: int = 10
    rank: int = 2
    true_rank: int = 2
    noise: float = 0.0
    init_scale: float = 1.0

    def __post_init__(self):
        require(self.m >= 1, "m", "must be >= 1", self.m)
        require(self.n >= 1, "n", "must be >= 1", self.n)
        require(self.rank >= 1, "rank", "must be >= 1", self.rank)
        require(1 <= self.true_rank <= min(self.m, self.n), "true_rank",
                f"must be in [1, min(m, n) = {min(self.m, self.n)}]", self.true_rank)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)
        require(self.init_scale > 0, "init_scale", "must be > 0", self.init_scale)

    counts_flops = True

    @property
    def dim(self) -> int:
        """m k + k n: the entries of U and F."""
        return (self.m + self.n) * self.rank

    def memory(self):
        """S (m x n) and the residual and products of a gradient, each m x n."""
        return Footprint(32.0 * self.m * self.n + 32.0 * self.dim, "problem.m", self.m,
                         f"the {self.m} x {self.n} data matrix")

    def build(self, rng):
        U = rng.standard_normal((self.m, self.true_rank))
        F = rng.standard_normal((self.true_rank, self.n))
        S = U @ F + self.noise * rng.standard_normal((self.m, self.n))
        return MatrixFactorizationProblem(S, self.rank, self.init_scale, true_factors=(U, F))


class NMFProblem(_Factorization):
    """f(W, H) = 1/2 ||W H - A||_F^2 over W >= 0 (m x k), H >= 0 (k x n), x = concat(W.ravel(), H.ravel());

        grad_W f = (W H - A) H^T,    grad_H f = W^T (W H - A)

    (Lee and Seung 2001).  The non-negativity constraint is the algorithm's business: projected gradient descent
    (Lin 2007) projects after each step (``lower: 0`` on gd, asyscd or seacd).  ``relative_error(x)`` = ||A - W H||_F / ||A||_F
    is the usual figure of merit.  ``optimum`` is known only for noiseless synthetic data fitted at the true rank
    (the generating factors, loss 0); otherwise None.
    """

    _c = 0.5

    def __init__(self, A, rank, init_scale=None, true_factors=None, is_image=False):
        super().__init__(A, rank, 1.0)
        self.is_image = is_image
        """True when A is a grayscale image (values in [0, 1]): results then show it next to W H."""
        if init_scale is None:
            init_scale = self.default_init_scale(self.target, self.rank)
        self.init_scale = float(init_scale)
        self.true_factors = true_factors
        self._norm_A = float(np.linalg.norm(self.target))

    @staticmethod
    def default_init_scale(A: np.ndarray, rank: int) -> float:
        """2 sqrt(mean(A) / k): then W0, H0 ~ U[0, s) have E[(W0 H0)_ij] = k (s/2)^2 = mean(A)."""
        return 2.0 * float(np.sqrt(max(float(np.mean(A)), np.finfo(float).tiny) / rank))

    @property
    def A(self) -> np.ndarray:
        return self.target

    def initial_point(self, rng):
        """W0, H0 with i.i.d. entries uniform on [0, init_scale) (W0 first, row-major), from the INIT stream."""
        return self.init_scale * rng.random(self.dim)

    def relative_error(self, x) -> float:
        """||A - W H||_F / ||A||_F."""
        return float(np.linalg.norm(self.target - self.reconstruction(x))) / self._norm_A

    @property
    def optimum(self):
        x = self.true_point
        return x if x is not None and self.loss(x) == 0.0 else None


@ProblemSpec.registry.register("nmf")
@dataclass(frozen=True, kw_only=True)
class NMF(ProblemSpec):
    """Non-negative matrix factorization A ~ W H of rank ``rank``.

    ``data: synthetic``: A = max(W* H* + noise * N(0, 1), 0) (m x n) with W* (m x true_rank), H* (true_rank x n)
    uniform on [0, 1) from the DATA stream.  ``data: image``: A = matplotlib's sample photograph (``load_image``,
    600 x 512 grayscale in [0, 1], every ``downsample``-th pixel; ``m``, ``n`` and ``true_rank`` are ignored), plus
    the same clipped noise.  W0, H0 ~ U[0, init_scale) from the INIT stream; by default init_scale =
    2 sqrt(mean(A) / rank), so that W0 H0 has the mean of A.  ``rank`` must be <= min(m, n) of the data.
    """

    data: str = "synthetic"
    m: int = 50
    n: int = 40
    rank: int = 5
    true_rank: int = 5
    noise: float = 0.0
    downsample: int = 1
    init_scale: float | None = None

    def __post_init__(self):
        require(self.data in ("synthetic", "image"), "data", "must be one of synthetic, image", self.data)
        require(self.m >= 1, "m", "must be >= 1", self.m)
        require(self.n >= 1, "n", "must be >= 1", self.n)
        require(self.downsample >= 1, "downsample", "must be >= 1", self.downsample)
        m, n = self.shape()
        where = "the synthetic data" if self.data == "synthetic" else f"the image downsampled by {self.downsample}"
        require(1 <= self.rank <= min(m, n), "rank", f"must be in [1, min(m, n) = {min(m, n)}] for {where} "
                f"({m} x {n})", self.rank)
        if self.data == "synthetic":
            require(1 <= self.true_rank <= min(m, n), "true_rank", f"must be in [1, min(m, n) = {min(m, n)}]",
                    self.true_rank)
        require(self.noise >= 0, "noise", "must be >= 0", self.noise)
        require(self.init_scale is None or self.init_scale > 0, "init_scale", "must be > 0 (or null for the "
                "default 2 sqrt(mean(A) / rank))", self.init_scale)

    counts_flops = True

    @property
    def dim(self) -> int:
        """m k + k n: the entries of W and H."""
        return sum(self.shape()) * self.rank

    def memory(self):
        """A (m x n) and the residual and products of a gradient, each m x n."""
        m, n = self.shape()
        return Footprint(32.0 * m * n + 32.0 * self.dim, "problem.m" if self.data == "synthetic" else "problem.rank",
                         self.m if self.data == "synthetic" else self.rank, f"the {m} x {n} data matrix")

    def shape(self) -> tuple[int, int]:
        """(m, n) of the data matrix A."""
        return (self.m, self.n) if self.data == "synthetic" else image_shape(self.downsample)

    def build(self, rng):
        m, n = self.shape()
        if self.data == "synthetic":
            W = rng.random((m, self.true_rank))
            H = rng.random((self.true_rank, n))
            A, factors = W @ H, (W, H)
        else:
            A, factors = load_image(self.downsample), None
        if self.noise > 0:
            A = np.maximum(A + self.noise * rng.standard_normal((m, n)), 0.0)
        return NMFProblem(A, self.rank, self.init_scale, true_factors=factors, is_image=self.data == "image")
