"""A multilayer perceptron (fully connected network) for classification, in numpy.

Layers l = 1..L map sizes[l-1] -> sizes[l] with sizes = (d_in, *hidden, n_classes).  In the column convention
z_l = W_l a_{l-1} + b_l (W_l of shape (sizes[l], sizes[l-1])), a_0 = the input, a_l = h(z_l) for the hidden layers
l < L and the output scores z = z_L (no output activation).  Samples are processed together as rows
(Z_l = A_{l-1} W_l^T + b_l), never one by one in Python.

Losses on the scores z of a sample with label y (one-hot vector e_y), averaged over the samples:

* ``cross_entropy``: C(z, y) = logsumexp(z) - z_y, the softmax cross-entropy; dC/dz = softmax(z) - e_y.
* ``hinge``: C(z, y) = sum_c [ e_yc max(0, 1 - z_c) + (1 - e_yc) max(0, z_c) ], the per-output binary hinge of
  Taylor et al. (2016) with one-hot targets; dC/dz_c = -1[z_c < 1] for c = y and 1[z_c > 0] otherwise (0 at kinks).

Activations h: ``relu`` max(0, z) (h'(0) = 0); ``tanh`` (h' = 1 - tanh^2); ``hard_sigmoid`` clip(z, 0, 1), the
"discrete sigmoid" of Taylor et al. (2016) (h' = 1 on (0, 1), else 0).

Backpropagation for the mean loss over a batch B of m samples: G_L = dC/dZ_L / m (row i: sample i), then for
l = L..1: grad W_l = G_l^T A_{l-1}, grad b_l = sum_i G_l[i], and G_{l-1} = (G_l W_l) * h'(Z_{l-1}).

References: X. Glorot and Y. Bengio (2010), "Understanding the difficulty of training deep feedforward neural
networks", AISTATS (the initialization); G. Taylor, R. Burmeister, Z. Xu, B. Singh, A. Patel and T. Goldstein (2016),
"Training neural networks without gradients: a scalable ADMM approach", ICML (the hinge loss and the hard sigmoid);
Y. LeCun, L. Bottou, Y. Bengio and P. Haffner (1998), "Gradient-based learning applied to document recognition",
Proc. IEEE (MNIST); E. Alpaydin and C. Kaynak (1998), "Optical Recognition of Handwritten Digits", UCI Machine
Learning Repository (scikit-learn's digits).
"""

from __future__ import annotations

import importlib.util

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..budget import Footprint
from ..params import ScenarioError, require, resolve_path
from .base import Problem, ProblemSpec
from .datasets import DIGITS_SAMPLES, check_mnist, load_digits, load_mnist

ACTIVATIONS = ("relu", "tanh", "hard_sigmoid")
LOSSES = ("cross_entropy", "hinge")
DATA = {"digits": (64, 10), "mnist": (784, 10)}
"""Data set -> (input dimension, number of classes)."""


def activate(z: np.ndarray, activation: str) -> np.ndarray:
    """h(z) entrywise: relu max(0, z), tanh, or hard_sigmoid clip(z, 0, 1) (the discrete sigmoid of Taylor et al.)."""
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "tanh":
        return np.tanh(z)
    if activation == "hard_sigmoid":
        return np.clip(z, 0.0, 1.0)
    raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


