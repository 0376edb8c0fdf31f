"""Simulated Karpenter / gpu-provisioner: NodeClaims (karpenter.sh/v1) and legacy Machines (v1alpha5) become GPU Nodes.

Each claim goes Launched -> Registered -> Initialized -> Ready, a Node with the SKU's labels appears, and
deleting the claim removes its Node (finalizer karpenter.sh/termination). A Node that vanishes under a
registered claim makes Karpenter delete the claim, so its owner (KAITO) can replace it.

A NodeClaim whose creationTimestamp + spec.expireAfter has passed is deleted, as upstream Karpenter's expiration
controller does (`pkg/controllers/nodeclaim/expiration/controller.go` at karpenter v1.7.0) for a nodeClassRef it
manages: AKS node auto-provisioning, AWS. That is what `expireAfter: Never` guards a model's node against.
Approximation: every NodeClaim is expired alike, whatever its nodeClassRef (gpu-provisioner v0.4.3 has no
expiration controller at all); `Timing.expiry_scale` compresses the wait for tests.
"""

from __future__ import annotations

import calendar
import hashlib
import re
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from gitops_kaito.model.ownership import LABEL_MODEL_NAME, LABEL_MODEL_NAMESPACE
from gitops_kaito.sandbox.controllers import conditions as c
from gitops_kaito.sandbox.controllers.base import Controller
from gitops_kaito.sandbox.controllers.failures import QUOTA, SKU_UNAVAILABLE
from gitops_kaito.sandbox.controllers.gpus import GpuShape, gpu_shape
from gitops_kaito.sandbox.operations import now_iso

TERMINATION_FINALIZER = "karpenter.sh/termination"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
SKU_NAME_LABEL = "karpenter.azure.com/sku-name"
AWAITING = ("AwaitingReconciliation", "object is awaiting reconciliation")
INSUFFICIENT_CAPACITY = ("creating instance, insufficient capacity, "
                         "all requested instance types were unavailable during launch")
ZONE = "eastus-1"


@dataclass(frozen=True)
class ClaimKind:
    """The API and condition names of one node-request kind."""

    version: str
    plural: str
    launched: str
    registered: str
    initialized: str
    claim_label: str  # the self-referential label Karpenter puts on the Node

    @property
    def steps(self) -> tuple[str, str, str]:
        return (self.launched, self.registered, self.initialized)


NODECLAIM = ClaimKind("v1", "nodeclaims", "Launched", "Registered", "Initialized", "karpenter.sh/nodeclaim")
MACHINE = ClaimKind("v1alpha5", "machines", "MachineLaunched", "MachineRegistered", "MachineInitialized",
                    "karpenter.sh/machine")
GROUP = "karpenter.sh"


def instance_type_of(claim: dict[str, Any]) -> str:
    for req in claim.get("spec", {}).get("requirements", []) or []:
        if req.get("key") in (INSTANCE_TYPE_LABEL, SKU_NAME_LABEL) and req.get("operator") == "In" and req.get("values"):
            return str(req["values"][0])
    return str(claim.get("metadata", {}).get("labels", {}).get(INSTANCE_TYPE_LABEL, ""))


def owner_of(claim: dict[str, Any]) -> tuple[str | None, str | None]:
    """(namespace, workspace) the claim serves: KAITO's labels, else gitops-kaito's owner labels."""
    labels = claim.get("metadata", {}).get("labels", {}) or {}
    name = labels.get("kaito.sh/workspace") or labels.get(LABEL_MODEL_NAME)
    ns = labels.get("kaito.sh/workspacenamespace") or labels.get(LABEL_MODEL_NAMESPACE)
    return ns, name


NODEPOOL_LABEL = "karpenter.sh/nodepool"


