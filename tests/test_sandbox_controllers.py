"""The simulated KAITO / Karpenter controllers: the condition sequences of FACTS.md 5.5, NodeClaims and Nodes.

Sequences are recorded through a watch from before the Workspace exists, so every status write is seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox import Sandbox, SandboxSettings
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kaito.sh", "v1beta1", "workspaces"
SKU = "Standard_NC24ads_A100_v4"
NAP_ORDER = ["NodeClaimReady", "NodesReady", "ResourceReady", "InferenceReady", "WorkspaceSucceeded"]
BYO_ORDER = ["NodesReady", "ResourceReady", "InferenceReady", "WorkspaceSucceeded"]


def workspace(name: str, instance_type: str | None = SKU, labels: dict[str, str] | None = None,
              preset: str = "phi-4-mini-instruct", version: str = VERSION) -> dict[str, Any]:
    resource: dict[str, Any] = {"labelSelector": {"matchLabels": labels or {"apps": name}}}
    if instance_type:
        resource["instanceType"] = instance_type
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Workspace", "metadata": {"name": name},
            "resource": resource, "inference": {"preset": {"name": preset}}}


class Recorder:
    """Every state of one Workspace as a watch delivers it, from a resourceVersion taken before creation."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.events: list[dict[str, Any]] = []
        rv = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"]["resourceVersion"]
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(rv,), daemon=True)
        self._thread.start()

    def _run(self, rv: str) -> None:
        try:
            for ev in self._watch.stream(self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                                         PLURAL, resource_version=rv, timeout_seconds=60):
                if ev["raw_object"].get("metadata", {}).get("name") == self.name:
                    self.events.append(ev["raw_object"])
        except Exception:  # the stream is cut by stop()
            pass

    def stop(self) -> None:
        self._watch.stop()
        self._thread.join(5)

    def wait(self, predicate: Any, timeout: float = 15.0, what: str = "workspace state") -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in reversed(list(self.events)) if predicate(e)), None)
        return wait_until(found, timeout, what=what)

    def first_true_order(self) -> list[str]:
        order: list[str] = []
        for obj in self.events:
            for c in (obj.get("status") or {}).get("conditions") or []:
                if c["status"] == "True" and c["type"] not in order:
                    order.append(c["type"])
        return order

    def states(self) -> list[str]:
        out: list[str] = []
        for obj in self.events:
            state = (obj.get("status") or {}).get("state")
            if state and (not out or out[-1] != state):
                out.append(state)
        return out


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def state_is(state: str) -> Any:
    return lambda obj: (obj.get("status") or {}).get("state") == state


@pytest.fixture
def api(cluster: ClusterTarget) -> Iterator[client.ApiClient]:
    skip_on_real(cluster, "needs the simulated KAITO and Karpenter controllers")
    api = cluster.api_client("gitops-kaito-tests")
    yield api
    api.close()


def claims_of(api: client.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    sel = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={namespace}"
    return list(client.CustomObjectsApi(api).list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims",
                                                                         label_selector=sel)["items"])


