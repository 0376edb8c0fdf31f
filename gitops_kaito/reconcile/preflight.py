"""Ask the cluster before writing: the APIs it serves, each changing model's modelAccessSecret, and a server-side
dry run (dryRun=All, our field manager) of what the pass would create or update, so admission webhooks (KAITO's,
quota, policy engines) and schema errors refuse a model before any of it is written, GPU nodes included.

Only models with something to write are checked: a pass where nothing changes makes no request beyond its LISTs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from gitops_kaito.adapters.kube import KubeError
from gitops_kaito.core.plan import Action, Change, Plan
from gitops_kaito.core.preflight import (
    CONFIG_MISSING,
    CRD_GROUPS,
    KNOWN_APIS,
    NO_NODES,
    ClusterCheck,
    Refusal,
    mode_refusal,
    unwaived,
)
from gitops_kaito.core.render import Desired
from gitops_kaito.model.objects import Manifest, ObjectRef
from gitops_kaito.reconcile.apply import describe, namespace_missing

log = logging.getLogger(__name__)

HF_TOKEN = "HF_TOKEN"  # the key KAITO reads from presetOptions.modelAccessSecret (api/v1beta1/workspace_types.go)
# Modes where gitops-kaito makes the GPU nodes itself: their Workspace is checked before the nodes exist.
NODE_MODES = frozenset({"nodeclaim", "machine", "aks"})
WRITES = (Action.CREATE, Action.UPDATE)


class PreflightKube(Protocol):
    """What the preflight needs from adapters.kube.Kube."""

    def served(self, api_version: str, kind: str) -> bool: ...
    def apply(self, manifest: Manifest, *, dry_run: bool = False, force: bool = True) -> Manifest: ...
    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None: ...
    def dry_run_create(self, manifest: Manifest) -> bool: ...


def pending_models(plan: Plan) -> list[str]:
    """Models this plan creates, updates or replaces something of (the only ones a preflight asks about)."""
    return sorted({c.model_id for c in plan.changes if c.desired is not None
                   and c.action in (Action.CREATE, Action.UPDATE, Action.REPLACE)})


def run_preflight(plan: Plan, desired: Desired, kube: PreflightKube, *, every_write: bool, dry_runs: bool = True,
                  report_served: bool = False, max_in_flight: int = 1) -> ClusterCheck:
    """Check every model with something to write. `every_write`: dry-run each create, update and replace (plan, and a
    sync dry run); a sync leaves out each model's first write when it is a create or update, which is its own check
    (the API server answers the real write the same, and nothing of the model was written before it). A replace is
    dry-run as a create (POST), since its object still exists: a replace deletes first, so its check is never left
    out, and an update's dry run would only repeat the immutability refusal that makes it a replace.
    `dry_runs` False: only the served APIs and the Secrets. `report_served`: learn the served APIs even when
    nothing is to be written (the plan reports them; discovery is cached, so this costs no request per pass).
    `max_in_flight`: models checked at once (sync passes its apply setting)."""
    models = pending_models(plan)
    if not models and not report_served:
        return ClusterCheck()
    rendered = {r.model.request.id: r for r in desired.rendered}
    asked = list(KNOWN_APIS) + sorted({(o.ref.api_version, o.ref.kind) for mid in models if mid in rendered
                                       for o in rendered[mid].objects if o.ref.group in CRD_GROUPS} - set(KNOWN_APIS))
    served = tuple(api for api in asked if kube.served(*api))  # discovery, cached by the client: no request a pass
    def check(mid: str) -> _ModelCheck:
        found = rendered.get(mid)
        if found is None:
            return _ModelCheck()
        model = found.model
        why = mode_refusal(model.provisioning, served, {(o.ref.api_version, o.ref.kind) for o in found.objects})
        if why:
            return _ModelCheck(refusal=Refusal(mid, why))
        changes = [c for c in plan.for_model(mid) if c.action in (*WRITES, Action.REPLACE) and c.desired is not None]
        if not every_write and changes and changes[0].action in WRITES:
            changes = changes[1:]
        notes: list[str] = []
        passed: set[ObjectRef] = set()
        try:
            secret = getattr(model.request, "model_access_secret", None)  # ModelDeployment's; other kinds: none
            if secret:
                problem = _secret_problem(kube, model.request.namespace, secret)
                if problem.startswith("cannot check"):
                    notes.append(problem)
                elif problem:
                    return _ModelCheck(refusal=Refusal(mid, problem))
            refusal, incomplete = _dry_run(mid, changes if dry_runs else [], plan, model.provisioning, kube, passed)
        except KubeError as err:  # the API server is unwell, not refusing: the writes will tell
            return _ModelCheck(notes=(*notes, f"could not check before writing: {describe(err)}"))
        return _ModelCheck(refusal, tuple(notes), incomplete and refusal is None, frozenset(passed))

    # Models are checked side by side (each model's own dry runs in order), as apply writes them: against an API
    # server 20 ms away, 300 Workspaces checked one after another held a first sync up for 7 s.
    if max_in_flight > 1 and len(models) > 1:
        with ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="preflight") as pool:
            checks = list(pool.map(check, models))
    else:
        checks = [check(mid) for mid in models]
    refused = [c.refusal for c in checks if c.refusal is not None]
    notes = [(mid, n) for mid, c in zip(models, checks, strict=True) for n in c.notes]
    recheck = {mid for mid, c in zip(models, checks, strict=True) if c.recheck}
    passed = frozenset(ref for c in checks for ref in c.passed)
    return ClusterCheck(served=served, refused=tuple(refused), notes=tuple(notes), recheck=frozenset(recheck),
                        passed=passed)


@dataclass(frozen=True)
class _ModelCheck:
    """One model's part of a ClusterCheck."""

    refusal: Refusal | None = None
    notes: tuple[str, ...] = ()
    recheck: bool = False
    passed: frozenset[ObjectRef] = frozenset()


