"""Server-side apply: field sets per manager, list-map aware merging, conflicts and managedFields.

Field sets are sets of paths ("f:spec", "k:{\"type\":\"Ready\"}", ...); managedFields renders them as FieldsV1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

Path = tuple[str, ...]
# Given a schema path (field names, "[]" for list items) -> the list-map keys, or None when atomic.
ListKeys = Callable[[tuple[str, ...]], tuple[str, ...] | None]

_META_TRACKED = ("labels", "annotations", "finalizers", "ownerReferences")
_MISSING = object()


def _schema_path(path: Path) -> tuple[str, ...]:
    return tuple(p[2:] if p.startswith("f:") else "[]" for p in path)


def _item_key(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))


def _keyed(value: list[Any], keys: tuple[str, ...] | None) -> bool:
    return bool(keys) and all(isinstance(i, dict) for i in value)


def field_set(obj: dict[str, Any], list_keys: ListKeys, skip_status: bool = False, only_status: bool = False) -> set[Path]:
    """Every leaf (and list-map item) path of an object, excluding identity metadata."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if key == "metadata":
            if only_status or not isinstance(value, dict):
                continue
            for mk in _META_TRACKED:
                if mk in value and value[mk] is not None:
                    _walk(value[mk], ("f:metadata", f"f:{mk}"), list_keys, out)
            continue
        if key == "status" and skip_status:
            continue
        if only_status and key != "status":
            continue
        _walk(value, (f"f:{key}",), list_keys, out)
    return out


def _walk(value: Any, path: Path, list_keys: ListKeys, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, (*path, f"f:{k}"), list_keys, out)
        return
    if isinstance(value, list) and value:
        keys = list_keys(_schema_path(path))
        if _keyed(value, keys):
            assert keys is not None
            for item in value:
                item_path = (*path, _item_key(item, keys))
                out.add(item_path)
                _walk(item, item_path, list_keys, out)
            return
    out.add(path)


def _get(obj: Any, element: str, default: Any = _MISSING) -> Any:
    if element.startswith("f:"):
        return obj.get(element[2:], default) if isinstance(obj, dict) else default
    if isinstance(obj, list):
        wanted = json.loads(element[2:])
        for item in obj:
            if isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items()):
                return item
    return default


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for element in path:
        cur = _get(cur, element)
        if cur is _MISSING:
            return _MISSING
    return cur


def merge(live: Any, applied: Any, list_keys: ListKeys, path: Path = ()) -> Any:
    """Merge an applied configuration into a live object: maps per key, list-maps per item, else replace.

    Shares subtrees of both inputs (never mutates them): callers pass a freshly parsed `applied`.
    """
    if isinstance(live, dict) and isinstance(applied, dict):
        out = dict(live)
        for key, value in applied.items():
            sub = (*path, f"f:{key}")
            out[key] = merge(live[key], value, list_keys, sub) if key in live else value
        return out
    if isinstance(live, list) and isinstance(applied, list):
        keys = list_keys(_schema_path(path))
        if _keyed(applied, keys) and _keyed(live, keys):
            assert keys is not None
            result = list(live)
            index = {_item_key(item, keys): i for i, item in enumerate(live)}
            for item in applied:
                ik = _item_key(item, keys)
                if ik in index:
                    result[index[ik]] = merge(live[index[ik]], item, list_keys, (*path, ik))
                else:
                    index[ik] = len(result)
                    result.append(item)
            return result
    return applied


def remove_path(obj: dict[str, Any], path: Path) -> None:
    """Remove one field (or list-map item), then prune parents it left empty.

    Containers along the path are replaced by shallow copies first: `obj` may share subtrees with a
    stored object, which must never change.
    """
    parents: list[tuple[Any, str]] = []
    cur: Any = obj
    for element in path[:-1]:
        nxt = _get(cur, element)
        if nxt is _MISSING or not isinstance(nxt, dict | list):
            return
        fresh = dict(nxt) if isinstance(nxt, dict) else list(nxt)
        _replace(cur, element, nxt, fresh)
        parents.append((cur, element))
        cur = fresh
    if not _delete(cur, path[-1]):
        return
    while parents and cur in ({}, []):
        parent, element = parents.pop()
        _delete(parent, element)
        cur = parent


def _replace(container: Any, element: str, old: Any, new: Any) -> None:
    if element.startswith("f:"):
        container[element[2:]] = new
    else:
        container[next(i for i, item in enumerate(container) if item is old)] = new


def _delete(container: Any, element: str) -> bool:
    if element.startswith("f:"):
        if isinstance(container, dict) and element[2:] in container:
            del container[element[2:]]
            return True
        return False
    target = _get(container, element)
    if target is not _MISSING:
        container.remove(target)
        return True
    return False


def changed_paths(old: dict[str, Any], new: dict[str, Any], list_keys: ListKeys, **scope: bool) -> tuple[set[Path], set[Path]]:
    """(paths set or changed by going old -> new, paths removed) within the given scope."""
    old_set = field_set(old, list_keys, **scope)
    new_set = field_set(new, list_keys, **scope)
    changed = {p for p in new_set if p not in old_set or value_at(old, p) != value_at(new, p)}
    return changed, old_set - new_set


