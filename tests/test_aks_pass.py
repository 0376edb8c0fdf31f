"""aks mode inside the sync pass: the sandbox (KAITO in BYO mode) + the local ARM endpoint whose pools register Nodes.

The pass creates the pool, holds the Workspace until the pool's Nodes are Ready, and prunes the pool with the model.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.core.report import markdown_parts, plan_json, write_text
from gitops_kaito.model.ownership import LABEL_MODEL
from gitops_kaito.provision.agentpool import pool_name
from gitops_kaito.provision.aks import StaticTokenCredential
from gitops_kaito.provision.pools import PoolRunner
from gitops_kaito.reconcile.assess import assess_models
from gitops_kaito.reconcile.sync import PassResult, plan_repository, run_pass
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.arm import ArmEmulator, ArmFault, KubeNodeApi, NodeBridge
from tests.aksfixtures import CONFIG, MODEL, TARGET

pytestmark = pytest.mark.cluster

UNTAGGED = {"count": 1, "vmSize": "Standard_D4s_v5", "mode": "System", "osType": "Linux", "tags": {}}


@dataclass
class World:
    sandbox: Sandbox
    arm: ArmEmulator
    kube: Kube
    repo: Path
    runner: PoolRunner

    def model(self, name: str) -> None:
        (self.repo / "models" / "ml" / f"{name}.yaml").write_text(MODEL.format(name=name))

    def sync(self, **kwargs: Any) -> PassResult:
        return run_pass(self.repo, self.kube, revision="main@sha1:" + "a" * 40, pools=self.runner, **kwargs)

    def workspaces(self) -> set[str]:
        body = client.CustomObjectsApi(self.kube.api_client).list_namespaced_custom_object(
            "kaito.sh", "v1beta1", "ml", "workspaces")
        return {w["metadata"]["name"] for w in body["items"] if not w["metadata"].get("deletionTimestamp")}

    def nodes(self, pool: str) -> list[str]:
        items = client.CoreV1Api(self.kube.api_client).list_node(label_selector=f"agentpool={pool}").items
        return sorted(n.metadata.name for n in items)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = SandboxSettings(speed="fast", node_provisioning="byo", namespaces=("default", "ml"))
    with Sandbox(settings) as sb, ArmEmulator() as arm:
        NodeBridge(KubeNodeApi(sb.url)).attach(arm)
        arm.seed_pool("system", UNTAGGED)
        repo = tmp_path / "repo"
        (repo / "models" / "ml").mkdir(parents=True)
        (repo / "gitops-kaito.yaml").write_text(CONFIG)
        runner = PoolRunner({**TARGET, "arm_endpoint": arm.url, "polling_interval_s": 0.01, "retry_total": 0},
                            credential=StaticTokenCredential(arm.settings.token), env={}, wait_s=10)
        with Kube.connect(sb.kubeconfig_path) as kube:
            yield World(sb, arm, kube, repo, runner)


def until(world: World, predicate: Any, what: str, timeout: float = 30.0, **kwargs: Any) -> PassResult:
    """Run passes until predicate(result) holds."""
    deadline = time.monotonic() + timeout
    while True:
        result = world.sync(**kwargs)
        if predicate(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last outcomes: {result.outcomes}")
        time.sleep(0.05)


def test_the_pass_creates_the_pool_gates_the_workspace_and_prunes_both(world: World) -> None:
    world.model("phi")
    pool = pool_name("ml.phi")

    # The pool's operation is held: the Workspace is not applied while the pool is in progress.
    world.arm.hold_operations()
    world.runner.wait_s = 0
    first = world.sync()
    phi = first.outcome("ml.phi")
    assert phi is not None and phi.state == "Provisioning", phi
    assert f"agent pool {pool}" in phi.message and phi.pool is not None and phi.pool.state == "InProgress"
    assert [(c.action, c.pool) for c in first.plan.node_pools] == [("create", pool)]
    assert world.workspaces() == set() and world.arm.pool_names() == sorted([pool, "system"])
    reports = assess_models(first, world.kube, first.revision, check_endpoints=False)
    assert [(n[0], n[1]) for n in reports[0].node_phases] == [(pool, "Launching")]

    # Released: the pool succeeds, its Node registers Ready, and only then the Workspace is applied.
    world.arm.release_operations()
    world.runner.wait_s = 10
    applied = until(world, lambda r: "phi" in world.workspaces(), "the Workspace to be applied")
    assert world.nodes(pool), "the Workspace was applied before the pool's Nodes existed"
    node = client.CoreV1Api(world.kube.api_client).read_node(world.nodes(pool)[0])
    assert node.metadata.labels[LABEL_MODEL] == "ml.phi"
    assert applied.outcome("ml.phi").pool.ready  # type: ignore[union-attr]

    # KAITO (BYO) finds the pool's Nodes through the Workspace's labelSelector: the model ends Ready.
    deadline = time.monotonic() + 30
    while True:
        result = world.sync()
        report = assess_models(result, world.kube, result.revision, check_endpoints=False)[0]
        if report.state == "Ready":
            break
        assert time.monotonic() < deadline, f"model never Ready: {report}"
        time.sleep(0.05)
    assert report.node_phases == ((pool, "Ready", ""),)
    assert not result.plan.has_changes and result.outcome("ml.phi").state == "Unchanged"  # type: ignore[union-attr]

    # Removing the only model: the prune guard refuses the Workspace and the pool alike.
    (world.repo / "models" / "ml" / "phi.yaml").unlink()
    refused = world.sync()
    assert refused.plan.prune_refused and [c.action for c in refused.plan.node_pools] == ["blocked"]
    assert world.arm.pool_names() == sorted([pool, "system"]) and world.workspaces() == {"phi"}

    # Allowed: the Workspace and the pool go; the untagged pool stays.
    gone = until(world, lambda r: world.arm.pool_names() == ["system"], "the pool to be deleted",
                 allow_mass_prune=True)
    assert world.workspaces() == set()
    assert world.nodes(pool) == []
    assert world.arm.pool_names() == ["system"]
    assert gone.outcome("ml.phi") is None or gone.outcome("ml.phi").state == "Pruned"  # type: ignore[union-attr]


def test_an_azure_error_is_the_models_failure_with_its_code(world: World) -> None:
    world.model("phi")
    world.arm.add_fault(ArmFault.quota(times=None))
    result = world.sync()
    phi = result.outcome("ml.phi")
    assert phi is not None and phi.state == "Failed" and "QuotaExceeded" in phi.message
    assert world.workspaces() == set()
    report = assess_models(result, world.kube, result.revision, check_endpoints=False)[0]
    assert report.state == "Failed" and "QuotaExceeded" in (report.last_error or "")
    assert report.node_phases[0][1] == "Failed"
    assert not result.ok


def test_plan_shows_the_pool_with_nodes_size_and_price(world: World) -> None:
    world.model("phi")
    (world.repo / "models" / "ml" / "qwen.yaml").write_text(MODEL.format(name="qwen") + "  provisioning: nodeclaim\n")
    (world.repo / "models" / "ml" / "mis.yaml").write_text(MODEL.format(name="mis") + "  provisioning: machine\n")
    desired, plan = plan_repository(world.repo, world.kube, revision="main@sha1:" + "b" * 40, pools=world.runner)
    doc = plan_json(desired, plan)
    pool = pool_name("ml.phi")
    assert [(r["action"], r["pool"], r["nodes"], r["vmSize"]) for r in doc["nodePools"]] == [
        ("create", pool, "1", "Standard_NC24ads_A100_v4")]
    assert doc["nodePools"][0]["pricePerHour"] > 0 and doc["hasChanges"]
    assert [(n["model"], n["mode"], n["count"], n["sku"]) for n in doc["newNodes"]] == [
        ("ml.mis", "machine", 1, "Standard_NC24ads_A100_v4"), ("ml.phi", "aks", 1, "Standard_NC24ads_A100_v4"),
        ("ml.qwen", "nodeclaim", 1, "Standard_NC24ads_A100_v4")]
    comment = "".join(markdown_parts(desired, plan))
    assert "#### GPU nodes this change creates" in comment
    assert f"| `ml.phi` | aks | AgentPool {pool} | 1 | Standard_NC24ads_A100_v4 | $" in comment
    assert "| `ml.qwen` | nodeclaim | NodeClaim | 1 | Standard_NC24ads_A100_v4 | $" in comment
    out = io.StringIO()
    write_text(desired, plan, out)
    assert f"+ create  AgentPool/{pool} (ml.phi): 1 x Standard_NC24ads_A100_v4, $" in out.getvalue()
    (world.repo / "models" / "ml" / "qwen.yaml").unlink()
    (world.repo / "models" / "ml" / "mis.yaml").unlink()
    dry = world.sync(dry_run=True)
    assert dry.outcome("ml.phi").state == "Provisioning"  # type: ignore[union-attr]
    assert world.arm.pool_names() == ["system"]  # neither planning nor a dry run creates anything


def test_a_merged_change_cannot_point_agent_pool_writes_at_another_cluster(world: World) -> None:
    """gitops-kaito.yaml naming another subscription/cluster than the daemon's: no request reaches Azure, every aks
    model fails with the file's line, nothing is created; the same file with the daemon's own values just works."""
    world.model("phi")
    (world.repo / "gitops-kaito.yaml").write_text(CONFIG.replace("00000000-0000-0000-0000-000000000000", "victim-sub")
                                                  .replace("clusterName: aks-ml", "clusterName: prod-aks"))
    world.arm.request_log.clear()
    result = world.sync()
    phi = result.outcome("ml.phi")
    assert phi is not None and phi.state == "Failed", phi
    assert "gitops-kaito.yaml:6: azure.subscriptionId 'victim-sub' is not the daemon's" in phi.message, phi.message
    assert "GITOPS_KAITO_AZURE_SUBSCRIPTION_ID is '00000000-0000-0000-0000-000000000000'" in phi.message
    assert "gitops-kaito.yaml:8: azure.clusterName 'prod-aks'" in phi.message
    assert world.arm.request_log.count() == 0, "a request went to Azure for a target the repository chose"
    assert world.workspaces() == set() and world.arm.pool_names() == ["system"]

    (world.repo / "gitops-kaito.yaml").write_text(CONFIG)  # pins equal to the daemon's target: allowed
    until(world, lambda r: "phi" in world.workspaces(), "the Workspace once the pins match")
    assert pool_name("ml.phi") in world.arm.pool_names()
