"""Server-side apply on the sandbox API emulator: create-on-apply, managers, conflicts, force, removal, list maps.

Driven through kubernetes.dynamic.DynamicClient and raw ApiClient calls, as the reconciler does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ConflictError

from gitops_kaito.sandbox.apiserver import ApiServer

THING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Cluster",
        "names": {"plural": "things", "singular": "thing", "kind": "Thing"},
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {"type": "object", "properties": {
                        "a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "integer"},
                        "ports": {
                            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {
                                "name": {"type": "string"}, "port": {"type": "integer"}}},
                        },
                    }},
                    "status": {"type": "object", "properties": {"conditions": {"type": "array", "items": {
                        "type": "object", "properties": {
                            "type": {"type": "string"}, "status": {"type": "string"}, "reason": {"type": "string"}}}}}},
                },
            }},
        }],
    },
}


@pytest.fixture
def env(server: ApiServer, api: client.ApiClient, tmp_path: Path) -> tuple[ApiServer, DynamicClient, Any]:
    client.ApiextensionsV1Api(api).create_custom_resource_definition(THING_CRD)
    dyn = DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    return server, dyn, dyn.resources.get(api_version="example.com/v1", kind="Thing")


def thing(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec}


def apply(dyn: DynamicClient, res: Any, body: dict[str, Any], manager: str, force: bool = False) -> dict[str, Any]:
    out = dyn.server_side_apply(res, body=body, name="t", field_manager=manager, force_conflicts=force)
    return out.to_dict()  # type: ignore[no-any-return]


def raw_apply(api: client.ApiClient, path: str, body: dict[str, Any], manager: str | None) -> tuple[int, Any]:
    """A raw apply PATCH through the client's REST layer (CustomObjectsApi drops 201 bodies)."""
    sep = "&" if "?" in path else "?"
    url = api.configuration.host + path + (f"{sep}fieldManager={manager}" if manager else "")
    resp = api.call_api("PATCH", url, header_params={"Content-Type": "application/apply-patch+yaml",
                                                      "Accept": "application/json"}, body=body)
    data = json.loads(resp.read() or b"null")
    if resp.status >= 400:
        raise ApiException(status=resp.status, reason=data.get("reason", ""))
    return resp.status, data


def test_create_on_apply_returns_201_and_records_manager(env: Any) -> None:
    _srv, dyn, _res = env
    code, data = raw_apply(dyn.client, "/apis/example.com/v1/things/t", thing({"a": "1"}), "alpha")
    assert code == 201
    managed = data["metadata"]["managedFields"]
    assert managed[0]["manager"] == "alpha" and managed[0]["operation"] == "Apply"
    assert managed[0]["fieldsType"] == "FieldsV1" and managed[0]["fieldsV1"] == {"f:spec": {"f:a": {}}}
    again, _ = raw_apply(dyn.client, "/apis/example.com/v1/things/t", thing({"a": "2"}), "alpha")
    assert again == 200


def test_apply_requires_field_manager(env: Any) -> None:
    _, dyn, _ = env
    with pytest.raises(ApiException) as err:
        raw_apply(dyn.client, "/apis/example.com/v1/things/t", thing({"a": "1"}), None)
    assert err.value.status == 400


def test_noop_apply_does_not_bump_resource_version(env: Any) -> None:
    _, dyn, res = env
    first = apply(dyn, res, thing({"a": "1"}), "alpha")
    second = apply(dyn, res, thing({"a": "1"}), "alpha")
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


def test_conflict_between_apply_managers_and_force(env: Any) -> None:
    _, dyn, res = env
    apply(dyn, res, thing({"a": "1", "c": 1}), "alpha")
    apply(dyn, res, thing({"a": "1"}), "beta")  # same value: shared ownership, no conflict
    with pytest.raises(ApiException) as err:
        apply(dyn, res, thing({"a": "2"}), "beta")
    assert err.value.status == 409
    body = json.loads(err.value.body)
    assert body["reason"] == "Conflict" and "alpha" in body["message"] and ".spec.a" in body["message"]
    forced = apply(dyn, res, thing({"a": "2"}), "beta", force=True)
    assert forced["spec"]["a"] == "2"
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:a" not in owners["alpha"].get("f:spec", {}) and "f:a" in owners["beta"]["f:spec"]


def test_fields_a_manager_stops_sending_are_removed_unless_co_owned(env: Any) -> None:
    _, dyn, res = env
    apply(dyn, res, thing({"a": "1", "b": "x", "c": 3}), "alpha")
    apply(dyn, res, thing({"c": 3}), "beta")
    after = apply(dyn, res, thing({"a": "1"}), "alpha")
    assert after["spec"]["a"] == "1"
    assert "b" not in after["spec"]  # only alpha owned it
    assert after["spec"]["c"] == 3  # beta still owns it


