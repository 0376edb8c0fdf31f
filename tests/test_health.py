"""Health: KAITO Workspace conditions and GPU node objects -> one model state (FACTS.md §5.5)."""

from __future__ import annotations

from typing import Any

import pytest

from gitops_kaito.core.health import assess, node_info
from gitops_kaito.model.states import ModelState

ICE = "all requested instance types were unavailable during launch"


def cond(ctype: str, status: str, reason: str = "", message: str = "", gen: int | None = 1) -> dict[str, Any]:
    c: dict[str, Any] = {"type": ctype, "status": status, "reason": reason, "message": message}
    if gen is not None:
        c["observedGeneration"] = gen
    return c


def workspace(*conds: dict[str, Any], state: str | None = None, generation: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": list(conds)}
    if state is not None:
        status["state"] = state
    return {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace",
            "metadata": {"name": "phi", "namespace": "ml", "generation": generation}, "status": status}


def nodeclaim(name: str, *conds: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": name},
            "status": {"conditions": list(conds)}}


READY_CONDS = (
    cond("NodeClaimReady", "True", "NodeClaimsReady"), cond("NodesReady", "True", "NodesReady"),
    cond("ResourceReady", "True", "workspaceResourceStatusSuccess"),
    cond("InferenceReady", "True", "WorkspaceInferenceStatusSuccess"),
    cond("WorkspaceSucceeded", "True", "workspaceSucceeded"),
)


def test_done_signal_is_ready_with_endpoint() -> None:
    h = assess(workspace(*READY_CONDS, state="Ready"))
    assert h.state == ModelState.READY and h.done
    assert h.endpoint == "http://phi.ml.svc.cluster.local:80/v1"
    assert [c.type for c in h.conditions][:2] == ["NodeClaimReady", "NodesReady"]


def test_stale_observed_generation_is_not_done() -> None:
    h = assess(workspace(*READY_CONDS, state="Ready", generation=2))
    assert h.state == ModelState.PROVISIONING
    assert "generation 2" in h.message


def test_ready_requires_state_ready_when_state_is_reported() -> None:
    assert assess(workspace(*READY_CONDS, state="Pending")).state == ModelState.PROVISIONING


def test_v1alpha1_without_state_uses_workspace_succeeded() -> None:
    assert assess(workspace(*(cond(c["type"], c["status"], c["reason"], gen=None) for c in READY_CONDS))).state \
        == ModelState.READY


@pytest.mark.parametrize(("conds", "state", "reason"), [
    ((), None, "WaitingForKaito"),
    ((cond("NodeClaimReady", "False", "NodeClaimNotReady", "0/1 ready"),
      cond("WorkspaceSucceeded", "False", "workspacePending")), "Pending", "NodeClaimNotReady"),
    ((cond("NodeClaimReady", "True"), cond("ResourceReady", "True"),
      cond("InferenceReady", "False", "WorkspaceInferenceStatusPending", "waiting for pods"),
      cond("WorkspaceSucceeded", "False", "workspacePending")), "Pending", "WorkspaceInferenceStatusPending"),
])
def test_waiting_states(conds: tuple[dict[str, Any], ...], state: str | None, reason: str) -> None:
    h = assess(workspace(*conds, state=state))
    assert h.state in (ModelState.PENDING, ModelState.PROVISIONING)
    assert h.reason == reason
    assert h.endpoint is None


def test_no_workspace_is_pending() -> None:
    assert assess(None).state == ModelState.PENDING


@pytest.mark.parametrize("reason", ["ImagePullError", "ContainerCrashLoopBackOff", "ContainerOOMKilled"])
def test_terminal_inference_reasons_fail(reason: str) -> None:
    h = assess(workspace(cond("ResourceReady", "True"), cond("InferenceReady", "False", reason, "pull failed"),
                         cond("WorkspaceSucceeded", "False", "workspacePending"), state="Pending"))
    assert h.state == ModelState.FAILED and h.reason == reason and h.message == "pull failed"


def test_unavailable_instance_types_is_terminal_from_nodeclaim() -> None:
    nc = nodeclaim("ws123", cond("Launched", "False", "LaunchFailed", ICE, gen=None))
    h = assess(workspace(cond("NodeClaimReady", "False", "LaunchFailed", "launching"), state="Pending"), [nc])
    assert h.state == ModelState.FAILED
    assert ICE in h.message and "ws123" in h.message
    assert h.nodes[0].phase == "Failed"


def test_unavailable_instance_types_is_terminal_from_workspace_condition() -> None:
    h = assess(workspace(cond("NodeClaimReady", "False", "NodeClaimNotReady", f"x: {ICE}"), state="Pending"))
    assert h.state == ModelState.FAILED


def test_nodeclaim_phases_follow_karpenter_lifecycle() -> None:
    assert node_info(nodeclaim("a")).phase == "Launching"
    assert node_info(nodeclaim("a", cond("Launched", "True", gen=None))).phase == "Registering"
    registered = nodeclaim("a", cond("Launched", "True"), cond("Registered", "True"),
                           cond("Initialized", "False", "NotInitialized", "waiting for GPU plugin"))
    info = node_info(registered)
    assert info.phase == "Initializing" and "GPU plugin" in info.reason
    assert node_info(nodeclaim("a", cond("Ready", "True"))).phase == "Ready"
    gone = nodeclaim("a")
    gone["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert node_info(gone).phase == "Deleting"


def test_provisioning_message_names_the_waiting_node() -> None:
    nc = nodeclaim("ws1", cond("Launched", "True"), cond("Registered", "False", "NotRegistered", "node not joined"))
    h = assess(workspace(cond("NodeClaimReady", "False", "NotRegistered", "1 not ready"), state="Pending"), [nc])
    assert h.state == ModelState.PROVISIONING
    assert "ws1: Registering" in h.message


def test_agent_pools() -> None:
    ok = assess(workspace(*READY_CONDS, state="Ready"), agent_pools=[{"name": "gpu1", "provisioningState": "Succeeded"}])
    assert ok.state == ModelState.READY and ok.nodes[0].kind == "AgentPool"
    bad = assess(workspace(state="Pending"), agent_pools=[
        {"name": "gpu1", "provisioningState": "Failed", "message": "QuotaExceeded: not enough cores"}])
    assert bad.state == ModelState.FAILED and "QuotaExceeded" in bad.message


def test_pass_level_states_win() -> None:
    ws = workspace(*READY_CONDS, state="Ready")
    assert assess(ws, invalid="models/ml/phi.yaml:3: bad").state == ModelState.INVALID
    assert assess(ws, blocked="replace needs approval").state == ModelState.BLOCKED
    assert assess(None, suspended=True).state == ModelState.SUSPENDED


def test_was_ready_now_not_ready() -> None:
    h = assess(workspace(cond("ResourceReady", "False", "workspaceResourceStatusNotReady", "node lost"),
                         cond("WorkspaceSucceeded", "False", "workspacePending"), state="NotReady"))
    assert h.state == ModelState.PROVISIONING and h.reason.startswith("NotReady/")


# --- legacy KAITO (<= v0.4.1): v1alpha1 Workspaces with Machines (FACTS.md history and appendix) ---------------

def legacy_workspace(*conds: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    ws = workspace(*conds, generation=generation)  # no state: v1alpha1 status has conditions and workerNodes only
    ws["apiVersion"] = "kaito.sh/v1alpha1"
    return ws


def machine(name: str, *conds: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "karpenter.sh/v1alpha5", "kind": "Machine", "metadata": {"name": name},
            "status": {"conditions": list(conds)}}


LEGACY_READY = (
    cond("MachineReady", "True", "installNodePluginsSuccess"),
    cond("ResourceReady", "True", "workspaceResourceStatusSuccess"),
    cond("InferenceReady", "True", "WorkspaceInferenceStatusSuccess"),
    cond("WorkspaceSucceeded", "True", "workspaceSucceeded"),
)


def test_legacy_done_is_workspace_succeeded_at_the_current_generation() -> None:
    h = assess(legacy_workspace(*LEGACY_READY))
    assert h.state == ModelState.READY and h.done
    assert [c.type for c in h.conditions] == ["MachineReady", "ResourceReady", "InferenceReady", "WorkspaceSucceeded"]
    stale = assess(legacy_workspace(*LEGACY_READY, generation=2))
    assert stale.state == ModelState.PROVISIONING and "generation 2" in stale.message


def test_legacy_waiting_for_machines_says_so_with_the_machine_phase() -> None:
    m = machine("ws0a1b2c3d4", cond("MachineLaunched", "True", gen=None),
                cond("MachineRegistered", "Unknown", "NodeNotFound", "Node not registered with cluster", gen=None),
                cond("Ready", "Unknown", "UnhealthyDependents", "MachineRegistered=Unknown", gen=None))
    h = assess(legacy_workspace(
        cond("MachineReady", "Unknown", "CreateMachinePending", "creating 1 machines"),
        cond("ResourceReady", "False", "workspaceResourceStatusNotReady", "workspace resource is not ready"),
        cond("InferenceReady", "False", "WorkspaceInferenceStatusPending", "Inference is not ready"),
        cond("WorkspaceSucceeded", "False", "workspacePending", "workspace is pending")), [m])
    assert (h.state, h.reason) == (ModelState.PROVISIONING, "CreateMachinePending")
    assert h.message.startswith("creating 1 machines") and "ws0a1b2c3d4: Registering" in h.message


def test_machine_phases_follow_the_legacy_lifecycle() -> None:
    assert node_info(machine("m")).phase == "Launching"
    assert node_info(machine("m", cond("MachineLaunched", "True", gen=None))).phase == "Registering"
    registered = machine("m", cond("MachineLaunched", "True"), cond("MachineRegistered", "True"),
                         cond("MachineInitialized", "Unknown", "NodeNotReady", "Node status is NotReady"))
    info = node_info(registered)
    assert info.phase == "Initializing" and "NotReady" in info.reason
    assert node_info(machine("m", cond("Ready", "True"))).phase == "Ready"


def test_legacy_machine_that_cannot_launch_fails_the_model() -> None:
    m = machine("ws1", cond("MachineLaunched", "False", "LaunchFailed", ICE, gen=None))
    h = assess(legacy_workspace(cond("MachineReady", "False", "checkMachineStatusFailed", ICE),
                                cond("ResourceReady", "False", "workspaceResourceStatusFailed", ICE),
                                cond("WorkspaceSucceeded", "False", "workspaceFailed", ICE)), [m])
    assert h.state == ModelState.FAILED and ICE in h.message and h.nodes[0].phase == "Failed"
