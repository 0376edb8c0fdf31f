"""Leader election with a coordination.k8s.io/v1 Lease, so several replicas can run and only one acts.

Follows client-go's rules: expiry is judged by when *we* last saw the record change (no trust in remote clocks),
writes carry the resourceVersion read (a 409 means someone else won), and a leader that cannot renew within
the renew deadline stops acting at once.
"""

from __future__ import annotations

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

    @property
    def is_leader(self) -> bool:
        with self._lock:
            if self._leader and self.clock() - self._last_renew > self.settings.renew_deadline_s:
                self._set_leader(False, "renew deadline passed")
            return self._leader

    @property
    def identity(self) -> str:
        return self.settings.identity

    def _set_leader(self, value: bool, why: str) -> None:
        if value == self._leader:
            return
        self._leader = value
        log.warning("leader election: %s (%s)", "became leader" if value else "lost leadership", why,
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
                log.warning("leader election: cannot read lease: %s", err.reason)
                return self.is_leader
            try:
                self.api.create_namespaced_lease(s.namespace, self._lease_body(None, now_wall, acquire=True),
                                                 _request_timeout=deadline)
            except ApiException as create_err:
                log.info("leader election: lost the race to create the lease (%s)", create_err.status)
                return self.is_leader
            with self._lock:
                self._last_renew = sent
                self._set_leader(True, "created lease")
            return True
        except Exception as err:  # connection errors: keep what we have until the deadline says otherwise
            log.warning("leader election: API unreachable: %s", err)
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
            with self._lock:
                self._set_leader(False, f"held by {holder}")
            return False
        body = self._lease_body(lease, now_wall, acquire=holder != s.identity)
        try:
            self.api.replace_namespaced_lease(s.name, s.namespace, body, _request_timeout=deadline)
        except ApiException as err:
            log.info("leader election: update refused (%s): another replica acted first", err.status)
            with self._lock:
                self._set_leader(False, f"update refused ({err.status})")
            return False
        except Exception as err:
            log.warning("leader election: renew failed: %s", err)
            return self.is_leader
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
            log.info("leader election: release failed: %s", err)
        with self._lock:
            self._set_leader(False, "released")

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.settings.retry_period_s)
        self.release()
