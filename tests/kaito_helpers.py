"""Small helpers shared by the chat/endpoint/import tests: a Workspace as a user would write it, and a wait for Ready.

Kept apart from fixtures_cluster.py (owned by the sandbox) so those tests do not repeat the same setup.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from tests.fixtures_cluster import wait_until

GROUP, VERSION, PLURAL = "kaito.sh", "v1beta1", "workspaces"
SKU = "Standard_NC24ads_A100_v4"


def workspace(name: str, preset: str = "phi-4-mini-instruct", instance_type: str = SKU,
              labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Workspace", "metadata": {"name": name},
        "resource": {"instanceType": instance_type, "labelSelector": {"matchLabels": labels or {"apps": name}}},
        "inference": {"preset": {"name": preset}},
    }
    body.update(extra)
    return body


def create(api: client.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    out: Any = client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    return dict(out)


def get(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    out: Any = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    return dict(out)


def inference_ready(obj: dict[str, Any]) -> bool:
    return any(c.get("type") == "InferenceReady" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def wait_inference_ready(api: client.ApiClient, namespace: str, name: str, timeout: float = 20.0) -> dict[str, Any]:
    return wait_until(lambda: (lambda o: o if inference_ready(o) else None)(get(api, namespace, name)),
                      timeout, what=f"{namespace}/{name} InferenceReady")
