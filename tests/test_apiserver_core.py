"""Conformance of the sandbox API emulator through the official client: discovery, CRUD, codes, selectors.

Every test talks HTTP to a fresh emulator on 127.0.0.1 through kubernetes.client.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from gitops_kaito.sandbox.apiserver import ApiServer

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1, "default": 1},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                    "maybe": {"type": "string", "nullable": True},
                                    "quantity": {"x-kubernetes-int-or-string": True},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture
def widgets(api: client.ApiClient) -> client.CustomObjectsApi:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(WIDGET_CRD)
    return client.CustomObjectsApi(api)


def test_discovery_accepted_by_core_apis_and_dynamic_client(api: client.ApiClient, widgets: object, tmp_path: Path) -> None:
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert "example.com" in groups and groups["example.com"].preferred_version.version == "v1"
    assert "coordination.k8s.io" in groups
    dyn = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    res = dyn.resources.get(api_version="example.com/v1", kind="Widget")
    assert res.namespaced and res.name == "widgets"
    assert dyn.resources.get(api_version="v1", kind="Node").namespaced is False
    assert client.VersionApi(api).get_code().major == "1"


def test_create_sets_server_metadata_and_201(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    _, code, _ = core.create_namespaced_config_map_with_http_info(
        "default", {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    assert code == 201
    cms = core.list_namespaced_config_map("default").items
    assert len(cms) == 1
    meta = cms[0].metadata
    assert meta.name.startswith("cfg-") and len(meta.name) > 4
    assert meta.uid and meta.creation_timestamp is not None and int(meta.resource_version) > 0


def test_resource_version_is_global_and_increasing(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = core.create_namespace({"metadata": {"name": "other"}})
    c = core.create_namespaced_config_map("other", {"metadata": {"name": "a"}})
    rvs = [int(x.metadata.resource_version) for x in (a, b, c)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_error_codes_and_status_bodies(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", "default")
    assert missing.value.status == 404
    import json

    body = json.loads(missing.value.body)
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and body["details"]["name"] == "nope"
    with pytest.raises(ApiException) as no_ns:
        core.create_namespaced_config_map("ghost", {"metadata": {"name": "a"}})
    assert no_ns.value.status == 404
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    with pytest.raises(ApiException) as dup:
        core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert dup.value.status == 409 and json.loads(dup.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as bad:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    assert bad.value.status == 422 and json.loads(bad.value.body)["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(ApiException) as bad_label:
        core.create_namespaced_config_map("default", {"metadata": {"name": "b", "labels": {"x": "not ok!"}}})
    assert bad_label.value.status == 422


def test_update_conflict_on_stale_resource_version(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"k": "1"}})
    cm.data = {"k": "2"}
    updated = core.replace_namespaced_config_map("a", "default", cm)
    assert updated.data == {"k": "2"}
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    cm.data = {"k": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("a", "default", cm)
    assert stale.value.status == 409 and "modified" in stale.value.body


def test_label_and_field_selectors(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name, labels in [("a", {"app": "x", "tier": "web"}), ("b", {"app": "y"}), ("c", {"tier": "db"})]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**kw: str) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map("default", **kw).items]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app==y") == ["b"]
    assert names(label_selector="app!=x") == ["b", "c"]
    assert names(label_selector="app in (x,y)") == ["a", "b"]
    assert names(label_selector="app notin (x)") == ["b", "c"]
    assert names(label_selector="tier") == ["a", "c"]
    assert names(label_selector="!tier") == ["b"]
    assert names(label_selector="app,tier=web") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    all_ns = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=default")
    assert len(all_ns.items) == 3
    # Relabelling and deleting keep the label index honest.
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"app": "y"}}})
    assert names(label_selector="app=x") == [] and names(label_selector="app=y") == ["a", "b"]
    core.delete_namespaced_config_map("b", "default")
    assert names(label_selector="app=y") == ["a"]
    assert names(label_selector="app=y,tier=web") == ["a"] and names(label_selector="app=y,tier=db") == []


def test_limit_and_continue(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm-{i}"}})
    seen, token = [], None
    pages = 0
    while True:
        page = core.list_namespaced_config_map("default", limit=2, _continue=token)
        pages += 1
        seen += [c.metadata.name for c in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"cm-{i}" for i in range(5)] and pages == 3


def test_custom_resource_crud_status_split_and_generation(widgets: client.CustomObjectsApi) -> None:
    w = widgets.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
         "spec": {"color": "red"}, "status": {"phase": "ignored"}},
    )
    assert w["metadata"]["generation"] == 1 and "status" not in w
    assert w["spec"]["size"] == 1  # schema default
    w["status"] = {"phase": "Ready"}
    after_status = widgets.replace_namespaced_custom_object_status("example.com", "v1", "default", "widgets", "w", w)
    assert after_status["status"] == {"phase": "Ready"} and after_status["metadata"]["generation"] == 1
    after_status["spec"]["size"] = 3
    after_status["status"] = {"phase": "Overwritten?"}
    main = widgets.replace_namespaced_custom_object("example.com", "v1", "default", "widgets", "w", after_status)
    assert main["spec"]["size"] == 3 and main["status"] == {"phase": "Ready"}
    assert main["metadata"]["generation"] == 2
    labelled = widgets.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w", {"metadata": {"labels": {"a": "b"}}}
    )
    assert labelled["metadata"]["generation"] == 2  # metadata changes do not bump generation
    widgets.delete_namespaced_custom_object("example.com", "v1", "default", "widgets", "w")
    with pytest.raises(ApiException) as gone:
        widgets.get_namespaced_custom_object("example.com", "v1", "default", "widgets", "w")
    assert gone.value.status == 404


def test_schema_prune_default_validate(widgets: client.CustomObjectsApi) -> None:
    w = widgets.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
         "spec": {"unknown": 1, "free": {"anything": {"goes": True}}}, "junk": True},
    )
    assert "junk" not in w and "unknown" not in w["spec"]
    assert w["spec"]["free"] == {"anything": {"goes": True}} and w["spec"]["size"] == 1
    with pytest.raises(ApiException) as bad:
        widgets.create_namespaced_custom_object(
            "example.com", "v1", "default", "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"},
             "spec": {"size": 0, "color": "green"}},
        )
    import json

    causes = json.loads(bad.value.body)["details"]["causes"]
    assert bad.value.status == 422
    assert {c["field"] for c in causes} == {"spec.size", "spec.color"}
    ok = widgets.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "y"},
         "spec": {"maybe": None, "quantity": "10Gi"}},
    )
    assert ok["spec"]["quantity"] == "10Gi" and ok["spec"]["maybe"] is None
    with pytest.raises(ApiException) as not_int_or_string:
        widgets.create_namespaced_custom_object(
            "example.com", "v1", "default", "widgets",
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "z"},
             "spec": {"quantity": [1]}},
        )
    assert not_int_or_string.value.status == 422


def test_patch_types(api: client.ApiClient, widgets: client.CustomObjectsApi) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}})
    merged = core.patch_namespaced_config_map("a", "default", {"data": {"x": None, "z": "3"}})
    assert merged.data == {"y": "2", "z": "3"}
    widgets.create_namespaced_custom_object(
        "example.com", "v1", "default", "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}},
    )
    patched = widgets.patch_namespaced_custom_object(
        "example.com", "v1", "default", "widgets", "w",
        [{"op": "test", "path": "/spec/size", "value": 2}, {"op": "replace", "path": "/spec/size", "value": 5}],
        _content_type="application/json-patch+json",
    )
    assert patched["spec"]["size"] == 5
    with pytest.raises(ApiException) as failed_test:
        widgets.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w",
            [{"op": "test", "path": "/spec/size", "value": 2}],
            _content_type="application/json-patch+json",
        )
    assert failed_test.value.status == 422
    with pytest.raises(ApiException) as smp:
        widgets.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w", {"spec": {"size": 1}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert smp.value.status == 415


def test_stop_frees_port_promptly(server: ApiServer) -> None:
    import socket

    port = server.port
    server.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
