"""Planning without a server: hand-made desired objects against live objects shaped like an API server's."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gitops_kaito.core.plan import (
    Action,
    PlanPolicy,
    UpToDate,
    drift_managers,
    key_of,
    make_plan,
    node_ready,
    pointer_to_field,
    reported_drift_counts,
)
from gitops_kaito.model.objects import (
    ANNOTATION_DIGEST,
    DesiredObject,
    Manifest,
    Wave,
    comparable,
    digest,
    with_digest,
)
from gitops_kaito.model.ownership import (
    ANNOTATION_DRIFT,
    ANNOTATION_PRUNE,
    ANNOTATION_REPLACE,
    ANNOTATION_REVISION,
    FIELD_MANAGER,
    model_id,
    owner_labels,
)

REV1 = "main@sha1:1111111"
REV2 = "main@sha1:2222222"


def _meta(name: str, ns: str | None, model: str, rev: str) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": owner_labels("ml", model),
        "annotations": {ANNOTATION_REVISION: rev, "gitops.kaito.sh/source-path": f"models/ml/{model}.yaml"},
    }
    if ns:
        meta["namespace"] = ns
    return meta


def workspace(model: str = "phi", preset: str = "phi-4-mini-instruct", sku: str = "Standard_NC24ads_A100_v4",
              rev: str = REV1, count: int | None = None, **extra: Any) -> DesiredObject:
    resource: dict[str, Any] = {"instanceType": sku, "labelSelector": {"matchLabels": {"apps": model}}}
    if count is not None:
        resource["count"] = count
    manifest = {
        "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": _meta(model, "ml", model, rev),
        "resource": resource,
        "inference": {"preset": {"name": preset}, "config": f"{model}-inference-config"},
        **extra,
    }
    return DesiredObject(manifest, model_id("ml", model), Wave.WORKLOAD)


def configmap(model: str = "phi", max_len: int = 4096, rev: str = REV1) -> DesiredObject:
    manifest = {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(f"{model}-inference-config", "ml", model, rev),
        "data": {"inference_config.yaml": f"vllm:\n  max-model-len: {max_len}\n"},
    }
    return DesiredObject(manifest, model_id("ml", model), Wave.CONFIG)


def nodeclaim(model: str = "phi", sku: str = "Standard_NC24ads_A100_v4", i: int = 0, rev: str = REV1) -> DesiredObject:
    manifest = {
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": _meta(f"{model}-abc-{i}", None, model, rev),
        "spec": {
            "nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
            "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [sku]}],
        },
    }
    return DesiredObject(manifest, model_id("ml", model), Wave.NODES)


def _fields(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {f"f:{k}": _fields(v) for k, v in value.items()}
    return {}


def served(obj: DesiredObject, *, defaults: bool = True) -> Manifest:
    """What a server returns after our apply: server metadata, managedFields, defaults, KAITO's additions."""
    live = with_digest(obj.manifest)
    meta = live["metadata"]
    body = {k: v for k, v in live.items() if k not in ("apiVersion", "kind")}
    owned = _fields(body)
    meta.update(uid="u-1", resourceVersion="42", generation=1, creationTimestamp="2026-01-01T00:00:00Z")
    meta["managedFields"] = [{"manager": FIELD_MANAGER, "operation": "Apply", "fieldsType": "FieldsV1",
                              "fieldsV1": owned}]
    if live["kind"] == "Workspace":
        meta["finalizers"] = ["workspace.finalizer.kaito.sh"]
        meta["annotations"]["workspace.kaito.io/hash"] = "abc"
        meta["annotations"]["workspace.kaito.io/revision"] = "1"
        if defaults:
            live["resource"].setdefault("count", 1)
            live["inference"]["preset"].setdefault("accessMode", "public")
        live["status"] = {"state": "Ready", "conditions": [{"type": "WorkspaceSucceeded", "status": "True"}]}
    return live


