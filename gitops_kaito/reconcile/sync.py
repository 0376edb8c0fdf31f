"""One reconcile pass over a local repository directory: load -> render -> read live -> plan -> apply.

Thin orchestration with a clean boundary: git checkout and status write-back wrap it from the outside.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gitops_kaito.adapters.kube import KindNotServed, Kube, KubeError, ListSpec
from gitops_kaito.core import depends
from gitops_kaito.core.plan import Action, Change, Key, Plan, PlanPolicy, UpToDate, key_of, make_plan
from gitops_kaito.core.preflight import ClusterCheck
from gitops_kaito.core.render import (
    Desired,
    RenderedModel,
    Template,
    load_templates,
    render_request,
    repo_templates_dir,
)
from gitops_kaito.model.kaito import (
    KAITO_RAGENGINE_LABEL,
    KAITO_WORKSPACE_LABEL,
    KARPENTER_WORKSPACE_NAME_LABEL,
    NODE_KINDS,
)
from gitops_kaito.model.objects import MANAGED_KINDS, DesiredObject, Manifest, ObjectRef, Wave, wave_of
from gitops_kaito.model.ownership import (
    ANNOTATION_ADOPT,
    ANNOTATION_DRIFT,
    ANNOTATION_REPLACE,
    DEFAULT_INSTANCE,
    DRIFT_CORRECT,
    DRIFT_REPORT,
    LABEL_MODEL,
    Spared,
    instance_of,
    kaito_owned,
)
from gitops_kaito.model.states import ObjectStatus, Outcome, PoolState
from gitops_kaito.reconcile import apply as applying
from gitops_kaito.reconcile import preflight as preflights
from gitops_kaito.repo.config import Scope
from gitops_kaito.repo.kinds import Resolved
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import ResolvedModel
from gitops_kaito.repo.yamlsource import SourceError

if TYPE_CHECKING:
    from gitops_kaito.provision.pools import PoolPlan, PoolRunner
    from gitops_kaito.provision.provisioner import PoolOutcome

log = logging.getLogger(__name__)



class SyncError(Exception):
    """The pass cannot run at all (KAITO not installed, cluster unreachable, broken template override)."""


@dataclass(frozen=True)
class ModelResult:
    """One model's outcome in a pass."""

    model_id: str
    state: str  # apply states (Applied, Unchanged, Provisioning, Blocked, Failed, ...) or Invalid / Suspended
    message: str
    path: str = ""
    changes: tuple[Change, ...] = ()
    model: Resolved | None = field(default=None, compare=False, repr=False)
    pool: PoolOutcome | None = None  # aks mode: what happened to the model's agent pool in this pass


@dataclass(frozen=True, kw_only=True)
class PassResult(applying.ChangeCounts):
    revision: str
    plan: Plan
    outcomes: tuple[ModelResult, ...]
    errors: tuple[str, ...]
    duration_s: float = 0.0
    dry_run: bool = False
    desired: Desired | None = field(default=None, compare=False, repr=False)
    pools: tuple[PoolOutcome, ...] = ()  # aks mode: one outcome per agent pool
    live: LiveState | None = field(default=None, compare=False, repr=False)  # read before applying
    abandoned: str = ""  # why the pass stopped early (should_continue turned False); nothing after it was written

    @property
    def ok(self) -> bool:
        return (not self.errors and self.failed == 0 and not self.plan.prune_refused
                and not any(o.state == Outcome.FAILED for o in self.outcomes))

    def outcome(self, model_id: str) -> ModelResult | None:
        return next((o for o in self.outcomes if o.model_id == model_id), None)

    def summary(self) -> str:
        verb = "would " if self.dry_run else ""
        parts = [f"{verb}create {self.created}", f"{verb}update {self.updated}",
                 f"{verb}replace {self.replaced}", f"{verb}prune {self.pruned}"]
        text = f"revision {self.revision}: " + ", ".join(parts)
        if self.drift_corrected:
            text += f" ({self.drift_corrected} drift corrected)"
        if reported := len(self.plan.drift_reported):
            text += f"; {reported} drifted, left in place (drift: report)"
        if self.failed:
            text += f"; {self.failed} failed"
        if self.abandoned:
            text += f"; {self.abandoned}"
        return text + f" in {self.duration_s:.2f}s"


