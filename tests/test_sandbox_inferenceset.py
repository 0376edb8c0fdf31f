"""The sandbox's KAITO InferenceSet controller: KAITO's own example InferenceSets apply; child Workspaces are named,
labelled and owned as KAITO makes them; readyReplicas follows the children; the scale subresource scales; a template
edit reaches existing children only as labels; deleting the set removes its children.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures_cluster import wait_until
from kubernetes import client

from gitops_kaito.sandbox.runtime import Sandbox, SandboxSettings

CREATED_BY = "inferenceset.kaito.sh/created-by"


@pytest.fixture
def custom() -> Iterator[client.CustomObjectsApi]:
    with Sandbox(SandboxSettings(speed="fast")) as sb:
        api = sb.api_client("test-admin/1.0")
        yield client.CustomObjectsApi(api)
        api.close()


def children(custom: client.CustomObjectsApi, name: str) -> list[dict[str, Any]]:
    return [w for w in custom.list_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces",
                                                          label_selector=f"{CREATED_BY}={name}")["items"]
            if not w["metadata"].get("deletionTimestamp")]


def the_set(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return dict(custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "default", "inferencesets", name))


def test_kaitos_example_inferencesets_apply_and_reconcile(custom: client.CustomObjectsApi, shared_kaito: Path) -> None:
    applied = []
    for path in sorted((shared_kaito / "examples").glob("kaito_inferenceset_*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == "InferenceSet":
                version = doc["apiVersion"].split("/")[1]  # v1alpha1: stored as v1beta1, relabelled
                custom.create_namespaced_custom_object("kaito.sh", version, "default", "inferencesets", doc)
                applied.append((doc["metadata"]["name"], doc["spec"]["replicas"]))
    assert applied == [("llama-3-1-8b", 2), ("phi-4-mini", 1)]
    for name, replicas in applied:
        wait_until(lambda n=name, r=replicas: len(children(custom, n)) == r, 30, interval=0.05,
                   what=f"{name}'s {replicas} replicas")
        for child in children(custom, name):
            meta = child["metadata"]
            assert meta["name"].startswith(f"{name}-") and len(meta["name"]) == len(name) + 6
            assert meta["labels"][CREATED_BY] == name
            (owner,) = meta["ownerReferences"]
            assert (owner["kind"], owner["name"], owner["controller"]) == ("InferenceSet", name, True)
            assert child["resource"]["instanceType"] == "Standard_NC24ads_A100_v4"
            assert child["resource"]["labelSelector"] == the_set(custom, name)["spec"]["labelSelector"]
    phi = wait_until(lambda: (s := the_set(custom, "phi-4-mini")) and (s.get("status") or {}).get("readyReplicas") == 1
                     and s, 60, interval=0.05, what="phi-4-mini's replica ready")
    status = phi["status"]
    assert (status["replicas"], status["selector"]) == (1, f"{CREATED_BY}=phi-4-mini")
    ready = next(c for c in status["conditions"] if c["type"] == "InferenceSetReady")
    assert (ready["status"], ready["observedGeneration"]) == ("True", phi["metadata"]["generation"])


def test_scale_template_edit_and_deletion(custom: client.CustomObjectsApi) -> None:
    body = {"apiVersion": "kaito.sh/v1beta1", "kind": "InferenceSet", "metadata": {"name": "fleet"},
            "spec": {"replicas": 1, "labelSelector": {"matchLabels": {"apps": "fleet"}},
                     "template": {"metadata": {"labels": {"team": "a"}},
                                  "resource": {"instanceType": "Standard_NV36ads_A10_v5"},
                                  "inference": {"preset": {"name": "phi-4-mini-instruct"}}}}}
    custom.create_namespaced_custom_object("kaito.sh", "v1beta1", "default", "inferencesets", body)
    wait_until(lambda: len(children(custom, "fleet")) == 1, 30, interval=0.05, what="one replica")
    first = children(custom, "fleet")[0]["metadata"]["name"]
    custom.patch_namespaced_custom_object_scale("kaito.sh", "v1beta1", "default", "inferencesets", "fleet",
                                                {"spec": {"replicas": 3}}, field_manager="hpa")
    wait_until(lambda: len(children(custom, "fleet")) == 3, 30, interval=0.05, what="scaled to three")
    # a template edit: only labels reach the existing replicas; the instance type stays as they were made
    custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", "default", "inferencesets", "fleet", {"spec": {
        "template": {"metadata": {"labels": {"team": "b"}}, "resource": {"instanceType": "Standard_NC24ads_A100_v4"}}}})
    wait_until(lambda: all(c["metadata"]["labels"]["team"] == "b" for c in children(custom, "fleet")), 30,
               interval=0.05, what="the new label on every replica")
    assert {c["resource"]["instanceType"] for c in children(custom, "fleet")} == {"Standard_NV36ads_A10_v5"}
    custom.patch_namespaced_custom_object_scale("kaito.sh", "v1beta1", "default", "inferencesets", "fleet",
                                                {"spec": {"replicas": 1}}, field_manager="hpa")
    wait_until(lambda: len(children(custom, "fleet")) == 1, 30, interval=0.05, what="scaled down to one")
    custom.delete_namespaced_custom_object("kaito.sh", "v1beta1", "default", "inferencesets", "fleet")
    wait_until(lambda: not custom.list_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces")[
        "items"] and not custom.list_namespaced_custom_object("kaito.sh", "v1beta1", "default", "inferencesets")[
        "items"], 30, interval=0.05, what="the set and its replicas gone")
    assert first  # the first replica was one of those removed
