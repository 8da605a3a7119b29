"""The one hardened YAML reader of the bench, and located errors for every file kind.

Every loader (scenarios, calibration configs, rig sessions, rig descriptions) reads its file
through :func:`read_yaml` (or :func:`parse_yaml` for text it already holds) and reports its
problems as :class:`Issue` objects, ``FILE:LINE: field.path: message``, collected by a
:class:`Collector` and raised together as one :class:`FileValidationError`. The reader
defends against hostile files before any of their content is interpreted:

* **size** -- files larger than ``max_bytes`` (default 1 MiB; the largest shipped scenario
  is 15 kB) are refused without being read whole;
* **encoding** -- the bytes must be UTF-8 text: a UTF-16/32 byte-order mark, a NUL byte or an
  invalid UTF-8 sequence gives ``FILE: not UTF-8 text (byte 0x.. at offset N)``;
* **nesting depth** and **alias expansion** -- the event stream is scanned once, without
  recursion and without building anything, counting the nesting depth and the number of
  nodes the document would have with every alias expanded (anchors are sized once, so the
  scan is linear in the file and runs in bounded memory). A "billion laughs" anchor bomb or a
  document nested thousands deep is refused at the line of the offending alias or node;
* **duplicate keys** -- refused, naming both lines (YAML would silently keep the last one);
* **line numbers** -- every node's line is recorded under its field path
  (``("methods", 1, "params", "window")``), so schema errors are located too.

Only then is the document built (PyYAML's safe constructor; libyaml's parser when it is
installed). Names that become files or folders are checked by :func:`check_name`: a name is
a path component, never a path.
"""

from __future__ import annotations

import codecs
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.errors import ScenarioError

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "NAME_RULE",
    "Collector",
    "FileValidationError",
    "Issue",
    "YamlDocument",
    "check_name",
    "fmt_path",
    "parse_yaml",
    "pydantic_issues",
    "read_text",
    "read_yaml",
    "valid_keys_hint",
]

#: Largest YAML file the bench reads, bytes.
MAX_BYTES = 2**20
#: Deepest nesting of mappings and sequences accepted (the shipped files use 6).
MAX_DEPTH = 40
#: Most nodes a document may have with every alias expanded (the largest shipped file has
#: about 2 000).
MAX_NODES = 50_000

Path_ = tuple  # a field path such as ("methods", 0, "params", "window")

#: What a ``name:`` may be: it becomes a file or folder name.
NAME_RULE = "letters, digits, '_', '.' and '-', at most 100 characters, not '.' or '..'"
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,100}")


# --------------------------------------------------------------------------- located errors