DesiredLoader = Callable[[Path, str, Scope | None], Desired]  # load_desired, or a cache in front of it


def local_revision(repo_dir: Path) -> str:
    """'<branch>@sha1:<sha>' of a git checkout (marked '+dirty' with local edits), else 'local'."""
    try:
        import git

        repo = git.Repo(repo_dir, search_parent_directories=True)
        sha = repo.head.commit.hexsha
        branch = "" if repo.head.is_detached else repo.active_branch.name
        dirty = "+dirty" if repo.is_dirty(untracked_files=True) else ""
    except Exception:  # not a repository, no commit yet, git missing: the revision is informational
        return "local"
    return (f"{branch}@sha1:{sha}" if branch else f"sha1:{sha}") + dirty


def load_desired(repo_dir: Path, revision: str, scope: Scope | None = None) -> Desired:
    """Load and render; a model that fails is reported and excluded, never fatal for the others.

    `scope`: the --instance/--path overrides of the repository's gitops-kaito.yaml."""
    if not Path(repo_dir).is_dir():  # a mistyped path must never read as "no models": that would prune
        raise SyncError(f"repository directory {repo_dir} does not exist")
    load = load_repository(Path(repo_dir), scope=scope)
    errors = [str(e) for e in load.errors]
    invalid: dict[str, str] = {e.model_id: e.message for e in load.errors if e.model_id}
    templates_dir = repo_templates_dir(load.root)
    templates: dict[str, Template] = {}
    templates_ok = True
    try:
        templates = load_templates(templates_dir)
    except SourceError as err:  # a broken override breaks every model: render nothing, prune nothing
        templates_ok = False
        errors.append(str(err))
    rendered: list[RenderedModel] = []
    if templates_ok:
        for model in load.models:
            try:
                rendered.append(render_request(model, load.config, revision, templates_dir, templates=templates))
            except (SourceError, ValueError) as err:
                invalid[model.request.id] = str(err)
                errors.append(f"{model.request.path}: {err}")
    objects = tuple(o for r in rendered for o in r.objects)
    return Desired(load, tuple(rendered), objects, tuple(sorted(invalid.items())), tuple(errors), templates_ok)


def plan_policy(desired: Desired, *, allow_mass_prune: bool = False) -> PlanPolicy:
    config = desired.load.config
    # Each rendered model's annotations as a mapping, made once per pass (it runs on every pass, cached or not).
    annotations = {r.model.request.id: dict(r.model.request.annotations) for r in desired.rendered}
    return PlanPolicy(
        prune=config.prune.enabled,
        max_share=config.prune.max_share,
        allow_all=config.prune.allow_all,
        allow_mass_prune=allow_mass_prune,
        replace_policy=config.replace_policy,
        replace_allowed=frozenset(m for m, a in annotations.items() if a.get(ANNOTATION_REPLACE) == "allowed"),
        adopt_allowed=frozenset(m for m, a in annotations.items() if a.get(ANNOTATION_ADOPT) == "allowed"),
        # gitops.kaito.sh/drift on a model overrides the repository's drift: for every object of that model.
        drift=config.drift,
        drift_report=frozenset(m for m, a in annotations.items() if a.get(ANNOTATION_DRIFT) == DRIFT_REPORT),
        drift_correct=frozenset(m for m, a in annotations.items() if a.get(ANNOTATION_DRIFT) == DRIFT_CORRECT),
        # A model whose file exists but failed (to load or render) keeps whatever it has in the cluster.
        keep=Spared(frozenset((set(desired.load.discovered_ids) - annotations.keys()) | {m for m, _ in desired.invalid}),
                    desired.load.kept_namespaces),
        suspended=frozenset(r.model.request.id for r in desired.rendered if r.suspended),
        source_ok=desired.load.config_ok and desired.templates_ok,
        instance=config.instance,
    )


