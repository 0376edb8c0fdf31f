"""Kubernetes Events on the Workspaces a sync pass changes: reasons, source component, and aggregation of repeats.

Runs real passes against the sandbox and reads the Events back as `kubectl get events` would.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.reconcile import sync
from gitops_kaito.reconcile.apply import ApplyOptions
from tests.fixtures_cluster import ClusterTarget, wait_until
from tests.gitfixtures import model_file

pytestmark = pytest.mark.cluster
REV = "main@sha1:" + "e" * 40


def run_pass(repo: Path, kube: Kube, **kwargs: Any) -> sync.PassResult:
    """A pass, then its Events: the connection's sender threads post them after the pass returns."""
    from gitops_kaito.adapters import events

    result = sync.run_pass(repo, kube, **kwargs)
    assert events.flush(kube, 30)
    return result


def events_of(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    items = client.CoreV1Api(api).list_namespaced_event(ns).items
    return {e.reason: e for e in items if e.involved_object.name == name and e.involved_object.kind == "Workspace"}


def test_created_drift_corrected_aggregated_and_pruned(cluster: ClusterTarget, tmp_path: Path) -> None:
    ns = cluster.namespace
    path = tmp_path / "models" / ns / "phi.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(model_file("phi", namespace=ns))
    admin = cluster.api_client()
    custom = client.CustomObjectsApi(admin)
    with Kube.connect(cluster.kubeconfig, cluster.context) as kube:
        run_pass(tmp_path, kube, revision=REV)
        created = events_of(admin, ns, "phi")["Created"]
        assert created.source.component == "gitops-kaito" and created.type == "Normal"
        assert created.count == 1 and REV in created.message
        assert created.involved_object.api_version == "kaito.sh/v1beta1"

        for _ in range(2):  # a person edits an owned field twice; each pass reverts it
            custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi",
                                                  {"metadata": {"annotations": {"gitops.kaito.sh/source-path": "x"}}})
            result = run_pass(tmp_path, kube, revision=REV)
            assert result.drift_corrected == 1
        drift = events_of(admin, ns, "phi")["DriftCorrected"]
        assert drift.count == 2, "a repeated event is aggregated, not duplicated"
        assert drift.involved_object.uid

        quiet = len(client.CoreV1Api(admin).list_namespaced_event(ns).items)
        run_pass(tmp_path, kube, revision=REV)  # nothing changes: no event
        assert len(client.CoreV1Api(admin).list_namespaced_event(ns).items) == quiet

        path.unlink()
        # The delete carries the resourceVersion the pass read: while KAITO still writes the Workspace's status it
        # may be refused as stale several times, and the model left to the next pass; the Event comes with the prune.
        wait_until(lambda: run_pass(tmp_path, kube, revision=REV, allow_mass_prune=True) and
                   "Pruned" in events_of(admin, ns, "phi"), timeout=60, interval=0.2, what="the Pruned event")
    admin.close()


def test_a_second_recorder_aggregates_onto_the_event_another_one_wrote(cluster: ClusterTarget) -> None:
    from gitops_kaito.adapters.events import EventRecorder
    from gitops_kaito.model.objects import ObjectRef

    ns = cluster.namespace
    ref = ObjectRef("kaito.sh/v1beta1", "Workspace", ns, "phi")
    admin = cluster.api_client()
    first, second = EventRecorder(admin), EventRecorder(admin)  # e.g. two replicas, or a restart
    first.record(ref, "Updated", "updated from the repository", uid="u-1")
    second.record(ref, "Updated", "updated from the repository", uid="u-1")  # 409 on create: GET, then PATCH
    second.record(ref, "Updated", "updated from the repository", uid="u-1")  # known now: PATCH only
    event = events_of(admin, ns, "phi")["Updated"]
    assert event.count == 3 and event.involved_object.uid == "u-1"
    assert event.source.component == "gitops-kaito" and event.first_timestamp is not None
    admin.close()


def test_a_recorder_is_dropped_with_its_connection(cluster: ClusterTarget) -> None:
    """Each connection gets its own recorder, kept as long as the connection: a process that connects again and
    again (CLI passes in one process, tests) does not gather recorders and their API clients."""
    import gc

    from gitops_kaito.adapters import events
    from gitops_kaito.core.plan import Action, Change
    from gitops_kaito.model.objects import ObjectRef, Wave

    ref = ObjectRef("kaito.sh/v1beta1", "Workspace", cluster.namespace, "ghost")
    created = Change(ref=ref, action=Action.CREATE, model_id=f"{cluster.namespace}.ghost", wave=Wave.WORKLOAD)
    gc.collect()
    before = len(events._recorders)
    for _ in range(3):
        kube = Kube.connect(cluster.kubeconfig, cluster.context)
        with kube:
            assert events.record_changes(kube, [created]) == 1
            assert events.record_changes(kube, [created]) == 1  # the same recorder: its count goes up
            assert len(events._recorders) == before + 1
        del kube
        gc.collect()
        assert len(events._recorders) == before
    admin = cluster.api_client()
    assert events_of(admin, cluster.namespace, "ghost")["Created"].count == 6
    admin.close()