@dataclass(frozen=True)
class Issue:
    """One problem of an input file, located as precisely as it is known.

    Attributes
    ----------
    file : str
        The file as the user named it.
    line : int or None
        1-based line, None where the problem has no line (encoding, size).
    path : str
        Field path (``methods[1].params.window``), empty where it has none.
    message : str
    """

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class FileValidationError(ScenarioError):
    """An input file has one or more errors; :attr:`issues` lists all of them."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line or 0))
        n = len(self.issues)
        head = f"{n} error{'s' if n != 1 else ''} in input file"
        super().__init__(head + ":\n" + "\n".join(str(i) for i in self.issues))


def fmt_path(path: Path_) -> str:
    """``("methods", 1, "params", "window")`` -> ``methods[1].params.window``."""
    out = ""
    for p in path:
        if isinstance(p, int) and not isinstance(p, bool):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "<document>"


class Collector:
    """Collects the issues of one file, mapping field paths to their YAML lines.

    Parameters
    ----------
    file : str
    lines : mapping of field path to 1-based line
    prefix : tuple
        Path of the validated part inside the document (a section validated on its own).
    """

    def __init__(self, file: str, lines: Mapping[Path_, int] | None = None,
                 prefix: Path_ = ()) -> None:
        self.file = file
        self.lines = dict(lines or {})
        self.prefix = tuple(prefix)
        self.issues: list[Issue] = []
        self._seen: set[Issue] = set()

    def line_of(self, path: Path_) -> int:
        """Line of ``path``, or of its nearest located ancestor (1 for the document)."""
        p = (*self.prefix, *path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def add(self, path: Path_, message: str) -> None:
        """Record a problem at field ``path`` (relative to :attr:`prefix`)."""
        issue = Issue(self.file, self.line_of(path), fmt_path((*self.prefix, *path)), message)
        if issue not in self._seen:
            self._seen.add(issue)
            self.issues.append(issue)

    def extend(self, issues: Iterable[Issue]) -> None:
        for issue in issues:
            if issue not in self._seen:
                self._seen.add(issue)
                self.issues.append(issue)

    def raise_if_any(self) -> None:
        """Raise :class:`FileValidationError` with every issue collected so far."""
        if self.issues:
            raise FileValidationError(self.issues)


def valid_keys_hint(key: str, valid: Iterable[str]) -> str:
    """``'; did you mean 'x'?; valid keys: a, b'`` for an unknown ``key``."""
    valid = list(valid)
    close = difflib.get_close_matches(str(key), valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint}; valid keys: {', '.join(valid)}"


def pydantic_issues(exc: Any, col: Collector, models: Mapping[Path_, Any] | None = None) -> None:
    """Add the errors of a pydantic ``ValidationError`` to ``col``, one per problem.

    ``models`` maps a field path (without list indices) to the pydantic model found there, so
    an unknown key gets the valid keys of its section.
    """
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key"
            owner = tuple(p for p in loc[:-1] if not isinstance(p, int))
            model = (models or {}).get(owner)
            if model is not None:
                msg += valid_keys_hint(str(loc[-1]), model.model_fields)
        elif kind == "missing":
            msg = "required key is missing"
        elif "input" in err:
            given = err["input"]
            if not isinstance(given, (dict, list)):
                text = repr(given)
                msg = f"{msg} (got {text if len(text) <= 80 else text[:77] + '...'})"
        if kind == "value_error":
            msg = msg.removeprefix("Value error, ")
        col.add(loc, msg)


def check_name(value: Any) -> str | None:
    """Why ``value`` cannot be a ``name:`` (a file or folder name), or None when it can."""
    if not isinstance(value, str):
        return f"a name must be a string; got {type(value).__name__}"
    if value in (".", "..") or not _NAME_RE.fullmatch(value):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"{shown!r} is not a valid name: use {NAME_RULE}"
    return None


# --------------------------------------------------------------------------- text


def read_text(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES,
              file: str | None = None) -> str:
    """Read a UTF-8 text file defensively.

    Parameters
    ----------
    path : path-like
    max_bytes : int
        Larger files are refused before they are read whole.
    file : str, optional
        How to name the file in messages (default: ``str(path)``).

    Raises
    ------
    FileValidationError
        Missing, unreadable, too large, or not UTF-8 text (UTF-16/32 byte-order mark, NUL
        byte, invalid byte sequence), with the byte and its offset.
    """
    name = str(path) if file is None else file
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise FileValidationError([Issue(name, None, "", "no such file")]) from None
    except IsADirectoryError:
        raise FileValidationError([Issue(name, None, "", "is a directory, not a file")]) from None
    except OSError as exc:
        raise FileValidationError([Issue(name, None, "", f"cannot read: {exc.strerror or exc}")
                                   ]) from None
    if len(raw) > max_bytes:
        raise FileValidationError([Issue(
            name, None, "", f"file is larger than {max_bytes // 1024} KiB; refusing to read it")])
    return decode_utf8(raw, name)


_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
         (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


def decode_utf8(raw: bytes, file: str) -> str:
    """Decode UTF-8 bytes (a UTF-8 byte-order mark is dropped) or raise a located error."""
    for bom, enc in _BOMS:
        if raw.startswith(bom):
            raise FileValidationError([Issue(
                file, None, "", f"not UTF-8 text ({enc} byte-order mark 0x{bom.hex()} at offset "
                                "0); save the file as UTF-8")])
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileValidationError([Issue(
            file, None, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                            f"{exc.start})")]) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise FileValidationError([Issue(
            file, None, "", f"not UTF-8 text (byte 0x00 at offset {len(text[:nul].encode())}); "
                            "a binary file?")])
    return text


# --------------------------------------------------------------------------- YAML


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document with the line of every field.

    Attributes
    ----------
    data : Any
        The document (mappings, lists, scalars); aliases share objects.
    file : str
    lines : dict
        Field path -> 1-based line of its key (mappings) or item (sequences).
    """

    data: Any
    file: str
    lines: dict

    def collector(self, prefix: Path_ = ()) -> Collector:
        """A :class:`Collector` for this file's issues."""
        return Collector(self.file, self.lines, prefix)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _mark_line(exc: yaml.YAMLError) -> int | None:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return None if mark is None else mark.line + 1


def _yaml_issue(exc: yaml.YAMLError, file: str) -> Issue:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"{context}: {problem}" if context and problem else problem
    return Issue(file, _mark_line(exc) or 1, "", f"invalid YAML: {text}")