def by_action(plan: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in plan.changes:
        out.setdefault(c.action.value, []).append(str(c.ref))
    return out


def test_missing_objects_are_created_in_wave_order() -> None:
    plan = make_plan([workspace(), nodeclaim(), configmap()], [])
    assert [c.action for c in plan.changes] == [Action.CREATE] * 3
    assert [c.ref.kind for c in plan.changes] == ["ConfigMap", "NodeClaim", "Workspace"]
    assert plan.has_changes
    assert ANNOTATION_DIGEST in plan.changes[0].desired["metadata"]["annotations"]  # type: ignore[index]


def test_cluster_owned_fields_never_show_as_differences() -> None:
    desired = [configmap(), workspace(), nodeclaim()]
    live = [served(d) for d in desired]
    plan = make_plan(desired, live)
    assert by_action(plan) == {"noop": [str(d.ref) for d in (desired[0], desired[2], desired[1])]}
    assert not plan.has_changes


def test_a_desired_object_is_normalised_and_digested_once_across_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    """The long-running loops plan the same (cached) desired objects every pass: only the live side is normalised
    again."""
    from gitops_kaito.core import plan as planning

    desired = [configmap(), workspace(), nodeclaim()]
    live = [served(d) for d in desired]
    first = make_plan(desired, live)
    seen: list[Any] = []
    real = planning.comparable
    monkeypatch.setattr(planning, "comparable", lambda m: seen.append(m) or real(m))
    second = make_plan(desired, live)
    assert [c.action for c in second.changes] == [c.action for c in first.changes] == [Action.NOOP] * 3
    assert len(seen) == len(live)  # one per live object; none for a desired manifest
    assert [c.desired for c in second.changes] == [c.desired for c in first.changes]
    for d in desired:
        assert d.normalised.comparable == real(d.manifest)
        assert d.normalised.digest == digest(d.manifest)
        assert d.normalised.stamped == with_digest(d.manifest)


def test_comparable_drops_what_never_counts_and_leaves_the_manifest_as_it_was() -> None:
    live = served(workspace())
    live["spec"] = {"gone": None, "empty": {}, "kept": {"a": None, "b": 1}, "items": [{"x": None}, 2]}
    before = copy.deepcopy(live)
    normal = comparable(live)
    assert live == before
    assert "apiVersion" not in normal
    assert not {"uid", "resourceVersion", "managedFields", "finalizers"} & set(normal["metadata"])
    assert set(normal["metadata"]["annotations"]) == {"gitops.kaito.sh/source-path"}
    assert normal["spec"] == {"kept": {"b": 1}, "items": [{}, 2]}
    # What normalising leaves as it was is shared, not copied: the form kept per desired object stays small.
    assert normal["inference"] is live["inference"] and normal["metadata"]["labels"] is live["metadata"]["labels"]


def test_a_new_revision_alone_is_not_a_change() -> None:
    live = [served(workspace(rev=REV1))]
    plan = make_plan([workspace(rev=REV2)], live)
    assert [c.action for c in plan.changes] == [Action.NOOP]


def test_an_edit_is_the_smallest_patch_and_not_drift() -> None:
    live = [served(configmap(max_len=4096, rev=REV1))]
    plan = make_plan([configmap(max_len=8192, rev=REV2)], live)
    (change,) = plan.changes
    assert change.action == Action.UPDATE
    assert list(change.patch) == [{"op": "replace", "path": "/data/inference_config.yaml",
                                   "value": "vllm:\n  max-model-len: 8192\n"}]
    assert not change.drift
    assert change.reason == "changed in the repository"


def test_a_field_we_stopped_setting_shows_as_a_removal() -> None:
    old = workspace(rev=REV1)
    old.manifest["inference"]["adapters"] = [{"source": {"name": "a", "image": "x"}}]
    plan = make_plan([workspace(rev=REV2)], [served(old)])
    (change,) = plan.changes
    assert change.action == Action.UPDATE
    assert list(change.patch) == [{"op": "remove", "path": "/inference/adapters"}]


def test_a_hand_edit_is_drift() -> None:
    live = served(configmap())
    live["data"]["inference_config.yaml"] = "vllm: {}\n"
    plan = make_plan([configmap(rev=REV2)], [live])  # new commit, same desired object: the digest matches
    (change,) = plan.changes
    assert change.action == Action.UPDATE and change.drift
    assert "drift" in change.reason



def test_the_loops_memory_of_equal_pairs_never_hides_a_change() -> None:
    """UpToDate lets a long-running loop skip comparing what it found equal last pass; any new live version (a hand
    edit moves resourceVersion) or another desired object is compared again, and the plans are the ones without it."""
    desired = [configmap(), workspace()]
    live = [served(d) for d in desired]
    memo = UpToDate()
    for _ in range(2):
        assert by_action(make_plan(desired, live, up_to_date=memo)) == by_action(make_plan(desired, live))
    assert all(memo.known(d, obj, False) for d, obj in zip(desired, live, strict=True))

    edited = copy.deepcopy(live)
    edited[0]["data"]["inference_config.yaml"] = "vllm: {}\n"
    edited[0]["metadata"]["resourceVersion"] = "43"
    (change, same) = make_plan(desired, edited, up_to_date=memo).changes
    assert change.action == Action.UPDATE and change.drift and same.action == Action.NOOP
    # A new commit renders new desired objects: compared again, even against the same live version.
    again = [configmap(max_len=8192), workspace()]
    assert [c.action for c in make_plan(again, live, up_to_date=memo).changes] == [Action.UPDATE, Action.NOOP]
    # The memory holds only what the last plan saw.
    assert not memo.known(desired[0], live[0], False) and memo.known(again[1], live[1], False)

def test_a_field_taken_over_by_another_manager_is_drift_even_when_the_repo_changed_too() -> None:
    live = served(workspace())
    live["metadata"]["annotations"][ANNOTATION_DIGEST] = "sha256:older"
    live["inference"]["config"] = "hand-made"
    live["metadata"]["managedFields"].append({"manager": "kubectl-edit", "operation": "Update",
                                              "fieldsV1": {"f:inference": {"f:config": {}}}})
    plan = make_plan([workspace(rev=REV2)], [live])
    (change,) = plan.changes
    assert change.drift
    assert list(change.patch) == [{"op": "replace", "path": "/inference/config", "value": "phi-inference-config"}]


def test_people_adding_their_own_fields_is_not_a_difference() -> None:
    live = served(workspace())
    live["metadata"]["labels"]["team"] = "search"
    live["metadata"]["annotations"]["note"] = "hello"
    assert not make_plan([workspace()], [live]).has_changes


def test_preset_change_is_blocked_by_default_with_the_reason() -> None:
    plan = make_plan([workspace(preset="llama-3.1-8b-instruct", rev=REV2)], [served(workspace())])
    (change,) = plan.changes
    assert change.action == Action.BLOCKED
    assert change.immutable == ("inference.preset",)
    assert "replacePolicy: auto" in change.reason and ANNOTATION_REPLACE in change.reason


@pytest.mark.parametrize("how", ["policy", "model", "annotation"])
def test_preset_change_replaces_when_allowed(how: str) -> None:
    want = workspace(preset="llama-3.1-8b-instruct", rev=REV2)
    policy = PlanPolicy()
    if how == "policy":
        policy = PlanPolicy(replace_policy="auto")
    elif how == "model":
        policy = PlanPolicy(replace_allowed=frozenset({want.model_id}))
    else:
        want.manifest["metadata"]["annotations"][ANNOTATION_REPLACE] = "allowed"
    (change,) = make_plan([want], [served(workspace())], policy).changes
    assert change.action == Action.REPLACE
    assert {"op": "replace", "path": "/inference/preset/name", "value": "llama-3.1-8b-instruct"} in change.patch


def test_instance_type_and_selector_are_immutable_but_config_is_not() -> None:
    want = workspace(sku="Standard_NC48ads_A100_v4", rev=REV2)
    want.manifest["resource"]["labelSelector"] = {"matchLabels": {"apps": "other"}}
    (change,) = make_plan([want], [served(workspace())]).changes
    assert change.immutable == ("resource.instanceType", "resource.labelSelector")
    want = workspace(rev=REV2)
    want.manifest["inference"]["config"] = "another"
    (change,) = make_plan([want], [served(workspace())]).changes
    assert change.action == Action.UPDATE and change.immutable == ()


def test_count_is_immutable_only_when_set_on_both_sides() -> None:
    live = served(workspace())  # count defaulted to 1 by the server
    assert not make_plan([workspace()], [live]).has_changes
    (change,) = make_plan([workspace(count=2)], [live]).changes
    assert change.immutable == ("resource.count",)
    live_nocount = served(workspace(), defaults=False)
    (change,) = make_plan([workspace(count=2)], [live_nocount]).changes
    assert change.action == Action.UPDATE


def test_nodeclaim_spec_is_immutable() -> None:
    (change,) = make_plan([nodeclaim(sku="Standard_NC48ads_A100_v4")], [served(nodeclaim())]).changes
    assert change.action == Action.BLOCKED and change.immutable == ("spec",)


def test_version_is_not_part_of_identity() -> None:
    old = workspace()
    live = served(old)
    live["apiVersion"] = "kaito.sh/v1alpha1"
    plan = make_plan([old], [live])
    assert by_action(plan) == {"noop": ["Workspace/ml/phi"]}


def _three_models() -> tuple[list[DesiredObject], list[Manifest]]:
    desired = [o for m in ("a", "b", "c") for o in (configmap(m), workspace(m))]
    return desired, [served(d) for d in desired]


def test_prune_deletes_a_removed_models_objects_in_reverse_order_and_nothing_else() -> None:
    desired, live = _three_models()
    foreign_nodeclaim = {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                         "metadata": {"name": "ws1a2b3c4d5", "labels": {"kaito.sh/workspace": "c"}}}
    someone_elses = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "c-inference-config-copy", "namespace": "ml", "labels": {"app": "x"}}}
    plan = make_plan([d for d in desired if d.model_id != "ml.c"], [*live, foreign_nodeclaim, someone_elses])
    deletes = [c for c in plan.changes if c.action == Action.DELETE]
    assert [str(c.ref) for c in deletes] == ["Workspace/ml/c", "ConfigMap/ml/c-inference-config"]
    assert all(c.reason == "model removed from the repository" for c in deletes)
    assert plan.changes[-2:] == tuple(deletes)
    assert plan.managed_models == {"ml.a", "ml.b", "ml.c"}


