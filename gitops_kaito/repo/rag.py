"""A RAGDeployment request (a KAITO RAGEngine, models/<ns>/<name>.yaml, kind RAGDeployment) and its resolution.

Pure: KAITO v0.12.0's RAGEngine webhook rules that can be checked offline are checked here; the LLM a request names
by model is checked against the repository's other requests once all of them are resolved (`link_llm`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from gitops_kaito.model.kaito import RESERVED_LABEL_KEYS
from gitops_kaito.model.ownership import model_id
from gitops_kaito.repo.catalog import Catalog, GpuSku, hf_repo_id_problem, price_for
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.kinds import Identified, RequestKind, Resolved
from gitops_kaito.repo.resolve import ResolveError

KIND = "RAGDeployment"
SCHEMA_FILE = "ragdeployment.schema.json"
VECTOR_DB_ENGINES = ("qdrant",)  # what KAITO's RAG service speaks to (`api/v1beta1/ragengine_types.go` at v0.12.0)
# KAITO's local embedding image check (`api/v1beta1/ragengine_validation.go` at v0.12.0, LocalEmbeddingSpec).
_EMBEDDING_IMAGE = re.compile(r"^(.+/[^:/]+):([^:/]+)\Z")
# KAITO's SKU check lets any Azure name with these prefixes through (N-series GPU, D-series CPU VMs).
_AZURE_PREFIXES = ("standard_n", "standard_d")
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class RagRequest(Identified):
    """One RAG engine the repository asks for."""

    kind: ClassVar[str] = KIND
    namespace: str
    name: str
    path: str
    instance_type: str | None  # compute.instanceType; None: no compute (runs on the cluster's existing nodes)
    node_selector: tuple[tuple[str, str], ...]
    embedding_local_model: str | None
    embedding_local_image: str | None
    embedding_pull_secret: str | None
    embedding_access_secret: str | None  # local: modelAccessSecret; remote: accessSecret
    embedding_url: str | None
    storage_claim: str | None
    storage_mount_path: str | None
    vector_db_engine: str | None
    vector_db_url: str | None
    vector_db_secret: str | None
    guardrails_enabled: bool | None
    guardrails_config_map: str | None
    llm_model: str | None  # a ModelDeployment of the same namespace
    llm_url: str | None
    llm_secret: str | None
    context_window: int | None
    suspend: bool
    annotations: tuple[tuple[str, str], ...]

    @property
    def llm_model_id(self) -> str | None:
        return model_id(self.namespace, self.llm_model) if self.llm_model else None


@dataclass(frozen=True)
class ResolvedRag:
    """A RAG request with its compute decided: a catalog GPU SKU (priced), a CPU VM (unpriced), or none."""

    request: RagRequest
    sku: GpuSku | None
    label_selector: tuple[tuple[str, str], ...]
    provisioning: str = "kaito"
    uncataloged: bool = False

    @property
    def nodes(self) -> int:
        return 1 if self.request.instance_type else 0

    @property
    def gpus(self) -> int:
        return self.sku.gpu_count if self.sku is not None else 0

    @property
    def price_per_hour(self) -> float | None:
        return price_for(self.sku, 1) if self.sku is not None else None

    @property
    def note(self) -> str:
        if self.request.instance_type and self.sku is None:
            return (f"{self.request.instance_type} is not in KAITO's GPU SKU table (a CPU VM KAITO's webhook lets "
                    "through by its name): its price is not known")
        return ""

    @property
    def llm_endpoint(self) -> str | None:
        """The URL the engine answers with: the bound model's in-cluster chat URL, or llm.url."""
        request = self.request
        if request.llm_model:
            return chat_url(request.namespace, request.llm_model)
        return request.llm_url

    @property
    def summary(self) -> str:
        embed = self.request.embedding_local_model or self.request.embedding_local_image or "remote embedding"
        llm = f"LLM {self.request.llm_model}" if self.request.llm_model else (
            "LLM by URL" if self.request.llm_url else "retrieve only")
        return f"RAG: {embed}, {llm}"


def chat_url(namespace: str, workspace: str) -> str:
    """A Workspace's chat endpoint inside the cluster: KAITO's Service <name>, port 80 (`pkg/workspace/manifests/
    manifests.go` at v0.12.0); KAITO's RAG service wants the full chat URL in inferenceService.url."""
    return f"http://{workspace}.{namespace}.svc.cluster.local:80{CHAT_PATH}"