def nodes_of(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    sel = f"kaito.sh/workspace={name},kaito.sh/workspacenamespace={namespace}"
    return list(client.CoreV1Api(api).list_node(label_selector=sel).items)


# --- KAITO with auto-provisioning ------------------------------------------------------------------

def test_nap_workspace_reaches_ready_in_kaitos_order(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "phi"
    rec = Recorder(api, ns, name)
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workspace(name))
    ready = rec.wait(state_is("Ready"), what="state Ready")
    rec.stop()

    assert rec.first_true_order() == NAP_ORDER
    assert rec.states() == ["Pending", "Ready"]
    meta = ready["metadata"]
    assert "workspace.finalizer.kaito.sh" in meta["finalizers"]
    assert meta["annotations"]["workspace.kaito.io/revision"] == "1"
    assert len(meta["annotations"]["workspace.kaito.io/hash"]) == 64
    status = ready["status"]
    assert status["targetNodeCount"] == 1
    reasons = {c["type"]: c["reason"] for c in status["conditions"]}
    assert reasons == {"NodeClaimReady": "NodeClaimsReady", "NodesReady": "NodesReady",
                       "ResourceReady": "workspaceResourceStatusSuccess",
                       "InferenceReady": "WorkspaceInferenceStatusSuccess", "WorkspaceSucceeded": "workspaceSucceeded"}
    assert all(c["observedGeneration"] == meta["generation"] for c in status["conditions"])
    # Before Ready every waiting condition carried KAITO's pending reasons.
    first = next(e for e in rec.events if (e.get("status") or {}).get("conditions"))
    assert cond(first, "InferenceReady")["reason"] == "WorkspaceInferenceStatusPending"  # type: ignore[index]
    assert cond(first, "WorkspaceSucceeded")["reason"] == "workspacePending"  # type: ignore[index]

    [claim] = claims_of(api, ns, name)
    assert claim["metadata"]["name"].startswith("ws") and len(claim["metadata"]["name"]) == 11
    labels = claim["metadata"]["labels"]
    assert labels["karpenter.sh/nodepool"] == "kaito" and labels["apps"] == name
    assert claim["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert claim["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
    reqs = {r["key"]: r["values"] for r in claim["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == [SKU] and reqs["karpenter.sh/nodepool"] == ["kaito"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "87Gi"  # phi-4-mini: 7 GiB + 80 (FACTS 2)
    assert status["workerNodes"] == [claim["status"]["nodeName"]]

    svc = client.CoreV1Api(api).read_namespaced_service(name, ns)
    http = next(p for p in svc.spec.ports if p.name == "http")
    assert (http.port, http.target_port) == (80, 5000)
    assert svc.spec.selector == {"kaito.sh/workspace": name, "statefulset.kubernetes.io/pod-name": f"{name}-0"}
    assert client.CoreV1Api(api).read_namespaced_service(f"{name}-headless", ns).spec.cluster_ip == "None"


def test_target_node_count_follows_kaitos_estimate(cluster: ClusterTarget, api: client.ApiClient) -> None:
    """llama-3.3-70b on one 80 GiB A100 needs more than one node; count: 1 is not what KAITO uses."""
    ns = cluster.namespace
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL,
                                           workspace("big", preset="llama-3.3-70b-instruct"))
    ws = wait_until(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "big").get("status")
                             or {}).get("targetNodeCount") and
                    custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "big"), what="targetNodeCount")
    target = ws["status"]["targetNodeCount"]
    assert target > 1
    wait_until(lambda: len(claims_of(api, ns, "big")) == target, what=f"{target} NodeClaims")


def test_node_lost_makes_workspace_not_ready_then_recovers(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "lost"
    sb = cluster.sandbox
    assert sb is not None
    custom = client.CustomObjectsApi(api)
    rec = Recorder(api, ns, name)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workspace(name))
    ready = rec.wait(state_is("Ready"))
    first_node = ready["status"]["workerNodes"][0]
    failure = sb.inject("node-lost", workspace=name, namespace=ns)
    try:
        not_ready = rec.wait(state_is("NotReady"), what="state NotReady")
        assert cond(not_ready, "WorkspaceSucceeded")["status"] == "False"  # type: ignore[index]
        assert cond(not_ready, "ResourceReady")["status"] == "False"  # type: ignore[index]
        # Karpenter drops the claim of the lost node and KAITO provisions a replacement.
        again = rec.wait(lambda o: state_is("Ready")(o) and o["status"]["workerNodes"] != [first_node],
                         what="Ready on a new node")
    finally:
        sb.clear_failures(failure)
        rec.stop()
    assert rec.states() == ["Pending", "Ready", "NotReady", "Ready"]
    assert [n.metadata.name for n in nodes_of(api, ns, name)] == again["status"]["workerNodes"]


# --- injected failures ---------------------------------------------------------------------------------