def pool_claim(pool: dict[str, Any]) -> dict[str, Any]:
    """A NodeClaim Karpenter makes from a NodePool's template: `<pool>-<5 chars>`, the template's labels plus
    karpenter.sh/nodepool, its requirements, taints and nodeClassRef."""
    meta = pool["metadata"]
    template = (pool.get("spec") or {}).get("template") or {}
    spec = template.get("spec") or {}
    suffix = uuid.uuid4().hex[:5]
    labels = {**((template.get("metadata") or {}).get("labels") or {}), NODEPOOL_LABEL: meta["name"]}
    return {"apiVersion": f"{GROUP}/v1", "kind": "NodeClaim",
            "metadata": {"name": f"{meta['name']}-{suffix}"[:63], "labels": labels},
            "spec": {"nodeClassRef": spec.get("nodeClassRef") or {"group": "karpenter.azure.com",
                                                                   "kind": "AKSNodeClass", "name": "default"},
                     "taints": spec.get("taints") or [], "requirements": spec.get("requirements") or [],
                     "resources": {"requests": {"storage": "128Gi"}}}}


_DURATION = re.compile(r"(\d+)([smh])")


def expire_after_seconds(claim: dict[str, Any]) -> float | None:
    """spec.expireAfter in seconds (the CRD's `^(([0-9]+(s|m|h))+|Never)$`), None for Never or when absent."""
    text = str((claim.get("spec") or {}).get("expireAfter") or "Never")
    if text == "Never":
        return None
    return float(sum(int(n) * {"s": 1, "m": 60, "h": 3600}[unit] for n, unit in _DURATION.findall(text)))


def node_name_for(claim_name: str) -> str:
    name = f"aks-{claim_name}-vmss000000"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(claim_name.encode()).hexdigest()[:8]
    return f"aks-{claim_name[:40]}-{digest}-vmss000000"[:63]


def quota_message(instance_type: str) -> str:
    parts = instance_type.removeprefix("Standard_").split("_")
    family = "".join(ch for ch in parts[0] if not ch.isdigit()).upper() + "".join(parts[1:])
    return (f"creating instance, QuotaExceeded: Operation could not be completed as it results in exceeding "
            f"approved standard{family}Family Cores quota. Additional details - Deployment Model: Resource Manager, "
            f"Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 24.")


def node_manifest(claim: dict[str, Any], kind: ClaimKind, shape: GpuShape, node_name: str,
                  provider_id: str) -> dict[str, Any]:
    meta = claim.get("metadata", {})
    labels: dict[str, str] = {}
    for req in claim.get("spec", {}).get("requirements", []) or []:
        values = req.get("values") or []
        if req.get("operator") == "In" and len(values) == 1:
            labels[str(req["key"])] = str(values[0])  # single-value requirements resolve to labels
    labels.update({str(k): str(v) for k, v in (meta.get("labels") or {}).items()})
    labels.update({
        INSTANCE_TYPE_LABEL: shape.instance_type,
        "beta.kubernetes.io/instance-type": shape.instance_type,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node_name,
        "topology.kubernetes.io/zone": ZONE,
        "karpenter.sh/capacity-type": "on-demand",
        "karpenter.sh/registered": "true",
        kind.claim_label: str(meta.get("name", "")),
        "accelerator": "nvidia",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": shape.gpu_product,
        "nvidia.com/gpu.count": str(shape.gpu_count),
        "nvidia.com/gpu.memory": str(shape.gpu_memory_mib),
    })
    taints = [{k: v for k, v in t.items() if k in ("key", "value", "effect")}
              for t in claim.get("spec", {}).get("taints", []) or []]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name, "labels": labels},
        "spec": {"providerID": provider_id, "taints": taints},
    }