@dataclass(frozen=True)
class LiveState:
    """What a pass read from the cluster before applying: our objects, and the GPU node objects KAITO made.

    Health and status reuse it (no second round of LISTs) when the pass wrote nothing.
    """

    owned: tuple[Manifest, ...]
    kaito_nodes: tuple[Manifest, ...] = ()  # NodeClaims/Machines KAITO made for a Workspace (either provisioner)
    others: tuple[Manifest, ...] = ()  # objects of other gitops-kaito instances the LISTs returned anyway
    kaito_children: tuple[Manifest, ...] = ()  # Workspaces KAITO made for an InferenceSet (its replicas)
    # Objects of a desired name that nobody manages, found by the LISTs of list_all kinds (adopted in place), and
    # those kinds: read_unowned need not look them up again.
    unowned: tuple[Manifest, ...] = ()
    listed_all: frozenset[str] = frozenset()
    version: int | None = None  # the watch cache's version this was read at (None: listed)


def read_live(kube: Kube, objects: Sequence[DesiredObject], instance: str = DEFAULT_INSTANCE) -> list[Manifest]:
    """One LIST per managed kind the cluster serves; raises KaitoNotInstalled when Workspaces are not served."""
    return list(read_live_state(kube, objects, instance).owned)


class LiveSource(Protocol):
    """A watched view of the cluster (adapters/watchcache.WatchCache) a long-running loop reads instead of LISTing."""

    @property
    def version(self) -> int: ...

    def snapshot(self, specs: Sequence[ListSpec], wait_s: float | None = None
                 ) -> tuple[list[Manifest], int] | None: ...

    def resync(self, kinds: Sequence[str] | None = None) -> None: ...


def read_live_state(kube: Kube, objects: Sequence[DesiredObject], instance: str = DEFAULT_INSTANCE,
                    source: LiveSource | None = None) -> LiveState:
    """read_live, keeping KAITO's node objects too: GPU node kinds are listed once without a selector (there
    are about as many as nodes) and split here, instead of one LIST by our label and another by KAITO's.

    Only `instance`'s objects count as owned. A named instance's LISTs select its label on the server; the
    default instance's select every gitops-kaito object (it also owns those without the label, made before
    instances existed) and the split happens here: still one LIST per kind.

    `source`: the long-running loops' watch cache; read instead of listing whenever it is in sync (0 requests)."""
    wanted = [o.ref.api_version for o in objects if o.ref.kind == "Workspace"]
    prefer = max(set(wanted), key=wanted.count) if wanted else None
    workspace_version = kube.workspace_version(prefer)  # first: without KAITO there is nothing to do
    specs = kube.managed_lists(workspace_version, instance)
    live: list[Manifest] = []
    kaito_nodes: list[Manifest] = []
    others: list[Manifest] = []

    children: list[Manifest] = []
    unowned: list[Manifest] = []
    wanted_keys = {key_of(o.ref) for o in objects}

    def split(objs: Sequence[Manifest]) -> None:
        for obj in objs:
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if kaito_owned(obj):  # an InferenceSet's replica is KAITO's, whatever labels a template copied onto it
                if obj.get("kind") == "Workspace":
                    children.append(obj)
                continue
            owner = instance_of(labels)
            if owner == instance:
                live.append(obj)
            elif owner:
                others.append(obj)
            elif obj.get("kind") in NODE_KINDS and (KAITO_WORKSPACE_LABEL in labels
                                                     or KARPENTER_WORKSPACE_NAME_LABEL in labels
                                                     or KAITO_RAGENGINE_LABEL in labels):
                kaito_nodes.append(obj)
            elif key_of(ObjectRef.of(obj)) in wanted_keys:
                unowned.append(obj)

    cached = source.snapshot(specs) if source is not None else None
    if cached is not None:
        split(cached[0])
    else:
        for spec in specs:
            split(kube.list_owned(spec.api_version, spec.kind, label_selector=spec.label_selector))
    listed_all = frozenset(k.kind for k in MANAGED_KINDS if k.list_all)
    return LiveState(tuple(live), tuple(kaito_nodes), tuple(others), tuple(children), tuple(unowned), listed_all,
                     cached[1] if cached is not None else None)


