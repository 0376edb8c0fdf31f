"""Safe YAML loading that remembers where every key and value came from, for errors with file and line.

Hostile or careless input is refused up front: huge files, files that are not regular files (a FIFO never blocks
a read), aliases (alias bombs), several documents, deep nesting, numbers that are not finite or too long to convert.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MAX_BYTES = 256 * 1024
# Model files are a few levels deep; a limit far above that keeps the recursive composer off the stack limit.
MAX_DEPTH = 64

JsonPath = tuple[str | int, ...]
# libyaml parses about ten times faster than the pure-Python parser, with the same safe rules and marks.
FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
FAST_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class SourceError(Exception):
    """A problem in a source file, located as precisely as known. str() is 'path:line:col: message'."""

    path: str
    line: int | None
    column: int | None
    message: str

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class SourceErrors(SourceError):
    """Several problems in one file, all reported at once. Its own path, line and message are the first problem's, so
    a caller that only knows SourceError still shows one; `errors` holds every one, in line order."""

    errors: tuple[SourceError, ...] = ()

    def __str__(self) -> str:
        return "\n".join(SourceError.__str__(e) for e in self.errors) or SourceError.__str__(self)


def each_error(err: SourceError) -> tuple[SourceError, ...]:
    """The problems one raised SourceError stands for (several for a SourceErrors)."""
    return err.errors if isinstance(err, SourceErrors) and err.errors else (err,)


def raise_all(errors: Sequence[SourceError]) -> None:
    """Raise nothing for no errors, the error itself for one, a SourceErrors for several (sorted by line)."""
    if not errors:
        return
    ordered = sorted(errors, key=lambda e: (e.line or 0, e.column or 0, e.message))
    if len(ordered) == 1:
        raise ordered[0]
    first = ordered[0]
    raise SourceErrors(first.path, first.line, first.column, first.message, tuple(ordered))


@dataclass(frozen=True)
class LocatedDoc:
    """Plain Python data from one YAML document, plus the (line, column) of every key or item (1-based)."""

    data: Any
    path: str = ""
    positions: dict[JsonPath, tuple[int, int]] = field(default_factory=dict, compare=False, hash=False)

    def position_of(self, json_path: Sequence[str | int]) -> tuple[int, int] | None:
        """Position of the deepest known element along json_path (a missing key points at its parent)."""
        key = tuple(json_path)
        while True:
            if key in self.positions:
                return self.positions[key]
            if not key:
                return None
            key = key[:-1]

    def line_of(self, json_path: Sequence[str | int]) -> int | None:
        pos = self.position_of(json_path)
        return pos[0] if pos else None

    def error(self, json_path: Sequence[str | int], message: str) -> SourceError:
        pos = self.position_of(json_path)
        return SourceError(self.path, pos[0] if pos else None, pos[1] if pos else None, message)


def escapes(path: Path, root: Path) -> bool:
    """Whether path, with every symlink followed, lies outside root (a symlink loop counts as outside)."""
    try:
        path.resolve().relative_to(root.resolve())
        return False
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return True


def display_path(path: Path, root: Path) -> str:
    """The repo-relative path with forward slashes, or the path as given when it is outside root."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def read_regular_file(path: Path, max_bytes: int, shown: str) -> bytes:
    """The bytes of a regular file of at most max_bytes; SourceError for anything else (with the reason).

    Opened without blocking and checked on the open descriptor: a FIFO (or a device, a socket) is refused instead
    of waiting forever for a writer, and a file swapped for one between a check and the read is refused too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise SourceError(shown, None, None, f"cannot read file: {err.strerror or err}")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SourceError(shown, None, None, f"not a regular file ({special_kind(info.st_mode)}): refused")
        if info.st_size > max_bytes:
            raise SourceError(shown, None, None,
                              f"file is too large ({info.st_size} bytes; the limit is {max_bytes} bytes)")
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    except OSError as err:
        raise SourceError(shown, None, None, f"cannot read file: {err.strerror or err}")
    finally:
        os.close(fd)
    if len(raw) > max_bytes:  # the file grew between fstat and read
        raise SourceError(shown, None, None, f"file is too large (over {max_bytes} bytes)")
    return raw


def _invalid(shown: str, err: Exception) -> Any:
    raise SourceError(shown, None, None, f"invalid YAML: {err}")


def _has_non_finite(data: Any) -> bool:
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return True
    return False


def special_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "a special file"


def decode_text(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SourceError(shown, line, None, "file is not valid UTF-8 text")


def load_yaml_file(path: Path, root: Path, max_bytes: int = DEFAULT_MAX_BYTES, *, shown: str | None = None
                   ) -> LocatedDoc:
    """Read one YAML file holding exactly one mapping. Raises SourceError with the file and line.

    shown: the path for errors when the caller already knows it (else display_path(path, root)).
    """
    shown = shown if shown is not None else display_path(path, root)
    return load_yaml_text(decode_text(read_regular_file(path, max_bytes, shown), shown), shown)


def load_yaml_data(text: str, shown: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Plain data from one YAML mapping nobody vetted (status files, a ConfigMap's inference config), under the same
    limits as model files: size, no aliases, one document, depth, finite numbers. Raises SourceError."""
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > max_bytes:
        raise SourceError(shown, None, None, f"too large ({size} bytes; the limit is {max_bytes} bytes)")
    if _may_need_event_check(text):
        return load_yaml_text(text, shown).data
    # Nothing here can expand or nest past the limit: libyaml's own loader is about a third faster than the
    # located path, which matters for the thousands of status files a pass reads back.
    try:
        data = yaml.load(text, Loader=FAST_LOADER)
    except yaml.YAMLError as err:
        return load_yaml_text(text, shown).data if isinstance(err, yaml.MarkedYAMLError) else _invalid(shown, err)
    except ValueError:  # an integer too long to convert: the located path says where
        return load_yaml_text(text, shown).data
    if not isinstance(data, dict) or _has_non_finite(data):
        return load_yaml_text(text, shown).data  # the located path refuses it, with the line
    return data