def test_drift_left_in_place_is_a_warning_once_and_again_when_it_comes_back(cluster: ClusterTarget,
                                                                            tmp_path: Path) -> None:
    ns = cluster.namespace
    (tmp_path / "gitops-kaito.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n"
                                                "drift: report\n")
    path = tmp_path / "models" / ns / "phi.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(model_file("phi", namespace=ns))
    admin = cluster.api_client()
    custom = client.CustomObjectsApi(admin)

    def hand_edit(value: str) -> None:
        custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi",
                                              {"metadata": {"annotations": {"gitops.kaito.sh/source-path": value}}})

    with Kube.connect(cluster.kubeconfig, cluster.context) as kube:
        run_pass(tmp_path, kube, revision=REV)
        hand_edit("x")
        for _ in range(3):  # the same drift over three passes: reported once
            assert len(run_pass(tmp_path, kube, revision=REV).plan.drift_reported) == 1
        found = events_of(admin, ns, "phi")
        detected = found["DriftDetected"]
        assert detected.type == "Warning" and detected.count == 1 and detected.involved_object.uid
        assert detected.message.startswith("changed in the cluster by ") and detected.message.count(
            "not corrected (drift: report): metadata.annotations.gitops.kaito.sh/source-path;") == 1
        assert "DriftCorrected" not in found

        # Corrected by hand (back to what we applied): forgotten, so the same drift coming back is reported again.
        hand_edit(f"models/{ns}/phi.yaml")
        assert not run_pass(tmp_path, kube, revision=REV).plan.drift_reported
        hand_edit("y")
        run_pass(tmp_path, kube, revision=REV)
        run_pass(tmp_path, kube, revision=REV)
        assert events_of(admin, ns, "phi")["DriftDetected"].count == 2  # the same Event, aggregated
    admin.close()


def test_events_name_the_object_as_it_now_is_so_describe_lists_them(cluster: ClusterTarget, tmp_path: Path) -> None:
    """Created carries the new Workspace's uid, Replaced the uid of the Workspace made again (not the deleted one),
    so `kubectl describe workspace` (which finds Events by the object's uid) lists them."""
    ns = cluster.namespace
    path = tmp_path / "models" / ns / "phi.yaml"
    path.parent.mkdir(parents=True)
    (tmp_path / "gitops-kaito.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nreplacePolicy: auto\n")
    path.write_text(model_file("phi", namespace=ns) + "  instanceType: Standard_NC24ads_A100_v4\n")
    admin = cluster.api_client()
    custom, core = client.CustomObjectsApi(admin), client.CoreV1Api(admin)

    def uid() -> str:
        return str(custom.get_namespaced_custom_object("kaito.sh", "v1beta1", ns, "workspaces", "phi")
                   ["metadata"]["uid"])

    def reasons_for(object_uid: str) -> set[str]:
        items = core.list_namespaced_event(ns, field_selector=f"involvedObject.uid={object_uid}").items
        return {e.reason for e in items}

    with Kube.connect(cluster.kubeconfig, cluster.context) as kube:
        run_pass(tmp_path, kube, revision=REV)
        first = uid()
        assert "Created" in reasons_for(first)
        path.write_text(model_file("phi", namespace=ns) + "  instanceType: Standard_NC48ads_A100_v4\n")
        # The replace's delete carries the resourceVersion the pass read: while KAITO is still writing the first
        # Workspace's status it is refused as stale and planned again; a later pass replaces it.
        wait_until(lambda: run_pass(tmp_path, kube, revision=REV,
                                    options=ApplyOptions(replace_wait_s=60.0)).replaced == 1 or None,
                   timeout=60, interval=0.2, what="the Workspace replaced")
        second = uid()
        assert second != first
        assert "Replaced" in reasons_for(second) and "Replaced" not in reasons_for(first)
    if shutil.which("kubectl"):
        args = ["kubectl", "--kubeconfig", str(cluster.kubeconfig), *(["--context", cluster.context]
                                                                      if cluster.context else []),
                "describe", "workspace", "phi", "-n", ns]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
        events = out.split("Events:", 1)[1]
        assert "Replaced" in events and "<none>" not in events
    admin.close()


def test_a_pass_does_not_wait_for_its_events_and_closing_sends_them(cluster: ClusterTarget, tmp_path: Path) -> None:
    """Events go out on the connection's own threads (client-go's broadcaster does the same): a pass whose Event
    the API server holds back still returns, with its Workspace written; closing the connection sends the Event."""
    import threading

    from gitops_kaito.sandbox.hooks import Fault
    from tests.fixtures_cluster import skip_on_real

    skip_on_real(cluster, "an Event request held back by the emulator")
    assert cluster.sandbox is not None
    ns = cluster.namespace
    (tmp_path / "models" / ns).mkdir(parents=True)
    (tmp_path / "models" / ns / "phi.yaml").write_text(model_file("phi", namespace=ns))
    gate = threading.Event()
    fault = cluster.sandbox.server.faults.add(Fault(method="POST", path_regex=f"/namespaces/{ns}/events$", status=0,
                                                    times=None, hold=gate))
    admin = cluster.api_client()
    try:
        kube = Kube.connect(cluster.kubeconfig, cluster.context)
        result = sync.run_pass(tmp_path, kube, revision=REV)
        assert result.created and result.ok
        assert client.CustomObjectsApi(admin).get_namespaced_custom_object(
            "kaito.sh", "v1beta1", ns, "workspaces", "phi")
        wait_until(lambda: fault.hits == 1, 10, what="the Event's POST reached the API server")
        assert "Created" not in events_of(admin, ns, "phi"), "the Event was written while it was held"
        gate.set()
        kube.close()  # sends what is queued before the connection goes
        assert events_of(admin, ns, "phi")["Created"].count == 1
    finally:
        gate.set()
        cluster.sandbox.server.faults.clear()
        admin.close()
