"""Where each model stands after a pass: its apply outcome merged with what KAITO reports (health), its GPU nodes,
drift left in place, and an endpoint probe; one ModelReport per model, for status files, sync --wait and the daemon.

Needs only the cluster (no git): the local `sync --wait` and the git pass both assess through here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gitops_kaito.adapters import endpoint
from gitops_kaito.adapters.kube import Kube, KubeError
from gitops_kaito.core import health
from gitops_kaito.core.plan import Change
from gitops_kaito.core.status import (
    DriftEntry,
    EndpointCheck,
    ModelReport,
    report_from_health,
)
from gitops_kaito.model.kaito import (
    INFERENCESET_CREATED_BY_LABEL,
    KAITO_RAGENGINE_LABEL,
    KAITO_RAGENGINE_NS_LABEL,
    KAITO_WORKSPACE_NS_LABEL,
    KARPENTER_INFERENCESET_LABEL,
    KARPENTER_INFERENCESET_NS_LABEL,
    KARPENTER_WORKSPACE_NAME_LABEL,
    KARPENTER_WORKSPACE_NS_LABEL,
    NODE_KINDS,
)
from gitops_kaito.model.ownership import DEFAULT_INSTANCE, LABEL_MODEL
from gitops_kaito.model.states import Outcome, model_state
from gitops_kaito.provision.pools import pool_summary
from gitops_kaito.reconcile.sync import (
    KAITO_WORKSPACE_LABEL,
    LiveSource,
    PassResult,
    read_live_state,
    workloads,
)
from gitops_kaito.repo.catalog import price_for
from gitops_kaito.repo.rag import ResolvedRag
from gitops_kaito.repo.resolve import ResolvedModel
from gitops_kaito.repo.tuning import ResolvedTuning

log = logging.getLogger(__name__)


EndpointChecker = Callable[[Any, str, str], EndpointCheck]


def default_endpoint_check(api_client: Any, namespace: str, name: str) -> EndpointCheck:
    """GET /v1/models through the API server's service proxy (port name http, `pkg/workspace/manifests/manifests.go` at v0.12.0)."""
    from gitops_kaito.adapters import endpoint

    found = endpoint.check_models(api_client, namespace, name)
    return EndpointCheck(found.answers, found.served_model)


