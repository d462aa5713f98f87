"""Parameter validation and typed construction of frozen dataclasses from plain mappings.

Every user-facing parameter error is one sentence naming the parameter, the rule and the value given, in the style
of scikit-learn's parameter validation: ``lr must be > 0, got -0.1``.  When a dataclass is built from a scenario
file, the YAML path is put in front: ``algorithm.lr must be > 0, got -0.1``.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_BASE_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("base_dir", default=None)


class ParamError(ValueError):
    """A bad parameter value; the message starts with the parameter's name."""


class ScenarioError(ValueError):
    """A bad scenario: one line naming the YAML path, the rule and the value given."""


def require(ok: bool, name: str, rule: str, got: Any) -> None:
    """Raise ``ParamError("<name> <rule>, got <got>")`` unless ``ok``."""
    if not ok:
        raise ParamError(f"{name} {rule}, got {got!r}")


class Registry:
    """Named implementations of one base class (problems, algorithms, delay laws, protocols).

    ``@registry.register("name")`` adds a frozen dataclass; scenario files pick it with ``kind: name``.  Users can
    register their own classes from a notebook without editing the package.
    """

    def __init__(self, what: str):
        self.what = what
        self._by_kind: dict[str, type] = {}

    def register(self, kind: str):
        def add(cls: type) -> type:
            if kind in self._by_kind and self._by_kind[kind] is not cls:
                raise ValueError(f"{self.what} kind {kind!r} is already registered")
            self._by_kind[kind] = cls
            return cls

        return add

    def unregister(self, kind: str) -> None:
        """Remove a registration (a test's, or a notebook cell's that defines its class again)."""
        del self._by_kind[kind]

    def get(self, kind: str, path: str = "kind") -> type:
        if not isinstance(kind, str) or kind not in self._by_kind:
            raise ScenarioError(f"{path} must be one of {', '.join(self.kinds())}; got {kind!r}")
        return self._by_kind[kind]

    def kind_of(self, cls: type) -> str:
        for kind, c in self._by_kind.items():
            if c is cls:
                return kind
        raise KeyError(f"{cls.__name__} is not a registered {self.what}")

    def kinds(self) -> list[str]:
        return sorted(self._by_kind)

    def items(self) -> list[tuple[str, type]]:
        """(kind, class) pairs in registration order."""
        return list(self._by_kind.items())


@contextlib.contextmanager
def relative_to(directory: str | Path):
    """Resolve relative file paths in parameters (``resolve_path``) against ``directory`` (a scenario file's)."""
    token = _BASE_DIR.set(Path(directory))
    try:
        yield
    finally:
        _BASE_DIR.reset(token)


def resolve_path(path: str | Path) -> Path:
    """An absolute path: relative paths are taken from the directory of the scenario file being loaded (see
    ``relative_to``), or from the working directory."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (_BASE_DIR.get() or Path.cwd()) / p
    return p.resolve()


def kind(obj: Any) -> str:
    """The registered ``kind`` name of a registered object (``kind(SGD(lr=0.1)) == "sgd"``)."""
    return type(obj).registry.kind_of(type(obj))


MAX_INT = 2**63 - 1
"""The largest integer a scenario may give (numpy's int64): counts, sizes and seeds."""


def _short(value: int) -> str:
    digits = str(value)
    return digits if len(digits) <= 30 else f"{digits[:12]}...{digits[-6:]} ({len(digits)} digits)"


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def build(tp: Any, value: Any, path: str) -> Any:
    """Convert the plain YAML value ``value`` to type ``tp``, or raise ``ScenarioError`` naming ``path``.

    Supported types: ``int``, ``float``, ``bool``, ``str``, ``X | None``, ``tuple[X, ...]``, dataclasses (built
    field by field) and base classes with a ``registry`` attribute (chosen by the mapping's ``kind`` key).
    """
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) == len(typing.get_args(tp)):  # no None among the alternatives
                raise ScenarioError(f"{path} must not be null, got null")
            return None
        # ``law | tuple[law, ...]``: a list picks the tuple alternative, anything else the first other one
        listy = [a for a in args if typing.get_origin(a) is tuple]
        if listy and isinstance(value, (list, tuple)):
            return build(listy[0], value, path)
        return build(next((a for a in args if a not in listy), args[0]), value, path)
    if origin is tuple:
        (item,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if not isinstance(value, (list, tuple)):
            raise ScenarioError(f"{path} must be a list, got {_describe(value)}")
        return tuple(build(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{path} must be true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{path} must be an integer, got {_describe(value)}")
        if not -MAX_INT <= value <= MAX_INT:
            raise ScenarioError(f"{path} must be an integer of at most 2**63 - 1 in size, got {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{path} must be a number, got {_describe(value)}")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise ScenarioError(f"{path} must be finite, got {_short(value)}")
        if not math.isfinite(value):
            raise ScenarioError(f"{path} must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{path} must be a string, got {_describe(value)}")
        return value
    registry = getattr(tp, "registry", None)
    if isinstance(registry, Registry):
        if not isinstance(value, Mapping):
            raise ScenarioError(f"{path} must be a mapping with a 'kind' key, got {_describe(value)}")
        if "kind" not in value:
            raise ScenarioError(f"{_join(path, 'kind')} is required (one of {', '.join(registry.kinds())})")
        cls = registry.get(value["kind"], _join(path, "kind"))
        return build_dataclass(cls, {k: v for k, v in value.items() if k != "kind"}, path)
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    raise TypeError(f"no rule to build {tp!r} (at {path})")


def build_dataclass(cls: type, value: Any, path: str) -> Any:
    """Build the frozen dataclass ``cls`` from a mapping, checking keys, types and the class's own rules."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ScenarioError(f"{path or 'the scenario'} must be a mapping, got {_describe(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            allowed = ", ".join(sorted(fields)) or "none"
            raise ScenarioError(f"{_join(path, str(key))} is not a known key (allowed: {allowed})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = build(hints[name], value[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ScenarioError(f"{_join(path, name)} is required")
    try:
        return cls(**kwargs)
    except ParamError as err:
        raise ScenarioError(_join(path, str(err))) from None


OPTIONAL = "asyncsim.optional"
"""Field metadata: a field added after results were written, left out of :func:`to_plain` while it has its
default, so scenarios that do not use it keep their bytes (scenario.yaml) and their study keys."""


def optional(default=None):
    """A dataclass field that :func:`to_plain` leaves out while it equals ``default`` (``OPTIONAL``)."""
    return dataclasses.field(default=default, metadata={OPTIONAL: True})


def to_plain(obj: Any) -> Any:
    """The inverse of :func:`build`: a resolved dataclass tree as plain YAML-ready values (with ``kind`` keys)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        registry = getattr(type(obj), "registry", None)
        if isinstance(registry, Registry):
            out["kind"] = kind(obj)
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.init and not (f.metadata.get(OPTIONAL) and value == f.default):
                out[f.name] = to_plain(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
