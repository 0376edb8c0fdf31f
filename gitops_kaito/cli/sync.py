"""`gitops-kaito sync`: one reconcile pass of a local repository directory against a cluster.

Prints what it did per model; exit 0 when every model is fine, 1 when a model failed/is invalid/blocked, 2 on error.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitops_kaito.adapters.kube import Kube, KubeError
from gitops_kaito.cli.common import (
    EXIT_CHANGES,
    EXIT_OK,
    CliError,
    add_cluster_flags,
    add_repo_flag,
    add_scope_flags,
    emit,
    print_table,
    scope_from_args,
)
from gitops_kaito.model.states import TROUBLE, Outcome
from gitops_kaito.provision.aks import add_azure_flags, azure_overrides
from gitops_kaito.provision.pools import PoolRunner
from gitops_kaito.reconcile.apply import ApplyOptions
from gitops_kaito.reconcile.sync import PassResult, SyncError, run_pass

if TYPE_CHECKING:
    from gitops_kaito.adapters.watchcache import WatchCache
    from gitops_kaito.adapters.writeback import WritebackResult
    from gitops_kaito.cli.syncwait import PassView, WaitOutcome, WaitSettings
    from gitops_kaito.core.status import ModelReport
    from gitops_kaito.reconcile.assess import Prober
    from gitops_kaito.reconcile.gitsync import GitSyncSettings
    from gitops_kaito.reconcile.sync import PassMemo

EXIT_INTERRUPTED = 130  # as a shell reports a command ended by Ctrl-C


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("sync", help="run one sync pass of a local repository against the cluster")
    add_repo_flag(parser)
    add_cluster_flags(parser)
    parser.add_argument("--dry-run", action="store_true",
                        help="plan and validate every write with a server-side dry run; change nothing")
    parser.add_argument("--allow-mass-prune", action="store_true",
                        help="let this pass delete more than prune.maxShare of the managed models (or all)")
    parser.add_argument("--revision", default="", help="revision to stamp (default: the checkout's branch@sha1:...)")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table", help="output format")
    parser.add_argument("--max-in-flight", metavar="N",
                        help="writes sent at once within an apply wave (default 16; env GITOPS_KAITO_MAX_IN_FLIGHT)")
    add_scope_flags(parser)
    add_git_flags(parser)
    add_azure_flags(parser)
    add_wait_flags(parser)
    parser.set_defaults(func=run)


def apply_options(args: argparse.Namespace) -> ApplyOptions:
    """--max-in-flight, else GITOPS_KAITO_MAX_IN_FLIGHT, else the default; checked as `run` checks it."""
    from gitops_kaito.repo.config import SettingsError
    from gitops_kaito.service.settings import ENV_PREFIX, parse_in_flight

    env = ENV_PREFIX + "MAX_IN_FLIGHT"
    flag = getattr(args, "max_in_flight", None)
    raw, source = (flag, "--max-in-flight") if flag is not None else (os.environ.get(env), env)
    if raw is None:
        return ApplyOptions()
    try:
        return ApplyOptions(max_in_flight=parse_in_flight(raw))
    except SettingsError as err:
        raise CliError(f"{source}: {err}") from None


def pool_runner(args: argparse.Namespace) -> PoolRunner:
    """aks mode: the --azure-* flags override gitops-kaito.yaml's azure section and GITOPS_KAITO_AZURE_*."""
    return PoolRunner(azure_overrides(args))


def add_git_flags(parser: argparse.ArgumentParser) -> None:
    git = parser.add_argument_group("git source (instead of --repo: fetch, sync, write status back as a commit)")
    git.add_argument("--git-url", help="repository URL (https token from $GITOPS_KAITO_GIT_TOKEN; ssh key from "
                                       "$GITOPS_KAITO_SSH_KEY_FILE and $GITOPS_KAITO_KNOWN_HOSTS_FILE)")
    git.add_argument("--branch", default="main", help="branch to follow (default: main)")
    git.add_argument("--status-branch", help="branch for status commits (default: gitops-kaito.yaml, else --branch)")
    git.add_argument("--cache-dir", help="where the clone is kept between runs (default: ~/.cache/gitops-kaito/git)")
    git.add_argument("--no-write-back", action="store_true", help="do not commit status to the repository")


