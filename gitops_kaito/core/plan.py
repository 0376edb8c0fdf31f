"""Pure planning: desired objects vs the live objects we own -> an ordered Plan of Changes.

Decides create/update/replace/delete/noop/blocked, the JSON patch of the fields we manage, drift (corrected, or
reported and left in place under `drift: report`), the prune guard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

import jsonpatch

from gitops_kaito.model.objects import (
    ANNOTATION_DIGEST,
    DesiredObject,
    Manifest,
    ObjectRef,
    Wave,
    applied_by_us,
    comparable,
    foreign_owned,
    owned_fields,
    project,
    wave_of,
)
from gitops_kaito.model.ownership import (
    ANNOTATION_ADOPT,
    ANNOTATION_DRIFT,
    ANNOTATION_PRUNE,
    ANNOTATION_REPLACE,
    ANNOTATION_REQUEST_DIGEST,
    ANNOTATION_REVISION,
    DEFAULT_INSTANCE,
    DRIFT_CORRECT,
    DRIFT_REPORT,
    LABEL_INSTANCE,
    LABEL_MODEL,
    instance_of,
    kaito_owned,
)
from gitops_kaito.model.recent import Recent

if TYPE_CHECKING:  # pure data only: planning never imports the Azure side of provision/
    from gitops_kaito.provision.agentpool import PoolChange

Key = tuple[str, str, str, str]  # group, kind, namespace, name: the version is not part of an object's identity


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"  # an immutable field changed: delete, then create
    DELETE = "delete"  # prune
    NOOP = "noop"
    BLOCKED = "blocked"  # a replace or prune that policy does not allow; the reason says why


WRITE_ACTIONS = frozenset({Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE})


@dataclass(frozen=True)
class Change:
    """What happens to one object in this pass, and why."""

    ref: ObjectRef
    action: Action
    model_id: str
    wave: Wave
    patch: tuple[Mapping[str, Any], ...] = field(default=(), hash=False)  # JSON patch live -> desired
    # Live was changed by someone else since we applied it. With action NOOP: drift reported, not corrected
    # (`drift: report` and the desired state did not change), see drift_reported.
    drift: bool = False
    reason: str = ""
    immutable: tuple[str, ...] = ()  # immutable paths that changed (replace / blocked)
    desired: Manifest | None = field(default=None, compare=False, hash=False, repr=False)
    live: Manifest | None = field(default=None, compare=False, hash=False, repr=False)
    drift_by: tuple[str, ...] = ()  # drift: the field managers (kubectl-edit, ...) that own a differing field now
    # Fields set at creation and then handed to another controller (an autoscaled InferenceSet's spec.replicas),
    # as a partial manifest with their values: a create/replace applies them once, an update hands them over.
    handoff: Manifest | None = field(default=None, compare=False, hash=False, repr=False)
    switches_from: ObjectRef | None = None  # a create that replaces the model's workload of another kind
    # BLOCKED because the object of this name is not this instance's to write (made by someone else, another
    # instance's, or unknown): nothing of the model is written while it is so
    not_ours: bool = False

    @property
    def writes(self) -> bool:
        return self.action in WRITE_ACTIONS

    @property
    def drift_reported(self) -> bool:
        """Drift left in place on purpose (`drift: report`): nothing is written, the plan and status say so."""
        return self.drift and self.action == Action.NOOP

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields the patch touches, as people write them (resource.count, data.inference_config.yaml)."""
        return patch_fields(self.patch)