def _pairs(mapping: Any) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items())) if isinstance(mapping, dict) else ()


def _get(data: Mapping[str, Any], *path: str) -> Any:
    node: Any = data
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def request_from_document(data: dict[str, Any], namespace: str, path: str, config: RepoConfig) -> RagRequest:
    """A RagRequest from a schema-valid document (the loader settled the namespace)."""
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    local = _get(spec, "embedding", "local") or {}
    remote = _get(spec, "embedding", "remote") or {}
    window = _get(spec, "contextWindowSize")
    enabled = _get(spec, "guardrails", "enabled")
    return RagRequest(
        namespace=namespace, name=str(meta["name"]), path=path,
        instance_type=_get(spec, "compute", "instanceType") or None,
        node_selector=_pairs(_get(spec, "compute", "nodeSelector")),
        embedding_local_model=local.get("model") or None, embedding_local_image=local.get("image") or None,
        embedding_pull_secret=local.get("pullSecret") or None,
        embedding_access_secret=(local.get("modelAccessSecret") or remote.get("accessSecret")) or None,
        embedding_url=remote.get("url") or None,
        storage_claim=_get(spec, "storage", "persistentVolumeClaim") or None,
        storage_mount_path=_get(spec, "storage", "mountPath") or None,
        vector_db_engine=_get(spec, "vectorDB", "engine") or None, vector_db_url=_get(spec, "vectorDB", "url") or None,
        vector_db_secret=_get(spec, "vectorDB", "accessSecret") or None,
        guardrails_enabled=enabled if isinstance(enabled, bool) else None,
        guardrails_config_map=_get(spec, "guardrails", "configMap") or None,
        llm_model=_get(spec, "llm", "model") or None, llm_url=_get(spec, "llm", "url") or None,
        llm_secret=_get(spec, "llm", "accessSecret") or None,
        context_window=window if isinstance(window, int) and not isinstance(window, bool) else None,
        suspend=bool(spec.get("suspend", False)), annotations=_pairs(meta.get("annotations")),
    )


def url_problem(url: str) -> str:
    """Why url is not an absolute http(s) URL (KAITO: url.ParseRequestURI), or ""."""
    try:
        parts = urlsplit(url)
    except ValueError as err:
        return f"URL input error: {err}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"URL input error: {url!r} is not an absolute http(s) URL"
    return ""


def resolve_rag(request: RagRequest, catalog: Catalog, config: RepoConfig) -> ResolvedRag:
    """KAITO's RAGEngine rules on the request, and its compute; ResolveError names the field."""
    local = request.embedding_local_model or request.embedding_local_image
    if bool(local) == bool(request.embedding_url):
        raise ResolveError(("spec", "embedding"), "Either remote embedding or local embedding must be specified, "
                           + ("but not both" if local else "not neither"))
    if request.embedding_local_model and request.embedding_local_image:
        raise ResolveError(("spec", "embedding", "local"), "Either image or model must be specified, but not both")
    if request.embedding_local_model:
        problem = hf_repo_id_problem(request.embedding_local_model)
        if problem:
            raise ResolveError(("spec", "embedding", "local", "model"), f"the local embedding model is a Hugging "
                               f"Face id such as BAAI/bge-small-en-v1.5: {problem}")
    if request.embedding_local_image and not _EMBEDDING_IMAGE.match(request.embedding_local_image):
        raise ResolveError(("spec", "embedding", "local", "image"),
                           "Invalid image format, require full input image URL (registry/name:tag)")
    for path, url in ((("spec", "embedding", "remote", "url"), request.embedding_url),
                      (("spec", "llm", "url"), request.llm_url), (("spec", "vectorDB", "url"), request.vector_db_url)):
        if url and url_problem(url):
            raise ResolveError(path, url_problem(url))
    if request.llm_model and request.llm_url:
        raise ResolveError(("spec", "llm"), "llm names a model of this repository or a url, not both")
    if (request.llm_model or request.llm_url) and request.context_window is None:
        raise ResolveError(("spec",), "contextWindowSize is required with llm: KAITO needs the LLM's context window "
                           "(a positive integer, at most the model's max-model-len)")
    if request.context_window is not None and request.context_window <= 0:
        raise ResolveError(("spec", "contextWindowSize"), "ContextWindowSize must be a positive integer")
    if request.vector_db_engine and request.vector_db_engine not in VECTOR_DB_ENGINES:
        raise ResolveError(("spec", "vectorDB", "engine"), f"vector DB engine {request.vector_db_engine!r}: KAITO's "
                           f"RAG service supports {', '.join(VECTOR_DB_ENGINES)}")
    if request.guardrails_config_map and request.guardrails_enabled is False:
        raise ResolveError(("spec", "guardrails"), "guardrails names a configMap but is disabled (enabled: false)")
    sku = None
    selector: tuple[tuple[str, str], ...] = ()
    if request.instance_type:
        sku = catalog.sku(request.instance_type, tuple(config.clouds))
        if sku is None and not (request.instance_type.lower().startswith(_AZURE_PREFIXES)
                                and "azure" in config.clouds):
            raise ResolveError(("spec", "compute", "instanceType"), f"Unsupported instance type "
                               f"{request.instance_type}: neither a GPU SKU of {', '.join(config.clouds)} "
                               "(`gitops-kaito catalog skus`) nor an Azure Standard_N*/Standard_D* VM")
        selector = _label_selector(request)
    elif request.node_selector:
        raise ResolveError(("spec", "compute", "nodeSelector"), "compute.nodeSelector needs compute.instanceType")
    return ResolvedRag(request=request, sku=sku, label_selector=selector)