class PassMemo:
    """The long-running loops' last pass, reused while nothing it read can have changed: the same `Desired` (the
    DesiredCache hands back the very object while the commit's trees hold), the same watch-cache version (no
    object changed, ours included) and the same flags. Only a pass that planned no write is kept, so reusing it
    can never skip a write. That makes a no-op pass of any size cost no request and next to no time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: tuple[Desired, int, bool, PassResult] | None = None
        self.hits = 0
        # When the pass cannot be reused (something watched changed), planning still skips the objects it found
        # up to date last time and that did not change since: a hand edit re-plans one object, not thousands.
        self.up_to_date = UpToDate()

    def reuse(self, desired: Desired, version: int, allow_mass_prune: bool) -> PassResult | None:
        with self._lock:
            held = self._held
            if held is None or held[0] is not desired or held[1] != version or held[2] != allow_mass_prune:
                return None
            self.hits += 1
            return held[3]

    def keep(self, desired: Desired, version: int, allow_mass_prune: bool, result: PassResult) -> None:
        settled = (not result.plan.has_changes and not result.failed and not result.abandoned and not result.pools
                   and not result.dry_run)
        with self._lock:
            self._held = (desired, version, allow_mass_prune, result) if settled else None

    def clear(self) -> None:
        with self._lock:
            self._held = None


def plan_repository(repo_dir: Path, kube: Kube, *, revision: str = "", allow_mass_prune: bool = False,
                    pools: PoolRunner | None = None, scope: Scope | None = None) -> tuple[Desired, Plan]:
    """Load, render, read live and plan, without writing anything (the `plan` and `diff` commands).

    aks mode: the agent pools are listed and planned too (Plan.node_pools); nothing is written to Azure.
    """
    desired, plan, _, _, _ = _plan(Path(repo_dir), kube, revision or local_revision(Path(repo_dir)),
                                allow_mass_prune, pools, scope)
    return desired, plan


def _plan(repo_dir: Path, kube: Kube, revision: str, allow_mass_prune: bool,
          pools: PoolRunner | None, scope: Scope | None = None, load: DesiredLoader | None = None,
          source: LiveSource | None = None, desired: Desired | None = None, up_to_date: UpToDate | None = None
          ) -> tuple[Desired, Plan, PlanPolicy, PoolPlan | None, LiveState]:
    desired = desired or (load or load_desired)(repo_dir, revision, scope)
    try:
        state = read_live_state(kube, desired.objects, desired.load.config.instance, source)
    except KubeError as err:
        raise SyncError(str(err)) from None
    live = [*state.owned, *state.others, *state.unowned]  # make_plan blocks one another instance owns
    unowned, unverified = read_unowned(kube, [o for o in desired.objects if o.ref.kind not in state.listed_all], live)
    live += unowned
    policy = plan_policy(desired, allow_mass_prune=allow_mass_prune)
    pool_plan = _pool_plan(desired, policy, pools)
    if pool_plan is None:
        plan = make_plan(desired.objects, live, policy, unverified=unverified, up_to_date=up_to_date)
    else:
        plan = make_plan(desired.objects, live, policy, pools=pool_plan.changes,
                         pool_models=pool_plan.managed_models, unverified=unverified, up_to_date=up_to_date)
    return desired, with_waits(plan, desired, state.owned), policy, pool_plan, state


def with_waits(plan: Plan, desired: Desired, live: Sequence[Manifest] | None) -> Plan:
    """The plan with the requests that wait for another (core/depends) this pass; `live` None: offline."""
    found = depends.waits(depends.dependencies(r.model for r in desired.rendered), workloads(live)
                          if live is not None else None, (r.model.request.id for r in desired.rendered if r.suspended))
    if live is None:  # offline, nothing is known of the cluster: name only the requests this change writes
        found = {m: w for m, w in found.items() if any(c.writes for c in plan.for_model(m))}
    if not found:
        return plan
    return dataclasses.replace(plan, waits=tuple(sorted((m, w.reason) for m, w in found.items())),
                               holds_updates=frozenset(m for m, w in found.items() if w.holds_updates))


def workloads(live: Sequence[Manifest]) -> dict[str, Manifest]:
    """Each request's workload object (its Workspace or RAGEngine) by request id."""
    out: dict[str, Manifest] = {}
    for obj in live:
        if wave_of(ObjectRef.of(obj)) == Wave.WORKLOAD:
            mid = ((obj.get("metadata") or {}).get("labels") or {}).get(LABEL_MODEL)
            if mid:
                out[mid] = obj
    return out


