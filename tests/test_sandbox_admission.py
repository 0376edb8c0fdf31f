"""The emulator's validating admission: KAITO's Workspace webhook refuses what a real KAITO refuses, before storage,
dry runs included (they validate and persist nothing); webhooks are registered per kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.admission import Review, Webhook
from gitops_kaito.sandbox.apiserver import ApiServer

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL, NS = "kaito.sh", "v1beta1", "workspaces", "default"
SKU = "Standard_NC24ads_A100_v4"
PREFIX = 'admission webhook "validation.workspace.kaito.sh" denied the request: validation failed: '


def workspace(name: str, instance_type: str | None = SKU, preset: str = "phi-4-mini-instruct",
              config: str | None = None, version: str = VERSION) -> dict[str, Any]:
    resource: dict[str, Any] = {"labelSelector": {"matchLabels": {"apps": name}}}
    if instance_type:
        resource["instanceType"] = instance_type
    inference: dict[str, Any] = {"preset": {"name": preset}}
    if config:
        inference["config"] = config
    return {"apiVersion": f"{GROUP}/{version}", "kind": "Workspace", "metadata": {"name": name},
            "resource": resource, "inference": inference}


def denied(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 400, caught.value.body
    body = json.loads(caught.value.body)
    assert body["reason"] == "BadRequest" and body["message"].startswith(PREFIX)
    return str(body["message"])


def stored(custom: client.CustomObjectsApi, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
    except ApiException as err:
        assert err.status == 404
        return False
    return True


@pytest.fixture
def custom(sandbox: Sandbox) -> Any:
    api = sandbox.api_client("gitops-kaito-tests")
    yield client.CustomObjectsApi(api)
    api.close()


def test_nap_refuses_a_workspace_without_instance_type_and_a_dry_run_says_so_too(custom: Any) -> None:
    create = custom.create_namespaced_custom_object
    for dry_run in ("All", None):
        message = denied(lambda d=dry_run: create(GROUP, VERSION, NS, PLURAL, workspace("byo-form", None), dry_run=d))
        assert "instanceType is required when node auto-provisioning is enabled" in message
    assert not stored(custom, "byo-form")


def test_a_dry_run_that_passes_persists_nothing(custom: Any) -> None:
    answer = custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, workspace("phi"), dry_run="All")
    assert answer["metadata"]["name"] == "phi"
    assert not stored(custom, "phi")


def test_server_side_apply_is_reviewed_like_a_create(sandbox: Sandbox) -> None:
    api = sandbox.api_client("gitops-kaito")
    resource = DynamicClient(api).resources.get(api_version=f"{GROUP}/{VERSION}", kind="Workspace")
    with pytest.raises(ApiException) as caught:
        DynamicClient(api).server_side_apply(resource, body=workspace("applied", None), name="applied", namespace=NS,
                                             field_manager="gitops-kaito", dry_run="All")
    api.close()
    assert caught.value.status == 400
    assert "instanceType is required when node auto-provisioning" in json.loads(caught.value.body)["message"]


def test_unknown_and_removed_presets_are_refused_any_hugging_face_id_is_not(custom: Any) -> None:
    create = custom.create_namespaced_custom_object
    message = denied(lambda: create(GROUP, VERSION, NS, PLURAL, workspace("falcon", preset="falcon-7b")))
    assert "Unsupported inference preset name falcon-7b" in message
    message = denied(lambda: create(GROUP, VERSION, NS, PLURAL, workspace("old", preset="phi-2")))
    assert "Model phi-2 is deprecated and no longer supported" in message
    create(GROUP, VERSION, NS, PLURAL, workspace("qwen3", preset="Qwen/Qwen3-0.6B"))
    assert stored(custom, "qwen3")


def test_the_config_map_must_exist_and_stay_within_the_token_limit(sandbox: Sandbox, custom: Any) -> None:
    core = client.CoreV1Api(sandbox.api_client("gitops-kaito-tests"))
    create = custom.create_namespaced_custom_object
    message = denied(lambda: create(GROUP, VERSION, NS, PLURAL, workspace("phi", config="phi-config")))
    assert "ConfigMap 'phi-config' specified in 'config' not found in namespace 'default'" in message

    def config(max_len: int) -> dict[str, Any]:
        return {"metadata": {"name": "phi-config"},
                "data": {"inference_config.yaml": f"vllm:\n  max-model-len: {max_len}\n"}}
    core.create_namespaced_config_map(NS, config(10_000_000))
    message = denied(lambda: create(GROUP, VERSION, NS, PLURAL, workspace("phi", config="phi-config")))
    assert "max-model-len 10000000 exceeds model's maximum supported context window" in message
    core.replace_namespaced_config_map("phi-config", NS, config(8192))
    create(GROUP, VERSION, NS, PLURAL, workspace("phi", config="phi-config"))
    assert stored(custom, "phi")


def test_immutable_fields_are_refused_on_update_metadata_is_not(custom: Any) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, workspace("phi"))
    message = denied(lambda: custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "phi", {"resource": {"instanceType": "Standard_NC48ads_A100_v4"}}))
    assert "instanceType cannot be changed once set when node auto-provisioning is enabled" in message
    message = denied(lambda: custom.patch_namespaced_custom_object(
        GROUP, VERSION, NS, PLURAL, "phi", {"inference": {"preset": {"name": "phi-4"}}}))
    assert "field is immutable: inference.preset" in message
    patched = custom.patch_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, "phi",
                                                    {"metadata": {"labels": {"team": "ml"}}})
    assert patched["metadata"]["labels"] == {"team": "ml"}


def test_v1alpha1_requests_get_legacy_rules(custom: Any) -> None:
    create = custom.create_namespaced_custom_object
    neither = workspace("neither", version="v1alpha1")
    del neither["inference"]
    message = denied(lambda: create(GROUP, "v1alpha1", NS, PLURAL, neither))
    assert "Either Inference or Tuning must be specified" in message
    create(GROUP, "v1alpha1", NS, PLURAL, workspace("legacy", version="v1alpha1"))
    assert stored(custom, "legacy")


@pytest.mark.parametrize("sandbox", [SandboxSettings(speed="fast", admission=False)], indirect=True)
def test_admission_can_be_switched_off(custom: Any) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, workspace("byo-form", None))
    assert stored(custom, "byo-form")


def test_webhooks_are_registered_per_kind_on_a_bare_emulator() -> None:
    seen: list[Review] = []

    def no_secrets_in_data(review: Review, view: Any) -> list[str]:
        seen.append(review)
        return ["password keys are not allowed: data"] if "password" in (review.obj.get("data") or {}) else []

    with ApiServer() as server:
        server.api.admission.register(Webhook("policy.example.com", "", "ConfigMap", no_secrets_in_data))
        api = client.ApiClient(client.Configuration(host=server.url))
        core = client.CoreV1Api(api)
        core.create_namespaced_config_map(NS, {"metadata": {"name": "ok"}, "data": {"a": "b"}})
        with pytest.raises(ApiException) as caught:
            core.create_namespaced_config_map(NS, {"metadata": {"name": "bad"}, "data": {"password": "x"}})
        assert caught.value.status == 400
        assert json.loads(caught.value.body)["message"] == ('admission webhook "policy.example.com" denied the '
                                                            "request: validation failed: password keys are not "
                                                            "allowed: data")
        core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": {"password": "x"}})
        api.close()
    assert [r.operation for r in seen] == ["CREATE", "CREATE"]