@dataclass(frozen=True)
class PlanPolicy:
    """The knobs planning obeys (from gitops-kaito.yaml, the CLI flags and the repo's load result)."""

    prune: bool = True
    max_share: float = 0.5
    allow_all: bool = False
    allow_mass_prune: bool = False  # --allow-mass-prune
    replace_policy: str = "manual"  # manual | auto
    replace_allowed: frozenset[str] = frozenset()  # model ids annotated gitops.kaito.sh/replace: allowed
    drift: str = DRIFT_CORRECT  # correct | report: gitops-kaito.yaml's drift:, for models without the annotation
    drift_report: frozenset[str] = frozenset()  # model ids annotated gitops.kaito.sh/drift: report
    drift_correct: frozenset[str] = frozenset()  # model ids annotated gitops.kaito.sh/drift: correct
    # model ids whose file exists but failed to load, or whose folder could not be read (ownership.Spared): never pruned
    keep: Collection[str] = frozenset()
    suspended: frozenset[str] = frozenset()  # model ids suspended on purpose: pruned, not counted by the guard
    source_ok: bool = True  # False when the repo config failed to load: nothing is pruned
    instance: str = DEFAULT_INSTANCE  # only objects of this gitops-kaito instance are updated or pruned
    # model ids annotated gitops.kaito.sh/adopt: allowed (`gitops-kaito import` writes it): only these may take over
    # an existing object of their names that gitops-kaito did not create
    adopt_allowed: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Plan:
    """Ordered changes: creates/updates/replaces by wave, then deletes in reverse wave order."""

    changes: tuple[Change, ...]
    prune_refused: str = ""  # the guard's reason when it refused every delete
    managed_models: frozenset[str] = frozenset()
    # aks mode: provision.agentpool.PoolChange per agent pool (not Kubernetes objects), after the prune guard.
    node_pools: tuple[PoolChange, ...] = ()
    # Requests held back in this pass until another is done (core/depends), as (model id, why); the plan says so.
    waits: tuple[tuple[str, str], ...] = ()
    # Of those, the ones whose updates are held too (a new adapter from a tuning run not finished: Wait.holds_updates).
    holds_updates: frozenset[str] = frozenset()

    def waits_for(self, model_id: str) -> str:
        return next((why for mid, why in self.waits if mid == model_id), "")

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action != Action.NOOP)

    @property
    def pending_pools(self) -> tuple[PoolChange, ...]:
        return tuple(p for p in self.node_pools if p.action != "noop")

    @property
    def has_changes(self) -> bool:
        """Whether a sync would write anything; drift reported and left in place (drift_reported) is not a change."""
        return bool(self.pending) or bool(self.pending_pools)

    @property
    def drift_reported(self) -> tuple[Change, ...]:
        """Objects changed in the cluster by someone else and left so (`drift: report`): shown, never written."""
        return tuple(c for c in self.changes if c.drift_reported)

    def for_model(self, model_id: str) -> tuple[Change, ...]:
        return self._by_model.get(model_id, ())

    @cached_property
    def _by_model(self) -> dict[str, tuple[Change, ...]]:
        # Callers ask once per model; scanning every change each time made a 5,000-model pass quadratic.
        grouped: dict[str, list[Change]] = {}
        for c in self.changes:
            grouped.setdefault(c.model_id, []).append(c)
        return {m: tuple(cs) for m, cs in grouped.items()}

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(sorted({c.model_id for c in self.changes}))

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for c in self.changes:
            out[c.action.value] += 1
        out["drift"] = sum(1 for c in self.changes if c.drift and not c.drift_reported)  # to correct (or blocked)
        out["driftReported"] = sum(1 for c in self.changes if c.drift_reported)
        return out


def reported_drift_counts(plan: Plan) -> dict[str, int]:
    """Objects drifted and left in place by kind: the gitops_kaito_drift_detected gauge's values for one pass."""
    out: dict[str, int] = {}
    for c in plan.drift_reported:
        out[c.ref.kind] = out.get(c.ref.kind, 0) + 1
    return out


def key_of(ref: ObjectRef) -> Key:
    return (ref.group, ref.kind, ref.namespace, ref.name)


UP_TO_DATE = "up to date"


class UpToDate:
    """The (desired object, live object version) pairs the last plan found equal, for the long-running loops: they
    plan the very same DesiredObjects (desiredcache) against the same watched objects pass after pass, and a pair
    found equal stays equal while neither changes (a live object's resourceVersion moves with every write to it,
    status included). So a pass after one hand edit compares one object again, not all of them.

    Only "up to date" is remembered: any other verdict is planned afresh. Each plan keeps just the pairs it saw."""

    def __init__(self) -> None:
        self._seen: Recent[tuple[int, str, str, bool], DesiredObject] = Recent()

    @staticmethod
    def _key(want: DesiredObject, live: Manifest, adopt: bool) -> tuple[int, str, str, bool] | None:
        meta = live.get("metadata") or {}
        uid, version = meta.get("uid"), meta.get("resourceVersion")
        # id(): the DesiredObject itself is held as the value, so its id cannot be reused while the entry lives.
        return (id(want), str(uid), str(version), adopt) if uid and version else None

    def known(self, want: DesiredObject, live: Manifest, adopt: bool) -> bool:
        key = self._key(want, live, adopt)
        return key is not None and self._seen.get(key) is want

    def add(self, want: DesiredObject, live: Manifest, adopt: bool) -> None:
        if (key := self._key(want, live, adopt)) is not None:
            self._seen.put(key, want)

    def rotate(self) -> None:
        """End of a plan: what it saw is what the next one may reuse."""
        self._seen.rotate()

