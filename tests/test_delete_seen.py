"""A delete refused only because a controller wrote status since planning is retried on the fresh read: against the
sandbox or a real cluster, with an object that carries kubectl's last-applied annotation (which a LIST leaves out)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import LAST_APPLIED, Kube, StaleObject
from gitops_kaito.core.plan import Action, Change
from gitops_kaito.model.objects import ObjectRef, Wave
from gitops_kaito.reconcile.apply import delete_seen
from gitops_kaito.reconcile.sync import run_pass
from tests.fixtures_cluster import ClusterTarget
from tests.gitfixtures import model_file

pytestmark = pytest.mark.cluster
REV = "main@sha1:" + "d" * 40


def _listed(kube: Kube, ns: str) -> dict[str, object]:
    return next(o for o in kube.list_owned("kaito.sh/v1beta1", "Workspace")
                if o["metadata"]["namespace"] == ns and o["metadata"]["name"] == "phi")


def test_a_status_write_since_planning_does_not_stop_the_delete_but_an_edit_does(cluster: ClusterTarget,
                                                                                  tmp_path: Path) -> None:
    ns = cluster.namespace
    (tmp_path / "models" / ns).mkdir(parents=True)
    (tmp_path / "models" / ns / "phi.yaml").write_text(model_file("phi", namespace=ns))
    admin = cluster.api_client()
    custom = client.CustomObjectsApi(admin)
    ref = ObjectRef("kaito.sh/v1beta1", "Workspace", ns, "phi")
    with Kube.connect(cluster.kubeconfig, cluster.context) as kube:
        assert run_pass(tmp_path, kube, revision=REV).created
        # Someone once ran `kubectl apply` on it: the annotation a LIST's compact copy leaves out, a GET returns.
        custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi",
                                              {"metadata": {"annotations": {LAST_APPLIED: '{"kind":"Workspace"}'}}},
                                              field_manager="kubectl-client-side-apply")
        planned = _listed(kube, ns)
        assert LAST_APPLIED not in planned["metadata"].get("annotations", {})  # type: ignore[attr-defined]
        delete = Change(ref=ref, action=Action.DELETE, model_id=f"{ns}.phi", wave=Wave.WORKLOAD, live=planned)

        # An edit since planning: refused, the pass must plan again.
        custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi",
                                              {"metadata": {"labels": {"team": "edited"}}}, field_manager="kubectl-edit")
        with pytest.raises(StaleObject):
            delete_seen(kube, delete)
        assert custom.get_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi")

        # Only status written since planning (KAITO does, often): deleted on the fresh read.
        planned = _listed(kube, ns)
        custom.patch_namespaced_custom_object_status(
            "kaito.sh", "v1beta1", ns, "workspaces", "phi",
            {"status": {"conditions": [{"type": "ResourceReady", "status": "False", "reason": "Pending",
                                        "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}})
        assert delete_seen(kube, Change(ref=ref, action=Action.DELETE, model_id=f"{ns}.phi", wave=Wave.WORKLOAD,
                                        live=planned))
    admin.close()