def git_settings(args: argparse.Namespace) -> GitSyncSettings:
    from gitops_kaito.adapters.gitsource import GitAuth, split_credentials, with_url_credentials
    from gitops_kaito.model.gitrefs import branch_problem
    from gitops_kaito.reconcile.gitsync import GitSyncSettings

    env = os.environ.get
    auth = GitAuth(token=env("GITOPS_KAITO_GIT_TOKEN") or None,
                   ssh_key=Path(env("GITOPS_KAITO_SSH_KEY_FILE", "")) if env("GITOPS_KAITO_SSH_KEY_FILE") else None,
                   known_hosts=Path(env("GITOPS_KAITO_KNOWN_HOSTS_FILE", ""))
                   if env("GITOPS_KAITO_KNOWN_HOSTS_FILE") else None)
    cache = Path(args.cache_dir) if args.cache_dir else Path("~/.cache/gitops-kaito/git").expanduser()
    for flag, branch in (("--branch", args.branch), ("--status-branch", args.status_branch)):
        problem = branch_problem(branch) if branch else None
        if problem:
            raise CliError(f"{flag} {branch!r} is not a branch name git accepts: {problem}")
    url, url_auth = split_credentials(args.git_url)  # the URL goes on without its credentials
    auth = with_url_credentials(auth, url_auth, url)
    return GitSyncSettings(url=url, cache_dir=cache, branch=args.branch,
                           status_branch=args.status_branch or None, auth=auth, write_back=not args.no_write_back,
                           scope=scope_from_args(args))


def run_git(args: argparse.Namespace) -> PassResult:
    from gitops_kaito.adapters.gitsource import GitSourceError
    from gitops_kaito.reconcile.gitsync import run_git_pass

    settings = git_settings(args)
    try:
        with Kube.connect(args.kubeconfig, args.context) as kube:
            done = run_git_pass(settings, kube, dry_run=args.dry_run, allow_mass_prune=args.allow_mass_prune,
                                pools=pool_runner(args), options=apply_options(args))
    except (KubeError, SyncError, GitSourceError) as err:
        raise CliError(str(err)) from None
    wb = done.writeback
    if wb is not None:
        print(writeback_line(wb), file=sys.stderr)
    return done.sync


# `sync --repo` applies but writes no status files: say where the models' state is instead.
LOCAL_STATUS_LINE = ("status: not written (a local --repo pass writes no status files; `gitops-kaito run` and `sync "
                     "--git-url URL` commit them); follow the models with `gitops-kaito sync --repo DIR --wait` or "
                     "`kubectl get workspaces -A`")


def writeback_line(wb: WritebackResult) -> str:
    return f"status: {'committed ' + (wb.sha or '')[:12] + ' to ' + wb.branch if wb.committed else 'unchanged'}"


def run(args: argparse.Namespace) -> int:
    options = apply_options(args)  # a bad value ends here, before anything connects
    if getattr(args, "wait", False):
        return run_wait(args)
    try:
        if getattr(args, "git_url", None):
            result = run_git(args)
        else:
            with Kube.connect(args.kubeconfig, args.context) as kube:
                result = run_pass(Path(args.repo), kube, revision=args.revision, dry_run=args.dry_run,
                                  allow_mass_prune=args.allow_mass_prune, pools=pool_runner(args),
                                  scope=scope_from_args(args), options=options)
    except (KubeError, SyncError) as err:
        raise CliError(str(err)) from None
    if args.output == "table":
        print_result(result)
    else:
        emit(result_dict(result), args.output)
    if not getattr(args, "git_url", None) and not result.dry_run:
        print(LOCAL_STATUS_LINE, file=sys.stderr)
    troubled = any(o.state in TROUBLE for o in result.outcomes) or bool(result.errors) or result.failed > 0
    return EXIT_CHANGES if troubled else EXIT_OK


# A dry run applied and pruned nothing: its rows say what a pass WOULD do.
_DRY_RUN_STATES = {Outcome.APPLIED.value: "WouldApply", Outcome.PRUNED.value: "WouldPrune"}


def shown_state(result: PassResult, state: str) -> str:
    """The state column of a pass's row (and its JSON): what happened, or in a dry run what would."""
    return _DRY_RUN_STATES.get(str(state), str(state)) if result.dry_run else str(state)


def print_result(result: PassResult) -> None:
    print_table([{"model": o.model_id, "state": shown_state(result, o.state), "message": o.message}
                 for o in result.outcomes], ["model", "state", "message"])
    for err in result.errors:
        print(f"error: {err}", file=sys.stderr)
    # The summary already counts drift left in place (drift: report).
    print(("dry run, " if result.dry_run else "") + result.summary())