def make_plan(desired: Sequence[DesiredObject], live: Iterable[Manifest], policy: PlanPolicy | None = None, *,
              pools: Sequence[PoolChange] = (), pool_models: Iterable[str] = (),
              unverified: Mapping[Key, str] | None = None, up_to_date: UpToDate | None = None) -> Plan:
    """Compare what we want with the live objects that carry our owner labels.

    `live` may also hold objects of a desired name made by someone else or owned by another gitops-kaito instance:
    they are never written (the model is blocked, and nothing else of it is written), unless the model opted in to
    adoption (PlanPolicy.adopt_allowed) for an object nobody manages; only the policy's own instance's objects are
    ever pruned. `unverified`: desired objects whether something of their name exists could not be read (the
    reason): blocked alike, since a create would take over whatever is there.

    `pools` (aks mode) are the agent-pool changes and `pool_models` the models that own a live pool: the prune
    guard counts models, so a model that only exists as a pool counts as managed and its pool delete as a removal.

    `up_to_date`: the long-running loops' memory of pairs found equal (UpToDate); None plans every object afresh.
    """
    policy = policy or PlanPolicy()
    live_by_key: dict[Key, Manifest] = {}
    unowned: dict[Key, Manifest] = {}  # objects of a desired name made by someone else: adopted, never pruned
    foreign: dict[Key, str] = {}  # objects another gitops-kaito instance owns -> that instance: never touched
    kaito: dict[Key, str] = {}  # objects one of KAITO's controllers owns (an InferenceSet's replicas): never touched
    for obj in live:
        owner = instance_of(_labels(obj))
        if why := kaito_owned(obj):
            kaito[key_of(ObjectRef.of(obj))] = why
        elif owner == policy.instance:
            live_by_key[key_of(ObjectRef.of(obj))] = obj
        elif owner:
            foreign[key_of(ObjectRef.of(obj))] = owner
        else:
            unowned[key_of(ObjectRef.of(obj))] = obj
    applies: list[Change] = []
    desired_keys: set[Key] = set()
    for want in desired:
        key = key_of(want.ref)
        if key in desired_keys:
            raise ValueError(f"{want.ref} is rendered twice")
        desired_keys.add(key)
        if key in kaito:
            applies.append(_not_ours(want, f"an object of this name exists and is {kaito[key]}: it is never "
                                           "taken over; rename the model"))
        elif key in foreign and key not in live_by_key:
            applies.append(_plan_foreign(want, foreign[key]))
        elif key in live_by_key and not applied_by_us(live_by_key[key]):
            # Our labels on an object our field manager never applied: someone's copy, ours only by its labels.
            if want.model_id in policy.adopt_allowed:
                applies.append(_plan_desired(want, live_by_key[key], policy, memo=up_to_date))
            else:
                applies.append(_not_ours(want, f"blocked: {want.ref} carries gitops-kaito's labels but gitops-kaito "
                                               "never applied it (a copy?): it is left as it is and never pruned. To "
                                               f"manage it, annotate the model {ANNOTATION_ADOPT}: allowed, or give "
                                               "the model another name"))
        elif key in live_by_key:
            applies.append(_plan_desired(want, live_by_key[key], policy, memo=up_to_date))
        elif key in unowned:
            if want.model_id in policy.adopt_allowed:
                applies.append(_plan_desired(want, unowned[key], policy, adopt=True, memo=up_to_date))
            else:
                applies.append(_plan_not_ours(want))
        elif unverified and key in unverified:
            applies.append(_not_ours(want, f"could not check whether {want.ref} already exists "
                                           f"({unverified[key]}): nothing of the model is written until it can be"))
        else:
            applies.append(_plan_desired(want, None, policy))
    applies = _hold_models_not_ours(applies)
    desired_models = {d.model_id for d in desired}
    deletes = [
        _plan_stale(obj, desired_models, policy)
        for key, obj in live_by_key.items()
        if key not in desired_keys
    ]
    managed = frozenset(_labels(o).get(LABEL_MODEL, "") for o in live_by_key.values() if applied_by_us(o))
    managed |= frozenset(pool_models)
    pool_removed = {p.model_id for p in pools if p.action == "delete"}
    deletes, refused = _guard(deletes, managed, desired_models, policy, pool_removed)
    applies, deletes = _kind_switches(applies, deletes, desired, policy)
    applies.sort(key=lambda c: (c.wave, c.model_id, c.ref))
    deletes.sort(key=lambda c: (-c.wave, c.model_id, c.ref))
    node_pools = tuple(dataclasses.replace(p, action="blocked", reasons=(refused,)) if refused and p.action == "delete"
                       else p for p in pools)
    if up_to_date is not None:
        up_to_date.rotate()
    return Plan(changes=tuple(applies + deletes), prune_refused=refused, managed_models=managed,
                node_pools=node_pools)


