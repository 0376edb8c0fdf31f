"""Label and field selectors of list and watch requests, parsed once and matched cheaply.

Label selectors support =, ==, !=, in, notin, exists and !exists; field selectors =, ==, != on dotted paths.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_kaito.sandbox.errors import ApiError

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*\Z")
_EQ_RE = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*\Z")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "in" | "notin" | "exists" | "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "exists":
            return self.key in labels
        if self.op == "!exists":
            return self.key not in labels
        if self.op == "in":
            return self.key in labels and labels[self.key] in self.values
        return labels.get(self.key) not in self.values if self.key in labels else True


def _split_top(expr: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def equalities(self) -> list[tuple[str, str]]:
        """The key=value requirements, which an index can answer."""
        return [(r.key, next(iter(r.values))) for r in self.requirements if r.op == "in" and len(r.values) == 1]


def parse_label_selector(expr: str | None) -> LabelSelector:
    if not expr:
        return LabelSelector(())
    reqs: list[Requirement] = []
    for part in _split_top(expr):
        m = _EQ_RE.match(part)
        if m:
            key, op, value = m.groups()
            reqs.append(Requirement(key, "notin" if op == "!=" else "in", frozenset([value])))
            continue
        m = _SET_RE.match(part)
        if not m:
            raise ApiError(400, f"unable to parse requirement: {part!r}")
        neg, key, setop, values = m.groups()
        if setop:
            if neg:
                raise ApiError(400, f"unable to parse requirement: {part!r}")
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            reqs.append(Requirement(key, setop, vals))
        else:
            reqs.append(Requirement(key, "!exists" if neg else "exists"))
    return LabelSelector(tuple(reqs))


def _lookup(obj: Mapping[str, Any], dotted: str) -> str | None:
    cur: Any = obj
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return None if cur is None else str(cur)


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...]  # (path, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for path, equal, value in self.terms:
            actual = _lookup(obj, path) or ""
            if (actual == value) != equal:
                return False
        return True

    def name(self) -> str | None:
        """The metadata.name this selector pins, which lets the store skip the scan."""
        for path, equal, value in self.terms:
            if path == "metadata.name" and equal:
                return value
        return None


def parse_field_selector(expr: str | None) -> FieldSelector:
    if not expr:
        return FieldSelector(())
    terms: list[tuple[str, bool, str]] = []
    for part in _split_top(expr):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*\Z", part)
        if not m:
            raise ApiError(400, f"invalid field selector: {part!r}")
        terms.append((m.group(1), m.group(2) != "!=", m.group(3)))
    return FieldSelector(tuple(terms))


Matcher = Callable[[Mapping[str, Any]], bool]


def matcher(label_selector: str | None, field_selector: str | None) -> Matcher:
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    if not labels.requirements and not fields.terms:
        return lambda obj: True

    def match(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return labels.matches(meta.get("labels")) and fields.matches(obj)

    return match
