"""apply_plan's decisions with an in-memory adapter: wave order, node gating, replace waits, failure isolation."""

from __future__ import annotations

import copy
from typing import Any

from gitops_kaito.adapters.kube import KubeError
from gitops_kaito.core.plan import PlanPolicy, make_plan
from gitops_kaito.model.objects import DesiredObject, Manifest, ObjectRef, Wave
from gitops_kaito.model.ownership import model_id, owner_labels
from gitops_kaito.reconcile.apply import ApplyOptions, apply_plan


class FakeKube:
    """Stores what is applied; objects listed in `sticky` survive deletion (a finalizer nobody removes)."""

    def __init__(self, fail: dict[str, KubeError] | None = None, sticky: frozenset[str] = frozenset()) -> None:
        self.objects: dict[str, Manifest] = {}
        self.calls: list[str] = []
        self.fail = fail or {}
        self.sticky = sticky

    def apply(self, manifest: Manifest, *, dry_run: bool = False, force: bool = True) -> Manifest:
        ref = str(ObjectRef.of(manifest))
        self.calls.append(f"apply {ref}")
        if ref in self.fail:
            raise self.fail[ref]
        if not dry_run:
            self.objects[ref] = copy.deepcopy(manifest)
        return manifest

    def delete(self, ref: ObjectRef, precondition: tuple[str, str] | None = None) -> bool:
        self.calls.append(f"delete {ref}")
        if str(ref) in self.sticky:
            return True
        return self.objects.pop(str(ref), None) is not None

    def get(self, ref: ObjectRef) -> Manifest | None:
        return self.objects.get(str(ref))


def obj(kind: str, name: str, model: str, wave: Wave, **body: Any) -> DesiredObject:
    api = {"NodeClaim": "karpenter.sh/v1", "Workspace": "kaito.sh/v1beta1"}.get(kind, "v1")
    meta: dict[str, Any] = {"name": name, "labels": owner_labels("ml", model)}
    if kind != "NodeClaim":
        meta["namespace"] = "ml"
    return DesiredObject({"apiVersion": api, "kind": kind, "metadata": meta, **body}, model_id("ml", model), wave)


def nodeclaim_model(model: str = "phi") -> list[DesiredObject]:
    return [obj("NodeClaim", f"{model}-0", model, Wave.NODES, spec={"nodeClassRef": {"name": "default"}}),
            obj("Workspace", model, model, Wave.WORKLOAD, resource={"labelSelector": {"matchLabels": {"a": "b"}}})]


def test_a_workspace_waits_for_its_own_nodeclaims() -> None:
    kube = FakeKube()
    desired = [*nodeclaim_model(), obj("Workspace", "qwen", "qwen", Wave.WORKLOAD, resource={"instanceType": "x"})]
    result = apply_plan(make_plan(desired, []), kube)
    assert kube.calls == ["apply NodeClaim/phi-0", "apply Workspace/ml/qwen"]
    states = {o.model_id: (o.state, o.message) for o in result.outcomes}
    assert states["ml.phi"] == ("Provisioning", "Workspace/ml/phi: waiting for nodes: 0/1 NodeClaims ready (just created)")
    assert states["ml.qwen"][0] == "Applied"

    live = list(kube.objects.values())
    assert apply_plan(make_plan(desired, live), kube).outcomes[0].state == "Provisioning"  # not Ready yet
    live[0]["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    result = apply_plan(make_plan(desired, live), kube)
    assert kube.calls[-1] == "apply Workspace/ml/phi" and result.created == 1


def test_a_failure_skips_the_rest_of_that_model_only() -> None:
    desired = [obj("ConfigMap", "phi-cfg", "phi", Wave.CONFIG, data={"a": "1"}),
               obj("Workspace", "phi", "phi", Wave.WORKLOAD, resource={}),
               obj("Workspace", "qwen", "qwen", Wave.WORKLOAD, resource={})]
    kube = FakeKube(fail={"ConfigMap/ml/phi-cfg": KubeError(422, "Invalid", "data: too long")})
    result = apply_plan(make_plan(desired, []), kube)
    assert kube.calls == ["apply ConfigMap/ml/phi-cfg", "apply Workspace/ml/qwen"]
    phi = result.outcomes[0]
    assert (phi.state, phi.message) == ("Failed", "ConfigMap/ml/phi-cfg: Invalid: data: too long")
    assert [o.result for o in phi.objects] == ["failed", "skipped"]
    assert (result.created, result.failed) == (1, 1)


def test_a_replace_recreates_once_the_old_object_is_gone_or_waits_for_a_later_pass() -> None:
    old = obj("Workspace", "phi", "phi", Wave.WORKLOAD, inference={"preset": {"name": "a"}})
    new = obj("Workspace", "phi", "phi", Wave.WORKLOAD, inference={"preset": {"name": "b"}})
    auto = PlanPolicy(replace_policy="auto")
    kube = FakeKube()
    kube.apply(old.manifest)
    result = apply_plan(make_plan([new], [kube.objects["Workspace/ml/phi"]], auto), kube)
    assert kube.calls[1:] == ["delete Workspace/ml/phi", "apply Workspace/ml/phi"] and result.replaced == 1
    assert kube.objects["Workspace/ml/phi"]["inference"]["preset"]["name"] == "b"

    stuck = FakeKube(sticky=frozenset({"Workspace/ml/phi"}))
    stuck.apply(old.manifest)
    clock = iter(range(100))
    result = apply_plan(make_plan([new], [stuck.objects["Workspace/ml/phi"]], auto), stuck,
                        ApplyOptions(replace_wait_s=3, poll_s=0), clock=lambda: float(next(clock)), sleep=lambda s: None)
    (outcome,) = result.outcomes
    assert outcome.state == "Replacing" and "created again on a later pass" in outcome.message
    assert stuck.calls[-1] == "delete Workspace/ml/phi" and result.replaced == 0


def test_dry_run_writes_nothing_and_deletes_nothing() -> None:
    kube = FakeKube()
    stale = obj("ConfigMap", "old", "gone", Wave.CONFIG, data={})
    kube.apply(stale.manifest)
    desired = [obj("Workspace", "phi", "phi", Wave.WORKLOAD, resource={})]
    before = dict(kube.objects)
    result = apply_plan(make_plan(desired, list(kube.objects.values()), PlanPolicy(allow_all=True)), kube,
                        ApplyOptions(dry_run=True))
    assert kube.objects == before
    assert {o.model_id: o.state for o in result.outcomes} == {"ml.gone": "Pruned", "ml.phi": "Applied"}
    assert all(o.result == "dry-run" for o in result.objects)
