"""machine mode against the sandbox, end to end: legacy karpenter.sh/v1alpha5 Machines first, the v1alpha1 Workspace
only once they are Ready (the same gating code as nodeclaim), then the simulated legacy KAITO uses the Machines' nodes
(creating none of its own) up to WorkspaceSucceeded, and the model is Ready with its nodes, SKU and endpoint;
removing the model removes its Machines and Workspace and nothing else."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.core.status import ModelReport
from gitops_kaito.model.ownership import LABEL_MODEL
from gitops_kaito.reconcile.assess import assess_models
from gitops_kaito.reconcile.sync import PassResult, run_pass
from gitops_kaito.sandbox import Sandbox
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import model_file

pytestmark = pytest.mark.cluster

REV = "main@sha1:" + "c" * 40
SKU = "Standard_NC24ads_A100_v4"
MODEL = model_file("phi") + "  provisioning: machine\n  instanceType: Standard_NC24ads_A100_v4\n"
FOREIGN = {"apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine",
           "metadata": {"name": "someone-elses", "labels": {"team": "other"}},
           "spec": {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                      "values": ["Standard_NC24ads_A100_v4"]}]}}


def machines(custom: client.CustomObjectsApi) -> dict[str, dict[str, Any]]:
    items = custom.list_cluster_custom_object("karpenter.sh", "v1alpha5", "machines")["items"]
    return {m["metadata"]["name"]: m for m in items if not m["metadata"].get("deletionTimestamp")}


def workspace(custom: client.CustomObjectsApi) -> dict[str, Any] | None:
    try:
        return custom.get_namespaced_custom_object("kaito.sh", "v1alpha1", "ml", "workspaces", "phi")  # type: ignore[no-any-return]
    except client.ApiException as err:
        if err.status == 404:
            return None
        raise


def kaito_made(custom: client.CustomObjectsApi, plural: str, version: str) -> list[str]:
    """NodeClaims or Machines KAITO created for a Workspace (its kaito.sh/workspace label)."""
    items = custom.list_cluster_custom_object("karpenter.sh", version, plural, label_selector="kaito.sh/workspace")
    return [i["metadata"]["name"] for i in items["items"]]


def test_machine_mode_end_to_end_on_legacy_kaito(byo_sandbox: Sandbox, tmp_path: Path) -> None:
    sb = byo_sandbox
    repo = tmp_path / "repo"
    (repo / "models" / "ml").mkdir(parents=True)
    (repo / "models" / "ml" / "phi.yaml").write_text(MODEL)
    with Kube.connect(sb.kubeconfig_path) as kube:
        custom = client.CustomObjectsApi(kube.api_client)
        custom.create_cluster_custom_object("karpenter.sh", "v1alpha5", "machines", FOREIGN)

        first = run_pass(repo, kube, revision=REV)
        phi = first.outcome("ml.phi")
        assert phi is not None and phi.state == "Provisioning" and "waiting for nodes: 0/1 Machines" in phi.message
        ours = {n for n, m in machines(custom).items() if (m["metadata"].get("labels") or {}).get(LABEL_MODEL)}
        assert len(ours) == 1 and workspace(custom) is None

        # The simulated gpu-provisioner makes the Machine's Node; until then every pass keeps the Workspace back.
        deadline = time.monotonic() + 30
        result: PassResult | None = None
        while workspace(custom) is None:
            assert time.monotonic() < deadline, "the Workspace was never applied"
            result = run_pass(repo, kube, revision=REV)
            # KAITO's rule (FACTS 5.2): ready when the Ready condition is True or status.nodeName is set.
            ready = [m for n, m in machines(custom).items() if n in ours and (
                (m.get("status") or {}).get("nodeName") or any(
                    c.get("type") in ("Ready", "MachineReady") and c.get("status") == "True"
                    for c in (m.get("status") or {}).get("conditions") or []))]
            if workspace(custom) is None:
                assert "waiting for nodes" in result.outcome("ml.phi").message  # type: ignore[union-attr]
            else:
                assert ready, "the Workspace was applied before its Machine was Ready"
            time.sleep(0.05)
        ws = workspace(custom)
        assert ws is not None and ws["apiVersion"] == "kaito.sh/v1alpha1"

        # Legacy KAITO finds enough Ready nodes of the instanceType matching resource.labelSelector (the Machine's),
        # uses them, and goes MachineReady -> ResourceReady -> InferenceReady -> WorkspaceSucceeded.
        def ready() -> ModelReport | None:
            result = run_pass(repo, kube, revision=REV)
            assert not result.plan.has_changes  # nothing left to write once the Workspace is there
            report = assess_models(result, kube, REV)[0]
            return report if report.state == "Ready" else None
        report = wait_until(ready, 30, interval=0.05, what="the model Ready")
        assert (report.sku, report.nodes, report.gpus) == (SKU, 1, 1)
        assert [(p[0] in ours, p[1]) for p in report.node_phases] == [(True, "Ready")]
        assert report.endpoint_check.answers and report.endpoint_check.served_model
        assert [c[:3] for c in report.conditions] == [
            ("MachineReady", "True", "installNodePluginsSuccess"),
            ("ResourceReady", "True", "workspaceResourceStatusSuccess"),
            ("InferenceReady", "True", "WorkspaceInferenceStatusSuccess"),
            ("WorkspaceSucceeded", "True", "workspaceSucceeded")]
        ws = workspace(custom)
        assert ws is not None
        [node_name] = [(m.get("status") or {}).get("nodeName") for n, m in machines(custom).items() if n in ours]
        assert ws["status"]["workerNodes"] == [node_name]
        assert "state" not in ws["status"] and "targetNodeCount" not in ws["status"]  # v1alpha1 has neither
        assert all(c["observedGeneration"] == ws["metadata"]["generation"] for c in ws["status"]["conditions"])
        # KAITO used gitops-kaito's Machine: it made no Machine or NodeClaim of its own.
        assert kaito_made(custom, "machines", "v1alpha5") == [] and kaito_made(custom, "nodeclaims", "v1") == []

        (repo / "models" / "ml" / "phi.yaml").unlink()
        gone = run_pass(repo, kube, revision=REV, allow_mass_prune=True)
        assert sorted(str(c.ref).split("/")[0] for c in gone.plan.pending) == ["Machine", "Workspace"]
        deadline = time.monotonic() + 30
        while set(machines(custom)) != {"someone-elses"}:
            assert time.monotonic() < deadline, f"left: {set(machines(custom))}"
            time.sleep(0.05)
        left = workspace(custom)  # read once: it may vanish between two reads
        assert left is None or left["metadata"].get("deletionTimestamp")
        wait_until(lambda: workspace(custom) is None, what="the Workspace gone (KAITO's finalizer released)")
        nodes = [n.metadata.name for n in client.CoreV1Api(kube.api_client).list_node().items]
        assert node_name not in nodes
        assert kaito_made(custom, "machines", "v1alpha5") == [] and kaito_made(custom, "nodeclaims", "v1") == []
