"""Typed handles for Kubernetes objects (what identifies one, a desired object with its apply wave) and the
manifest normal form planning compares: cleaned, digested, projected onto the fields we own.

Manifests stay plain JSON-like dicts (that is what goes over the wire); everything around them is frozen.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import Any

from gitops_kaito.model.ownership import (
    ANNOTATION_ADOPT,
    ANNOTATION_DRIFT,
    ANNOTATION_REVISION,
    FIELD_MANAGER,
)

Manifest = dict[str, Any]


class Wave(IntEnum):
    """Apply order: config first, then GPU nodes, then Workspaces. Deletes run in reverse."""

    CONFIG = 0  # ConfigMaps, Secrets
    NODES = 1  # NodeClaims, Machines (AKS agent pools are not Kubernetes objects)
    WORKLOAD = 2  # Workspaces


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identifies one object: apiVersion, kind, namespace ('' when cluster-scoped) and name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectRef:
        meta = manifest.get("metadata") or {}
        return cls(
            str(manifest.get("apiVersion", "")),
            str(manifest.get("kind", "")),
            str(meta.get("namespace") or ""),
            str(meta.get("name", "")),
        )

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.split("/")[-1]

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind}/{where}{self.name}"


@dataclass(frozen=True)
class DesiredObject:
    """One object the reconciler wants in the cluster, with the model it belongs to and its apply wave."""

    manifest: Manifest = field(compare=False, hash=False)
    model_id: str
    wave: Wave
    # Fields set when the object is created and never owned afterwards (an autoscaled InferenceSet's
    # spec.replicas), as a partial manifest: planning shows them on a create and never compares them again.
    create_only: Manifest | None = field(default=None, compare=False, hash=False)

    @cached_property
    def ref(self) -> ObjectRef:
        # Kept: planning asks for it several times per object and pass, and the manifest is never mutated.
        return ObjectRef.of(self.manifest)

    @cached_property
    def normalised(self) -> Normalised:
        """What planning derives from the manifest alone (normalise), computed on first use and kept: the
        long-running loops plan the same objects every pass (desiredcache), and a no-op pass normalised and
        digested every one of them again. (cached_property writes the instance __dict__ directly, which a frozen
        dataclass without slots allows.)"""
        return normalise(self.manifest)


@dataclass(frozen=True)
class Normalised:
    """A desired manifest as planning compares and applies it. The manifest is never mutated (with_digest
    shares all but its metadata), so this stays true for the object's life."""

    comparable: Any  # comparable(manifest)
    digest: str  # digest(manifest)
    stamped: Manifest  # with_digest(manifest): plus the applied-digest annotation, as it is applied


# --- The normal form: what planning compares and stamps -------------------------------------------------

# Digest of what we last applied (revision annotation excluded). It makes drift exact: when live differs
# from desired but the digest says we wanted the same thing last time, somebody else changed the object.
ANNOTATION_DIGEST = "gitops.kaito.sh/applied-digest"

# Annotations that never take part in a comparison: our provenance (changes every commit, rewritten only
# with a real change), the model's drift policy (switching it is not a change of desired state: to `report` must
# not overwrite the hand edit it means to keep, to `correct` reverts it as drift), the model's consent to adoption
# (removing it once adopted changes nothing) and what KAITO's controller writes on Workspaces
# (`pkg/workspace/controllers/workspace_controller.go` at v0.12.0).
_IGNORED_ANNOTATIONS = (ANNOTATION_REVISION, ANNOTATION_DIGEST, ANNOTATION_DRIFT, ANNOTATION_ADOPT)
_IGNORED_ANNOTATION_PREFIXES = ("workspace.kaito.io/", "inferenceset.kaito.io/")

# Metadata the server or other controllers set; never ours to compare even if a template carries it.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds", "managedFields", "finalizers", "selfLink", "ownerReferences")


@dataclass(frozen=True)
class ManagedKind:
    """A kind the reconciler renders and reads back: one LIST per pass (watched by the long-running loops).

    list_all: the LIST has no label selector and is split client-side, because objects of the kind that KAITO made
    are needed too (its NodeClaims for status, an InferenceSet's child Workspaces for nodes and import); else the
    LIST selects our owner label. required: without it KAITO is not installed (nothing can be done); a kind that
    is not required and not served is skipped (a desired object of it fails its model alone).
    """

    kind: str
    versions: tuple[str, ...]  # apiVersions to read with, preferred first
    wave: Wave
    list_all: bool = False
    required: bool = False


WORKSPACE_VERSIONS = ("kaito.sh/v1beta1", "kaito.sh/v1alpha1")
INFERENCESET_VERSIONS = ("kaito.sh/v1beta1",)

# Secrets are deliberately absent: we never render one, and reading Secrets would need RBAC we should not ask for.
MANAGED_KINDS: tuple[ManagedKind, ...] = (
    ManagedKind("ConfigMap", ("v1",), Wave.CONFIG),
    ManagedKind("NodeClaim", ("karpenter.sh/v1",), Wave.NODES, list_all=True),
    ManagedKind("Machine", ("karpenter.sh/v1alpha5",), Wave.NODES, list_all=True),
    ManagedKind("Workspace", WORKSPACE_VERSIONS, Wave.WORKLOAD, list_all=True, required=True),
    ManagedKind("InferenceSet", INFERENCESET_VERSIONS, Wave.WORKLOAD),
    # RAGDeployment requests; skipped (no LIST) on a cluster that does not serve it (KAITO without its RAG CRD).
    ManagedKind("RAGEngine", ("kaito.sh/v1beta1",), Wave.WORKLOAD),
)
_WAVES = {k.kind: k.wave for k in MANAGED_KINDS}