def test_an_object_no_longer_rendered_for_a_kept_model_is_deleted() -> None:
    plan = make_plan([workspace()], [served(workspace()), served(configmap())])
    assert by_action(plan) == {"noop": ["Workspace/ml/phi"], "delete": ["ConfigMap/ml/phi-inference-config"]}


@pytest.mark.parametrize(("policy", "reason"), [
    (PlanPolicy(keep=frozenset({"ml.c"})), "the model's file failed to load"),
    (PlanPolicy(source_ok=False), "gitops-kaito.yaml failed to load"),
    (PlanPolicy(prune=False), "prune is disabled"),
])
def test_prune_holds_back(policy: PlanPolicy, reason: str) -> None:
    desired, live = _three_models()
    plan = make_plan([d for d in desired if d.model_id != "ml.c"], live, policy)
    stale = [c for c in plan.changes if c.model_id == "ml.c"]
    assert [c.action for c in stale] == [Action.NOOP, Action.NOOP]
    assert all(reason in c.reason for c in stale)


def test_prune_opt_out_annotation() -> None:
    desired, live = _three_models()
    live[5]["metadata"]["annotations"][ANNOTATION_PRUNE] = "disabled"  # Workspace ml/c
    plan = make_plan([d for d in desired if d.model_id != "ml.c"], live)
    assert by_action(plan)["delete"] == ["ConfigMap/ml/c-inference-config"]
    kept = next(c for c in plan.changes if str(c.ref) == "Workspace/ml/c")
    assert kept.action == Action.NOOP and ANNOTATION_PRUNE in kept.reason