class Prober:
    """The long-running loops' endpoint checks: a Ready model is probed when its state (or its Workspace, or the
    revision) changed, and otherwise at most once per `recheck_s` (`failed_recheck_s` while it does not answer);
    the probes of one pass go out `max_in_flight` at a time. Without it every Ready model is probed every pass, one
    at a time: 200 models made 200 proxied GETs per pass."""

    def __init__(self, checker: EndpointChecker = default_endpoint_check, recheck_s: float = 300.0,
                 failed_recheck_s: float = 30.0, max_in_flight: int = 4,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.checker = checker
        self.recheck_s = recheck_s
        self.failed_recheck_s = failed_recheck_s
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._last: dict[str, tuple[Hashable, float, EndpointCheck]] = {}
        self.probes = 0

    def checks(self, api_client: Any, wanted: Sequence[tuple[str, str, str, Hashable]]) -> dict[str, EndpointCheck]:
        """(model id, namespace, name, state key) of every model to have a check for -> its check."""
        now = self._clock()

        def due(mid: str, key: Hashable) -> bool:
            held = self._last.get(mid)
            if held is None or held[0] != key:
                return True
            return now - held[1] >= (self.recheck_s if held[2].answers else self.failed_recheck_s)

        todo = [w for w in wanted if due(w[0], w[3])]
        if todo:
            with ThreadPoolExecutor(max_workers=max(1, self.max_in_flight), thread_name_prefix="probe") as pool:
                found = list(pool.map(lambda w: _probe(self.checker, api_client, w[0], w[1], w[2]), todo))
            self.probes += len(todo)
            for (mid, _, _, key), check in zip(todo, found, strict=True):
                self._last[mid] = (key, now, check)
        keep = {w[0] for w in wanted}
        for gone in [m for m in self._last if m not in keep]:
            del self._last[gone]
        return {mid: self._last[mid][2] for mid in keep}


def _probe(checker: EndpointChecker, api_client: Any, mid: str, namespace: str, name: str) -> EndpointCheck:
    try:
        return checker(api_client, namespace, name)
    except Exception as err:  # an endpoint probe must never fail the pass
        log.warning("endpoint check of %s failed: %s", mid, err)
        return EndpointCheck(False, None)


def assess_models(result: PassResult, kube: Kube, revision: str, check_endpoints: bool = True,
                  endpoint_checker: EndpointChecker = default_endpoint_check, live: LiveSource | None = None,
                  prober: Prober | None = None) -> list[ModelReport]:
    """One report per model the repository names (valid or not); pruned models get none.

    `live`: the watch cache, read instead of listing again after writes; `prober`: the long-running loops' endpoint
    checks (rate-bounded per model, a few at a time), else every Ready model is probed now, one after another."""
    desired = result.desired
    rendered = {r.model.request.id: r for r in desired.rendered} if desired else {}
    workspaces, nodes, children = _live(kube, result, live)
    assessed = []
    for outcome in result.outcomes:
        mid = outcome.model_id
        if outcome.state == Outcome.PRUNED and mid not in rendered:
            continue
        model = outcome.model or (rendered[mid].model if mid in rendered else None)
        ns, name = _split(mid, model)
        ws = workspaces.get(mid)
        pools = [pool_summary(outcome.pool)] if outcome.pool is not None else []
        flags: dict[str, Any] = {
            "invalid": outcome.message if outcome.state == Outcome.INVALID else None,
            "blocked": outcome.message if outcome.state == Outcome.BLOCKED else None,
            "suspended": outcome.state == Outcome.SUSPENDED}
        served_by_set = (ws or {}).get("kind") == "InferenceSet" or (
            ws is None and isinstance(model, ResolvedModel) and model.replicas is not None)
        if served_by_set:
            h = health.assess_inferenceset(ws, children.get(mid, ()), nodes.get(mid, ()), **flags)
        else:
            h = health.assess(ws, nodes.get(mid, ()), pools, **flags)
        state = model_state(outcome.state, h.state)
        if state != h.state:  # the pass's failed write says more than the cluster can yet
            h = health.ModelHealth(state, "ApplyFailed", outcome.message, h.conditions, h.nodes,
                                   h.endpoint, h.inference_ready, h.replicas)
        uid = ((ws or {}).get("metadata") or {}).get("uid")
        service = _service_of(h.endpoint) if served_by_set else name  # a set answers through a serving replica
        assessed.append((outcome, model, ns, service, h, (h.state, h.inference_ready, uid, revision), ws))
    ready = [(o.model_id, ns, service, key) for o, _, ns, service, h, key, _ in assessed
             if check_endpoints and h.inference_ready and service]
    # A RAG engine answers GET /health, not /v1/models: probed on its own (every pass; there are few of them).
    rags = {o.model_id for o, *_, w in assessed if (w or {}).get("kind") == "RAGEngine"}
    served = [r for r in ready if r[0] not in rags]
    if prober is not None:
        checks = prober.checks(kube.api_client, served)
    else:
        checks = {mid: _probe(endpoint_checker, kube.api_client, mid, ns, name) for mid, ns, name, _ in served}
    checks.update({mid: _probe(rag_endpoint_check, kube.api_client, mid, ns, name)
                   for mid, ns, name, _ in ready if mid in rags})
    reports = []
    for outcome, model, ns, _, h, _, ws in assessed:
        mid = outcome.model_id
        name = _split(mid, model)[1]
        last_error = outcome.message if outcome.state == Outcome.FAILED else None
        sku = model.sku.name if model is not None and model.sku is not None else (
            model.request.instance_type if isinstance(model, ResolvedModel) else None)
        node_count, gpus, price = _kaitos_count(model, ws, children.get(mid, ()))
        reports.append(report_from_health(
            ns, name, h, model_id=mid, sku=sku, nodes=node_count, gpus=gpus, price_per_hour=price,
            revision=revision, source_path=outcome.path or (model.request.path if model else ""),
            last_error=last_error, endpoint_check=checks.get(mid, EndpointCheck()),
            drift=drift_entries(outcome.changes), **kind_fields(model)))
    return reports


def kind_fields(model: Any) -> dict[str, Any]:
    """What a status report shows for a request that is not a ModelDeployment: its kind, a tuning run's output,
    the LLM a RAG engine answers with."""
    if isinstance(model, ResolvedTuning):
        return {"kind": model.request.kind, "output": model.request.output.shown}
    if isinstance(model, ResolvedRag):
        return {"kind": model.request.kind, "llm": model.llm_endpoint}
    return {}


def rag_endpoint_check(api_client: Any, namespace: str, name: str) -> EndpointCheck:
    """GET /health of a RAG engine's Service through the API server's service proxy."""
    found = endpoint.check_health(api_client, namespace, name)
    return EndpointCheck(found.answers, None)


def _service_of(endpoint: str | None) -> str:
    """The Service name of an in-cluster endpoint http://<name>.<ns>.svc.cluster.local:80/v1."""
    host = (endpoint or "").partition("://")[2]
    return host.split(".", 1)[0] if host else ""


def _kaitos_count(model: Any, workload: dict[str, Any] | None, children: Sequence[dict[str, Any]]
                  ) -> tuple[int | None, int | None, float | None]:
    """Nodes, GPUs and price per hour for the status: KAITO's own status.targetNodeCount where it reports one and
    provisions (or picks) the nodes itself, kaito and byo modes (`pkg/workspace/controllers/workspace_controller.go`
    at v0.12.0 writes it once), else our estimate; for an
    InferenceSet, every replica KAITO runs (its live status.replicas: an autoscaler may have changed it)."""
    if model is None:
        return None, None, None
    if not isinstance(model, ResolvedModel):
        return model.nodes, model.gpus, model.price_per_hour
    if model.provisioning not in ("kaito", "byo"):
        # nodeclaim, machine, aks: gitops-kaito made the nodes itself; their count is ours, whatever KAITO uses
        return model.total_nodes, model.gpus, model.price_per_hour
    nodes = model.total_nodes
    status = (workload or {}).get("status") or {}
    if model.replicas is not None:
        live_replicas = status.get("replicas")
        replicas = live_replicas if isinstance(live_replicas, int) else model.replicas
        targets = [t for w in children if not (w.get("metadata") or {}).get("deletionTimestamp")
                   for t in [(w.get("status") or {}).get("targetNodeCount")] if isinstance(t, int) and t > 0]
        nodes = sum(targets) if targets and len(targets) == replicas else model.nodes * replicas
    elif isinstance(status.get("targetNodeCount"), int) and status["targetNodeCount"] > 0:
        nodes = int(status["targetNodeCount"])
    if nodes == model.total_nodes or model.sku is None:
        return nodes, model.gpus, model.price_per_hour
    return nodes, nodes * model.sku.gpu_count, price_for(model.sku, nodes)


def drift_entries(changes: Sequence[Change]) -> tuple[DriftEntry, ...]:
    """The model's objects drifted and left in place this pass (drift: report), for its status file; `since` is
    filled when the status is written (status.carry_since)."""
    return tuple(DriftEntry(str(c.ref), c.fields, c.drift_by) for c in changes if c.drift_reported)


def _split(model_id: str, model: Any) -> tuple[str, str]:
    if model is not None:
        return model.request.namespace, model.request.name
    ns, _, name = model_id.partition(".")
    return ns, name


Live = tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, list[dict[str, Any]]]]


