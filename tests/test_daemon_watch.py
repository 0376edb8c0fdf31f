"""The watch-driven daemon end to end (Service against the emulator, interval 1 h so no pass comes from the clock):
a hand edit is corrected by the pass it starts, our own writes start nothing, KAITO's status reaches the status
files without waiting for an interval, and a burst of status changes gives one status commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.service.service import Service
from gitops_kaito.service.settings import RunSettings
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import Developer, Remote, make_remote, model_file

SOURCE = "gitops.kaito.sh/source-path"
MODELS = ("a", "b", "c")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Sandbox, Remote, client.ApiClient]]:
    sb = Sandbox(SandboxSettings(controllers=False, namespaces=("ml",))).start()
    admin = sb.api_client("watch-test-admin/1")
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    for name in MODELS:
        dev.write(f"models/ml/{name}.yaml", model_file(name))
    dev.commit("models")
    try:
        yield sb, remote, admin
    finally:
        admin.close()
        sb.stop()


def service(sb: Sandbox, remote: Remote, tmp: Path, **extra: Any) -> Service:
    settings = RunSettings(git_url=remote.url, interval="1h", listen="127.0.0.1:0", leader_election=False,
                           kubeconfig=str(sb.kubeconfig_path), cache_dir=str(tmp / "cache"), **extra)
    return Service.build(settings)


def state(remote: Remote, name: str) -> str | None:
    try:
        return str(yaml.safe_load(remote.show(f"status/ml/{name}.yaml"))["state"])
    except Exception:
        return None


def annotation(admin: client.ApiClient, name: str) -> str:
    ws = client.CustomObjectsApi(admin).get_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces", name)
    return str(ws["metadata"]["annotations"][SOURCE])


def hand_edit(admin: client.ApiClient, name: str) -> None:
    client.CustomObjectsApi(admin).patch_namespaced_custom_object(
        "kaito.sh", "v1beta1", "ml", "workspaces", name, {"metadata": {"annotations": {SOURCE: "hand/made.yaml"}}},
        field_manager="kubectl-annotate", _content_type="application/merge-patch+json")


def kaito_fails(admin: client.ApiClient, name: str) -> None:
    """Play KAITO: the inference pods cannot pull their image (a terminal reason)."""
    conds = [{"type": t, "status": "False", "reason": "ImagePullError", "message": "back-off pulling image",
              "lastTransitionTime": "2025-01-01T00:00:00Z"} for t in ("InferenceReady", "WorkspaceSucceeded")]
    client.CustomObjectsApi(admin).patch_namespaced_custom_object_status(
        "kaito.sh", "v1beta1", "ml", "workspaces", name, {"status": {"conditions": conds}})


def test_hand_edits_are_corrected_by_the_pass_they_start_and_own_writes_start_nothing(
        world: tuple[Sandbox, Remote, client.ApiClient], tmp_path: Path) -> None:
    sb, remote, admin = world
    with service(sb, remote, tmp_path) as svc:
        wait_until(lambda: all(state(remote, m) for m in MODELS), 30, what="the first pass's status commit")
        hand_edit(admin, "a")
        wait_until(lambda: annotation(admin, "a") == "models/ml/a.yaml", 15, what="the hand edit of a corrected")
        hand_edit(admin, "b")
        wait_until(lambda: annotation(admin, "b") == "models/ml/b.yaml", 15, what="the hand edit of b corrected")
        # b's edit asks for a pass of its own (a pass already under way, e.g. a's, may be the one that corrects it, so
        # the reactor can count it after the correction). The correcting writes (their events came back over the same
        # stream before b's edit was seen) asked for none.
        assert svc.reactor is not None
        wait_until(lambda: "ml.b" in svc.reactor.started, 15, what="b's edit noticed by the reactor")
        assert svc.reactor.started == {"ml.a": 1, "ml.b": 1}


def test_kaito_status_is_committed_without_an_interval_and_a_burst_gives_one_commit(
        world: tuple[Sandbox, Remote, client.ApiClient], tmp_path: Path) -> None:
    sb, remote, admin = world
    with service(sb, remote, tmp_path, status_commit_interval="2s"):
        wait_until(lambda: all(state(remote, m) for m in MODELS), 30, what="the first pass's status commit")
        kaito_fails(admin, "a")
        wait_until(lambda: state(remote, "a") == "Failed", 30, what="a's failure committed")
        tip = remote.sha()
        kaito_fails(admin, "b")  # both within the 2 s after a's commit: held, then committed together
        kaito_fails(admin, "c")
        wait_until(lambda: state(remote, "b") == "Failed" and state(remote, "c") == "Failed", 30,
                   what="b and c committed")
        shas = [line.split()[0] for line in remote.log()]
        assert shas.index(tip) == 1, remote.log()[:3]  # one status commit for the burst
