"""Nothing taken: an object gitops-kaito did not create is never written, labelled or pruned by a plain pass.

Another team's Workspace or ConfigMap under a desired name blocks the model (with the reason) and stays exactly as
it was, also once the request is removed; adoption happens only when the model opts in (what `import` writes);
and a cluster that cannot say whether such an object exists (an error on the read) or makes one between the read
and the write never gets it taken over either.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.model.ownership import ANNOTATION_ADOPT, LABEL_MANAGED_BY
from gitops_kaito.model.states import Outcome
from gitops_kaito.reconcile.sync import plan_repository, run_pass
from gitops_kaito.sandbox.hooks import Fault
from tests.faultkit import KubeWorld

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

REV = "main@sha1:" + "c" * 40
CM = "/api/v1/namespaces/ml/configmaps"
CONFIG = "  config: {max-model-len: 4096}\n"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KubeWorld]:
    with KubeWorld(tmp_path) as w:
        w.model("qwen", "qwen2.5-coder-7b-instruct")  # a model of ours beside, that must go on as usual
        yield w


def desired_manifest(world: KubeWorld, kind: str, name: str) -> dict[str, Any]:
    desired, _ = plan_repository(world.repo, world.kube, revision=REV)
    [found] = [o.manifest for o in desired.objects if o.ref.kind == kind and o.ref.name == name]
    return copy.deepcopy(found)


def someone_elses(manifest: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The object as another team made it: same name, no gitops-kaito labels or annotations."""
    body = {k: v for k, v in manifest.items() if k != "metadata"}
    body["metadata"] = {"name": manifest["metadata"]["name"], "namespace": "ml", "labels": {"team": "other"}}
    body.update(changes)
    return body


def create_workspace(world: KubeWorld, body: dict[str, Any]) -> dict[str, Any]:
    return world.custom().create_namespaced_custom_object(  # type: ignore[no-any-return]
        "kaito.sh", "v1beta1", "ml", "workspaces", body)


def configmap(world: KubeWorld, name: str) -> dict[str, Any]:
    return world.admin.sanitize_for_serialization(  # type: ignore[no-any-return]
        client.CoreV1Api(world.admin).read_namespaced_config_map(name, "ml"))


def untouched(before: dict[str, Any], after: dict[str, Any] | None) -> bool:
    return (after is not None and after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
            and LABEL_MANAGED_BY not in (after["metadata"].get("labels") or {}))


def test_another_teams_workspace_is_left_alone_blocked_and_never_pruned(world: KubeWorld) -> None:
    """Fault: the cluster holds another team's Workspace `phi` (made by hand, different SKU, no labels) when a
    request `phi` is added. Checks: the model is Blocked with the reason naming the object and how to adopt it; the
    Workspace keeps its resourceVersion and gets no label; our other model is applied; after the request is
    removed, the next pass leaves that Workspace in place."""
    world.model("phi")
    theirs = create_workspace(world, someone_elses(desired_manifest(world, "Workspace", "phi"),
                                                   resource={"instanceType": "Standard_NV36ads_A10_v5",
                                                             "labelSelector": {"matchLabels": {"apps": "theirs"}}}))
    result = run_pass(world.repo, world.kube, revision=REV)
    outcome = result.outcome("ml.phi")
    assert outcome is not None and outcome.state == Outcome.BLOCKED
    assert "Workspace/ml/phi exists and was not created by gitops-kaito" in outcome.message
    assert ANNOTATION_ADOPT in outcome.message and "gitops-kaito import" in outcome.message
    assert untouched(theirs, world.workspace("phi")), "another team's Workspace was written"
    assert world.workspace("qwen") is not None
    (world.repo / "models/ml/phi.yaml").unlink()
    result = run_pass(world.repo, world.kube, revision=REV)
    assert result.pruned == 0 and untouched(theirs, world.workspace("phi")), "another team's Workspace was pruned"