def _secret_problem(kube: PreflightKube, namespace: str, name: str) -> str:
    """Why the model's modelAccessSecret will not do ('' when it holds HF_TOKEN); never a value of it."""
    try:
        keys = kube.secret_keys(namespace, name)
    except KubeError as err:
        if err.status == 403:
            return (f"cannot check modelAccessSecret {namespace}/{name}: not allowed to get Secrets "
                    f"(grant get on secrets to check it before the model's nodes are made)")
        raise
    if keys is None:
        return (f"modelAccessSecret {name!r} not found in namespace {namespace}: create it with the key {HF_TOKEN} "
                f"(kubectl -n {namespace} create secret generic {name} --from-literal={HF_TOKEN}=<your token>)")
    if HF_TOKEN not in keys:
        shown = ", ".join(sorted(keys)) or "none"
        return f"modelAccessSecret {namespace}/{name} has no key {HF_TOKEN} (its keys: {shown})"
    return ""


def _waivers(change: Change, plan: Plan, mode: str) -> tuple[str, ...]:
    """The refusal lines this Workspace may get only because this pass has not made its dependencies yet."""
    if change.ref.kind != "Workspace" or change.desired is None:
        return ()
    out = []
    config = ((change.desired.get("inference") or {}).get("config")) or ""
    created = {c.ref.name for c in plan.for_model(change.model_id) if c.ref.kind == "ConfigMap"
               and c.ref.namespace == change.ref.namespace and c.action in (Action.CREATE, Action.REPLACE)}
    if config and config in created:
        out.append(CONFIG_MISSING.format(name=config, namespace=change.ref.namespace))
    if mode in NODE_MODES:  # KAITO with BYO nodes admits a Workspace only once nodes match: ours come later
        out.append(NO_NODES)
    return tuple(out)


def _dry_run(mid: str, changes: list[Change], plan: Plan, mode: str, kube: PreflightKube,
             passed: set[ObjectRef]) -> tuple[Refusal | None, bool]:
    """(the first refusal, whether a check was incomplete because a ConfigMap or namespace is still to come)."""
    incomplete = False
    for change in changes:
        assert change.desired is not None
        try:
            if change.action == Action.REPLACE:
                kube.dry_run_create(change.desired)
            else:  # as the real write will be sent (a create does not force: see reconcile/apply.py)
                kube.apply(change.desired, dry_run=True, force=change.action == Action.UPDATE)
        except KubeError as err:
            if err.transient:
                raise
            if change.ref.namespace and namespace_missing(err, change.ref.namespace):
                incomplete = True  # the pass creates the namespace first; nothing could be checked in it yet
            else:
                waivers = _waivers(change, plan, mode)
                left = unwaived(describe(err), waivers)
                if left:
                    return Refusal(mid, _refused(left), change.ref), incomplete
                incomplete = incomplete or any(w != NO_NODES and w in err.message for w in waivers)
        passed.add(change.ref)  # as far as can be known before its dependencies exist
    return None, incomplete


def _refused(message: str) -> str:
    return f"refused by the API server in a dry run, nothing of this model written: {message}"


def recheck_workspace(plan: Plan, model_id: str, kube: PreflightKube) -> str:
    """The Workspace's dry run again once its ConfigMap and namespace exist, before its GPU nodes are made:
    the refusal ('' when admitted). Only the BYO 'no nodes yet' answer is waived: the nodes come next."""
    for change in plan.for_model(model_id):
        if change.ref.kind == "Workspace" and change.desired is not None and change.action in WRITES:
            try:
                kube.apply(change.desired, dry_run=True, force=change.action == Action.UPDATE)
            except KubeError as err:
                left = unwaived(describe(err), (NO_NODES,))
                return f"{change.ref}: {_refused(left)}" if left else ""
    return ""


def refusal_texts(check: ClusterCheck) -> Mapping[str, str]:
    """Per refused model, what its status and the pass say."""
    return {r.model_id: r.text() for r in check.refused}


__all__ = ["HF_TOKEN", "pending_models", "recheck_workspace", "refusal_texts", "run_preflight"]