# A create costs one GET to find an object of that name someone else made. Past this many creates of one kind
# (a first sync of a large repository), one LIST of the kind without a selector is cheaper than the GETs.
GETS_PER_KIND = 16
# How often one pass reads again and plans again after deletes refused as stale, before leaving it to the next pass.
STALE_REPLANS = 2


def read_unowned(kube: Kube, objects: Sequence[DesiredObject], owned: Sequence[Manifest]
                 ) -> tuple[list[Manifest], dict[Key, str]]:
    """Find each desired object the owned LIST did not return (a create): an object of that name made by someone
    else is left alone (or adopted when its model opted in), one another gitops-kaito instance owns is blocked
    (make_plan decides from its labels).

    Returns those objects, and the desired objects whether something of their name exists could not be read (with
    the error): an apply there would take over whatever is there, so make_plan blocks them. A kind the cluster does
    not serve is no such case: its create reports it.

    Only creates cost a request (a GET each, or one LIST per kind past GETS_PER_KIND), so a settled pass still
    makes one LIST per kind and nothing more.
    """
    have = {key_of(ObjectRef.of(o)) for o in owned}
    missing: dict[tuple[str, str], list[ObjectRef]] = {}
    for obj in objects:
        if key_of(obj.ref) not in have:
            missing.setdefault((obj.ref.api_version, obj.ref.kind), []).append(obj.ref)
    found: list[Manifest] = []
    unverified: dict[Key, str] = {}
    for (api_version, kind), refs in missing.items():
        if len(refs) > GETS_PER_KIND:
            wanted = {key_of(ref) for ref in refs}
            try:
                found += [o for o in kube.list_owned(api_version, kind, label_selector="")
                          if key_of(ObjectRef.of(o)) in wanted]
            except KindNotServed:
                pass
            except KubeError as err:
                unverified.update((key, str(err)) for key in wanted)
            continue
        for ref in refs:
            try:
                live = kube.get(ref)
            except KindNotServed:
                break
            except KubeError as err:
                unverified[key_of(ref)] = str(err)
                continue
            if live is not None:
                live.setdefault("apiVersion", ref.api_version)
                live.setdefault("kind", ref.kind)
                found.append(live)
    return found, unverified


def _pool_plan(desired: Desired, policy: PlanPolicy, pools: PoolRunner | None) -> PoolPlan | None:
    """aks mode: list and plan the agent pools, or None when no model uses aks and Azure is not configured."""
    from gitops_kaito.provision.pools import PoolRunner

    runner = pools or PoolRunner()
    models = [r.model for r in desired.rendered if isinstance(r.model, ResolvedModel)]
    if not runner.active(models, desired.load.config.azure):
        return None
    return runner.prepare(models, desired.load.config.azure, prune=_pool_prune(policy), keep_model_ids=policy.keep,
                          instance=policy.instance)


