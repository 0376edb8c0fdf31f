"""machine mode against the sandbox: legacy karpenter.sh/v1alpha5 Machines first, the v1alpha1 Workspace only once
they are Ready; removing the model removes its Machines and nothing else (the same gating code as nodeclaim)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.gitsync import assess_models
from gitops_kaito.kube import Kube
from gitops_kaito.ownership import LABEL_MODEL
from gitops_kaito.sandbox import Sandbox
from gitops_kaito.sync import PassResult, run_pass

pytestmark = pytest.mark.cluster

REV = "main@sha1:" + "c" * 40
MODEL = """apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: phi
spec:
  model: phi-4-mini-instruct
  provisioning: machine
  instanceType: Standard_NC24ads_A100_v4
"""
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


def test_machine_mode_waits_for_machines_then_applies_the_legacy_workspace(byo_sandbox: Sandbox,
                                                                          tmp_path: Path) -> None:
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

        # The status reads the Machine's phase (the simulated KAITO is modern and refuses a legacy instanceType in
        # BYO mode, so the model itself does not go Ready here: the gating and the prune are what this covers).
        result = run_pass(repo, kube, revision=REV)
        assert not result.plan.has_changes
        report = assess_models(result, kube, REV, check_endpoints=False)[0]
        assert [(p[0] in ours, p[1]) for p in report.node_phases] == [(True, "Ready")]

        (repo / "models" / "ml" / "phi.yaml").unlink()
        gone = run_pass(repo, kube, revision=REV, allow_mass_prune=True)
        assert sorted(str(c.ref).split("/")[0] for c in gone.plan.pending) == ["Machine", "Workspace"]
        deadline = time.monotonic() + 30
        while set(machines(custom)) != {"someone-elses"}:
            assert time.monotonic() < deadline, f"left: {set(machines(custom))}"
            time.sleep(0.05)
        left = workspace(custom)  # read once: it may vanish between two reads
        assert left is None or left["metadata"].get("deletionTimestamp")
