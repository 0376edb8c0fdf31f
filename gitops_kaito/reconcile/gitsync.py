"""One pass with Git on both ends: fetch and pin a commit, sync it, assess health, write status back as a commit.

The applied revision is the newest commit that changed desired state, so status-only commits never cause applies.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitops_kaito.adapters.gitsource import (
    DEFAULT_TIMEOUT_S,
    Checkout,
    GitAuth,
    GitSource,
    SourceSpec,
    format_revision,
)
from gitops_kaito.adapters.kube import Kube
from gitops_kaito.adapters.writeback import Author, WritebackResult, last_desired_commit, write_status
from gitops_kaito.core.status import (
    ModelReport,
    StatusMemo,
    other_instances_files,
    render_files,
    summary_line,
)
from gitops_kaito.model.states import Outcome
from gitops_kaito.provision.pools import PoolRunner
from gitops_kaito.reconcile.apply import ApplyOptions
from gitops_kaito.reconcile.assess import EndpointChecker, Prober, assess_models, default_endpoint_check
from gitops_kaito.reconcile.desiredcache import DesiredCache, tree_fingerprint
from gitops_kaito.reconcile.sync import (
    LiveSource,
    PassMemo,
    PassResult,
    run_pass,
)
from gitops_kaito.repo.config import RepoConfig, Scope, load_config, recover_scope
from gitops_kaito.repo.yamlsource import SourceError

log = logging.getLogger(__name__)

# Test hook for the crash tests (tests/test_faults_process.py): when GITOPS_KAITO_TEST_PAUSE_AT names a stage,
# the pass writes that name to GITOPS_KAITO_TEST_PAUSE_FILE and blocks there until the test kills the process.
# Inert when the variable is unset. Stages: fetched, applied, status-built, committed (before the push).
PAUSE_AT_ENV = "GITOPS_KAITO_TEST_PAUSE_AT"
PAUSE_FILE_ENV = "GITOPS_KAITO_TEST_PAUSE_FILE"



@dataclass(frozen=True)
class GitSyncSettings:
    url: str
    cache_dir: Path
    branch: str = "main"
    status_branch: str | None = None  # None: gitops-kaito.yaml status.branch, else the followed branch
    auth: GitAuth = field(default_factory=GitAuth)
    author: Author | None = None  # None: gitops-kaito.yaml status.author_*
    write_back: bool = True
    endpoint_check: bool = True
    scope: Scope = field(default_factory=Scope)  # --instance/--path over gitops-kaito.yaml


@dataclass(frozen=True)
class GitPassResult:
    checkout: Checkout
    revision: str  # the applied revision: "<branch>@sha1:<last commit that changed desired state>"
    sync: PassResult
    reports: tuple[ModelReport, ...]
    writeback: WritebackResult | None
    config: RepoConfig | None = None  # the pinned commit's gitops-kaito.yaml; None when that file is broken


def run_git_pass(settings: GitSyncSettings, kube: Kube, *, dry_run: bool = False, allow_mass_prune: bool = False,
                 now: str | None = None,
                 before_push: Callable[[int], None] | None = None,
                 endpoint_checker: EndpointChecker = default_endpoint_check,
                 sleep: Callable[[float], None] | None = None,
                 pools: PoolRunner | None = None,
                 should_continue: Callable[[], bool] | None = None,
                 cache: DesiredCache | None = None,
                 source: GitSource | None = None,
                 live: LiveSource | None = None, memo: PassMemo | None = None, prober: Prober | None = None,
                 write_back: bool = True, options: ApplyOptions | None = None,
                 status_memo: StatusMemo | None = None) -> GitPassResult:
    """fetch -> sync.run_pass on the checkout -> health -> status files -> commit and push when changed.

    A git failure raises GitSourceError before anything is applied; the cluster keeps the last state.
    `cache` (the daemon's, kept across passes): the checked-out commit's trees outside status/ key the rendered
    desired state, so a pass after a status-only commit, or after no commit, neither reads nor renders a model.
    `source` (the daemon's, kept across passes: its repository handle is opened once): else one for `settings`.
    `live`, `memo`, `prober`: the daemon's watch cache, last settled pass and endpoint prober (sync.run_pass,
    assess.assess_models). `write_back=False`: this pass commits no status (the daemon coalescing commits).
    `status_memo` (the daemon's): status files parsed and rendered by earlier passes, reused while unchanged.
    """
    source = source or git_source(settings)
    checkout = source.fetch()
    _pause_point("fetched")
    file_config = read_config(checkout.path)
    config = settings.scope.apply(file_config or recover_scope(checkout.path))
    status_root = config.status.path.strip("/") or "status"
    status_path = config.status_dir  # status/<instance> for a named instance
    # Every instance's status commits are left out, not only this one's: none of them is a change of desired state.
    desired_sha = last_desired_commit(source.repo, checkout.sha, status_root)
    revision = format_revision(checkout.ref, desired_sha)
    load = cache.loader(tree_fingerprint(source.repo, checkout.sha, status_root)) if cache is not None else None
    result = run_pass(checkout.path, kube, revision=revision, dry_run=dry_run, allow_mass_prune=allow_mass_prune,
                      pools=pools, should_continue=should_continue, scope=settings.scope, load=load, live=live,
                      memo=memo, options=options)
    _pause_point("applied")
    reports = tuple(assess_models(result, kube, revision, settings.endpoint_check, endpoint_checker, live, prober))
    wb: WritebackResult | None = None
    # A replica that lost its Lease (or is stopping) must not push status over the new leader's.
    still_leading = should_continue is None or (not result.abandoned and should_continue())
    if settings.write_back and write_back and not dry_run and still_leading:
        stamp = now or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        branch = settings.status_branch or config.status.branch or settings.branch
        author = settings.author or Author(config.status.author_name, config.status.author_email)
        reported = {r.model_id for r in reports}
        pruned = sorted(o.model_id for o in result.outcomes
                        if o.state == Outcome.PRUNED and o.model_id not in reported)

        def build(previous: Mapping[str, str]) -> Mapping[str, str]:
            files = render_files(reports, previous, stamp, keep_revision=unwritten_models(reports, result),
                                 problems=pass_problems(result), memo=status_memo)
            if status_path == status_root:  # the root also holds the named instances' folders: keep them
                files = {**other_instances_files(previous), **files}
            _pause_point("status-built")
            return files

        def pushing(attempt: int) -> None:
            _pause_point("committed")
            if before_push is not None:
                before_push(attempt)

        body = "".join(f"Pruned: {m}\n" for m in pruned)
        extra: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        # The followed branch was fetched a moment ago: build on that tip (a push rejected as stale fetches again).
        tip = checkout.sha if branch == settings.branch and checkout.ref == settings.branch else None
        wb = write_status(source, branch, build, revision, author=author, status_path=status_path,
                          summary=summary_line(reports), body=body, before_push=pushing, tip=tip, **extra)
    # The live objects were for health only: a daemon keeps the last result, and it need not keep a cluster copy.
    return GitPassResult(checkout, revision, dataclasses.replace(result, live=None), reports, wb, file_config)


def git_source(settings: GitSyncSettings, timeout_s: float = DEFAULT_TIMEOUT_S) -> GitSource:
    return GitSource(SourceSpec(settings.url, branch=settings.branch, auth=settings.auth), settings.cache_dir,
                     timeout_s)


def pass_problems(result: PassResult) -> list[str]:
    """The pass's errors that no single model's row shows (a broken gitops-kaito.yaml or template override,
    the prune guard), in the order the pass met them."""
    own = [o.path + ":" for o in result.outcomes if o.state == Outcome.INVALID and o.path]
    problems = [e for e in result.errors if not any(e.startswith(prefix) for prefix in own)]
    if result.plan.prune_refused:
        problems.append(result.plan.prune_refused)
    return list(dict.fromkeys(problems))


def unwritten_models(reports: Sequence[ModelReport], result: PassResult) -> set[str]:
    """The models this pass wrote no object of: their status files keep the revision they already carry (this
    pass's revision when none was recorded). So a commit that changes one model rewrites that model's status
    file, not every file."""
    return {r.model_id for r in reports if not any(c.writes for c in result.plan.for_model(r.model_id))}


def _pause_point(stage: str) -> None:
    """The crash tests' stopping point (see PAUSE_AT_ENV); returns at once unless this stage is named."""
    if os.environ.get(PAUSE_AT_ENV) != stage:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(stage)
    threading.Event().wait()  # until the test's SIGKILL


def read_config(root: Path) -> RepoConfig | None:
    """The checkout's gitops-kaito.yaml, or None when it is broken: the pass itself reports the broken file, and
    status still needs a place to go (recover_scope)."""
    try:
        return load_config(root)
    except SourceError:
        return None


__all__ = ["GitPassResult", "GitSyncSettings", "run_git_pass"]
