"""Pure rules of the preflight: which APIs a provisioning mode needs, and which lines of a webhook's refusal only
name an object the same pass creates first."""

from __future__ import annotations

from gitops_kaito.core.preflight import (
    KNOWN_APIS,
    NO_NODES,
    NODECLAIM_V1,
    WORKSPACE_V1BETA1,
    ClusterCheck,
    Refusal,
    mode_refusal,
    unwaived,
)

PREFIX = 'BadRequest: admission webhook "validation.workspace.kaito.sh" denied the request: validation failed: '
CONFIG = "ConfigMap 'phi-inference-config' specified in 'config' not found in namespace 'ml'"


def test_a_mode_needs_the_apis_it_writes() -> None:
    assert mode_refusal("kaito", [WORKSPACE_V1BETA1]) == ""
    why = mode_refusal("nodeclaim", [WORKSPACE_V1BETA1])
    assert why.startswith("provisioning: nodeclaim cannot run on this cluster: karpenter.sh/v1 NodeClaim is not")
    assert "use provisioning: kaito" in why
    assert mode_refusal("nodeclaim", [WORKSPACE_V1BETA1, NODECLAIM_V1]) == ""
    assert "legacy KAITO" in mode_refusal("machine", KNOWN_APIS[:1])
    # what the model renders counts too: replicas are an InferenceSet
    assert "kaito.sh/v1beta1 InferenceSet is not served" in mode_refusal(
        "kaito", [WORKSPACE_V1BETA1], [("kaito.sh/v1beta1", "InferenceSet"), ("v1", "ConfigMap")])


def test_only_the_lines_about_what_this_pass_makes_first_are_waived() -> None:
    both = PREFIX + f"{CONFIG}: config\n{NO_NODES}: resource"
    assert unwaived(both, [CONFIG, NO_NODES]) == ""
    assert unwaived(both, [NO_NODES]) == PREFIX + f"{CONFIG}: config"
    nap = PREFIX + "missing field(s): spec.instanceType is required when node auto-provisioning is enabled\n" \
        + f"{NO_NODES}: resource"
    assert unwaived(nap, [NO_NODES]) == PREFIX + "missing field(s): spec.instanceType is required when node " \
        "auto-provisioning is enabled"
    assert unwaived("Forbidden: exceeded quota", [NO_NODES]) == "Forbidden: exceeded quota"
    assert unwaived("anything", []) == "anything"


def test_the_served_line_names_what_is_missing() -> None:
    check = ClusterCheck(served=(WORKSPACE_V1BETA1, NODECLAIM_V1), refused=(Refusal("ml.phi", "no"),))
    assert check.served_line() == ("Cluster serves kaito.sh/v1beta1 Workspace, karpenter.sh/v1 NodeClaim; not "
                                   "kaito.sh/v1alpha1 Workspace, kaito.sh/v1beta1 InferenceSet, karpenter.sh/v1alpha5 "
                                   "Machine.")
    assert check.refusal("ml.phi") is not None and check.refused_models == {"ml.phi"}