def test_sku_unavailable_surfaces_as_nodeclaim_launch_failure(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "nosku"
    sb = cluster.sandbox
    assert sb is not None
    failure = sb.inject("sku-unavailable", workspace=name, namespace=ns)
    custom = client.CustomObjectsApi(api)
    rec = Recorder(api, ns, name)
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workspace(name))
        failed = rec.wait(lambda o: "unavailable during launch" in ((cond(o, "NodeClaimReady") or {}).get("message", "")),
                          what="NodeClaimReady False with the launch error")
        nc = cond(failed, "NodeClaimReady")
        assert nc is not None and nc["status"] == "False" and nc["reason"] == "LaunchFailed"
        assert failed["status"]["state"] == "Pending"
        assert cond(failed, "WorkspaceSucceeded")["reason"] == "workspacePending"  # type: ignore[index]
        [claim] = claims_of(api, ns, name)
        launched = next(c for c in claim["status"]["conditions"] if c["type"] == "Launched")
        assert launched["status"] == "False"
        assert "all requested instance types were unavailable during launch" in launched["message"]
        assert nodes_of(api, ns, name) == []
        # The sequence so far is the failure, never past it.
        assert "NodeClaimReady" not in rec.first_true_order()
    finally:
        sb.clear_failures(failure)
    rec.wait(state_is("Ready"), what="recovery once the SKU is available again")
    rec.stop()
    assert rec.first_true_order() == NAP_ORDER


def test_quota_failure_message(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "quota"
    sb = cluster.sandbox
    assert sb is not None
    failure = sb.inject("quota", workspace=name, namespace=ns)
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workspace(name))
        claim = wait_until(lambda: next((c for c in claims_of(api, ns, name)
                                         if any(x["type"] == "Launched" and x["status"] == "False"
                                                for x in (c.get("status") or {}).get("conditions") or [])), None),
                           what="Launched=False")
        launched = next(c for c in claim["status"]["conditions"] if c["type"] == "Launched")
        assert launched["reason"] == "LaunchFailed"
        assert "QuotaExceeded" in launched["message"] and "standardNCADSA100v4Family" in launched["message"]
    finally:
        sb.clear_failures(failure)


def test_image_pull_error_keeps_inference_not_ready(cluster: ClusterTarget, api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "pull"
    sb = cluster.sandbox
    assert sb is not None
    failure = sb.inject("image-pull", workspace=name, namespace=ns)
    rec = Recorder(api, ns, name)
    try:
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workspace(name))
        stuck = rec.wait(lambda o: (cond(o, "InferenceReady") or {}).get("reason") == "ImagePullError",
                         what="InferenceReady ImagePullError")
        assert cond(stuck, "ResourceReady")["status"] == "True"  # type: ignore[index]
        assert cond(stuck, "InferenceReady")["status"] == "False"  # type: ignore[index]
        assert stuck["status"]["state"] == "Pending"
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(f"{name}:80", ns, "v1/models")
        assert err.value.status == 503
    finally:
        sb.clear_failures(failure)
        rec.stop()


# --- deletion ------------------------------------------------------------------------------------------------

def test_deleting_a_workspace_removes_claims_nodes_services_and_finalizer(cluster: ClusterTarget,
                                                                           api: client.ApiClient) -> None:
    ns, name = cluster.namespace, "gone"
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, workspace(name))
    wait_until(lambda: (custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name).get("status") or {})
               .get("state") == "Ready", what="Ready")
    assert nodes_of(api, ns, name)
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)

    def gone() -> bool:
        try:
            custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
            return False
        except ApiException as err:
            return err.status == 404
    wait_until(gone, what="the Workspace to be deleted")
    assert claims_of(api, ns, name) == []
    assert nodes_of(api, ns, name) == []
    assert [s.metadata.name for s in core.list_namespaced_service(ns).items] == []


# --- Karpenter alone: NodeClaims and Machines anyone creates -------------------------------------------------

def nodeclaim(name: str, instance_type: str = "Standard_NC48ads_A100_v4") -> dict[str, Any]:
    """The shape gitops-kaito's nodeclaim mode renders (no KAITO labels)."""
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name, "labels": {"apps": name, "gitops.kaito.sh/model-name": name}},
            "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                     "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                     "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                       "values": [instance_type]}],
                     "resources": {"requests": {"storage": "100Gi"}}}}


