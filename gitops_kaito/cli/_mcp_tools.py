"""What `gitops-kaito mcp` answers: each tool is a plain function of the repository (and, when one was given, the
cluster) returning a short summary for people and a JSON document for programs; no MCP SDK here.

Read-only, except add_model_request (only with --allow-write: it writes one request file, never commits). Every
string that leaves passes core.status.scrub, and no tool reads a Secret, a kubeconfig's contents or a token.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import CliError
from gitops_kaito.model.states import ModelState

DEFAULT_LIMIT = 25


class ToolFailure(Exception):
    """A user-facing refusal (unknown model, no cluster given, unknown revision): an MCP error result, not a crash."""


@dataclass(frozen=True)
class ToolContext:
    """What the server was started on: a repository, optionally a cluster, and whether writing is allowed."""

    repo: Path
    kubeconfig: str | None = None
    context: str | None = None
    instance: str | None = None
    allow_write: bool = False
    kubeconfig_env: bool = False  # $KUBECONFIG is set: a cluster is given, as for kubectl and the other commands

    @property
    def has_cluster(self) -> bool:
        return bool(self.kubeconfig or self.context or self.kubeconfig_env)


@dataclass(frozen=True)
class ToolAnswer:
    summary: str  # a few lines for the person reading the conversation
    data: dict[str, Any]  # the structured content


def scrub_tree(value: Any) -> Any:
    """`value` with every string passed through scrub(): nothing that looks like a credential leaves the server."""
    from gitops_kaito.core.status import scrub

    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {str(k): scrub_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_tree(v) for v in value]
    return value


def _money(value: float | None) -> str:
    return "unknown" if value is None else f"${value:,.2f}/h"


# -- catalog ----------------------------------------------------------------------------------------------------
def _catalog(ctx: ToolContext) -> tuple[Any, tuple[str, ...]]:
    """The catalog with the repository's prices, and its clouds (the defaults when it has no gitops-kaito.yaml)."""
    from gitops_kaito.cli.catalog import _catalog_for

    try:
        return _catalog_for(str(ctx.repo))
    except CliError as err:
        raise ToolFailure(str(err)) from None


def catalog_search(ctx: ToolContext, query: str = "", kind: str = "models", cloud: str | None = None,
                   include_removed: bool = False, limit: int = DEFAULT_LIMIT) -> ToolAnswer:
    from gitops_kaito.cli.catalog import _preset_json, _sku_json
    from gitops_kaito.repo.catalog import CLOUDS

    catalog, _ = _catalog(ctx)
    words = query.lower().split()
    limit = max(1, min(limit, 200))
    if kind == "models":
        presets = [p for p in catalog.presets() if include_removed or p.supported]
        found = [p for p in presets
                 if all(w in " ".join((p.name, p.hf_id, p.family, *p.aliases)).lower() for w in words)]
        rows = [_preset_json(p) for p in found[:limit]]
        names = ", ".join(r["name"] for r in rows[:8])
    elif kind == "skus":
        if cloud is not None and cloud not in CLOUDS:
            raise ToolFailure(f"unknown cloud {cloud!r}; one of {', '.join(CLOUDS)}")
        skus = catalog.skus((cloud,) if cloud else CLOUDS, include_removed=include_removed)
        found = [s for s in skus if all(w in f"{s.name} {s.gpu_model} {s.cloud}".lower() for w in words)]
        rows = [_sku_json(s) for s in found[:limit]]
        names = ", ".join(r["name"] for r in rows[:8])
    else:
        raise ToolFailure(f"kind must be 'models' or 'skus', got {kind!r}")
    more = f" (first {len(rows)} shown)" if len(found) > len(rows) else ""
    summary = f"{len(found)} {kind} match {query!r}{more}" + (f": {names}" if names else "")
    return ToolAnswer(summary, {"kind": kind, "query": query, "total": len(found), "results": rows})


