"""Object lifecycle on the sandbox API emulator: finalizers, namespaces, dryRun, CRD versions and scopes, kinds.

Also installs KAITO's and Karpenter's real CRDs (from ../shared/kaito, skipped when absent).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Cluster",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {"name": "v1alpha1", "served": True, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
            {"name": "v1", "served": True, "storage": True,
             "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        ],
    },
}


def test_finalizers_hold_deletion_until_removed(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "a", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("a", "default")
    held = core.read_namespaced_config_map("a", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("a", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("a", "default")
    assert gone.value.status == 404


def test_deleting_a_namespace_deletes_its_objects(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "a"}})
    core.create_namespaced_secret("team", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "keep"}})
    core.delete_namespace("team")
    with pytest.raises(ApiException) as gone:
        core.read_namespace("team")
    assert gone.value.status == 404
    assert core.list_config_map_for_all_namespaces().items[0].metadata.name == "keep"
    with pytest.raises(ApiException) as no_ns:
        core.list_namespaced_config_map("team")
    assert no_ns.value.status == 404


def test_namespace_with_finalized_object_stays_terminating(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "a", "finalizers": ["x/y"]}})
    core.delete_namespace("team")
    assert core.read_namespace("team").status.phase == "Terminating"
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_config_map("team", {"metadata": {"name": "b"}})
    assert refused.value.status == 403
    core.patch_namespaced_config_map("a", "team", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespace("team")
    assert gone.value.status == 404


def test_dry_run_persists_nothing(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    made = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}},
                                             dry_run="All")
    assert made.metadata.name == "a"
    assert core.list_namespaced_config_map("default").items == []
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    before = core.read_namespaced_config_map("a", "default")
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "2"}}, dry_run="All")
    replaced = copy.deepcopy(before)
    replaced.data = {"k": "3"}
    assert core.replace_namespaced_config_map("a", "default", replaced, dry_run="All").data == {"k": "3"}
    core.delete_namespaced_config_map("a", "default", dry_run="All")
    after = core.read_namespaced_config_map("a", "default")
    assert after.data == {"k": "1"} and after.metadata.resource_version == before.metadata.resource_version


def test_multi_version_crd_relabels_and_cluster_scope(api: client.ApiClient, tmp_path: Path) -> None:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(GADGET_CRD)
    co = client.CustomObjectsApi(api)
    co.create_cluster_custom_object("example.com", "v1alpha1", "gadgets",
                                    {"apiVersion": "example.com/v1alpha1", "kind": "Gadget",
                                     "metadata": {"name": "g"}, "spec": {"x": 1}})
    as_v1 = co.get_cluster_custom_object("example.com", "v1", "gadgets", "g")
    assert as_v1["apiVersion"] == "example.com/v1" and as_v1["spec"] == {"x": 1}
    listed = co.list_cluster_custom_object("example.com", "v1alpha1", "gadgets")
    assert [i["apiVersion"] for i in listed["items"]] == ["example.com/v1alpha1"]
    dyn = DynamicClient(api, cache_file=str(tmp_path / "cache.json"))
    assert dyn.resources.get(api_version="example.com/v1", kind="Gadget").namespaced is False
    group = next(g for g in client.ApisApi(api).get_api_versions().groups if g.name == "example.com")
    assert group.preferred_version.version == "v1"
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition("gadgets.example.com")
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)


def test_deleting_a_crd_removes_its_resources(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(GADGET_CRD)
    co = client.CustomObjectsApi(api)
    co.create_cluster_custom_object("example.com", "v1", "gadgets",
                                    {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})
    ext.delete_custom_resource_definition("gadgets.example.com")
    with pytest.raises(ApiException) as gone:
        co.list_cluster_custom_object("example.com", "v1", "gadgets")
    assert gone.value.status == 404
    ext.create_custom_resource_definition(GADGET_CRD)
    assert co.list_cluster_custom_object("example.com", "v1", "gadgets")["items"] == []


def test_invalid_crd_is_rejected(api: client.ApiClient) -> None:
    bad = copy.deepcopy(GADGET_CRD)
    bad["metadata"]["name"] = "wrong.example.com"
    with pytest.raises(ApiException) as err:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(bad)
    assert err.value.status == 422


def test_leases_for_leader_election(api: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease("kube-system", {
        "metadata": {"name": "gitops-kaito"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    })
    lease.spec.holder_identity = "b"
    renewed = coord.replace_namespaced_lease("gitops-kaito", "kube-system", lease)
    assert renewed.spec.holder_identity == "b"
    lease.spec.holder_identity = "c"  # stale resourceVersion: the other candidate loses the race
    with pytest.raises(ApiException) as lost:
        coord.replace_namespaced_lease("gitops-kaito", "kube-system", lease)
    assert lost.value.status == 409


def test_nodes_services_secrets_events(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    node = core.create_node({"metadata": {"name": "n1", "labels": {"nvidia.com/gpu.present": "true"}},
                             "status": {"capacity": {"nvidia.com/gpu": "1"}}})
    assert node.metadata.name == "n1"
    core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert core.read_node("n1").status.conditions[0].type == "Ready"
    assert [n.metadata.name for n in core.list_node(label_selector="nvidia.com/gpu.present=true").items] == ["n1"]
    svc = core.create_namespaced_service("default", {"metadata": {"name": "ws"},
                                                     "spec": {"ports": [{"port": 80, "targetPort": 5000}]}})
    assert svc.spec.cluster_ip and svc.spec.type == "ClusterIP"
    sec = core.create_namespaced_secret("default", {"metadata": {"name": "s"}, "stringData": {"token": "abc"}})
    assert sec.data == {"token": "YWJj"}
    core.create_namespaced_event("default", {"metadata": {"name": "e1"}, "reason": "Test", "message": "m",
                                             "involvedObject": {"kind": "ConfigMap", "name": "x"}})
    events = client.EventsV1Api(api)
    events.create_namespaced_event("default", {"metadata": {"name": "e2"}, "reason": "Test",
                                               "eventTime": "2024-01-01T00:00:00.000000Z",
                                               "reportingController": "x", "reportingInstance": "y", "action": "A"})
    # One store, two shapes, as on a cluster: each API lists both, with its own field names.
    assert [e.metadata.name for e in core.list_namespaced_event("default").items] == ["e1", "e2"]
    # Raw JSON: a core Event without eventTime has none in events.k8s.io either, which the generated model refuses.
    listed = json.loads(events.list_namespaced_event("default", _preload_content=False).data)
    seen = {e["metadata"]["name"]: e for e in listed["items"]}
    assert sorted(seen) == ["e1", "e2"] and listed["apiVersion"] == "events.k8s.io/v1"
    assert (seen["e1"]["regarding"]["name"], seen["e1"]["note"], seen["e1"]["reason"]) == ("x", "m", "Test")
    assert "involvedObject" not in seen["e1"] and "message" not in seen["e1"]
    assert core.read_namespaced_event("e2", "default").reporting_component == "x"
    events.patch_namespaced_event("e1", "default", {"note": "changed"}, _preload_content=False)
    assert core.read_namespaced_event("e1", "default").message == "changed"


def test_strategic_merge_patch_merges_containers_by_name(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}})
    patched = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [{"name": "b", "image": "b:2"}]}})
    assert [(c.name, c.image) for c in patched.spec.containers] == [("a", "a:1"), ("b", "b:2")]


def test_kaito_and_karpenter_crds_install_and_serve(api: client.ApiClient, shared_kaito: Path) -> None:
    ext = client.ApiextensionsV1Api(api)
    for name in ("crd-workspaces-v0.12.yaml", "crd-nodeclaims-karpenter-v1.yaml",
                 "crd-machines-karpenter-v1alpha5.yaml"):
        for doc in yaml.safe_load_all((shared_kaito / name).read_text()):
            if doc:
                ext.create_custom_resource_definition(doc)
    co = client.CustomObjectsApi(api)
    ws = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "phi"},
          "resource": {"instanceType": "Standard_NC24ads_A100_v4",
                       "labelSelector": {"matchLabels": {"apps": "phi"}}},
          "inference": {"preset": {"name": "phi-3-mini-4k-instruct"}}}
    made = co.create_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces", ws)
    assert made["metadata"]["generation"] == 1
    made["resource"]["count"] = 2
    changed = co.replace_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces", "phi", made)
    assert changed["metadata"]["generation"] == 2  # no .spec: any change outside metadata/status counts
    old = co.get_namespaced_custom_object("kaito.sh", "v1alpha1", "default", "workspaces", "phi")
    assert old["apiVersion"] == "kaito.sh/v1alpha1" and old["resource"]["count"] == 2
    bad_status = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
    with pytest.raises(ApiException) as err:
        co.patch_namespaced_custom_object_status("kaito.sh", "v1beta1", "default", "workspaces", "phi", bad_status)
    assert err.value.status == 422
    fields = {c["field"] for c in json.loads(err.value.body)["details"]["causes"]}
    assert "status.conditions[0].status" in fields and "status.conditions[0].reason" in fields
    claim = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "nc"},
             "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                      "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                        "values": ["Standard_NC24ads_A100_v4"]}]}}
    co.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", claim)
    assert co.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"][0]["metadata"]["name"] == "nc"


def test_delete_collection_by_label_selector(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, owner in [("a", "me"), ("b", "me"), ("c", "other")]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": {"owner": owner}}})
    core.delete_collection_namespaced_config_map("default", label_selector="owner=me")
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["c"]
