"""Carries out a Plan through the Kubernetes adapter: wave by wave, only what changed, one model's failure isolated.

Workspaces of NodeClaim/Machine models wait for their nodes; a replace deletes and recreates once the old one is gone.
Drift the plan reports and leaves in place (`drift: report`) is never written; the model's message says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from gitops_kaito.adapters.events import record_changes, record_drift
from gitops_kaito.adapters.kube import KubeError, StaleObject, compact
from gitops_kaito.core.plan import Action, Change, Plan, node_ready
from gitops_kaito.model.objects import Manifest, ObjectRef, Wave, merge_partial
from gitops_kaito.model.ownership import FIELD_MANAGER, HANDOFF_MANAGER, LABEL_MANAGED_BY, MANAGED_BY_VALUE
from gitops_kaito.model.states import APPLY_PRIORITY, ObjectStatus, Outcome

# Model outcomes of one apply, most important first (a model shows the first that applies).

# Namespaces a model names are created when missing (never pruned: see namespace_manifest).
ANNOTATION_CREATED_BY = "gitops.kaito.sh/created-by"
ABANDONED_MESSAGE = "abandoned: lost leadership / stopping"
STALE_MESSAGE = "changed in the cluster after this pass read it; not deleted, planned again"
# Writes in flight at once within a wave. kubectl sends one at a time; the API server's priority and fairness gives a
# client a share of its concurrency and answers 429 (with Retry-After) past it, which every thread then honours.
DEFAULT_IN_FLIGHT = 16

# What happened to one object.


class KubeOps(Protocol):
    """What apply needs from kube.Kube."""

    def apply(self, manifest: Manifest, *, dry_run: bool = False, field_manager: str = FIELD_MANAGER,
              force: bool = True) -> Manifest: ...
    def delete(self, ref: ObjectRef, precondition: tuple[str, str] | None = None) -> bool: ...
    def get(self, ref: ObjectRef) -> Manifest | None: ...


@dataclass(frozen=True)
class ObjectResult:
    ref: ObjectRef
    model_id: str
    action: Action
    result: str  # done | failed | skipped | waiting | dry-run
    message: str = ""
    drift: bool = False
    uid: str = ""  # the object's uid as the API server answered the write (a replace: the new object's)
    refused: bool = False  # not written: the API server refused this model in a dry run (message: its answer)


@dataclass(frozen=True)
class ModelOutcome:
    model_id: str
    state: str  # Failed | Blocked | Replacing | Provisioning | Pruned | Applied | Unchanged
    message: str
    objects: tuple[ObjectResult, ...]

    @property
    def writes(self) -> int:
        return sum(1 for o in self.objects if o.result == ObjectStatus.DONE)


@dataclass(frozen=True, kw_only=True)
class ChangeCounts:
    """What a pass did to objects; shared by the apply step's result and the whole pass's result."""

    created: int = 0
    updated: int = 0
    replaced: int = 0
    pruned: int = 0
    drift_corrected: int = 0
    failed: int = 0


@dataclass(frozen=True, kw_only=True)
class ApplyResult(ChangeCounts):
    outcomes: tuple[ModelOutcome, ...]

    @property
    def objects(self) -> tuple[ObjectResult, ...]:
        return tuple(o for m in self.outcomes for o in m.objects)


@dataclass(frozen=True)
class ApplyOptions:
    dry_run: bool = False  # server-side dry-run of every write: validates, persists nothing
    replace_wait_s: float = 10.0  # how long a replace waits in-pass for the old object to go
    poll_s: float = 0.2
    max_in_flight: int = DEFAULT_IN_FLIGHT  # writes sent at once within a wave (one model's objects stay in order)


def apply_plan(plan: Plan, kube: KubeOps, options: ApplyOptions | None = None, *,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               gates: Mapping[str, str] | None = None,
               should_continue: Callable[[], bool] | None = None,
               holds: Mapping[str, str] | None = None,
               refused: Mapping[str, str] | None = None, checked: Collection[ObjectRef] = (),
               vet_nodes: Callable[[str], str] | None = None) -> ApplyResult:
    """`gates`: per model, why its Workspace must wait for nodes made outside Kubernetes (aks agent pools), or
    for another request (core/depends: a RAG engine's model); `holds`: the same for every write of its workload,
    updates too (a model taking an adapter from a tuning run that has not succeeded).
    `should_continue` is asked before each wave and before the deletes: once False, nothing more is written
    (a replica that lost its Lease must stop acting at once) and the rest is recorded as abandoned.

    Within a wave, models are written in parallel (up to options.max_in_flight requests at once), each model's own
    objects in order; waves, and the deletes after them (in reverse wave order), never overlap. Everything a
    decision reads is the model's own (its failures, its nodes just written), so the result is the serial one's.
    Deletes carry the uid and resourceVersion planning saw: an object changed since is refused (STALE), never
    deleted on a stale view.

    From the preflight (reconcile/preflight.py): `refused`, per model, the API server's dry-run refusal: nothing of
    that model is written, it is Blocked with that message; `checked`, objects whose dry run it already made (a dry
    run pass sends them no second time); `vet_nodes(model)`, asked once before a model's GPU nodes are created:
    a refusal ('' = go) stops the model there, no node made."""
    options = options or ApplyOptions()
    gates = gates or {}
    holds = holds or {}
    refusals = dict(refused or {})  # one model's entries are only ever touched by the worker writing that model
    go_on = should_continue or (lambda: True)
    abandoned = False
    results: dict[tuple[ObjectRef, Action], ObjectResult] = {}
    failed_models: set[str] = set()
    written_nodes: set[str] = set()  # models whose NodeClaims/Machines were (re)created in this pass
    lock = threading.Lock()

    def record(change: Change, result: str, message: str = "", uid: str = "", refusal: bool = False) -> None:
        with lock:
            results[(change.ref, change.action)] = ObjectResult(change.ref, change.model_id, change.action, result,
                                                                message, change.drift, uid, refusal)
            if result == ObjectStatus.ERROR:
                failed_models.add(change.model_id)

    def one(change: Change, wave: Wave) -> None:
        if abandoned and change.writes:
            record(change, ObjectStatus.SKIPPED, ABANDONED_MESSAGE)
            return
        if change.action in (Action.NOOP, Action.BLOCKED):
            record(change, ObjectStatus.SKIPPED, change.reason)
            return
        if change.model_id in failed_models:
            record(change, ObjectStatus.SKIPPED, "not applied: an earlier object of this model failed")
            return
        # Before the model's first new node only (none is written after it): its Workspace checked again.
        if (wave == Wave.NODES and vet_nodes is not None and change.action in (Action.CREATE, Action.REPLACE)
                and change.model_id not in refusals and change.model_id not in written_nodes
                and (why := vet_nodes(change.model_id))):
            refusals[change.model_id] = why
        if change.model_id in refusals:
            record(change, ObjectStatus.SKIPPED, refusals[change.model_id], refusal=True)
            return
        if wave == Wave.WORKLOAD and change.model_id in holds:
            record(change, ObjectStatus.WAITING, holds[change.model_id])
            return
        if wave == Wave.WORKLOAD and change.action != Action.UPDATE:
            waiting = gates.get(change.model_id) or _nodes_waiting(plan, change.model_id, written_nodes)
            if waiting:
                record(change, ObjectStatus.WAITING, waiting)
                return
        try:
            message, uid = _write(change, kube, options, clock, sleep, checked)
        except StaleObject as err:
            record(change, ObjectStatus.STALE, f"{STALE_MESSAGE} ({err.message})")
            return
        except Exception as err:  # a per-object failure must not stop the other models
            record(change, ObjectStatus.ERROR, describe(err))
            return
        if wave == Wave.NODES and change.action in (Action.CREATE, Action.REPLACE):
            with lock:
                written_nodes.add(change.model_id)
        record(change, ObjectStatus.WAITING if message else (
            ObjectStatus.DRY_RUN if options.dry_run else ObjectStatus.DONE), message, uid)

    def prune(change: Change, wave: Wave) -> None:
        if abandoned:
            record(change, ObjectStatus.SKIPPED, ABANDONED_MESSAGE)
            return
        if change.model_id in refusals:
            record(change, ObjectStatus.SKIPPED, refusals[change.model_id], refusal=True)
            return
        if options.dry_run:
            record(change, ObjectStatus.DRY_RUN, change.reason)
            return
        try:
            delete_seen(kube, change)
        except StaleObject as err:
            record(change, ObjectStatus.STALE, f"{STALE_MESSAGE} ({err.message})")
            return
        except Exception as err:
            record(change, ObjectStatus.ERROR, describe(err))
            return
        record(change, ObjectStatus.DONE, change.reason)

    with ThreadPoolExecutor(max_workers=max(1, options.max_in_flight), thread_name_prefix="apply") as pool:
        for wave in Wave:  # blocked prunes (the guard) pass through here too, recorded as skipped with the reason
            abandoned = abandoned or not go_on()
            _in_parallel(pool, [c for c in plan.changes if c.wave == wave and c.action != Action.DELETE], one, wave)
        abandoned = abandoned or not go_on()
        for wave in reversed(Wave):
            _in_parallel(pool, [c for c in plan.changes if c.wave == wave and c.action == Action.DELETE], prune, wave)
        ordered = [results[(c.ref, c.action)] for c in plan.changes if (c.ref, c.action) in results]
        if not options.dry_run:
            # Kubernetes Events on the Workspaces changed (best effort, never fails the pass), queued: the
            # connection's sender threads post them while the pass goes on.
            done = {(r.ref, r.action): r.uid for r in ordered if r.result == ObjectStatus.DONE}
            for c in plan.changes:
                if (c.ref, c.action) in done:
                    record_changes(kube, [c], uids={c.ref: done[(c.ref, c.action)]})
            if not abandoned and go_on():  # a replica that lost its Lease must not write even an Event
                record_drift(kube, plan.drift_reported)  # DriftDetected, once per drift a connection first sees
    return _summarise(ordered)


def merge_rounds(rounds: Sequence[ApplyResult]) -> ApplyResult:
    """One ApplyResult from the rounds of a pass that planned again after stale deletes: what earlier rounds did
    (written, failed, waiting) stays; the last round says the rest (its stale objects included)."""
    if len(rounds) == 1:
        return rounds[0]
    kept = [o for r in rounds[:-1] for o in r.objects
            if o.result in (ObjectStatus.DONE, ObjectStatus.ERROR, ObjectStatus.WAITING)]
    done = {(o.ref, o.action) for o in kept}
    return _summarise([*kept, *(o for o in rounds[-1].objects if (o.ref, o.action) not in done)])


def _in_parallel(pool: ThreadPoolExecutor, changes: Sequence[Change], fn: Callable[[Change, Wave], None],
                 wave: Wave) -> None:
    """Run fn over one wave's changes: each model's in plan order on one worker, models side by side."""
    by_model: dict[str, list[Change]] = {}
    for change in changes:
        if change.writes:
            by_model.setdefault(change.model_id, []).append(change)
        else:  # nothing to send: recorded here, not queued as a task (a settled pass of 5,000 models has only these,
            fn(change, wave)  # and their futures were its peak memory)

    def model(group: list[Change]) -> None:
        for change in group:
            fn(change, wave)

    for future in [pool.submit(model, group) for group in by_model.values()]:
        future.result()  # fn records every failure itself; anything else is a bug and must surface


STALE_RETRIES = 3


def delete_seen(kube: KubeOps, change: Change) -> bool:
    """Delete the object planning saw, with its uid and resourceVersion as preconditions. When the API server refuses
    because a controller only wrote its status since (KAITO does, often), the object is read again and, still the same
    object with the same body, deleted with the new resourceVersion: the plan's reason holds. Anything else that
    changed raises StaleObject: the pass plans again on what is there now."""
    live = change.live
    for attempt in range(STALE_RETRIES + 1):
        try:
            return kube.delete(change.ref, precondition=seen(live))
        except StaleObject:
            if attempt == STALE_RETRIES:
                raise
            fresh = kube.get(change.ref)
            if fresh is None:
                return False
            if not same_object(live, fresh):
                raise
            live = fresh
    return False


def same_object(before: Manifest | None, after: Manifest) -> bool:
    """The same object (uid) with the same body: only status and the server's bookkeeping differ.

    Both are compared as a LIST keeps them (kube.compact): planning's copy is listed, the fresh one read whole by
    GET, and what compact leaves out (kubectl's last-applied annotation) would otherwise always differ."""
    def body(obj: Manifest) -> dict[str, object]:
        obj = compact(obj)
        meta = {k: v for k, v in (obj.get("metadata") or {}).items()
                if k not in ("resourceVersion", "managedFields", "generation")}
        return {**{k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion")}, "metadata": meta}

    if before is None:
        return False
    uid = (before.get("metadata") or {}).get("uid")
    return bool(uid) and uid == (after.get("metadata") or {}).get("uid") and body(before) == body(after)


def seen(live: Manifest | None) -> tuple[str, str] | None:
    """The (uid, resourceVersion) precondition of a delete: the object as planning saw it."""
    meta = (live or {}).get("metadata") or {}
    uid, version = str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")
    return (uid, version) if uid or version else None


def _write(change: Change, kube: KubeOps, options: ApplyOptions, clock: Callable[[], float],
           sleep: Callable[[float], None], checked: Collection[ObjectRef] = ()) -> tuple[str, str]:
    """Apply one create/update/replace: (a non-empty message when it has to wait for a later pass, the uid the API
    server answered with)."""
    assert change.desired is not None
    if change.action == Action.REPLACE and options.dry_run:
        return "", ""  # a dry run of the update would only repeat the immutable-field refusal the plan shows
    if options.dry_run and change.ref in checked:
        return "", ""  # the preflight's dry run of this very object was admitted
    if change.action == Action.REPLACE:
        delete_seen(kube, change)
        deadline = clock() + options.replace_wait_s
        while kube.get(change.ref) is not None:
            if clock() >= deadline:
                return (f"waiting for the old {change.ref.kind} to be deleted; it is created again on a later pass",
                        "")
            sleep(options.poll_s)
    creating = change.action in (Action.CREATE, Action.REPLACE)
    if change.handoff is not None and not creating:
        if not options.dry_run:
            _hand_over(change, kube)
        return "", str(((change.live or {}).get("metadata") or {}).get("uid") or "")
    first = merge_partial(change.desired, change.handoff) if change.handoff is not None else change.desired
    answer: Manifest = {}
    try:
        answer = kube.apply(first, dry_run=options.dry_run, force=change.action == Action.UPDATE)
    except KubeError as err:
        namespace = change.ref.namespace
        if not namespace or not namespace_missing(err, namespace):
            raise
        # Checking namespaces only when a write says one is missing keeps a settled pass at one LIST per kind.
        kube.apply(namespace_manifest(namespace), dry_run=options.dry_run)
        if not options.dry_run:  # a dry-run Namespace is not persisted: the object's dry run would fail again
            answer = kube.apply(first, force=change.action == Action.UPDATE)
    if change.handoff is not None and not options.dry_run:
        _hand_over(change, kube)
    return "", str((answer.get("metadata") or {}).get("uid") or "") if isinstance(answer, dict) else ""


def _hand_over(change: Change, kube: KubeOps) -> None:
    """Kubernetes' documented hand-over of a field to a controller (server-side apply, "Transferring ownership"):
    a second manager co-owns the create-only fields at their value, then our own apply leaves them out, so they
    stay as they are (not reset) until an autoscaler's write through /scale takes them over. 2 writes, made only
    when the object is created or moves under an autoscaler; never again afterwards."""
    assert change.desired is not None and change.handoff is not None
    meta = change.desired.get("metadata") or {}
    identity = {k: meta[k] for k in ("name", "namespace") if meta.get(k)}
    kube.apply({"apiVersion": change.desired.get("apiVersion"), "kind": change.desired.get("kind"),
                "metadata": identity, **change.handoff}, field_manager=HANDOFF_MANAGER)
    kube.apply(change.desired)


def namespace_missing(err: KubeError, namespace: str) -> bool:
    """The API server's answer when a namespaced object's namespace does not exist (404 'namespaces "x" not found')."""
    return err.status == 404 and f'namespaces "{namespace}" not found' in err.message


def namespace_manifest(name: str) -> Manifest:
    """A Namespace for a model that names one that does not exist yet, applied server-side as gitops-kaito.

    It carries the managed-by label (so people can find it) but no model label: nothing ever lists it as ours and
    it is never pruned or deleted, because other things (Secrets, other teams' workloads) may live there by then.
    """
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY_VALUE},
        "annotations": {ANNOTATION_CREATED_BY: "gitops-kaito: a model request named this namespace; never pruned"}}}


def _nodes_waiting(plan: Plan, model_id: str, written_nodes: set[str]) -> str:
    """Why this model's Workspace must wait for its own NodeClaims/Machines, or '' when they are Ready."""
    nodes = [c for c in plan.for_model(model_id) if c.wave == Wave.NODES and c.desired is not None]
    if not nodes:
        return ""
    if model_id in written_nodes:
        return f"waiting for nodes: 0/{len(nodes)} {nodes[0].ref.kind}s ready (just created)"
    ready = sum(1 for c in nodes if c.live is not None and c.action in (Action.NOOP, Action.UPDATE)
                and node_ready(c.live))
    if ready < len(nodes):
        return f"waiting for nodes: {ready}/{len(nodes)} {nodes[0].ref.kind}s ready"
    return ""


def describe(err: Exception) -> str:
    if isinstance(err, KubeError):
        return f"{err.reason}: {err.message}" if err.status else err.message
    return f"{type(err).__name__}: {err}"


def _summarise(results: Iterable[ObjectResult]) -> ApplyResult:
    by_model: dict[str, list[ObjectResult]] = {}
    for r in results:
        by_model.setdefault(r.model_id, []).append(r)
    outcomes = tuple(_outcome(m, tuple(rs)) for m, rs in sorted(by_model.items()))
    done = [r for r in results if r.result == ObjectStatus.DONE]
    return ApplyResult(
        outcomes=outcomes,
        created=sum(1 for r in done if r.action == Action.CREATE),
        updated=sum(1 for r in done if r.action == Action.UPDATE),
        replaced=sum(1 for r in done if r.action == Action.REPLACE),
        pruned=sum(1 for r in done if r.action == Action.DELETE),
        drift_corrected=sum(1 for r in done if r.drift and r.action == Action.UPDATE),
        failed=sum(1 for r in results if r.result == ObjectStatus.ERROR),
    )


def _outcome(model_id: str, objects: tuple[ObjectResult, ...]) -> ModelOutcome:
    candidates: list[tuple[str, str]] = []
    for o in objects:
        if o.result == ObjectStatus.ERROR:
            candidates.append((Outcome.FAILED, f"{o.ref}: {o.message}"))
        elif o.action == Action.BLOCKED:
            candidates.append((Outcome.BLOCKED, f"{o.ref}: {o.message}"))
        elif o.refused:  # the message names the refused object itself
            candidates.append((Outcome.BLOCKED, o.message))
        elif o.result == ObjectStatus.SKIPPED and o.message == ABANDONED_MESSAGE:
            candidates.append((Outcome.ABANDONED, f"{o.ref}: not written: {o.message}"))
        elif o.result == ObjectStatus.WAITING and o.action == Action.REPLACE:
            candidates.append((Outcome.REPLACING, f"{o.ref}: {o.message}"))
        elif o.result in (ObjectStatus.WAITING, ObjectStatus.STALE):  # stale: planned again, never a failure
            candidates.append((Outcome.PROVISIONING, f"{o.ref}: {o.message}"))
        elif o.action == Action.NOOP and o.message.startswith("being deleted"):
            candidates.append((Outcome.REPLACING, f"{o.ref}: {o.message}"))
        elif o.result == ObjectStatus.DRY_RUN and o.action == Action.DELETE:
            candidates.append((Outcome.PRUNED, f"would prune {o.ref}: {o.message}"))
        elif o.result == ObjectStatus.DONE and o.action == Action.DELETE:
            candidates.append((Outcome.PRUNED, o.message))
        elif o.result == ObjectStatus.DRY_RUN:
            # Nothing was written: say what a pass would write, object by object.
            would = [x for x in objects if x.result == ObjectStatus.DRY_RUN and x.action != Action.DELETE]
            drifted = [str(x.ref) for x in would if x.drift]
            candidates.append((Outcome.APPLIED, f"would write {len(would)} object(s): "
                               + ", ".join(f"{x.action.value} {x.ref}" for x in would)
                               + (f"; would correct drift: {', '.join(drifted)}" if drifted else "")))
        elif o.result == ObjectStatus.DONE:
            written = sum(1 for x in objects if x.result == ObjectStatus.DONE)
            drifted = [str(x.ref) for x in objects if x.drift and x.result == ObjectStatus.DONE]
            candidates.append((Outcome.APPLIED, f"{written} object(s) written"
                               + (f"; drift corrected: {', '.join(drifted)}" if drifted else "")))
    # Drift left in place: the model's state stays what the rest says, its message names the objects.
    reported = "; ".join(f"{o.ref}: {o.message}" for o in objects
                         if o.drift and o.action == Action.NOOP and o.result == ObjectStatus.SKIPPED)
    if not candidates:
        return ModelOutcome(model_id, Outcome.UNCHANGED, reported or "up to date", objects)
    if any(s == Outcome.PRUNED for s, _ in candidates) and any(s == Outcome.APPLIED for s, _ in candidates):
        candidates = [c for c in candidates if c[0] != Outcome.PRUNED]  # a stale object of a kept model
    state, message = min(candidates, key=lambda c: APPLY_PRIORITY.index(c[0]))
    return ModelOutcome(model_id, state, f"{message}; {reported}" if reported else message, objects)