def catalog_fit(ctx: ToolContext, model: str, clouds: Sequence[str] | None = None,
                max_model_len: int | None = None) -> ToolAnswer:
    from gitops_kaito.cli.catalog import _fit_json
    from gitops_kaito.repo.catalog import CLOUDS, DEFAULT_MAX_MODEL_LEN, RemovedPreset, UnknownPreset

    catalog, repo_clouds = _catalog(ctx)
    try:
        preset = catalog.preset(model)
    except (UnknownPreset, RemovedPreset) as err:
        raise ToolFailure(str(err)) from None
    unknown = [c for c in clouds or () if c not in CLOUDS]
    if unknown:
        raise ToolFailure(f"unknown cloud(s) {', '.join(unknown)}; known: {', '.join(CLOUDS)}")
    if max_model_len is not None and (max_model_len <= 0 or (preset.token_limit and
                                                             max_model_len > preset.token_limit)):
        raise ToolFailure(f"max_model_len {max_model_len} must be positive and at most {preset.name}'s token limit "
                          f"{preset.token_limit}")
    use = tuple(dict.fromkeys(clouds)) if clouds else repo_clouds
    fits = catalog.fits(preset, use, max_model_len)
    try:
        chosen = catalog.choose_sku(preset, use, max_model_len)
    except LookupError:
        chosen = None
    if chosen is not None:
        summary = (f"{preset.name}: gitops-kaito would choose {chosen.nodes} x {chosen.sku.name} "
                   f"({chosen.total_gpus} GPU) at {_money(chosen.price_per_hour)}; {len(fits)} SKUs fit in "
                   f"{', '.join(use)}, cheapest first")
    else:
        summary = f"no SKU in {', '.join(use)} that gitops-kaito would choose fits {preset.name}"
    return ToolAnswer(summary, {"model": preset.name, "hfId": preset.hf_id, "modelSizeGiB": preset.model_size_gib,
                                "gated": preset.gated, "maxModelLen": max_model_len or DEFAULT_MAX_MODEL_LEN,
                                "clouds": list(use), "default": _fit_json(chosen) if chosen else None,
                                "fits": [_fit_json(f) for f in fits]})


# -- the repository ---------------------------------------------------------------------------------------------
def validate(ctx: ToolContext) -> ToolAnswer:
    from gitops_kaito.cli.validate import _as_json, problems_of
    from gitops_kaito.repo.loader import load_repository

    load = load_repository(ctx.repo)
    problems = problems_of(load)
    data = _as_json(load, problems)
    valid = len(data["models"])
    if problems:
        files = len({p.path for p in problems})
        lines = [str(p) for p in problems[:10]]
        summary = "\n".join([f"{len(problems)} error(s) in {files} file(s); {valid} model(s) valid", *lines])
    else:
        summary = f"{valid} model(s) valid" if valid else "no model requests found under models/"
    return ToolAnswer(summary, data)


def plan(ctx: ToolContext, base: str | None = None, head: str | None = None) -> ToolAnswer:
    """Offline against `base` (git only), else against the cluster the server was started with."""
    from gitops_kaito.core.report import plan_json

    if head and not base:
        raise ToolFailure("head needs base: an offline plan compares two revisions")
    offline = None
    if base:
        from gitops_kaito.reconcile.offline import OfflineError, plan_offline

        try:
            offline = plan_offline(ctx.repo, base, head, scope=_scope(ctx))
        except OfflineError as err:
            raise ToolFailure(str(err)) from None
        desired, the_plan = offline.head, offline.plan
    else:
        if not ctx.has_cluster:
            raise ToolFailure("no cluster: give a base revision (e.g. origin/main) for an offline plan, or start "
                              "the server with --kubeconfig")
        from gitops_kaito.adapters.kube import KubeError
        from gitops_kaito.reconcile.sync import SyncError, plan_repository

        try:
            with _kube(ctx) as kube:
                desired, the_plan = plan_repository(ctx.repo, kube, scope=_scope(ctx))
        except (KubeError, SyncError) as err:
            raise ToolFailure(str(err)) from None
    data = plan_json(desired, the_plan, offline)
    for change in data["changes"]:
        change.pop("patch", None)  # what changes is in the rows; field-level patches only cost the reader
    data["changes"] = [c for c in data["changes"] if c["action"] != "noop" or c["driftReported"]]
    rows = data["models"]
    after = sum(r.get("pricePerHour") or 0.0 for r in rows if r.get("action") != "delete")
    if offline is None:
        data["costPerHour"] = {"after": round(after, 6),
                               "known": all(r.get("pricePerHour") is not None for r in rows
                                            if r.get("action") != "delete")}
    counts = data["counts"]
    lines = [", ".join(f"{n} to {a}" for a, n in counts.items() if n and a != "noop") or "no changes"]
    for r in rows:
        if r.get("action") not in (None, "no change"):
            lines.append(f"{r.get('action')} {r.get('model')}: {r.get('sku') or '-'} x {r.get('nodes') or '-'} "
                         f"at {_money(r.get('pricePerHour'))}")
    if offline is not None:
        lines.append(f"cost per hour: {_money(offline.before.per_hour)} at {base} -> {_money(offline.after.per_hour)}"
                     f" ({'+' if offline.cost_change >= 0 else '-'}${abs(offline.cost_change):,.2f}/h)")
    else:
        lines.append(f"cost per hour after this plan: {_money(after)}")
    lines += [f"error: {e}" for e in data["errors"][:10]]
    return ToolAnswer("\n".join(lines), data)