def _label_selector(request: RagRequest) -> tuple[tuple[str, str], ...]:
    if not request.node_selector:
        return (("apps", request.name),)
    kept = tuple((k, v) for k, v in request.node_selector if k not in RESERVED_LABEL_KEYS)
    if not kept:
        raise ResolveError(("spec", "compute", "nodeSelector"), "nodeSelector has only KAITO-reserved keys: KAITO "
                           "rejects such a labelSelector")
    return kept


def link_llm(resolved: Mapping[str, Resolved]) -> list[tuple[str, tuple[str | int, ...], str]]:
    """A RAG engine that names its LLM by model: that model is a ModelDeployment of the repository, served by one
    Workspace (an InferenceSet has no single Service), and the context window fits its max-model-len."""
    problems: list[tuple[str, tuple[str | int, ...], str]] = []
    for rid, item in resolved.items():
        if not isinstance(item, ResolvedRag) or not item.request.llm_model_id:
            continue
        target = resolved.get(item.request.llm_model_id)
        where: tuple[str | int, ...] = ("spec", "llm", "model")
        if target is None:
            others = sorted(r.request.name for r in resolved.values()
                            if r.request.namespace == item.request.namespace and getattr(r.request, "kind", "ModelDeployment") == "ModelDeployment")
            problems.append((rid, where, f"llm.model {item.request.llm_model!r} is not a model of namespace "
                             f"{item.request.namespace} in this repository (or its file is invalid)"
                             + (f"; models there: {', '.join(others)}" if others else "")))
            continue
        if getattr(target.request, "kind", "ModelDeployment") != "ModelDeployment":
            problems.append((rid, where, f"llm.model {item.request.llm_model!r} is a {getattr(target.request, 'kind', '')}, not a "
                             "ModelDeployment"))
            continue
        if getattr(target, "replicas", None) is not None:
            problems.append((rid, where, f"llm.model {item.request.llm_model!r} runs as an InferenceSet, which has no "
                             "single Service to bind to: use llm.url"))
            continue
        length = getattr(target.request, "max_model_len", None)
        token_limit = getattr(getattr(target, "preset", None), "token_limit", 0) or None
        cap = length or token_limit
        if cap and item.request.context_window and item.request.context_window > cap:
            problems.append((rid, ("spec", "contextWindowSize"), f"contextWindowSize {item.request.context_window} "
                             f"exceeds what {item.request.llm_model} serves ({cap} tokens"
                             f"{', its max-model-len' if length else ''})"))
    return problems


RAG_DEPLOYMENT = RequestKind(kind=KIND, schema_file=SCHEMA_FILE, parse=request_from_document, resolve=resolve_rag)