def _pool_prune(policy: PlanPolicy) -> bool:
    # Same rules as Kubernetes objects: a broken repo/config never prunes, nor does prune: false.
    return policy.source_ok and policy.prune


def run_pass(repo_dir: Path, kube: Kube, *, revision: str = "", dry_run: bool = False,
             allow_mass_prune: bool = False, options: applying.ApplyOptions | None = None,
             pools: PoolRunner | None = None, should_continue: Callable[[], bool] | None = None,
             scope: Scope | None = None, load: DesiredLoader | None = None, live: LiveSource | None = None,
             memo: PassMemo | None = None) -> PassResult:
    """One pass. Raises SyncError only when nothing can be done at all; model failures are in the result.

    `live`: the long-running loops' watch cache, read instead of listing while in sync; `memo`: their last
    settled pass, returned as it was while neither the desired state nor any watched object changed (PassMemo).
    A delete refused as stale (the object changed after it was read) re-reads and re-plans, at most STALE_REPLANS
    times; a model still stale then waits for the next pass, it is not failed.

    `load`: what loads and renders the repository (default load_desired); the long-running loops pass a
    `desiredcache.DesiredCache` loader so a pass whose inputs did not change skips loading and rendering.

    `should_continue` (the daemon's leadership and stop flag) is asked before the agent pools and before each
    apply wave; once it says False nothing more is written and the result says the pass was abandoned.

    aks mode: the agent pools are reconciled after planning and before the kube apply (pass the same `pools`
    runner every pass so operations started in one pass are harvested by the next); an aks model's Workspace
    waits until its pool is Succeeded and the pool's Nodes are Ready.
    """
    from gitops_kaito.provision.pools import PoolRunner

    started = time.monotonic()
    revision = revision or local_revision(Path(repo_dir))
    desired = (load or load_desired)(Path(repo_dir), revision, scope)
    version = live.version if live is not None else None
    if memo is not None and version is not None and not dry_run:
        again = memo.reuse(desired, version, allow_mass_prune)
        if again is not None:
            return dataclasses.replace(again, duration_s=time.monotonic() - started)
    # One runner for planning and reconciling: two would build two Azure clients (and credentials) in one pass.
    pools = pools or PoolRunner()
    opts = options or applying.ApplyOptions()
    if dry_run:
        opts = dataclasses.replace(opts, dry_run=True)
    go_on = should_continue or (lambda: True)
    rounds: list[applying.ApplyResult] = []
    while True:
        desired, plan, policy, pool_plan, state = _plan(Path(repo_dir), kube, revision, allow_mass_prune, pools,
                                                        scope, load, live, desired,
                                                        memo.up_to_date if memo is not None else None)
        # Before anything is written (agent pools included): what the API server would refuse, model by model.
        check = preflights.run_preflight(plan, desired, kube, every_write=dry_run,
                                           max_in_flight=opts.max_in_flight)
        refused = preflights.refusal_texts(check)
        for mid, note in check.notes:  # what could not be checked: the writes go ahead and will tell
            log.warning("%s: %s", mid, note, extra={"fields": {"model": mid}})
        pool_outcomes: tuple[PoolOutcome, ...] = ()
        gates: dict[str, str] = {}
        if pool_plan is not None:
            if refused:  # a refused model gets no agent pool either
                pool_plan = dataclasses.replace(
                    pool_plan, desired=tuple(d for d in pool_plan.desired if d.model_id not in refused),
                    changes=tuple(c for c in pool_plan.changes if c.model_id not in refused))
            if go_on():
                pool_outcomes = _reconcile_pools(pools, pool_plan, plan, policy, desired, revision, dry_run)
            gates = _pool_gates(kube, desired, plan, pool_outcomes)  # no outcome: every aks Workspace waits
        held = {m: why for m, why in plan.waits}
        holding = plan.holds_updates
        gates = {**gates, **{m: why for m, why in held.items() if m not in holding}}

        def vet_nodes(model_id: str, plan: Plan = plan, check: ClusterCheck = check) -> str:
            return preflights.recheck_workspace(plan, model_id, kube) if model_id in check.recheck else ""

        applied = applying.apply_plan(plan, kube, opts, gates=gates, should_continue=go_on,
                                      holds={m: why for m, why in held.items() if m in holding}, refused=refused,
                                      checked=check.passed, vet_nodes=vet_nodes if check.recheck else None)
        rounds.append(applied)
        stale = sorted({o.ref.kind for o in applied.objects if o.result == ObjectStatus.STALE})
        if not stale or len(rounds) > STALE_REPLANS or not go_on():
            break
        # A delete was refused because the object changed after it was read: read again, plan again. The objects
        # this round wrote are written again only if the new plan still says so (server-side apply: no change).
        log.info("sync pass: %s changed while planning; reading them again and planning again", ", ".join(stale))
        if live is not None:
            live.resync(stale)
    applied = applying.merge_rounds(rounds)
    abandoned = applying.ABANDONED_MESSAGE if (not go_on() or any(
        o.message == applying.ABANDONED_MESSAGE for o in applied.objects)) else ""
    errors = list(desired.errors)
    if plan.prune_refused:
        errors.append(plan.prune_refused)
    result = PassResult(
        revision=revision, plan=plan, outcomes=_outcomes(desired, plan, applied, pool_outcomes),
        errors=tuple(errors),
        created=applied.created, updated=applied.updated, replaced=applied.replaced, pruned=applied.pruned,
        drift_corrected=applied.drift_corrected, failed=applied.failed,
        duration_s=time.monotonic() - started, dry_run=dry_run, desired=desired, pools=pool_outcomes, live=state,
        abandoned=abandoned,
    )
    if dry_run:  # nothing persisted: count what would have happened
        counts = plan.counts()
        result = dataclasses.replace(result, created=counts["create"], updated=counts["update"],
                                     replaced=counts["replace"], pruned=counts["delete"],
                                     drift_corrected=counts["drift"])
    # The daemon's "pass ok/failed" line says the same at info: this one is for -vv.
    log.debug("sync pass: %s", result.summary(), extra={"fields": {
        "revision": revision, "created": result.created, "updated": result.updated, "replaced": result.replaced,
        "pruned": result.pruned, "drift_corrected": result.drift_corrected, "failed": result.failed,
        "duration_s": round(result.duration_s, 3)}})
    if memo is not None and state.version is not None and len(rounds) == 1:
        memo.keep(desired, state.version, allow_mass_prune, result)
    return result


