"""The Sandbox wrapper and the model server: kubeconfig, user agents, service proxy answers, clean stop.

The model server is reached through the API server's service proxy path, like `kubectl get --raw` would.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox import Failure, Sandbox, SandboxSettings
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "kaito.sh", "v1beta1", "workspaces"


def ready_workspace(api: client.ApiClient, ns: str, name: str, preset: str = "phi-4-mini-instruct") -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workspace", "metadata": {"name": name},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"apps": name}}},
        "inference": {"preset": {"name": preset}}})

    def ready() -> dict[str, Any] | None:
        ws = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        return ws if (ws.get("status") or {}).get("state") == "Ready" else None
    return wait_until(ready, what=f"{name} Ready")


def proxy(url: str, ns: str, service: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(f"{url}/api/v1/namespaces/{ns}/services/{service}:80/proxy/{path}",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw


def test_model_server_answers_through_the_service_proxy(cluster: ClusterTarget) -> None:
    skip_on_real(cluster, "the canned model server is simulated")
    assert cluster.sandbox is not None
    api = cluster.api_client()
    ns = cluster.namespace
    ready_workspace(api, ns, "chat", preset="mistral-7b-instruct")
    core = client.CoreV1Api(api)
    # _preload_content=False: the client would otherwise turn the JSON into a Python repr string.
    models = core.connect_get_namespaced_service_proxy_with_path("chat:80", ns, "v1/models", _preload_content=False)
    doc = json.loads(models.data)
    assert doc["data"][0]["id"] == "mistral-7b-instruct-v0.3"  # the served name changed in v0.11 (FACTS 2)

    url = cluster.sandbox.url
    assert proxy(url, ns, "chat", "health")[0] == 200
    status, reply = proxy(url, ns, "chat", "v1/chat/completions",
                          {"model": "mistral-7b-instruct-v0.3", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200
    assert reply["object"] == "chat.completion" and reply["model"] == "mistral-7b-instruct-v0.3"
    assert reply["choices"][0]["message"]["role"] == "assistant" and reply["choices"][0]["message"]["content"]
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
    status, err = proxy(url, ns, "chat", "v1/chat/completions",
                        {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404 and "does not exist" in err["message"]
    api.close()


def test_model_server_is_unavailable_until_inference_ready(sandbox: Sandbox) -> None:
    sandbox.inject("sku-unavailable")  # global: nothing ever gets a node
    api = sandbox.api_client()
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workspace", "metadata": {"name": "wait"},
        "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
        "inference": {"preset": {"name": "phi-4-mini-instruct"}}})
    core = client.CoreV1Api(api)
    # No Service before the nodes are ready (KAITO creates it after EnsureNodesReady).
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_service("wait", "default")
    assert missing.value.status == 404
    core.create_namespaced_service("default", {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "wait"},
                                               "spec": {"ports": [{"port": 80, "targetPort": 5000}]}})
    assert proxy(sandbox.url, "default", "wait", "v1/models")[0] == 503
    assert proxy(sandbox.url, "default", "nosuch", "v1/models")[0] == 404
    api.close()


def test_controllers_identify_themselves_and_the_kubeconfig_works(sandbox: Sandbox) -> None:
    api = config.new_client_from_config(config_file=str(sandbox.kubeconfig_path))
    api.user_agent = "gitops-kaito/0.1.0"
    custom = client.CustomObjectsApi(api)
    ns_names = [n.metadata.name for n in client.CoreV1Api(api).list_namespace().items]
    assert "default" in ns_names
    other = sandbox.api_client("tests")
    ready_workspace(other, "default", "ua")
    other.close()
    log = sandbox.server.request_log
    assert log.count(user_agent_prefix="gitops-kaito/") == 1  # only our list: the controllers use their own agent
    for name in ("kaito", "karpenter", "chaos", "ragengine", "inferenceset"):
        # each controller opens its watches on its own thread: wait for its first request, however late
        wait_until(lambda n=name: log.count(user_agent_prefix=f"gitops-kaito-sandbox/{n}") > 0, timeout=10,
                   what=f"a request from the {name} controller")
    crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
    assert {c.metadata.name for c in crds} == {"workspaces.kaito.sh", "nodeclaims.karpenter.sh", "machines.karpenter.sh",
                                               "inferencesets.kaito.sh", "ragengines.kaito.sh",
                                               "nodepools.karpenter.sh"}
    assert custom.list_cluster_custom_object("karpenter.sh", "v1alpha5", "machines")["items"] == []
    api.close()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_stop_ends_every_thread_and_frees_the_port(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "kc.yaml"
    sb = Sandbox(SandboxSettings(kubeconfig_path=kubeconfig, failures=(Failure("image-pull"),)))
    with sb:
        api = sb.api_client()
        ready = {"done": False}
        client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workspace", "metadata": {"name": "s"},
            "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
            "inference": {"preset": {"name": "phi-4-mini-instruct"}}})
        wait_until(lambda: any(c.get("reason") == "ImagePullError" for c in (client.CustomObjectsApi(api)
                   .get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "s").get("status") or {})
                   .get("conditions") or []), what="the injected image pull error")
        ready["done"] = True
        controllers = list(sb.controllers)
        port = sb.server.port
        assert kubeconfig.is_file() and all(c.alive for c in controllers)
        api.close()
    assert ready["done"]
    assert not any(c.alive for c in controllers)
    assert not _port_open(port)
    assert kubeconfig.is_file()  # a kubeconfig the caller asked for is left in place


def test_settings_reject_unknown_modes() -> None:
    with pytest.raises(ValueError, match="speed"):
        SandboxSettings(speed="warp")
    with pytest.raises(ValueError, match="node_provisioning"):
        SandboxSettings(node_provisioning="magic")
    with pytest.raises(ValueError, match="failure kind"):
        Failure("meteor")
