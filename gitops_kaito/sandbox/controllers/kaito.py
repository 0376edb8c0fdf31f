"""Simulated KAITO workspace controller: NodeClaims (auto-provisioning), a NodePool per Workspace (KAITO's karpenter
mode: Karpenter makes its NodeClaims) or matching GPU Nodes (BYO), Services,
and the Workspace conditions in KAITO's order (KAITO v0.12.0: `pkg/workspace/controllers/workspace_controller.go`, `pkg/utils/nodeclaim/nodeclaim.go`, `pkg/workspace/manifests/manifests.go`); Workspaces written
through kaito.sh/v1alpha1 are handled as legacy KAITO (<= v0.4.1) handled them, with Machines.

Legacy KAITO (v0.1.0 to v0.4.1, before kaito-project/kaito#806: `pkg/machine/machine.go`), for kaito.sh/v1alpha1:
- Nodes: resource.count of them (no estimator, no status.targetNodeCount). Ready, not deleting Nodes that
  match resource.labelSelector.matchLabels and carry node.kubernetes.io/instance-type = resource.instanceType
  are used first (preferredNodes, then the previous workerNodes, then nodes with kaito.sh/machine-type, then by
  name), so Machines made by someone else (gitops-kaito's machine mode) are used and none is created; only the
  shortfall becomes karpenter.sh/v1alpha5 Machines of the appendix's shape, and nothing more is created while
  one of them is not Ready. They are deleted with the Workspace (finalizer).
- Conditions: MachineReady (in place of NodeClaimReady; no NodesReady), ResourceReady, InferenceReady (or
  JobStarted), WorkspaceSucceeded, with observedGeneration; no status.state. status.workerNodes lists the nodes
  in use.

Approximations, stated openly:
- Which KAITO a Workspace gets is decided per object: legacy when every managedFields entry owning its spec
  (resource, inference, tuning) was written through kaito.sh/v1alpha1 (one cluster runs one KAITO; the
  sandbox serves both versions of one CRD). A v1alpha1 Workspace in a nap or byo sandbox is legacy alike:
  legacy KAITO had no BYO mode.
- Legacy reasons not documented upstream (KAITO's workspace controller before #806, v0.3): MachineReady Unknown
  CreateMachinePending "creating N machines" while its Machines come up, True installNodePluginsSuccess once
  enough nodes are in use (also when none had to be created, as legacy KAITO did); a Machine that fails to
  launch gives MachineReady=False checkMachineStatusFailed, ResourceReady=False workspaceResourceStatusFailed
  and WorkspaceSucceeded=False workspaceFailed with the Machine's message, at once (legacy KAITO waited up to
  240 s). Nodes without nvidia.com/gpu capacity give MachineReady=False NodePluginsNotReady (the FACTS 5.5
  reason; legacy KAITO waited 60 s, labelled the node accelerator=nvidia and then failed ResourceReady).
  While waiting, ResourceReady, InferenceReady and WorkspaceSucceeded show the pending reasons of FACTS 5.5
  (legacy KAITO blocked in its reconcile and wrote nothing until it was done); an injected image-pull
  failure shows as InferenceReady=False ImagePullError.
- Admission is the emulator's (sandbox/controllers/kaito_webhook.py: KAITO's webhook, legacy rules for v1alpha1): what
  it refuses is never stored, so the controller never sees it. observedGeneration is always
  the current generation (legacy KAITO skipped a condition write when status, reason and message were
  unchanged, which can leave an older observedGeneration after a spec change); injected node loss (chaos)
  strikes only Workspaces whose state is Ready, so never a legacy one.
- BYO nodes that go away after the Workspace was admitted leave NodesReady=False NodeNotReady (KAITO's own
  progress reason), never a webhook message: admission runs only on create and update.
- A preset name outside the catalog (an arbitrary Hugging Face id org/name, which KAITO v0.12.0 accepts and
  generates from Hugging Face) is admitted like any preset and treated as a model of unknown size:
  status.targetNodeCount is resource.count, else 1 (real KAITO estimates from the model's Hugging Face metadata,
  which the sandbox never fetches), its NodeClaims and Machines request 1024Gi of storage (KAITO's value for an
  unknown model), and the model server serves it as the lowercase repository name (gpus.py).
- No StatefulSet or pods: InferenceReady follows ResourceReady after Timing.model_load_s, unless an
  image-pull failure is injected (reason ImagePullError).
- Conditions turn True one per status write, in the order NodeClaimReady, NodesReady, ResourceReady,
  InferenceReady, WorkspaceSucceeded (legacy: MachineReady, ResourceReady, InferenceReady, WorkspaceSucceeded),
  so a watcher sees each step; KAITO may set several in one update.
- Services are deleted by the controller on Workspace deletion (no ownerReference garbage collector here).
- Tuning Workspaces run as a batch/v1 Job per revision, Pending -> Running -> Succeeded or Failed
  (controllers/tuning.py); legacy ones get no state.
- Services are the same for legacy Workspaces (legacy KAITO made the headless one only for distributed models).
"""

from __future__ import annotations

import hashlib
import json
import time
from functools import partial
from typing import Any

import yaml

