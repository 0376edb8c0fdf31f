"""KAITO's and Karpenter's own names that gitops-kaito reads or must avoid: reserved labels, the labels KAITO puts
on the nodes it makes for a Workspace, the node kinds, the KAITO release the catalog follows.

From KAITO v0.12.0 (`api/v1beta1/labels.go`, `pkg/utils/consts/consts.go`) and Karpenter's `karpenter.sh` API.
"""

from __future__ import annotations

KAITO_VERSION = "v0.12.0"

# On the NodeClaims/Machines KAITO creates for a Workspace (kaito.sh/workspace = its name).
KAITO_WORKSPACE_LABEL = "kaito.sh/workspace"
KAITO_WORKSPACE_NS_LABEL = "kaito.sh/workspacenamespace"

# Label keys KAITO reserves for the objects it creates: it drops them from a Workspace's labelSelector and refuses
# a matchLabels made only of them; never on objects we own.
RESERVED_LABEL_KEYS = frozenset({
    KAITO_WORKSPACE_LABEL, KAITO_WORKSPACE_NS_LABEL, "kaito.sh/ragengine", "kaito.sh/ragenginenamespace",
    "karpenter.kaito.sh/workspace-name", "karpenter.kaito.sh/workspace-namespace",
    "karpenter.kaito.sh/inferenceset", "karpenter.kaito.sh/inferenceset-namespace",
})

# GPU node objects: Karpenter's NodeClaim (karpenter.sh/v1) and the legacy Machine (karpenter.sh/v1alpha5).
NODE_KINDS = ("NodeClaim", "Machine")
