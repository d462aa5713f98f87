"""Reading the user's files: one safe YAML loader (scenarios, studies, reproduction definitions, ``--set`` values)
and text files (delay logs, compute traces), each failing with one line that names the file and what is wrong.

The YAML loader is PyYAML's SafeLoader with four changes:

- ``1e-3`` and ``1e4`` are floats (YAML 1.1 wants a dot: ``1.0e-3``);
- a key given twice in one mapping is an error (the last one would silently win), merge keys (``<<``) aside;
- nesting deeper than :data:`MAX_DEPTH` levels is an error (a deeply nested file would exhaust the stack);
- aliases may not expand the document beyond :data:`MAX_NODES` values ("billion laughs": a few lines of nested
  aliases that stand for billions of values), and an alias may not contain itself.

Text files are at most :data:`MAX_TEXT_BYTES`, UTF-8 (a byte-order mark is dropped), and an empty file, a
directory, a missing or unreadable file and a binary file each get their own message.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .params import ScenarioError

MAX_DEPTH = 64
"""Deepest nesting of YAML collections (a scenario needs fewer than ten)."""
MAX_NODES = 1_000_000
"""Most values a YAML document may stand for once its aliases are expanded."""
MAX_TEXT_BYTES = 64 * 2**20
"""Largest YAML or text file read (64 MiB)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader with floats like ``1e-3``, no duplicate keys, bounded depth and bounded alias expansion."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels",
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
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ScenarioError(f"{source}: invalid YAML{where}: {problem}") from None


def read_text(path: str | Path, what: str) -> str:
    """The text of the file at ``path`` (``what`` names it in messages, e.g. ``scenario file`` or
    ``protocol.path``): UTF-8, a byte-order mark dropped, at most MAX_TEXT_BYTES; one line for each way it fails."""
    p = Path(path)
    name = repr(str(p))
    if p.is_dir():
        raise ScenarioError(f"{what} {name} is a directory, not a file")
    if not p.exists():
        raise ScenarioError(f"{what} {name} not found")
    try:
        size = p.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise ScenarioError(f"{what} {name} is {size:,} bytes; at most {MAX_TEXT_BYTES:,} are read")
        raw = p.read_bytes()
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
    text = read_text(path, what)
    data = parse_yaml(text, str(path))
    if data is None:
        raise ScenarioError(f"{what} {str(path)!r} is empty")
    return data