def _is_key_field(path: Path) -> bool:
    """A list-map item's key field goes only with its item."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def overlaps(a: Path, b: Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


# --- managedFields -----------------------------------------------------------------------------


@dataclass
class ManagedEntry:
    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    time: str
    subresource: str
    fields: set[Path]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)


def to_fields_v1(paths: Iterable[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for element in path:
            node = node.setdefault(element, {})
        if len(path) and path[-1].startswith("k:"):
            node["."] = {}
    return root


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in tree.items():
        if key == ".":
            out.add(prefix)
            continue
        path = (*prefix, key)
        if isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, path)
        else:
            out.add(path)
    return out


def read_managed(obj: dict[str, Any]) -> list[ManagedEntry]:
    out = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(raw, dict) or not raw.get("manager"):
            continue
        out.append(
            ManagedEntry(
                str(raw.get("manager")),
                str(raw.get("operation") or "Update"),
                str(raw.get("apiVersion") or ""),
                str(raw.get("time") or ""),
                str(raw.get("subresource") or ""),
                from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return out


def render_managed(entries: list[ManagedEntry]) -> list[dict[str, Any]]:
    out = []
    for e in entries:
        if not e.fields:
            continue
        item: dict[str, Any] = {
            "manager": e.manager,
            "operation": e.operation,
            "apiVersion": e.api_version,
            "time": e.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(e.fields),
        }
        if e.subresource:
            item["subresource"] = e.subresource
        out.append(item)
    return out


@dataclass(frozen=True)
class Conflict:
    manager: str
    path: Path

    def describe(self) -> str:
        dotted = ".".join(p[2:] if p.startswith("f:") else f"[{p[2:]}]" for p in self.path)
        return f'conflict with "{self.manager}": .{dotted}'


def apply(
    live: dict[str, Any],
    applied: dict[str, Any],
    entries: list[ManagedEntry],
    manager: str,
    subresource: str,
    force: bool,
    list_keys: ListKeys,
    api_version: str,
    now: str,
    scope: dict[str, bool],
) -> tuple[dict[str, Any], list[ManagedEntry], list[Conflict]]:
    """One apply: returns (new object, new managed entries, conflicts). Conflicts mean nothing changed."""
    applied_set = field_set(applied, list_keys, **scope)
    key = (manager, "Apply", subresource)
    mine = next((e for e in entries if e.key == key), None)
    previous = set(mine.fields) if mine else set()
    others = [e for e in entries if e.key != key]

    conflicts: list[Conflict] = []
    # Fields another manager set by Update (kubectl edit/scale, a controller) conflict as much as another
    # applier's: Kubernetes' own example is `kubectl scale` followed by an apply of another replica count
    # (structured-merge-diff `merge/update.go` Updater.Apply at v4.4.1 checks every other manager).
    for e in others:
        for p in applied_set & e.fields:
            if p[-1].startswith("k:"):
                continue  # an item marker is shared ownership, not a value
            if value_at(applied, p) != value_at(live, p):
                conflicts.append(Conflict(e.manager, p))
    if conflicts and not force:
        return live, entries, conflicts

    result = merge(live, _scoped(applied, scope), list_keys)
    # Fields this manager stopped sending go away unless someone else still owns them.
    removed: list[Path] = []
    for p in sorted(previous - applied_set, key=len):
        if any(p[: len(r)] == r for r in removed) or _is_key_field(p):
            continue
        if any(q[: len(p)] == p for q in applied_set):
            continue
        if any(any(overlaps(p, q) for q in e.fields) for e in others):
            continue
        remove_path(result, p)
        removed.append(p)

    new_entries: list[ManagedEntry] = []
    for e in others:
        kept = {
            p for p in e.fields
            if p not in applied_set or p[-1].startswith("k:") or value_at(result, p) == value_at(live, p)
        }
        new_entries.append(replace(e, fields=kept))
    same = mine is not None and mine.fields == applied_set
    new_entries.append(
        ManagedEntry(manager, "Apply", api_version, mine.time if (same and mine) else now, subresource, applied_set)
    )
    return result, new_entries, []


def _scoped(applied: dict[str, Any], scope: dict[str, bool]) -> dict[str, Any]:
    out = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind", "metadata")}
    if scope.get("skip_status"):
        out.pop("status", None)
    if scope.get("only_status"):
        out = {"status": out["status"]} if "status" in out else {}
    meta = applied.get("metadata") or {}
    if not scope.get("only_status"):
        tracked = {k: meta[k] for k in _META_TRACKED if k in meta and meta[k] is not None}
        if tracked:
            out["metadata"] = tracked
    return out


def record_update(
    old: dict[str, Any],
    new: dict[str, Any],
    entries: list[ManagedEntry],
    manager: str,
    subresource: str,
    list_keys: ListKeys,
    api_version: str,
    now: str,
    scope: dict[str, bool],
) -> list[ManagedEntry]:
    """An update (PUT/PATCH) takes ownership of what it changed; others lose those fields."""
    changed, removed = changed_paths(old, new, list_keys, **scope)
    if not changed and not removed:
        return entries
    key = (manager, "Update", subresource)
    out: list[ManagedEntry] = []
    found = False
    for e in entries:
        fields = {p for p in e.fields if p not in changed and not any(overlaps(p, r) for r in removed)}
        if e.key == key:
            found = True
            fields |= changed
            out.append(replace(e, api_version=api_version, time=now, fields=fields))
        else:
            out.append(replace(e, fields=fields))
    if not found:
        out.append(ManagedEntry(manager, "Update", api_version, now, subresource, set(changed)))
    return out
