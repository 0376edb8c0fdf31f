"""Typed handles for Kubernetes objects: what identifies one, and a desired object with its apply wave.

Manifests stay plain JSON-like dicts (that is what goes over the wire); everything around them is frozen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cached_property
from typing import Any

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

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef.of(self.manifest)

    @cached_property
    def normalised(self) -> Normalised:
        """What planning derives from the manifest alone (plan.normalise), computed on first use and kept: the
        long-running loops plan the same objects every pass (desiredcache), and a no-op pass normalised and
        digested every one of them again. (cached_property writes the instance __dict__ directly, which a frozen
        dataclass without slots allows.)"""
        from gitops_kaito.core.plan import normalise  # plan imports this module

        return normalise(self.manifest)


@dataclass(frozen=True)
class Normalised:
    """A desired manifest as planning compares and applies it. The manifest is never mutated (plan.with_digest
    shares all but its metadata), so this stays true for the object's life."""

    comparable: Any  # plan.comparable(manifest)
    digest: str  # plan.digest(manifest)
    stamped: Manifest  # plan.with_digest(manifest): plus the applied-digest annotation, as it is applied
