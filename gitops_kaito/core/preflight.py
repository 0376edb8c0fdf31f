"""Pure: what a pass checks with the cluster before it writes, and how to read the answers: the KAITO and Karpenter
APIs each provisioning mode needs, and which lines of a dry-run refusal only name objects this same pass makes first.

reconcile/preflight.py asks the cluster; plan, sync and the plan report read the resulting ClusterCheck.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gitops_kaito.model.objects import ObjectRef

WORKSPACE_V1BETA1 = ("kaito.sh/v1beta1", "Workspace")
WORKSPACE_V1ALPHA1 = ("kaito.sh/v1alpha1", "Workspace")
NODECLAIM_V1 = ("karpenter.sh/v1", "NodeClaim")
MACHINE_V1ALPHA5 = ("karpenter.sh/v1alpha5", "Machine")
INFERENCESET_V1BETA1 = ("kaito.sh/v1beta1", "InferenceSet")
# The APIs the plan reports as served or not, in this order.
KNOWN_APIS = (WORKSPACE_V1BETA1, WORKSPACE_V1ALPHA1, INFERENCESET_V1BETA1, NODECLAIM_V1, MACHINE_V1ALPHA5)
# API groups whose kinds come with KAITO or Karpenter (their CRDs), as opposed to Kubernetes' own.
CRD_GROUPS = ("kaito.sh", "karpenter.sh")

# What each provisioning mode writes, so what the cluster must serve for it.
MODE_APIS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "kaito": (WORKSPACE_V1BETA1,),
    "byo": (WORKSPACE_V1BETA1,),
    "aks": (WORKSPACE_V1BETA1,),
    "nodeclaim": (WORKSPACE_V1BETA1, NODECLAIM_V1),
    "machine": (WORKSPACE_V1ALPHA1, MACHINE_V1ALPHA5),
}

# Why an API would be missing, and what to do instead (KAITO's history: v1beta1 since v0.4.5, Machines until v0.4.1,
# NodeClaims karpenter.sh/v1 since v0.4.2; `charts/kaito/workspace/crds/` at v0.12.0).
_MISSING_WHY: Mapping[tuple[str, str], str] = {
    WORKSPACE_V1BETA1: "kaito.sh/v1beta1 Workspace is not served: install KAITO v0.4.5 or later (v0.12.0 is what "
                       "gitops-kaito follows)",
    WORKSPACE_V1ALPHA1: "kaito.sh/v1alpha1 Workspace is not served: machine mode is for legacy KAITO (<= v0.4.1)",
    NODECLAIM_V1: "karpenter.sh/v1 NodeClaim is not served: Karpenter's (or gpu-provisioner's) CRDs are not "
                  "installed; use provisioning: kaito to let KAITO make its nodes, or byo for nodes you made",
    MACHINE_V1ALPHA5: "karpenter.sh/v1alpha5 Machine is not served: machine mode needs legacy KAITO's "
                      "gpu-provisioner (< v0.3.0); use provisioning: nodeclaim or kaito on a current KAITO",
    INFERENCESET_V1BETA1: "kaito.sh/v1beta1 InferenceSet is not served: replicas need KAITO v0.12.0's InferenceSet "
                          "(feature gate enableInferenceSetController, on by default)",
}

# KAITO's webhook lines that only say an object this pass creates first is not there yet
# (`api/v1beta1/inference_config_validation.go`, `api/v1beta1/workspace_validation.go` at v0.12.0).
CONFIG_MISSING = "ConfigMap '{name}' specified in 'config' not found in namespace '{namespace}'"
NO_NODES = "No nodes found matching the specified label selector"
VALIDATION_FAILED = "validation failed: "


def api_name(api: tuple[str, str]) -> str:
    return f"{api[0]} {api[1]}"


def mode_refusal(mode: str, served: Iterable[tuple[str, str]], rendered: Iterable[tuple[str, str]] = ()) -> str:
    """Why this cluster cannot run a model of this provisioning mode, or '' when it can. `rendered`: the
    (apiVersion, kind) of the model's objects; those of KAITO's and Karpenter's groups must be served too."""
    have = set(served)
    wanted = list(MODE_APIS.get(mode, ()))
    wanted += sorted(a for a in set(rendered) if a[0].split("/")[0] in CRD_GROUPS and a not in wanted)
    missing = [api for api in wanted if api not in have]
    if not missing:
        return ""
    return f"provisioning: {mode} cannot run on this cluster: " + "; ".join(
        _MISSING_WHY.get(a, f"{api_name(a)} is not served (its CRD is not installed)") for a in missing)


def unwaived(message: str, waivers: Iterable[str]) -> str:
    """The refusal left once the lines about objects this pass makes first are dropped ('' when nothing is left).

    A knative webhook lists one error per line after 'validation failed: '; any other refusal is kept whole unless it
    is itself one waived line (a namespace that does not exist yet)."""
    waived = [w for w in waivers if w]
    if not waived:
        return message
    head, sep, body = message.partition(VALIDATION_FAILED)
    if not sep:
        return "" if any(w in message for w in waived) else message
    kept = [line for line in body.split("\n") if line.strip() and not any(w in line for w in waived)]
    return head + sep + "\n".join(kept) if kept else ""


@dataclass(frozen=True)
class Refusal:
    """A model the cluster would refuse, and why; nothing of it is written."""

    model_id: str
    message: str
    ref: ObjectRef | None = None  # the object refused; None for a check about the model (mode, Secret)

    def text(self) -> str:
        return f"{self.ref}: {self.message}" if self.ref is not None else self.message


@dataclass(frozen=True)
class ClusterCheck:
    """What the preflight learned: the APIs served, the models refused, and what it could not check."""

    served: tuple[tuple[str, str], ...] = ()
    refused: tuple[Refusal, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()  # (model id, what could not be checked and why)
    # Models whose Workspace was dry-run before its ConfigMap or namespace existed: checked again before their
    # GPU nodes are created.
    recheck: frozenset[str] = frozenset()
    passed: frozenset[ObjectRef] = field(default_factory=frozenset)  # objects whose dry run was admitted

    @property
    def not_served(self) -> tuple[tuple[str, str], ...]:
        return tuple(a for a in KNOWN_APIS if a not in self.served)

    def refusal(self, model_id: str) -> Refusal | None:
        return next((r for r in self.refused if r.model_id == model_id), None)

    @property
    def refused_models(self) -> frozenset[str]:
        return frozenset(r.model_id for r in self.refused)

    def served_line(self) -> str:
        served = ", ".join(api_name(a) for a in KNOWN_APIS if a in self.served) or "none of KAITO's APIs"
        missing = ", ".join(api_name(a) for a in self.not_served)
        return f"Cluster serves {served}" + (f"; not {missing}" if missing else "") + "."
