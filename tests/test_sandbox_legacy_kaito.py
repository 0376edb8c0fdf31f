"""The simulated legacy KAITO (<= v0.4.1) for kaito.sh/v1alpha1 Workspaces: Ready nodes of the instanceType that match
the labelSelector are used, Machines are made only for the shortfall, conditions MachineReady -> ResourceReady ->
InferenceReady -> WorkspaceSucceeded without status.state (FACTS.md history "Machine -> NodeClaim" and appendix)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.core import health
from gitops_kaito.model.states import ModelState
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.controllers.kaito import is_legacy
from tests.fixtures_cluster import wait_until
from tests.test_sandbox_controllers import GROUP, PLURAL, SKU, Recorder, cond, state_is, workspace

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

LEGACY_ORDER = ["MachineReady", "ResourceReady", "InferenceReady", "WorkspaceSucceeded"]
A10 = "Standard_NV36ads_A10_v5"
ICE = "all requested instance types were unavailable during launch"


def legacy(name: str, labels: dict[str, str], count: int = 1, instance_type: str = SKU) -> dict[str, Any]:
    body = workspace(name, instance_type=instance_type, labels=labels, version="v1alpha1")
    body["resource"]["count"] = count
    return body


def succeeded(obj: dict[str, Any]) -> bool:
    return (cond(obj, "WorkspaceSucceeded") or {}).get("status") == "True"


def kaito_machines(api: client.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    sel = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={namespace}"
    return list(client.CustomObjectsApi(api).list_cluster_custom_object("karpenter.sh", "v1alpha5", "machines",
                                                                         label_selector=sel)["items"])


def node_names(api: client.ApiClient) -> set[str]:
    return {n.metadata.name for n in client.CoreV1Api(api).list_node().items}


@pytest.mark.parametrize(("entries", "expected"), [
    ([{"manager": "gitops-kaito", "operation": "Apply", "apiVersion": "kaito.sh/v1alpha1",
       "fieldsV1": {"f:resource": {}, "f:inference": {}}}], True),
    ([{"manager": "gitops-kaito", "operation": "Apply", "apiVersion": "kaito.sh/v1beta1",
       "fieldsV1": {"f:resource": {}, "f:inference": {}}}], False),
    # KAITO's own writes (metadata, status) through v1beta1 do not make a v1alpha1 object modern
    ([{"manager": "kubectl", "operation": "Update", "apiVersion": "kaito.sh/v1alpha1", "fieldsV1": {"f:resource": {}}},
      {"manager": "gitops-kaito-sandbox", "operation": "Update", "apiVersion": "kaito.sh/v1beta1",
       "fieldsV1": {"f:metadata": {"f:finalizers": {}}}},
      {"manager": "gitops-kaito-sandbox", "operation": "Update", "apiVersion": "kaito.sh/v1beta1",
       "subresource": "status", "fieldsV1": {"f:status": {}}}], True),
    # spec written through both versions: the current KAITO serves it
    ([{"manager": "a", "operation": "Update", "apiVersion": "kaito.sh/v1alpha1", "fieldsV1": {"f:resource": {}}},
      {"manager": "b", "operation": "Update", "apiVersion": "kaito.sh/v1beta1", "fieldsV1": {"f:inference": {}}}],
     False),
    ([], False),
])
def test_a_workspace_is_legacy_when_its_spec_was_written_through_v1alpha1(entries: list[dict[str, Any]],
                                                                          expected: bool) -> None:
    assert is_legacy({"metadata": {"name": "w", "managedFields": entries}}) is expected


def test_machines_for_the_shortfall_then_succeeded_without_state(sandbox: Sandbox) -> None:
    api = sandbox.api_client("gitops-kaito-tests")
    custom = client.CustomObjectsApi(api)
    rec = Recorder(api, "default", "old")
    out = custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", PLURAL,
                                                 legacy("old", {"apps": "old"}, count=2))
    assert out["apiVersion"] == "kaito.sh/v1alpha1"
    # The current KAITO serves a v1beta1 Workspace next to it, unchanged (NodeClaims, state).
    custom.create_namespaced_custom_object(GROUP, "v1beta1", "default", PLURAL, workspace("new"))
    done = rec.wait(succeeded, what="WorkspaceSucceeded=True")
    rec.stop()

    made = kaito_machines(api, "default", "old")
    assert len(made) == 2
    for m in made:
        name = m["metadata"]["name"]
        assert name.startswith("ws") and len(name) == 11
        labels = m["metadata"]["labels"]
        assert {k: labels[k] for k in ("karpenter.sh/provisioner-name", "kaito.sh/workspace",
                                       "kaito.sh/workspacenamespace", "apps")} == {
            "karpenter.sh/provisioner-name": "default", "kaito.sh/workspace": "old",
            "kaito.sh/workspacenamespace": "default", "apps": "old"}
        assert m["spec"]["machineTemplateRef"] == {"name": name}
        assert [(r["key"], r["values"]) for r in m["spec"]["requirements"]] == [
            ("node.kubernetes.io/instance-type", [SKU]), ("karpenter.sh/provisioner-name", ["default"]),
            ("kaito.sh/machine-type", ["gpu"]), ("kubernetes.io/arch", ["amd64"]), ("kubernetes.io/os", ["linux"])]
        assert m["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
        assert m["spec"]["resources"]["requests"]["storage"] == "87Gi"  # phi-4-mini's disk requirement
    assert sorted(done["status"]["workerNodes"]) == sorted(m["status"]["nodeName"] for m in made)

    assert rec.first_true_order() == LEGACY_ORDER
    creating = [cond(e, "MachineReady") for e in rec.events]
    assert {"status": "Unknown", "reason": "CreateMachinePending", "message": "creating 2 machines"}.items() <= \
        next(c for c in creating if c).items()
    assert rec.states() == [] and all("targetNodeCount" not in (e.get("status") or {}) for e in rec.events)
    assert all(cond(e, t) is None for e in rec.events for t in ("NodeClaimReady", "NodesReady"))
    assert health.assess(done, made).state == ModelState.READY

    new = wait_until(lambda: (o := custom.get_namespaced_custom_object(GROUP, "v1beta1", "default", PLURAL, "new"))
                     and state_is("Ready")(o) and o, what="the v1beta1 Workspace Ready")
    assert cond(new, "NodeClaimReady") is not None and cond(new, "MachineReady") is None
    claims = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims",
                                               label_selector="kaito.sh/workspace")["items"]
    assert [c["metadata"]["labels"]["kaito.sh/workspace"] for c in claims] == ["new"]

    # Deleting the Workspace deletes KAITO's Machines (finalizer) and with them their Nodes.
    custom.delete_namespaced_custom_object(GROUP, "v1alpha1", "default", PLURAL, "old")
    nodes = {m["status"]["nodeName"] for m in made}
    wait_until(lambda: not kaito_machines(api, "default", "old") and not nodes & node_names(api),
               what="KAITO's Machines and their Nodes deleted")
    api.close()


@pytest.mark.parametrize("sandbox", [SandboxSettings(speed="fast", node_provisioning="byo")], indirect=True)
def test_ready_nodes_of_the_instance_type_are_used_before_any_machine(sandbox: Sandbox) -> None:
    api = sandbox.api_client("gitops-kaito-tests")
    custom = client.CustomObjectsApi(api)
    pool = {"pool": "legacy"}
    sandbox.add_gpu_node("a100-0", SKU, labels=pool)
    sandbox.add_gpu_node("a100-down", SKU, labels=pool, ready=False)
    sandbox.add_gpu_node("a10-0", A10, labels=pool)
    sandbox.add_gpu_node("a100-elsewhere", SKU, labels={"pool": "other"})

    # Enough qualifying nodes: used, no Machine (and no BYO rejection of instanceType: legacy KAITO had no BYO mode).
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", PLURAL, legacy("fits", pool))
    fits = wait_until(lambda: (o := custom.get_namespaced_custom_object(GROUP, "v1beta1", "default", PLURAL, "fits"))
                      and succeeded(o) and o, what="fits succeeded")
    assert fits["status"]["workerNodes"] == ["a100-0"]
    assert (cond(fits, "MachineReady") or {}).get("reason") == "installNodePluginsSuccess"
    assert kaito_machines(api, "default", "fits") == []

    # Two A10 nodes wanted, one qualifies: exactly one Machine for the shortfall.
    custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", PLURAL,
                                           legacy("short", pool, count=2, instance_type=A10))
    short = wait_until(lambda: (o := custom.get_namespaced_custom_object(GROUP, "v1beta1", "default", PLURAL, "short"))
                       and succeeded(o) and o, what="short succeeded")
    [made] = kaito_machines(api, "default", "short")
    assert sorted(short["status"]["workerNodes"]) == sorted(["a10-0", made["status"]["nodeName"]])
    assert custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"] == []
    api.close()


def test_a_machine_that_cannot_launch_fails_the_workspace_until_the_sku_is_back(sandbox: Sandbox) -> None:
    api = sandbox.api_client("gitops-kaito-tests")
    custom = client.CustomObjectsApi(api)
    failure = sandbox.inject("sku-unavailable", workspace="nosku", namespace="default")
    rec = Recorder(api, "default", "nosku")
    try:
        custom.create_namespaced_custom_object(GROUP, "v1alpha1", "default", PLURAL, legacy("nosku", {"apps": "n"}))
        failed = rec.wait(lambda o: ICE in (cond(o, "MachineReady") or {}).get("message", ""),
                          what="MachineReady False with the launch error")
        assert [(c["type"], c["status"], c["reason"]) for c in failed["status"]["conditions"]] == [
            ("MachineReady", "False", "checkMachineStatusFailed"),
            ("ResourceReady", "False", "workspaceResourceStatusFailed"),
            ("WorkspaceSucceeded", "False", "workspaceFailed")]
        h = health.assess(failed, kaito_machines(api, "default", "nosku"))
        assert h.state == ModelState.FAILED and ICE in h.message
    finally:
        sandbox.clear_failures(failure)
    rec.wait(succeeded, what="recovery once the SKU is available again")
    rec.stop()
    assert len(kaito_machines(api, "default", "nosku")) == 1
    api.close()