def test_prune_guard_refuses_more_than_half() -> None:
    desired, live = _three_models()
    plan = make_plan([d for d in desired if d.model_id == "ml.a"], live)
    assert "delete" not in by_action(plan)
    assert len(by_action(plan)["blocked"]) == 4
    assert "refusing to delete 2 of 3 managed models" in plan.prune_refused
    assert all(c.reason == plan.prune_refused for c in plan.changes if c.action == Action.BLOCKED)


def test_prune_guard_refuses_all_even_a_single_model() -> None:
    plan = make_plan([], [served(workspace())])
    assert by_action(plan) == {"blocked": ["Workspace/ml/phi"]}
    assert "(all," in plan.prune_refused


@pytest.mark.parametrize("policy", [PlanPolicy(allow_mass_prune=True), PlanPolicy(allow_all=True),
                                    PlanPolicy(max_share=0.7)])
def test_prune_guard_can_be_lifted(policy: PlanPolicy) -> None:
    desired, live = _three_models()
    plan = make_plan([d for d in desired if d.model_id == "ml.a"], live, policy)
    assert len(by_action(plan)["delete"]) == 4 and not plan.prune_refused


def test_suspended_models_are_pruned_without_tripping_the_guard() -> None:
    desired, live = _three_models()
    plan = make_plan([d for d in desired if d.model_id == "ml.a"], live,
                     PlanPolicy(suspended=frozenset({"ml.b", "ml.c"})))
    assert len(by_action(plan)["delete"]) == 4
    assert {c.reason for c in plan.changes if c.action == Action.DELETE} == {"model suspended"}


