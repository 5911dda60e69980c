"""The one YAML loader of configuration files and values: safe, YAML 1.2 floats, bounded in size.

``yaml.safe_load`` reads YAML 1.1, where ``1e-3`` is a string, and expands aliases without limit
(a 1 KB "billion laughs" document stands for billions of values). :func:`load_yaml` reads
scientific notation as floats, refuses a document that stands for more than :data:`MAX_VALUES`
values or nests deeper than :data:`MAX_DEPTH` levels, and reports every problem as one
:class:`ConfigError` line with its position. :func:`dump_yaml` writes what it reads back unchanged.
"""

from __future__ import annotations

import os
import re
import stat
from typing import Any, cast

import yaml
from yaml.composer import ComposerError
from yaml.nodes import Node

from callbacks.exceptions import ConfigError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_VALUES", "dump_yaml", "load_yaml", "read_yaml_file"]

MAX_FILE_BYTES = 1 << 20
"""The largest YAML file :func:`read_yaml_file` reads: a configuration is a small text file."""

MAX_VALUES = 100_000
"""The most values (scalars, lists and mappings, an alias counting as all it stands for) a document may hold."""

MAX_DEPTH = 100
"""The deepest nesting of lists and mappings a document may have."""

_FLOAT_TAG = "tag:yaml.org,2002:float"
_SCIENTIFIC = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
"""Floats YAML 1.1 reads as strings: an exponent without a sign or without a decimal point (``1e-3``, ``1E5``)."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that resolves ``1e-3`` as a float and counts the values it composes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}  # values an anchored node stands for, by id

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:  # its anchor is still open: the alias stands inside what it names
                raise _error(f"the alias *{event.anchor} refers to itself", event)
            self._count(size, event)
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _error(f"lists and mappings nest deeper than {MAX_DEPTH} levels", event)
        start = self._values
        self._count(1, event)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if event.anchor is not None:
            self._sizes[id(node)] = self._values - start
        return node

    def _count(self, values: int, event: yaml.Event) -> None:
        self._values += values
        if self._values > MAX_VALUES:
            raise _error(f"the document stands for more than {MAX_VALUES} values (aliases included)", event)


def _error(problem: str, event: yaml.Event) -> ComposerError:
    """A composer error at ``event``, reported by :func:`load_yaml` with its line and column."""
    return ComposerError(None, None, problem, cast("yaml.error.Mark", event.start_mark))


class _Dumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that quotes the strings :class:`_Loader` would read as floats."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver(_FLOAT_TAG, _SCIENTIFIC, list("-+0123456789."))


def load_yaml(text: str, path: str = "") -> Any:
    """Parse one YAML document from ``text`` safely, reading ``1e-3`` as a float.

    Args:
        text: The YAML text.
        path: Where the text comes from (a file, ``--set key``), the path of an error. Defaults to ``""``.

    Raises:
        ConfigError: Malformed YAML (with its line and column), more than :data:`MAX_VALUES` values
            or nesting deeper than :data:`MAX_DEPTH`.

    Example:
        >>> load_yaml("lr: 1e-3\\nsizes: [1E5, .5e-3, 10]")
        {'lr': 0.001, 'sizes': [100000.0, 0.0005, 10]}
    """
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "malformed"
        if exc.problem and exc.context and exc.context_mark:  # e.g. "while parsing a block mapping"
            what += f" ({exc.context} from line {exc.context_mark.line + 1})"
        raise ConfigError(f"invalid YAML{where}: {what}", path) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(" ".join(f"invalid YAML: {exc}".split()), path) from exc


def read_yaml_file(path: str | os.PathLike[str]) -> Any:
    """Read the YAML file at ``path`` with :func:`load_yaml`.

    Raises:
        ConfigError: The file is missing, not a regular file (a FIFO, a directory), unreadable,
            larger than :data:`MAX_FILE_BYTES` or not UTF-8 text, or its YAML is malformed or too
            large; the error's path is the file's.
    """
    path = os.fspath(path)
    try:
        # opened without blocking, so that a FIFO or a device is refused instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read the file ({exc.strerror})", path) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise ConfigError(f"{kind}; a configuration is read from a regular file", path)
    with open(fd, "rb") as f:
        try:
            content = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the file ({exc.strerror})", path) from exc
    if len(content) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES} bytes; a configuration is a small text file", path)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text: line {line} holds the byte {content[exc.start]:#04x}", path) from exc
    return load_yaml(text, path)


def dump_yaml(data: Any) -> str:
    """``data`` as YAML text (block style, keys in their order) that :func:`load_yaml` reads back unchanged.

    Example:
        >>> dump_yaml({"lr": 0.001, "tag": "1e3"})
        "lr: 0.001\\ntag: '1e3'\\n"
    """
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False)