def load_yaml_text(text: str, shown: str) -> LocatedDoc:
    """Parse text (already size-checked) as one YAML mapping; shown is the path used in errors."""
    _refuse_tab_indentation(text, shown)
    try:
        if _may_need_event_check(text):
            _check_events(text, shown)
        nodes = list(yaml.compose_all(text, Loader=FAST_LOADER))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        if err.context and err.context_mark is not None:
            problem += f" ({err.context} started on line {err.context_mark.line + 1})"
            if mark is not None and mark.index >= len(text.rstrip()):
                mark = err.context_mark  # the end of the file is no place to send someone: point at the opener
        if mark is None:
            raise SourceError(shown, None, None, f"invalid YAML: {problem}")
        raise SourceError(shown, mark.line + 1, mark.column + 1, f"invalid YAML: {problem}")
    except yaml.YAMLError as err:
        raise SourceError(shown, None, None, f"invalid YAML: {err}")
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise SourceError(shown, 1, None, "file is empty: expected a YAML mapping")
    top = nodes[0]
    if not isinstance(top, yaml.MappingNode):
        kind = "a list" if isinstance(top, yaml.SequenceNode) else "a single value"
        raise SourceError(shown, top.start_mark.line + 1, top.start_mark.column + 1,
                          f"the top level is {kind}: expected a mapping (apiVersion, kind, metadata, spec)")
    positions: dict[JsonPath, tuple[int, int]] = {(): (top.start_mark.line + 1, top.start_mark.column + 1)}
    data = _convert(top, (), positions, shown)
    return LocatedDoc(data=data, path=shown, positions=positions)


def _refuse_tab_indentation(text: str, shown: str) -> None:
    # PyYAML's own message for this ("found character '\t' that cannot start any token") confuses people.
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip(" ")
        if stripped.startswith("\t") and stripped.strip():
            raise SourceError(shown, number, len(line) - len(stripped) + 1,
                              "tab character in indentation: YAML indentation must use spaces")


def _may_need_event_check(text: str) -> bool:
    """False only when text cannot hold an alias, a second document or nesting past MAX_DEPTH.

    The event check is a second parse (~a third of the YAML cost of a plain model file), so it is skipped
    when none of those can occur: no anchor/alias/explicit-key indicator, no document marker, and a bound on the
    nesting under MAX_DEPTH. The bound: in block style a collection nests only by more indentation (a sequence may
    share its key's column: two levels per column at most) or by leading '- ' on a line (each may open a sequence
    and the collection in its entry); in flow style each bracket opens a collection, and inside a flow sequence
    an implicit `a: b` pair opens a mapping too.
    """
    if any(c in text for c in "&*?") or "---" in text or "..." in text:
        return True
    flow = 2 * (text.count("[") + text.count("{"))
    if flow + 2 > MAX_DEPTH:
        return True
    deepest = 0
    for line in text.splitlines():  # splits at every YAML line break (and a few more: it can only add lines)
        rest = line.lstrip(" ")
        dashes = 0
        while rest.startswith("- ") or rest == "-":
            dashes += 1
            rest = rest[2:].lstrip(" ")
        deepest = max(deepest, 2 * (len(line) - len(line.lstrip(" "))) + 2 * dashes)
    return deepest + flow + 2 > MAX_DEPTH


