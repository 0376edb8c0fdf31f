"""Leader election against the sandbox emulator's coordination.k8s.io Lease API.

Time is an injected clock shared by both electors, so expiry and takeover are driven, never slept for.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.sandbox.apiserver import ApiServer
from gitops_kaito.sandbox.hooks import Fault
from gitops_kaito.service.daemon import Daemon, DaemonSettings
from gitops_kaito.service.leader import PROBLEM_LOG_EVERY_S, LeaderElector, LeaseSettings
from gitops_kaito.service.metrics import Metrics

NS = "gitops-kaito"
LEASE = "gitops-kaito-leader"


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer() as srv:
        api = _api(srv, "gitops-kaito-tests")
        client.CoreV1Api(api).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        api.close()
        yield srv


def _api(srv: ApiServer, agent: str = "gitops-kaito/test") -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = srv.url
    api = client.ApiClient(cfg)
    api.user_agent = agent
    return api


@dataclass(frozen=True)
class _Report:
    ok: bool
    summary: str


def _elector(srv: ApiServer, identity: str, clock: FakeClock, changes: list[tuple[str, bool]] | None = None
             ) -> LeaderElector:
    settings = LeaseSettings(name=LEASE, namespace=NS, identity=identity, lease_duration_s=15,
                             renew_deadline_s=10, retry_period_s=2)

    def record(value: bool) -> None:
        if changes is not None:
            changes.append((identity, value))

    return LeaderElector(client.CoordinationV1Api(_api(srv)), settings, on_change=record, clock=clock)


def _holder(srv: ApiServer) -> str:
    api = _api(srv, "gitops-kaito-tests")
    try:
        lease: Any = client.CoordinationV1Api(api).read_namespaced_lease(LEASE, NS)
        return str(lease.spec.holder_identity or "")
    finally:
        api.close()


def test_first_elector_creates_the_lease_and_the_second_waits(server: ApiServer) -> None:
    clock = FakeClock()
    a, b = _elector(server, "a", clock), _elector(server, "b", clock)
    assert a.step() is True
    assert _holder(server) == "a"
    assert b.step() is False
    assert a.is_leader and not b.is_leader
    clock.advance(2)
    assert a.step() is True  # renewing keeps it
    assert b.step() is False


def test_never_two_leaders_in_a_driven_interleaving(server: ApiServer) -> None:
    """Random steps of two electors and clock jumps (some longer than the lease): at every point at most one leads,
    and leadership does change hands when the holder falls silent."""
    clock = FakeClock()
    electors = [_elector(server, "a", clock), _elector(server, "b", clock)]
    rng = random.Random(7)
    leaders_seen: set[str] = set()
    for _ in range(300):
        roll = rng.random()
        if roll < 0.35:
            electors[0].step()
        elif roll < 0.7:
            electors[1].step()
        else:
            clock.advance(rng.choice([0.5, 2, 4, 9, 16]))
        leading = [e.identity for e in electors if e.is_leader]
        assert len(leading) <= 1, f"both lead at t={clock.now}"
        leaders_seen.update(leading)
    assert leaders_seen == {"a", "b"}


def test_takeover_only_after_the_lease_expires(server: ApiServer) -> None:
    clock = FakeClock()
    changes: list[tuple[str, bool]] = []
    a, b = _elector(server, "a", clock, changes), _elector(server, "b", clock, changes)
    assert a.step()
    assert not b.step()  # b sees the record now and times it from here
    clock.advance(12)  # a is silent: past its renew deadline, before the lease's expiry
    assert not a.is_leader, "a leader that could not renew within the deadline must stop acting"
    assert not b.step(), "b must not take a lease that has not expired"
    clock.advance(4)  # 16s after b saw the record unchanged: expired
    assert b.step()
    assert _holder(server) == "b"
    assert not a.step(), "the old leader sees the new holder and stays a follower"
    assert changes == [("a", True), ("a", False), ("b", True)]


def test_renew_refused_stops_leading_at_once(server: ApiServer) -> None:
    clock = FakeClock()
    a = _elector(server, "a", clock)
    assert a.step()
    server.faults.add(Fault(method="PUT", path_regex=f"/leases/{LEASE}$", status=409, times=1))
    assert a.step() is False
    assert not a.is_leader
    assert a.step() is True  # the fault is gone and nobody else holds it: a leads again


def test_another_holder_stops_the_leader_at_once(server: ApiServer) -> None:
    clock = FakeClock()
    a = _elector(server, "a", clock)
    assert a.step()
    # Someone else (an operator, another replica after a partition) writes itself into the lease.
    api = _api(server, "gitops-kaito-tests")
    coord = client.CoordinationV1Api(api)
    lease: Any = coord.read_namespaced_lease(LEASE, NS)
    lease.spec.holder_identity = "intruder"
    coord.replace_namespaced_lease(LEASE, NS, lease)
    api.close()
    assert a.step() is False
    assert not a.is_leader


def test_release_on_stop_hands_over_without_waiting(server: ApiServer) -> None:
    clock = FakeClock()
    a, b = _elector(server, "a", clock), _elector(server, "b", clock)
    assert a.step()
    assert not b.step()
    a.release()
    assert not a.is_leader
    assert _holder(server) == ""
    assert b.step(), "a released lease is taken at once, without waiting for expiry"
    assert _holder(server) == "b"


def test_run_loop_releases_when_stopped(server: ApiServer) -> None:
    import threading

    a = _elector(server, "a", FakeClock())
    stop = threading.Event()
    stop.set()  # the loop exits after its first check; release must still run
    a.step()
    a.run(stop)
    assert not a.is_leader
    assert _holder(server) == ""


class SlowReplies(client.CoordinationV1Api):
    """The Lease API whose replies arrive `delay` (fake) seconds after the server acted: a slow network, not a
    changed server. Injected the way the daemon passes its own CoordinationV1Api."""

    def __init__(self, api: client.ApiClient, clock: FakeClock, delay: float) -> None:
        super().__init__(api)
        self.clock, self.delay = clock, delay

    def replace_namespaced_lease(self, *args: Any, **kwargs: Any) -> Any:
        reply = super().replace_namespaced_lease(*args, **kwargs)
        self.clock.advance(self.delay)
        return reply


def test_a_renew_answered_after_the_deadline_does_not_extend_leadership(server: ApiServer) -> None:
    clock = FakeClock()
    settings = LeaseSettings(name=LEASE, namespace=NS, identity="a", lease_duration_s=15, renew_deadline_s=10,
                             retry_period_s=2)
    slow = SlowReplies(_api(server), clock, delay=12)
    a = LeaderElector(slow, settings, clock=clock)
    assert a.step() and a.is_leader  # created the lease (no slow reply on create)
    clock.advance(2)
    assert not a.step(), "a renew whose reply took 12 s (deadline 10 s) still counted"
    assert not a.is_leader
    slow.delay = 0
    assert a.step() and a.is_leader, "a prompt renew leads again"


# -- a replica that cannot act says why ------------------------------------------------------------------------------

def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("gitops_kaito")]


def test_no_namespace_for_the_lease_is_an_error_with_the_fixes_at_a_bounded_rate(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gitops_kaito")
    with ApiServer() as srv:  # a fresh cluster: no gitops-kaito namespace
        clock = FakeClock()
        elector = _elector(srv, "a", clock)
        daemon = Daemon(DaemonSettings(), lambda ctx: _Report(True, "ok"), Metrics(), elector)
        for _ in range(10):  # 20 s of retries every 2 s
            assert elector.step() is False
            clock.advance(2)
        errors = _errors(caplog)
        assert len(errors) == 1, errors  # once, not a line per retry
        for fix in (f"namespace '{NS}' does not exist", f"kubectl create namespace {NS}", "--lease-namespace",
                    "--no-leader-election"):
            assert fix in errors[0], errors[0]
        probe = daemon.readiness()
        assert not probe.ok and probe.message.startswith("cannot act: ") and "--no-leader-election" in probe.message

        clock.advance(PROBLEM_LOG_EVERY_S)  # still broken a minute later: said again
        elector.step()
        assert len(_errors(caplog)) == 2

        api = _api(srv, "gitops-kaito-tests")
        client.CoreV1Api(api).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        api.close()
        assert elector.step() is True  # fixed: it acts, says so, and readiness no longer blames the Lease
        assert elector.problem == "" and "can be used again" in caplog.text
        assert daemon.readiness().message == "no successful pass yet"


def test_no_rbac_for_the_lease_names_the_verbs_and_the_role(server: ApiServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gitops_kaito")
    server.faults.add(Fault(method="GET", path_regex=f"/leases/{LEASE}$", status=403, times=None,
                            message=f'leases.coordination.k8s.io "{LEASE}" is forbidden'))
    elector = _elector(server, "a", FakeClock())
    assert elector.step() is False and elector.step() is False
    errors = _errors(caplog)
    assert len(errors) == 1, errors
    assert f"not allowed to get Lease {NS}/{LEASE} (403" in errors[0]
    assert "get, create and update on leases.coordination.k8s.io" in errors[0] and "deploy/rbac.yaml" in errors[0]
    assert "--no-leader-election" in errors[0]


def test_losing_the_race_to_create_the_lease_is_not_a_problem(server: ApiServer,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gitops_kaito")
    server.faults.add(Fault(method="POST", path_regex="/leases$", status=409, times=1))
    elector = _elector(server, "a", FakeClock())
    assert elector.step() is False
    assert elector.problem == "" and _errors(caplog) == []


def test_an_unreachable_api_is_reported_once_a_minute_not_per_retry(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gitops_kaito")
    srv = ApiServer().start()
    clock = FakeClock()
    elector = _elector(srv, "a", clock)
    srv.stop()  # each attempt now fails with its own connection error text
    for _ in range(5):
        assert elector.step() is False
        clock.advance(2)
    errors = _errors(caplog)
    assert len(errors) == 1 and "the API server is unreachable" in errors[0], errors
    assert elector.problem.startswith("leader election: the API server is unreachable")