from gitops_kaito.repo.yamlsource import FAST_LOADER
from gitops_kaito.sandbox.controllers import conditions as c
from gitops_kaito.sandbox.controllers import tuning as tuning_runs
from gitops_kaito.sandbox.controllers.base import Controller
from gitops_kaito.sandbox.controllers.failures import IMAGE_PULL, TUNING_FAILED, FailureBook
from gitops_kaito.sandbox.controllers.gpus import disk_request, estimate_nodes
from gitops_kaito.sandbox.controllers.karpenter import MACHINE
from gitops_kaito.sandbox.controllers.timing import Timing

GROUP = "kaito.sh"
VERSION = "v1beta1"
LEGACY_VERSION = "v1alpha1"
PLURAL = "workspaces"
FINALIZER = "workspace.finalizer.kaito.sh"
ANNOTATION_HASH = "workspace.kaito.io/hash"
ANNOTATION_REVISION = "workspace.kaito.io/revision"
LABEL_WORKSPACE = "kaito.sh/workspace"
LABEL_WORKSPACE_NS = "kaito.sh/workspacenamespace"
LABEL_NODEPOOL = "karpenter.sh/nodepool"
LABEL_PROVISIONER = "karpenter.sh/provisioner-name"
LABEL_MACHINE_TYPE = "kaito.sh/machine-type"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
MACHINE_VERSION, MACHINES = MACHINE.version, MACHINE.plural  # the simulated Karpenter's Machine API
SPEC_FIELDS = frozenset({"f:resource", "f:inference", "f:tuning"})
RESERVED_KEYS = frozenset({
    "kaito.sh/workspace", "kaito.sh/workspacenamespace", "kaito.sh/ragengine", "kaito.sh/ragenginenamespace",
    "karpenter.kaito.sh/workspace-name", "karpenter.kaito.sh/workspace-namespace",
    "karpenter.kaito.sh/inferenceset", "karpenter.kaito.sh/inferenceset-namespace",
})
# KAITO's karpenter node-provisioner mode (`pkg/nodeprovision/karpenter/nodepool.go` at v0.12.0)
KARPENTER_MANAGED_BY = "karpenter.kaito.sh/managed-by"
KARPENTER_WS_NAME = "karpenter.kaito.sh/workspace-name"
KARPENTER_WS_NS = "karpenter.kaito.sh/workspace-namespace"
KARPENTER_SET = "karpenter.kaito.sh/inferenceset"
KARPENTER_SET_NS = "karpenter.kaito.sh/inferenceset-namespace"
CREATED_BY_LABEL = "inferenceset.kaito.sh/created-by"
KARPENTER_STEPS = ("Launched", "Registered", "Initialized")
MACHINE_STEPS = MACHINE.steps  # the conditions the simulated Karpenter sets on a Machine
BASE_IMAGE = "mcr.microsoft.com/aks/kaito/kaito-base:0.5.0"

# Condition types, in the order KAITO reports them.
MACHINE_READY = "MachineReady"  # legacy KAITO's, where v0.12 has NodeClaimReady
NODECLAIM_READY = "NodeClaimReady"
NODES_READY = "NodesReady"
RESOURCE_READY = "ResourceReady"
INFERENCE_READY = "InferenceReady"
JOB_STARTED = "JobStarted"
WORKSPACE_SUCCEEDED = "WorkspaceSucceeded"


def workspace_hash(ws: dict[str, Any]) -> str:
    spec = {k: ws.get(k) for k in ("resource", "inference", "tuning")}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def match_labels(ws: dict[str, Any]) -> dict[str, str]:
    """labelSelector.matchLabels plus single-value In expressions, minus KAITO's reserved keys."""
    sel = ws.get("resource", {}).get("labelSelector", {}) or {}
    out = {str(k): str(v) for k, v in (sel.get("matchLabels") or {}).items()}
    for expr in sel.get("matchExpressions") or []:
        if expr.get("operator") == "In" and len(expr.get("values") or []) == 1:
            out[str(expr["key"])] = str(expr["values"][0])
    return {k: v for k, v in out.items() if k not in RESERVED_KEYS}


def selector_matches(ws: dict[str, Any], labels: dict[str, str]) -> bool:
    sel = ws.get("resource", {}).get("labelSelector", {}) or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def node_ready(node: dict[str, Any]) -> bool:
    if node.get("metadata", {}).get("deletionTimestamp"):
        return False
    return c.is_true(node.get("status", {}).get("conditions"), "Ready")


def gpu_capacity(node: dict[str, Any]) -> int:
    try:
        return int(str(node.get("status", {}).get("capacity", {}).get("nvidia.com/gpu", "0")))
    except ValueError:
        return 0


def nodeclaim_name(namespace: str, name: str) -> str:
    return "ws" + hashlib.sha256(f"{namespace}{name}{time.time_ns()}".encode()).hexdigest()[:9]


def is_legacy(ws: dict[str, Any]) -> bool:
    """Written through kaito.sh/v1alpha1: every managedFields entry that owns spec fields used that version.

    Objects are stored once and only relabelled between versions, so the write's version is what is left."""
    owners = [e for e in (ws.get("metadata") or {}).get("managedFields") or []
              if e.get("subresource") != "status" and SPEC_FIELDS & set(e.get("fieldsV1") or {})]
    return bool(owners) and all(e.get("apiVersion") == f"{GROUP}/{LEGACY_VERSION}" for e in owners)


