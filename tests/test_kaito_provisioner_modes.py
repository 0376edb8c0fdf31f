"""The GPU nodes behind a model in every KAITO provisioner mode: gpu-provisioner (NodeClaims labelled
kaito.sh/workspace), KAITO's karpenter mode (a NodePool per Workspace, its NodeClaims by karpenter.kaito.sh labels;
an InferenceSet's replicas each with their own pool) and BYO; node counts and prices from KAITO's
status.targetNodeCount where it reports one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_cluster import wait_until
from gitfixtures import model_file
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.core.status import ModelReport
from gitops_kaito.reconcile.assess import _kaitos_count, assess_models
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.repo.catalog import price_for
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import ResolvedModel
from gitops_kaito.sandbox.runtime import Sandbox, SandboxSettings

REV = "main@sha1:" + "2" * 40


def write(root: Path, name: str, extra: str = "") -> None:
    path = root / "models" / "ml" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_file(name) + extra)


def one_model(tmp_path: Path, extra: str = "") -> ResolvedModel:
    write(tmp_path, "phi", extra)
    (model,) = load_repository(tmp_path).models
    assert isinstance(model, ResolvedModel)
    return model


def test_kaitos_target_node_count_wins_over_our_estimate(tmp_path: Path) -> None:
    model = one_model(tmp_path)
    assert model.nodes == 1 and model.sku is not None
    assert _kaitos_count(model, {"status": {"targetNodeCount": 3}}, ()) == (
        3, 3 * model.sku.gpu_count, price_for(model.sku, 3))
    assert _kaitos_count(model, {"status": {}}, ()) == (1, model.gpus, model.price_per_hour)  # not reported yet


def test_an_inferencesets_nodes_are_its_live_replicas_times_kaitos_count(tmp_path: Path) -> None:
    model = one_model(tmp_path, "  autoscale: {minReplicas: 1, maxReplicas: 5, threshold: 4}\n")
    assert model.sku is not None
    scaled = {"status": {"replicas": 4}}
    assert _kaitos_count(model, scaled, ())[0] == 4 * model.nodes
    children = [{"metadata": {"name": f"phi-{i}"}, "status": {"targetNodeCount": 2}} for i in range(4)]
    assert _kaitos_count(model, scaled, children) == (8, 8 * model.sku.gpu_count, price_for(model.sku, 8))


@pytest.fixture
def karpenter_mode() -> Iterator[Sandbox]:
    with Sandbox(SandboxSettings(speed="fast", node_provisioning="karpenter", namespaces=("default", "ml"))) as sb:
        yield sb


def test_kaitos_karpenter_mode_nodepools_and_their_nodeclaims_are_the_models_nodes(
        karpenter_mode: Sandbox, tmp_path: Path) -> None:
    write(tmp_path, "phi")
    write(tmp_path, "fleet", "  replicas: 2\n")
    custom = client.CustomObjectsApi(karpenter_mode.api_client("test-admin/1.0"))
    with Kube.connect(karpenter_mode.kubeconfig_path) as kube:
        assert run_pass(tmp_path, kube, revision=REV).created == 2

        def reports() -> dict[str, ModelReport]:
            result = run_pass(tmp_path, kube, revision=REV)
            return {r.model_id: r for r in assess_models(result, kube, REV, check_endpoints=False)}

        ready = wait_until(lambda: (r := reports()) and all(x.state == "Ready" for x in r.values()) and r, 60,
                           interval=0.05, what="both models Ready in karpenter mode")
        pools = {p["metadata"]["name"]: p for p in custom.list_cluster_custom_object(
            "karpenter.sh", "v1", "nodepools")["items"]}
        assert "ml-phi" in pools and pools["ml-phi"]["metadata"]["labels"] == {
            "karpenter.kaito.sh/managed-by": "kaito", "karpenter.kaito.sh/workspace-name": "phi",
            "karpenter.kaito.sh/workspace-namespace": "ml"}
        fleet_pools = [p for p in pools.values()
                       if p["metadata"]["labels"].get("karpenter.kaito.sh/inferenceset") == "fleet"]
        assert len(fleet_pools) == 2  # one per replica
        claims = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]
        phi_claims = {c["metadata"]["name"] for c in claims if c["metadata"]["labels"].get("karpenter.sh/nodepool")
                      == "ml-phi"}
        assert phi_claims and {n for n, _, _ in ready["ml.phi"].node_phases} == phi_claims
        assert ready["ml.phi"].nodes == len(phi_claims)
        fleet_claims = {c["metadata"]["name"] for c in claims
                        if c["metadata"]["labels"].get("karpenter.kaito.sh/inferenceset") == "fleet"}
        assert len(fleet_claims) == 2 and {n for n, _, _ in ready["ml.fleet"].node_phases} == fleet_claims
        assert ready["ml.fleet"].replicas == (2, 2) and ready["ml.fleet"].nodes == 2

        # removing the model: KAITO deletes its NodePool with the Workspace, Karpenter the pool's NodeClaims
        (tmp_path / "models" / "ml" / "phi.yaml").unlink()
        assert run_pass(tmp_path, kube, revision=REV).pruned == 1
        wait_until(lambda: not [c for c in custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")[
            "items"] if c["metadata"]["labels"].get("karpenter.sh/nodepool") == "ml-phi"]
                   and "ml-phi" not in {p["metadata"]["name"] for p in custom.list_cluster_custom_object(
                       "karpenter.sh", "v1", "nodepools")["items"]}, 30, interval=0.05, what="phi's pool and claims gone")


def test_byo_nodes_are_the_workspaces_worker_nodes(tmp_path: Path) -> None:
    model = one_model(tmp_path, "  provisioning: byo\n")
    report_nodes, _, _ = _kaitos_count(dataclasses.replace(model), {"status": {"targetNodeCount": 1}}, ())
    assert report_nodes == 1
