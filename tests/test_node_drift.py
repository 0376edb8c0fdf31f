"""Node-level drift in nodeclaim mode: a NodeClaim of ours deleted by hand is recreated by the next pass and
the model comes back Ready; a NodeClaim edited by hand (its spec is immutable in Karpenter) is replaced."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.model.ownership import LABEL_MODEL
from gitops_kaito.reconcile.assess import assess_models
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.sandbox import Sandbox
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import model_file

pytestmark = pytest.mark.cluster

REV = "main@sha1:" + "d" * 40
MODEL = model_file("phi") + "  provisioning: nodeclaim\n  instanceType: Standard_NC24ads_A100_v4\n"


def ours(custom: client.CustomObjectsApi, terminating: bool = False) -> dict[str, dict[str, Any]]:
    items = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims",
                                              label_selector=f"{LABEL_MODEL}=ml.phi")["items"]
    return {n["metadata"]["name"]: n for n in items if terminating or not n["metadata"].get("deletionTimestamp")}


def repo_with_model(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "models" / "ml").mkdir(parents=True)
    (repo / "models" / "ml" / "phi.yaml").write_text(MODEL)
    return repo


def ready_after_passes(repo: Path, kube: Kube) -> str:
    def state() -> str | None:
        result = run_pass(repo, kube, revision=REV)
        report = assess_models(result, kube, result.revision, check_endpoints=False)[0]
        return report.state if report.state == "Ready" else None

    return wait_until(state, timeout=30, interval=0.05, what="model ml.phi Ready")


def test_a_nodeclaim_deleted_by_hand_is_recreated(byo_sandbox: Sandbox, tmp_path: Path) -> None:
    repo = repo_with_model(tmp_path)
    with Kube.connect(byo_sandbox.kubeconfig_path) as kube:
        custom = client.CustomObjectsApi(kube.api_client)
        assert ready_after_passes(repo, kube) == "Ready"
        (name,) = ours(custom)

        custom.delete_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", name)
        # Karpenter's termination finalizer holds it (and its Node) a moment; wait until it is really gone.
        wait_until(lambda: name not in ours(custom, terminating=True), what="the hand-deleted NodeClaim to go")
        result = run_pass(repo, kube, revision=REV)
        recreated = [c for c in result.plan.changes if c.ref.kind == "NodeClaim" and c.action == "create"]
        assert [c.ref.name for c in recreated] == [name], "the pass must recreate the same NodeClaim"
        assert ready_after_passes(repo, kube) == "Ready"
        assert set(ours(custom)) == {name}


def test_a_nodeclaim_edited_by_hand_is_replaced_not_patched(byo_sandbox: Sandbox, tmp_path: Path) -> None:
    repo = repo_with_model(tmp_path)
    with Kube.connect(byo_sandbox.kubeconfig_path) as kube:
        custom = client.CustomObjectsApi(kube.api_client)
        assert ready_after_passes(repo, kube) == "Ready"
        (name,) = ours(custom)
        custom.patch_cluster_custom_object(
            "karpenter.sh", "v1", "nodeclaims", name, {"spec": {"taints": []}},
            _content_type="application/merge-patch+json")
        plan = run_pass(repo, kube, revision=REV, dry_run=True).plan
        (change,) = [c for c in plan.changes if c.ref.kind == "NodeClaim"]
        assert change.action in ("replace", "blocked"), change
        assert change.drift, "a hand edit of our NodeClaim is drift"
