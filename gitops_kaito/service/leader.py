"""Leader election with a coordination.k8s.io/v1 Lease, so several replicas can run and only one acts.

Follows client-go's rules: expiry is judged by when *we* last saw the record change (no trust in remote clocks),
writes carry the resourceVersion read (a 409 means someone else won), and a leader that cannot renew within
the renew deadline stops acting at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

# While the Lease cannot be used (no namespace, no RBAC, no API), the reason is logged at error level when it first
# shows or changes, and then at most this often: loud enough to be found, never a line per retry.
PROBLEM_LOG_EVERY_S = 60.0


def default_identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class LeaseSettings:
    name: str = "gitops-kaito-leader"
    namespace: str = "gitops-kaito"
    identity: str = field(default_factory=default_identity)
    lease_duration_s: float = 15.0
    renew_deadline_s: float = 10.0
    retry_period_s: float = 2.0


def _message(err: ApiException) -> str:
    """The Status message of an API error (its body is JSON, where the quotes around a name are escaped)."""
    body = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else str(err.body or "")
    try:
        return str(json.loads(body).get("message") or "")
    except (ValueError, AttributeError):
        return body


class LeaderElector:
    """Call `step()` periodically (or `run()` in a thread); `is_leader` says whether to act right now."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        settings: LeaseSettings,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.settings = settings
        self.on_change = on_change
        self.clock = clock
        self._leader = False
        self._last_renew = 0.0
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) as last read
        self._observed_at = 0.0
        self._lock = threading.Lock()
        self._problem = ""  # why this replica cannot take part in the election now ("" = it can)
        self._problem_kind = ""
        self._problem_logged_at = 0.0

    @property
    def is_leader(self) -> bool:
        with self._lock:
            if self._leader and self.clock() - self._last_renew > self.settings.renew_deadline_s:
                self._set_leader(False, "renew deadline passed")
            return self._leader

    @property
    def identity(self) -> str:
        return self.settings.identity

    @property
    def problem(self) -> str:
        """Why this replica cannot act and what to do about it, while the Lease cannot be read or written; else ""."""
        return self._problem

    @property
    def holder(self) -> str:
        """The Lease's holder as last read ("" before the first read)."""
        return self._observed[0] if self._observed else ""

    def _trouble(self, problem: str, kind: str = "") -> None:
        """Record why this replica cannot act; logged when its kind changes and then once per PROBLEM_LOG_EVERY_S
        (`kind` groups texts that differ only in detail, e.g. each connection error's own wording)."""
        now = self.clock()
        kind = kind or problem
        if kind != self._problem_kind or now - self._problem_logged_at >= PROBLEM_LOG_EVERY_S:
            log.error("%s", problem, extra={"fields": {"identity": self.settings.identity, "lease": self.settings.name,
                                                      "lease_namespace": self.settings.namespace}})
            self._problem_logged_at = now
        self._problem, self._problem_kind = problem, kind

    def _fine(self) -> None:
        if self._problem:
            log.info("leader election: the Lease %s/%s can be used again", self.settings.namespace, self.settings.name)
            self._problem = self._problem_kind = ""

    def _refused(self, err: ApiException, verb: str) -> str | None:
        """The problem an answer of the API server means, with what to do; None when it is part of a normal race."""
        s = self.settings
        where = f"Lease {s.namespace}/{s.name}"
        one_replica = "or run a single replica with --no-leader-election"
        if err.status == 404 and f'namespaces "{s.namespace}" not found' in _message(err):
            return (f"leader election: the Lease's namespace {s.namespace!r} does not exist, so this replica never acts: "
                    f"create it (kubectl create namespace {s.namespace}), point --lease-namespace "
                    f"(GITOPS_KAITO_LEASE_NAMESPACE) at a namespace that exists, {one_replica}")
        if err.status in (401, 403):
            return (f"leader election: not allowed to {verb} {where} ({err.status} {err.reason}), so this replica never "
                    f"acts: grant its service account get, create and update on leases.coordination.k8s.io in "
                    f"{s.namespace} (the Role in deploy/rbac.yaml), point --lease-namespace at a namespace where it "
                    f"has them, {one_replica}")
        return None

    def _set_leader(self, value: bool, why: str) -> None:
        if value == self._leader:
            return
        self._leader = value
        # Leading is routine; losing the lead while acting is worth a look.
        log.log(logging.INFO if value else logging.WARNING, "leader election: %s (%s)",
                "became leader" if value else "lost leadership", why,
                extra={"fields": {"identity": self.settings.identity, "lease": self.settings.name}})
        if self.on_change:
            self.on_change(value)

    def step(self) -> bool:
        """One acquire-or-renew attempt. Returns whether we lead afterwards."""
        s = self.settings
        now_wall = datetime.now(UTC)
        # Leadership counts from when the request was sent, not from when its reply came: a reply slower than the
        # renew deadline must not extend it past the point where another replica may take over.
        sent = self.clock()
        deadline = s.renew_deadline_s
        try:
            lease = self.api.read_namespaced_lease(s.name, s.namespace, _request_timeout=deadline)
        except ApiException as err:
            if err.status != 404:
                self._trouble(self._refused(err, "get") or
                              f"leader election: cannot read Lease {s.namespace}/{s.name}: {err.status} {err.reason}")
                return self.is_leader
            try:
                self.api.create_namespaced_lease(s.namespace, self._lease_body(None, now_wall, acquire=True),
                                                 _request_timeout=deadline)
            except ApiException as create_err:
                problem = self._refused(create_err, "create")
                if problem:
                    self._trouble(problem)
                elif create_err.status == 409:
                    self._fine()
                    log.info("leader election: another replica created the Lease first")
                else:
                    self._trouble(f"leader election: cannot create Lease {s.namespace}/{s.name}: "
                                  f"{create_err.status} {create_err.reason}")
                return self.is_leader
            except Exception as create_err:
                self._trouble(f"leader election: the API server is unreachable: {create_err}", "unreachable")
                return self.is_leader
            self._fine()
            with self._lock:
                self._last_renew = sent
                self._set_leader(True, "created lease")
            return True
        except Exception as err:  # connection errors: keep what we have until the deadline says otherwise
            self._trouble(f"leader election: the API server is unreachable: {err}", "unreachable")
            return self.is_leader

        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        record = (holder, str(spec.renew_time))
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()
        duration = float(spec.lease_duration_seconds or s.lease_duration_s)
        expired = self.clock() - self._observed_at > duration
        if holder and holder != s.identity and not expired:
            self._fine()  # a follower only needs to read the Lease
            with self._lock:
                self._set_leader(False, f"held by {holder}")
            return False
        body = self._lease_body(lease, now_wall, acquire=holder != s.identity)
        try:
            self.api.replace_namespaced_lease(s.name, s.namespace, body, _request_timeout=deadline)
        except ApiException as err:
            problem = self._refused(err, "update")
            if problem:
                self._trouble(problem)
            else:
                log.info("leader election: update refused (%s): another replica acted first", err.status)
            with self._lock:
                self._set_leader(False, f"update refused ({err.status})")
            return False
        except Exception as err:
            log.warning("leader election: renew failed: %s", err)
            return self.is_leader
        self._fine()
        with self._lock:
            self._last_renew = sent
            if self.clock() - sent > s.renew_deadline_s:
                self._set_leader(False, "the renew answered after the renew deadline")
                return False
            self._set_leader(True, "renewed" if holder == s.identity else f"took over from {holder or 'nobody'}")
        return True

    def _lease_body(self, lease: Any, now: datetime, acquire: bool) -> client.V1Lease:
        s = self.settings
        spec = client.V1LeaseSpec(
            holder_identity=s.identity,
            lease_duration_seconds=int(s.lease_duration_s),
            renew_time=now,
            acquire_time=now if acquire or lease is None else lease.spec.acquire_time,
            lease_transitions=(
                ((lease.spec.lease_transitions or 0) + (1 if acquire else 0)) if lease is not None else 0
            ),
        )
        meta = client.V1ObjectMeta(name=s.name, namespace=s.namespace)
        if lease is not None:
            meta.resource_version = lease.metadata.resource_version
        return client.V1Lease(metadata=meta, spec=spec)

    def release(self) -> None:
        """Give the lease up on shutdown so another replica takes over without waiting for expiry."""
        if not self._leader:
            return
        s = self.settings
        try:
            lease = self.api.read_namespaced_lease(s.name, s.namespace)
            if lease.spec and lease.spec.holder_identity == s.identity:
                lease.spec.holder_identity = ""
                lease.spec.lease_duration_seconds = 1
                self.api.replace_namespaced_lease(s.name, s.namespace, lease)
        except Exception as err:
            log.warning("leader election: release failed: %s", err)
        with self._lock:
            self._set_leader(False, "released")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.settings.retry_period_s)
        self.release()
