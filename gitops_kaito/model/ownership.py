"""The labels and annotations that mark what gitops-kaito owns, and the field manager it applies with.

Every object the reconciler creates carries these; prune and live-state reads rely on nothing else.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gitops_kaito.model import k8snames
from gitops_kaito.model.kaito import INFERENCESET_CREATED_BY_LABEL, KAITO_GROUP

FIELD_MANAGER = "gitops-kaito"
# Co-owns a field we set only at creation (an InferenceSet's spec.replicas under an autoscaler) so that our own
# manager can drop it without the server resetting it: Kubernetes' documented hand-over of a field to a controller.
HANDOFF_MANAGER = "gitops-kaito-handoff"

# Labels (selectable): who manages the object and which model request it belongs to.
# Not app.kubernetes.io/managed-by: gpu-provisioner and AKS copy NodeClaim/pool labels into kubelet's
# --node-labels, and kubelet refuses keys under *.kubernetes.io outside a small allowed set.
LABEL_MANAGED_BY = "gitops.kaito.sh/managed-by"
MANAGED_BY_VALUE = "gitops-kaito"
LABEL_MODEL = "gitops.kaito.sh/model"  # "<namespace>.<name>" (a valid label value)
LABEL_MODEL_NAMESPACE = "gitops.kaito.sh/model-namespace"
LABEL_MODEL_NAME = "gitops.kaito.sh/model-name"
# Which gitops-kaito instance (daemon) owns the object, so several can share a cluster without pruning each
# other's models. Objects made before instances existed have no such label: they belong to DEFAULT_INSTANCE.
LABEL_INSTANCE = "gitops.kaito.sh/instance"
DEFAULT_INSTANCE = "default"

# Annotations (provenance and per-object policy).
ANNOTATION_REVISION = "gitops.kaito.sh/revision"  # "<branch>@sha1:<sha>" of the source commit
ANNOTATION_SOURCE_PATH = "gitops.kaito.sh/source-path"  # models/<ns>/<name>.yaml
ANNOTATION_PRUNE = "gitops.kaito.sh/prune"  # "disabled" opts an object out of prune
ANNOTATION_DRIFT = "gitops.kaito.sh/drift"
DRIFT_CORRECT = "correct"
DRIFT_REPORT = "report"
ANNOTATION_REPLACE = "gitops.kaito.sh/replace"  # "allowed" lets an immutable change delete and recreate
# "allowed" on a model request lets a pass take over an object of the model's names that gitops-kaito did not make
# (`gitops-kaito import` writes it); without it such an object is left alone and the model is Blocked.
ANNOTATION_ADOPT = "gitops.kaito.sh/adopt"
# On a tuning Workspace: the digest of the TuningJob request it was rendered from. The same digest live and desired
# means the same run, whatever else differs (a template change must not retrain); another digest is a new run.
ANNOTATION_REQUEST_DIGEST = "gitops.kaito.sh/request-digest"

OWNER_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY_VALUE}"  # every instance's objects


def is_dns_label(value: Any) -> bool:
    """Whether value is a DNS-1123 label: what namespaces, model names and instance names must be."""
    return k8snames.is_dns_label(value)


def model_id(namespace: str, name: str) -> str:
    """The stable id of a model request, usable as a label value."""
    return f"{namespace}.{name}"


def owner_labels(namespace: str, name: str, instance: str = DEFAULT_INSTANCE) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY_VALUE,
        LABEL_MODEL: model_id(namespace, name),
        LABEL_MODEL_NAMESPACE: namespace,
        LABEL_MODEL_NAME: name,
        LABEL_INSTANCE: instance,
    }


def instance_selector(instance: str = DEFAULT_INSTANCE) -> str:
    """The label selector of the LIST that reads one instance's objects.

    The default instance also owns the objects without an instance label (made before instances existed), and
    no single selector says "label missing or = default". So it lists every gitops-kaito object and keeps its
    own with `owned_by` (one LIST per kind either way; other instances' objects are filtered out client-side).
    """
    if instance == DEFAULT_INSTANCE:
        return OWNER_SELECTOR
    return f"{OWNER_SELECTOR},{LABEL_INSTANCE}={instance}"


def is_owned(labels: dict[str, str] | None) -> bool:
    """Managed by some gitops-kaito instance (any)."""
    if not labels:
        return False
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY_VALUE and LABEL_MODEL in labels


def instance_of(labels: dict[str, str] | None) -> str:
    """The instance owning a managed object ('' when gitops-kaito does not manage it; no label = default)."""
    if not is_owned(labels):
        return ""
    assert labels is not None
    return labels.get(LABEL_INSTANCE) or DEFAULT_INSTANCE


def owned_by(labels: dict[str, str] | None, instance: str = DEFAULT_INSTANCE) -> bool:
    """Managed by this very instance: the only objects it may update without adopting, or prune."""
    return instance_of(labels) == instance


def kaito_owned(obj: Mapping[str, Any]) -> str:
    """Why one of KAITO's controllers owns this object ('' when none does): an InferenceSet's child Workspace
    (KAITO's created-by label) or anything with a controller ownerReference to a kaito.sh object. Such objects are
    never updated, adopted, imported or pruned, whatever labels they carry."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    parent = labels.get(INFERENCESET_CREATED_BY_LABEL) if isinstance(labels, Mapping) else None
    if parent:
        return f"a replica of KAITO's InferenceSet {parent} ({INFERENCESET_CREATED_BY_LABEL})"
    for ref in meta.get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") and str(ref.get("apiVersion", "")).startswith(
                f"{KAITO_GROUP}/"):
            return f"controlled by KAITO's {ref.get('kind')} {ref.get('name')}"
    return ""


@dataclass(frozen=True)
class Spared(Collection[str]):
    """The model ids prune must spare this pass: named ones, and every model of some namespaces (a folder that
    could not be read could hold any of them). `in` answers for both; iterating yields the named ids only."""

    ids: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()

    def __contains__(self, mid: object) -> bool:
        return isinstance(mid, str) and (mid in self.ids or mid.partition(".")[0] in self.namespaces)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, ids: Collection[str], more: Iterable[str] = ()) -> Spared:
        """`ids` (a Spared keeps its namespaces) with `more` ids added."""
        base = ids if isinstance(ids, Spared) else cls(frozenset(ids))
        return cls(base.ids | frozenset(more), base.namespaces)
