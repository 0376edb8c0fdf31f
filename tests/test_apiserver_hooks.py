"""Test hooks of the sandbox API emulator: request log, fault injection, service proxy, kubeconfig, Table output.

Faults and the log are what reconciler tests use to count calls and simulate a flaky API server.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import urllib3
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox.apiserver import ApiServer, Fault


@pytest.fixture
def api(api: client.ApiClient) -> client.ApiClient:
    """The shared client, identified as the reconciler in the request log."""
    api.user_agent = "gitops-kaito/0.1.0"
    return api


def test_request_log_counts_by_user_agent_method_and_verb(server: ApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    server.request_log.clear()
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.list_namespaced_config_map("default")
    core.read_namespaced_config_map("a", "default")
    log = server.request_log
    assert log.count(user_agent_prefix="gitops-kaito/") == 3
    assert log.count(user_agent_prefix="gitops-kaito-sandbox/") == 0
    assert log.count(method="POST") == 1
    assert log.count(verbs=["list", "get"]) == 2
    entry = log.entries()[0]
    assert (entry.method, entry.path, entry.status, entry.verb) == (
        "POST", "/api/v1/namespaces/default/configmaps", 201, "create")
    log.clear()
    assert log.count() == 0


def test_fault_returns_status_with_retry_after_limited_times(server: ApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    # 500, not 429/503: urllib3 (under the client) silently retries those when Retry-After is present.
    server.faults.add(Fault(method="GET", path_regex=r"/configmaps$", status=500, times=1, retry_after=7))
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default")
    assert err.value.status == 500 and err.value.headers["Retry-After"] == "7"
    assert json.loads(err.value.body)["kind"] == "Status"
    assert core.list_namespaced_config_map("default").items == []  # times=1: the second call passes
    assert server.request_log.count(method="GET", path_regex="/configmaps$") == 2


def test_fault_drops_connection(server: ApiServer, api: client.ApiClient) -> None:
    server.faults.add(Fault(method="*", path_regex="/namespaces/default/configmaps", drop_connection=True,
                            times=None))
    core = client.CoreV1Api(api)
    with pytest.raises((urllib3.exceptions.HTTPError, ApiException, OSError)):
        core.list_namespaced_config_map("default", _request_timeout=5)
    server.faults.clear()
    assert core.list_namespaced_config_map("default").items == []


def test_fault_delay_only_slows_down(server: ApiServer, api: client.ApiClient) -> None:
    server.faults.add(Fault(method="GET", path_regex="/namespaces$", status=0, delay_s=0.2))
    assert client.CoreV1Api(api).list_namespace().items
    entries = server.request_log.select(path_regex="/namespaces$")
    assert entries and entries[-1].status == 200


def test_service_proxy(server: ApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_service("default", {"metadata": {"name": "phi"}, "spec": {"ports": [{"port": 80}]}})
    with pytest.raises(ApiException) as unavailable:
        core.connect_get_namespaced_service_proxy_with_path("phi:80", "default", "v1/models")
    assert unavailable.value.status == 503
    calls: list[tuple[str, str, str, str, str, bytes]] = []

    def handler(ns: str, svc: str, port: str, method: str, sub: str, body: bytes
                ) -> tuple[int, Mapping[str, str], bytes] | None:
        calls.append((ns, svc, port, method, sub, body))
        return 200, {"Content-Type": "application/json"}, b'{"data":[{"id":"phi"}]}'

    server.set_proxy_handler(handler)
    reply = core.connect_get_namespaced_service_proxy_with_path("phi:80", "default", "v1/models")
    assert "phi" in reply
    assert calls == [("default", "phi", "80", "GET", "/v1/models", b"")]
    with pytest.raises(ApiException) as missing:
        core.connect_get_namespaced_service_proxy_with_path("nope:80", "default", "v1/models")
    assert missing.value.status == 404


def test_kubeconfig_points_at_the_server(server: ApiServer, tmp_path: Path) -> None:
    path = server.write_kubeconfig(tmp_path / "sub" / "kc.yaml")
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "sandbox"
    assert doc["clusters"][0]["cluster"]["server"] == server.url
    assert server.url.startswith("http://127.0.0.1:")


def test_table_output_uses_printer_columns(server: ApiServer, api: client.ApiClient) -> None:
    client.ApiextensionsV1Api(api).create_custom_resource_definition({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "things", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "additionalPrinterColumns": [
                                   {"name": "Ready", "type": "string",
                                    "jsonPath": '.status.conditions[?(@.type=="Ready")].status'}],
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    })
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object("example.com", "v1", "default", "things", {
        "apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    http = urllib3.PoolManager()
    resp = http.request("GET", f"{server.url}/apis/example.com/v1/namespaces/default/things",
                        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    tbl = json.loads(resp.data)
    assert tbl["kind"] == "Table"
    assert [c["name"] for c in tbl["columnDefinitions"]] == ["Name", "Ready"]
    assert tbl["rows"][0]["cells"] == ["t", "True"]