def test_nodeclaim_lifecycle_creates_and_removes_its_node(cluster: ClusterTarget, api: client.ApiClient) -> None:
    name = f"nc-{cluster.namespace}"
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    rv = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["metadata"]["resourceVersion"]
    seen: list[dict[str, Any]] = []
    w = watch.Watch()

    def record() -> None:
        try:
            for ev in w.stream(custom.list_cluster_custom_object, "karpenter.sh", "v1", "nodeclaims",
                               resource_version=rv, timeout_seconds=60):
                if ev["raw_object"]["metadata"]["name"] == name:
                    seen.append(ev["raw_object"])
        except Exception:
            pass
    t = threading.Thread(target=record, daemon=True)
    t.start()
    custom.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", nodeclaim(name))
    claim = wait_until(lambda: next((o for o in reversed(seen) if any(
        c["type"] == "Ready" and c["status"] == "True" for c in (o.get("status") or {}).get("conditions") or [])), None),
        what="NodeClaim Ready")
    order: list[str] = []
    for o in seen:
        for c in (o.get("status") or {}).get("conditions") or []:
            if c["status"] == "True" and c["type"] not in order:
                order.append(c["type"])
    assert order == ["Launched", "Registered", "Initialized", "Ready"]
    assert "karpenter.sh/termination" in claim["metadata"]["finalizers"]
    assert claim["status"]["providerID"]
    node = core.read_node(claim["status"]["nodeName"])
    labels = node.metadata.labels
    assert labels["node.kubernetes.io/instance-type"] == "Standard_NC48ads_A100_v4"
    assert labels["nvidia.com/gpu.count"] == "2" and labels["nvidia.com/gpu.product"] == "NVIDIA-A100"
    assert labels["nvidia.com/gpu.memory"] == str(80 * 1024) and labels["accelerator"] == "nvidia"
    assert labels["apps"] == name and "karpenter.sh/nodepool" not in labels
    assert node.status.capacity["nvidia.com/gpu"] == "2"
    assert [(c.type, c.status) for c in node.status.conditions] == [("Ready", "True")]
    assert [(x.key, x.value, x.effect) for x in node.spec.taints] == [("sku", "gpu", "NoSchedule")]

    custom.delete_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", name)

    def node_gone() -> bool:
        try:
            core.read_node(claim["status"]["nodeName"])
            return False
        except ApiException as err:
            return err.status == 404
    wait_until(node_gone, what="the Node to be removed")

    def claim_gone() -> bool:
        try:
            custom.get_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", name)
            return False
        except ApiException as err:
            return err.status == 404
    wait_until(claim_gone, what="the NodeClaim to be released")
    w.stop()
    t.join(5)


def test_legacy_machine_becomes_ready_with_a_node(cluster: ClusterTarget, api: client.ApiClient) -> None:
    name = f"m-{cluster.namespace}"
    custom = client.CustomObjectsApi(api)
    machine = {"apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
               "metadata": {"name": name, "labels": {"karpenter.sh/provisioner-name": "default",
                                                     "kaito.sh/workspace": "legacy"}},
               "spec": {"machineTemplateRef": {"name": name},
                        "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                          "values": [SKU]},
                                         {"key": "kaito.sh/machine-type", "operator": "In", "values": ["gpu"]}],
                        "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]}}
    custom.create_cluster_custom_object("karpenter.sh", "v1alpha5", "machines", machine)
    ready = wait_until(lambda: (lambda m: m if any(c["type"] == "Ready" and c["status"] == "True"
                                                   for c in (m.get("status") or {}).get("conditions") or []) else None)(
        custom.get_cluster_custom_object("karpenter.sh", "v1alpha5", "machines", name)), what="Machine Ready")
    types = {c["type"] for c in ready["status"]["conditions"]}
    assert {"MachineLaunched", "MachineRegistered", "MachineInitialized", "Ready"} <= types
    node = client.CoreV1Api(api).read_node(ready["status"]["nodeName"])
    assert node.metadata.labels["kaito.sh/machine-type"] == "gpu"
    assert node.metadata.labels["karpenter.sh/provisioner-name"] == "default"
    custom.delete_cluster_custom_object("karpenter.sh", "v1alpha5", "machines", name)


# --- KAITO with bring-your-own nodes (a private sandbox in BYO mode) ------------------------------------------

def _denied(call: Any) -> str:
    """The API server's answer to a write KAITO's webhook refuses: 400 with the webhook's message."""
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 400
    message = str(json_body(caught.value).get("message"))
    assert message.startswith('admission webhook "validation.workspace.kaito.sh" denied the request: '
                              "validation failed: ")
    return message


def json_body(err: ApiException) -> dict[str, Any]:
    import json
    return dict(json.loads(err.body))


@pytest.mark.parametrize("sandbox", [SandboxSettings(speed="fast", node_provisioning="byo")], indirect=True)
def test_byo_refuses_without_nodes_then_admits_and_waits_for_matching_gpu_nodes(sandbox: Sandbox) -> None:
    api = sandbox.api_client("gitops-kaito-tests")
    custom = client.CustomObjectsApi(api)
    body = workspace("byo", instance_type=None, labels={"pool": "gpu"})
    message = _denied(lambda: custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body))
    assert "No nodes found matching the specified label selector" in message
    with pytest.raises(ApiException) as gone:  # refused, so never stored
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "byo")
    assert gone.value.status == 404

    sandbox.add_gpu_node("gpu-node-0", labels={"pool": "gpu"})
    sandbox.add_gpu_node("other-node", labels={"pool": "cpu"})
    rec = Recorder(api, "default", "byo")
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, body)
    ready = rec.wait(state_is("Ready"), what="Ready on the BYO node")
    rec.stop()
    assert rec.first_true_order() == BYO_ORDER
    assert rec.states() == ["Pending", "Ready"]
    assert ready["status"]["workerNodes"] == ["gpu-node-0"]
    assert cond(ready, "NodeClaimReady") is None
    assert custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"] == []
    api.close()


