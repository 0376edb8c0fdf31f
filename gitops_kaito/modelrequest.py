"""A ModelDeployment request as read from models/<namespace>/<name>.yaml, and the error type for bad files.

Parsing here trusts that the document already passed the JSON Schema; it fills defaults from the repo config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitops_kaito.ownership import model_id

API_VERSION = "gitops.kaito.sh/v1alpha1"
KIND = "ModelDeployment"
RUNTIMES = ("vllm", "transformers")
PROVISIONING_MODES = ("kaito", "nodeclaim", "machine", "aks", "byo")
MAX_ADAPTERS = 10  # KAITO webhook rule (FACTS.md §4.2.9)


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter served next to the base model."""

    name: str
    image: str
    strength: str | None = None


@dataclass(frozen=True)
class ModelRequest:
    """One model the repository asks for, with the repo defaults already applied."""

    namespace: str
    name: str
    model: str
    instance_type: str | None
    nodes: int | None
    runtime: str
    provisioning: str
    node_selector: tuple[tuple[str, str], ...]
    config: tuple[tuple[str, Any], ...]  # inference parameters (the vllm section), sorted pairs
    adapters: tuple[Adapter, ...]
    model_access_secret: str | None
    suspend: bool
    annotations: tuple[tuple[str, str], ...]
    path: str  # repo-relative, e.g. models/ml/phi.yaml

    @property
    def id(self) -> str:
        return model_id(self.namespace, self.name)

    @property
    def max_model_len(self) -> int | None:
        value = dict(self.config).get("max-model-len")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class LoadError:
    """Why one file (or the repo config) could not become a model. model_id is None when unknown."""

    path: str
    line: int | None
    message: str
    model_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


def _pairs(mapping: Any) -> tuple[tuple[str, Any], ...]:
    if not isinstance(mapping, dict):
        return ()
    return tuple(sorted((str(k), v) for k, v in mapping.items()))


def request_from_document(data: dict[str, Any], *, namespace: str, path: str, default_runtime: str,
                          default_provisioning: str) -> ModelRequest:
    """Build a ModelRequest from a schema-valid document; namespace is the one already settled by the loader."""
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    adapters = tuple(
        Adapter(name=str(a["name"]), image=str(a["image"]),
                strength=None if a.get("strength") is None else str(a["strength"]))
        for a in spec.get("adapters") or ()
    )
    nodes = spec.get("nodes")
    return ModelRequest(
        namespace=namespace,
        name=str(meta["name"]),
        model=str(spec["model"]),
        instance_type=spec.get("instanceType") or None,
        nodes=int(nodes) if nodes is not None else None,
        runtime=str(spec.get("runtime") or default_runtime),
        provisioning=str(spec.get("provisioning") or default_provisioning),
        node_selector=tuple(sorted((str(k), str(v)) for k, v in (spec.get("nodeSelector") or {}).items())),
        config=_pairs(spec.get("config")),
        adapters=adapters,
        model_access_secret=spec.get("modelAccessSecret") or None,
        suspend=bool(spec.get("suspend", False)),
        annotations=tuple(sorted((str(k), str(v)) for k, v in (meta.get("annotations") or {}).items())),
        path=path,
    )
