"""`gitops-kaito plan` and `gitops-kaito diff`: what a sync pass would change, without changing anything.

plan: text, JSON or a pull-request comment in markdown (split under GitHub's size limit); diff: per-object diffs.
With --base REV both plan against the repository as rendered at REV instead of the cluster (gitops_kaito.reconcile.offline).
Drift left in place under `drift: report` shows in both, with its fields; it is not a change a sync would make.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gitops_kaito.adapters.kube import Kube, KubeError
from gitops_kaito.cli.common import (
    EXIT_CHANGES,
    EXIT_OK,
    CliError,
    add_cluster_flags,
    add_repo_flag,
    add_scope_flags,
    scope_from_args,
)
from gitops_kaito.cli.sync import pool_runner
from gitops_kaito.core.plan import Plan
from gitops_kaito.core.preflight import ClusterCheck
from gitops_kaito.core.render import Desired
from gitops_kaito.core.report import (
    OfflinePlan,
    before_label,
    markdown_parts,
    object_diff,
    plan_json,
    shown_changes,
    split_comments,
    write_text,
)
from gitops_kaito.provision.aks import add_azure_flags
from gitops_kaito.reconcile.apply import DEFAULT_IN_FLIGHT
from gitops_kaito.reconcile.offline import OfflineError, plan_offline
from gitops_kaito.reconcile.preflight import run_preflight
from gitops_kaito.reconcile.sync import SyncError, plan_repository

OFFLINE_HELP = """\
offline (--base REV): no cluster and no Azure contact. The repository as rendered at REV (read from git
objects; the working tree and index are never touched) stands in for the cluster, as if REV had been applied;
the working tree (or --head REV) is planned against it, with the change in cost per hour. Objects made
outside gitops-kaito and drift in the cluster are not visible this way. --kubeconfig, --context and the Azure
flags are ignored.

exit codes: 0 no changes; 1 changes, or invalid input in the head (each error with file:line); 2 usage or
internal error (unknown REV, not a git repository, cluster unreachable without --base). Drift reported and
left in place (drift: report) is shown by both; `plan` exits 0 for it (a sync writes nothing), `diff` 1 (the
cluster differs from the repository).
"""


def _add_offline_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", metavar="REV",
                        help="plan offline against the repository at this git revision (e.g. origin/main) "
                             "instead of the cluster")
    parser.add_argument("--head", metavar="REV",
                        help="with --base: plan this git revision instead of the working tree")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = subparsers.add_parser("plan", help="show what a sync would change (exit 0: nothing, 1: changes, 2: error)",
                                 epilog=OFFLINE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_flag(plan)
    add_cluster_flags(plan)
    plan.add_argument("--format", choices=["text", "markdown", "json"], default="text", help="output format")
    plan.add_argument("--revision", default="", help="revision to stamp (default: the checkout's branch@sha1:...)")
    plan.add_argument("--split-dir", type=Path,
                      help="markdown: write comment-1.md, comment-2.md, ... here instead of printing")
    plan.add_argument("--allow-mass-prune", action="store_true", help="plan as if the prune guard were lifted")
    plan.add_argument("--server-dry-run", action=argparse.BooleanOptionalAction, default=None,
                      help="send each create and update as a server-side dry run first (the default against a "
                           "cluster): admission webhook and schema refusals show in the plan (exit 1); "
                           "--no-server-dry-run skips it (the served APIs and modelAccessSecrets are still checked)")
    add_scope_flags(plan)
    add_azure_flags(plan)
    _add_offline_flags(plan)
    plan.set_defaults(func=run_plan)

    diff = subparsers.add_parser("diff", help="per-object diff of the repository against the cluster "
                                              "(exit 0: no diff, 1: diff, 2: error)",
                                 epilog=OFFLINE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_flag(diff)
    add_cluster_flags(diff)
    diff.add_argument("--revision", default="", help="revision to stamp")
    add_scope_flags(diff)
    _add_offline_flags(diff)
    diff.set_defaults(func=run_diff)


def _plan(args: argparse.Namespace) -> tuple[Desired, Plan, OfflinePlan | None, ClusterCheck | None]:
    if getattr(args, "head", None) and not getattr(args, "base", None):
        raise CliError("--head needs --base")
    if getattr(args, "base", None):
        if getattr(args, "server_dry_run", None):
            raise CliError("--server-dry-run needs the cluster; it cannot be combined with --base")
        try:
            offline = plan_offline(Path(args.repo), args.base, args.head, revision=args.revision,
                                   allow_mass_prune=getattr(args, "allow_mass_prune", False),
                                   scope=scope_from_args(args))
        except OfflineError as err:
            raise CliError(str(err)) from None
        return offline.head, offline.plan, offline, None
    desired, plan, check = _cluster_plan(args)
    return desired, plan, None, check


def _cluster_plan(args: argparse.Namespace) -> tuple[Desired, Plan, ClusterCheck | None]:
    """Planned against the cluster; `plan` also asks it what it would refuse (`diff` does not)."""
    try:
        with Kube.connect(args.kubeconfig, args.context) as kube:
            desired, plan = plan_repository(Path(args.repo), kube, revision=args.revision,
                                            allow_mass_prune=getattr(args, "allow_mass_prune", False),
                                            pools=pool_runner(args), scope=scope_from_args(args))
            if args.func is not run_plan:
                return desired, plan, None
            check = run_preflight(plan, desired, kube, every_write=True, report_served=True,
                                  dry_runs=getattr(args, "server_dry_run", None) is not False,
                                  max_in_flight=DEFAULT_IN_FLIGHT)
            return desired, plan, check
    except (KubeError, SyncError) as err:
        raise CliError(str(err)) from None


def run_plan(args: argparse.Namespace) -> int:
    desired, plan, offline, check = _plan(args)
    if args.format == "json":
        json.dump(plan_json(desired, plan, offline, check), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif args.format == "markdown":
        comments = split_comments(markdown_parts(desired, plan, offline, check))
        if args.split_dir:
            args.split_dir.mkdir(parents=True, exist_ok=True)
            for i, text in enumerate(comments, 1):
                (args.split_dir / f"comment-{i}.md").write_text(text)
            print(f"wrote {len(comments)} comment(s) to {args.split_dir}")
        else:
            sys.stdout.write("\n".join(comments))
    else:
        write_text(desired, plan, sys.stdout, offline, check)
    refused = check is not None and bool(check.refused)
    return EXIT_CHANGES if (plan.has_changes or desired.errors or refused) else EXIT_OK


def run_diff(args: argparse.Namespace) -> int:
    desired, plan, offline, _ = _plan(args)
    for err in desired.errors:
        print(f"error: {err}", file=sys.stderr)
    for change in shown_changes(plan):
        sys.stdout.write(object_diff(change, before_label(offline)))
    return EXIT_CHANGES if (plan.has_changes or plan.drift_reported or desired.errors) else EXIT_OK


