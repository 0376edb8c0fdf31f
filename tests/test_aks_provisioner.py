"""The agent-pool provisioner with the REAL azure-mgmt-containerservice client against the local ARM endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields, replace

import pytest

from gitops_kaito.provision import agentpool as ap
from gitops_kaito.provision.agentpool import desired_pool
from gitops_kaito.provision.aks import AksSettings, StaticTokenCredential
from gitops_kaito.provision.pools import INVALID_POOL, PoolPlan, PoolRunner
from gitops_kaito.provision.provisioner import AgentPoolProvisioner, PoolOutcome
from gitops_kaito.sandbox.arm import ArmEmulator, ArmFault
from tests.fixtures_cluster import wait_until
from tests.test_aks_agentpool import Model, model

WAIT = 20.0  # upper bound for LROs in a pass; they finish in milliseconds here



class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def arm() -> Iterator[ArmEmulator]:
    with ArmEmulator() as emulator:
        yield emulator


class Harness:
    def __init__(self, arm: ArmEmulator) -> None:
        self.arm = arm
        self.sleeps: list[float] = []
        self.clock = FakeClock()

    @property
    def settings(self) -> AksSettings:
        s = self.arm.settings
        return AksSettings(s.subscription_id, s.resource_group, s.cluster_name, self.arm.url, s.location,
                           polling_interval_s=0.01, retry_total=0)

    def provisioner(self, token: str | None = None, **kw: object) -> AgentPoolProvisioner:
        return AgentPoolProvisioner.for_settings(
            self.settings, StaticTokenCredential(token or self.arm.settings.token),
            sleep=self.sleeps.append, clock=self.clock, **kw)  # type: ignore[arg-type]

    def puts(self, pool: str | None = None) -> int:
        return self.arm.request_log.count(method="PUT", pool=pool)

    def props(self, name: str) -> dict:
        pool = self.arm.pool(name)
        assert pool is not None, f"pool {name} does not exist"
        return pool["properties"]


@pytest.fixture
def h(arm: ArmEmulator) -> Harness:
    return Harness(arm)


def one(outcomes: tuple[PoolOutcome, ...], pool: str) -> PoolOutcome:
    matches = [o for o in outcomes if o.pool == pool]
    assert len(matches) == 1, outcomes
    return matches[0]


PHI = desired_pool(model("phi"))


def test_create_then_noop(h: Harness) -> None:
    prov = h.provisioner()
    out = one(prov.reconcile([PHI], revision="main@sha1:aaa", wait_s=WAIT), PHI.name)
    assert (out.action, out.state, out.code) == ("create", "Ready", "")
    props = h.props(PHI.name)
    assert props["provisioningState"] == "Succeeded"
    assert props["vmSize"] == "Standard_NC24ads_A100_v4" and props["count"] == 1 and props["mode"] == "User"
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["gpuProfile"] == {"driver": "Install"}
    assert props["nodeLabels"]["nvidia.com/gpu.count"] == "1"
    assert props["tags"][ap.TAG_MODEL] == "ml.phi" and props["tags"][ap.TAG_REVISION] == "main@sha1:aaa"

    # The next pass, even at a new revision, changes nothing.
    out = one(prov.reconcile([PHI], revision="main@sha1:bbb"), PHI.name)
    assert (out.action, out.state) == ("noop", "Ready")
    assert h.puts() == 1


def test_operations_are_started_not_awaited_and_run_concurrently(h: Harness) -> None:
    other = desired_pool(model("llama"))
    prov = h.provisioner()
    with h.arm.holding():
        outs = prov.reconcile([PHI, other], revision="r1")
        assert [o.state for o in outs] == ["InProgress", "InProgress"]
        assert sorted(op for op in h.arm.operations() if op[2] == "InProgress") == sorted(
            [("create", PHI.name, "InProgress"), ("create", other.name, "InProgress")])
    wait_until(lambda: all(h.props(n)["provisioningState"] == "Succeeded" for n in (PHI.name, other.name)))
    assert [o.state for o in prov.reconcile([PHI, other], revision="r1")] == ["Ready", "Ready"]


def test_scale_and_hand_changes_are_corrected(h: Harness) -> None:
    prov = h.provisioner()
    prov.reconcile([PHI], revision="r1", wait_s=WAIT)
    two = desired_pool(model("phi", nodes=2))
    out = one(prov.reconcile([two], revision="r2", wait_s=WAIT), PHI.name)
    assert (out.action, out.state) == ("scale", "Ready")
    assert h.props(PHI.name)["count"] == 2

    h.arm.edit_pool(PHI.name, count=5, nodeLabels={"apps": "someone-else"})
    out = one(prov.reconcile([two], revision="r2", wait_s=WAIT), PHI.name)
    assert (out.action, out.state) == ("scale", "Ready")
    props = h.props(PHI.name)
    assert props["count"] == 2 and props["nodeLabels"] == dict(two.labels)

    h.arm.edit_pool(PHI.name, nodeTaints=[])
    out = one(prov.reconcile([two], revision="r2", wait_s=WAIT), PHI.name)
    assert (out.action, out.state) == ("update", "Ready")
    assert h.props(PHI.name)["nodeTaints"] == ["sku=gpu:NoSchedule"]


def test_pool_deleted_by_hand_is_recreated(h: Harness) -> None:
    prov = h.provisioner()
    prov.reconcile([PHI], revision="r1", wait_s=WAIT)
    h.arm.remove_pool(PHI.name)
    out = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert (out.action, out.state) == ("create", "Ready")
    assert h.arm.pool_names() == [PHI.name]


def test_delete_prunes_ours_and_untagged_pools_survive(h: Harness) -> None:
    h.arm.seed_pool("userpool", {"vmSize": "Standard_NC24ads_A100_v4", "count": 2, "tags": {"team": "research"}})
    h.arm.seed_pool("nodepool1", {"vmSize": "Standard_D4s_v5", "count": 1, "mode": "System"})
    prov = h.provisioner()
    prov.reconcile([PHI], revision="r1", wait_s=WAIT)
    assert h.arm.pool_names() == sorted([PHI.name, "userpool", "nodepool1"])

    out = one(prov.reconcile([], revision="r2", wait_s=WAIT), PHI.name)
    assert (out.action, out.state, out.model_id) == ("delete", "Deleted", "ml.phi")
    assert h.arm.pool_names() == ["nodepool1", "userpool"]
    assert h.arm.request_log.count(method="DELETE") == 1
    assert h.arm.request_log.count(method="DELETE", pool="userpool") == 0


def test_name_taken_by_foreign_pool_is_a_conflict(h: Harness) -> None:
    h.arm.seed_pool(PHI.name, {"vmSize": "Standard_D4s_v5", "count": 1})
    out = one(h.provisioner().reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert (out.state, out.code) == ("Conflict", "PoolNameTaken")
    assert h.puts() == 0 and h.props(PHI.name)["vmSize"] == "Standard_D4s_v5"


def test_vm_size_change_replaces_the_pool(h: Harness) -> None:
    prov = h.provisioner()
    prov.reconcile([PHI], revision="r1", wait_s=WAIT)
    bigger = replace(PHI, vm_size="Standard_NC48ads_A100_v4")

    blocked = one(prov.reconcile([bigger], revision="r2", allow_replace=False), PHI.name)
    assert (blocked.action, blocked.state, blocked.code) == ("replace", "Blocked", "ReplaceRequired")
    assert h.arm.request_log.count(method="DELETE") == 0

    out = one(prov.reconcile([bigger], revision="r2", wait_s=WAIT), PHI.name)
    assert out.state == "Ready"
    assert h.props(PHI.name)["vmSize"] == "Standard_NC48ads_A100_v4"
    assert h.arm.request_log.count(method="DELETE") == 1
    # AKS refuses a vmSize change in place; the provisioner never tried one.
    assert h.arm.request_log.count(status=400) == 0


def test_quota_error_is_reported_and_backed_off(h: Harness) -> None:
    h.arm.add_fault(ArmFault.quota())
    prov = h.provisioner(retry_failed_after_s=300)
    out = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert (out.state, out.code) == ("Failed", "QuotaExceeded")
    assert "Cores quota" in out.message
    assert h.arm.pool_names() == []

    again = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert (again.state, again.code) == ("Failed", "QuotaExceeded") and "next attempt in" in again.message
    assert h.puts() == 1

    h.clock.now += 301
    recovered = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert recovered.state == "Ready" and h.puts() == 2


def test_sku_not_available_on_the_operation_result(h: Harness) -> None:
    h.arm.add_fault(ArmFault.sku_not_available())
    prov = h.provisioner()
    out = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert (out.state, out.code) == ("Failed", "SkuNotAvailable")
    assert "not available in location" in out.message
    assert h.props(PHI.name)["provisioningState"] == "Failed"


def test_async_failure_between_passes_reaches_the_next_pass(h: Harness) -> None:
    h.arm.add_fault(ArmFault.allocation_failed())
    prov = h.provisioner()
    first = one(prov.reconcile([PHI], revision="r1"), PHI.name)
    assert first.state == "InProgress"
    wait_until(lambda: h.props(PHI.name)["provisioningState"] == "Failed")
    second = one(prov.reconcile([PHI], revision="r1"), PHI.name)
    assert (second.action, second.state, second.code) == ("retry", "Failed", "AllocationFailed")
    assert h.puts() == 1


def test_in_progress_409_means_wait_not_a_second_pool(h: Harness) -> None:
    h.arm.add_fault(ArmFault.in_progress(PHI.name))
    out = one(h.provisioner().reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert (out.state, out.code) == ("InProgress", "OperationNotAllowed")
    assert "in progress" in out.message
    assert h.puts() == 1 and h.arm.pool_names() == []


def test_throttling_respects_retry_after(h: Harness) -> None:
    h.arm.add_fault(ArmFault.throttled("PUT", retry_after=7))
    out = one(h.provisioner().reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert out.state == "Ready"
    assert h.sleeps == [7.0]
    assert h.arm.request_log.count(method="PUT", status=429) == 1 and h.puts() == 2


def test_long_retry_after_is_reported_not_slept(h: Harness) -> None:
    h.arm.add_fault(ArmFault.throttled("LIST", retry_after=3600))
    out = one(h.provisioner().reconcile([PHI], revision="r1"), PHI.name)
    assert (out.state, out.code, out.retry_after_s) == ("Throttled", "TooManyRequests", 3600.0)
    assert h.sleeps == [] and h.puts() == 0


def test_auth_failure_is_reported_once_not_retried(h: Harness) -> None:
    other = desired_pool(model("llama"))
    outs = h.provisioner(token="wrong-token").reconcile([PHI, other], revision="r1", wait_s=WAIT)
    assert [(o.state, o.code) for o in outs] == [("AuthFailed", "InvalidAuthenticationToken")] * 2
    assert len(h.arm.request_log.entries) == 1  # the LIST; no pool calls after it


def test_auth_failure_on_put_stops_the_pass(h: Harness) -> None:
    other = desired_pool(model("llama"))
    h.arm.add_fault(ArmFault.auth_failure("PUT"))
    outs = h.provisioner().reconcile([PHI, other], revision="r1", wait_s=WAIT)
    assert [o.state for o in outs] == ["AuthFailed", "AuthFailed"]
    assert h.puts() == 1


def test_list_failure_changes_nothing(h: Harness) -> None:
    prov = h.provisioner()
    prov.reconcile([PHI], revision="r1", wait_s=WAIT)
    h.arm.add_fault(ArmFault("LIST", status=500, code="InternalServerError", message="boom"))
    other = desired_pool(model("llama"))
    out = one(prov.reconcile([other], revision="r2", wait_s=WAIT), other.name)
    assert (out.state, out.code) == ("Failed", "InternalServerError")
    assert h.arm.pool_names() == [PHI.name]  # not pruned, nothing created


def test_dry_run_plans_without_writing(h: Harness) -> None:
    out = one(h.provisioner().reconcile([PHI], revision="r1", dry_run=True), PHI.name)
    assert (out.action, out.state) == ("create", "Planned")
    assert h.puts() == 0


def test_restart_mid_operation_resumes_without_a_second_pool(h: Harness) -> None:
    with h.arm.holding():
        first = one(h.provisioner().reconcile([PHI], revision="r1"), PHI.name)
        assert first.state == "InProgress"
        assert h.props(PHI.name)["provisioningState"] == "Creating"
        # The reconciler restarts: a new instance with its own client and no memory.
        restarted = h.provisioner()
        waiting = one(restarted.reconcile([PHI], revision="r1", wait_s=0.05), PHI.name)
        assert (waiting.action, waiting.state, waiting.provisioning_state) == ("wait", "InProgress", "Creating")
        assert h.puts() == 1
    wait_until(lambda: h.props(PHI.name)["provisioningState"] == "Succeeded")
    done = one(restarted.reconcile([PHI], revision="r1"), PHI.name)
    assert (done.action, done.state) == ("noop", "Ready")
    assert h.puts() == 1 and h.arm.pool_names() == [PHI.name]


def test_plan_reads_live_pools(h: Harness) -> None:
    prov = h.provisioner()
    prov.reconcile([PHI], revision="r1", wait_s=WAIT)
    changes = prov.plan([desired_pool(model("phi", nodes=3)), desired_pool(model("new"))])
    assert [(c.action, c.count, c.live_count) for c in changes] == [("scale", 3, 1), ("create", 1, None)]


# --- the sync pass's runner: prepare() plans once, reconcile() carries that plan out ---------------------------


def runner(h: Harness) -> PoolRunner:
    s = h.settings
    return PoolRunner({f.name: getattr(s, f.name) for f in fields(s)},
                      credential=StaticTokenCredential(h.arm.settings.token), env={}, wait_s=WAIT)


def prepare(r: PoolRunner, *models: Model) -> PoolPlan:
    return r.prepare(models, None, prune=True, keep_model_ids=())


def reconcile(r: PoolRunner, plan: PoolPlan, revision: str, prune: bool = True) -> tuple[PoolOutcome, ...]:
    return r.reconcile(plan, revision=revision, dry_run=False, prune=prune, allow_replace=True)


def test_reconcile_carries_out_the_prepared_plan_without_planning_again(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    r = runner(h)
    reconcile(r, prepare(r, model("gone")), "r1")
    plan = prepare(r, model("phi"))
    assert sorted(c.action for c in plan.changes) == ["create", "delete"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pools were planned again")

    monkeypatch.setattr("gitops_kaito.provision.provisioner.plan_pools", refuse)
    monkeypatch.setattr("gitops_kaito.provision.agentpool.plan_pools", refuse)
    outcomes = reconcile(r, plan, "r2")
    assert {(o.model_id, o.action, o.state) for o in outcomes} == {("ml.phi", "create", "Ready"),
                                                                  ("ml.gone", "delete", "Deleted")}
    assert h.arm.pool_names() == [PHI.name]


def test_reconcile_without_prune_leaves_out_the_prepared_deletes(h: Harness) -> None:
    """The prune guard refused: the plan prepared with prune still creates, but deletes nothing."""
    r = runner(h)
    gone = desired_pool(model("gone"))
    reconcile(r, prepare(r, model("gone")), "r1")
    outcomes = reconcile(r, prepare(r, model("phi")), "r2", prune=False)
    assert [(o.model_id, o.action, o.state) for o in outcomes] == [("ml.phi", "create", "Ready")]
    assert h.arm.pool_names() == sorted([PHI.name, gone.name])
    assert h.arm.request_log.count(method="DELETE") == 0


def test_a_model_whose_pool_cannot_be_built_fails_alone(h: Harness) -> None:
    """One aks model without a VM size: its own error outcome; the other models' pools are planned and made, and
    the pool it already has is kept (its error is no reason to delete its GPUs)."""
    r = runner(h)
    broken = desired_pool(model("broken"))
    reconcile(r, prepare(r, model("broken")), "r1")
    plan = prepare(r, model("phi"), model("broken", sku=None))
    assert not plan.error
    assert [(c.model_id, c.action) for c in plan.changes] == [("ml.phi", "create")]
    assert plan.invalid == (("ml.broken", "model ml.broken has no instance type; aks provisioning needs one"),)

    outcomes = reconcile(r, plan, "r2")
    assert [(o.model_id, o.pool, o.state, o.code) for o in outcomes] == [
        ("ml.phi", PHI.name, "Ready", ""), ("ml.broken", broken.name, "Failed", INVALID_POOL)]
    assert "no instance type" in outcomes[1].message
    assert h.arm.pool_names() == sorted([PHI.name, broken.name])


def test_a_hung_arm_is_cut_off_by_the_read_timeout_and_reported(h: Harness) -> None:
    """ARM accepts the LIST and answers long after the deadline: the call gives up (azure-core's 300 s default would
    hold the pass for minutes), every model reports the error, nothing is written; after the back-off it goes
    through."""
    h.arm.add_fault(ArmFault.slow("LIST", delay_s=5.0))
    settings = replace(h.settings, read_timeout_s=0.3)
    prov = AgentPoolProvisioner.for_settings(settings, StaticTokenCredential(h.arm.settings.token),
                                             sleep=h.sleeps.append, clock=h.clock)
    out = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert out.state not in ("Ready", "Creating") and "timed out" in out.message.lower(), out
    assert h.puts() == 0
    h.clock.now += 301  # past the failed pool's back-off
    again = one(prov.reconcile([PHI], revision="r1", wait_s=WAIT), PHI.name)
    assert again.state == "Ready", again
