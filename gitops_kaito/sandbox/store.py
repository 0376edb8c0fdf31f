"""Object storage of the emulator: objects by type/namespace/name, one resourceVersion counter, watch history.

Stored objects are never mutated in place (writers build new dicts), so reads and watch events share them.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

StorageKey = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


@dataclass(frozen=True)
class WatchEvent:
    rv: int
    key: StorageKey
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    prev: Obj | None


class Expired(Exception):
    """The requested resourceVersion is older than the retained watch history."""


class Store:
    """All objects plus a bounded event history; `cond` wakes watchers on every write."""

    def __init__(self, history_limit: int = 50_000) -> None:
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 1
        self.closed = False
        self._objects: dict[StorageKey, dict[str, dict[str, Obj]]] = {}
        # (label key, value) -> {(namespace, name)}: selective lists cost O(matches), not O(objects).
        self._labels: dict[StorageKey, dict[tuple[str, str], set[tuple[str, str]]]] = {}
        self._events: list[WatchEvent] = []
        self._event_rvs: list[int] = []
        self._history_limit = max(1, history_limit)
        # Events with rv <= compacted_rv are no longer available to watchers.
        self.compacted_rv = 1

    # -- reads (callers hold the lock when they need a consistent view) --

    def get(self, key: StorageKey, namespace: str, name: str) -> Obj | None:
        return self._objects.get(key, {}).get(namespace, {}).get(name)

    def iter(self, key: StorageKey, namespace: str | None = None) -> Iterator[Obj]:
        """Objects of one kind, ordered by namespace then name (the apiserver's list order)."""
        by_ns = self._objects.get(key, {})
        namespaces = [namespace] if namespace is not None else sorted(by_ns)
        for ns in namespaces:
            names = by_ns.get(ns, {})
            for name in sorted(names):
                yield names[name]

    def with_label(self, key: StorageKey, label: str, value: str, namespace: str | None = None) -> list[Obj]:
        """Objects carrying label=value, in list order."""
        hits = self._labels.get(key, {}).get((label, value), set())
        by_ns = self._objects.get(key, {})
        out = []
        for ns, name in sorted(hits):
            if namespace is None or ns == namespace:
                out.append(by_ns[ns][name])
        return out

    def label_count(self, key: StorageKey, label: str, value: str) -> int:
        return len(self._labels.get(key, {}).get((label, value), ()))

    def _index(self, key: StorageKey, obj: Obj | None, add: bool) -> None:
        if obj is None:
            return
        meta = obj["metadata"]
        labels = meta.get("labels") or {}
        if not labels:
            return
        pos = (meta.get("namespace") or "", meta["name"])
        index = self._labels.setdefault(key, {})
        for pair in labels.items():
            if add:
                index.setdefault(pair, set()).add(pos)
            else:
                members = index.get(pair)
                if members is not None:
                    members.discard(pos)
                    if not members:
                        del index[pair]

    def count_in_namespace(self, namespace: str) -> int:
        return sum(len(by_ns.get(namespace, {})) for by_ns in self._objects.values())

    def keys(self) -> list[StorageKey]:
        return list(self._objects)

    # -- writes --

    def next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, key: StorageKey, obj: Obj, prev: Obj | None) -> Obj:
        """Store a new version (metadata.resourceVersion already set by the caller via next_rv)."""
        meta = obj["metadata"]
        names = self._objects.setdefault(key, {}).setdefault(meta.get("namespace") or "", {})
        self._index(key, names.get(meta["name"]), add=False)
        names[meta["name"]] = obj
        self._index(key, obj, add=True)
        self._record(key, "MODIFIED" if prev is not None else "ADDED", obj, prev)
        return obj

    def delete(self, key: StorageKey, obj: Obj) -> None:
        """Remove an object; `obj` is its final state (with a fresh resourceVersion) for the DELETED event."""
        meta = obj["metadata"]
        ns = meta.get("namespace") or ""
        names = self._objects.get(key, {}).get(ns, {})
        prev = names.pop(meta["name"], None)
        self._index(key, prev, add=False)
        if not names:
            self._objects.get(key, {}).pop(ns, None)
        self._record(key, "DELETED", obj, prev)

    def drop_kind(self, key: StorageKey) -> list[Obj]:
        self._labels.pop(key, None)
        by_ns = self._objects.pop(key, {})
        return [o for names in by_ns.values() for o in names.values()]

    def _record(self, key: StorageKey, etype: str, obj: Obj, prev: Obj | None) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self._events.append(WatchEvent(rv, key, etype, obj, prev))
        self._event_rvs.append(rv)
        if len(self._events) > 2 * self._history_limit:
            cut = len(self._events) - self._history_limit
            self.compacted_rv = self._event_rvs[cut - 1]
            del self._events[:cut]
            del self._event_rvs[:cut]
        self.cond.notify_all()

    # -- watch --

    def events_after(self, rv: int) -> list[WatchEvent]:
        """Events newer than rv; raises Expired when history no longer reaches back to rv."""
        if rv < self.compacted_rv:
            raise Expired(rv)
        i = bisect.bisect_right(self._event_rvs, rv)
        return self._events[i:]

    def compact(self) -> None:
        """Forget the whole watch history: every resourceVersion older than now gets 410 (a restarted API server
        whose watch cache starts cold)."""
        with self.cond:
            self.compacted_rv = self.rv
            self._events.clear()
            self._event_rvs.clear()
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def reopen(self) -> None:
        with self.cond:
            self.closed = False
