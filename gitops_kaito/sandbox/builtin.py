"""The resource types the emulator serves: the built-in kinds table and the `ResourceType` record.

Custom resources get a `ResourceType` per served CRD version (see registry.py); built-ins are listed here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served resource in one group/version."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    custom: bool = False
    generation: bool = False  # whether metadata.generation is maintained
    storage_version: str = ""  # custom resources: the version objects are stored in
    storage_group: str | None = None  # another group whose objects these are, seen in another shape (None = own)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of all versions of one group/plural share one storage (events.k8s.io shares core's Events)."""
        return (self.group if self.storage_group is None else self.storage_group, self.plural)


def _t(
    group: str,
    version: str,
    kind: str,
    plural: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    status: bool = False,
    generation: bool = False,
) -> ResourceType:
    return ResourceType(
        group, version, kind, plural, kind.lower(), namespaced, short, (), status, False, generation, version
    )


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _t("", "v1", "Namespace", "namespaces", False, ("ns",), status=True),
    _t("", "v1", "Node", "nodes", False, ("no",), status=True),
    _t("", "v1", "Service", "services", True, ("svc",), status=True),
    _t("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    _t("", "v1", "Secret", "secrets", True),
    _t("", "v1", "Event", "events", True, ("ev",)),
    _t("", "v1", "Pod", "pods", True, ("po",), status=True),
    _t("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",)),
    _t("", "v1", "Endpoints", "endpoints", True, ("ep",)),
    # The volumes KAITO's tuning examples declare (tuning input/output, RAG vector storage); never bound here.
    _t("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), status=True),
    _t("apps", "v1", "Deployment", "deployments", True, ("deploy",), status=True, generation=True),
    replace(_t("events.k8s.io", "v1", "Event", "events", True, ("ev",)), storage_group=""),
    # The Job KAITO runs a tuning Workspace as (one per revision of the Workspace).
    _t("batch", "v1", "Job", "jobs", True, (), status=True, generation=True),
    _t("coordination.k8s.io", "v1", "Lease", "leases", True),
    _t(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        False,
        ("crd", "crds"),
        status=True,
        generation=True,
    ),
)

CRD_TYPE = BUILTIN_TYPES[-1]
NAMESPACE_TYPE = BUILTIN_TYPES[0]

# Strategic-merge / server-side-apply list keys of built-in kinds, by field name (an approximation of
# the patchMergeKey tags of k8s.io/api: the same field name has the same key wherever it appears).
BUILTIN_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "addresses": ("type",),
}
# Lists keyed differently depending on the parent field.
BUILTIN_PORT_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("containerPort",),
    "spec": ("port",),
}
