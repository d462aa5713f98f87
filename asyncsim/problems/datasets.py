"""Classification data sets read from local files only (never downloaded).

* ``load_digits()``: scikit-learn's bundled 8 x 8 handwritten digits, 1,797 samples of 64 pixels in 0..16 and labels
  0..9 (the test set of the UCI "Optical Recognition of Handwritten Digits" data, Alpaydin and Kaynak 1998), shipped
  inside scikit-learn (the optional ``datasets`` extra).
* ``load_mnist(directory)``: MNIST (LeCun, Bottou, Bengio and Haffner 1998, "Gradient-based learning applied to
  document recognition", Proc. IEEE 86(11)) from its four IDX files in a local directory.
* ``read_idx`` / ``write_idx``: the IDX format of the MNIST files (LeCun et al., http://yann.lecun.com/exdb/mnist/):
  two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), a byte
  with the number of dimensions, one big-endian uint32 per dimension, then the data, big-endian, row-major.

Errors are one-line :class:`~asyncsim.params.ScenarioError` messages naming the file or the missing package.
"""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..params import ScenarioError

IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
"""IDX type byte -> big-endian numpy dtype."""

MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")
"""MNIST's four files (each may also be gzipped, with ``.gz`` appended): training images and labels (60,000),
test images and labels (10,000)."""

DIGITS_SAMPLES = 1797
"""Samples in scikit-learn's digits."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: X (1797, 64) float64 = pixels / 16 in [0, 1], y (1797,) int64 labels 0..9,
    both read-only (cached per process).  Needs scikit-learn (the ``datasets`` extra); nothing is
    downloaded."""
    try:
        from sklearn import datasets
    except ImportError:
        raise ScenarioError("problem.data needs scikit-learn for digits, which is not installed: python -m pip "
                            "install scikit-learn (or the datasets extra)") from None
    return _digits(datasets.load_digits)


@lru_cache(maxsize=1)
def _digits(sklearn_digits) -> tuple[np.ndarray, np.ndarray]:
    bunch = sklearn_digits()
    X = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    return _readonly(X), _readonly(y)


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ScenarioError(f"cannot read IDX file {str(path)!r}: {err.strerror or err}") from None
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            msg = " ".join(str(err).split())
            raise ScenarioError(f"IDX file {str(path)!r} is not a valid gzip file ({msg})") from None
    return raw


def _header(path: Path, stream) -> tuple[np.dtype, tuple[int, ...]]:
    """The dtype and shape of the IDX file open as ``stream`` (left at the start of the data)."""
    head = stream.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise ScenarioError(f"IDX file {str(path)!r} has a bad magic number {head.hex() or 'none'} "
                            "(expected two zero bytes, a type byte and a dimension count)")
    code, ndim = head[2], head[3]
    if code not in IDX_TYPES:
        raise ScenarioError(f"IDX file {str(path)!r} has an unknown type byte 0x{code:02X} (expected one of "
                            f"{', '.join(f'0x{c:02X}' for c in IDX_TYPES)})")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise ScenarioError(f"IDX file {str(path)!r} is truncated: {ndim} dimensions need a {4 + 4 * ndim}-byte "
                            f"header, found {4 + len(dims)} bytes")
    dtype, shape = IDX_TYPES[code], struct.unpack(f">{ndim}I", dims)
    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if declared > MAX_IDX_BYTES:
        raise ScenarioError(f"IDX file {str(path)!r} declares {declared:,} bytes of data (shape {shape}); at most "
                            f"{MAX_IDX_BYTES:,} are read")
    return dtype, shape


MAX_IDX_BYTES = 2**31
"""The most data an IDX file may declare (MNIST's training images are 47 MB)."""