def node_status(shape: GpuShape, storage: str, ready: bool) -> dict[str, Any]:
    capacity = {"cpu": str(shape.cpu), "memory": f"{shape.memory_gib}Gi", "pods": "110",
                "ephemeral-storage": storage, "nvidia.com/gpu": str(shape.gpu_count)}
    ready_cond = (c.cond("Ready", True, "KubeletReady", "kubelet is posting ready status") if ready
                  else c.cond("Ready", False, "KubeletNotReady", "container runtime network not ready"))
    ready_cond["lastHeartbeatTime"] = ready_cond["lastTransitionTime"] = now_iso()
    return {"status": {"capacity": capacity, "allocatable": dict(capacity), "conditions": [ready_cond],
                       "addresses": [{"type": "InternalIP", "address": "10.224.0.4"}],
                       "nodeInfo": {"architecture": "amd64", "bootID": "00000000-0000-0000-0000-000000000001",
                                    "containerRuntimeVersion": "containerd://1.7.20", "kernelVersion": "5.15.0-1071-azure",
                                    "kubeProxyVersion": "v1.30.0", "kubeletVersion": "v1.30.0",
                                    "machineID": "sandbox", "operatingSystem": "linux",
                                    "osImage": "Ubuntu 22.04.5 LTS", "systemUUID": "00000000-0000-0000-0000-000000000001"}}}