def owned_by(obj: dict[str, Any], ws: dict[str, Any]) -> bool:
    """The NodeClaim / Machine / Node carries KAITO's labels for this Workspace."""
    labels = obj["metadata"].get("labels") or {}
    meta = ws["metadata"]
    return labels.get(LABEL_WORKSPACE) == meta["name"] and labels.get(LABEL_WORKSPACE_NS) == meta["namespace"]


def nodepool_name(namespace: str, name: str) -> str:
    """`<ns>-<name>`, cut to 53 characters + '-' + 9 hex of its sha256 past 63 (`pkg/nodeprovision/karpenter/
    nodepool.go` at v0.12.0)."""
    full = f"{namespace}-{name}"
    if len(full) <= 63:
        return full
    return f"{full[:53]}-{hashlib.sha256(full.encode()).hexdigest()[:9]}"


def nodepool_manifest(ws: dict[str, Any], target: int) -> dict[str, Any]:
    """The NodePool KAITO's karpenter provisioner makes for a Workspace (`pkg/nodeprovision/karpenter/nodepool.go`
    at v0.12.0): labels karpenter.kaito.sh/{managed-by,workspace-name,workspace-namespace} (+ the inferenceset pair
    for an InferenceSet's child), template labels = those + matchLabels, the instance-type requirement, the sku=gpu
    taint, consolidateAfter 0s, Drifted budget "1" ("0" for a set's child), no ownerReference."""
    meta = ws["metadata"]
    name, ns = meta["name"], meta["namespace"]
    parent = (meta.get("labels") or {}).get(CREATED_BY_LABEL)
    labels = {KARPENTER_MANAGED_BY: "kaito", KARPENTER_WS_NAME: name, KARPENTER_WS_NS: ns}
    if parent:
        labels.update({KARPENTER_SET: parent, KARPENTER_SET_NS: ns})
    instance_type = str((ws.get("resource") or {}).get("instanceType") or "")
    template_labels = {**{k: v for k, v in labels.items() if k != KARPENTER_MANAGED_BY}, **match_labels(ws)}
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool",
        "metadata": {"name": nodepool_name(ns, name), "labels": labels},
        "spec": {
            "replicas": target,
            "disruption": {"consolidateAfter": "0s",
                           "budgets": [{"nodes": "0" if parent else "1", "reasons": ["Drifted"]}]},
            "template": {
                "metadata": {"labels": template_labels},
                "spec": {"nodeClassRef": {"group": "karpenter.azure.com", "kind": "AKSNodeClass",
                                          "name": "image-family-ubuntu"},
                         "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                         "requirements": [
                             {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [instance_type]},
                             {"key": "karpenter.azure.com/placement-scope", "operator": "In",
                              "values": ["regional"]}]},
            },
        },
    }


def owned_by_pool(obj: dict[str, Any], ws: dict[str, Any]) -> bool:
    """A NodeClaim (or Node) of this Workspace's NodePool in karpenter mode."""
    labels = obj["metadata"].get("labels") or {}
    meta = ws["metadata"]
    return labels.get(KARPENTER_WS_NAME) == meta["name"] and labels.get(KARPENTER_WS_NS) == meta["namespace"]


def machine_ready(machine: dict[str, Any]) -> bool:
    return c.is_true(machine.get("status", {}).get("conditions"), "Ready")


def machine_failure(machine: dict[str, Any]) -> str | None:
    """The message of a Machine whose launch failed (gpu-provisioner reports it as MachineLaunched=False)."""
    for step in MACHINE_STEPS:
        cond = c.find(machine.get("status", {}).get("conditions"), step)
        if cond is not None and cond.get("status") == "False":
            return str(cond.get("message") or cond.get("reason") or f"{step} is False")
    return None