def merge_partial(manifest: Manifest, partial: Manifest) -> Manifest:
    """`manifest` with the fields of `partial` set (mappings merged, the rest replaced); neither is changed."""
    out = dict(manifest)
    for key, value in partial.items():
        base = out.get(key)
        out[key] = merge_partial(base, value) if isinstance(base, dict) and isinstance(value, dict) else value
    return out


def wave_of(ref: ObjectRef) -> Wave:
    return _WAVES.get(ref.kind, Wave.CONFIG)


def digest(manifest: Manifest) -> str:
    """A stable digest of a desired manifest, ignoring the annotations that never count as a change."""
    return _digest_of(comparable(manifest))


def normalise(manifest: Manifest) -> Normalised:
    """comparable(), digest() and with_digest() of a desired manifest, from one normalisation (what
    DesiredObject.normalised keeps)."""
    normal = comparable(manifest)
    stamp = _digest_of(normal)
    return Normalised(normal, stamp, with_digest(manifest, stamp))


def _digest_of(normalised: Any) -> str:
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def with_digest(manifest: Manifest, stamp: str = "") -> Manifest:
    """The manifest plus our applied-digest annotation (`stamp`: its digest, when the caller has it already).
    Only the metadata path is copied: the rest is shared with the desired manifest, which nothing mutates (a deep
    copy per object was a third of plan time)."""
    meta = dict(manifest.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), ANNOTATION_DIGEST: stamp or digest(manifest)}
    return {**manifest, "metadata": meta}


def owned_fields(live: Manifest) -> Mapping[str, Any] | None:
    """The fieldsV1 tree our field manager owns through apply, or None when the server keeps none."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply":
            tree = entry.get("fieldsV1")
            return tree if isinstance(tree, Mapping) else None
    return None


def applied_by_us(live: Manifest) -> bool:
    """Whether our field manager ever applied this object; labels alone can be copied onto anything.

    Like Argo CD's self-referencing tracking id, this keeps prune away from a copy of one of our objects. A server
    that keeps no managedFields at all leaves the labels as the only evidence.
    """
    entries = (live.get("metadata") or {}).get("managedFields")
    if not entries:
        return True
    return any(e.get("manager") == FIELD_MANAGER for e in entries if isinstance(e, Mapping))


def foreign_owned(live: Manifest) -> list[tuple[Any, Mapping[str, Any]]]:
    """(manager, fieldsV1 tree) of other managers' updates (kubectl edit/patch, controllers); the manager may be
    missing."""
    return [(e.get("manager"), e["fieldsV1"]) for e in (live.get("metadata") or {}).get("managedFields") or []
            if e.get("manager") != FIELD_MANAGER and isinstance(e.get("fieldsV1"), Mapping)]


def project(live: Any, desired: Any, owned: Mapping[str, Any] | None = None) -> Any:
    """Live restricted to the paths desired has, plus paths we own but no longer want (they show as removals).

    This is what keeps status, managedFields, finalizers, server defaults and other managers' fields out of
    the diff without a list of exceptions.
    """
    if isinstance(desired, Mapping) and isinstance(live, Mapping):
        out: dict[str, Any] = {}
        for k, v in live.items():
            sub = owned.get(f"f:{k}") if isinstance(owned, Mapping) else None
            if k in desired:
                out[k] = project(v, desired[k], sub if isinstance(sub, Mapping) else None)
            elif sub is not None:
                out[k] = v
        return out
    if isinstance(desired, list) and isinstance(live, list) and len(desired) == len(live):
        return [project(lv, dv) for lv, dv in zip(live, desired, strict=True)]
    return live


def comparable(manifest: Any) -> Any:
    """Normalise for comparison: no apiVersion, nulls, empty maps, server metadata or ignored annotations.

    The result's top level and metadata are new dicts; below them, what normalising leaves as it was is shared
    with `manifest`, not copied (neither is mutated there), so the form each desired object keeps across passes
    (objects.DesiredObject.normalised) costs little memory."""
    cleaned = _clean(manifest)
    if not isinstance(cleaned, dict):
        return cleaned
    # The top level and metadata are always new dicts: _clean may have returned the manifest's own. No apiVersion:
    # live is read in one version per kind, and identity ignores it too.
    cleaned = {k: v for k, v in cleaned.items() if k != "apiVersion"}
    meta = cleaned.get("metadata")
    if isinstance(meta, dict):
        meta = cleaned["metadata"] = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
        if isinstance(meta.get("annotations"), dict):
            kept = {k: v for k, v in meta["annotations"].items()
                    if k not in _IGNORED_ANNOTATIONS and not k.startswith(_IGNORED_ANNOTATION_PREFIXES)}
            if kept:
                meta["annotations"] = kept
            else:
                del meta["annotations"]
    return cleaned


def _clean(value: Any) -> Any:
    """`value` without nulls and empty maps. A dict or list with nothing to drop is returned itself: a copy is
    made only from the first entry that differs (most have none)."""
    if isinstance(value, (str, int, float)):  # most values are leaves: spared the Mapping (ABC) check
        return value
    if isinstance(value, Mapping):
        out: dict[str, Any] | None = None if type(value) is dict else {}
        for i, (k, v) in enumerate(value.items()):
            c = _clean(v)
            keep = c is not None and not (isinstance(c, dict) and not c)
            if out is None:
                if keep and c is v:
                    continue
                out = dict(itertools.islice(value.items(), i))  # the entries before this one were kept as they are
            if keep:
                out[k] = c
        return value if out is None else out
    if isinstance(value, list):
        items = [_clean(v) for v in value]
        return value if all(c is v for c, v in zip(items, value, strict=True)) else items
    return value