def _check_length(path: Path, shape: tuple[int, ...], dtype: np.dtype, found: int) -> int:
    """The bytes of data the shape needs, which must be what the file holds."""
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if found != expected:
        what = "truncated" if found < expected else "longer than its dimensions say"
        raise ScenarioError(f"IDX file {str(path)!r} is {what}: shape {shape} of {dtype.name} needs {expected} "
                            f"bytes of data, found {found}")
    return expected


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzipped or not: gzip is recognized by its magic bytes), in native byte
    order.  A bad magic number, an unknown type byte or a data size that does not match the dimensions raises
    ScenarioError naming the file."""
    path = Path(path)
    raw = _read_bytes(path)
    stream = io.BytesIO(raw)
    dtype, shape = _header(path, stream)
    header = stream.tell()
    expected = _check_length(path, shape, dtype, len(raw) - header)
    data = np.frombuffer(raw, dtype=dtype, offset=header, count=expected // dtype.itemsize)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def write_idx(path: str | Path, array) -> Path:
    """Write ``array`` as an IDX file (gzipped when the name ends with ``.gz``); the inverse of ``read_idx``.
    Supported dtypes: uint8, int8, int16, int32, float32, float64 (bool is written as uint8)."""
    path = Path(path)
    a = np.asarray(array)
    if a.dtype == np.bool_:
        a = a.astype(np.uint8)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    code = codes.get(a.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX has no type for dtype {a.dtype} (supported: uint8, int8, int16, int32, float32, "
                         "float64)")
    if a.ndim > 255 or any(s >= 2**32 for s in a.shape):
        raise ValueError(f"IDX cannot hold an array of shape {a.shape}")
    blob = (bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
            + np.ascontiguousarray(a, dtype=IDX_TYPES[code]).tobytes())
    path.write_bytes(gzip.compress(blob, mtime=0) if path.name.endswith(".gz") else blob)
    return path


def idx_shape(path: str | Path) -> tuple[int, ...]:
    """The shape an IDX file declares, checked against the length of its data (streamed, so nothing large is
    held; gzip is decompressed on the fly).  The same errors as ``read_idx``."""
    path = Path(path)
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
        stream = gzip.open(path, "rb") if gz else open(path, "rb")
    except OSError as err:
        raise ScenarioError(f"cannot read IDX file {str(path)!r}: {err.strerror or err}") from None
    try:
        with stream:
            dtype, shape = _header(path, stream)
            found = 0
            while chunk := stream.read(1 << 22):
                found += len(chunk)
    except (OSError, EOFError, zlib.error) as err:
        msg = " ".join(str(err).split())
        if not gz:
            raise ScenarioError(f"cannot read IDX file {str(path)!r}: {msg}") from None
        raise ScenarioError(f"IDX file {str(path)!r} is not a valid gzip file ({msg})") from None
    _check_length(path, shape, dtype, found)
    return shape


def check_mnist(directory: str | Path, n_train: int | None = None, n_test: int | None = None) -> tuple[int, int]:
    """Check MNIST's four files in ``directory`` as ``load_mnist`` would, without loading the images (headers and
    data lengths, labels in 0..9); return the numbers of training and test samples the problem will hold."""
    directory = Path(directory)
    counts = []
    for images_name, labels_name, n, which in ((MNIST_FILES[0], MNIST_FILES[1], n_train, "train"),
                                               (MNIST_FILES[2], MNIST_FILES[3], n_test, "test")):
        images_path, labels_path = _find(directory, images_name), _find(directory, labels_name)
        shape = idx_shape(images_path)
        _check_pair(images_path, labels_path, shape, idx_shape(labels_path))  # before reading any labels
        labels = read_idx(labels_path)
        if shape[0] == 0:
            raise ScenarioError(f"problem.path: MNIST file {str(images_path)!r} holds no images")
        _check_count(n, shape[0], which, directory)
        labels = labels[:n]
        pixels = int(np.prod(shape[1:]))
        if pixels != 784 or (len(labels) and not 0 <= labels.min() <= labels.max() < 10):
            raise ScenarioError(f"problem.path: MNIST {'training' if which == 'train' else which} images must have 784 "
                                f"pixels and labels in 0..9, got {pixels} pixels and labels {labels.min()}.."
                                f"{labels.max()} in {str(directory)!r}")
        counts.append(len(labels))
    return counts[0], counts[1]


def _check_count(n: int | None, available: int, which: str, directory: Path) -> None:
    if n is not None and not 1 <= n <= available:
        raise ScenarioError(f"problem.n_{which} must be in [1, {available}] (the {which} images in "
                            f"{str(directory)!r}), got {n}")


def _check_pair(images_path: Path, labels_path: Path, shape: tuple[int, ...], labels: tuple[int, ...]) -> None:
    """Images of 3 dimensions, and one label per image (``labels``: the shape of the labels)."""
    if len(shape) != 3:
        raise ScenarioError(f"MNIST file {str(images_path)!r} must hold images (3 dimensions), got shape {shape}")
    if len(labels) != 1 or labels[0] != shape[0]:
        raise ScenarioError(f"MNIST file {str(labels_path)!r} must hold one label per image ({shape[0]}), got "
                            f"shape {labels}")


def _find(directory: Path, name: str) -> Path:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise ScenarioError(f"problem.path: MNIST file {name} (or {name}.gz) not found in {str(directory)!r}")


def _images_labels(directory: Path, images_name: str, labels_name: str, n: int | None, which: str):
    images_path, labels_path = _find(directory, images_name), _find(directory, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    _check_pair(images_path, labels_path, images.shape, labels.shape)
    _check_count(n, len(images), which, directory)
    images, labels = images[:n], labels[:n]
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return X, labels.astype(np.int64)


def load_mnist(directory: str | Path, n_train: int | None = None, n_test: int | None = None):
    """MNIST from the four IDX files in ``directory`` (``MNIST_FILES``, each plain or ``.gz``):
    (X_train, y_train, X_test, y_test), images flattened row by row to rows of 784 = 28 x 28 float64 pixels / 255
    in [0, 1], labels int64; only the first ``n_train`` training and ``n_test`` test images when given.  A missing
    file raises ScenarioError naming it and the directory; nothing is downloaded."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ScenarioError(f"problem.path: MNIST directory {str(directory)!r} does not exist")
    X_train, y_train = _images_labels(directory, MNIST_FILES[0], MNIST_FILES[1], n_train, "train")
    X_test, y_test = _images_labels(directory, MNIST_FILES[2], MNIST_FILES[3], n_test, "test")
    return X_train, y_train, X_test, y_test