def legacy_nodes(ws: dict[str, Any], nodes: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Legacy KAITO's choice: Ready nodes matching matchLabels with the Workspace's instanceType (or preferred),
    ordered preferred, previous workerNodes, made for KAITO (kaito.sh/machine-type), name; at most count."""
    resource = ws.get("resource") or {}
    wanted = {str(k): str(v) for k, v in ((resource.get("labelSelector") or {}).get("matchLabels") or {}).items()}
    preferred = set(resource.get("preferredNodes") or [])
    previous = set((ws.get("status") or {}).get("workerNodes") or [])
    qualified = []
    for node in nodes:
        labels = node["metadata"].get("labels") or {}
        name = node["metadata"]["name"]
        if any(labels.get(k) != v for k, v in wanted.items()) or not node_ready(node):
            continue
        if name in preferred or labels.get(LABEL_INSTANCE_TYPE) == resource.get("instanceType"):
            qualified.append(node)
    qualified.sort(key=lambda n: (n["metadata"]["name"] not in preferred, n["metadata"]["name"] not in previous,
                                  LABEL_MACHINE_TYPE not in (n["metadata"].get("labels") or {}), n["metadata"]["name"]))
    return qualified[:count]


def service_manifests(ws: dict[str, Any], version: str = VERSION) -> list[dict[str, Any]]:
    meta = ws["metadata"]
    name, ns = meta["name"], meta["namespace"]
    owner = [{"apiVersion": f"{GROUP}/{version}", "kind": "Workspace", "name": name, "uid": meta.get("uid", ""),
              "controller": True, "blockOwnerDeletion": True}]
    labels = {LABEL_WORKSPACE: name}
    lb = (meta.get("annotations") or {}).get("kaito.sh/enablelb") == "True"
    ports = [{"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"},
             {"name": "ray", "port": 6379, "targetPort": 6379, "protocol": "TCP"},
             {"name": "dashboard", "port": 8265, "targetPort": 8265, "protocol": "TCP"}]
    runtime = (meta.get("annotations") or {}).get("kaito.sh/runtime", "vllm")
    if runtime == "vllm" and not lb:
        ports.append({"name": "kv-events", "port": 5557, "targetPort": 5557, "protocol": "TCP"})
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": owner},
        "spec": {"type": "LoadBalancer" if lb else "ClusterIP", "publishNotReadyAddresses": True,
                 "selector": {LABEL_WORKSPACE: name, "statefulset.kubernetes.io/pod-name": f"{name}-0"},
                 "ports": ports},
    }
    headless = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{name}-headless", "namespace": ns, "labels": labels, "ownerReferences": owner},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {LABEL_WORKSPACE: name},
                 "ports": [{"name": "torchrun", "port": 29500, "targetPort": 29500, "protocol": "TCP"}]},
    }
    return [service, headless]


class KaitoController(Controller):
    """The workspace controller, in NAP mode (creates NodeClaims) or BYO mode (uses matching Nodes); legacy KAITO
    (Machines) for Workspaces written through kaito.sh/v1alpha1."""

    name = "kaito"

    def __init__(self, url: str, timing: Timing, failures: FailureBook, node_provisioning: str = "nap",
                 cloud: str = "azure") -> None:
        super().__init__(url, timing, failures)
        if node_provisioning not in ("nap", "byo", "karpenter"):
            raise ValueError(f"node_provisioning must be nap, karpenter or byo, not {node_provisioning!r}")
        self.nap = node_provisioning in ("nap", "karpenter")  # both auto-provision: instanceType required
        self.karpenter = node_provisioning == "karpenter"  # a NodePool per Workspace instead of NodeClaims
        self.cloud = cloud
        self._last_write: dict[str, float] = {}
        self._jobs = tuning_runs.Jobs(self.api)

    def watched(self) -> list[Any]:
        return [partial(self.kube.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL),
                partial(self.kube.custom.list_cluster_custom_object, "karpenter.sh", "v1", "nodeclaims",
                        label_selector=LABEL_WORKSPACE),
                partial(self.kube.custom.list_cluster_custom_object, "karpenter.sh", MACHINE_VERSION, MACHINES,
                        label_selector=LABEL_WORKSPACE),
                self.kube.core.list_node]

    def reconcile(self) -> float | None:
        workspaces = self.kube.list_custom(GROUP, VERSION, PLURAL) or []
        claims = self.kube.list_custom("karpenter.sh", "v1", "nodeclaims",
                                       label_selector=KARPENTER_WS_NAME if self.karpenter else LABEL_WORKSPACE) or []
        nodes = self.kube.list_nodes()
        legacy = {id(ws) for ws in workspaces if is_legacy(ws)}
        # KAITO's own Machines are read only when a legacy Workspace exists: a v0.12-only pass stays as it was.
        machines = (self.kube.list_custom("karpenter.sh", MACHINE_VERSION, MACHINES, label_selector=LABEL_WORKSPACE)
                    or []) if legacy else []
        wanted: float | None = None
        for ws in workspaces:
            if id(ws) in legacy:
                delay = self._reconcile_legacy(ws, [m for m in machines if owned_by(m, ws)], nodes)
            else:
                mine = [cl for cl in claims if (owned_by_pool(cl, ws) if self.karpenter else owned_by(cl, ws))]
                delay = self._reconcile(ws, mine, nodes)
            if delay is not None:
                wanted = delay if wanted is None else min(wanted, delay)
        return wanted

    # writes ---------------------------------------------------------------------------------------
    def _patch(self, ws: dict[str, Any], patch: dict[str, Any], status: bool = False) -> None:
        meta = ws["metadata"]
        self.kube.patch_custom(GROUP, VERSION, PLURAL, meta["name"], patch, namespace=meta["namespace"], status=status)

    # one workspace ----------------------------------------------------------------------------------
    def _reconcile(self, ws: dict[str, Any], claims: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> float | None:
        meta = ws["metadata"]
        key = meta.get("uid") or f"{meta['namespace']}/{meta['name']}"
        if meta.get("deletionTimestamp"):
            return self._finalize(ws, claims)

        # 1-2: finalizer, then the ControllerRevision annotations.
        if self._ensure_metadata(ws):
            return 0.0

        status = ws.get("status") or {}
        # 3: the node count, decided once.
        if not status.get("targetNodeCount"):
            self._patch(ws, {"status": {"targetNodeCount": self._target(ws, nodes)}}, status=True)
            return 0.0
        target = int(status["targetNodeCount"])

        # 4: provision (NAP) and assess readiness.
        live_claims = [cl for cl in claims if not cl["metadata"].get("deletionTimestamp")]
        if self.karpenter:
            if self._ensure_nodepool(ws, target):
                return 0.0
        # Without an instanceType there is nothing to provision (the webhook refuses such a Workspace under NAP).
        elif self.nap and len(live_claims) < target and (ws.get("resource") or {}).get("instanceType"):
            for _ in range(target - len(live_claims)):
                self.kube.create_custom("karpenter.sh", "v1", "nodeclaims", self._nodeclaim(ws))
            return 0.0
        resource_conditions, resource_ready, ready_nodes = self._resources(ws, target, live_claims, nodes)

        # 6: Services once the nodes are ready; 7: a tuning Workspace's Job (a new one per revision).
        if resource_ready:
            self._ensure_services(ws)
        job = None
        if ws.get("tuning") and resource_ready:
            job, new_run = tuning_runs.ensure_job(self._jobs, ws)
            if new_run:
                self.forget(key, "tuning")
        new_status = self._progress(ws, key, resource_conditions, resource_ready, ready_nodes)
        delay = self._write_status(ws, key, new_status)
        if job is not None:
            tuning_runs.sync_job_status(self._jobs, job, str(new_status.get("state", "")))
        if delay is None and resource_ready:
            step, wait = ("tuning", self.timing.tuning_s) if ws.get("tuning") else ("model", self.timing.model_load_s)
            loading = self.waited(key, step, wait)
            return loading if loading > 0 else None
        return delay

    def _ensure_metadata(self, ws: dict[str, Any]) -> bool:
        """The finalizer and the ControllerRevision annotations; True when a patch was sent."""
        meta = ws["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        annotations = dict(meta.get("annotations") or {})
        digest = workspace_hash(ws)
        meta_patch: dict[str, Any] = {}
        if FINALIZER not in finalizers:
            meta_patch["finalizers"] = [*finalizers, FINALIZER]
        if annotations.get(ANNOTATION_HASH) != digest:
            revision = int(annotations.get(ANNOTATION_REVISION, "0") or "0") + 1
            meta_patch["annotations"] = {ANNOTATION_HASH: digest, ANNOTATION_REVISION: str(revision)}
        if meta_patch:
            self._patch(ws, {"metadata": meta_patch})
        return bool(meta_patch)

    # one legacy (kaito.sh/v1alpha1) workspace ---------------------------------------------------------
    def _reconcile_legacy(self, ws: dict[str, Any], machines: list[dict[str, Any]],
                          nodes: list[dict[str, Any]]) -> float | None:
        """Legacy KAITO's applyWorkspaceResource, level-triggered: wait for its pending Machines, use the Ready
        nodes that qualify, create Machines only for the shortfall; then Services and the inference conditions."""
        meta = ws["metadata"]
        key = meta.get("uid") or f"{meta['namespace']}/{meta['name']}"
        if meta.get("deletionTimestamp"):
            return self._finalize(ws, [], machines)
        if self._ensure_metadata(ws):
            return 0.0
        gen = meta.get("generation")
        count = max(int((ws.get("resource") or {}).get("count") or 1), 1)
        live = [m for m in machines if not m["metadata"].get("deletionTimestamp")]
        for m in live:
            failure = machine_failure(m)
            if failure:
                return self._write_status(ws, key, {"conditions": [
                    c.cond(MACHINE_READY, False, "checkMachineStatusFailed", failure, gen),
                    c.cond(RESOURCE_READY, False, "workspaceResourceStatusFailed", failure, gen),
                    c.cond(WORKSPACE_SUCCEEDED, False, "workspaceFailed", failure, gen)]}, force=True)
        pending = [m for m in live if not machine_ready(m)]
        selected = legacy_nodes(ws, nodes, count)
        missing = count - len(selected)
        if missing > 0 and not pending:
            for _ in range(missing):
                self.kube.create_custom("karpenter.sh", MACHINE_VERSION, MACHINES, self._machine(ws))
            return 0.0

        with_gpus = [n for n in selected if gpu_capacity(n) > 0]
        if pending or missing > 0:
            machine = c.cond(MACHINE_READY, "Unknown", "CreateMachinePending",
                             f"creating {len(pending) or missing} machines", gen)
        elif len(with_gpus) < count:
            machine = c.cond(MACHINE_READY, False, "NodePluginsNotReady",
                             "GPU device plugins are not ready on the nodes (no nvidia.com/gpu capacity)", gen)
        else:
            machine = c.cond(MACHINE_READY, True, "installNodePluginsSuccess",
                             "machines plugins have been installed successfully", gen)
        ready = machine["status"] == "True"
        resource = c.cond(RESOURCE_READY, ready, "workspaceResourceStatusSuccess" if ready
                          else "workspaceResourceStatusNotReady",
                          "workspace resource is ready" if ready else "workspace resource is not ready", gen)
        if ready:
            self._ensure_services(ws, LEGACY_VERSION)
        names = sorted(n["metadata"]["name"] for n in with_gpus)
        delay = self._write_status(ws, key, self._progress(ws, key, [machine, resource], ready, names, legacy=True))
        if delay is None and ready:
            loading = self.waited(key, "model", self.timing.model_load_s)
            return loading if loading > 0 else None
        return delay

    def _machine(self, ws: dict[str, Any]) -> dict[str, Any]:
        """A karpenter.sh/v1alpha5 Machine as legacy KAITO generated it (`pkg/machine/machine.go` before kaito-project/kaito#806)."""
        meta = ws["metadata"]
        name, ns = meta["name"], meta["namespace"]
        resource = ws.get("resource") or {}
        instance_type = str(resource.get("instanceType") or "")
        selector = {str(k): str(v) for k, v in ((resource.get("labelSelector") or {}).get("matchLabels") or {}).items()}
        machine_name = nodeclaim_name(ns, name)
        preset = ((ws.get("inference") or {}).get("preset") or {}).get("name")
        return {
            "apiVersion": f"karpenter.sh/{MACHINE_VERSION}", "kind": "Machine",
            "metadata": {"name": machine_name,
                         "labels": {LABEL_PROVISIONER: "default", LABEL_WORKSPACE: name, LABEL_WORKSPACE_NS: ns,
                                    **selector}},
            "spec": {"machineTemplateRef": {"name": machine_name},
                     "requirements": [
                         {"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": [instance_type]},
                         {"key": LABEL_PROVISIONER, "operator": "In", "values": ["default"]},
                         {"key": LABEL_MACHINE_TYPE, "operator": "In", "values": ["gpu"]},
                         {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                         {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}],
                     "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                     "resources": {"requests": {"storage": disk_request(preset)}}},
        }

    # one v1beta1 workspace, helpers -------------------------------------------------------------------
    def _target(self, ws: dict[str, Any], nodes: list[dict[str, Any]]) -> int:
        count = int(ws.get("resource", {}).get("count") or 1)
        preset = (ws.get("inference") or {}).get("preset") or {}
        runtime = (ws["metadata"].get("annotations") or {}).get("kaito.sh/runtime", "vllm")
        instance_type = ws.get("resource", {}).get("instanceType")
        if not self.nap or not preset.get("name") or runtime != "vllm" or not instance_type:
            return max(count, 1)
        return estimate_nodes(str(preset["name"]), str(instance_type), self._max_model_len(ws), count)

    def _max_model_len(self, ws: dict[str, Any]) -> int | None:
        config_name = (ws.get("inference") or {}).get("config")
        if not config_name:
            return None
        cm = self.kube.get_configmap(ws["metadata"]["namespace"], str(config_name))
        try:
            doc = yaml.load((cm or {}).get("data", {}).get("inference_config.yaml", "") or "", Loader=FAST_LOADER) or {}
            value = (doc.get("vllm") or {}).get("max-model-len")
            return int(value) if value is not None else None
        except (yaml.YAMLError, AttributeError, ValueError, TypeError):
            return None

    def _ensure_nodepool(self, ws: dict[str, Any], target: int) -> bool:
        """KAITO's karpenter mode: one NodePool per Workspace whose replicas only ever grow to the target (Karpenter
        then makes that many NodeClaims); True when it was created or grown."""
        pool = nodepool_manifest(ws, target)
        name = pool["metadata"]["name"]
        live = self.kube.get_custom("karpenter.sh", "v1", "nodepools", name)  # its own, by name: not a LIST of all
        if live is None:
            self.kube.create_custom("karpenter.sh", "v1", "nodepools", pool)
            return True
        if int((live.get("spec") or {}).get("replicas") or 0) < target:
            self.kube.patch_custom("karpenter.sh", "v1", "nodepools", name, {"spec": {"replicas": target}})
            return True
        return False

    def _nodeclaim(self, ws: dict[str, Any]) -> dict[str, Any]:
        meta = ws["metadata"]
        name, ns = meta["name"], meta["namespace"]
        instance_type = str(ws["resource"]["instanceType"])
        family = (meta.get("annotations") or {}).get("kaito.sh/node-image-family", "ubuntu").lower()
        labels = {LABEL_NODEPOOL: "kaito", LABEL_WORKSPACE: name, LABEL_WORKSPACE_NS: ns, **match_labels(ws)}
        requirements = [
            {"key": LABEL_NODEPOOL, "operator": "In", "values": ["kaito"]},
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": [instance_type]},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
        ]
        if self.cloud == "aws":
            node_class = {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"}
            requirements.append({"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]})
        else:
            node_class = {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}
            requirements.append({"key": "karpenter.azure.com/sku-name", "operator": "In", "values": [instance_type]})
        preset = ((ws.get("inference") or {}).get("preset") or {}).get("name")
        return {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": nodeclaim_name(ns, name), "labels": labels,
                         "annotations": {"karpenter.sh/do-not-disrupt": "true",
                                         "kaito.sh/node-image-family": family if family in ("ubuntu", "azurelinux")
                                         else "ubuntu"}},
            "spec": {"nodeClassRef": node_class,
                     "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                     "requirements": requirements,
                     "resources": {"requests": {"storage": disk_request(preset)}}},
        }

    def _resources(self, ws: dict[str, Any], target: int, claims: list[dict[str, Any]],
                   nodes: list[dict[str, Any]]) -> tuple[list[c.Condition], bool, list[str]]:
        gen = ws["metadata"].get("generation")
        out: list[c.Condition] = []
        claims_ready = True
        if self.nap:
            ready_claims = [cl for cl in claims if c.is_true(cl.get("status", {}).get("conditions"), "Ready")
                            or cl.get("status", {}).get("nodeName")]
            claims_ready = len(ready_claims) >= target
            if claims_ready:
                out.append(c.cond(NODECLAIM_READY, True, "NodeClaimsReady", "Enough NodeClaims are ready", gen))
            else:
                reason, message = "NodeClaimNotReady", (f"Ready NodeClaims are not enough (TargetNodeClaims: {target}, "
                                                         f"CurrentReadyNodeClaims: {len(ready_claims)})")
                first = self._first_provisioning_state(claims)
                if first:
                    reason, message = first
                out.append(c.cond(NODECLAIM_READY, False, reason, message, gen))
            instance_type = ws.get("resource", {}).get("instanceType")
            claim_nodes = {cl.get("status", {}).get("nodeName") for cl in claims}
            candidates = [n for n in nodes if n["metadata"]["name"] in claim_nodes or owned_by(n, ws)]
            usable = [n for n in candidates if node_ready(n)
                      and (n["metadata"].get("labels") or {}).get("node.kubernetes.io/instance-type") == instance_type
                      and (n["metadata"].get("labels") or {}).get("accelerator") == "nvidia"]
        else:
            candidates = [n for n in nodes if selector_matches(ws, n["metadata"].get("labels") or {})]
            usable = [n for n in candidates if node_ready(n)]
        with_gpus = [n for n in usable if gpu_capacity(n) > 0]
        nodes_ready = len(with_gpus) >= target
        if nodes_ready:
            out.append(c.cond(NODES_READY, True, "NodesReady", "Enough nodes are ready", gen))
        elif len(usable) >= target:
            out.append(c.cond(NODES_READY, False, "NodePluginsNotReady",
                              "GPU device plugins are not ready on the nodes (no nvidia.com/gpu capacity)", gen))
        else:
            out.append(c.cond(NODES_READY, False, "NodeNotReady",
                              f"Ready nodes are not enough (TargetNodes: {target}, CurrentReadyNodes: {len(usable)})",
                              gen))
        ready = claims_ready and nodes_ready
        out.append(c.cond(RESOURCE_READY, ready, "workspaceResourceStatusSuccess" if ready
                          else "workspaceResourceStatusNotReady",
                          "workspace resource is ready" if ready else "workspace resource is not ready", gen))
        return out, ready, sorted(n["metadata"]["name"] for n in with_gpus)

    @staticmethod
    def _first_provisioning_state(claims: list[dict[str, Any]]) -> tuple[str, str] | None:
        """KAITO's FirstNodeClaimProvisioningState: the first non-True Launched/Registered/Initialized."""
        for step in KARPENTER_STEPS:
            for cl in claims:
                cond = c.find(cl.get("status", {}).get("conditions"), step)
                if cond is not None and cond.get("status") != "True":
                    return str(cond.get("reason") or step), str(cond.get("message") or "")
        return None

    def _ensure_services(self, ws: dict[str, Any], version: str = VERSION) -> None:
        ns = ws["metadata"]["namespace"]
        for svc in service_manifests(ws, version):
            if not self.kube.service_exists(ns, svc["metadata"]["name"]):
                self.kube.create_service(ns, svc)

    def _progress(self, ws: dict[str, Any], key: str, resource_conditions: list[c.Condition], resource_ready: bool,
                  ready_nodes: list[str], legacy: bool = False) -> dict[str, Any]:
        """The status to write: conditions turn True one at a time, in KAITO's order, each only after the ones
        before it; a condition is computed from the effective (written) state of the earlier ones. Legacy
        (v1alpha1) status has no state."""
        meta = ws["metadata"]
        gen = meta.get("generation")
        old_status = ws.get("status") or {}
        old = old_status.get("conditions")
        tuning = bool(ws.get("tuning"))
        desired: list[c.Condition] = []
        promoted = False

        def add(cond: c.Condition) -> bool:
            nonlocal promoted
            if cond["status"] == "True":
                earlier_true = all(d["status"] == "True" for d in desired)
                if not earlier_true or (promoted and not c.is_true(old, cond["type"])):
                    cond = self._held_back(cond)
                elif not c.is_true(old, cond["type"]):
                    promoted = True
            desired.append(cond)
            return cond["status"] == "True"

        for rc in resource_conditions:
            add(rc)
        resources_ok = bool(desired) and desired[-1]["status"] == "True"
        if not resource_ready:
            self.forget(key, "model")
        phase = ""
        if tuning:
            failed = self.failures.find(TUNING_FAILED, meta["namespace"], meta["name"]) is not None
            finished = resources_ok and self.waited(key, "tuning", self.timing.tuning_s) == 0
            workload_ok, phase = tuning_runs.progress(ws, resources_ok, failed, finished, add)
        else:
            failure = self.failures.find(IMAGE_PULL, meta["namespace"], meta["name"])
            loaded = resources_ok and self.waited(key, "model", self.timing.model_load_s) == 0
            if resources_ok and failure:
                workload_ok = add(c.cond(INFERENCE_READY, False, "ImagePullError",
                                         f'Back-off pulling image "{BASE_IMAGE}": ErrImagePull: failed to pull and '
                                         f"unpack image: unexpected status 403 Forbidden", gen))
            elif loaded:
                workload_ok = add(c.cond(INFERENCE_READY, True, "WorkspaceInferenceStatusSuccess",
                                         "Inference has been deployed successfully", gen))
            else:
                workload_ok = add(c.cond(INFERENCE_READY, False, "WorkspaceInferenceStatusPending",
                                         "Inference is not ready", gen))
        if phase == tuning_runs.FAILED:
            succeeded = add(c.cond(WORKSPACE_SUCCEEDED, False, "workspaceFailed", "tuning job failed", gen))
        else:
            succeeded = add(c.cond(WORKSPACE_SUCCEEDED, workload_ok, "workspaceSucceeded" if workload_ok
                                   else "workspacePending",
                                   "workspace succeeds" if workload_ok else "workspace is pending", gen))
        if legacy:
            return {"conditions": desired, "workerNodes": ready_nodes}
        previous = old_status.get("state")
        if succeeded:
            state = "Succeeded" if tuning else "Ready"
        elif tuning and phase == tuning_runs.FAILED:
            state = phase
        elif tuning and phase in (tuning_runs.RUNNING, tuning_runs.SUCCEEDED):  # success not written yet
            state = tuning_runs.RUNNING
        else:
            state = "NotReady" if previous in ("Ready", "NotReady") else "Pending"
        return {"conditions": desired, "state": state, "workerNodes": ready_nodes}

    @staticmethod
    def _held_back(cond: c.Condition) -> c.Condition:
        pending = {MACHINE_READY: ("CreateMachinePending", "Machines are being checked"),
                   NODECLAIM_READY: ("NodeClaimNotReady", "NodeClaims are being checked"),
                   NODES_READY: ("NodeNotReady", "Nodes are being checked"),
                   RESOURCE_READY: ("workspaceResourceStatusNotReady", "workspace resource is not ready"),
                   INFERENCE_READY: ("WorkspaceInferenceStatusPending", "Inference is not ready"),
                   JOB_STARTED: ("WorkspaceTuningJobStatusPending", "Waiting for resources"),
                   WORKSPACE_SUCCEEDED: ("workspacePending", "workspace is pending")}
        reason, message = pending[cond["type"]]
        return c.cond(cond["type"], False, reason, message, cond.get("observedGeneration"))

    def _write_status(self, ws: dict[str, Any], key: str, new: dict[str, Any], force: bool = False) -> float | None:
        old = ws.get("status") or {}
        unchanged = (c.same(old.get("conditions"), new["conditions"])
                     and all(old.get(k) == v for k, v in new.items() if k != "conditions"))
        if unchanged:
            return None
        if not force and self.timing.condition_step_s > 0:
            rest = self._last_write.get(key, 0.0) + self.timing.condition_step_s - time.monotonic()
            if rest > 0:
                return rest
        body = dict(new)
        body["conditions"] = c.merge(old.get("conditions"), new["conditions"])
        if force and old.get("conditions"):
            # a rejection replaces the progress conditions rather than adding to them
            body["conditions"] = c.merge([x for x in old["conditions"] if x["type"] in
                                          {y["type"] for y in new["conditions"]}], new["conditions"])
        self._patch(ws, {"status": body}, status=True)
        self._last_write[key] = time.monotonic()
        return 0.0

    def _finalize(self, ws: dict[str, Any], claims: list[dict[str, Any]],
                  machines: list[dict[str, Any]] | None = None) -> float | None:
        """Delete KAITO's own NodeClaims (or, legacy, Machines) and Services, then drop the finalizer."""
        meta = ws["metadata"]
        if self.karpenter:  # the Workspace's finalizer deletes its NodePool; Karpenter then removes the claims
            self.kube.delete_custom("karpenter.sh", "v1", "nodepools", nodepool_name(meta["namespace"], meta["name"]))
        for cl in claims:
            if not cl["metadata"].get("deletionTimestamp"):
                self.kube.delete_custom("karpenter.sh", "v1", "nodeclaims", cl["metadata"]["name"])
        for m in machines or []:
            if not m["metadata"].get("deletionTimestamp"):
                self.kube.delete_custom("karpenter.sh", MACHINE_VERSION, MACHINES, m["metadata"]["name"])
        for svc in service_manifests(ws):
            self.kube.delete_service(meta["namespace"], svc["metadata"]["name"])
        if ws.get("tuning"):  # its Job goes with it (an ownerReference, collected by the garbage collector in KAITO)
            self._jobs.delete(meta["namespace"], meta["name"])
        if claims or machines:
            return None  # wait for Karpenter to release them; their deletion wakes us
        if FINALIZER in (meta.get("finalizers") or []):
            rest = [f for f in meta["finalizers"] if f != FINALIZER]
            self._patch(ws, {"metadata": {"finalizers": rest or None}})
        self.forget(meta.get("uid") or "")
        return None
