"""`gitops-kaito sync`: one reconcile pass of a local repository directory against a cluster.

Prints what it did per model; exit 0 when every model is fine, 1 when a model failed/is invalid/blocked, 2 on error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import (
    EXIT_CHANGES,
    EXIT_OK,
    CliError,
    add_cluster_flags,
    add_repo_flag,
    emit,
    print_table,
)
from gitops_kaito.kube import Kube, KubeError
from gitops_kaito.provision.aks import add_azure_flags, azure_overrides
from gitops_kaito.provision.pools import PoolRunner
from gitops_kaito.sync import PassResult, SyncError, run_pass

_TROUBLE = frozenset({"Failed", "Blocked", "Invalid"})


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
    add_git_flags(parser)
    add_azure_flags(parser)
    parser.set_defaults(func=run)


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


def run_git(args: argparse.Namespace) -> PassResult:
    import os

    from gitops_kaito.gitsource import GitAuth, GitSourceError
    from gitops_kaito.gitsync import GitSyncSettings, run_git_pass

    env = os.environ.get
    auth = GitAuth(token=env("GITOPS_KAITO_GIT_TOKEN") or None,
                   ssh_key=Path(env("GITOPS_KAITO_SSH_KEY_FILE", "")) if env("GITOPS_KAITO_SSH_KEY_FILE") else None,
                   known_hosts=Path(env("GITOPS_KAITO_KNOWN_HOSTS_FILE", ""))
                   if env("GITOPS_KAITO_KNOWN_HOSTS_FILE") else None)
    cache = Path(args.cache_dir) if args.cache_dir else Path("~/.cache/gitops-kaito/git").expanduser()
    settings = GitSyncSettings(url=args.git_url, cache_dir=cache, branch=args.branch,
                               status_branch=args.status_branch or None, auth=auth,
                               write_back=not args.no_write_back)
    try:
        with Kube.connect(args.kubeconfig, args.context) as kube:
            done = run_git_pass(settings, kube, dry_run=args.dry_run, allow_mass_prune=args.allow_mass_prune,
                                pools=pool_runner(args))
    except (KubeError, SyncError, GitSourceError) as err:
        raise CliError(str(err)) from None
    wb = done.writeback
    if wb is not None:
        print(f"status: {'committed ' + (wb.sha or '')[:12] + ' to ' + wb.branch if wb.committed else 'unchanged'}",
              file=sys.stderr)
    return done.sync


def run(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "git_url", None):
            result = run_git(args)
        else:
            with Kube.connect(args.kubeconfig, args.context) as kube:
                result = run_pass(Path(args.repo), kube, revision=args.revision, dry_run=args.dry_run,
                                  allow_mass_prune=args.allow_mass_prune, pools=pool_runner(args))
    except (KubeError, SyncError) as err:
        raise CliError(str(err)) from None
    if args.output == "table":
        print_result(result)
    else:
        emit(result_dict(result), args.output)
    troubled = any(o.state in _TROUBLE for o in result.outcomes) or bool(result.errors) or result.failed > 0
    return EXIT_CHANGES if troubled else EXIT_OK


def print_result(result: PassResult) -> None:
    print_table([{"model": o.model_id, "state": o.state, "message": o.message} for o in result.outcomes],
                ["model", "state", "message"])
    for err in result.errors:
        print(f"error: {err}", file=sys.stderr)
    print(("dry run, " if result.dry_run else "") + result.summary())


def result_dict(result: PassResult) -> dict[str, Any]:
    return {
        "revision": result.revision, "dryRun": result.dry_run, "durationSeconds": round(result.duration_s, 3),
        "created": result.created, "updated": result.updated, "replaced": result.replaced,
        "pruned": result.pruned, "driftCorrected": result.drift_corrected, "failed": result.failed,
        "errors": list(result.errors),
        "models": [{"model": o.model_id, "state": o.state, "message": o.message, "path": o.path or None,
                    "changes": [{"object": str(c.ref), "action": c.action.value, "drift": c.drift,
                                 "reason": c.reason} for c in o.changes]}
                   for o in result.outcomes],
    }
