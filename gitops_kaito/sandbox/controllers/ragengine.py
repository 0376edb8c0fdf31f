"""Simulated KAITO RAGEngine controller and the RAG service behind its Service, answered through the service proxy.

Follows KAITO v0.12.0 `pkg/ragengine/controllers/ragengine_controller.go` and `pkg/ragengine/manifests/manifests.go`:
- Finalizer ragengine.finalizer.kaito.sh; annotations ragengine.kaito.io/hash (sha256 of spec) and
  ragengine.kaito.io/revision.
- With spec.compute.instanceType: a Ready node matching the matchLabels and the instance type is reused, else ONE
  gpu-provisioner NodeClaim is made (name ws<9 hex>, labels karpenter.sh/nodepool=kaito, kaito.sh/ragengine,
  kaito.sh/ragenginenamespace plus the matchLabels, nodeClassRef kaito.sh/KaitoNodeClass, 200Gi). Without compute
  the engine runs on whatever nodes exist (no NodeClaimReady condition).
- Service <name>: port 80 -> 5000 named http, selector kaito.sh/ragengine=<name>, publishNotReadyAddresses; created
  only when absent. Deployment <name> (1 replica); an update rewrites only the container env.
- Conditions with observedGeneration: NodeClaimReady (Unknown CreateNodeClaimPending, then True
  installNodePluginsSuccess), ResourceReady (ragengineResourceStatusSuccess), ServiceReady (RAGEngineServiceSuccess),
  RAGEngineSucceeded (ragengineSucceeded). Deletion deletes its NodeClaims, Service and Deployment, then the
  finalizer.

The RAG service (`presets/ragengine/main.py`): GET /health, GET /indexes, POST /index, POST /retrieve and POST
/v1/chat/completions, which forwards to the LLM of spec.inferenceService.url when that names an in-cluster Service
(`http://<service>.<namespace>.svc.cluster.local[:80]/v1/chat/completions`) whose model server answers; 503 until
RAGEngineSucceeded. Approximations: no pods (ResourceReady follows the node), in-memory indexes, word-overlap
retrieval, no admission webhook, and only v1beta1 objects are reconciled (v1alpha1 ones are stored as written).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, cast
from urllib.parse import urlparse

from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox.controllers import conditions as c
from gitops_kaito.sandbox.controllers.base import Controller, make_api_client
from gitops_kaito.sandbox.controllers.failures import FailureBook
from gitops_kaito.sandbox.controllers.kaito import node_ready, nodeclaim_name
from gitops_kaito.sandbox.controllers.timing import Timing

GROUP, VERSION, PLURAL = "kaito.sh", "v1beta1", "ragengines"
FINALIZER = "ragengine.finalizer.kaito.sh"
ANNOTATION_HASH = "ragengine.kaito.io/hash"
ANNOTATION_REVISION = "ragengine.kaito.io/revision"
LABEL_RAGENGINE = "kaito.sh/ragengine"
LABEL_RAGENGINE_NS = "kaito.sh/ragenginenamespace"
LABEL_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
IMAGE = "mcr.microsoft.com/aks/kaito/kaito-rag-service:0.12.0"
NODECLAIM_READY, RESOURCE_READY, SERVICE_READY = "NodeClaimReady", "ResourceReady", "ServiceReady"
RAG_SUCCEEDED = "RAGEngineSucceeded"
RESERVED = frozenset({"kaito.sh/workspace", "kaito.sh/workspacenamespace", LABEL_RAGENGINE, LABEL_RAGENGINE_NS})

Reply = tuple[int, dict[str, str], bytes]
ProxyHandler = Callable[[str, str, "str | int | None", str, str, "bytes | str | None"], "Reply | None"]
_IN_CLUSTER = re.compile(r"^(?P<svc>[a-z0-9-]+)\.(?P<ns>[a-z0-9-]+)\.svc(\.cluster\.local)?\Z")


def spec_hash(rag: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(rag.get("spec") or {}, sort_keys=True).encode()).hexdigest()


def match_labels(rag: dict[str, Any]) -> dict[str, str]:
    sel = ((rag.get("spec") or {}).get("compute") or {}).get("labelSelector") or {}
    return {str(k): str(v) for k, v in (sel.get("matchLabels") or {}).items() if k not in RESERVED}


def owned_by(obj: dict[str, Any], rag: dict[str, Any]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    meta = rag["metadata"]
    return labels.get(LABEL_RAGENGINE) == meta["name"] and labels.get(LABEL_RAGENGINE_NS) == meta["namespace"]


def env_of(rag: dict[str, Any]) -> list[dict[str, str]]:
    """The container env KAITO derives from the spec (`pkg/ragengine/manifests/manifests.go`); names approximate."""
    spec = rag.get("spec") or {}
    embedding = spec.get("embedding") or {}
    llm = spec.get("inferenceService") or {}
    storage = spec.get("storage") or {}
    mount = ((storage.get("persistentVolume") or {}).get("mountPath") or "/mnt/data")
    env = {"EMBEDDING_TYPE": "remote" if embedding.get("remote") else "local",
           "LLM_INFERENCE_URL": str(llm.get("url") or ""),
           "LLM_CONTEXT_WINDOW": str(llm.get("contextWindowSize") or ""),
           "ACCESS_SECRET": str(llm.get("accessSecret") or ""),
           "VECTOR_DB_TYPE": str((storage.get("vectorDB") or {}).get("engine") or "faiss"),
           "DEFAULT_VECTOR_DB_PERSIST_DIR": f"{mount}/{rag['metadata']['name']}"}
    local = embedding.get("local") or {}
    if local.get("modelID"):
        env["MODEL_ID"] = str(local["modelID"])
    if (embedding.get("remote") or {}).get("url"):
        env["EMBEDDING_URL"] = str(embedding["remote"]["url"])
    return [{"name": k, "value": v} for k, v in env.items()]


class RagEngineController(Controller):
    """The RAGEngine controller (v1beta1 objects)."""

    name = "ragengine"

    def __init__(self, url: str, timing: Timing, failures: FailureBook) -> None:
        super().__init__(url, timing, failures)
        self.apps = client.AppsV1Api(self.api)

    def watched(self) -> list[Any]:
        return [partial(self.kube.custom.list_cluster_custom_object, GROUP, VERSION, PLURAL),
                partial(self.kube.custom.list_cluster_custom_object, "karpenter.sh", "v1", "nodeclaims",
                        label_selector=LABEL_RAGENGINE),
                self.kube.core.list_node]

    def reconcile(self) -> float | None:
        engines = self.kube.list_custom(GROUP, VERSION, PLURAL)
        if engines is None:  # the CRD is not installed
            return None
        claims = self.kube.list_custom("karpenter.sh", "v1", "nodeclaims", label_selector=LABEL_RAGENGINE) or []
        nodes = self.kube.list_nodes()
        for rag in engines:
            self._reconcile(rag, [cl for cl in claims if owned_by(cl, rag)], nodes)
        return None

    def _patch(self, rag: dict[str, Any], patch: dict[str, Any], status: bool = False) -> None:
        meta = rag["metadata"]
        self.kube.patch_custom(GROUP, VERSION, PLURAL, meta["name"], patch, namespace=meta["namespace"],
                               status=status)

    def _reconcile(self, rag: dict[str, Any], claims: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> None:
        meta = rag["metadata"]
        if meta.get("deletionTimestamp"):
            self._finalize(rag, claims)
            return
        finalizers = list(meta.get("finalizers") or [])
        annotations = dict(meta.get("annotations") or {})
        digest = spec_hash(rag)
        if FINALIZER not in finalizers or annotations.get(ANNOTATION_HASH) != digest:
            revision = int(annotations.get(ANNOTATION_REVISION, "0") or "0") + (
                annotations.get(ANNOTATION_HASH) != digest)
            self._patch(rag, {"metadata": {"finalizers": sorted({*finalizers, FINALIZER}),
                                           "annotations": {ANNOTATION_HASH: digest,
                                                           ANNOTATION_REVISION: str(revision)}}})
            return
        gen = meta.get("generation")
        compute = (rag.get("spec") or {}).get("compute") or {}
        instance_type = compute.get("instanceType")
        conditions: list[c.Condition] = []
        workers: list[str] = []
        resource_ok = True
        if instance_type:
            wanted = match_labels(rag)
            ready = [n for n in nodes if node_ready(n) and all(
                (n["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
                and (n["metadata"].get("labels") or {}).get(LABEL_INSTANCE_TYPE) == instance_type]
            live = [cl for cl in claims if not cl["metadata"].get("deletionTimestamp")]
            if not ready and not live:
                self.kube.create_custom("karpenter.sh", "v1", "nodeclaims", self._nodeclaim(rag, instance_type))
                return
            resource_ok = bool(ready)
            conditions.append(c.cond(NODECLAIM_READY, True, "installNodePluginsSuccess",
                                     "nodeClaim plugins have been installed successfully", gen) if resource_ok
                              else c.cond(NODECLAIM_READY, "Unknown", "CreateNodeClaimPending",
                                          "creating 1 nodeClaim", gen))
            workers = sorted(n["metadata"]["name"] for n in ready)[:1]
        conditions.append(c.cond(RESOURCE_READY, resource_ok, "ragengineResourceStatusSuccess" if resource_ok
                                 else "ragengineResourceStatusNotReady",
                                 "ragengine resource is ready" if resource_ok else "ragengine resource is not ready",
                                 gen))
        if resource_ok:
            self._ensure_workload(rag)
            conditions.append(c.cond(SERVICE_READY, True, "RAGEngineServiceSuccess",
                                     "ragengine service has been deployed successfully", gen))
        conditions.append(c.cond(RAG_SUCCEEDED, resource_ok, "ragengineSucceeded" if resource_ok
                                 else "ragenginePending",
                                 "ragengine succeeds" if resource_ok else "ragengine is pending", gen))
        old = rag.get("status") or {}
        if c.same(old.get("conditions"), conditions) and old.get("workerNodes", []) == workers:
            return
        self._patch(rag, {"status": {"conditions": c.merge(old.get("conditions"), conditions),
                                     "workerNodes": workers}}, status=True)

    def _nodeclaim(self, rag: dict[str, Any], instance_type: str) -> dict[str, Any]:
        meta = rag["metadata"]
        labels = {**match_labels(rag), "karpenter.sh/nodepool": "kaito", LABEL_RAGENGINE: meta["name"],
                  LABEL_RAGENGINE_NS: meta["namespace"]}
        return {"apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
                "metadata": {"name": nodeclaim_name(meta["namespace"], meta["name"]), "labels": labels,
                             "annotations": {"karpenter.sh/do-not-disrupt": "true",
                                             "kaito.sh/node-image-family": "ubuntu"}},
                "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                         "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                         "requirements": [
                             {"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                             {"key": LABEL_INSTANCE_TYPE, "operator": "In", "values": [instance_type]},
                             {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}],
                         "resources": {"requests": {"storage": "200Gi"}}}}

    def _ensure_workload(self, rag: dict[str, Any]) -> None:
        meta = rag["metadata"]
        ns, name = meta["namespace"], meta["name"]
        owner = [{"apiVersion": f"{GROUP}/{VERSION}", "kind": "RAGEngine", "name": name, "uid": meta.get("uid", ""),
                  "controller": True, "blockOwnerDeletion": True}]
        if not self.kube.service_exists(ns, name):  # a same-named Service (a Workspace's) is reused, as KAITO does
            self.kube.create_service(ns, {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": name, "namespace": ns, "labels": {LABEL_RAGENGINE: name},
                             "ownerReferences": owner},
                "spec": {"type": "ClusterIP", "publishNotReadyAddresses": True, "selector": {LABEL_RAGENGINE: name},
                         "ports": [{"name": "http", "port": 80, "targetPort": 5000, "protocol": "TCP"}]}})
        env = env_of(rag)
        try:
            current = json.loads(cast(Any, self.apps.read_namespaced_deployment(name, ns, _preload_content=False))
                                 .data)
        except ApiException as err:
            if err.status != 404:
                raise
            current = None
        if current is None:
            body = {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": ns, "labels": {LABEL_RAGENGINE: name},
                                 "ownerReferences": owner},
                    "spec": {"replicas": 1, "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
                             "selector": {"matchLabels": {LABEL_RAGENGINE: name}},
                             "template": {"metadata": {"labels": {LABEL_RAGENGINE: name}},
                                          "spec": {"containers": [{"name": name, "image": IMAGE,
                                                                   "command": ["python3", "main.py"],
                                                                   "ports": [{"containerPort": 5000}],
                                                                   "env": env}]}}}}
            try:
                self.apps.create_namespaced_deployment(ns, cast(Any, body))
            except ApiException as err:
                if err.status != 409:
                    raise
            return
        containers = current["spec"]["template"]["spec"]["containers"]
        if containers and containers[0].get("env") != env:  # KAITO's update path rewrites only the env
            containers[0]["env"] = env
            self.apps.patch_namespaced_deployment(name, ns, {"spec": {"template": {"spec": {
                "containers": containers}}}})

    def _finalize(self, rag: dict[str, Any], claims: list[dict[str, Any]]) -> None:
        meta = rag["metadata"]
        ns, name = meta["namespace"], meta["name"]
        for cl in claims:
            if not cl["metadata"].get("deletionTimestamp"):
                self.kube.delete_custom("karpenter.sh", "v1", "nodeclaims", cl["metadata"]["name"])
        try:  # only its own Service: a reused Workspace Service stays
            svc = self.kube.core.read_namespaced_service(name, ns)
            if ((svc.metadata.labels if svc.metadata else None) or {}).get(LABEL_RAGENGINE) == name:
                self.kube.delete_service(ns, name)
        except ApiException as err:
            if err.status != 404:
                raise
        try:
            self.apps.delete_namespaced_deployment(name, ns)
        except ApiException as err:
            if err.status != 404:
                raise
        if claims:
            return  # Karpenter releases them; their deletion wakes us
        if FINALIZER in (meta.get("finalizers") or []):
            rest = [f for f in meta["finalizers"] if f != FINALIZER]
            self._patch(rag, {"metadata": {"finalizers": rest or None}})


def _json(status: int, doc: Any) -> Reply:
    return status, {"Content-Type": "application/json"}, json.dumps(doc).encode()


class RagServer:
    """The proxy handler for RAG engine Services; `llm` is the model server's handler (for the chat forward)."""

    def __init__(self, url: str, llm: ProxyHandler) -> None:
        self.api = make_api_client(url, "rag-service")
        self.llm = llm
        self._lock = threading.Lock()
        self._indexes: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}

    def close(self) -> None:
        self.api.close()

    def _engine(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(cast(Any, client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name)))
        except ApiException:
            return None

    def __call__(self, namespace: str, service: str, port: str | int | None, method: str, subpath: str,
                 body: bytes | str | None) -> Reply | None:
        if str(port or "") not in ("", "80", "http", "5000"):
            return None
        rag = self._engine(namespace, service)
        if rag is None:
            return None
        if not c.is_true((rag.get("status") or {}).get("conditions"), RAG_SUCCEEDED):
            return _json(503, {"detail": "the RAG engine is not ready"})
        path = "/" + subpath.lstrip("/").split("?", 1)[0]
        method = method.upper()
        try:
            request = json.loads(body or b"{}") if method == "POST" else {}
        except ValueError:
            return _json(400, {"detail": "request body is not valid JSON"})
        indexes = self._indexes.setdefault((namespace, service), {})
        if path == "/health" and method == "GET":
            return _json(200, {"status": "Healthy"})
        if path == "/indexes" and method == "GET":
            return _json(200, sorted(indexes))
        if path == "/index" and method == "POST":
            docs = [{"doc_id": f"{len(indexes.get(request.get('index_name', ''), [])) + i}", **d}
                    for i, d in enumerate(request.get("documents") or [])]
            with self._lock:
                indexes.setdefault(str(request.get("index_name", "")), []).extend(docs)
            return _json(200, docs)
        if path == "/retrieve" and method == "POST":
            return _json(200, {"results": self._retrieve(indexes, request)})
        if path == "/v1/chat/completions" and method == "POST":
            return self._chat(rag, request)
        return _json(404, {"detail": "Not Found"})

    @staticmethod
    def _retrieve(indexes: dict[str, list[dict[str, Any]]], request: dict[str, Any]) -> list[dict[str, Any]]:
        words = set(str(request.get("query", "")).lower().split())
        docs = indexes.get(str(request.get("index_name", "")), [])
        scored = sorted(((len(words & set(str(d.get("text", "")).lower().split())), d) for d in docs),
                        key=lambda p: -p[0])
        return [{"doc_id": d["doc_id"], "text": d.get("text", ""), "score": s} for s, d in scored
                if s > 0][: int(request.get("top_k") or 5)]

    def _chat(self, rag: dict[str, Any], request: dict[str, Any]) -> Reply:
        url = str(((rag.get("spec") or {}).get("inferenceService") or {}).get("url") or "")
        if not url:
            return _json(400, {"detail": "this RAG engine has no inferenceService.url: it only retrieves"})
        parsed = urlparse(url)
        match = _IN_CLUSTER.match(parsed.hostname or "")
        if match is None:
            return _json(502, {"detail": f"the sandbox reaches only in-cluster LLM services, not {url}"})
        svc, ns = match.group("svc"), match.group("ns")
        port = parsed.port or 80
        listing = self.llm(ns, svc, str(port), "GET", "v1/models", None)
        if listing is None or listing[0] != 200:
            return _json(502, {"detail": f"the LLM at {url} does not answer"})
        model = json.loads(listing[2])["data"][0]["id"]
        forwarded = {**request, "model": model}
        reply = self.llm(ns, svc, str(port), "POST", parsed.path.lstrip("/"), json.dumps(forwarded).encode())
        if reply is None:
            return _json(502, {"detail": f"the LLM at {url} does not answer"})
        return reply
