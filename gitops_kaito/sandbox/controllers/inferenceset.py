"""Simulated KAITO InferenceSet controller: child Workspaces named, labelled and owned the way KAITO v0.12.0 makes
them, scaled to spec.replicas (the scale subresource's target), and the set's status (replicas, readyReplicas,
selector, InferenceSetReady).

After `pkg/inferenceset/inferenceset_controller.go` and `pkg/utils/inferenceset/inferenceset.go` at v0.12.0:
- Children: generateName `<set>-`, a controller ownerReference to the set, labels = spec.template.metadata.labels
  plus `inferenceset.kaito.sh/created-by: <set>` (KAITO finds them by this label, not by ownerReference),
  annotations only from spec.template.metadata.annotations (plus kaito.sh/disable-benchmark when the set has it),
  resource.labelSelector = spec.labelSelector, resource.instanceType from the template unless KAITO runs BYO,
  inference deep-copied. Each child is then an ordinary Workspace for the simulated KAITO workspace controller.
- Scale-down deletes children that are not Ready first, then the newest.
- Template edits are not rolled onto existing children; only template labels are added to them.
- status.replicas is the desired count; readyReplicas counts children with WorkspaceSucceeded=True;
  status.selector is `inferenceset.kaito.sh/created-by=<set>`; InferenceSetReady (observedGeneration) is True when
  readyReplicas == replicas (0 included).
- Deletion: the finalizer inferenceset.finalizer.kaito.sh; children are deleted, and the finalizer dropped without
  waiting for them (their own finalizers release their nodes).

Approximations: no ControllerRevision, no expectations (a create that fails is retried on the next pass), no
Gateway API Inference Extension, no autoUpgrade; annotations inferenceset.kaito.io/hash and /revision are kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import partial
from typing import Any

from gitops_kaito.sandbox.controllers import conditions as c
from gitops_kaito.sandbox.controllers.base import Controller
from gitops_kaito.sandbox.controllers.failures import FailureBook
from gitops_kaito.sandbox.controllers.timing import Timing

GROUP = "kaito.sh"
VERSION = "v1beta1"
PLURAL = "inferencesets"
FINALIZER = "inferenceset.finalizer.kaito.sh"
CREATED_BY = "inferenceset.kaito.sh/created-by"
ANNOTATION_HASH = "inferenceset.kaito.io/hash"
ANNOTATION_REVISION = "inferenceset.kaito.io/revision"
DISABLE_BENCHMARK = "kaito.sh/disable-benchmark"
READY = "InferenceSetReady"


def child_manifest(iset: dict[str, Any], byo: bool) -> dict[str, Any]:
    """A child Workspace as KAITO's NewWorkspaceForInferenceSet builds it."""
    meta = iset["metadata"]
    spec = iset.get("spec") or {}
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    labels = {str(k): str(v) for k, v in (tmeta.get("labels") or {}).items()}
    labels[CREATED_BY] = meta["name"]
    annotations = {str(k): str(v) for k, v in (tmeta.get("annotations") or {}).items()}
    if (meta.get("annotations") or {}).get(DISABLE_BENCHMARK) == "true":
        annotations[DISABLE_BENCHMARK] = "true"
    resource: dict[str, Any] = {"labelSelector": copy.deepcopy(spec.get("labelSelector") or {})}
    tres = template.get("resource") or {}
    if tres.get("instanceType") and not byo:
        resource["instanceType"] = tres["instanceType"]
    if tres.get("partition"):
        resource["partition"] = copy.deepcopy(tres["partition"])
    child_meta: dict[str, Any] = {
        "generateName": f"{meta['name']}-", "namespace": meta["namespace"], "labels": labels,
        "ownerReferences": [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceSet", "name": meta["name"],
                             "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}]}
    if annotations:
        child_meta["annotations"] = annotations
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workspace", "metadata": child_meta, "resource": resource,
            "inference": copy.deepcopy(template.get("inference") or {})}


def child_ready(ws: dict[str, Any]) -> bool:
    return c.is_true((ws.get("status") or {}).get("conditions"), "WorkspaceSucceeded")


class InferenceSetController(Controller):
    """KAITO's InferenceSet controller (enableInferenceSetController, on by default in v0.12.0)."""

    name = "inferenceset"

    def __init__(self, url: str, timing: Timing, failures: FailureBook, node_provisioning: str = "nap") -> None:
        super().__init__(url, timing, failures)
        self.byo = node_provisioning == "byo"

    def watched(self) -> list[Any]:
        return [partial(self.kube.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL),
                partial(self.kube.custom.list_cluster_custom_object, GROUP, VERSION, "workspaces",
                        label_selector=CREATED_BY)]

    def reconcile(self) -> float | None:
        sets = self.kube.list_custom(GROUP, VERSION, PLURAL)
        if not sets:
            return None
        children = self.kube.list_custom(GROUP, VERSION, "workspaces", label_selector=CREATED_BY) or []
        wanted: float | None = None
        for iset in sets:
            meta = iset["metadata"]
            mine = [w for w in children if (w["metadata"].get("labels") or {}).get(CREATED_BY) == meta["name"]
                    and w["metadata"].get("namespace") == meta["namespace"]]
            delay = self._reconcile(iset, mine)
            if delay is not None:
                wanted = delay if wanted is None else min(wanted, delay)
        return wanted

    def _patch(self, iset: dict[str, Any], patch: dict[str, Any], status: bool = False) -> None:
        meta = iset["metadata"]
        self.kube.patch_custom(GROUP, VERSION, PLURAL, meta["name"], patch, namespace=meta["namespace"],
                               status=status)

    def _reconcile(self, iset: dict[str, Any], children: list[dict[str, Any]]) -> float | None:
        meta = iset["metadata"]
        ns = meta["namespace"]
        alive = [w for w in children if not w["metadata"].get("deletionTimestamp")]
        if meta.get("deletionTimestamp"):
            for w in alive:
                self.kube.delete_custom(GROUP, VERSION, "workspaces", w["metadata"]["name"], namespace=ns)
            rest = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
            if FINALIZER in (meta.get("finalizers") or []):
                self._patch(iset, {"metadata": {"finalizers": rest or None}})
            return None
        if self._ensure_metadata(iset):
            return 0.0
        spec = iset.get("spec") or {}
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        if len(alive) < desired:
            for _ in range(desired - len(alive)):
                self.kube.create_custom(GROUP, VERSION, "workspaces", child_manifest(iset, self.byo), namespace=ns)
            return 0.0
        if len(alive) > desired:
            # not-Ready children go first, then the newest; Ready ones never below the desired count
            order = sorted(alive, key=lambda w: (child_ready(w), w["metadata"].get("creationTimestamp") or "",
                                                 w["metadata"]["name"]))
            for w in order[:len(alive) - desired]:
                self.kube.delete_custom(GROUP, VERSION, "workspaces", w["metadata"]["name"], namespace=ns)
            return 0.0
        labels = {str(k): str(v) for k, v in
                  (((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}).items()}
        for w in alive:  # the one template edit KAITO rolls onto existing children
            have = w["metadata"].get("labels") or {}
            missing = {k: v for k, v in labels.items() if have.get(k) != v}
            if missing:
                self.kube.patch_custom(GROUP, VERSION, "workspaces", w["metadata"]["name"],
                                       {"metadata": {"labels": missing}}, namespace=ns)
        ready = sum(1 for w in alive if child_ready(w))
        gen = meta.get("generation")
        if ready == desired:
            condition = c.cond(READY, True, "inferencesetReady", "inferenceset is ready", gen)
        else:
            condition = c.cond(READY, False, "inferencesetNotReady",
                               f"inferenceset is not ready, {ready}/{desired} replicas are ready", gen)
        old = iset.get("status") or {}
        status = {"replicas": desired, "readyReplicas": ready, "selector": f"{CREATED_BY}={meta['name']}"}
        if all(old.get(k) == v for k, v in status.items()) and c.same(old.get("conditions"), [condition]):
            return None
        self._patch(iset, {"status": {**status, "conditions": c.merge(old.get("conditions"), [condition])}},
                    status=True)
        return None

    def _ensure_metadata(self, iset: dict[str, Any]) -> bool:
        meta = iset["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        annotations = meta.get("annotations") or {}
        digest = hashlib.sha256(json.dumps(iset.get("spec") or {}, sort_keys=True).encode()).hexdigest()
        patch: dict[str, Any] = {}
        if FINALIZER not in finalizers:
            patch["finalizers"] = [*finalizers, FINALIZER]
        if annotations.get(ANNOTATION_HASH) != digest:
            revision = int(annotations.get(ANNOTATION_REVISION, "0") or "0") + 1
            patch["annotations"] = {ANNOTATION_HASH: digest, ANNOTATION_REVISION: str(revision)}
        if patch:
            self._patch(iset, {"metadata": patch})
        return bool(patch)
