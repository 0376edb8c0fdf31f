"""Kubernetes Events on each Workspace the reconciler changes (Created, Updated, Replaced, Pruned, DriftCorrected),
and a Warning (DriftDetected) when it first sees drift it leaves in place (`drift: report`).

Repeats of one event are aggregated like kubelet does: the same Event's count and lastTimestamp go up. Events are
sent by the recorder's own threads, as client-go's broadcaster does, so a pass never waits for them: a first sync
of 1,000 models would otherwise send its 1,000 "Created" Events before it could report; closing the connection
sends what is still queued (while the API server keeps taking them: FLUSH_S without one done gives up).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gitops_kaito.core.plan import Action, Change
from gitops_kaito.model.objects import ObjectRef
from gitops_kaito.model.ownership import ANNOTATION_REVISION

log = logging.getLogger(__name__)

COMPONENT = "gitops-kaito"
SENDERS = 8  # Events in flight at once
MAX_QUEUED = 5000  # beyond this, new Events are dropped (logged), as client-go's broadcaster drops when full
FLUSH_S = 10.0  # closing a connection waits for queued Events while one was done in the last FLUSH_S
IDLE_S = 2.0  # a sender thread with nothing to send for this long ends (a new Event starts one again)
EVENT_KINDS = frozenset({"Workspace"})
_REASONS = {Action.CREATE: "Created", Action.UPDATE: "Updated", Action.REPLACE: "Replaced", Action.DELETE: "Pruned"}


def reason_for(change: Change) -> str | None:
    if change.action == Action.UPDATE and change.drift:
        return "DriftCorrected"
    return _REASONS.get(change.action)


def message_for(change: Change, reason: str) -> str:
    revision = ""
    if change.desired is not None:
        revision = ((change.desired.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REVISION, "")
    at = f" at {revision}" if revision else ""
    return {
        "Created": f"created from the repository{at}",
        "Updated": f"updated from the repository{at}",
        "Replaced": f"deleted and created again (immutable fields changed){at}",
        "Pruned": "deleted: its model request was removed from the repository",
        # No revision: a hand edit reverted again and again is one event with a growing count.
        "DriftCorrected": "a change made in the cluster was reverted to the repository's state",
    }[reason]


DRIFT_DETECTED = "DriftDetected"


def drift_message(change: Change) -> str:
    """The DriftDetected text: the fields and who changed them, nothing that moves between passes (a restarted
    process that reports the same drift again aggregates onto the same Event)."""
    who = f" by {', '.join(change.drift_by)}" if change.drift_by else ""
    return (f"changed in the cluster{who}, not corrected (drift: report): {', '.join(change.fields)}; "
            f"the repository's state returns with the next change of the model file or with drift: correct")


class EventRecorder:
    """Writes core/v1 Events for one client; counts repeats of (object, reason, message) on one Event.

    Plain JSON requests through the ApiClient: CoreV1Api and its generated models would import ~250 pydantic
    classes on the first Event (0.6 s, once per process, in the middle of the first pass).
    """

    def __init__(self, api_client: client.ApiClient, component: str = COMPONENT,
                 request_timeout_s: float | None = 30.0) -> None:
        self.api_client = api_client
        self.component = component
        self.request_timeout_s = request_timeout_s
        self._counts: dict[tuple[str, str], int] = {}
        self._writing: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # queued or being sent
        self._done = 0  # sent or failed, ever
        self._senders = 0
        self.dropped = 0
        # Drift already reported on this connection, by object: its fields. Forgotten once the object no longer
        # drifts, so drift that comes back is reported again; a pass that sees the same drift says nothing.
        self.drift_seen: dict[str, tuple[str, ...]] = {}
        self.drift_lock = threading.Lock()

    def post(self, send: Callable[[], None]) -> bool:
        """Queue `send` (one Event) for the sender threads; False when the queue is full and it was dropped."""
        with self._lock:
            if self._pending >= MAX_QUEUED:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("%d Kubernetes Event(s) dropped: more than %d queued", self.dropped, MAX_QUEUED)
                return False
            self._pending += 1
            start = self._senders < SENDERS
            if start:
                self._senders += 1
        self._queue.put(send)
        if start:
            threading.Thread(target=self._send, name="events", daemon=True).start()
        return True

    def _send(self) -> None:
        while True:
            try:
                send = self._queue.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # a post between the timeout and here is still served
                        self._senders -= 1
                        return
                continue
            try:
                send()
            except Exception as err:  # an Event must never fail anything
                log.info("could not record an event: %s", err)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._done += 1
                    self._idle.notify_all()  # flush counts its timeout from the last Event done

    def flush(self, timeout_s: float = FLUSH_S) -> bool:
        """Wait until every queued Event was sent (or failed); False when `timeout_s` passed with none of them done.

        The timeout counts from the last Event done, not from the call: 5,000 Events of a first sync take a while
        against an API server 20 ms away, and are all sent; an API server that stopped answering is given up on."""
        with self._lock:
            while self._pending:
                before = self._done
                self._idle.wait(timeout_s)
                if self._done == before:
                    return False
            return True

    def record(self, ref: ObjectRef, reason: str, message: str, uid: str | None = None, type_: str = "Normal") -> None:
        namespace = ref.namespace or "default"
        # The uid is part of the identity (as in kubelet's EventCorrelator): a recreated object starts its own Events
        # instead of bumping the count on one that names the object before it.
        key = hashlib.sha256(f"{ref}|{uid or ''}|{reason}|{message}".encode()).hexdigest()[:16]
        name = f"{ref.name}.{key}"
        with self._lock:
            one = self._writing.setdefault((namespace, name), threading.Lock())
        # One Event is written by one sender at a time: two read-then-bump rounds at once would lose a count.
        with one:
            self._record(ref, namespace, name, reason, message, uid, type_)

    def _record(self, ref: ObjectRef, namespace: str, name: str, reason: str, message: str, uid: str | None,
                type_: str) -> None:
        now = datetime.now(UTC)
        with self._lock:
            known = self._counts.get((namespace, name))
        if known is not None:
            try:
                self._bump(namespace, name, known + 1, now)
                return
            except ApiException as err:
                if err.status != 404:  # expired (events live about an hour): create it again
                    raise
        involved = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "namespace": namespace}
        if uid:
            involved["uid"] = uid
        body = {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved, "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": now.isoformat(), "lastTimestamp": now.isoformat(),
            "source": {"component": self.component}, "reportingComponent": self.component,
            "reportingInstance": self.component,
        }
        try:
            self._request("POST", f"{_events_path(namespace)}", body)
            count = 1
        except ApiException as err:
            if err.status != 409:
                raise
            # Another replica (or an earlier run of this one) wrote it: aggregate onto it.
            existing = self._request("GET", f"{_events_path(namespace)}/{name}")
            count = int(existing.get("count") or 1) + 1
            self._bump(namespace, name, count, now)
        with self._lock:
            self._counts[(namespace, name)] = count

    def _bump(self, namespace: str, name: str, count: int, now: datetime) -> None:
        self._request("PATCH", f"{_events_path(namespace)}/{name}", {"count": count, "lastTimestamp": now.isoformat()},
                      content_type="application/merge-patch+json")
        with self._lock:
            self._counts[(namespace, name)] = count

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 content_type: str = "application/json") -> dict[str, Any]:
        """One call; raises ApiException (with .status) for a non-2xx answer, like the generated API does."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        request = self.api_client.param_serialize(method, path, header_params=headers, body=body,
                                                  auth_settings=["BearerToken"])
        response = self.api_client.call_api(*request, _request_timeout=self.request_timeout_s)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        loaded: Any = json.loads(data) if data else {}
        return loaded if isinstance(loaded, dict) else {}