def hinge_cost(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """C(z, y) entrywise: y max(0, 1 - z) + (1 - y) max(0, z) with one-hot y (Taylor et al. 2016, section 4)."""
    return y * np.maximum(0.0, 1.0 - z) + (1.0 - y) * np.maximum(0.0, z)


def _frozen(a, dtype) -> np.ndarray:
    """A read-only C-contiguous array of ``dtype``; a view when ``a`` already is one (its own flags untouched)."""
    out = np.ascontiguousarray(a, dtype=dtype)
    if out is a or np.may_share_memory(out, a):
        out = out.view()
    out.flags.writeable = False
    return out


class MLPProblem(Problem):
    """f(x) = (1/n) sum_i C(net(x; X_train[i]), y_train[i]), a fully connected network with ``hidden`` layer sizes,
    activation ``activation`` and loss ``loss`` (see the module docstring for the formulas), over the training
    samples; the test samples enter only ``metrics``.

    Parameters x: for each layer l = 1..L in order, W_l (sizes[l] x sizes[l-1], row-major) followed by b_l
    (sizes[l]) when ``bias``; ``unpack``/``pack`` convert.  A minibatch is a vector of training-sample indices drawn
    uniformly with replacement.  ``n_classes`` defaults to the largest label + 1 over train and test.  Non-convex:
    ``smoothness`` and ``optimum`` are None.
    """

    smoothness = None

    def __init__(self, X_train, y_train, X_test, y_test, hidden=(32,), activation="relu", loss="cross_entropy",
                 bias=True, *, n_classes=None):
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.X_train, self.X_test = _frozen(X_train, np.float64), _frozen(X_test, np.float64)
        self.y_train, self.y_test = _frozen(y_train, np.int64), _frozen(y_test, np.int64)
        self.labels = self.y_train
        for X, y, which in ((self.X_train, self.y_train, "train"), (self.X_test, self.y_test, "test")):
            if X.ndim != 2 or y.shape != (len(X),):
                raise ValueError(f"X_{which} must be (n, d) and y_{which} (n,), got {X.shape} and {y.shape}")
            if len(y) and y.min() < 0:
                raise ValueError(f"y_{which} must hold labels >= 0, got {y.min()}")
        if len(self.y_train) == 0 or self.X_test.shape[1] != self.X_train.shape[1]:
            raise ValueError(f"need >= 1 training sample and test samples of the same dimension, got X_train "
                             f"{self.X_train.shape} and X_test {self.X_test.shape}")
        top = int(max(self.y_train.max(), self.y_test.max(initial=0)))
        if n_classes is not None and top >= n_classes:
            raise ValueError(f"labels must be < n_classes = {n_classes}, got {top}")
        self.n_classes = top + 1 if n_classes is None else int(n_classes)
        self.hidden = tuple(int(h) for h in hidden)
        self.sizes = (self.X_train.shape[1], *self.hidden, self.n_classes)
        self.activation, self.loss_kind, self.bias = activation, loss, bool(bias)
        self.n_samples = len(self.y_train)
        self._layout = []  # per layer: (start of W, end of W = start of b, end of b)
        start = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            w_end = start + n_out * n_in
            end = w_end + (n_out if self.bias else 0)
            self._layout.append((start, w_end, end))
            start = end
        self.dim = start

    # parameters
    def unpack(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """[(W_1, b_1), ..., (W_L, b_L)] as views of ``x`` (b_l None without bias)."""
        x = np.asarray(x)
        return [(x[s:w].reshape(n_out, n_in), x[w:e] if self.bias else None)
                for (s, w, e), n_in, n_out in zip(self._layout, self.sizes[:-1], self.sizes[1:])]

    def pack(self, layers) -> np.ndarray:
        """The parameter vector of [(W_1, b_1), ..., (W_L, b_L)] (the inverse of ``unpack``)."""
        parts = []
        for (W, b), n_in, n_out in zip(layers, self.sizes[:-1], self.sizes[1:]):
            parts.append(np.asarray(W, dtype=np.float64).reshape(n_out, n_in).ravel())
            if self.bias:
                parts.append(np.asarray(b, dtype=np.float64).reshape(n_out))
        x = np.concatenate(parts) if parts else np.zeros(0)
        if x.shape != (self.dim,) or len(layers) != len(self.sizes) - 1:
            raise ValueError(f"expected {len(self.sizes) - 1} layers of sizes {self.sizes}")
        return x

    def initial_point(self, rng):
        """Glorot (Xavier) uniform weights W_l ~ U[-r_l, r_l], r_l = sqrt(6 / (sizes[l-1] + sizes[l])) (Glorot and
        Bengio 2010), drawn layer by layer from the INIT stream; biases 0."""
        x = np.zeros(self.dim)
        for W, _ in self.unpack(x):
            r = math.sqrt(6.0 / (W.shape[0] + W.shape[1]))
            W[...] = rng.uniform(-r, r, W.shape)
        return x

    # network pieces
    def act(self, z: np.ndarray) -> np.ndarray:
        """h(z), the hidden activation."""
        return activate(z, self.activation)

    def act_grad(self, z: np.ndarray) -> np.ndarray:
        """h'(z): relu 1[z > 0], tanh 1 - tanh(z)^2, hard_sigmoid 1[0 < z < 1]."""
        if self.activation == "relu":
            return (z > 0).astype(np.float64)
        if self.activation == "tanh":
            return 1.0 - np.tanh(z) ** 2
        return ((z > 0) & (z < 1)).astype(np.float64)

    def _forward(self, x, X):
        """The weights, the layer inputs A_0..A_{L-1} and the pre-activations Z_1..Z_L (rows: samples)."""
        layers = self.unpack(x)
        inputs, pre = [], []
        a = X
        for l, (W, b) in enumerate(layers):
            inputs.append(a)
            z = a @ W.T
            if b is not None:
                z = z + b
            pre.append(z)
            if l < len(layers) - 1:
                a = self.act(z)
        return layers, inputs, pre

    def forward(self, x: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The output scores Z_L (n x n_classes) of the samples X (rows)."""
        return self._forward(x, np.asarray(X, dtype=np.float64))[2][-1]

    def sample_losses(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """C(z_i, y_i) per sample (row of the scores z)."""
        rows = np.arange(len(y))
        if self.loss_kind == "cross_entropy":
            m = z.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(z - m).sum(axis=1))
            return lse - z[rows, y]
        return hinge_cost(z, np.eye(z.shape[1])[y]).sum(axis=1)

    def loss_grad(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dC(z_i, y_i)/dz_i per sample (softmax(z) - e_y, or the hinge subgradient, 0 at the kinks)."""
        rows = np.arange(len(y))
        if self.loss_kind == "cross_entropy":
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            p[rows, y] -= 1.0
            return p
        g = (z > 0).astype(np.float64)
        g[rows, y] = -(z[rows, y] < 1).astype(np.float64)
        return g

    # objective
    def loss(self, x):
        """The mean loss over the training samples."""
        return float(np.mean(self.sample_losses(self.forward(x, self.X_train), self.y_train)))

    def grad(self, x, batch=None):
        """The gradient of the mean loss over the training samples ``batch`` (indices; None: all), by
        backpropagation (module docstring)."""
        X, y = (self.X_train, self.y_train) if batch is None else (self.X_train[batch], self.y_train[batch])
        if len(y) == 0:
            raise ValueError("a minibatch must hold at least one sample")
        layers, inputs, pre = self._forward(x, X)
        out = np.empty(self.dim)
        g = self.loss_grad(pre[-1], y) / len(y)
        for l in range(len(layers) - 1, -1, -1):
            s, w, e = self._layout[l]
            out[s:w] = (g.T @ inputs[l]).ravel()
            if self.bias:
                out[w:e] = g.sum(axis=0)
            if l > 0:
                g = (g @ layers[l][0]) * self.act_grad(pre[l - 1])
        return out

    def sample_batches(self, rng, n_steps, batch_size):
        return rng.integers(0, self.n_samples, (n_steps, batch_size))

    def grad_flops(self):
        """6 n_train sum_l sizes[l-1] sizes[l]: per weight and sample, 2 flops forward (a multiply-add) and 4
        backward (the weight gradient and the back-propagated signal, a multiply-add each)."""
        return 6.0 * self.n_samples * sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    # evaluation
    def predict(self, x: np.ndarray, X: np.ndarray) -> np.ndarray:
        """The predicted labels argmax_c z_c of the samples X."""
        return np.argmax(self.forward(x, X), axis=1)

    def accuracy(self, x: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
        """The fraction of the samples X whose predicted label is y (nan for no samples)."""
        y = np.asarray(y)
        return float(np.mean(self.predict(x, X) == y)) if len(y) else math.nan

    def metrics(self, x):
        """train_accuracy, test_accuracy and test_loss (the mean loss over the test samples)."""
        test_loss = (float(np.mean(self.sample_losses(self.forward(x, self.X_test), self.y_test)))
                     if len(self.y_test) else math.nan)
        return {"train_accuracy": self.accuracy(x, self.X_train, self.y_train),
                "test_accuracy": self.accuracy(x, self.X_test, self.y_test), "test_loss": test_loss}


@ProblemSpec.registry.register("mlp")
@dataclass(frozen=True, kw_only=True)
class MLP(ProblemSpec):
    """Classification of handwritten digits by a multilayer perceptron (``MLPProblem``).

    ``data: digits``: scikit-learn's bundled 8 x 8 digits (1,797 samples, 64 pixels / 16 in [0, 1], 10 classes),
    split at random by the DATA stream: ceil(test_fraction * 1797) test samples, the rest for training.
    ``data: mnist``: MNIST's 60,000 training and 10,000 test images (784 pixels / 255) from the four IDX files in the
    directory ``path`` (relative to the scenario file; nothing is downloaded).  ``n_train``/``n_test`` keep the
    first samples only.  ``hidden`` are the hidden layer sizes (empty: softmax regression); x_0 is Glorot uniform.
    """

    data: str = "digits"
    path: str | None = None
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    loss: str = "cross_entropy"
    bias: bool = True
    test_fraction: float = 0.25
    n_train: int | None = None
    n_test: int | None = None
    counts_flops = True
    recorded = ("train_accuracy", "test_accuracy", "test_loss")

    def __post_init__(self):
        require(self.data in DATA, "data", f"must be one of {', '.join(DATA)}", self.data)
        if self.data == "mnist":
            require(self.path is not None, "path", "is required for data mnist (a directory holding MNIST's four IDX "
                    "files)", self.path)
            resolved = resolve_path(self.path)
            require(resolved.is_dir(), "path", "must be an existing directory holding MNIST's IDX files", self.path)
            object.__setattr__(self, "path", str(resolved))
        else:
            require(self.path is None, "path", f"must be null for data {self.data} (the data ship with "
                    "scikit-learn)", self.path)
            require(importlib.util.find_spec("sklearn") is not None, "data", "needs scikit-learn for digits, which "
                    "is not installed: python -m pip install scikit-learn (or the datasets extra)", self.data)
        hidden = self.hidden
        require(isinstance(hidden, (list, tuple)), "hidden", "must be a list of layer sizes", hidden)
        for i, h in enumerate(hidden):
            require(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1, f"hidden[{i}]",
                    "must be an integer >= 1", h)
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        require(self.activation in ACTIVATIONS, "activation", f"must be one of {', '.join(ACTIVATIONS)}",
                self.activation)
        require(self.loss in LOSSES, "loss", f"must be one of {', '.join(LOSSES)}", self.loss)
        require(isinstance(self.bias, bool), "bias", "must be true or false", self.bias)
        require(0 < self.test_fraction < 1, "test_fraction", "must be in (0, 1)", self.test_fraction)
        n_test, n_train = self._digits_split()
        for name, n, limit in (("n_train", self.n_train, n_train), ("n_test", self.n_test, n_test)):
            require(n is None or n >= 1, name, "must be >= 1", n)
            if self.data == "digits":
                require(n is None or n <= limit, name, f"must be <= the {limit} digits samples of the split "
                        f"(test_fraction {self.test_fraction})", n)
        if self.data == "mnist":  # the files' headers and labels, so that a run cannot fail on them later
            object.__setattr__(self, "_samples", check_mnist(self.path, self.n_train, self.n_test))

    @property
    def labelled_samples(self):
        return self.samples[0]

    @property
    def samples(self) -> tuple[int, int]:
        """(training, test) samples the problem will hold."""
        if self.data == "mnist":
            return self._samples
        n_test, n_train = self._digits_split()
        return (n_train if self.n_train is None else self.n_train, n_test if self.n_test is None else self.n_test)

    def memory(self):
        """The images as float64, and the activations of a full pass over the training set (loss and gradient)."""
        train, test = self.samples
        sizes = self.sizes
        images, passes = 16.0 * (train + test) * sizes[0], 24.0 * train * sum(sizes[1:])
        total = images + passes + 16.0 * self.dim
        if passes > images:
            return Footprint(total, "problem.hidden", list(self.hidden), f"{train} samples through layers {sizes}")
        return Footprint(total, "problem.n_train", self.n_train, f"{train + test} images of {sizes[0]} pixels")

    def _digits_split(self) -> tuple[int, int]:
        """(test, train) sample counts of the digits split."""
        n_test = min(DIGITS_SAMPLES - 1, max(1, math.ceil(self.test_fraction * DIGITS_SAMPLES)))
        return n_test, DIGITS_SAMPLES - n_test

    @property
    def sizes(self) -> tuple[int, ...]:
        """(d_in, *hidden, n_classes) of the data set."""
        d_in, n_classes = DATA[self.data]
        return (d_in, *self.hidden, n_classes)

    @property
    def dim(self) -> int:
        """The number of parameters: sum_l sizes[l] (sizes[l-1] + bias)."""
        s = self.sizes
        return sum(b * (a + int(self.bias)) for a, b in zip(s[:-1], s[1:]))

    def build(self, rng):
        if self.data == "mnist":
            X_train, y_train, X_test, y_test = load_mnist(Path(self.path), self.n_train, self.n_test)
        else:
            X, y = load_digits()
            n_test, _ = self._digits_split()
            order = rng.permutation(len(y))
            test, train = order[:n_test], order[n_test:]
            X_train, y_train, X_test, y_test = X[train], y[train], X[test], y[test]
            X_train, y_train = X_train[:self.n_train], y_train[:self.n_train]
            X_test, y_test = X_test[:self.n_test], y_test[:self.n_test]
        d_in, n_classes = DATA[self.data]
        for X, y, which in ((X_train, y_train, "training"), (X_test, y_test, "test")):
            if self.data == "mnist" and X.shape[1] != d_in or (len(y) and not 0 <= y.min() <= y.max() < n_classes):
                raise ScenarioError(f"problem.path: MNIST {which} images must have {d_in} pixels and labels in "
                                    f"0..{n_classes - 1}, got {X.shape[1]} pixels and labels {y.min()}..{y.max()} "
                                    f"in {self.path!r}")
        return MLPProblem(X_train, y_train, X_test, y_test, self.hidden, self.activation, self.loss, self.bias,
                          n_classes=n_classes)