def result_dict(result: PassResult) -> dict[str, Any]:
    return {
        "revision": result.revision, "dryRun": result.dry_run, "durationSeconds": round(result.duration_s, 3),
        "created": result.created, "updated": result.updated, "replaced": result.replaced,
        "pruned": result.pruned, "driftCorrected": result.drift_corrected,
        "driftReported": len(result.plan.drift_reported), "failed": result.failed,
        "errors": list(result.errors),
        "models": [{"model": o.model_id, "state": shown_state(result, o.state), "message": o.message,
                    "path": o.path or None,
                    "changes": [{"object": str(c.ref), "action": c.action.value, "drift": c.drift,
                                 "reason": c.reason,
                                 **({"driftReported": True, "fields": list(c.fields), "driftBy": list(c.drift_by)}
                                    if c.drift_reported else {})} for c in o.changes]}
                   for o in result.outcomes],
    }


# -- --wait ------------------------------------------------------------------------------------------------------

def add_wait_flags(parser: argparse.ArgumentParser) -> None:
    wait = parser.add_argument_group("waiting (keep reconciling until the models are Ready)")
    wait.add_argument("--wait", action="store_true",
                      help="after the pass, keep passing every --interval until every model is Ready (exit 0), "
                           "none can get further (exit 1, says which failed) or --timeout passes (exit 1)")
    wait.add_argument("--timeout", default="30m", help="how long --wait waits (default 30m; e.g. 90s, 10m, 1h)")
    wait.add_argument("--interval", default="5s", help="time between two passes while waiting (default 5s)")
    wait.add_argument("-q", "--quiet", action="store_true", help="no progress display while waiting")


def run_wait(args: argparse.Namespace) -> int:
    """Passes until settled; progress on stderr (redrawn on a terminal), the final report on stdout."""
    from gitops_kaito.cli.progress import ModelProgress
    from gitops_kaito.cli.syncwait import Interrupt, PassFailed, WaitSettings, wait_ready
    from gitops_kaito.repo.config import SettingsError, parse_duration

    if args.dry_run:
        raise CliError("--wait waits for what a pass applies: it cannot be combined with --dry-run")
    try:
        settings = WaitSettings(timeout_s=parse_duration(args.timeout), interval_s=parse_duration(args.interval))
    except SettingsError as err:
        raise CliError(str(err)) from None
    if settings.interval_s <= 0:
        raise CliError("--interval must be more than 0")
    live = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
    display = ModelProgress(sys.stderr, live, quiet=args.quiet or args.output != "table")
    pools = pool_runner(args)  # one runner for every pass: Azure operations started in one are harvested later
    wake = threading.Event()  # set by the watch when a model's objects change in the cluster
    try:
        with Kube.connect(args.kubeconfig, args.context) as kube, Interrupt(wake) as interrupt, \
                _watching(kube, wake) as loop:
            one_pass = _git_wait_pass(args, kube, pools, display.say, loop) if args.git_url else \
                _repo_wait_pass(args, kube, pools, loop)
            try:
                first = one_pass(interrupt.should_continue)
            except PassFailed as err:  # the first pass fails as a plain `sync` would: nothing to wait for yet
                raise CliError(str(err)) from None
            outcome = wait_ready(one_pass, settings, first=first, stop=interrupt.event,
                                 on_pass=lambda view: display.update(view.reports), on_tick=display.tick,
                                 on_error=lambda text: display.say(f"pass failed, will retry: {text}"), wake=wake)
    except KubeError as err:
        raise CliError(str(err)) from None
    finally:
        display.close(clear=sys.stdout.isatty())
    if args.output == "table":
        print_wait(outcome)
    else:
        emit(wait_dict(outcome, settings), args.output)
    if outcome.verdict == "Interrupted":
        return EXIT_INTERRUPTED
    return EXIT_OK if outcome.ok and not outcome.errors else EXIT_CHANGES


@contextmanager
def _watching(kube: Kube, wake: threading.Event) -> Iterator[WaitLoop]:
    """What the passes of `sync --wait` keep, as the daemon does: the watched view of the managed kinds (passes with
    nothing to do ask the API server nothing), the last settled pass and the endpoint prober. A change to a model's
    objects by anyone but us (KAITO's status, a node becoming ready) sets `wake`: the wait passes at once."""
    from gitops_kaito.adapters.watchcache import CacheChange, WatchCache
    from gitops_kaito.reconcile.assess import Prober
    from gitops_kaito.reconcile.sync import PassMemo

    def changed(change: CacheChange) -> None:
        if change.model_id:  # nodes of workloads that are not ours (NodeClaims are watched unfiltered) wake nothing
            wake.set()

    watch = WatchCache(kube, on_change=changed)
    try:
        yield WaitLoop(watch, PassMemo(), Prober())
    finally:
        watch.close()