def _scope(ctx: ToolContext) -> Any:
    from gitops_kaito.repo.config import Scope

    return Scope(instance=ctx.instance) if ctx.instance else None


def _kube(ctx: ToolContext) -> Any:
    from gitops_kaito.adapters.kube import Kube

    return Kube.connect(ctx.kubeconfig, ctx.context)


def _status_dir(ctx: ToolContext) -> str:
    """Where this instance's status files are (status/, or status/<instance>/ for a named instance)."""
    from gitops_kaito.repo.config import load_config
    from gitops_kaito.repo.yamlsource import SourceError

    try:
        config = load_config(ctx.repo)
    except SourceError:
        return "status"
    if ctx.instance:
        config = dataclasses.replace(config, instance=ctx.instance)
    return config.status_dir


def _reports(ctx: ToolContext, folder: str | None = None) -> list[Any]:
    """The status files under `folder` (default: this instance's, from gitops-kaito.yaml), read as `status` reads
    them (never blocking on a FIFO or reading past a status file's limit; a skipped file is a warning on stderr)."""
    from gitops_kaito.cli.status import read_reports

    return read_reports(ctx.repo / (folder or _status_dir(ctx)))


def _model_id(model: str) -> tuple[str, str]:
    """NAMESPACE/NAME (or the model id NAMESPACE.NAME) -> (namespace, name)."""
    ns, sep, name = model.strip().partition("/" if "/" in model else ".")
    if not sep or not ns or not name or "/" in name:
        raise ToolFailure(f"model must be NAMESPACE/NAME, got {model!r}")
    return ns, name


def status(ctx: ToolContext, model: str | None = None) -> ToolAnswer:
    from gitops_kaito.core.status import cost_line, gpu_cost, model_document, summary_line
    from gitops_kaito.model.states import ModelState

    folder = _status_dir(ctx)
    reports = _reports(ctx, folder)
    if model:
        ns, name = _model_id(model)
        reports = [r for r in reports if (r.namespace, r.name) == (ns, name)]
        if not reports:
            raise ToolFailure(f"no status for {ns}/{name} under {folder}/ (not reconciled yet?)")
    cost = gpu_cost(reports)
    summary = summary_line(reports)
    lines = [summary] if not model else []
    lines += [f"{r.namespace}/{r.name}: {r.state}" + (f" ({r.reason}: {r.message})" if r.state != ModelState.READY
                                                    and (r.reason or r.message) else "") for r in reports[:20]]
    if line := cost_line(reports):
        lines.append(line)
    return ToolAnswer("\n".join(lines), {
        "summary": summary, "statusFolder": folder,
        "gpuCost": None if cost is None else {"nodes": cost.nodes, "pricePerHour": cost.usd_per_hour,
                                              "unpricedModels": cost.unpriced_models},
        "models": [model_document(r) for r in reports]})


def history(ctx: ToolContext, model: str | None = None, limit: int = 20) -> ToolAnswer:
    import git

    from gitops_kaito.adapters.history import HistoryError, model_history, revisions_applied

    try:
        repo = git.Repo(ctx.repo)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise ToolFailure(f"{ctx.repo}: not a git repository") from None
    limit = max(1, min(limit, 500))
    try:
        if model:
            ns, name = _model_id(model)
            rows: list[dict[str, Any]] = [asdict(e) for e in model_history(repo, f"{ns}/{name}", "HEAD",
                                                                           _status_dir(ctx))]
            lines = [f"{r['at']} {r['state']} at {r['revision']}" for r in rows[-limit:]]
        else:
            rows = [asdict(r) for r in revisions_applied(repo, "HEAD", _status_dir(ctx))]
            lines = [f"{r['applied_at']} {r['revision']}: {r['summary']}" for r in rows[-limit:]]
    except HistoryError as err:
        raise ToolFailure(str(err)) from None
    finally:
        repo.close()
    shown = rows[-limit:]
    head = f"{len(rows)} {'state changes' if model else 'revisions applied'}" + (
        f" (last {len(shown)} shown)" if len(shown) < len(rows) else "")
    return ToolAnswer("\n".join([head, *lines]), {"model": model, "total": len(rows),
                                                 "entries": shown})


