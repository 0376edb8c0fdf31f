"""The local ARM endpoint speaks ARM: auth and api-version checks, LRO headers and status, paging, error bodies."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from gitops_kaito.provision.aks import AksSettings, StaticTokenCredential, make_client
from gitops_kaito.sandbox.arm import ArmEmulator, ArmFault, ArmSettings

API = "api-version=2026-08-01"
BODY = {"properties": {"vmSize": "Standard_NC24ads_A100_v4", "count": 1}}


@pytest.fixture
def arm() -> Iterator[ArmEmulator]:
    with ArmEmulator() as emulator:
        yield emulator


def call(arm: ArmEmulator, method: str, path: str, body: Any = None, token: str | None = "sandbox-token",
         query: str = API) -> tuple[int, dict[str, str], Any]:
    url = path if path.startswith("http") else f"{arm.url}{path}?{query}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            raw = resp.read()
            return resp.status, dict(resp.headers), json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        return err.code, dict(err.headers), json.loads(raw) if raw else None



def test_auth_and_api_version_are_checked(arm: ArmEmulator) -> None:
    status, _, body = call(arm, "GET", arm.pools_path, token=None)
    assert status == 401 and body["error"]["code"] == "InvalidAuthenticationToken"
    status, _, body = call(arm, "GET", arm.pools_path, query="")
    assert status == 400 and body["error"]["code"] == "MissingApiVersionParameter"
    status, _, body = call(arm, "GET", arm.pools_path.replace("aks-ml", "other"))
    assert status == 404 and body["error"]["code"] == "ResourceNotFound"


def test_put_starts_an_operation_that_completes(arm: ArmEmulator) -> None:
    with arm.holding():
        status, headers, body = call(arm, "PUT", f"{arm.pools_path}/gkone", BODY)
        assert status == 201 and body["properties"]["provisioningState"] == "Creating"
        op_url = headers["Azure-AsyncOperation"]
        assert "/providers/Microsoft.ContainerService/locations/eastus/operations/" in op_url
        assert call(arm, "GET", op_url)[2]["status"] == "InProgress"
        assert call(arm, "GET", headers["Location"])[0] == 202
        # A second write while the first runs is refused the way AKS refuses it.
        status, _, err = call(arm, "PUT", f"{arm.pools_path}/gkone", BODY)
        assert status == 409 and err["error"]["code"] == "OperationNotAllowed"
        assert "in progress create node pool operation" in err["error"]["message"]
    assert call(arm, "GET", op_url)[2]["status"] == "Succeeded"
    status, _, pool = call(arm, "GET", headers["Location"])
    assert status == 200 and pool["name"] == "gkone"
    assert call(arm, "GET", f"{arm.pools_path}/gkone")[2]["properties"]["provisioningState"] == "Succeeded"


def test_vm_size_is_immutable_and_names_are_validated(arm: ArmEmulator) -> None:
    call(arm, "PUT", f"{arm.pools_path}/gkone", BODY)
    resized = {"properties": {**BODY["properties"], "vmSize": "Standard_NC48ads_A100_v4"}}
    status, _, err = call(arm, "PUT", f"{arm.pools_path}/gkone", resized)
    assert status == 400 and err["error"]["code"] == "PropertyChangeNotAllowed"
    status, _, err = call(arm, "PUT", f"{arm.pools_path}/Bad-Name", BODY)
    assert status == 400 and err["error"]["code"] == "InvalidParameter"


def test_delete_and_missing_pools(arm: ArmEmulator) -> None:
    status, _, err = call(arm, "GET", f"{arm.pools_path}/nope")
    assert status == 404 and err["error"] == {"code": "NotFound", "message": "Agent Pool not found: nope"}
    assert call(arm, "DELETE", f"{arm.pools_path}/nope")[0] == 204
    call(arm, "PUT", f"{arm.pools_path}/gkone", BODY)
    with arm.holding():
        status, headers, _ = call(arm, "DELETE", f"{arm.pools_path}/gkone")
        assert status == 202 and "Azure-AsyncOperation" in headers
        assert call(arm, "GET", f"{arm.pools_path}/gkone")[2]["properties"]["provisioningState"] == "Deleting"
    assert arm.pool_names() == []


def test_async_failure_sets_failed_state_and_provisioning_error(arm: ArmEmulator) -> None:
    arm.add_fault(ArmFault.sku_not_available("gkone"))
    status, headers, _ = call(arm, "PUT", f"{arm.pools_path}/gkone", BODY)
    assert status == 201
    op = call(arm, "GET", headers["Azure-AsyncOperation"])[2]
    assert op["status"] == "Failed" and op["error"]["code"] == "SkuNotAvailable"
    props = call(arm, "GET", f"{arm.pools_path}/gkone")[2]["properties"]
    assert props["provisioningState"] == "Failed"
    assert props["status"]["provisioningError"]["code"] == "SkuNotAvailable"


def test_faults_count_down_and_carry_retry_after(arm: ArmEmulator) -> None:
    arm.add_fault(ArmFault.throttled("LIST", retry_after=3, times=2))
    for _ in range(2):
        status, headers, err = call(arm, "GET", arm.pools_path)
        assert status == 429 and headers["Retry-After"] == "3" and err["error"]["code"] == "TooManyRequests"
    assert call(arm, "GET", arm.pools_path)[0] == 200
    assert arm.request_log.count(method="LIST", status=429) == 2


def test_operation_duration_keeps_operations_running(arm: ArmEmulator) -> None:
    with ArmEmulator(ArmSettings(operation_duration_s=3600)) as slow:
        call(slow, "PUT", f"{slow.pools_path}/gkone", BODY)
        assert slow.pool("gkone")["properties"]["provisioningState"] == "Creating"  # type: ignore[index]


def test_pool_ready_hook_and_sdk_paging(arm: ArmEmulator) -> None:
    ready: list[str] = []
    deleted: list[str] = []
    settings = ArmSettings(page_size=2, on_pool_ready=lambda p: ready.append(p["name"]), on_pool_deleted=deleted.append)
    with ArmEmulator(settings) as paged:
        s = paged.settings
        client = make_client(
            AksSettings(s.subscription_id, s.resource_group, s.cluster_name, paged.url, polling_interval_s=0.01, retry_total=0),
            StaticTokenCredential(s.token))
        for name in ("gka", "gkb", "gkc", "gkd", "gke"):
            client.agent_pools.begin_create_or_update(s.resource_group, s.cluster_name, name, BODY).result(timeout=5)
        assert sorted(p.name for p in client.agent_pools.list(s.resource_group, s.cluster_name)) == [
            "gka", "gkb", "gkc", "gkd", "gke"]
        assert paged.request_log.count(method="LIST") == 3  # 2 + 2 + 1 via nextLink
        assert ready == ["gka", "gkb", "gkc", "gkd", "gke"]
        client.agent_pools.begin_delete(s.resource_group, s.cluster_name, "gka").result(timeout=5)
        assert deleted == ["gka"]


def test_node_bridge_registers_and_removes_nodes_in_the_api_emulator() -> None:
    apiserver = pytest.importorskip("gitops_kaito.sandbox.apiserver")
    from kubernetes import client as kclient

    from gitops_kaito.provision.agentpool import desired_pool
    from gitops_kaito.provision.provisioner import AgentPoolProvisioner
    from gitops_kaito.sandbox.arm import KubeNodeApi, NodeBridge
    from tests.test_aks_agentpool import model

    srv = apiserver.ApiServer(host="127.0.0.1", port=0)
    srv.start()
    try:
        with ArmEmulator() as emulator:
            NodeBridge(KubeNodeApi(srv.url)).attach(emulator)
            s = emulator.settings
            prov = AgentPoolProvisioner.for_settings(
                AksSettings(s.subscription_id, s.resource_group, s.cluster_name, emulator.url,
                            polling_interval_s=0.01, retry_total=0), StaticTokenCredential(s.token))
            pool = desired_pool(model("phi", nodes=2))
            assert [o.state for o in prov.reconcile([pool], revision="r1", wait_s=20)] == ["Ready"]

            config = kclient.Configuration()
            config.host = srv.url
            core = kclient.CoreV1Api(kclient.ApiClient(config))
            nodes = core.list_node(label_selector="apps=phi-4").items
            assert len(nodes) == 2
            node = nodes[0]
            assert node.metadata.labels["kubernetes.azure.com/agentpool"] == pool.name
            assert node.metadata.labels["node.kubernetes.io/instance-type"] == "Standard_NC24ads_A100_v4"
            assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-A100"
            assert [(t.key, t.value, t.effect) for t in node.spec.taints] == [("sku", "gpu", "NoSchedule")]
            assert node.spec.provider_id.startswith("azure:///subscriptions/")
            assert node.status.capacity["nvidia.com/gpu"] == "1"

            prov.reconcile([desired_pool(model("phi", nodes=1))], revision="r2", wait_s=20)
            assert len(core.list_node(label_selector=f"agentpool={pool.name}").items) == 1
            assert [o.state for o in prov.reconcile([], revision="r3", wait_s=20)] == ["Deleted"]
            assert core.list_node(label_selector=f"agentpool={pool.name}").items == []
    finally:
        srv.stop()
