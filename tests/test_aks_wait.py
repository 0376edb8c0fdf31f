"""aks mode under `gitops-kaito sync --wait`: the CLI creates the agent pool through the real Azure SDK and the real
DefaultAzureCredential (a loopback managed identity), holds the Workspace until the pool's Nodes are Ready, and exits
0 once the model is Ready; an Azure failure ends the wait with exit 1 naming the model and the ARM error code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from gitops_kaito.cli import main
from gitops_kaito.provision.agentpool import pool_name
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.arm import ArmEmulator, ArmFault, ArmSettings, KubeNodeApi, NodeBridge
from tests.aksfixtures import TARGET_FLAGS, TokenEndpoint, write_repo

pytestmark = pytest.mark.cluster


@dataclass
class World:
    sandbox: Sandbox
    arm: ArmEmulator
    repo: Path

    def sync_wait(self, *extra: str) -> int:
        return main(["sync", "--repo", str(self.repo), "--kubeconfig", str(self.sandbox.kubeconfig_path),
                     "--azure-arm-endpoint", self.arm.url, *TARGET_FLAGS, "--wait", "--interval", "0.2s", "-o", "json", *extra])


@pytest.fixture
def world(tmp_path: Path, app_service_env: TokenEndpoint) -> Iterator[World]:
    settings = SandboxSettings(speed="fast", node_provisioning="byo", namespaces=("default", "ml"),
                               kubeconfig_path=tmp_path / "kubeconfig.yaml")
    with Sandbox(settings) as sb, ArmEmulator(ArmSettings(token=app_service_env.token)) as arm:
        NodeBridge(KubeNodeApi(sb.url)).attach(arm)
        repo = tmp_path / "repo"
        write_repo(repo, ["phi"])
        yield World(sb, arm, repo)


def test_sync_wait_creates_the_pool_and_ends_when_the_model_is_ready(world: World,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code = world.sync_wait("--timeout", "90s")
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    [model] = out["models"]
    assert (model["model"], model["state"]) == ("ml/phi", "Ready"), model
    pool = world.arm.pool(pool_name("ml.phi"))
    assert pool is not None and pool["properties"]["provisioningState"] == "Succeeded"
    assert pool["properties"]["vmSize"] == "Standard_NC24ads_A100_v4"
    admin = world.sandbox.api_client("test")
    try:
        ws = client.CustomObjectsApi(admin).get_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces",
                                                                         "phi")
        nodes = client.CoreV1Api(admin).list_node(label_selector=f"agentpool={pool_name('ml.phi')}").items
    finally:
        admin.close()
    # The Workspace selects the pool's Nodes, which the pool registered (BYO: KAITO creates no NodeClaim).
    labels = ws["resource"]["labelSelector"]["matchLabels"]
    assert nodes and all(labels.items() <= (n.metadata.labels or {}).items() for n in nodes)


def test_an_azure_refusal_ends_the_wait_naming_the_model_and_the_code(world: World,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    world.arm.add_fault(ArmFault.quota(times=None))
    code = world.sync_wait("--timeout", "60s")
    out = json.loads(capsys.readouterr().out)
    assert code == 1, out
    [model] = out["models"]
    assert model["model"] == "ml/phi" and model["state"] == "Failed", model
    assert "QuotaExceeded" in json.dumps(model), model
    assert world.arm.pool(pool_name("ml.phi")) is None