class KarpenterController(Controller):
    """Fulfils every NodeClaim and Machine, whoever created it (KAITO or gitops-kaito)."""

    name = "karpenter"

    def watched(self) -> list[Any]:
        return [partial(self.kube.custom.list_cluster_custom_object, GROUP, NODECLAIM.version, NODECLAIM.plural),
                partial(self.kube.custom.list_cluster_custom_object, GROUP, "v1", "nodepools"),
                partial(self.kube.custom.list_cluster_custom_object, GROUP, MACHINE.version, MACHINE.plural),
                self.kube.core.list_node]

    def reconcile(self) -> float | None:
        if self._nodepools():
            return 0.0
        nodes = {n["metadata"]["name"]: n for n in self.kube.list_nodes()}
        wanted: float | None = None
        for kind in (NODECLAIM, MACHINE):
            claims = self.kube.list_custom(GROUP, kind.version, kind.plural)
            for claim in claims or []:
                delay = self._step(kind, claim, nodes)
                if delay is not None:
                    wanted = delay if wanted is None else min(wanted, delay)
        return wanted

    # NodePools (static capacity) ------------------------------------------------------------------
    def _nodepools(self) -> bool:
        """NodePools with spec.replicas get that many NodeClaims (Karpenter's static capacity, as KAITO's karpenter
        mode uses it); claims of a NodePool that is gone are deleted. True when something was written."""
        pools = self.kube.list_custom(GROUP, "v1", "nodepools")
        if pools is None:
            return False
        by_name = {p["metadata"]["name"]: p for p in pools if not p["metadata"].get("deletionTimestamp")}
        claims = [cl for cl in self.kube.list_custom(GROUP, NODECLAIM.version, NODECLAIM.plural) or []
                  if (cl["metadata"].get("labels") or {}).get(NODEPOOL_LABEL, "kaito") != "kaito"]
        wrote = False
        for cl in claims:
            pool = (cl["metadata"].get("labels") or {}).get(NODEPOOL_LABEL)
            if pool not in by_name and not cl["metadata"].get("deletionTimestamp"):
                self.kube.delete_custom(GROUP, NODECLAIM.version, NODECLAIM.plural, cl["metadata"]["name"])
                wrote = True
        for name, pool in by_name.items():
            replicas = (pool.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int):
                continue
            mine = [cl for cl in claims if (cl["metadata"].get("labels") or {}).get(NODEPOOL_LABEL) == name
                    and not cl["metadata"].get("deletionTimestamp")]
            for _ in range(replicas - len(mine)):
                self.kube.create_custom(GROUP, NODECLAIM.version, NODECLAIM.plural, pool_claim(pool))
                wrote = True
        return wrote

    # one claim, one step ------------------------------------------------------------------------
    def _patch(self, kind: ClaimKind, name: str, patch: dict[str, Any], status: bool = False) -> None:
        self.kube.patch_custom(GROUP, kind.version, kind.plural, name, patch, status=status)

    def _set_conditions(self, kind: ClaimKind, claim: dict[str, Any], new: list[dict[str, Any]],
                        extra: dict[str, Any] | None = None) -> None:
        old = claim.get("status", {}).get("conditions")
        body: dict[str, Any] = {"conditions": c.merge(old, new)}
        body.update(extra or {})
        self._patch(kind, claim["metadata"]["name"], {"status": body}, status=True)

    def _step(self, kind: ClaimKind, claim: dict[str, Any], nodes: dict[str, dict[str, Any]]) -> float | None:
        meta = claim["metadata"]
        name = meta["name"]
        key = meta.get("uid", name)
        status = claim.get("status", {}) or {}
        conds = status.get("conditions")
        node_name = status.get("nodeName")

        if meta.get("deletionTimestamp"):
            if node_name and node_name in nodes:
                self.kube.delete_node(node_name)
                return 0.0
            if TERMINATION_FINALIZER in (meta.get("finalizers") or []):
                kept = [f for f in meta["finalizers"] if f != TERMINATION_FINALIZER]
                self._patch(kind, name, {"metadata": {"finalizers": kept or None}})
            self.forget(key)
            return None

        expires_in = self._expires_in(kind, claim)
        if expires_in is not None and expires_in <= 0:
            self.kube.delete_custom(GROUP, kind.version, kind.plural, name)
            return 0.0
        if TERMINATION_FINALIZER not in (meta.get("finalizers") or []):
            self._patch(kind, name, {"metadata": {"finalizers": [*(meta.get("finalizers") or []), TERMINATION_FINALIZER]}})
            return 0.0
        if not conds:
            unknown = [c.cond(t, "Unknown", *AWAITING) for t in (*kind.steps, "Ready")]
            self._set_conditions(kind, claim, unknown)
            return 0.0

        instance_type = instance_type_of(claim)
        ns, ws = owner_of(claim)
        if not c.is_true(conds, kind.launched):
            return self._launch(kind, claim, key, instance_type, ns, ws)
        if not c.is_true(conds, kind.registered):
            return self._register(kind, claim, key, instance_type, nodes)
        if node_name and node_name not in nodes:
            # The Node is gone (node lost): Karpenter tears the claim down; the owner provisions a new one.
            self.kube.delete_custom(GROUP, kind.version, kind.plural, name)
            return 0.0
        if not c.is_true(conds, kind.initialized):
            rest = self.waited(key, "initialize", self.timing.initialize_s)
            if rest > 0:
                return rest
            shape = gpu_shape(instance_type)
            storage = str(claim.get("spec", {}).get("resources", {}).get("requests", {}).get("storage", "128Gi"))
            if node_name:
                self.kube.patch_node_status(node_name, node_status(shape, storage, ready=True))
            self._set_conditions(kind, claim, [
                c.cond(kind.launched, True, kind.launched), c.cond(kind.registered, True, kind.registered),
                c.cond(kind.initialized, True, kind.initialized),
                c.cond("Ready", "Unknown", "UnhealthyDependents", f"{kind.initialized}=True, awaiting Ready")])
            return 0.0
        if not c.is_true(conds, "Ready"):
            rest = self.waited(key, "ready", self.timing.ready_s)
            if rest > 0:
                return rest
            self._set_conditions(kind, claim, [
                c.cond(kind.launched, True, kind.launched), c.cond(kind.registered, True, kind.registered),
                c.cond(kind.initialized, True, kind.initialized), c.cond("Ready", True, "Ready")])
            return 0.0
        return expires_in  # wake up when it expires

    def _expires_in(self, kind: ClaimKind, claim: dict[str, Any]) -> float | None:
        """Real seconds until the claim expires (<= 0: expired), None when it never does (Never, or a Machine)."""
        seconds = expire_after_seconds(claim) if kind is NODECLAIM else None
        created = (claim.get("metadata") or {}).get("creationTimestamp")
        if seconds is None or not created:
            return None
        born = calendar.timegm(time.strptime(str(created), "%Y-%m-%dT%H:%M:%SZ"))
        return born + seconds / max(self.timing.expiry_scale, 1e-9) - time.time()

    def _launch(self, kind: ClaimKind, claim: dict[str, Any], key: str, instance_type: str,
                ns: str | None, ws: str | None) -> float | None:
        conds = claim.get("status", {}).get("conditions")
        failure_message = None
        if self.failures.find(SKU_UNAVAILABLE, ns, ws, instance_type):
            failure_message = INSUFFICIENT_CAPACITY
        elif self.failures.find(QUOTA, ns, ws, instance_type):
            failure_message = quota_message(instance_type)
        if failure_message:
            launched = c.find(conds, kind.launched)
            if not (launched and launched.get("status") == "False" and launched.get("message") == failure_message):
                self._set_conditions(kind, claim, [
                    c.cond(kind.launched, False, "LaunchFailed", failure_message),
                    c.cond(kind.registered, "Unknown", *AWAITING), c.cond(kind.initialized, "Unknown", *AWAITING),
                    c.cond("Ready", False, "LaunchFailed", failure_message)])
            return None  # terminal until the failure is cleared; a resync then retries the launch
        rest = self.waited(key, "launch", self.timing.launch_s)
        if rest > 0:
            return rest
        shape = gpu_shape(instance_type)
        name = claim["metadata"]["name"]
        labels = {INSTANCE_TYPE_LABEL: instance_type, "karpenter.sh/capacity-type": "on-demand",
                  "topology.kubernetes.io/zone": ZONE}
        self._patch(kind, name, {"metadata": {"labels": labels}})
        capacity = {"cpu": str(shape.cpu), "memory": f"{shape.memory_gib}Gi", "nvidia.com/gpu": str(shape.gpu_count),
                    "pods": "110"}
        provider_id = (f"azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_sandbox/"
                       f"providers/Microsoft.Compute/virtualMachineScaleSets/aks-{name}-vmss/virtualMachines/0")
        self._set_conditions(kind, claim, [
            c.cond(kind.launched, True, kind.launched),
            c.cond(kind.registered, "Unknown", "NodeNotFound", "Node not registered with cluster"),
            c.cond(kind.initialized, "Unknown", "NodeNotFound", "Node not registered with cluster"),
            c.cond("Ready", "Unknown", "UnhealthyDependents", f"{kind.registered}=Unknown")],
            extra={"providerID": provider_id, "capacity": capacity, "allocatable": dict(capacity)})
        return 0.0

    def _register(self, kind: ClaimKind, claim: dict[str, Any], key: str, instance_type: str,
                  nodes: dict[str, dict[str, Any]]) -> float | None:
        rest = self.waited(key, "register", self.timing.register_s)
        if rest > 0:
            return rest
        name = claim["metadata"]["name"]
        node_name = node_name_for(name)
        shape = gpu_shape(instance_type)
        storage = str(claim.get("spec", {}).get("resources", {}).get("requests", {}).get("storage", "128Gi"))
        if node_name not in nodes:
            provider_id = str(claim.get("status", {}).get("providerID", f"sandbox:///{name}"))
            self.kube.create_node(node_manifest(claim, kind, shape, node_name, provider_id))
            self.kube.patch_node_status(node_name, node_status(shape, storage, ready=False))
        self._set_conditions(kind, claim, [
            c.cond(kind.launched, True, kind.launched), c.cond(kind.registered, True, kind.registered),
            c.cond(kind.initialized, "Unknown", "NodeNotReady", "Node status is NotReady"),
            c.cond("Ready", "Unknown", "UnhealthyDependents", f"{kind.initialized}=Unknown")],
            extra={"nodeName": node_name})
        return 0.0