def _scan(text: str, file: str, max_depth: int, max_nodes: int) -> None:
    """Refuse deep nesting and alias bombs from the event stream (linear, bounded memory)."""
    sizes: dict[str, int] = {}  # anchor -> expanded node count of its node
    stack: list[list] = []  # [anchor, node count so far] per open collection
    open_anchors: set[str] = set()  # anchors of the collections still open
    total = 0
    try:
        for ev in yaml.parse(text, Loader=_Loader):
            if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                if len(stack) >= max_depth:
                    raise FileValidationError([Issue(
                        file, ev.start_mark.line + 1, "",
                        f"nesting deeper than {max_depth} levels; refusing to read it")])
                stack.append([ev.anchor, 1])
                if ev.anchor is not None:
                    open_anchors.add(ev.anchor)
                total += 1
                continue
            if isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, n = stack.pop()
                if anchor is not None:
                    sizes[anchor] = n
                    open_anchors.discard(anchor)
                if stack:
                    stack[-1][1] += n
                continue
            if isinstance(ev, yaml.ScalarEvent):
                n = 1
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                if ev.anchor in open_anchors:  # a collection containing itself: infinite
                    raise FileValidationError([Issue(
                        file, ev.start_mark.line + 1, "",
                        f"alias *{ev.anchor} refers to a collection that contains it (a "
                        "recursive document); refusing to read it")])
                n = sizes.get(ev.anchor, 1)
            else:
                continue
            total += n
            if stack:
                stack[-1][1] += n
            if total > max_nodes:
                why = (f"alias *{ev.anchor} makes the document larger than {max_nodes} values "
                       "with aliases expanded (an anchor bomb?)"
                       if isinstance(ev, yaml.AliasEvent)
                       else f"the document holds more than {max_nodes} values")
                raise FileValidationError([Issue(file, ev.start_mark.line + 1, "",
                                                 f"{why}; refusing to read it")])
    except yaml.YAMLError as exc:
        raise FileValidationError([_yaml_issue(exc, file)]) from None


def _key_text(key: Any) -> str:
    text = repr(key) if not isinstance(key, str) else key
    return text if len(text) <= 60 else text[:57] + "..."


def _bad_scalars(root: yaml.Node, file: str) -> list[Issue]:
    """One issue per scalar the safe constructor cannot build (iterative, each node once)."""
    constructor = yaml.constructor.SafeConstructor()
    issues: list[Issue] = []
    seen: set[int] = set()
    todo: list[yaml.Node] = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            todo.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        else:
            try:
                constructor.construct_object(node)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
                why = str(exc).split(";")[0].split(":")[0][:120]
                issues.append(Issue(file, node.start_mark.line + 1, "",
                                    f"invalid YAML: cannot read the value {text!r} ({why})"))
    return issues or [Issue(file, root.start_mark.line + 1, "",
                            "invalid YAML: a value cannot be read")]


def parse_yaml(text: str, file: str, *, max_depth: int = MAX_DEPTH,
               max_nodes: int = MAX_NODES) -> YamlDocument:
    """Parse YAML ``text`` (already read; see :func:`read_yaml`) into a located document.

    Raises
    ------
    FileValidationError
        Invalid YAML, an empty document, nesting or alias expansion beyond the limits, a
        recursive alias, a value the safe constructor cannot build (a bad timestamp, an
        integer of thousands of digits), duplicate keys (both lines named) or unhashable keys.
    """
    _scan(text, file, max_depth, max_nodes)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise FileValidationError([_yaml_issue(exc, file)]) from None
    if root is None:
        raise FileValidationError([Issue(file, 1, "", "the file is empty")])
    constructor = yaml.constructor.SafeConstructor()
    try:
        data = constructor.construct_document(root)
    except yaml.YAMLError as exc:  # an unhashable key, an unknown tag, ...
        raise FileValidationError([_yaml_issue(exc, file)]) from None
    except (ValueError, TypeError, OverflowError):  # a bad timestamp, !!int/!!float, 5000 digits
        raise FileValidationError(_bad_scalars(root, file)) from None
    lines: dict[Path_, int] = {(): root.start_mark.line + 1}
    issues: list[Issue] = []
    # Iterative walk (no recursion); aliased nodes are visited once per path, which the scan
    # bounded by max_nodes.
    todo: list[tuple[yaml.Node, Path_]] = [(root, ())]
    while todo:
        node, path = todo.pop()
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    todo.append((vnode, path))
                    continue
                key = constructor.construct_object(knode, deep=True)
                line = knode.start_mark.line + 1
                sub = (*path, key)
                if key in first:
                    issues.append(Issue(file, line, fmt_path(sub),
                                        f"duplicate key {_key_text(key)!r} (first given at line "
                                        f"{first[key]})"))
                    continue
                first[key] = line
                lines.setdefault(sub, line)
                todo.append((vnode, sub))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault((*path, i), item.start_mark.line + 1)
                todo.append((item, (*path, i)))
    if issues:
        raise FileValidationError(issues)
    return YamlDocument(data, file, lines)


def read_yaml(path: str | os.PathLike, *, file: str | None = None,
              max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
              max_nodes: int = MAX_NODES) -> YamlDocument:
    """Read and parse a YAML file with every defence of this module.

    Parameters
    ----------
    path : path-like
    file : str, optional
        How to name the file in messages (default: ``str(path)``).

    Returns
    -------
    YamlDocument

    Raises
    ------
    FileValidationError
        See :func:`read_text` and :func:`parse_yaml`.
    """
    name = str(path) if file is None else file
    text = read_text(path, max_bytes=max_bytes, file=name)
    return parse_yaml(text, name, max_depth=max_depth, max_nodes=max_nodes)