def test_another_teams_configmap_holds_the_whole_model(world: KubeWorld) -> None:
    """Fault: another team owns a ConfigMap named like our model's inference config. Checks: it is not written, and
    neither is the model's Workspace (it would read that team's ConfigMap); the model is Blocked."""
    world.model("phi", extra=CONFIG)
    cm = desired_manifest(world, "ConfigMap", "phi-inference-config")
    client.CoreV1Api(world.admin).create_namespaced_config_map(
        "ml", someone_elses(cm, data={"inference_config.yaml": "vllm:\n  max-model-len: 1\n"}))
    before = configmap(world, "phi-inference-config")
    mark = time.time()
    result = run_pass(world.repo, world.kube, revision=REV)
    assert result.outcome("ml.phi").state == Outcome.BLOCKED  # type: ignore[union-attr]
    assert untouched(before, configmap(world, "phi-inference-config"))
    assert world.workspace("phi") is None, "the Workspace was created over someone else's ConfigMap"
    written = {e.path for e in world.requests(("create", "patch", "update"), since=mark)}
    assert not any("phi" in p for p in written), written


def test_adoption_happens_only_with_the_models_consent(world: KubeWorld) -> None:
    """The same Workspace, and the request annotated gitops.kaito.sh/adopt: allowed (what `import` writes):
    the pass takes it over in place (same uid, our labels), and from then on it is ours."""
    world.model("phi")
    theirs = create_workspace(world, someone_elses(desired_manifest(world, "Workspace", "phi")))
    path = world.repo / "models/ml/phi.yaml"
    path.write_text(path.read_text().replace("  namespace: ml\n",
                                             f"  namespace: ml\n  annotations: {{{ANNOTATION_ADOPT}: allowed}}\n"))
    result = run_pass(world.repo, world.kube, revision=REV)
    assert result.ok, result.errors
    live = world.workspace("phi")
    assert live is not None and live["metadata"]["uid"] == theirs["metadata"]["uid"]
    assert live["metadata"]["labels"][LABEL_MANAGED_BY] == "gitops-kaito"


def test_a_failed_read_never_becomes_a_takeover(world: KubeWorld) -> None:
    """Fault: reading whether the model's ConfigMap exists fails (the API answers 500 to every GET of it; the kinds
    not listed whole are looked up one by one) while another team's ConfigMap of that name is there. Checks: the
    model is Blocked saying it could not check, that ConfigMap is not written and the model's Workspace not created;
    once the API answers again, the model is Blocked as another team's object, still untouched."""
    world.model("phi", extra=CONFIG)
    cm = desired_manifest(world, "ConfigMap", "phi-inference-config")
    client.CoreV1Api(world.admin).create_namespaced_config_map("ml", someone_elses(cm))
    before = configmap(world, "phi-inference-config")
    world.server.faults.add(Fault(method="GET", path_regex=f"{CM}/phi-inference-config$", status=500, times=None))
    result = run_pass(world.repo, world.kube, revision=REV)
    outcome = result.outcome("ml.phi")
    assert outcome is not None and outcome.state == Outcome.BLOCKED
    assert "could not check whether ConfigMap/ml/phi-inference-config already exists" in outcome.message
    world.server.faults.clear()
    assert untouched(before, configmap(world, "phi-inference-config")) and world.workspace("phi") is None
    result = run_pass(world.repo, world.kube, revision=REV)
    assert "was not created by gitops-kaito" in result.outcome("ml.phi").message  # type: ignore[union-attr]
    assert untouched(before, configmap(world, "phi-inference-config")) and world.workspace("phi") is None


def test_an_object_made_between_read_and_create_is_not_taken_over(world: KubeWorld) -> None:
    """Fault: the read says the model's ConfigMap does not exist (an injected 404) although another team's
    ConfigMap of that name with other data is there, as if it was made right after the read. Checks: the create
    does not force its way in: the model fails with the conflict, the ConfigMap keeps its data and gets no label,
    and the model's Workspace is not created."""
    world.model("phi", extra=CONFIG)
    cm = desired_manifest(world, "ConfigMap", "phi-inference-config")
    client.CoreV1Api(world.admin).create_namespaced_config_map(
        "ml", someone_elses(cm, data={"inference_config.yaml": "vllm:\n  max-model-len: 1\n"}))
    before = configmap(world, "phi-inference-config")
    world.server.faults.add(Fault(method="GET", path_regex=f"{CM}/phi-inference-config$", status=404, times=None))
    result = run_pass(world.repo, world.kube, revision=REV)
    world.server.faults.clear()
    assert result.outcome("ml.phi").state == Outcome.FAILED  # type: ignore[union-attr]
    assert untouched(before, configmap(world, "phi-inference-config"))
    assert world.workspace("phi") is None
