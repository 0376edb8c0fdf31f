"""The labels and annotations that mark what gitops-kaito owns, and the field manager it applies with.

Every object the reconciler creates carries these; prune and live-state reads rely on nothing else.
"""

from __future__ import annotations

FIELD_MANAGER = "gitops-kaito"

# Labels (selectable): who manages the object and which model request it belongs to.
# Not app.kubernetes.io/managed-by: gpu-provisioner and AKS copy NodeClaim/pool labels into kubelet's
# --node-labels, and kubelet refuses keys under *.kubernetes.io outside a small allowed set.
LABEL_MANAGED_BY = "gitops.kaito.sh/managed-by"
MANAGED_BY_VALUE = "gitops-kaito"
LABEL_MODEL = "gitops.kaito.sh/model"  # "<namespace>.<name>" (a valid label value)
LABEL_MODEL_NAMESPACE = "gitops.kaito.sh/model-namespace"
LABEL_MODEL_NAME = "gitops.kaito.sh/model-name"

# Annotations (provenance and per-object policy).
ANNOTATION_REVISION = "gitops.kaito.sh/revision"  # "<branch>@sha1:<sha>" of the source commit
ANNOTATION_SOURCE_PATH = "gitops.kaito.sh/source-path"  # models/<ns>/<name>.yaml
ANNOTATION_PRUNE = "gitops.kaito.sh/prune"  # "disabled" opts an object out of prune
ANNOTATION_REPLACE = "gitops.kaito.sh/replace"  # "allowed" lets an immutable change delete and recreate

OWNER_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"


def model_id(namespace: str, name: str) -> str:
    """The stable id of a model request, usable as a label value."""
    return f"{namespace}.{name}"


def owner_labels(namespace: str, name: str) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY_VALUE,
        LABEL_MODEL: model_id(namespace, name),
        LABEL_MODEL_NAMESPACE: namespace,
        LABEL_MODEL_NAME: name,
    }


def is_owned(labels: dict[str, str] | None) -> bool:
    if not labels:
        return False
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE and LABEL_MODEL in labels