def _events_path(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/events"


# One recorder per connection (its repeat counts live as long as the connection), dropped with it. Keyed by the
# Kube object, not its ApiClient: the recorder holds the ApiClient, and a weak key its own value holds never dies.
_recorders: weakref.WeakKeyDictionary[Any, EventRecorder] = weakref.WeakKeyDictionary()


def _recorder(kube: Any) -> EventRecorder | None:
    api_client = getattr(kube, "api_client", None)
    if api_client is None:  # a test double without a cluster behind it
        return None
    recorder = _recorders.get(kube)
    if recorder is None or recorder.api_client is not api_client:
        recorder = _recorders[kube] = EventRecorder(api_client)
        if hasattr(kube, "on_close"):
            kube.on_close(_flush_on_close(recorder))
    return recorder


def _flush_on_close(recorder: EventRecorder) -> Callable[[], None]:
    def flush() -> None:
        if not recorder.flush(FLUSH_S):
            log.warning("Kubernetes Events not sent: none was taken by the API server in %.0f s", FLUSH_S)

    return flush


def flush(kube: Any, timeout_s: float = FLUSH_S) -> bool:
    """Wait until the Events queued on this connection were sent (tests, and anything about to read them back)."""
    recorder = _recorders.get(kube)
    return recorder.flush(timeout_s) if recorder is not None else True


def record_drift(kube: Any, reported: Sequence[Change]) -> int:
    """A Warning DriftDetected on each Workspace whose drift (`drift: report`, left in place) this connection has
    not reported yet, or whose drifted fields changed; `reported` is every such change of one pass (all kinds).
    Never raises. Returns how many Events were written.

    "Already reported" lives with the connection: the daemon reports a drift once; separate `sync` runs each report
    it again, onto the same Event (its count goes up)."""
    recorder = _recorder(kube)
    if recorder is None:
        return 0
    now = {str(c.ref): c for c in reported if c.ref.kind in EVENT_KINDS}
    with recorder.drift_lock:  # a sender thread unmarks a drift whose Event failed
        for gone in set(recorder.drift_seen) - set(now):
            del recorder.drift_seen[gone]
    written = 0
    for key, change in now.items():
        with recorder.drift_lock:
            if recorder.drift_seen.get(key) == change.fields:
                continue
            # Marked reported now (the next pass must not queue it again while it is still being sent) and
            # unmarked when sending fails, so the next pass tries again.
            recorder.drift_seen[key] = change.fields
        uid = ((change.live or {}).get("metadata") or {}).get("uid")

        def send(change: Change = change, key: str = key, uid: Any = uid) -> None:
            try:
                recorder.record(change.ref, DRIFT_DETECTED, drift_message(change), uid=uid, type_="Warning")
            except Exception as err:
                with recorder.drift_lock:
                    if recorder.drift_seen.get(key) == change.fields:
                        del recorder.drift_seen[key]
                log.info("could not record event %s on %s: %s", DRIFT_DETECTED, change.ref, err)

        if recorder.post(send):
            written += 1
        else:
            with recorder.drift_lock:
                recorder.drift_seen.pop(key, None)
    return written


def record_changes(kube: Any, changes: Iterable[Change], uids: Mapping[ObjectRef, str] | None = None) -> int:
    """Queue an Event for each done change of a Workspace; never raises (Events are best effort). Returns how many
    were queued.

    `uids`: the uid each write was answered with. An Event names the object as it now is (`kubectl describe` finds
    Events by the object's uid): a created or replaced object's new uid, never the deleted one's; a prune the uid
    of what was deleted."""
    recorder = _recorder(kube)
    if recorder is None:
        return 0
    written = 0
    for change in changes:
        reason = reason_for(change)
        if reason is None or change.ref.kind not in EVENT_KINDS:
            continue
        uid = (uids or {}).get(change.ref) or (
            ((change.live or {}).get("metadata") or {}).get("uid") if change.action in (Action.UPDATE, Action.DELETE)
            else None)
        if recorder.post(functools.partial(recorder.record, change.ref, reason, message_for(change, reason), uid=uid)):
            written += 1
    return written