@dataclass(frozen=True)
class WaitLoop:
    watch: WatchCache
    memo: PassMemo
    prober: Prober


def _repo_wait_pass(args: argparse.Namespace, kube: Kube, pools: PoolRunner,
                    loop: WaitLoop) -> Callable[[Callable[[], bool]], PassView]:
    from gitops_kaito.cli.syncwait import PassFailed, PassView
    from gitops_kaito.reconcile.assess import assess_models
    from gitops_kaito.reconcile.desiredcache import DesiredCache

    cache = DesiredCache()  # keyed by the stats of the repository's inputs: an edit while waiting is picked up
    options = apply_options(args)

    def one(should_continue: Callable[[], bool]) -> PassView:
        try:
            result = run_pass(Path(args.repo), kube, revision=args.revision, allow_mass_prune=args.allow_mass_prune,
                              pools=pools, should_continue=should_continue, scope=scope_from_args(args),
                              load=cache.loader(), live=loop.watch, memo=loop.memo, options=options)
            reports = assess_models(result, kube, result.revision, live=loop.watch, prober=loop.prober)
        except (KubeError, SyncError) as err:
            raise PassFailed(str(err)) from None
        return PassView(tuple(reports), result.errors, result.revision)

    return one


def _git_wait_pass(args: argparse.Namespace, kube: Kube, pools: PoolRunner, say: Callable[[str], None],
                   loop: WaitLoop) -> Callable[[Callable[[], bool]], PassView]:
    from gitops_kaito.adapters.gitsource import GitSourceError
    from gitops_kaito.cli.syncwait import PassFailed, PassView
    from gitops_kaito.reconcile.desiredcache import DesiredCache
    from gitops_kaito.reconcile.gitsync import git_source, run_git_pass

    settings = git_settings(args)
    cache = DesiredCache()  # as the daemon's: passes on the same desired commit skip load and render
    source = git_source(settings)  # one repository handle for every pass
    options = apply_options(args)

    def one(should_continue: Callable[[], bool]) -> PassView:
        try:
            done = run_git_pass(settings, kube, allow_mass_prune=args.allow_mass_prune, pools=pools,
                                should_continue=should_continue, cache=cache, source=source, live=loop.watch,
                                memo=loop.memo, prober=loop.prober, options=options)
        except (KubeError, SyncError, GitSourceError) as err:
            raise PassFailed(str(err)) from None
        if done.writeback is not None and done.writeback.committed:  # only news: an unchanged status says nothing
            say(writeback_line(done.writeback))
        return PassView(done.reports, done.sync.errors, done.revision)

    return one


def _why(report: ModelReport) -> str:
    reason = f"{report.reason}: " if report.reason and report.reason not in report.message else ""
    return f"{report.namespace}/{report.name} {report.state} ({reason}{report.message})"


def verdict_line(outcome: WaitOutcome) -> str:
    from gitops_kaito.cli.progress import format_elapsed, summary

    took = format_elapsed(outcome.elapsed_s)
    counts = summary(outcome.reports)
    if outcome.verdict == "Ready":
        return f"{counts} after {took} ({outcome.passes} {'pass' if outcome.passes == 1 else 'passes'})"
    if outcome.verdict == "Failed":
        return f"{counts}; no model can get further: " + "; ".join(_why(r) for r in outcome.failed)
    still = "; ".join(_why(r) for r in outcome.pending) or "nothing"
    if outcome.verdict == "Timeout":
        return f"timed out after {took} ({counts}); still waiting for " + still
    return f"interrupted after {took} ({counts}); not Ready yet: " + still


def print_wait(outcome: WaitOutcome) -> None:
    from gitops_kaito.cli.progress import model_row

    print_table([dict(zip(("model", "state", "sku x nodes", "message"), model_row(r), strict=True))
                 for r in outcome.reports], ["model", "state", "sku x nodes", "message"])
    for err in outcome.errors:
        print(f"error: {err}", file=sys.stderr)
    print(verdict_line(outcome))


def wait_dict(outcome: WaitOutcome, settings: WaitSettings) -> dict[str, Any]:
    from gitops_kaito.core.status import model_document

    return {
        "result": outcome.verdict, "ready": outcome.ok, "message": verdict_line(outcome),
        "elapsedSeconds": round(outcome.elapsed_s, 3), "passes": outcome.passes,
        "timeoutSeconds": settings.timeout_s, "revision": outcome.revision, "errors": list(outcome.errors),
        "passErrors": list(outcome.pass_errors),
        "models": [model_document(r) for r in outcome.reports],
    }