# -- why is it not Ready ----------------------------------------------------------------------------------------
def explain(ctx: ToolContext, model: str) -> ToolAnswer:
    """Why a model is not Ready: its request file, its status file and, with a cluster, what KAITO and Karpenter
    say now (conditions, nodes, Events on the Workspace)."""
    from gitops_kaito.core.status import model_document
    from gitops_kaito.repo.loader import load_repository

    ns, name = _model_id(model)
    mid = f"{ns}.{name}"
    load = load_repository(ctx.repo, scope=_scope(ctx))
    request_errors: list[dict[str, Any]] = [{"path": e.path, "line": e.line, "message": e.message}
                                            for e in load.errors if e.model_id == mid]
    requested = next((m for m in load.models if m.request.id == mid), None)
    path = requested.request.path if requested else request_errors[0]["path"] if request_errors else None
    request = {"path": path, "errors": request_errors}
    recorded = next((r for r in _reports(ctx) if r.model_id == mid), None)
    data: dict[str, Any] = {"model": f"{ns}/{name}", "request": request,
                            "statusFile": model_document(recorded) if recorded else None,
                            "cluster": None}
    state, reason, message = ("", "", "")
    if recorded is not None:
        state, reason, message = recorded.state, recorded.reason, recorded.message
    if ctx.has_cluster:
        live = _live_health(ctx, ns, name, mid)
        data["cluster"] = live
        state, reason, message = live["state"], live["reason"], live["message"]
    elif request_errors:
        state, reason, message = ModelState.INVALID, "InvalidRequest", str(request_errors[0]["message"])
    if not state:
        state = "Unknown" if requested is not None else "NotRequested"
        message = ("no status recorded yet and no cluster given (start the server with --kubeconfig to ask the "
                   "cluster)" if requested is not None else f"no request file for {ns}/{name} under models/")
    data.update(state=state, reason=reason, message=message, source="cluster" if ctx.has_cluster else "status file")
    why = _why_lines(data, recorded)
    data["why"] = why
    summary = f"{ns}/{name} is {state}" + (f": {reason}" if reason else "") + (f": {message}" if message else "")
    return ToolAnswer("\n".join([summary, *why[:8]]), data)


def _live_health(ctx: ToolContext, ns: str, name: str, mid: str) -> dict[str, Any]:
    from gitops_kaito.adapters.kube import KubeError
    from gitops_kaito.core import health
    from gitops_kaito.model.kaito import KAITO_WORKSPACE_LABEL, KAITO_WORKSPACE_NS_LABEL
    from gitops_kaito.model.objects import ObjectRef
    from gitops_kaito.model.ownership import LABEL_MODEL

    try:
        with _kube(ctx) as kube:
            version = kube.workspace_version()
            workspace = kube.get(ObjectRef(version, "Workspace", ns, name))
            nodes: dict[tuple[str, str], Any] = {}
            for api_version, kind in (("karpenter.sh/v1", "NodeClaim"), ("karpenter.sh/v1alpha5", "Machine")):
                if not kube.served(api_version, kind):
                    continue
                for selector in (f"{KAITO_WORKSPACE_LABEL}={name},{KAITO_WORKSPACE_NS_LABEL}={ns}",
                                 f"{LABEL_MODEL}={mid}"):
                    for obj in kube.list_owned(api_version, kind, selector):
                        nodes[(kind, obj["metadata"]["name"])] = obj
            events, events_problem = _events(kube, ns, name)
    except KubeError as err:
        raise ToolFailure(f"cannot read the cluster: {err}") from None
    h = health.assess(workspace, list(nodes.values()))
    return {
        "workspace": None if workspace is None else f"{workspace.get('apiVersion')}/Workspace/{ns}/{name}",
        "state": h.state, "reason": h.reason, "message": h.message,
        "conditions": [{"type": c.type, "status": c.status, "reason": c.reason, "message": c.message}
                       for c in h.conditions],
        "nodes": [{"kind": n.kind, "name": n.name, "phase": n.phase, "reason": n.reason} for n in h.nodes],
        "events": [{"type": e.type, "reason": e.reason, "message": e.message, "count": e.count,
                    "from": (e.source.component if e.source else None) or e.reporting_component,
                    "last": str(e.last_timestamp or e.event_time or "") or None}
                   for e in sorted(events, key=lambda e: str(e.last_timestamp or e.event_time or ""))],
        "eventsProblem": events_problem,
    }


