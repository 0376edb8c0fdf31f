"""KAITO's and Karpenter's own names that gitops-kaito reads or must avoid: reserved labels, the labels KAITO puts
on the nodes it makes for a Workspace, the node kinds, the KAITO release the catalog follows.

From KAITO v0.12.0 (`api/v1beta1/labels.go`, `pkg/utils/consts/consts.go`) and Karpenter's `karpenter.sh` API.
"""

from __future__ import annotations

KAITO_VERSION = "v0.12.0"

# On the NodeClaims/Machines KAITO creates for a Workspace (kaito.sh/workspace = its name).
KAITO_WORKSPACE_LABEL = "kaito.sh/workspace"
KAITO_WORKSPACE_NS_LABEL = "kaito.sh/workspacenamespace"
# On the NodeClaims KAITO creates for a RAGEngine (`pkg/utils/nodeclaim/nodeclaim.go` at v0.12.0).
KAITO_RAGENGINE_LABEL = "kaito.sh/ragengine"
KAITO_RAGENGINE_NS_LABEL = "kaito.sh/ragenginenamespace"

# Label keys KAITO reserves for the objects it creates: it drops them from a Workspace's labelSelector and refuses
# a matchLabels made only of them; never on objects we own.
RESERVED_LABEL_KEYS = frozenset({
    KAITO_WORKSPACE_LABEL, KAITO_WORKSPACE_NS_LABEL, "kaito.sh/ragengine", "kaito.sh/ragenginenamespace",
    "karpenter.kaito.sh/workspace-name", "karpenter.kaito.sh/workspace-namespace",
    "karpenter.kaito.sh/inferenceset", "karpenter.kaito.sh/inferenceset-namespace",
})

# GPU node objects: Karpenter's NodeClaim (karpenter.sh/v1) and the legacy Machine (karpenter.sh/v1alpha5).
NODE_KINDS = ("NodeClaim", "Machine")

# An InferenceSet's child Workspaces (`<set>-xxxxx`) carry this label, value = the set's name; KAITO finds them by it
# (`pkg/utils/consts/consts.go` and `pkg/utils/inferenceset/inferenceset.go` at v0.12.0; the website's
# `kaito.sh/inferenceset` is wrong). They are KAITO's: never rendered, diffed, adopted, imported or pruned.
INFERENCESET_CREATED_BY_LABEL = "inferenceset.kaito.sh/created-by"
# KAITO's karpenter node-provisioner mode: a NodePool per Workspace, its NodeClaims and Nodes carry these
# (`pkg/nodeprovision/karpenter/nodepool.go` at v0.12.0); the inferenceset pair on those of a set's children.
KARPENTER_WORKSPACE_NAME_LABEL = "karpenter.kaito.sh/workspace-name"
KARPENTER_WORKSPACE_NS_LABEL = "karpenter.kaito.sh/workspace-namespace"
KARPENTER_INFERENCESET_LABEL = "karpenter.kaito.sh/inferenceset"
KARPENTER_INFERENCESET_NS_LABEL = "karpenter.kaito.sh/inferenceset-namespace"
KAITO_GROUP = "kaito.sh"
