"""Which resources are served: built-in kinds plus the versions of installed CRDs, and discovery documents.

CRDs become `ResourceType`s with compiled schemas, list-map keys and printer columns per served version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitops_kaito.sandbox.builtin import (
    ALL_VERBS,
    BUILTIN_LIST_KEYS,
    BUILTIN_PORT_KEYS,
    BUILTIN_TYPES,
    ResourceType,
)
from gitops_kaito.sandbox.schema import CompiledSchema

KUBE_VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-gitops-kaito-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z",
    "goVersion": "go1.22.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

DEFAULT_PRINTER_COLUMNS = ({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},)


@dataclass
class CrdVersion:
    """What one served version of a CRD adds to its ResourceType."""

    type: ResourceType
    schema: CompiledSchema
    printer_columns: tuple[dict[str, Any], ...] = ()
    scale: bool = False


@dataclass
class Registry:
    """Served types by (group, version, plural); mutated only under the store lock."""

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    crd_versions: dict[tuple[str, str, str], CrdVersion] = field(default_factory=dict)
    crd_names: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for t in BUILTIN_TYPES:
            self.types[(t.group, t.version, t.plural)] = t

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def crd(self, t: ResourceType) -> CrdVersion | None:
        return self.crd_versions.get((t.group, t.version, t.plural))

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        return [t for (g, _, p), t in self.types.items() if g == group and p == plural]

    def list_keys(self, t: ResourceType) -> Any:
        info = self.crd(t)
        if info is not None:
            keys = info.schema.list_keys

            def crd_keys(path: tuple[str, ...]) -> tuple[str, ...] | None:
                found = keys.get(path)
                if found is None and path and path[-1] == "conditions":
                    return ("type",)
                return found

            return crd_keys
        return builtin_list_keys

    # -- CRDs --

    def install(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec["group"]
        self.uninstall(crd["metadata"]["name"])
        storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "")
        installed = []
        for v in spec.get("versions") or []:
            if not v.get("served", True):
                continue
            subresources = v.get("subresources") or {}
            t = ResourceType(
                group=group,
                version=v["name"],
                kind=names["kind"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                custom=True,
                generation=True,
                storage_version=storage,
            )
            key = (group, v["name"], t.plural)
            raw_schema = (v.get("schema") or {}).get("openAPIV3Schema")
            columns = tuple(v.get("additionalPrinterColumns") or ()) or DEFAULT_PRINTER_COLUMNS
            self.types[key] = t
            self.crd_versions[key] = CrdVersion(t, CompiledSchema.compile(raw_schema), columns, "scale" in subresources)
            installed.append(key)
        self.crd_names[crd["metadata"]["name"]] = installed

    def uninstall(self, crd_name: str) -> list[ResourceType]:
        removed = []
        for key in self.crd_names.pop(crd_name, []):
            t = self.types.pop(key, None)
            self.crd_versions.pop(key, None)
            if t is not None:
                removed.append(t)
        return removed

    # -- discovery --

    def group_versions(self) -> dict[str, list[str]]:
        """Group -> versions, preferred (storage, else newest-looking) first."""
        out: dict[str, list[str]] = {}
        for g, v, _ in self.types:
            if g and v not in out.setdefault(g, []):
                out[g].append(v)
        for versions in out.values():
            versions.sort(key=_version_priority)
        return out

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.group_versions().get(group)
        if not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": entries, "preferredVersion": entries[0]}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        resources: list[dict[str, Any]] = []
        for (g, v, _), t in sorted(self.types.items()):
            if g != group or v != version:
                continue
            entry: dict[str, Any] = {
                "name": t.plural,
                "singularName": t.singular,
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": list(ALL_VERBS),
            }
            if t.short_names:
                entry["shortNames"] = list(t.short_names)
            if t.categories:
                entry["categories"] = list(t.categories)
            resources.append(entry)
            if t.status_subresource:
                resources.append(
                    {
                        "name": f"{t.plural}/status",
                        "singularName": "",
                        "namespaced": t.namespaced,
                        "kind": t.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources,
        }


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA > beta > alpha, then higher numbers first."""
    import re

    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?\Z", version)
    if not m:
        return (9, 0, 0)
    major, stage, minor = m.groups()
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -int(major), -int(minor or 0))


def builtin_list_keys(path: tuple[str, ...]) -> tuple[str, ...] | None:
    if not path:
        return None
    last = path[-1]
    if last == "ports":
        parent = path[-3] if len(path) >= 3 and path[-2] == "[]" else path[-2] if len(path) >= 2 else ""
        return BUILTIN_PORT_KEYS.get(parent, ("port",))
    return BUILTIN_LIST_KEYS.get(last)