@pytest.mark.parametrize("sandbox", [SandboxSettings(speed="fast", node_provisioning="byo")], indirect=True)
def test_byo_refuses_instance_type_and_nodes_without_gpu_labels(sandbox: Sandbox) -> None:
    api = sandbox.api_client("gitops-kaito-tests")
    custom = client.CustomObjectsApi(api)
    sandbox.add_gpu_node("typed-node", labels={"p": "x"})
    typed = _denied(lambda: custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, workspace("typed", labels={"p": "x"})))
    assert "instanceType must be empty when node auto-provisioning is disabled" in typed
    sandbox.add_gpu_node("plain", labels={"p": "y"}, gpu_labels=False)
    nolabels = _denied(lambda: custom.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, workspace("nolabels", instance_type=None, labels={"p": "y"})))
    assert "nvidia.com/gpu.product" in nolabels and "plain" in nolabels
    assert custom.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)["items"] == []
    api.close()


# --- CRDs through the API --------------------------------------------------------------------------------------

def test_kaito_examples_are_accepted_through_the_api(cluster: ClusterTarget, shared_kaito: Path) -> None:
    api = cluster.api_client()
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    created: set[str] = set()
    workspaces = 0
    for path in sorted((shared_kaito / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            if doc["kind"] == "Workspace":
                workspaces += 1
                if doc["metadata"]["name"] in created:  # two examples of one job (PVC or not) share a name
                    doc["metadata"]["name"] = f"{doc['metadata']['name']}-{workspaces}"
                version = doc["apiVersion"].split("/")[1]
                custom.create_namespaced_custom_object(GROUP, version, cluster.namespace, PLURAL, doc)
                created.add(doc["metadata"]["name"])
            elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"] not in created:
                core.create_namespaced_config_map(cluster.namespace, doc)
                created.add(doc["metadata"]["name"])
    assert workspaces >= 3 and len([n for n in created if n.startswith("workspace-")]) == workspaces
    got = custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL)["items"]
    assert {w["metadata"]["name"] for w in got} >= {"workspace-phi-4-mini", "workspace-tuning-phi-3"}
    api.close()


def test_v1alpha1_workspace_is_served_and_defaulted(cluster: ClusterTarget, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    body = workspace("old", version="v1alpha1", instance_type=None)
    out = custom.create_namespaced_custom_object(GROUP, "v1alpha1", cluster.namespace, PLURAL, body)
    assert out["resource"]["instanceType"] == "Standard_NC24ads_A100_v4"  # v1alpha1's default
    assert out["resource"]["count"] == 1
    # Served by the simulated legacy KAITO (tests/test_sandbox_legacy_kaito.py): its done signal has no state.
    wait_until(lambda: (cond(custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, "old"),
                             "WorkspaceSucceeded") or {}).get("status") == "True", what="v1alpha1 Workspace succeeded")
