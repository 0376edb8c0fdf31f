"""Azure faults in aks mode: a model repository reconciled into agent pools through the real
azure-mgmt-containerservice client against the local ARM endpoint, with throttling, quota errors, failed
long-running operations and a reconciler restart in the middle of one. After every fault the invariant is
checked: exactly one pool per desired model, and no pool left behind for a model that is gone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_kaito.provision import agentpool as ap
from gitops_kaito.provision.agentpool import desired_pools, pool_name
from gitops_kaito.provision.aks import AksSettings, StaticTokenCredential
from gitops_kaito.provision.provisioner import AgentPoolProvisioner, PoolOutcome
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import RepoLoad
from gitops_kaito.sandbox.arm import ArmEmulator, ArmFault
from tests.aksfixtures import write_repo
from tests.faultkit import wait_until

WAIT = 20.0  # bound for LROs inside a pass; they finish in milliseconds here
MODELS = ["phi", "phi-b", "phi-c"]


class Azure:
    """The ARM endpoint, a repository in aks mode and a provisioner whose waits and clock the test controls."""

    def __init__(self, arm: ArmEmulator, repo: Path) -> None:
        self.arm = arm
        self.repo = repo
        self.sleeps: list[float] = []
        self.now = 1000.0
        self.prov = self.restart()

    def restart(self) -> AgentPoolProvisioner:
        """A new provisioner with no memory, as after a process restart."""
        s = self.arm.settings
        settings = AksSettings(s.subscription_id, s.resource_group, s.cluster_name, self.arm.url, s.location,
                               polling_interval_s=0.01, retry_total=0)
        self.prov = AgentPoolProvisioner.for_settings(settings, StaticTokenCredential(s.token),
                                                      sleep=self.sleeps.append, clock=lambda: self.now,
                                                      retry_failed_after_s=300)
        return self.prov

    def load(self, names: list[str]) -> RepoLoad:
        write_repo(self.repo, names)
        load = load_repository(self.repo)
        assert not load.errors, load.errors
        return load

    def sync(self, names: list[str], wait_s: float = WAIT) -> dict[str, PoolOutcome]:
        load = self.load(names)
        outcomes = self.prov.reconcile(desired_pools(load.models), revision="main@sha1:1111",
                                       keep_model_ids=load.discovered_ids, wait_s=wait_s)
        return {o.model_id: o for o in outcomes}

    def pools_by_model(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name in self.arm.pool_names():
            pool = self.arm.pool(name) or {}
            model = ((pool.get("properties") or {}).get("tags") or {}).get(ap.TAG_MODEL, "")
            out.setdefault(model, []).append(name)
        return out

    def assert_one_pool_per_model(self, names: list[str]) -> None:
        want = {f"ml.{n}": [pool_name(f"ml.{n}")] for n in names}
        assert self.pools_by_model() == want, "a duplicate, missing or leaked agent pool"

    def settled(self) -> bool:
        return all(state != "InProgress" for _, _, state in self.arm.operations())


@pytest.fixture
def az(tmp_path: Path) -> Iterator[Azure]:
    with ArmEmulator() as arm:
        yield Azure(arm, tmp_path / "repo")


def test_throttling_is_waited_out_without_duplicates(az: Azure) -> None:
    """Fault: ARM throttles (429 + Retry-After: 2) the pool LIST once and two pool PUTs. Checks: the provisioner
    waits what ARM asked (recorded, not slept), every model ends Ready, and each model has exactly one pool
    (a throttled PUT is retried on the same name, never as a second pool)."""
    az.arm.add_fault(ArmFault.throttled("LIST", retry_after=2, times=1))
    az.arm.add_fault(ArmFault.throttled("PUT", retry_after=2, times=2))
    out = az.sync(MODELS)
    assert {m: o.state for m, o in out.items()} == {f"ml.{n}": "Ready" for n in MODELS}, out
    assert az.sleeps.count(2.0) == 3, az.sleeps
    assert az.arm.request_log.count(method="PUT", status=429) == 2
    az.assert_one_pool_per_model(MODELS)


def test_quota_on_one_model_leaks_nothing_and_recovers(az: Azure) -> None:
    """Fault: QuotaExceeded on the PUT of phi-b's pool. Checks: phi-b is Failed with Azure's quota message and has
    no pool (no half-made pool), the others are Ready, the next pass backs off instead of hammering ARM, and
    after the back-off the pool is created once."""
    az.arm.add_fault(ArmFault.quota(pool_name("ml.phi-b")))
    out = az.sync(MODELS)
    assert (out["ml.phi-b"].state, out["ml.phi-b"].code) == ("Failed", "QuotaExceeded")
    assert "quota" in out["ml.phi-b"].message
    az.assert_one_pool_per_model(["phi", "phi-c"])
    puts = az.arm.request_log.count(method="PUT")
    again = az.sync(MODELS)
    assert again["ml.phi-b"].state == "Failed" and az.arm.request_log.count(method="PUT") == puts
    az.now += 301
    recovered = az.sync(MODELS)
    assert recovered["ml.phi-b"].state == "Ready"
    az.assert_one_pool_per_model(MODELS)


def test_failed_long_running_operation_is_retried_on_the_same_pool(az: Azure) -> None:
    """Fault: ARM accepts phi-c's PUT, then the long-running operation ends Failed (AllocationFailed). Checks:
    the pass reports Failed with Azure's code, the failed pool is retried in place on the next pass (never a
    second pool), and it ends Ready with one pool per model."""
    az.arm.add_fault(ArmFault.allocation_failed(pool_name("ml.phi-c")))
    out = az.sync(MODELS)
    assert (out["ml.phi-c"].state, out["ml.phi-c"].code) == ("Failed", "AllocationFailed"), out
    az.now += 301
    retried = az.sync(MODELS)
    assert retried["ml.phi-c"].state == "Ready", retried
    assert az.arm.request_log.count(method="PUT", pool=pool_name("ml.phi-c")) == 2
    az.assert_one_pool_per_model(MODELS)


def test_restart_in_the_middle_of_creates_then_model_removed_leaks_no_pool(az: Azure) -> None:
    """Fault: the reconciler restarts while three pool creates are in flight, and meanwhile phi-c's file is
    removed from the repository. Checks: the restarted process adopts the in-flight operations (no second PUT
    while they run), removes phi-c's pool once its create has finished, and ends with exactly one pool for
    each remaining model and none for phi-c."""
    with az.arm.holding():
        first = az.sync(MODELS, wait_s=0)
        assert {o.state for o in first.values()} == {"InProgress"}
        az.restart()
        during = az.sync(["phi", "phi-b"], wait_s=0)
        assert az.arm.request_log.count(method="PUT") == 3, "the restart started a second create"
        assert {o.state for o in during.values()} <= {"InProgress"}, during
    wait_until(az.settled, timeout=10, what="the held operations to finish")
    deadline_passes = 5
    for _ in range(deadline_passes):  # level-triggered: a few passes at most, each waiting for its own LROs
        done = az.sync(["phi", "phi-b"])
        if pool_name("ml.phi-c") not in az.arm.pool_names():
            break
    assert {m: o.state for m, o in done.items() if m != "ml.phi-c"} == {"ml.phi": "Ready", "ml.phi-b": "Ready"}
    az.assert_one_pool_per_model(["phi", "phi-b"])
    assert az.arm.request_log.count(method="PUT") == 3


def test_restart_in_the_middle_of_a_delete_does_not_recreate(az: Azure) -> None:
    """Fault: the reconciler restarts while phi-b's pool is being deleted (its model was removed). Checks: the
    restarted process waits for the delete instead of recreating or deleting twice, and no pool is left for
    phi-b."""
    az.sync(MODELS)
    with az.arm.holding():
        az.sync(["phi", "phi-c"], wait_s=0)
        az.restart()
        az.sync(["phi", "phi-c"], wait_s=0)
        assert az.arm.request_log.count(method="DELETE") == 1, "the restart deleted twice"
    wait_until(az.settled, timeout=10, what="the held delete to finish")
    az.sync(["phi", "phi-c"])
    az.assert_one_pool_per_model(["phi", "phi-c"])
    assert az.arm.request_log.count(method="PUT") == 3