def test_terminating_objects_are_left_alone() -> None:
    live = served(workspace())
    live["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
    (change,) = make_plan([workspace(preset="other")], [live]).changes
    assert change.action == Action.NOOP and "being deleted" in change.reason
    (change,) = make_plan([configmap()], [served(configmap()), live]).changes[1:]
    assert change.action == Action.NOOP and change.reason == "already being deleted"


def test_a_doubly_rendered_object_is_an_error() -> None:
    with pytest.raises(ValueError, match="rendered twice"):
        make_plan([workspace(), workspace()], [])


def test_counts() -> None:
    desired, live = _three_models()
    live[0] = copy.deepcopy(live[0])
    live[0]["data"] = {"inference_config.yaml": "hand"}
    counts = make_plan(desired, live).counts()
    assert counts["update"] == 1 and counts["noop"] == 5 and counts["drift"] == 1


def test_node_ready() -> None:
    claim: Manifest = served(nodeclaim())
    assert not node_ready(claim)
    claim["status"] = {"conditions": [{"type": "Launched", "status": "True"}, {"type": "Ready", "status": "False"}]}
    assert not node_ready(claim)
    claim["status"]["conditions"][1]["status"] = "True"
    assert node_ready(claim)
    claim["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert not node_ready(claim)
    assert node_ready({"status": {"nodeName": "aks-gpu-1"}})
    assert node_ready({"status": {"conditions": [{"type": "MachineReady", "status": "True"}]}})


def test_markdown_comments_are_split_below_the_limit() -> None:
    from gitops_kaito.core.report import COMMENT_LIMIT, split_comments

    parts = ["summary\n"] + [f"<details>{i}\n" + "x" * 30_000 + "\n</details>\n" for i in range(5)]
    comments = split_comments(parts)
    assert len(comments) == 3
    assert all(len(c) <= COMMENT_LIMIT for c in comments)
    assert [c.splitlines()[0] for c in comments] == [f"<!-- gitops-kaito plan: comment {i} of 3 -->" for i in (1, 2, 3)]
    assert "".join(comments).count("<details>") == 5
    (huge,) = split_comments(["y" * 200_000])
    assert len(huge) <= COMMENT_LIMIT and "truncated" in huge


def test_a_copy_carrying_our_labels_is_never_pruned() -> None:
    copied = served(configmap("c"))
    copied["metadata"]["name"] = "c-copy"
    copied["metadata"]["managedFields"] = [{"manager": "kubectl-create", "operation": "Update", "fieldsV1": {}}]
    plan = make_plan([workspace("a")], [served(workspace("a")), served(workspace("b")), copied],
                     PlanPolicy(allow_all=True))
    kept = next(c for c in plan.changes if c.ref.name == "c-copy")
    assert kept.action == Action.NOOP and "never applied it" in kept.reason
    assert by_action(plan)["delete"] == ["Workspace/ml/b"]
    assert plan.managed_models == {"ml.a", "ml.b"}


def _unowned(obj: DesiredObject, **changes: Any) -> Manifest:
    """The same object as someone else made it: no owner labels, no managedFields of ours."""
    live = copy.deepcopy(obj.manifest)
    live["metadata"].pop("labels")
    live["metadata"].pop("annotations")
    live.update(changes)
    return live


ADOPT = PlanPolicy(adopt_allowed=frozenset({"ml.phi"}))


def test_an_unowned_object_of_a_desired_name_is_left_alone_and_the_model_blocked() -> None:
    """Someone else's object under a desired name: no pass writes it (the model is blocked with the reason and
    nothing else of it is written: its Workspace would point at that ConfigMap), and it is never pruned."""
    cm, want = configmap(), workspace()
    plan = make_plan([cm, want], [_unowned(cm)])
    by_kind = {c.ref.kind: c for c in plan.changes}
    blocked = by_kind["ConfigMap"]
    assert blocked.action == Action.BLOCKED and blocked.not_ours and not blocked.patch
    assert "ConfigMap/ml/phi-inference-config exists and was not created by gitops-kaito" in blocked.reason
    assert "gitops-kaito import" in blocked.reason and "gitops.kaito.sh/adopt: allowed" in blocked.reason
    held = by_kind["Workspace"]
    assert held.action == Action.BLOCKED and "not applied: ConfigMap/ml/phi-inference-config" in held.reason
    assert not any(c.writes for c in plan.changes)
    # Someone else's object that nothing desires is not ours to prune.
    other = _unowned(workspace("qwen"))
    assert make_plan([], [other]).changes == ()


def test_an_unowned_object_is_adopted_in_place_only_when_the_model_opts_in() -> None:
    from gitops_kaito.core.plan import ADOPT_REASON

    want = workspace()
    [change] = make_plan([want], [_unowned(want)], ADOPT).changes
    assert (change.action, change.reason) == (Action.UPDATE, ADOPT_REASON)
    assert any(op["path"].startswith("/metadata/labels") for op in change.patch)
    [other] = make_plan([workspace("qwen")], [_unowned(workspace("qwen"))], ADOPT).changes
    assert other.action == Action.BLOCKED, "the opt-in is per model"


def test_a_copy_with_our_labels_that_we_never_applied_is_not_taken_over() -> None:
    want = workspace()
    copy_ = served(want)
    copy_["metadata"]["managedFields"] = [{"manager": "kubectl-client-side-apply", "operation": "Update",
                                           "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
    [blocked] = make_plan([want], [copy_]).changes
    assert blocked.action == Action.BLOCKED and blocked.not_ours and "never applied it (a copy?)" in blocked.reason
    [adopted] = make_plan([want], [copy_], ADOPT).changes
    assert adopted.action != Action.BLOCKED


def test_an_object_whose_existence_could_not_be_read_is_not_created_over() -> None:
    cm, want = configmap(), workspace()
    plan = make_plan([cm, want], [], unverified={key_of(want.ref): "Forbidden: get workspaces"})
    assert {c.action for c in plan.changes} == {Action.BLOCKED}
    assert "could not check whether Workspace/ml/phi already exists (Forbidden" in \
        {c.ref.kind: c for c in plan.changes}["Workspace"].reason


def test_adopting_something_different_is_blocked_or_replaced_per_policy() -> None:
    want = workspace()
    different = _unowned(want, inference={"preset": {"name": "mistral-7b-instruct"}, "config": "phi-inference-config"})
    [blocked] = make_plan([want], [different], ADOPT).changes
    assert blocked.action == Action.BLOCKED and "not managed by gitops-kaito" in blocked.reason
    assert blocked.immutable
    [replaced] = make_plan([want], [different], PlanPolicy(replace_policy="auto",
                                                          adopt_allowed=ADOPT.adopt_allowed)).changes
    assert replaced.action == Action.REPLACE and "delete it and create ours" in replaced.reason


# -- drift: report ---------------------------------------------------------------------------------------------

REPORT = PlanPolicy(drift="report")


def _hand_edited_configmap(manager: str = "kubectl-edit") -> Manifest:
    live = served(configmap())
    live["data"]["inference_config.yaml"] = "vllm:\n  max-model-len: 1\n"
    live["metadata"]["managedFields"].append({"manager": manager, "operation": "Update", "fieldsType": "FieldsV1",
                                              "fieldsV1": {"f:data": {"f:inference_config.yaml": {}}}})
    return live


def test_drift_alone_under_report_is_reported_and_not_written() -> None:
    plan = make_plan([configmap(rev=REV2)], [_hand_edited_configmap()], REPORT)
    (change,) = plan.changes
    assert (change.action, change.drift, change.drift_reported) == (Action.NOOP, True, True)
    assert change.fields == ("data.inference_config.yaml",)
    assert change.drift_by == ("kubectl-edit",)
    assert change.reason == ("drift reported, not corrected (drift: report): data.inference_config.yaml changed in "
                             "the cluster by kubectl-edit")
    assert list(change.patch) == [{"op": "replace", "path": "/data/inference_config.yaml",
                                   "value": "vllm:\n  max-model-len: 4096\n"}]  # what a correction would do
    assert not change.writes and not plan.has_changes and not plan.pending
    assert plan.drift_reported == (change,)
    counts = plan.counts()
    assert (counts["driftReported"], counts["drift"], counts["noop"]) == (1, 0, 1)
    assert reported_drift_counts(plan) == {"ConfigMap": 1}


def test_the_same_drift_under_correct_is_an_update() -> None:
    plan = make_plan([configmap(rev=REV2)], [_hand_edited_configmap()])
    (change,) = plan.changes
    assert (change.action, change.drift, change.drift_reported) == (Action.UPDATE, True, False)
    assert change.drift_by == ("kubectl-edit",)
    assert plan.counts()["drift"] == 1 and plan.counts()["driftReported"] == 0 and not plan.drift_reported
    assert reported_drift_counts(plan) == {}


def test_a_change_of_desired_state_under_report_is_applied_and_overwrites_the_drift() -> None:
    live = _hand_edited_configmap()
    plan = make_plan([configmap(max_len=8192, rev=REV2)], [live], REPORT)  # the model file changed too
    (change,) = plan.changes
    assert (change.action, change.drift, change.drift_reported) == (Action.UPDATE, True, False)
    assert change.reason == "changed in the repository; applying it also overwrites fields changed in the cluster"
    assert plan.has_changes and not plan.drift_reported


def test_a_change_of_desired_state_without_drift_under_report_is_a_plain_update() -> None:
    plan = make_plan([configmap(max_len=8192, rev=REV2)], [served(configmap())], REPORT)
    (change,) = plan.changes
    assert (change.action, change.drift, change.reason) == (Action.UPDATE, False, "changed in the repository")


def test_an_object_applied_before_digests_reports_drift_by_its_revision() -> None:
    live = _hand_edited_configmap()
    del live["metadata"]["annotations"][ANNOTATION_DIGEST]
    same = make_plan([configmap(rev=REV1)], [copy.deepcopy(live)], REPORT).changes[0]
    assert same.drift_reported
    newer = make_plan([configmap(rev=REV2)], [live], REPORT).changes[0]  # cannot tell: apply it
    assert newer.action == Action.UPDATE and newer.drift


@pytest.mark.parametrize(("repo", "report_ids", "correct_ids", "reported"), [
    ("correct", {"ml.phi"}, set(), True),  # the model's annotation says report
    ("report", set(), {"ml.phi"}, False),  # the model's annotation says correct
    ("report", set(), {"ml.other"}, True),  # another model's annotation does not count
    ("correct", set(), set(), False),
])
def test_the_model_annotation_overrides_the_repository_default(repo: str, report_ids: set[str],
                                                                correct_ids: set[str], reported: bool) -> None:
    policy = PlanPolicy(drift=repo, drift_report=frozenset(report_ids), drift_correct=frozenset(correct_ids))
    (change,) = make_plan([configmap(rev=REV2)], [_hand_edited_configmap()], policy).changes
    assert change.drift_reported is reported
    assert change.action == (Action.NOOP if reported else Action.UPDATE)


def test_the_drift_annotation_on_the_object_counts_and_switching_it_is_not_a_change() -> None:
    want = workspace(rev=REV2)
    want.manifest["metadata"]["annotations"][ANNOTATION_DRIFT] = "report"
    live = served(workspace(rev=REV1))  # applied before the annotation was added
    assert live["metadata"]["annotations"][ANNOTATION_DIGEST] == want.normalised.digest
    assert not make_plan([want], [copy.deepcopy(live)]).has_changes  # the policy itself is never written alone
    live["inference"]["config"] = "hand-made"
    (change,) = make_plan([want], [live]).changes  # no policy sets: the Workspace's own annotation decides
    assert change.drift_reported and change.fields == ("inference.config",)
    assert change.drift_by == ()  # the test's server records no other manager for it


def test_an_immutable_field_drifted_under_report_is_reported_not_blocked() -> None:
    live = served(workspace(count=1))
    live["resource"]["count"] = 3
    reported = make_plan([workspace(count=1, rev=REV2)], [copy.deepcopy(live)], REPORT).changes[0]
    assert reported.action == Action.NOOP and reported.drift_reported
    assert reported.immutable == ("resource.count",) and reported.fields == ("resource.count",)
    blocked = make_plan([workspace(count=1, rev=REV2)], [live]).changes[0]
    assert blocked.action == Action.BLOCKED and blocked.drift  # correct mode: as before


def test_drift_fields_read_like_paths() -> None:
    assert pointer_to_field("/resource/count") == "resource.count"
    assert pointer_to_field("/inference/adapters/0/source/image") == "inference.adapters[0].source.image"
    assert pointer_to_field("/metadata/annotations/gitops.kaito.sh~1source-path") == (
        "metadata.annotations.gitops.kaito.sh/source-path")
    assert pointer_to_field("") == "(the whole object)"


def test_drift_managers_are_the_others_that_own_a_differing_field() -> None:
    live = _hand_edited_configmap("kubectl-edit")
    live["metadata"]["managedFields"].append({"manager": "kubectl-label", "operation": "Update",
                                              "fieldsV1": {"f:metadata": {"f:labels": {"f:team": {}}}}})
    patch = [{"op": "replace", "path": "/data/inference_config.yaml", "value": "x"}]
    assert drift_managers(live, patch) == ("kubectl-edit",)
    assert drift_managers(served(configmap()), patch) == ()  # only our own manager


def _with_spec(obj: DesiredObject, **spec: Any) -> DesiredObject:
    manifest = copy.deepcopy(obj.manifest)
    manifest["spec"].update(spec)
    return DesiredObject(manifest, obj.model_id, obj.wave)


def test_a_nodeclaim_made_before_expire_after_never_is_not_replaced_nor_drift() -> None:
    """NodeClaims created without expireAfter carry Karpenter's default (720h); rendering Never now must not replace
    (drain) the GPU node, block the model, or write: the setting applies to NodeClaims created from then on."""
    old = served(nodeclaim())
    old["spec"]["expireAfter"] = "720h"  # the CRD default the server filled in, owned by nobody
    for policy in (PlanPolicy(), PlanPolicy(replace_policy="auto")):
        plan = make_plan([_with_spec(nodeclaim(), expireAfter="Never", terminationGracePeriod="1h")], [old], policy)
        [change] = plan.changes
        assert change.action == Action.NOOP and not change.drift, change.reason
    # a NodeClaim applied with Never keeps Never when the setting changes back: still nothing to write
    applied = served(_with_spec(nodeclaim(), expireAfter="Never"))
    plan = make_plan([_with_spec(nodeclaim(), expireAfter="720h")], [applied])
    assert [c.action for c in plan.changes] == [Action.NOOP]
    # any other change of the spec still replaces, and the new NodeClaim gets the setting
    plan = make_plan([_with_spec(nodeclaim(sku="Standard_NC48ads_A100_v4"), expireAfter="Never")], [old],
                     PlanPolicy(replace_policy="auto"))
    [change] = plan.changes
    assert change.action == Action.REPLACE and change.immutable == ("spec",)
    assert change.desired is not None and change.desired["spec"]["expireAfter"] == "Never"
