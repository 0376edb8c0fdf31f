"""The long-running loops' view of the cluster: per managed kind one LIST, then a WATCH from its resourceVersion.

A pass reads it instead of listing (0 requests); changes made by others (drift, KAITO's status) are reported as they come.

How it stays right (what client-go's reflector does, in the project's terms):
- one thread per kind (adapters/kube.Kube.managed_lists: the one list of managed kinds), on its own connection;
- WATCH with bookmarks from the LIST's resourceVersion; a stream that ends at its timeout is resumed from the last
  resourceVersion seen (events and bookmarks), so quiet kinds stay within the server's history;
- 410 Gone, a dropped stream or a server that went away: the kind is marked out of sync at once (a pass then
  LISTs for itself), and re-listed with jittered backoff; a full re-list every `resync_s` as a safety net;
- a re-list replaces the kind's objects in one step (never emptied first) and compares old and new: what changed
  without an event reaching us (missed events) is reported like an event;
- our own writes (kube.Kube's WriteObserver hooks) update the cache from the server's answer and are not reported.

Objects are kept as compact projections (kube.compact, as every LIST returns them): what planning, health and status
read, without the request times of managedFields or kubectl's last-applied annotation.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from gitops_kaito.adapters.kube import Kube, KubeError, ListSpec, compact
from gitops_kaito.model.kaito import KAITO_WORKSPACE_LABEL, KAITO_WORKSPACE_NS_LABEL
from gitops_kaito.model.objects import Manifest, ObjectRef
from gitops_kaito.model.ownership import LABEL_MODEL

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # kind, namespace, name
# What does not count as a change of the object itself (a status write, or the server's bookkeeping).
_BOOKKEEPING = ("resourceVersion", "managedFields", "generation")

# Causes of a change report.
CHANGED = "changed"  # someone else changed the object (what we own, or anything outside status)
STATUS = "status"  # only the status (KAITO's controller, Karpenter): the model's health moved
DELETED = "deleted"
ADDED = "added"

# Why a kind was listed in full (WatchCounters.relisted).
START = "start"  # its watch (re)started: the first pass, leadership regained, another instance or version watched
EXPIRED = "expired"  # 410 Gone: the server's history no longer reaches our resourceVersion
DROPPED = "dropped"  # the stream failed, or the API server went away (or restarted)
PERIODIC = "periodic"  # the safety net, every resync_s
REQUESTED = "requested"  # a pass asked (resync(): a write refused because the object changed since it was read)


class WatchCounters(Protocol):
    """What the cache reports as it goes, for metrics (the daemon's: service/metrics.py). Called on the watch
    threads, outside the cache's lock; must not block."""

    def event(self, kind: str, etype: str) -> None: ...  # ADDED, MODIFIED, DELETED, BOOKMARK
    def relisted(self, kind: str, reason: str) -> None: ...  # a LIST that succeeded, with its reason (above)


@dataclass(frozen=True)
class WatchSettings:
    resync_s: float = 600.0  # full re-list of every kind, however well the watches went
    watch_timeout_s: float = 300.0  # each WATCH request asks the server to end it after this (then resumed)
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 30.0
    sync_timeout_s: float = 30.0  # how long a pass waits for a starting cache before it LISTs for itself


@dataclass(frozen=True)
class CacheChange:
    """A change to a watched object that was not our own write. `model_id`: the gitops-kaito model it belongs to
    (its label, or for KAITO's own NodeClaims the model of their Workspace); '' when none is known."""

    kind: str
    namespace: str
    name: str
    model_id: str
    cause: str  # changed | status | deleted | added
    relist: bool = False  # found by comparing a re-list, not by an event


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind") or ""), str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _ref_key(ref: ObjectRef) -> Key:
    return (ref.kind, ref.namespace, ref.name)


def _rv(obj: Mapping[str, Any] | None) -> str:
    return str(((obj or {}).get("metadata") or {}).get("resourceVersion") or "")


def _older(new: str, old: str) -> bool:
    """Whether resourceVersion `new` comes before `old`. Opaque to clients in principle; every API server in
    practice numbers them from etcd's revision, and a replayed event must never undo a newer state."""
    try:
        return int(new) < int(old)
    except ValueError:
        return False


def _body(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without status and bookkeeping: what someone's edit (not a controller's status write) changes."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _BOOKKEEPING}
    return {**{k: v for k, v in obj.items() if k not in ("metadata", "status")}, "metadata": meta}


class _Kind:
    """One watched kind: its objects, its resourceVersion and whether it is in sync."""

    def __init__(self, spec: ListSpec) -> None:
        self.spec = spec
        self.objects: dict[Key, Manifest] = {}
        # fieldsV1 trees of objects stored since the last re-list, one copy each (kube.compact): after a first sync
        # of thousands of objects from one template they were most of the cache. A re-list starts it afresh.
        self.shared: dict[str, Any] = {}
        self.rv = ""
        self.synced = False
        self.relist = True
        self.reason = START  # why the next re-list (while relist is set)
        self.last_list = 0.0
        self.stream: k8s_watch.Watch | None = None


class WatchCache:
    """Start it with `ensure(specs)`; `objects(specs)` answers a pass (None while not in sync). Thread-safe."""

    def __init__(self, kube: Kube, settings: WatchSettings | None = None,
                 on_change: Callable[[CacheChange], None] | None = None,
                 counters: WatchCounters | None = None) -> None:
        self.settings = settings or WatchSettings()
        self.on_change = on_change
        self.counters = counters
        self._parent = kube
        self._own_kube: Kube | None = None  # made at the first ensure(): building the cache does no I/O
        self._lock = threading.Condition()
        self._kinds: dict[str, _Kind] = {}  # by kind
        self._specs: tuple[ListSpec, ...] = ()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._halted = False  # stop() was asked (leadership lost, shutting down): no watch starts until resume()
        self._version = 0
        self._writing: dict[Key, int] = {}  # objects we are writing right now: their events are ours
        self._own_rv: dict[Key, str] = {}  # the resourceVersion our last write of an object got
        self._deleting: set[Key] = set()  # objects we deleted: their last events are ours
        self.relists = 0  # LISTs made (the first ones included), for tests and metrics
        kube.observer = self

    # ------------------------------------------------------------------ what a pass reads

    @property
    def version(self) -> int:
        """Moves with every change to a cached object (ours included), never with bookmarks or re-lists that
        found nothing new: an unchanged version means the cluster is as the last pass saw it."""
        with self._lock:
            return self._version

    @property
    def specs(self) -> tuple[ListSpec, ...]:
        """What the cache watches now: one stream per kind (empty before the first ensure())."""
        with self._lock:
            return self._specs

    @property
    def _kube(self) -> Kube:
        if self._own_kube is None:
            self._own_kube = self._parent.clone()  # its own connections: the streams hold theirs for minutes
        return self._own_kube

    def ensure(self, specs: Sequence[ListSpec]) -> None:
        """Watch exactly these (a different instance or Workspace version restarts the watches)."""
        specs = tuple(specs)
        with self._lock:
            if self._halted or (specs == self._specs and self._threads):
                return
        self._stop_threads()
        self._kube  # noqa: B018 - the connection exists before the threads that share it start
        with self._lock:
            self._stop = threading.Event()
            self._specs = specs
            self._kinds = {s.kind: _Kind(s) for s in specs}
            self._threads = [threading.Thread(target=self._run, args=(k, self._stop), daemon=True,
                                              name=f"watch-{k.spec.kind}") for k in self._kinds.values()]
        for t in self._threads:
            t.start()

    def synced(self) -> bool:
        with self._lock:
            return bool(self._kinds) and all(k.synced for k in self._kinds.values())

    def state_by_kind(self) -> dict[str, tuple[bool, int]]:
        """Per watched kind: whether it is in sync, and how many objects the cache holds (metrics read it)."""
        with self._lock:
            return {name: (k.synced, len(k.objects)) for name, k in self._kinds.items()}

    def wait_synced(self, timeout_s: float) -> bool:
        with self._lock:
            self._lock.wait_for(lambda: self._halted or (bool(self._kinds) and all(k.synced for k in self._kinds.values())),
                                timeout=timeout_s)
            return not self._halted and bool(self._kinds) and all(k.synced for k in self._kinds.values())

    def objects(self, specs: Sequence[ListSpec], wait_s: float | None = None) -> list[Manifest] | None:
        """Every cached object of these kinds, or None when the cache does not watch exactly them or is out of
        sync (the caller LISTs itself: never plan on a view that may be stale). Starts the watches if needed and
        waits for them (`wait_s`, default the settings' sync_timeout_s)."""
        snap = self.snapshot(specs, wait_s)
        return None if snap is None else snap[0]

    def snapshot(self, specs: Sequence[ListSpec], wait_s: float | None = None) -> tuple[list[Manifest], int] | None:
        """objects() and the version they are at, read together."""
        self.ensure(specs)
        with self._lock:
            if self._halted:
                return None
        if not self.wait_synced(self.settings.sync_timeout_s if wait_s is None else wait_s):
            return None
        with self._lock:
            if tuple(specs) != self._specs:
                return None
            return [o for k in self._kinds.values() for o in k.objects.values()], self._version

    def stop(self) -> None:
        """Close the watches and start none until resume(): a pass in flight then LISTs for itself."""
        with self._lock:
            self._halted = True
            self._lock.notify_all()
        self._stop_threads()

    def resume(self) -> None:
        with self._lock:
            self._halted = False

    def _stop_threads(self) -> None:
        with self._lock:
            self._stop.set()
            streams = [k.stream for k in self._kinds.values() if k.stream is not None]
            threads, self._threads = self._threads, []
            for k in self._kinds.values():
                k.synced = False
        for stream in streams:
            stream.stop()
        for t in threads:
            t.join(timeout=5)

    def close(self) -> None:
        self.stop()
        if self._own_kube is not None:
            self._own_kube.close()

    def resync(self, kinds: Sequence[str] | None = None) -> None:
        """Re-list these kinds (all by default) now, e.g. after the server refused a write as stale; returns once
        they are in sync again or after sync_timeout_s."""
        with self._lock:
            targets = [k for n, k in self._kinds.items() if kinds is None or n in kinds]
            for k in targets:
                k.reason = k.reason if k.relist else REQUESTED
                k.relist = True
                k.synced = False
            streams = [k.stream for k in targets if k.stream is not None]
        for stream in streams:
            stream.stop()
        self.wait_synced(self.settings.sync_timeout_s)

    # ------------------------------------------------------------------ kube.WriteObserver: our own writes

    @contextmanager
    def writing(self, ref: ObjectRef) -> Iterator[None]:
        key = _ref_key(ref)
        with self._lock:
            self._writing[key] = self._writing.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._writing.get(key, 1) - 1
                if left:
                    self._writing[key] = left
                else:
                    self._writing.pop(key, None)

    def wrote(self, manifest: Manifest) -> None:
        key = key_of(manifest)
        with self._lock:
            kind = self._kinds.get(key[0])
            self._own_rv[key] = _rv(manifest)
            self._deleting.discard(key)  # written again after our delete (a replace): its events are news again
            if kind is None:
                return
            held = kind.objects.get(key)
            if held is not None and (_rv(held) == _rv(manifest) or _older(_rv(manifest), _rv(held))):
                return  # the watch brought it first, or a newer state already
            kind.objects[key] = compact(manifest, kind.shared)
            self._version += 1

    def deleted(self, ref: ObjectRef) -> None:
        key = _ref_key(ref)
        with self._lock:
            kind = self._kinds.get(key[0])
            if kind is not None and key in kind.objects:  # else its DELETED event came first and was ours already
                self._deleting.add(key)

    # ------------------------------------------------------------------ the watch threads

    def _run(self, kind: _Kind, stop: threading.Event) -> None:
        delay = self.settings.backoff_initial_s
        while not stop.is_set():
            try:
                if kind.relist:
                    self._relist(kind, kind.reason)
                elif time.monotonic() - kind.last_list >= self.settings.resync_s:
                    self._relist(kind, PERIODIC)
                self._watch(kind, stop)
                delay = self.settings.backoff_initial_s  # a stream that ended at its timeout: resume at once
            except ApiException as err:
                if stop.is_set():
                    return
                if err.status == 410:  # too old: the history no longer reaches our resourceVersion
                    log.info("watch %s: %s; re-listing", kind.spec.kind, err.reason)
                    self._unsync(kind, EXPIRED)
                    continue
                delay = self._failed(kind, stop, f"HTTP {err.status} {err.reason}", delay)
            except (KubeError, urllib3.exceptions.HTTPError, OSError, ValueError) as err:
                if stop.is_set():
                    return
                delay = self._failed(kind, stop, str(err), delay)
            except Exception as err:  # a bug must not leave a dead thread behind a cache that says it is in sync
                if stop.is_set():
                    return
                log.exception("watch %s: unexpected error", kind.spec.kind)
                delay = self._failed(kind, stop, f"{type(err).__name__}: {err}", delay)

    def _unsync(self, kind: _Kind, reason: str) -> None:
        with self._lock:
            kind.synced = False
            if not kind.relist:
                kind.reason = reason if kind.last_list else START  # a first LIST that failed is still the start
            kind.relist = True
            self._lock.notify_all()

    def _failed(self, kind: _Kind, stop: threading.Event, why: str, delay: float) -> float:
        """A dropped stream or an unreachable server: out of sync until re-listed, after a jittered backoff."""
        self._unsync(kind, DROPPED)
        log.warning("watch %s failed (%s); re-listing in %.1fs", kind.spec.kind, why, delay)
        stop.wait(delay * (0.5 + random.random() / 2))
        return min(delay * 2, self.settings.backoff_max_s)

    def _relist(self, kind: _Kind, reason: str) -> None:
        spec = kind.spec
        items, rv = self._kube.list_versioned(spec.api_version, spec.kind, spec.label_selector)
        fresh = {key_of(o): o for o in items}  # list_versioned's items are compact projections already
        changes: list[CacheChange] = []
        with self._lock:
            self.relists += 1
            old = kind.objects
            first = not kind.last_list
            for key in old.keys() | fresh.keys():
                before, after = old.get(key), fresh.get(key)
                if _rv(before) == _rv(after):
                    continue
                self._version += 1
                if first:
                    continue
                change = self._classify(key, before, after, relist=True)
                if change is not None:
                    changes.append(change)
            kind.objects = fresh
            kind.shared = {}
            kind.rv = rv
            kind.relist = False
            kind.last_list = time.monotonic()
            kind.synced = True
            self._deleting -= {k for k in self._deleting if k[0] == spec.kind and k not in fresh}
            self._lock.notify_all()
        if self.counters is not None:
            self.counters.relisted(spec.kind, reason)
        self._report(changes)

    def _watch(self, kind: _Kind, stop: threading.Event) -> None:
        spec = kind.spec
        resource = self._kube.resource(spec.api_version, spec.kind)
        if resource is None:
            raise KubeError(0, "NotServed", f"{spec.kind} ({spec.api_version}) is no longer served")
        stream = k8s_watch.Watch()
        with self._lock:
            if stop.is_set():
                return
            kind.stream = stream
        deadline = kind.last_list + self.settings.resync_s
        # A quiet stream brings no event to check the deadline on: the server ends it in time for the re-list.
        timeout = max(1, min(math.ceil(self.settings.watch_timeout_s), math.ceil(deadline - time.monotonic())))
        try:
            # timeout_seconds set: the client then never retries a 410 by itself (we re-list instead).
            for event in stream.stream(self._kube.dynamic.get, resource, serialize=False,
                                       label_selector=spec.label_selector or None, resource_version=kind.rv,
                                       allow_watch_bookmarks=True, timeout_seconds=timeout,
                                       _request_timeout=(10, timeout + 30)):
                self._event(kind, event)
                if stop.is_set() or kind.relist or time.monotonic() >= deadline:
                    stream.stop()
        finally:
            with self._lock:
                kind.stream = None

    def _event(self, kind: _Kind, event: Mapping[str, Any]) -> None:
        etype = event.get("type")
        obj = event.get("raw_object") or event.get("object")
        if self.counters is not None and isinstance(etype, str):
            self.counters.event(kind.spec.kind, etype)
        if not isinstance(obj, dict):
            return
        rv = _rv(obj)
        if etype == "BOOKMARK":
            with self._lock:
                kind.rv = rv or kind.rv
            return
        if etype not in ("ADDED", "MODIFIED", "DELETED"):
            return
        obj.setdefault("apiVersion", kind.spec.api_version)
        obj.setdefault("kind", kind.spec.kind)
        key = key_of(obj)
        change = None
        with self._lock:
            kind.rv = rv or kind.rv
            held = kind.objects.get(key)
            if etype == "DELETED":
                if held is None:
                    self._deleting.discard(key)
                    return
                del kind.objects[key]
                self._own_rv.pop(key, None)
                self._version += 1
                change = self._classify(key, held, None)
            else:
                if held is not None and (_rv(held) == rv or _older(rv, _rv(held))):
                    return  # our own write, already stored from its answer, or a replay
                new = compact(obj, kind.shared)
                kind.objects[key] = new
                self._version += 1
                change = self._classify(key, held, new)
        self._report([change] if change is not None else [])

    def _is_own(self, key: Key, obj: Manifest | None) -> bool:
        return obj is not None and self._own_rv.get(key) == _rv(obj)

    def _classify(self, key: Key, before: Manifest | None, after: Manifest | None,
                  relist: bool = False) -> CacheChange | None:
        """None for our own writes; otherwise what kind of change (called with the lock held)."""
        if key in self._writing or self._is_own(key, after):
            return None
        if after is None:
            if key in self._deleting:
                self._deleting.discard(key)
                return None
            cause = DELETED
        elif key in self._deleting:
            return None  # the finalizers' last steps of an object we deleted
        elif before is None:
            cause = ADDED
        else:
            cause = CHANGED if _body(before) != _body(after) else STATUS
        obj = after or before or {}
        return CacheChange(key[0], key[1], key[2], self._model_of(obj), cause, relist)

    def _model_of(self, obj: Mapping[str, Any]) -> str:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        model = labels.get(LABEL_MODEL)
        if model:
            return str(model)
        workspace = labels.get(KAITO_WORKSPACE_LABEL)
        if not workspace:
            return ""
        held = self._kinds.get("Workspace")
        owner = held.objects.get(("Workspace", str(labels.get(KAITO_WORKSPACE_NS_LABEL) or ""), str(workspace))) \
            if held is not None else None
        return str(((owner or {}).get("metadata") or {}).get("labels", {}).get(LABEL_MODEL) or "")

    def _report(self, changes: Sequence[CacheChange]) -> None:
        callback = self.on_change
        if callback is None:
            return
        for change in changes:
            try:
                callback(change)
            except Exception:  # a listener's bug must not stop the watch
                log.exception("watch listener failed on %s", change)


__all__ = ["CacheChange", "WatchCache", "WatchCounters", "WatchSettings", "compact"]