def _reconcile_pools(runner: PoolRunner, pool_plan: PoolPlan, plan: Plan, policy: PlanPolicy,
                     desired: Desired, revision: str, dry_run: bool) -> tuple[PoolOutcome, ...]:
    config = desired.load.config
    allow_replace: bool | frozenset[str] = True if config.replace_policy == "auto" else policy.replace_allowed
    return runner.reconcile(pool_plan, revision=revision, dry_run=dry_run,
                            prune=_pool_prune(policy) and not plan.prune_refused, allow_replace=allow_replace)


def _pool_gates(kube: Kube, desired: Desired, plan: Plan, outcomes: Sequence[PoolOutcome]) -> dict[str, str]:
    """Per aks model: why its Workspace must wait ('' = go). Nodes are listed once, only when a Workspace of a
    model whose pool is ready is about to be created, so a settled pass costs no extra request."""
    from gitops_kaito.provision.pools import AKS, gate, ready_nodes

    by_model = {o.model_id: o for o in outcomes}
    aks = {r.model.request.id: r.model for r in desired.rendered if r.model.provisioning == AKS and not r.suspended}
    starting = {c.model_id for c in plan.changes if c.model_id in aks and c.ref.kind == "Workspace"
                and c.action in (Action.CREATE, Action.REPLACE)}
    ready: dict[str, int] = {}
    if any(by_model.get(m) is not None and by_model[m].ready for m in starting):
        try:
            ready = ready_nodes(kube.list_owned("v1", "Node"))
        except KubeError as err:
            return {m: f"waiting for nodes: cannot list Nodes: {err}" for m in aks}
    return {m: gate(by_model.get(m), model.nodes, ready.get(m, 0)) for m, model in aks.items()}


