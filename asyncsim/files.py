"""Reading the user's files: one safe YAML loader (scenarios, studies, reproduction definitions, ``--set`` values)
and text files (delay logs, compute traces), each failing with one line that names the file and what is wrong.

The YAML loader is PyYAML's SafeLoader with these changes:

- ``1e-3`` and ``1e4`` are floats (YAML 1.1 wants a dot: ``1.0e-3``);
- a key given twice in one mapping is an error (the last one would silently win), merge keys (``<<``) aside;
- nesting deeper than :data:`MAX_DEPTH` levels is an error (a deeply nested file would exhaust the stack);
- a document may hold at most :data:`MAX_NODES` values, counted as they are read, and its aliases may not expand
  it beyond that ("billion laughs": a few lines of nested aliases that stand for billions of values), nor contain
  themselves;
- only plain values: the tags for timestamps, binary data, sets and ordered pairs are errors (a scenario is
  numbers, strings, booleans, lists and mappings).

A YAML file is at most :data:`MAX_YAML_BYTES` (PyYAML reads about a megabyte a second), another text file (a delay
log, a compute trace) at most :data:`MAX_TEXT_BYTES`.  Text is UTF-8 (a byte-order mark is dropped), and an empty
file, a directory, a device or pipe, a missing or unreadable file and a binary file each get their own message.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from .params import ScenarioError

MAX_DEPTH = 64
"""Deepest nesting of YAML collections (a scenario needs fewer than ten)."""
MAX_NODES = 100_000
"""Most values a YAML document may hold, its aliases expanded (a calibrated scenario of 64 workers holds 70,000)."""
MAX_YAML_BYTES = 2 * 2**20
"""Largest YAML file read (2 MiB)."""
MAX_TEXT_BYTES = 64 * 2**20
"""Largest other text file read (64 MiB)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with floats like ``1e-3``, no duplicate keys, bounded depth and bounded alias expansion."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        self._nodes += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels",
                                                  self.peek_event().start_mark)
            if self._nodes > MAX_NODES:
                raise yaml.composer.ComposerError(None, None, f"more than {MAX_NODES:,} values in one document",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node)
        return node

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeConstructor reports it
                    continue
                if first is not key_node:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first.start_mark.line + 1}); "
                        "give each key once", key_node.start_mark)
        return super().construct_mapping(node, deep)


def _plain_only(loader, node):
    raise yaml.constructor.ConstructorError(None, None, f"tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not "
                                            "allowed here (plain numbers, strings, booleans, lists and mappings only)",
                                            node.start_mark)


for _tag in ("timestamp", "binary", "set", "omap", "pairs"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _plain_only)

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def _expanded_size(root) -> int:
    """The number of values the node graph stands for with its aliases expanded (shared nodes counted each time
    they are used), computed once per node; raise on a node that contains itself or on more than MAX_NODES."""
    sizes: dict[int, int] = {}
    busy: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in busy:
            raise yaml.composer.ComposerError(None, None, "an alias refers to a collection that contains it",
                                              node.start_mark)
        busy.add(key)
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        busy.discard(key)
        if total > MAX_NODES:
            raise yaml.composer.ComposerError(None, None, f"aliases expand the document to more than {MAX_NODES:,} "
                                              "values", node.start_mark)
        sizes[key] = total
        return total

    return size(root)


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text`` (named ``source`` in messages) with the loader above; one line on error."""
    if len(text) > MAX_YAML_BYTES:
        raise ScenarioError(f"{source}: {len(text):,} characters of YAML; at most {MAX_YAML_BYTES:,} are read")
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError(f"{source}: invalid YAML{where}: {problem}") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise ScenarioError(f"{source}: invalid YAML: a number of more than {sys.get_int_max_str_digits()} digits"
                            if "digits" in str(err) else f"{source}: invalid YAML: {' '.join(str(err).split())[:200]}"
                            ) from None


def read_text(path: str | Path, what: str, limit: int = MAX_TEXT_BYTES) -> str:
    """The text of the file at ``path`` (``what`` names it in messages, e.g. ``scenario file`` or
    ``protocol.path``): UTF-8, a byte-order mark dropped, at most ``limit`` bytes; one line for each way it fails."""
    p = Path(path)
    name = repr(str(p))
    if p.is_dir():
        raise ScenarioError(f"{what} {name} is a directory, not a file")
    if not p.exists():
        raise ScenarioError(f"{what} {name} not found")
    if not p.is_file():
        raise ScenarioError(f"{what} {name} is not a regular file (a device, a pipe or a socket)")
    try:
        size = p.stat().st_size
        if size > limit:
            raise ScenarioError(f"{what} {name} is {size:,} bytes; at most {limit:,} are read")
        with open(p, "rb") as f:
            raw = f.read(limit + 1)  # the size may change under us: never more than the limit
        if len(raw) > limit:
            raise ScenarioError(f"{what} {name} is more than {limit:,} bytes; at most {limit:,} are read")
    except OSError as err:
        raise ScenarioError(f"{what} {name} cannot be read ({err.strerror or err})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{what} {name} is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}): "
                            "is it a binary file?") from None
    if "\x00" in text:
        raise ScenarioError(f"{what} {name} is not text (it holds NUL bytes): is it a binary file?")
    return text


def load_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in the file at ``path`` (``read_text``, then ``parse_yaml``); an empty file (nothing but
    comments and blank lines) is an error."""
    text = read_text(path, what, MAX_YAML_BYTES)
    data = parse_yaml(text, str(path))
    if data is None:
        raise ScenarioError(f"{what} {str(path)!r} is empty")
    return data
