"""InferenceSet requests (spec.replicas / spec.autoscale): loading rules, rendering, planning and the hand-over of
spec.replicas to an autoscaler by field ownership, against the sandbox's API server (scale subresource included).
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.core.plan import Action, PlanPolicy, make_plan
from gitops_kaito.core.render import render_repository
from gitops_kaito.model.kaito import INFERENCESET_CREATED_BY_LABEL
from gitops_kaito.model.objects import DesiredObject, Manifest, with_digest
from gitops_kaito.model.ownership import FIELD_MANAGER, HANDOFF_MANAGER, owner_labels
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import ResolvedModel
from gitops_kaito.sandbox.runtime import Sandbox, SandboxSettings

REV = "main@sha1:" + "1" * 40


def write(root: Path, name: str, spec: str, namespace: str = "ml", kind: str = "ModelDeployment") -> Path:
    path = root / "models" / namespace / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"apiVersion: gitops.kaito.sh/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
                    + textwrap.indent(textwrap.dedent(spec).strip() + "\n", "  "))
    return path


def errors(root: Path) -> list[str]:
    return [str(e) for e in load_repository(root).errors]


# ---------------------------------------------------------------------------------------------- loading


def test_an_unknown_kind_is_named_at_its_line_with_the_known_kinds(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct", kind="ModelDeploymnt")
    assert errors(tmp_path) == ["models/ml/phi.yaml:2: unknown kind 'ModelDeploymnt' (did you mean "
                                "'ModelDeployment'?): a file under models/ is one of ModelDeployment, "
                                "RAGDeployment, TuningJob (gitops.kaito.sh/v1alpha1)"]


@pytest.mark.parametrize(("spec", "line", "needle"), [
    ("model: phi-4-mini-instruct\nreplicas: 2\nprovisioning: nodeclaim", 7, "replicas need provisioning kaito or byo"),
    ("model: phi-4-mini-instruct\nreplicas: 2\nprovisioning: machine", 7, "legacy KAITO (<= v0.4.1) has no"),
    ("model: phi-4-mini-instruct\nautoscale: {minReplicas: 3, maxReplicas: 2, threshold: 5}", 7,
     "autoscale.minReplicas 3 is more than maxReplicas 2"),
    ("model: phi-4-mini-instruct\nreplicas: 5\nautoscale: {minReplicas: 1, maxReplicas: 4, threshold: 5}", 7,
     "replicas 5 (the count at creation) is outside autoscale's bounds 1..4"),
    ("model: phi-4-mini-instruct\nautoscale: {minReplicas: 1, maxReplicas: 4}", 7, "autoscale.threshold is required"),
    ("model: phi-4-mini-instruct\nautoscale: {minReplicas: 1, maxReplicas: 4, scaler: external, threshold: 3}",
     7, "autoscale.threshold is a keda-kaito-scaler setting"),
    ("model: phi-4-mini-instruct\nreplicas: -1", 7, "spec.replicas -1 is less than the minimum of 0"),
])
def test_bad_replica_requests_fail_at_their_line(tmp_path: Path, spec: str, line: int, needle: str) -> None:
    write(tmp_path, "phi", spec)
    found = errors(tmp_path)
    assert len(found) == 1 and found[0].startswith(f"models/ml/phi.yaml:{line}:") and needle in found[0], found


def test_price_and_gpus_count_every_replica(tmp_path: Path) -> None:
    write(tmp_path, "one", "model: phi-4-mini-instruct")
    write(tmp_path, "three", "model: phi-4-mini-instruct\nreplicas: 3")
    load = load_repository(tmp_path)
    assert not load.errors
    one, three = (m for m in sorted(load.models, key=lambda m: m.request.id) if isinstance(m, ResolvedModel))
    assert three.replicas == 3 and one.replicas is None
    assert (three.nodes, three.total_nodes, three.gpus) == (one.nodes, 3 * one.nodes, 3 * one.gpus)
    assert one.price_per_hour is not None and three.price_per_hour == pytest.approx(3 * one.price_per_hour)


# ---------------------------------------------------------------------------------------------- rendering


def rendered(root: Path) -> dict[str, DesiredObject]:
    load = load_repository(root)
    assert not load.errors, load.errors
    return {f"{o.ref.kind}/{o.ref.name}": o for r in render_repository(load, REV) for o in r.objects}


def test_static_replicas_render_an_inferenceset_owning_replicas(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 3\nruntime: vllm")
    out = rendered(tmp_path)
    assert set(out) == {"InferenceSet/phi"}
    iset = out["InferenceSet/phi"]
    m = iset.manifest
    assert (m["apiVersion"], m["spec"]["replicas"], iset.create_only) == ("kaito.sh/v1beta1", 3, None)
    assert m["spec"]["labelSelector"] == {"matchLabels": {"apps": "phi"}}
    assert m["spec"]["template"]["inference"]["preset"]["name"] == "phi-4-mini-instruct"
    assert m["spec"]["template"]["resource"]["instanceType"]
    assert "metadata" not in m["spec"]["template"], "children must not inherit our owner labels or annotations"


def test_an_autoscaled_set_sets_replicas_only_at_creation_with_keda_annotations(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-3-mini-4k-instruct\nruntime: transformers\n"
          "autoscale: {minReplicas: 2, maxReplicas: 5, threshold: 8}")
    iset = rendered(tmp_path)["InferenceSet/phi"]
    assert "replicas" not in iset.manifest["spec"] and iset.create_only == {"spec": {"replicas": 2}}
    annotations = iset.manifest["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("scaledobject.kaito.sh/")} == {
        "scaledobject.kaito.sh/auto-provision": "true", "scaledobject.kaito.sh/min-replicas": "2",
        "scaledobject.kaito.sh/max-replicas": "5", "scaledobject.kaito.sh/threshold": "8",
        "scaledobject.kaito.sh/metricName": "vllm:num_requests_waiting"}
    # children take annotations only from the template: the runtime must be there
    assert iset.manifest["spec"]["template"]["metadata"] == {"annotations": {"kaito.sh/runtime": "transformers"}}


def test_byo_sets_have_no_instance_type(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2\nprovisioning: byo")
    assert "resource" not in rendered(tmp_path)["InferenceSet/phi"].manifest["spec"]["template"]


def test_a_template_override_cannot_put_our_labels_on_kaitos_children(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2")
    builtin = (Path(__file__).resolve().parent.parent / "templates" / "inferenceset-v1beta1.yaml").read_text()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "inferenceset-v1beta1.yaml").write_text(builtin.replace(
        '      annotations: "{{ .template_annotations }}"', '      labels: "{{ .labels }}"'))
    with pytest.raises(Exception, match=r"spec\.template\.metadata\.labels must not carry gitops-kaito.s own keys"):
        rendered(tmp_path)


# ---------------------------------------------------------------------------------------------- planning


def _fields(value: Any) -> dict[str, Any]:
    return {f"f:{k}": _fields(v) for k, v in value.items()} if isinstance(value, dict) else {}


def served(obj: DesiredObject, *, replicas: int | None = None, replicas_by: str = HANDOFF_MANAGER) -> Manifest:
    """What the server holds after our apply (and the hand-over, when replicas_by is set)."""
    live = copy.deepcopy(with_digest(obj.manifest))
    body = {k: v for k, v in live.items() if k not in ("apiVersion", "kind")}
    live["metadata"].update(uid="u-1", resourceVersion="9", generation=1)
    managed = [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": _fields(body)}]
    if replicas is not None:
        live["spec"]["replicas"] = replicas
        if replicas_by != FIELD_MANAGER:
            managed.append({"manager": replicas_by, "operation": "Update", "subresource": "scale",
                            "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}})
        else:
            managed[0]["fieldsV1"]["f:spec"]["f:replicas"] = {}
    live["metadata"]["managedFields"] = managed
    live["status"] = {"replicas": replicas or 0, "readyReplicas": 0}
    return live


def plan_one(root: Path, live: list[Manifest], policy: PlanPolicy | None = None) -> Any:
    desired = list(rendered(root).values())
    return make_plan(desired, live, policy or PlanPolicy())


def test_a_create_carries_the_initial_replicas_to_hand_over(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nautoscale: {minReplicas: 1, maxReplicas: 4, threshold: 3}")
    (change,) = plan_one(tmp_path, []).changes
    assert change.action == Action.CREATE and change.handoff == {"spec": {"replicas": 1}}


def test_an_autoscalers_replicas_are_neither_a_change_nor_drift(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nautoscale: {minReplicas: 1, maxReplicas: 4, threshold: 3}")
    obj = rendered(tmp_path)["InferenceSet/phi"]
    for owner in (HANDOFF_MANAGER, "keda-hpa-controller"):
        (change,) = plan_one(tmp_path, [served(obj, replicas=4, replicas_by=owner)]).changes
        assert (change.action, change.drift, change.patch) == (Action.NOOP, False, ()), owner


def test_static_replicas_moving_under_an_autoscaler_are_handed_over_at_their_live_value(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nautoscale: {minReplicas: 1, maxReplicas: 4, threshold: 3}")
    obj = rendered(tmp_path)["InferenceSet/phi"]
    (change,) = plan_one(tmp_path, [served(obj, replicas=3, replicas_by=FIELD_MANAGER)]).changes
    assert change.action == Action.UPDATE and change.patch == () and change.handoff == {"spec": {"replicas": 3}}
    assert "spec.replicas handed to the autoscaler" in change.reason


def test_a_replica_count_change_is_an_update(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2")
    before = rendered(tmp_path)["InferenceSet/phi"]
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 5")
    (change,) = plan_one(tmp_path, [served(before)]).changes
    assert change.action == Action.UPDATE and change.fields == ("spec.replicas",)


def test_a_template_change_kaito_does_not_roll_is_a_replace_under_the_policy(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2")
    before = rendered(tmp_path)["InferenceSet/phi"]
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2\ninstanceType: Standard_NC24ads_A100_v4")
    (blocked,) = plan_one(tmp_path, [served(before)]).changes
    assert blocked.action == Action.BLOCKED and blocked.immutable == ("spec.template.resource",)
    assert blocked.reason.startswith("KAITO does not roll spec.template.resource onto the existing replicas")
    (replaced,) = plan_one(tmp_path, [served(before)], PlanPolicy(replace_policy="auto")).changes
    assert replaced.action == Action.REPLACE


def test_switching_workspace_to_inferenceset_is_a_visible_replace(tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct")
    workspace = rendered(tmp_path)["Workspace/phi"]
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2")
    live = [served(workspace)]
    manual = {str(c.ref): (c.action, c.reason) for c in plan_one(tmp_path, live).changes}
    assert manual["InferenceSet/ml/phi"][0] == Action.BLOCKED and manual["Workspace/ml/phi"][0] == Action.BLOCKED
    assert "switching Workspace -> InferenceSet" in manual["InferenceSet/ml/phi"][1]
    auto = {str(c.ref): c for c in plan_one(tmp_path, live, PlanPolicy(replace_policy="auto")).changes}
    assert auto["InferenceSet/ml/phi"].action == Action.CREATE
    assert auto["InferenceSet/ml/phi"].switches_from is not None
    assert auto["Workspace/ml/phi"].action == Action.DELETE
    assert auto["Workspace/ml/phi"].reason == "replaced by InferenceSet/ml/phi"


def child_workspace(set_name: str, name: str, *, our_labels: bool = False) -> Manifest:
    labels = {INFERENCESET_CREATED_BY_LABEL: set_name, **(owner_labels("ml", set_name) if our_labels else {})}
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": name, "namespace": "ml", "labels": labels, "ownerReferences": [
                {"apiVersion": "kaito.sh/v1beta1", "kind": "InferenceSet", "name": set_name, "uid": "s",
                 "controller": True}]}}


def test_kaitos_children_are_never_pruned_nor_adopted_even_with_our_labels(tmp_path: Path) -> None:
    write(tmp_path, "phi-abcde", "model: phi-4-mini-instruct")  # a model named like a child of set "phi"
    plan = plan_one(tmp_path, [child_workspace("phi", "phi-abcde"), child_workspace("phi", "phi-xyz12",
                                                                                    our_labels=True)])
    assert [(str(c.ref), c.action) for c in plan.changes] == [("Workspace/ml/phi-abcde", Action.BLOCKED)]
    assert "a replica of KAITO's InferenceSet phi (inferenceset.kaito.sh/created-by)" in plan.changes[0].reason


# ---------------------------------------------------------------------------------------------- cluster


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(SandboxSettings(controllers=False, namespaces=("default", "ml"))) as sb:
        yield sb


def test_an_autoscaler_owns_replicas_after_creation_and_is_never_reverted(sandbox: Sandbox, tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct\nautoscale: {minReplicas: 2, maxReplicas: 6, threshold: 3}")
    with Kube.connect(sandbox.kubeconfig_path) as kube:
        first = run_pass(tmp_path, kube, revision=REV)
        assert first.ok and first.created == 1, first.errors
        custom = client.CustomObjectsApi(kube.api_client)

        def live() -> Manifest:
            return dict(custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "inferencesets", "phi"))

        assert live()["spec"]["replicas"] == 2
        owners = {(e["manager"], e["operation"]): e["fieldsV1"] for e in live()["metadata"]["managedFields"]}
        assert "f:replicas" not in owners[(FIELD_MANAGER, "Apply")]["f:spec"]
        assert owners[(HANDOFF_MANAGER, "Apply")]["f:spec"] == {"f:replicas": {}}
        # the autoscaler (here as KEDA's HPA would) scales through the scale subresource
        custom.patch_namespaced_custom_object_scale("kaito.sh", "v1beta1", "ml", "inferencesets", "phi",
                                                    {"spec": {"replicas": 5}}, field_manager="keda-hpa")
        for _ in range(3):
            again = run_pass(tmp_path, kube, revision=REV)
            assert not again.plan.has_changes and not again.plan.drift_reported
            assert live()["spec"]["replicas"] == 5
        # a real change of the request is applied and still leaves replicas alone
        write(tmp_path, "phi", "model: phi-4-mini-instruct\nautoscale: {minReplicas: 2, maxReplicas: 8, "
              "threshold: 3}")
        changed = run_pass(tmp_path, kube, revision=REV)
        assert changed.updated == 1 and live()["spec"]["replicas"] == 5
        assert live()["metadata"]["annotations"]["scaledobject.kaito.sh/max-replicas"] == "8"


# ---------------------------------------------------------------------------------------------- add


def test_add_writes_an_inferenceset_request_and_refuses_a_lone_threshold(tmp_path: Path) -> None:
    import contextlib
    import io

    from gitops_kaito.cli import main

    repo = tmp_path / "repo"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["init", str(repo)]) == 0
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["add", "phi-4-mini-instruct", "--name", "fleet", "--replicas", "3", "--repo", str(repo)]) == 0
    assert "inferenceset  default/fleet" in out.getvalue() and "replicas      3" in out.getvalue()
    written = load_repository(repo)
    fleet = next(m for m in written.models if m.request.id == "default.fleet")
    assert isinstance(fleet, ResolvedModel) and fleet.replicas == 3 and not written.errors
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["add", "phi-4-mini-instruct", "--name", "lone", "--threshold", "5", "--repo", str(repo)])
    assert code == 1 and "--threshold needs --autoscale MIN:MAX" in err.getvalue()


def test_import_takes_an_unmanaged_inferenceset_never_its_children(sandbox: Sandbox, tmp_path: Path) -> None:
    import contextlib
    import io

    import yaml

    from gitops_kaito.cli import main

    custom = client.CustomObjectsApi(sandbox.api_client("test-admin/1.0"))
    example = Path(__file__).resolve().parents[2] / "shared" / "kaito" / "examples" / "kaito_inferenceset_phi_4_mini.yaml"
    if example.is_file():  # KAITO's own example (v1alpha1, keda annotations without max-replicas): not expressible
        doc = yaml.safe_load(example.read_text())
        custom.create_namespaced_custom_object("kaito.sh", "v1alpha1", "default", "inferencesets", doc)
    hand = {"apiVersion": "kaito.sh/v1beta1", "kind": "InferenceSet",
            "metadata": {"name": "fleet", "namespace": "ml", "annotations": {
                "scaledobject.kaito.sh/auto-provision": "true", "scaledobject.kaito.sh/max-replicas": "5",
                "scaledobject.kaito.sh/threshold": "7"}},
            "spec": {"replicas": 2, "labelSelector": {"matchLabels": {"apps": "fleet"}},
                     "template": {"resource": {"instanceType": "Standard_NV36ads_A10_v5"},
                                  "inference": {"preset": {"name": "phi-4-mini-instruct"}}}}}
    custom.create_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "inferencesets", hand)
    child = child_workspace("fleet", "fleet-ab12c")
    child["resource"] = {"labelSelector": {"matchLabels": {"apps": "fleet"}}, "instanceType": "Standard_NV36ads_A10_v5"}
    child["inference"] = {"preset": {"name": "phi-4-mini-instruct"}}
    custom.create_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces", child)
    repo = tmp_path / "repo"
    repo.mkdir()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["import", "-A", "--repo", str(repo), "--kubeconfig", str(sandbox.kubeconfig_path), "-o", "json"])
    rows = {r["model"]: r for r in yaml.safe_load(out.getvalue())}
    assert "ml/fleet-ab12c" not in rows and not (repo / "models" / "ml" / "fleet-ab12c.yaml").exists()
    assert rows["ml/fleet"]["result"] == "imported"
    spec = yaml.safe_load((repo / "models" / "ml" / "fleet.yaml").read_text())["spec"]
    assert spec["autoscale"] == {"minReplicas": 2, "maxReplicas": 5, "threshold": 7}
    if example.is_file():
        assert rows["default/phi-4-mini"]["result"] == "skipped" and "max-replicas" in rows["default/phi-4-mini"][
            "detail"]
        assert code == 1
    # the imported file plans as an in-place adoption of the same set
    load = load_repository(repo)
    assert not load.errors, load.errors


def test_a_model_moving_to_an_inferenceset_replaces_its_workspace_under_the_policy(sandbox: Sandbox,
                                                                                   tmp_path: Path) -> None:
    write(tmp_path, "phi", "model: phi-4-mini-instruct")
    write(tmp_path, "other", "model: phi-4-mini-instruct")  # keeps the removal under the prune guard's share
    custom: client.CustomObjectsApi
    with Kube.connect(sandbox.kubeconfig_path) as kube:
        custom = client.CustomObjectsApi(kube.api_client)
        assert run_pass(tmp_path, kube, revision=REV).created == 2
        write(tmp_path, "phi", "model: phi-4-mini-instruct\nreplicas: 2")
        held = run_pass(tmp_path, kube, revision=REV)  # replacePolicy manual: both wait, nothing written
        assert {str(c.ref): c.action for c in held.plan.for_model("ml.phi")} == {
            "InferenceSet/ml/phi": Action.BLOCKED, "Workspace/ml/phi": Action.BLOCKED}
        assert held.created == held.pruned == 0 and held.outcome("ml.phi").state == "Blocked"
        (tmp_path / "gitops-kaito.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n"
                                                    "replacePolicy: auto\n")
        moved = run_pass(tmp_path, kube, revision=REV)
        assert (moved.created, moved.pruned) == (1, 1), moved.plan
        assert custom.get_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "inferencesets", "phi")
        names = {w["metadata"]["name"] for w in custom.list_namespaced_custom_object(
            "kaito.sh", "v1beta1", "ml", "workspaces")["items"] if not w["metadata"].get("deletionTimestamp")}
        assert names == {"other"}