def _plan_desired(want: DesiredObject, live: Manifest | None, policy: PlanPolicy, adopt: bool = False,
                  memo: UpToDate | None = None) -> Change:
    # Normalised and digested once per desired object (kept on it): the comparison starts from the same form.
    want_full, manifest = want.normalised.comparable, want.normalised.stamped
    created = manifest  # what a create or replace writes: a new object takes every field as rendered

    def change(action: Action, reason: str, **extra: Any) -> Change:
        return Change(ref=want.ref, action=action, model_id=want.model_id, wave=want.wave, reason=reason,
                      desired=created if action in (Action.CREATE, Action.REPLACE) else manifest, live=live,
                      **extra)

    if live is None:
        return change(Action.CREATE, "not in the cluster", handoff=want.create_only)
    if (live.get("metadata") or {}).get("deletionTimestamp"):
        return change(Action.NOOP, "being deleted; created again once it is gone")
    if memo is not None and memo.known(want, live, adopt):
        return change(Action.NOOP, UP_TO_DATE)
    if want.ref.kind == "NodeClaim":
        want_full, manifest = _lifecycle_as_created(want_full, live), _lifecycle_as_created(manifest, live)
    want_cmp = _as_unlabelled_default(want_full, live) if not adopt else want_full
    owned = owned_fields(live)
    # Create-only fields belong to another controller once the object exists: never compared. One we still own
    # (the model just moved under an autoscaler) is handed over at its live value, never reset.
    still_ours = _still_owned(want.create_only, owned, live) if want.create_only else None
    if want.create_only:
        owned = _without(owned, want.create_only)
    live_cmp = comparable(project(live, manifest, owned))
    if want_cmp == live_cmp:
        if still_ours:
            return change(Action.UPDATE, f"{', '.join(_leaf_fields(still_ours))} handed to the autoscaler, kept at "
                          "the live value: gitops-kaito sets it only at creation", handoff=still_ours)
        if memo is not None:
            memo.add(want, live, adopt)
        return change(Action.NOOP, UP_TO_DATE)
    patch = tuple(jsonpatch.make_patch(live_cmp, want_cmp).patch)
    drift = _is_drift(live, manifest, patch)
    immutable = immutable_changes(want.ref, live, live_cmp, want_cmp)
    if adopt:
        return _plan_adopt(want, policy, change, patch, immutable)
    by = drift_managers(live, patch) if drift else ()
    if is_tuning_run(want.manifest):
        return _plan_tuning_run(want, live, policy, change, patch, drift, by)
    if drift and _same_as_applied(live, manifest) and reports_drift(want, policy):
        # Only drift, and the model asks for it to be reported: nothing is written, whatever the fields (an
        # immutable one too: a replace would be a correction). A change of desired state is applied as usual.
        return change(Action.NOOP, reported_reason(patch, by), patch=patch, drift=True, immutable=immutable,
                      drift_by=by)
    if immutable:
        fields = ", ".join(immutable)
        what = NOT_ROLLED.get(want.ref.kind, "immutable field(s) {fields} changed").format(fields=fields)
        if _replace_allowed(want, policy):
            return change(Action.REPLACE, f"{what}: delete and create again",
                          patch=patch, drift=drift, immutable=immutable, drift_by=by, handoff=want.create_only)
        return change(Action.BLOCKED,
                      f"{what}; replacing deletes and recreates the "
                      f"{want.ref.kind}: set replacePolicy: auto in gitops-kaito.yaml or annotate the model "
                      f"{ANNOTATION_REPLACE}: allowed", patch=patch, drift=drift, immutable=immutable, drift_by=by)
    if drift and reports_drift(want, policy):  # the repository changed too: its change overwrites the hand edit
        reason = "changed in the repository; applying it also overwrites fields changed in the cluster"
    else:
        reason = "drift: changed in the cluster by someone else" if drift else "changed in the repository"
    return change(Action.UPDATE, reason, patch=patch, drift=drift, drift_by=by, handoff=still_ours)


def _leaf_paths(partial: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for key, value in partial.items():
        if isinstance(value, Mapping) and value:
            out += _leaf_paths(value, (*prefix, key))
        else:
            out.append((*prefix, key))
    return out


def _leaf_fields(partial: Mapping[str, Any]) -> list[str]:
    return [".".join(p) for p in _leaf_paths(partial)]


def _still_owned(create_only: Manifest, owned: Mapping[str, Any] | None, live: Manifest) -> Manifest | None:
    """The create-only fields our manager still owns on `live`, with their live values (None: none)."""
    if owned is None:
        return None
    found: Manifest = {}
    for path in _leaf_paths(create_only):
        node: Any = owned
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, Mapping) else None
        value = _get(live, *path)
        if node is None or value is None:
            continue
        target = found
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
    return found or None


