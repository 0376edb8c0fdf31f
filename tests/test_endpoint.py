"""The model endpoint through the API server's service proxy, against the sandbox's simulated model server.

check_models discovers the served name; chat sends the conversation; a not-ready model is a clear error, not a hang.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from gitops_kaito.adapters import endpoint
from gitops_kaito.adapters.kube import Kube
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.kaito_helpers import create, wait_inference_ready, workspace

pytestmark = pytest.mark.cluster


@pytest.fixture
def kube(cluster: ClusterTarget) -> Iterator[Kube]:
    skip_on_real(cluster, "needs the simulated model server")
    with Kube.connect(cluster.kubeconfig, cluster.context) as k:
        yield k


@pytest.fixture
def admin(cluster: ClusterTarget) -> Iterator[client.ApiClient]:
    api = cluster.api_client()
    yield api
    api.close()


def _service_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    return any(s.metadata.name == name for s in client.CoreV1Api(api).list_namespaced_service(namespace).items)


def test_proxy_path_uses_the_named_http_port() -> None:
    assert endpoint.proxy_path("ml", "phi", "/v1/models") == "/api/v1/namespaces/ml/services/phi:http/proxy/v1/models"


def test_check_models_and_chat_on_a_ready_model(cluster: ClusterTarget, kube: Kube, admin: client.ApiClient) -> None:
    ns = cluster.namespace
    create(admin, ns, workspace("phi"))
    wait_inference_ready(admin, ns, "phi")

    check = endpoint.check_models(kube.api_client, ns, "phi")
    assert check.answers and check.error == ""
    assert check.served_model == "phi-4-mini-instruct"

    reply = endpoint.chat(kube.api_client, ns, "phi", [{"role": "user", "content": "say hi"}], max_tokens=16,
                          temperature=0.2)
    assert reply.model == "phi-4-mini-instruct"
    assert "say hi" in reply.content
    assert reply.usage["total_tokens"] == reply.usage["prompt_tokens"] + reply.usage["completion_tokens"] > 0


def test_requests_go_through_the_service_proxy_with_our_user_agent(cluster: ClusterTarget, kube: Kube,
                                                                   admin: client.ApiClient) -> None:
    assert cluster.sandbox is not None
    ns = cluster.namespace
    create(admin, ns, workspace("proxied"))
    wait_inference_ready(admin, ns, "proxied")
    log = cluster.sandbox.server.request_log
    rx = f"^/api/v1/namespaces/{ns}/services/proxied:http/proxy/v1/(models|chat/completions)$"
    endpoint.chat(kube.api_client, ns, "proxied", [{"role": "user", "content": "x"}])
    # The log entry is written after the reply is sent: wait for it rather than race it.
    calls = wait_until(lambda: (lambda c: c if len(c) >= 2 else None)(
        log.select(user_agent_prefix="gitops-kaito/", path_regex=rx)), 5, what="two logged proxy calls")
    assert [c.method for c in calls] == ["GET", "POST"]  # model discovery, then the chat
    assert all(c.status == 200 for c in calls)


def test_a_model_that_is_not_serving_answers_no_and_chat_raises(cluster: ClusterTarget, kube: Kube,
                                                                admin: client.ApiClient) -> None:
    assert cluster.sandbox is not None
    ns = cluster.namespace
    failure = cluster.sandbox.inject("image-pull", workspace="broken", namespace=ns)
    try:
        create(admin, ns, workspace("broken"))
        # KAITO creates the Service early; the pod behind it never serves (the image does not pull).
        wait_until(lambda: _service_exists(admin, ns, "broken"), what="the inference Service")
        check = endpoint.check_models(kube.api_client, ns, "broken", timeout_s=5)
        assert not check.answers and check.served_model is None
        assert "503" in check.error
        with pytest.raises(endpoint.EndpointError, match="does not answer /v1/models"):
            endpoint.chat(kube.api_client, ns, "broken", [{"role": "user", "content": "x"}])
    finally:
        cluster.sandbox.clear_failures(failure)


def test_asking_for_a_model_the_server_does_not_serve_is_an_error(cluster: ClusterTarget, kube: Kube,
                                                                  admin: client.ApiClient) -> None:
    ns = cluster.namespace
    create(admin, ns, workspace("phi"))
    wait_inference_ready(admin, ns, "phi")
    with pytest.raises(endpoint.EndpointError, match="404"):
        endpoint.chat(kube.api_client, ns, "phi", [{"role": "user", "content": "x"}], model="gpt-4")


def test_an_unreachable_api_server_is_an_endpoint_error() -> None:
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # discard port on loopback: connection refused
    api = client.ApiClient(cfg)
    cfg.retries = False
    try:
        check = endpoint.check_models(api, "ml", "phi", timeout_s=2)
        assert not check.answers and check.error
    finally:
        api.close()
