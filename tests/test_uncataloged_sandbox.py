"""A Hugging Face model outside the catalog against the sandbox's simulated KAITO: admitted, sized as unknown
(resource.count or 1 node, 1024Gi NodeClaim storage) and served under KAITO's name for it, the lowercase repository
name; catalog presets keep the catalog's estimate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.core.status import ModelReport, model_document, render_status_md
from gitops_kaito.model.ownership import LABEL_MODEL
from gitops_kaito.reconcile.gitsync import assess_models
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.sandbox import Sandbox
from gitops_kaito.sandbox.controllers.gpus import disk_request, estimate_nodes, served_model_name
from tests.fixtures_cluster import wait_until

HF_ID = "Qwen/Qwen3-0.6B"
SERVED = "qwen3-0.6b"
A10, A100 = "Standard_NV36ads_A10_v5", "Standard_NC24ads_A100_v4"
REV = "main@sha1:" + "e" * 40


# ------------------------------------------------------------------------------------------------
# What the simulated KAITO assumes about a model of unknown size (gpus.py)
# ------------------------------------------------------------------------------------------------

def test_an_uncataloged_id_is_sized_as_unknown() -> None:
    assert estimate_nodes(HF_ID, A10, None, fallback=1) == 1
    assert estimate_nodes(HF_ID, A10, 4096, fallback=3) == 3  # resource.count, when the Workspace has one
    assert estimate_nodes(HF_ID, A10, None, fallback=0) == 1
    assert disk_request(HF_ID) == "1024Gi"
    assert served_model_name(HF_ID) == SERVED
    assert served_model_name("SomeOrg/My-Model.V2") == "my-model.v2"


def test_catalog_presets_keep_the_catalog_estimate() -> None:
    catalog = load_catalog()
    llama = catalog.preset("llama-3.3-70b-instruct")
    sku = catalog.sku(A100)
    assert sku is not None
    expected = catalog.fit(llama, sku).nodes
    assert expected > 1
    assert estimate_nodes("llama-3.3-70b-instruct", A100, None, fallback=1) == expected  # not resource.count
    assert disk_request("llama-3.3-70b-instruct") == f"{llama.disk_gib}Gi"
    assert served_model_name("mistral-7b") == "mistral-7b-v0.3"  # the catalog's, not the name's


# ------------------------------------------------------------------------------------------------
# End to end: repository -> Workspace -> simulated KAITO -> Ready, with the served name
# ------------------------------------------------------------------------------------------------

def repo_with(tmp_path: Path, namespace: str, spec: str) -> Path:
    repo = tmp_path / "repo"
    path = repo / "models" / namespace / "qwen.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(f"apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: qwen\n"
                    f"spec:\n{spec}")
    return repo


def ready_report(repo: Path, kube: Kube) -> ModelReport:
    def ready() -> ModelReport | None:
        result = run_pass(repo, kube, revision=REV)
        assert result.desired is not None and not result.desired.errors, result.desired
        (report,) = assess_models(result, kube, REV)
        assert report.state != "Failed", report
        return report if report.state == "Ready" and report.endpoint_check.answers else None

    return wait_until(ready, timeout=30, interval=0.05, what=f"{HF_ID} Ready and answering")


def nodeclaims(custom: client.CustomObjectsApi, selector: str) -> list[dict[str, Any]]:
    items = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", label_selector=selector)["items"]
    return [n for n in items if not n["metadata"].get("deletionTimestamp")]


@pytest.mark.cluster
def test_kaito_mode_ends_ready_served_under_the_lowercase_repository_name(sandbox: Sandbox, tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "default", f"  model: {HF_ID}\n  instanceType: {A10}\n")
    with Kube.connect(sandbox.kubeconfig_path) as kube:
        report = ready_report(repo, kube)
        assert (report.sku, report.nodes, report.gpus) == (A10, 1, 1)
        assert report.endpoint_check.served_model == SERVED
        assert model_document(report)["endpointCheck"] == {"answers": True, "servedModel": SERVED}
        assert f"answers ({SERVED})" in render_status_md([report])

        custom = client.CustomObjectsApi(kube.api_client)
        ws = custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces", "qwen")
        assert ws["inference"]["preset"]["name"] == HF_ID
        assert ws["status"]["targetNodeCount"] == 1 and ws["status"]["state"] == "Ready"
        (claim,) = nodeclaims(custom, "kaito.sh/workspace=qwen,kaito.sh/workspacenamespace=default")
        assert claim["spec"]["resources"]["requests"]["storage"] == "1024Gi"

        # What the model server says, through the API server's service proxy, as a client would ask.
        models = client.CoreV1Api(kube.api_client).connect_get_namespaced_service_proxy_with_path(
            "qwen:80", "default", "v1/models")
        doc = yaml.safe_load(models) if isinstance(models, str) else models
        assert [m["id"] for m in doc["data"]] == [SERVED]


@pytest.mark.cluster
def test_nodeclaim_mode_makes_our_nodeclaims_with_1024gi(byo_sandbox: Sandbox, tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "ml", f"  model: {HF_ID}\n  instanceType: {A100}\n  provisioning: nodeclaim\n"
                                     "  nodes: 2\n")
    with Kube.connect(byo_sandbox.kubeconfig_path) as kube:
        report = ready_report(repo, kube)
        assert (report.sku, report.nodes, report.gpus) == (A100, 2, 2)
        assert report.endpoint_check.served_model == SERVED
        custom = client.CustomObjectsApi(kube.api_client)
        ours = nodeclaims(custom, f"{LABEL_MODEL}=ml.qwen")
        assert len(ours) == 2
        assert {n["spec"]["resources"]["requests"]["storage"] for n in ours} == {"1024Gi"}
        assert nodeclaims(custom, "kaito.sh/workspace") == []  # BYO KAITO made none of its own