_LINE_BREAKS = "\n\r\x85\u2028\u2029"  # every character YAML 1.1 (and PyYAML) reads as a line break


def _check_events(text: str, shown: str) -> None:
    """Refuse aliases, several documents and deep nesting before anything is built."""
    documents = 0
    depth = 0
    for event in yaml.parse(text, Loader=FAST_LOADER):
        line, column = _at(event)
        if isinstance(event, yaml.AliasEvent):
            raise SourceError(shown, line, column, f"YAML aliases (*{event.anchor}) are not allowed in model files: write the value out")
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise SourceError(shown, line, column, "more than one YAML document ('---'): put each model in its own file")
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise SourceError(shown, line, column, f"nesting is deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _at(item: yaml.Node | yaml.Event) -> tuple[int | None, int | None]:
    mark = item.start_mark
    return (mark.line + 1, mark.column + 1) if mark is not None else (None, None)


_STR_TAG = "tag:yaml.org,2002:str"
# Scalar tags whose SafeConstructor function returns the value directly and keeps no state, so one shared
# constructor serves them all (a new SafeConstructor per scalar was ~5 % of loading a repository).
_PLAIN_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null"))
_SHARED_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _scalar(node: yaml.ScalarNode, shown: str) -> Any:
    tag = node.tag
    if tag == _STR_TAG:
        return node.value
    value = _construct(node, shown)
    if isinstance(value, float) and not math.isfinite(value):
        # .nan, .inf and literals past the float range (1.0e+400): every number gitops-kaito reads is a count,
        # a price or an inference parameter, and a non-finite one breaks sums, comparisons and the JSON sent on.
        raise SourceError(shown, *_at(node), f"{node.value!r} is not a finite number")
    return value


def _construct(node: yaml.ScalarNode, shown: str) -> Any:
    tag = node.tag
    if tag in _PLAIN_SCALAR_TAGS:
        try:
            return yaml.constructor.SafeConstructor.yaml_constructors[tag](_SHARED_CONSTRUCTOR, node)
        except (yaml.constructor.ConstructorError, ValueError):
            pass  # let the general path below report it
    if tag == "tag:yaml.org,2002:merge":
        raise SourceError(shown, *_at(node), "YAML merge keys ('<<') are not allowed in model files")
    # SafeConstructor applies YAML 1.1's safe scalar rules (ints, bools, floats, null, timestamps, strings).
    try:
        return yaml.constructor.SafeConstructor().construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as err:
        raise SourceError(shown, *_at(node), f"invalid value: {err.problem}")
    except ValueError as err:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise SourceError(shown, *_at(node), f"invalid value: {str(err).split(';')[0]}")


def _convert(node: yaml.Node, here: JsonPath, positions: dict[JsonPath, tuple[int, int]], shown: str) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node, shown)
    if node.tag not in ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
        raise SourceError(shown, *_at(node), f"unsupported YAML tag {node.tag!r}")
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, child in enumerate(node.value):
            line, column = _at(child)
            if line is not None and column is not None:
                positions[(*here, index)] = (line, column)
            items.append(_convert(child, (*here, index), positions, shown))
        return items
    assert isinstance(node, yaml.MappingNode)
    result: dict[Any, Any] = {}
    for key_node, value_node in _pairs(node):
        line, column = _at(key_node)
        if not isinstance(key_node, yaml.ScalarNode):
            raise SourceError(shown, line, column, "mapping keys must be plain strings")
        key = _scalar(key_node, shown)
        if not isinstance(key, str):
            # 'on:', 'yes:', '1:' become bools/ints in YAML 1.1; the schema speaks of string keys.
            key = key_node.value
        if key in result:
            raise SourceError(shown, line, column, f"duplicate key {key!r}")
        if line is not None and column is not None:
            positions[(*here, key)] = (line, column)
        result[key] = _convert(value_node, (*here, key), positions, shown)
    return result


def _pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    yield from node.value
