"""Pure: a live Workspace and its GPU nodes (NodeClaims, Machines, AKS agent pools) -> one model state.

Follows KAITO's status progression (syncWorkspaceStatus, `pkg/workspace/controllers/workspace_controller.go` at v0.12.0): done is WorkspaceSucceeded=True, state Ready, observed generation.
Legacy KAITO (v1alpha1, Machines) reports MachineReady where v0.12 reports NodeClaimReady, and no state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops_kaito.model.kaito import KAITO_WORKSPACE_LABEL, KARPENTER_WORKSPACE_NAME_LABEL
from gitops_kaito.model.states import ModelState

# KAITO / Karpenter / Azure messages that no amount of waiting will fix.
TERMINAL_NODE_MESSAGES = (
    "all requested instance types were unavailable during launch",
    "insufficientcapacity",
    "quotaexceeded",
    "exceeding approved",
    "operation could not be completed as it results in exceeding",
    "skunotavailable",
)
# InferenceReady / WorkspaceSucceeded reasons that mean the model will not come up without a change.
TERMINAL_REASONS = frozenset({
    "ImagePullError", "ErrImagePull", "ImagePullBackOff", "ContainerCrashLoopBackOff", "ContainerOOMKilled",
    "ContainerStartError", "SASTokenFetchFailed", "BenchmarkFailed", "InvalidImageName",
})
_NODECLAIM_LIFECYCLE = ("Launched", "Registered", "Initialized")
_MACHINE_LIFECYCLE = ("MachineLaunched", "MachineRegistered", "MachineInitialized")  # karpenter.sh/v1alpha5
_NODE_CONDITIONS = ("MachineReady", "NodeClaimReady", "NodesReady", "ResourceReady")
_CONDITION_ORDER = (*_NODE_CONDITIONS, "InferenceReady", "JobStarted", "BenchmarkCompleted", "WorkspaceSucceeded")


@dataclass(frozen=True)
class Condition:
    type: str
    status: str
    reason: str
    message: str
    observed_generation: int | None = None


@dataclass(frozen=True)
class NodeInfo:
    """One GPU node request: a NodeClaim, Machine or agent pool, with its phase."""

    name: str
    kind: str  # NodeClaim | Machine | AgentPool
    phase: str  # Ready | Launching | Registering | Initializing | Failed | Deleting | Pending
    reason: str = ""
    node_name: str = ""


@dataclass(frozen=True)
class ModelHealth:
    state: ModelState
    reason: str
    message: str
    conditions: tuple[Condition, ...] = ()
    nodes: tuple[NodeInfo, ...] = ()
    endpoint: str | None = None
    inference_ready: bool = False
    replicas: tuple[int, int] | None = None  # an InferenceSet's (ready, desired) replicas

    @property
    def done(self) -> bool:
        return self.state == ModelState.READY


def conditions_of(obj: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    status = (obj or {}).get("status") or {}
    out = []
    for c in status.get("conditions") or []:
        if not isinstance(c, Mapping) or not c.get("type"):
            continue
        gen = c.get("observedGeneration")
        out.append(Condition(str(c["type"]), str(c.get("status", "Unknown")), str(c.get("reason") or ""),
                             str(c.get("message") or ""), int(gen) if isinstance(gen, int) else None))
    rank = {t: i for i, t in enumerate(_CONDITION_ORDER)}
    return tuple(sorted(out, key=lambda c: (rank.get(c.type, len(rank)), c.type)))


def _find(conds: Sequence[Condition], ctype: str) -> Condition | None:
    return next((c for c in conds if c.type == ctype), None)


def _terminal_message(text: str) -> bool:
    low = text.lower()
    squashed = low.replace(" ", "")
    return any(m in low or m in squashed for m in TERMINAL_NODE_MESSAGES)


def node_info(obj: Mapping[str, Any]) -> NodeInfo:
    """Phase of a NodeClaim or Machine: Ready, else the first lifecycle condition that is not True."""
    meta = obj.get("metadata") or {}
    kind = str(obj.get("kind") or "NodeClaim")
    name = str(meta.get("name", ""))
    node_name = str((obj.get("status") or {}).get("nodeName") or "")
    conds = conditions_of(obj)
    if meta.get("deletionTimestamp"):
        return NodeInfo(name, kind, "Deleting", "", node_name)
    for c in conds:
        if c.status == "False" and _terminal_message(f"{c.reason} {c.message}"):
            return NodeInfo(name, kind, "Failed", _join(c.reason, c.message), node_name)
    ready = _find(conds, "Ready") or _find(conds, "MachineReady")
    if ready is not None and ready.status == "True":
        return NodeInfo(name, kind, "Ready", "", node_name)
    lifecycle = _MACHINE_LIFECYCLE if kind == "Machine" else _NODECLAIM_LIFECYCLE
    for ctype, phase in zip(lifecycle, ("Launching", "Registering", "Initializing"), strict=True):
        step = _find(conds, ctype)
        if step is None or step.status != "True":
            reason = _join(step.reason, step.message) if step else ""
            return NodeInfo(name, kind, phase, reason, node_name)
    if ready is not None:
        return NodeInfo(name, kind, "Pending", _join(ready.reason, ready.message), node_name)
    return NodeInfo(name, kind, "Pending", "", node_name)


def agent_pool_info(pool: Mapping[str, Any]) -> NodeInfo:
    """An AKS agent pool summary: {name, provisioningState, count, readyCount?, message?}."""
    state = str(pool.get("provisioningState") or pool.get("provisioning_state") or "")
    message = str(pool.get("message") or "")
    name = str(pool.get("name", ""))
    if state == "Failed" or _terminal_message(message):
        return NodeInfo(name, "AgentPool", "Failed", message or "agent pool provisioning failed")
    if state == "Succeeded":
        return NodeInfo(name, "AgentPool", "Ready", "")
    if state == "Deleting":
        return NodeInfo(name, "AgentPool", "Deleting", message)
    return NodeInfo(name, "AgentPool", "Launching", _join(state, message))


def _join(reason: str, message: str) -> str:
    return f"{reason}: {message}" if reason and message else reason or message


def assess(
    workspace: Mapping[str, Any] | None,
    nodes: Sequence[Mapping[str, Any]] = (),
    agent_pools: Sequence[Mapping[str, Any]] = (),
    *,
    suspended: bool = False,
    invalid: str | None = None,
    blocked: str | None = None,
) -> ModelHealth:
    """The state of one model from what is live. Invalid/Blocked/Suspended come from the pass itself."""
    conds = conditions_of(workspace)
    node_infos = tuple(sorted((node_info(n) for n in nodes), key=lambda n: n.name)) + tuple(
        sorted((agent_pool_info(p) for p in agent_pools), key=lambda n: n.name))
    if not node_infos:  # BYO (no provisioning objects): the nodes KAITO reports it runs on
        node_infos = worker_nodes(workspace)
    endpoint = _endpoint(workspace)
    inference = _find(conds, "InferenceReady")
    inference_ready = inference is not None and inference.status == "True"
    shown = endpoint if inference_ready else None
    if invalid:
        return ModelHealth(ModelState.INVALID, "InvalidRequest", invalid, conds, node_infos, shown, inference_ready)
    if blocked:
        return ModelHealth(ModelState.BLOCKED, "Blocked", blocked, conds, node_infos, shown, inference_ready)
    if suspended:
        return ModelHealth(ModelState.SUSPENDED, "Suspended", "suspended in the repository (spec.suspend: true)",
                           conds, node_infos, shown, inference_ready)
    if workspace is not None and workspace.get("kind") == "RAGEngine":
        return _rag_from_live(workspace, conds, node_infos)
    if workspace is not None and workspace.get("tuning"):
        return _tuning_from_live(workspace, conds, node_infos)
    return _from_live(workspace, conds, node_infos, endpoint, inference_ready)


def _tuning_from_live(workspace: Mapping[str, Any], conds: tuple[Condition, ...],
                      nodes: tuple[NodeInfo, ...]) -> ModelHealth:
    """A tuning run (`pkg/workspace/controllers/workspace_controller.go:1148-1171` at v0.12.0): JobStarted and
    status.state say Pending, Running, Succeeded or Failed (KAITO reports the first pod failure as Failed)."""
    meta = workspace.get("metadata") or {}
    status = workspace.get("status") or {}
    generation = meta.get("generation")
    current = [c for c in conds if c.observed_generation is None or generation is None
               or c.observed_generation == generation]
    state = str(status.get("state") or "")
    succeeded, job = _find(current, "WorkspaceSucceeded"), _find(current, "JobStarted")

    def health(value: ModelState, reason: str, message: str) -> ModelHealth:
        return ModelHealth(value, reason, message, conds, nodes, None, False)

    if not meta.get("deletionTimestamp"):
        if succeeded is not None and succeeded.status == "True" and state == "Succeeded":
            return health(ModelState.SUCCEEDED, succeeded.reason or "workspaceSucceeded", "the tuning job succeeded")
        if state == "Failed" or (job is not None and job.status == "False" and "Failed" in job.reason):
            why = job if job is not None and job.status == "False" else succeeded
            return health(ModelState.FAILED, why.reason if why else "Failed",
                          why.message if why and why.message else "KAITO reports the tuning job failed")
        if job is not None and job.status == "True":
            return health(ModelState.RUNNING, job.reason or "JobStarted", "the tuning job is running")
    return _from_live(workspace, conds, nodes, None, False)


_RAG_ORDER = ("NodeClaimReady", "ResourceReady", "ServiceReady", "RAGEngineSucceeded")


def _rag_from_live(rag: Mapping[str, Any], conds: tuple[Condition, ...], nodes: tuple[NodeInfo, ...]) -> ModelHealth:
    """A RAG engine (`pkg/ragengine/controllers` at v0.12.0): done is RAGEngineSucceeded=True. Its observedGeneration
    is not refreshed when a condition's content is unchanged (`ragengine_status.go:60`), so it is not compared; a
    failed Service shows as RAGEngineServiceReady=False, a type success never clears."""
    endpoint = _service_url(rag)
    succeeded = _find(conds, "RAGEngineSucceeded")
    ready = succeeded is not None and succeeded.status == "True"

    def health(value: ModelState, reason: str, message: str) -> ModelHealth:
        return ModelHealth(value, reason, message, conds, nodes, endpoint if ready else None, ready)

    if (rag.get("metadata") or {}).get("deletionTimestamp"):
        return health(ModelState.PROVISIONING, "Deleting", "the RAGEngine is being deleted")
    if ready:
        return health(ModelState.READY, succeeded.reason if succeeded else "", "the RAG engine is serving")
    failed_node = next((n for n in nodes if n.phase == "Failed"), None)
    if failed_node is not None:
        return health(ModelState.FAILED, "NodeProvisioningFailed",
                      f"{failed_node.kind} {failed_node.name}: {failed_node.reason}")
    for c in conds:
        if c.status == "False" and (c.reason.endswith("Failed") or c.reason in TERMINAL_REASONS
                                    or _terminal_message(c.message)):
            return health(ModelState.FAILED, c.reason, c.message or f"{c.type} is False")
    if not conds:
        return health(ModelState.PENDING, "WaitingForKaito", "KAITO has not reported any status yet")
    for ctype in _RAG_ORDER:
        cond = _find(conds, ctype)
        if cond is not None and cond.status != "True":
            return health(ModelState.PROVISIONING, cond.reason or ctype, cond.message or f"{ctype} is {cond.status}")
    return health(ModelState.PROVISIONING, "Progressing", "waiting for KAITO to report RAGEngineSucceeded")


def _service_url(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    name, ns = meta.get("name"), meta.get("namespace") or "default"
    return f"http://{name}.{ns}.svc.cluster.local:80" if name else None


def _from_live(workspace: Mapping[str, Any] | None, conds: tuple[Condition, ...], nodes: tuple[NodeInfo, ...],
               endpoint: str | None, inference_ready: bool) -> ModelHealth:
    def health(state: ModelState, reason: str, message: str) -> ModelHealth:
        return ModelHealth(state, reason, message, conds, nodes, endpoint if inference_ready else None,
                           inference_ready)

    if workspace is None:
        return health(ModelState.PENDING, "NotCreated", "the Workspace does not exist yet")
    meta = workspace.get("metadata") or {}
    status = workspace.get("status") or {}
    if meta.get("deletionTimestamp"):
        return health(ModelState.PROVISIONING, "Deleting", "the Workspace is being deleted")
    generation = meta.get("generation")
    current = [c for c in conds if c.observed_generation is None or generation is None
               or c.observed_generation == generation]
    succeeded = _find(current, "WorkspaceSucceeded")
    state = str(status.get("state") or "")

    # v1alpha1 Workspaces have no status.state; there WorkspaceSucceeded alone is the signal.
    if succeeded is not None and succeeded.status == "True" and state in ("Ready", "Succeeded", ""):
        return health(ModelState.READY, succeeded.reason or "WorkspaceSucceeded", "the model is serving")

    failed_node = next((n for n in nodes if n.phase == "Failed"), None)
    if failed_node is not None:
        return health(ModelState.FAILED, "NodeProvisioningFailed", f"{failed_node.kind} {failed_node.name}: {failed_node.reason}")
    for c in current:
        if c.status == "False" and (c.reason in TERMINAL_REASONS or _terminal_message(c.message)):
            return health(ModelState.FAILED, c.reason or c.type, c.message or f"{c.type} is False")
    if state == "Failed":
        bad = next((c for c in current if c.status == "False"), None)
        return health(ModelState.FAILED, bad.reason if bad else "Failed",
                      bad.message if bad else "KAITO reports the Workspace failed")

    if not conds:
        return health(ModelState.PENDING, "WaitingForKaito", "KAITO has not reported any status yet")
    if len(current) < len(conds) or (succeeded is None and _find(conds, "WorkspaceSucceeded") is not None):
        return health(ModelState.PROVISIONING, "Reconciling", f"KAITO has not observed generation {generation} yet")

    # The first condition on KAITO's way to ready that is not True says where it is stuck.
    for ctype in (*_NODE_CONDITIONS, "InferenceReady", "BenchmarkCompleted", "WorkspaceSucceeded"):
        cond = _find(current, ctype)
        if cond is not None and cond.status != "True":
            waiting = next((n for n in nodes if n.phase != "Ready"), None)
            message = cond.message or f"{ctype} is {cond.status}"
            if waiting is not None and ctype in _NODE_CONDITIONS and waiting.reason:
                message = f"{message} ({waiting.name}: {waiting.phase}, {waiting.reason})"
            reason = cond.reason or ctype
            if state == "NotReady":
                reason = f"NotReady/{reason}"
            return health(ModelState.PROVISIONING, reason, message)
    return health(ModelState.PROVISIONING, "Progressing", "waiting for KAITO to report WorkspaceSucceeded")


def _endpoint(workspace: Mapping[str, Any] | None) -> str | None:
    url = _service_url(workspace) if workspace else None
    return f"{url}/v1" if url else None


def assess_inferenceset(
    iset: Mapping[str, Any] | None,
    children: Sequence[Mapping[str, Any]] = (),
    nodes: Sequence[Mapping[str, Any]] = (),
    *,
    suspended: bool = False,
    invalid: str | None = None,
    blocked: str | None = None,
) -> ModelHealth:
    """The state of a model served by a KAITO InferenceSet: its own InferenceSetReady (observedGeneration current)
    and readyReplicas == replicas (`pkg/inferenceset/inferenceset_controller.go` at v0.12.0); a replica (child
    Workspace) that failed for good fails the model; otherwise the first replica not yet ready says where it is."""
    conds = conditions_of(iset)
    node_infos = tuple(sorted((node_info(n) for n in nodes), key=lambda n: n.name))
    kids = sorted(children, key=lambda w: str((w.get("metadata") or {}).get("name", "")))
    serving = [w for w in kids if _inference_ready(w)]
    endpoint = _endpoint(serving[0]) if serving else None
    status = (iset or {}).get("status") or {}
    spec = (iset or {}).get("spec") or {}
    desired = status.get("replicas", spec.get("replicas"))
    replicas = (int(status.get("readyReplicas") or 0), int(desired)) if isinstance(desired, int) else None

    def health(state: ModelState, reason: str, message: str) -> ModelHealth:
        return ModelHealth(state, reason, message, conds, node_infos, endpoint, bool(serving), replicas)

    if invalid:
        return health(ModelState.INVALID, "InvalidRequest", invalid)
    if blocked:
        return health(ModelState.BLOCKED, "Blocked", blocked)
    if suspended:
        return health(ModelState.SUSPENDED, "Suspended", "suspended in the repository (spec.suspend: true)")
    if iset is None:
        return health(ModelState.PENDING, "NotCreated", "the InferenceSet does not exist yet")
    meta = iset.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return health(ModelState.PROVISIONING, "Deleting", "the InferenceSet is being deleted")
    generation = meta.get("generation")
    ready_cond = _find(conds, "InferenceSetReady")
    current = ready_cond is not None and (ready_cond.observed_generation is None or generation is None
                                          or ready_cond.observed_generation == generation)
    if ready_cond is None:
        return health(ModelState.PENDING, "WaitingForKaito", "KAITO has not reported the InferenceSet's status yet")
    if not current:
        return health(ModelState.PROVISIONING, "Reconciling", f"KAITO has not observed generation {generation} yet")
    if ready_cond.status == "True" and replicas is not None and replicas[0] >= replicas[1]:
        return health(ModelState.READY, ready_cond.reason or "InferenceSetReady",
                      f"{replicas[0]}/{replicas[1]} replicas serving")
    if ready_cond.reason == "inferencesetFailed":
        return health(ModelState.FAILED, ready_cond.reason, ready_cond.message or "KAITO reports the set failed")
    by_child: dict[str, list[Mapping[str, Any]]] = {}
    for n in nodes:
        by_child.setdefault(_child_of_node(n), []).append(n)
    replicas_health = []  # each replica assessed once, with its own nodes
    for child in kids:
        name = (child.get("metadata") or {}).get("name", "")
        h = assess(child, by_child.get(name, []))
        if h.state == ModelState.FAILED:
            return health(ModelState.FAILED, h.reason, f"replica {name}: {h.message}")
        replicas_health.append((name, h))
    message = ready_cond.message or "waiting for KAITO to report InferenceSetReady"
    waiting = next(((name, h) for name, h in replicas_health if h.state != ModelState.READY), None)
    if waiting is not None:
        message = f"{message} (replica {waiting[0]}: {waiting[1].message})"
    return health(ModelState.PROVISIONING, ready_cond.reason or "InferenceSetNotReady", message)


def _inference_ready(workspace: Mapping[str, Any]) -> bool:
    cond = _find(conditions_of(workspace), "InferenceReady")
    return cond is not None and cond.status == "True"


def _child_of_node(obj: Mapping[str, Any]) -> str:
    """The Workspace a KAITO NodeClaim was made for, in either provisioner mode (gpu-provisioner or karpenter)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return str(labels.get(KAITO_WORKSPACE_LABEL) or labels.get(KARPENTER_WORKSPACE_NAME_LABEL) or "")


def worker_nodes(workspace: Mapping[str, Any] | None) -> tuple[NodeInfo, ...]:
    """status.workerNodes (the sorted names of the Ready nodes KAITO selected, in every provisioner mode:
    `pkg/workspace/controllers/workspace_controller.go` at v0.12.0), as Ready Nodes."""
    names = ((workspace or {}).get("status") or {}).get("workerNodes") or []
    return tuple(NodeInfo(str(n), "Node", "Ready", "", str(n)) for n in sorted(names) if isinstance(n, str))