def _with_pool(result: ModelResult, pool: PoolOutcome | None) -> ModelResult:
    """The model's outcome with its agent pool's: a failed pool fails the model, with Azure's code and message."""
    from gitops_kaito.provision.pools import failed

    if pool is None:
        return result
    text = f"agent pool {pool.pool}: {pool.state}" + (f" ({pool.code}: {pool.message})" if pool.code else
                                                    f" ({pool.message})" if pool.message else "")
    state, message = result.state, result.message
    if failed(pool):
        state, message = Outcome.FAILED, text
    elif pool.state == PoolState.BLOCKED and state not in (Outcome.FAILED,):
        state, message = Outcome.BLOCKED, text
    elif state in (Outcome.UNCHANGED, Outcome.APPLIED) and not pool.ready and pool.state != PoolState.DELETED:
        state, message = Outcome.PROVISIONING, text
    elif not pool.ready:
        message = f"{message}; {text}"
    return dataclasses.replace(result, state=state, message=message, pool=pool)


def _outcomes(desired: Desired, plan: Plan, applied: applying.ApplyResult,
              pools: Sequence[PoolOutcome] = ()) -> tuple[ModelResult, ...]:
    results = _object_outcomes(desired, plan, applied, {p.model_id for p in pools})
    by_model = {p.model_id: p for p in pools}
    return tuple(_with_pool(r, by_model.get(r.model_id)) if r.state != Outcome.INVALID else r for r in results)


def _object_outcomes(desired: Desired, plan: Plan, applied: applying.ApplyResult,
                     pool_models: set[str]) -> tuple[ModelResult, ...]:
    models = {r.model.request.id: r for r in desired.rendered}
    by_id = {o.model_id: o for o in applied.outcomes}
    invalid = dict(desired.invalid)
    ids = set(models) | set(by_id) | set(invalid) | pool_models
    out: list[ModelResult] = []
    for mid in sorted(ids):
        rendered = models.get(mid)
        model = rendered.model if rendered else None
        path = model.request.path if model else next(
            (e.path for e in desired.load.errors if e.model_id == mid), "")
        changes = plan.for_model(mid)
        if mid in invalid:
            out.append(ModelResult(mid, Outcome.INVALID, f"not applied, nothing pruned: {invalid[mid]}", path, changes))
            continue
        outcome = by_id.get(mid)
        state, message = (outcome.state, outcome.message) if outcome else (Outcome.UNCHANGED, "up to date")
        if rendered is not None and rendered.suspended and state in (Outcome.UNCHANGED, Outcome.PRUNED):
            dry = outcome is not None and any(o.result == ObjectStatus.DRY_RUN for o in outcome.objects)
            removed = "suspended: its objects would be removed" if dry else "suspended: its objects are removed"
            state, message = Outcome.SUSPENDED, removed if changes else "suspended"
        if rendered is None and state == Outcome.PRUNED:
            message = "removed from the repository: " + message if not message.startswith("model removed") else message
        if rendered is None and outcome is None:  # only its agent pool was left
            state, message = Outcome.PRUNED, "removed from the repository"
        out.append(ModelResult(mid, state, message, path, changes, model))
    return tuple(out)


__all__ = ["Action", "Desired", "DesiredLoader", "ModelResult", "PassResult", "SyncError", "load_desired",
           "local_revision", "plan_policy", "plan_repository", "read_live", "run_pass"]