def test_update_manager_loses_fields_changed_by_apply(env: Any) -> None:
    """A field another manager set by Update (kubectl edit) conflicts with an apply of another value, as in
    Kubernetes ("conflict with \"kubectl-edit\""); forcing takes it over."""
    _, dyn, res = env
    apply(dyn, res, thing({"a": "1"}), "alpha")
    dyn.patch(res, body={"spec": {"b": "edited"}}, name="t", content_type="application/merge-patch+json",
              field_manager="editor")
    obj = dyn.get(res, name="t").to_dict()
    editor = next(m for m in obj["metadata"]["managedFields"] if m["manager"] == "editor")
    assert editor["operation"] == "Update" and editor["fieldsV1"] == {"f:spec": {"f:b": {}}}
    with pytest.raises(ConflictError, match=r"conflict with .*editor.*: .spec.b"):
        apply(dyn, res, thing({"a": "1", "b": "mine"}), "alpha")
    assert apply(dyn, res, thing({"a": "1", "b": "edited"}), "alpha")["spec"]["b"] == "edited"  # same value: shared
    after = apply(dyn, res, thing({"a": "1", "b": "mine"}), "alpha", force=True)
    assert after["spec"]["b"] == "mine"
    assert all(m["manager"] != "editor" for m in after["metadata"]["managedFields"])


def test_list_map_items_merge_by_key(env: Any) -> None:
    _, dyn, res = env
    apply(dyn, res, thing({"ports": [{"name": "http", "port": 80}]}), "alpha")
    both = apply(dyn, res, thing({"ports": [{"name": "grpc", "port": 9000}]}), "beta")
    assert sorted(p["name"] for p in both["spec"]["ports"]) == ["grpc", "http"]
    alpha = next(m for m in both["metadata"]["managedFields"] if m["manager"] == "alpha")
    assert 'k:{"name":"http"}' in alpha["fieldsV1"]["f:spec"]["f:ports"]
    # Co-owning beta's item (with fewer fields) is no conflict.
    shared = apply(dyn, res, thing({"ports": [{"name": "http", "port": 80}, {"name": "grpc"}]}), "alpha")
    assert {p["name"]: p.get("port") for p in shared["spec"]["ports"]} == {"http": 80, "grpc": 9000}
    dropped = apply(dyn, res, thing({}), "alpha")
    assert [p["name"] for p in dropped["spec"]["ports"]] == ["grpc"]


def test_status_conditions_merge_by_type_on_status_subresource(env: Any) -> None:
    _srv, dyn, res = env
    apply(dyn, res, thing({"a": "1"}), "owner")
    path = "/apis/example.com/v1/things/t/status"
    body = {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"},
            "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "Wait"}]}}
    code, _ = raw_apply(dyn.client, path, body, "ctrl-a")
    assert code == 200
    body["status"]["conditions"] = [{"type": "Synced", "status": "True", "reason": "Ok"}]
    _, data = raw_apply(dyn.client, path, body, "ctrl-b")
    assert {c["type"] for c in data["status"]["conditions"]} == {"Ready", "Synced"}
    status_entries = [m for m in data["metadata"]["managedFields"] if m.get("subresource") == "status"]
    assert {m["manager"] for m in status_entries} == {"ctrl-a", "ctrl-b"}
    assert data["spec"] == {"a": "1"}  # the status apply did not touch spec
    main = apply(dyn, res, {**thing({"a": "1"}), "status": {"conditions": []}}, "owner")
    assert len(main["status"]["conditions"]) == 2  # status in a main-resource apply is ignored


def test_apply_through_dynamic_client_on_builtin_kind(env: Any) -> None:
    _, dyn, _ = env
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default",
                                                                  "labels": {"a": "1"}}, "data": {"k": "v"}}
    created = dyn.server_side_apply(cms, body=body, name="c", namespace="default", field_manager="m")
    assert created.data.k == "v"
    body["metadata"]["labels"] = {}
    body["data"] = {"k": "w"}
    updated = dyn.server_side_apply(cms, body=body, name="c", namespace="default", field_manager="m")
    assert updated.data.k == "w" and not (updated.metadata.labels or {})


def test_apply_dry_run_persists_nothing(env: Any) -> None:
    _, dyn, res = env
    code, data = raw_apply(dyn.client, "/apis/example.com/v1/things/t?dryRun=All", thing({"a": "1"}), "alpha")
    assert code == 201 and data["spec"] == {"a": "1"}
    with pytest.raises(ApiException) as err:
        dyn.get(res, name="t")
    assert err.value.status == 404