def _live(kube: Kube, result: PassResult, live: LiveSource | None = None) -> Live:
    """Each model's workload (its Workspace or InferenceSet), its GPU node objects (ours, and KAITO's: by workspace
    label in gpu-provisioner mode, by karpenter.kaito.sh/workspace-name in KAITO's karpenter mode), and an
    InferenceSet's replicas (KAITO's child Workspaces, found by their created-by label).

    A pass that wrote nothing already read all of it before applying; otherwise it is read again (one LIST
    per kind) so the status shows what the writes made.
    """
    workspaces: dict[str, dict[str, Any]] = {}
    nodes: dict[str, list[dict[str, Any]]] = {}
    children: dict[str, list[dict[str, Any]]] = {}
    if result.dry_run:
        return workspaces, nodes, children
    state = result.live
    try:
        if state is None or any(c.writes for c in result.plan.changes):
            state = read_live_state(kube, result.desired.objects if result.desired else (),
                                    result.desired.load.config.instance if result.desired else DEFAULT_INSTANCE, live)
    except KubeError as err:
        log.warning("cannot read live state for status: %s", err)
        return workspaces, nodes, children
    workspaces.update(workloads(state.owned))
    by_ws = {((w["metadata"].get("namespace") or ""), w["metadata"]["name"]): m for m, w in workspaces.items()
             if w.get("kind") == "Workspace"}
    sets = {((w["metadata"].get("namespace") or ""), w["metadata"]["name"]): m for m, w in workspaces.items()
            if w.get("kind") == "InferenceSet"}
    for child in state.kaito_children:
        meta = child.get("metadata") or {}
        ns = meta.get("namespace") or ""
        mid = sets.get((ns, (meta.get("labels") or {}).get(INFERENCESET_CREATED_BY_LABEL, "")))
        if mid:
            children.setdefault(mid, []).append(child)
            by_ws[(ns, meta.get("name", ""))] = mid
    seen: set[tuple[str, str]] = set()
    for obj in (*(o for o in state.owned if o.get("kind") in NODE_KINDS), *state.kaito_nodes):
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        mid = labels.get(LABEL_MODEL) or by_ws.get(
            (labels.get(KAITO_WORKSPACE_NS_LABEL, ""), labels.get(KAITO_WORKSPACE_LABEL, ""))) or by_ws.get(
            (labels.get(KARPENTER_WORKSPACE_NS_LABEL, ""), labels.get(KARPENTER_WORKSPACE_NAME_LABEL, ""))) or sets.get(
            (labels.get(KARPENTER_INFERENCESET_NS_LABEL, ""), labels.get(KARPENTER_INFERENCESET_LABEL, ""))) or by_ws.get(
            (labels.get(KAITO_RAGENGINE_NS_LABEL, ""), labels.get(KAITO_RAGENGINE_LABEL, "")))
        key = (str(obj.get("kind")), str(meta.get("name")))
        if mid and key not in seen:
            seen.add(key)
            nodes.setdefault(mid, []).append(obj)
    return workspaces, nodes, children