def _without(owned: Mapping[str, Any] | None, create_only: Manifest) -> Mapping[str, Any] | None:
    """Our fieldsV1 tree minus the create-only paths: what is ours to compare."""
    if owned is None:
        return None

    def strip(node: Mapping[str, Any], partial: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(node)
        for key, value in partial.items():
            sub = out.get(f"f:{key}")
            if isinstance(value, Mapping) and value and isinstance(sub, Mapping):
                out[f"f:{key}"] = strip(sub, value)
            else:
                out.pop(f"f:{key}", None)
        return out
    return strip(owned, create_only)


# Kinds whose "immutable" changes are not refused but never reach what runs: the reason the plan gives.
NOT_ROLLED = {
    # `pkg/inferenceset/inferenceset_controller.go` at v0.12.0: template edits only add labels to existing
    # children; everything else affects only children created later (a mixed fleet on the next scale-up).
    "InferenceSet": "KAITO does not roll {fields} onto the existing replicas",
}
WORKLOAD_KINDS = ("Workspace", "InferenceSet")


def _kind_switches(applies: list[Change], deletes: list[Change], desired: Sequence[DesiredObject],
                   policy: PlanPolicy) -> tuple[list[Change], list[Change]]:
    """A model moving between one Workspace and an InferenceSet (same name): the new workload is created and the
    old one deleted, a replace of what serves the model; under replacePolicy manual both wait (blocked)."""
    stale = {(c.model_id, c.ref.namespace, c.ref.name, c.ref.kind): c for c in deletes
             if c.action == Action.DELETE and c.ref.kind in WORKLOAD_KINDS}
    wants = {d.ref: d for d in desired}
    switched: dict[ObjectRef, ObjectRef] = {}  # old ref -> new ref
    new_applies: list[Change] = []
    for c in applies:
        if c.action != Action.CREATE or c.ref.kind not in WORKLOAD_KINDS:
            new_applies.append(c)
            continue
        other = next((k for k in WORKLOAD_KINDS if k != c.ref.kind), "")
        old = stale.get((c.model_id, c.ref.namespace, c.ref.name, other))
        if old is None:
            new_applies.append(c)
            continue
        switched[old.ref] = c.ref
        what = f"switching {old.ref.kind} -> {c.ref.kind}: the {old.ref.kind} is deleted once the {c.ref.kind} exists"
        if _replace_allowed(wants[c.ref], policy):
            new_applies.append(dataclasses.replace(c, reason=what, switches_from=old.ref))
        else:
            new_applies.append(dataclasses.replace(
                c, action=Action.BLOCKED, switches_from=old.ref,
                reason=f"{what}; this replaces what serves the model: set replacePolicy: auto in gitops-kaito.yaml "
                       f"or annotate the model {ANNOTATION_REPLACE}: allowed"))
    new_deletes: list[Change] = []
    for c in deletes:
        new_ref = switched.get(c.ref)
        if new_ref is None:
            new_deletes.append(c)
            continue
        blocked = next(a for a in new_applies if a.ref == new_ref).action == Action.BLOCKED
        new_deletes.append(dataclasses.replace(
            c, action=Action.BLOCKED if blocked else Action.DELETE,
            reason=f"replaced by {new_ref}" + (" (blocked: replace policy)" if blocked else "")))
    return new_applies, new_deletes


NEW_RUN = "new run"  # how the plan names the replace of a tuning Workspace whose request changed


def is_tuning_run(manifest: Manifest) -> bool:
    """A KAITO tuning Workspace (kind TuningJob): one run, never edited in place."""
    return manifest.get("kind") == "Workspace" and bool(manifest.get("tuning"))


def _plan_tuning_run(want: DesiredObject, live: Manifest, policy: PlanPolicy, change: Callable[..., Change],
                     patch: tuple[Mapping[str, Any], ...], drift: bool, by: tuple[str, ...]) -> Change:
    """KAITO deletes and re-creates a tuning Workspace's Job on ANY spec change, even after it succeeded
    (`pkg/workspace/controllers/workspace_controller.go` at v0.12.0), so an update would silently train again.
    The request digest decides: the same request is the same run, left as it is (a template or gitops-kaito change
    does not retrain; drift is reported, never corrected); a changed request is a new run, planned as a replace."""
    live_digest = ((live.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REQUEST_DIGEST)
    want_digest = ((want.manifest.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REQUEST_DIGEST)
    if live_digest == want_digest:
        if drift and _same_as_applied(live, want.normalised.stamped):
            reason = (f"{reported_reason(patch, by)}; a tuning run's drift is never corrected (KAITO would run the "
                      "job again)")
            return change(Action.NOOP, reason, patch=patch, drift=True, drift_by=by)
        return change(Action.NOOP, "same run: its request did not change, so the live run is left as it is "
                      "(re-applying a tuning Workspace makes KAITO run the job again)")
    state = str((live.get("status") or {}).get("state") or "")
    reason = (f"{NEW_RUN}: the tuning request changed; the Workspace is deleted and created again and KAITO runs "
              "the job from the start")
    if state in ("Running", "Pending") and not _replace_allowed(want, policy):
        return change(Action.BLOCKED, f"{reason}, stopping the run in progress ({state}): set replacePolicy: auto "
                      f"in gitops-kaito.yaml or annotate the request {ANNOTATION_REPLACE}: allowed",
                      patch=patch, immutable=("tuning",))
    return change(Action.REPLACE, reason, patch=patch, immutable=("tuning",))


# A NodeClaim's spec fields that only say how long its node lives: decided when it is created.
NODECLAIM_LIFECYCLE = ("expireAfter", "terminationGracePeriod")


def _lifecycle_as_created(desired: Manifest, live: Manifest) -> Manifest:
    """`desired` with the live NodeClaim's expireAfter and terminationGracePeriod.

    A NodeClaim's spec is immutable (CEL `self == oldSelf` in karpenter.sh_nodeclaims.yaml, karpenter v1.7.0), so
    these can only be what they were at creation: a change of `nodeClaims:` in gitops-kaito.yaml applies to
    NodeClaims created from then on. It never replaces (drains) a model's GPU node, blocks the model, or counts as
    drift, and NodeClaims made before the setting existed (720h, Karpenter's default) keep it.
    """
    spec = desired.get("spec")
    if not isinstance(spec, Mapping):
        return desired
    live_spec = live.get("spec") or {}
    kept = {k: v for k, v in spec.items() if k not in NODECLAIM_LIFECYCLE}
    kept.update({k: live_spec[k] for k in NODECLAIM_LIFECYCLE if k in live_spec})
    return {**desired, "spec": kept}


def reports_drift(want: DesiredObject, policy: PlanPolicy) -> bool:
    """Whether this object's model keeps drift in place (report) rather than reverting it (correct): the model's
    gitops.kaito.sh/drift annotation, else the repository's drift:."""
    if want.model_id in policy.drift_report:
        return True
    if want.model_id in policy.drift_correct:
        return False
    annotations = (want.manifest.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_DRIFT)
    if value in (DRIFT_REPORT, DRIFT_CORRECT):
        return bool(value == DRIFT_REPORT)
    return policy.drift == DRIFT_REPORT


REPORTED = "drift reported, not corrected"


def reported_reason(patch: Sequence[Mapping[str, Any]], by: Sequence[str]) -> str:
    who = f" by {', '.join(by)}" if by else ""
    return f"{REPORTED} (drift: report): {', '.join(patch_fields(patch))} changed in the cluster{who}"


def _as_unlabelled_default(want_cmp: Manifest, live: Manifest) -> Manifest:
    """Objects made before instances existed lack the instance label and belong to the default instance. The
    default instance does not count the missing label as a change (upgrading must not rewrite every object, nor
    report drift); the label is added with the next real change. `want_cmp` is comparable() output."""
    labels = _labels(want_cmp)
    if LABEL_INSTANCE in _labels(live) or labels.get(LABEL_INSTANCE) != DEFAULT_INSTANCE:
        return want_cmp
    del labels[LABEL_INSTANCE]
    meta = {k: v for k, v in want_cmp["metadata"].items() if k != "labels"}
    if labels:  # comparable() drops an empty map
        meta["labels"] = labels
    return {**want_cmp, "metadata": meta}


def _plan_foreign(want: DesiredObject, owner: str) -> Change:
    """An object of a desired name that another gitops-kaito instance owns: never adopted, updated or replaced."""
    return _not_ours(want, f"blocked: owned by gitops-kaito instance {owner!r}; two instances must not claim the "
                           f"same model (move it to one repository or path, or delete the other's object)")


def _plan_not_ours(want: DesiredObject) -> Change:
    """An object of a desired name that someone else made, and the model did not opt in to adopting it."""
    return _not_ours(want, f"blocked: {want.ref} exists and was not created by gitops-kaito (it has no "
                           f"gitops.kaito.sh labels): it is left as it is and never pruned. To manage it, adopt it on "
                           f"purpose (`gitops-kaito import`, or annotate the model {ANNOTATION_ADOPT}: allowed), or "
                           "give the model another name")


def _not_ours(want: DesiredObject, reason: str) -> Change:
    return Change(ref=want.ref, action=Action.BLOCKED, model_id=want.model_id, wave=want.wave, reason=reason,
                  desired=want.normalised.stamped, not_ours=True)


def _hold_models_not_ours(applies: list[Change]) -> list[Change]:
    """Nothing of a model is written while one of its objects is not ours: its Workspace would point at someone
    else's ConfigMap, or GPU nodes would be paid for a model that cannot run."""
    held = {c.model_id: c for c in applies if c.not_ours}
    if not held:
        return applies
    return [dataclasses.replace(c, action=Action.BLOCKED, reason=f"not applied: {held[c.model_id].ref} of this "
                                f"model is not gitops-kaito's to write (see its reason)")
            if c.model_id in held and c.writes else c for c in applies]


ADOPT_REASON = "adopting an existing object not managed by gitops-kaito yet: updated in place, not recreated"


def _plan_adopt(want: DesiredObject, policy: PlanPolicy, change: Callable[..., Change], patch: tuple[Mapping[str, Any], ...],
                immutable: tuple[str, ...]) -> Change:
    """An object of the desired name that someone else made: taken over in place, unless it is something else."""
    if not immutable:
        return change(Action.UPDATE, ADOPT_REASON, patch=patch)
    fields = ", ".join(immutable)
    what = (f"an existing {want.ref.kind} of this name, not managed by gitops-kaito, differs in immutable "
            f"field(s) {fields}")
    if _replace_allowed(want, policy):
        return change(Action.REPLACE, f"{what}: delete it and create ours", patch=patch,
                      immutable=immutable)
    return change(Action.BLOCKED, f"{what}; it is not taken over. Rename the model, delete the object, or allow "
                  f"replacing (replacePolicy: auto or {ANNOTATION_REPLACE}: allowed)", patch=patch,
                  immutable=immutable)


def _plan_stale(obj: Manifest, desired_models: set[str], policy: PlanPolicy) -> Change:
    ref = ObjectRef.of(obj)
    model = _labels(obj).get(LABEL_MODEL, "")
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if meta.get("deletionTimestamp"):
        action, reason = Action.NOOP, "already being deleted"
    elif not policy.source_ok:
        action, reason = Action.NOOP, "not pruned: the repository's gitops-kaito.yaml failed to load"
    elif model in policy.keep:
        action, reason = Action.NOOP, "not pruned: the model's file failed to load"
    elif not applied_by_us(obj):
        action, reason = Action.NOOP, "not pruned: it carries our labels but gitops-kaito never applied it (a copy?)"
    elif annotations.get(ANNOTATION_PRUNE) == "disabled":
        action, reason = Action.NOOP, f"not pruned: {ANNOTATION_PRUNE}: disabled"
    elif not policy.prune:
        action, reason = Action.NOOP, "not pruned: prune is disabled in gitops-kaito.yaml"
    elif model in policy.suspended:
        action, reason = Action.DELETE, "model suspended"
    elif model in desired_models:
        action, reason = Action.DELETE, "no longer rendered for this model"
    else:
        action, reason = Action.DELETE, "model removed from the repository"
    return Change(ref=ref, action=action, model_id=model, wave=wave_of(ref), reason=reason, live=obj)


def _guard(deletes: list[Change], managed: frozenset[str], desired_models: set[str],
           policy: PlanPolicy, pool_removed: Iterable[str] = ()) -> tuple[list[Change], str]:
    """Refuse every delete when the pass would remove too many of the managed models."""
    removed = {c.model_id for c in deletes if c.action == Action.DELETE}
    removed = {m for m in removed | set(pool_removed) if m not in desired_models and m not in policy.suspended}
    if not removed or policy.allow_all or policy.allow_mass_prune:
        return deletes, ""
    share = len(removed) / len(managed)
    if share <= policy.max_share and len(removed) < len(managed):
        return deletes, ""
    what = "all" if len(removed) == len(managed) else f"{share:.0%}"
    refused = (f"prune guard: refusing to delete {len(removed)} of {len(managed)} managed models ({what}, "
               f"limit {policy.max_share:.0%}); nothing was deleted. Re-run with --allow-mass-prune or set "
               f"prune.allowAll in gitops-kaito.yaml if this is intended")
    guarded = [Change(ref=c.ref, action=Action.BLOCKED, model_id=c.model_id, wave=c.wave, reason=refused,
                      live=c.live) if c.action == Action.DELETE else c for c in deletes]
    return guarded, refused


def _replace_allowed(want: DesiredObject, policy: PlanPolicy) -> bool:
    annotations = (want.manifest.get("metadata") or {}).get("annotations") or {}
    return (policy.replace_policy == "auto" or want.model_id in policy.replace_allowed
            or annotations.get(ANNOTATION_REPLACE) == "allowed")


def _same_as_applied(live: Manifest, desired: Manifest) -> bool:
    """Whether we want what we last applied (so a difference is drift alone): the applied digest says so, or,
    on an object applied before digests, the same revision."""
    live_ann = (live.get("metadata") or {}).get("annotations") or {}
    want_ann = (desired.get("metadata") or {}).get("annotations") or {}
    if live_ann.get(ANNOTATION_DIGEST):
        return bool(live_ann[ANNOTATION_DIGEST] == want_ann.get(ANNOTATION_DIGEST))
    return bool(live_ann.get(ANNOTATION_REVISION)) and live_ann.get(ANNOTATION_REVISION) == want_ann.get(
        ANNOTATION_REVISION)


def drift_managers(live: Manifest, patch: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The other field managers (kubectl-edit, a controller) that own one of the patched fields: who drifted it.
    Empty when the server keeps no managedFields or the edit removed a field (nobody owns a missing one)."""
    return tuple(sorted({str(manager) for manager, tree in foreign_owned(live)
                         if manager and any(_owned_path(tree, op.get("path", "")) for op in patch)}))


def patch_fields(patch: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """The fields a JSON patch touches, each once, in patch order (pointer_to_field)."""
    return tuple(dict.fromkeys(pointer_to_field(op.get("path", "")) for op in patch))


def pointer_to_field(pointer: str) -> str:
    """A JSON pointer as people write the field: /resource/count -> resource.count, /a/0/b -> a[0].b."""
    out = ""
    for part in pointer.split("/")[1:]:
        key = part.replace("~1", "/").replace("~0", "~")
        out += f"[{key}]" if key.isdigit() else (f".{key}" if out else key)
    return out or "(the whole object)"


def _is_drift(live: Manifest, desired: Manifest, patch: Sequence[Mapping[str, Any]]) -> bool:
    live_ann = (live.get("metadata") or {}).get("annotations") or {}
    want_ann = (desired.get("metadata") or {}).get("annotations") or {}
    if live_ann.get(ANNOTATION_DIGEST) and live_ann.get(ANNOTATION_DIGEST) == want_ann.get(ANNOTATION_DIGEST):
        return True
    if live_ann.get(ANNOTATION_REVISION) and live_ann.get(ANNOTATION_REVISION) == want_ann.get(ANNOTATION_REVISION):
        return True
    return any(_owned_path(tree, op.get("path", "")) for _, tree in foreign_owned(live) for op in patch)


def _owned_path(tree: Mapping[str, Any], pointer: str) -> bool:
    node: Any = tree
    for part in [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]:
        if not isinstance(node, Mapping):
            return False
        if f"f:{part}" in node:
            node = node[f"f:{part}"]
        elif part.isdigit():
            return any(k.startswith(("i:", "k:", "v:")) for k in node)
        else:
            return False
    return True


def _get(obj: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(p)
    return obj


def immutable_changes(ref: ObjectRef, live: Manifest, live_cmp: Any, want_cmp: Any) -> tuple[str, ...]:
    """Paths whose change the API refuses on update (KAITO's webhook: validateUpdate in `api/v1beta1/workspace_validation.go` at v0.12.0; Karpenter's specs),
    or that KAITO never rolls onto what runs (an InferenceSet's template: NOT_ROLLED)."""
    if ref.kind in ("NodeClaim", "Machine") and ref.group == "karpenter.sh":
        return ("spec",) if _get(live_cmp, "spec") != _get(want_cmp, "spec") else ()
    if ref.kind == "RAGEngine" and ref.group == "kaito.sh":
        return _ragengine_immutable(live, live_cmp, want_cmp)
    if ref.kind == "InferenceSet" and ref.group == "kaito.sh":
        return _inferenceset_not_rolled(live_cmp, want_cmp)
    if ref.kind != "Workspace" or ref.group != "kaito.sh":
        return ()
    changed: list[str] = []

    def differs(*path: str) -> bool:
        return bool(_get(live_cmp, *path) != _get(want_cmp, *path))

    for section in ("inference", "tuning"):
        if (section in live) != (section in want_cmp):
            changed.append(section)
    if differs("inference", "preset"):
        changed.append("inference.preset")
    if (_get(live, "inference", "template") is None) != (_get(want_cmp, "inference", "template") is None) or (
            _get(want_cmp, "inference", "template") is not None and differs("inference", "template")):
        # KAITO's webhook refuses setting or unsetting it, and never applies an edit to what runs
        # (`pkg/workspace/controllers/workspace_controller.go` at v0.12.0: "TODO: handle update").
        changed.append("inference.template")
    for path in (("resource", "instanceType"), ("resource", "labelSelector"), ("resource", "partition"),
                 ("tuning", "preset"), ("tuning", "method"), ("tuning", "input", "name")):
        if differs(*path):
            changed.append(".".join(path))
    live_count, want_count = _get(live, "resource", "count"), _get(want_cmp, "resource", "count")
    if live_count is not None and want_count is not None and live_count != want_count:
        changed.append("resource.count")
    return tuple(dict.fromkeys(changed))


def _ragengine_immutable(live: Manifest, live_cmp: Any, want_cmp: Any) -> tuple[str, ...]:
    """A RAGEngine's compute cannot be added or removed, nor its instanceType, labelSelector, count or partition
    changed (`api/v1beta1/ragengine_validation.go` at v0.12.0); and KAITO's controller applies only env changes to a
    running engine (`pkg/ragengine/controllers/ragengine_controller.go`), so a new storage, guardrails policy or
    embedding image takes effect only through a replace."""
    changed: list[str] = []

    def differs(*path: str) -> bool:
        return bool(_get(live_cmp, *path) != _get(want_cmp, *path))

    if (_get(live, "spec", "compute") is None) != (_get(want_cmp, "spec", "compute") is None):
        changed.append("spec.compute")
    for path in (("spec", "compute", "instanceType"), ("spec", "compute", "labelSelector"),
                 ("spec", "compute", "count"), ("spec", "compute", "partition"), ("spec", "storage"),
                 ("spec", "guardrails"), ("spec", "embedding", "local", "image")):
        if differs(*path):
            changed.append(".".join(path))
    return tuple(dict.fromkeys(changed))


def _inferenceset_not_rolled(live_cmp: Any, want_cmp: Any) -> tuple[str, ...]:
    """spec.labelSelector and spec.template, except template labels (KAITO adds those to existing children)."""
    changed = ["spec.labelSelector"] if _get(live_cmp, "spec", "labelSelector") != _get(
        want_cmp, "spec", "labelSelector") else []
    live_t, want_t = _get(live_cmp, "spec", "template") or {}, _get(want_cmp, "spec", "template") or {}
    for key in sorted(set(live_t) | set(want_t)):
        if key == "metadata":
            live_meta, want_meta = live_t.get(key) or {}, want_t.get(key) or {}
            for sub in sorted((set(live_meta) | set(want_meta)) - {"labels"}):
                if live_meta.get(sub) != want_meta.get(sub):
                    changed.append(f"spec.template.metadata.{sub}")
        elif live_t.get(key) != want_t.get(key):
            changed.append(f"spec.template.{key}")
    return tuple(changed)


def node_ready(obj: Manifest) -> bool:
    """A NodeClaim/Machine is ready like KAITO counts it: Ready (or MachineReady) True, or a nodeName, not deleting."""
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    status = obj.get("status") or {}
    if status.get("nodeName"):
        return True
    return any(c.get("type") in ("Ready", "MachineReady") and c.get("status") == "True"
               for c in status.get("conditions") or [] if isinstance(c, Mapping))


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})