def _events(kube: Any, ns: str, name: str) -> tuple[list[Any], str | None]:
    """The Events on the Workspace, or none and why not: reading them is a permission of its own (RBAC on
    events), and without it the rest still explains the model."""
    import urllib3
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        listed = client.CoreV1Api(kube.api_client).list_namespaced_event(
            ns, field_selector=f"involvedObject.name={name}")
    except ApiException as err:  # its text carries the whole answer, headers too: the status says enough
        return [], f"cannot read the Events on {ns}/{name}: HTTP {err.status} {err.reason or ''}".rstrip()
    except (urllib3.exceptions.HTTPError, ConnectionError) as err:
        return [], f"cannot read the Events on {ns}/{name}: {type(err).__name__}"
    return list(listed.items or []), None


def _why_lines(data: Mapping[str, Any], recorded: Any) -> list[str]:
    lines = [f"{e['path']}:{e['line']}: {e['message']}" if e.get("line") else f"{e['path']}: {e['message']}"
             for e in data["request"]["errors"]]
    live = data.get("cluster")
    if live:
        if live["workspace"] is None:
            lines.append(f"no Workspace {data['model']} in the cluster")
        lines += [f"condition {c['type']}={c['status']}" + (f" ({c['reason']})" if c["reason"] else "")
                  + (f": {c['message']}" if c["message"] else "") for c in live["conditions"] if c["status"] != "True"]
        lines += [f"{n['kind']} {n['name']}: {n['phase']}" + (f" ({n['reason']})" if n["reason"] else "")
                  for n in live["nodes"] if n["phase"] != "Ready"]
        if live.get("eventsProblem"):
            lines.append(live["eventsProblem"])
        lines += [f"event {e['type']} {e['reason']}: {e['message']}" + (f" (x{e['count']})" if (e["count"] or 1) > 1
                                                                      else "") for e in live["events"][-5:]]
    if recorded is not None and recorded.last_error:
        lines.append(f"last error: {recorded.last_error}")
    if recorded is not None and not live:
        lines += [f"condition {t}={s}" + (f" ({r})" if r else "") + (f": {m}" if m else "")
                  for t, s, r, m in recorded.conditions if s != "True"]
        lines += [f"node {n}: {p}" + (f" ({r})" if r else "") for n, p, r in recorded.node_phases if p != "Ready"]
    return lines


# -- the one tool that writes -----------------------------------------------------------------------------------
def add_model_request(ctx: ToolContext, model: str, name: str | None = None, namespace: str | None = None,
                      instance_type: str | None = None, nodes: int | None = None, provisioning: str | None = None,
                      allow_uncataloged: bool = False) -> ToolAnswer:
    """Write models/<namespace>/<name>.yaml, checked like `gitops-kaito add`; never committed or pushed."""
    from gitops_kaito.cli.add import plan_new, priced_catalog, write_new
    from gitops_kaito.repo.config import load_config
    from gitops_kaito.repo.yamlsource import SourceError

    if not ctx.allow_write:
        raise ToolFailure("writing is off: start the server with --allow-write")
    try:
        config = load_config(ctx.repo)
    except SourceError as err:
        raise ToolFailure(f"{err} (fix gitops-kaito.yaml first)") from None
    args = argparse.Namespace(model=model, name=name, namespace=namespace, instance_type=instance_type, nodes=nodes,
                              provisioning=provisioning, model_access_secret=None,
                              allow_uncataloged=allow_uncataloged)
    try:
        new, _preset, resolved, text = plan_new(args, ctx.repo, priced_catalog(config), config)
        write_new(ctx.repo, new.path, text)
    except CliError as err:
        raise ToolFailure(str(err)) from None
    sku = resolved.sku.name if resolved.sku else None
    summary = (f"wrote {new.path} ({resolved.preset.name} on {sku or 'existing nodes'} x {resolved.nodes}, "
               f"{_money(resolved.price_per_hour)}); not committed: review, commit and push it yourself")
    return ToolAnswer(summary, {"path": new.path, "model": resolved.preset.name, "instanceType": sku,
                                "nodes": resolved.nodes, "gpus": resolved.gpus,
                                "pricePerHour": resolved.price_per_hour, "committed": False, "content": text})


def repo_root(path: str) -> Path:
    root = Path(os.path.expanduser(path)).resolve()
    if not root.is_dir():
        raise CliError(f"{path}: not a directory")
    return root
