"""`gitops-kaito rollback REV`: a commit (or a branch for a pull request) restoring the model requests at REV.

Only models/, gitops-kaito.yaml and templates/ are restored; status/ is left to the reconciler.
"""

from __future__ import annotations

import argparse
from typing import Any

from gitops_kaito.cli.common import EXIT_OK, CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "rollback", help="restore the model requests as they were at a revision (as a new commit)",
        description="Write a commit on top of HEAD that restores models/, gitops-kaito.yaml and templates/ "
                    "as they were at REV (a sha, tag, or a revision such as main@sha1:<sha> from "
                    "`gitops-kaito history`). The next sync pass reconciles it like any other change.")
    parser.add_argument("rev", metavar="REV", help="commit, tag or <branch>@sha1:<sha> to restore")
    parser.add_argument("--branch", metavar="NAME", help="put the commit on a new branch, ready for a pull request")
    parser.add_argument("--repo", default=".", help="local clone of the model repository (default: .)")
    parser.add_argument("--push", action="store_true", help="push the commit (or the new branch) to origin")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import git

    from gitops_kaito.adapters.gitsource import parse_revision
    from gitops_kaito.adapters.history import HistoryError, push_rollback, rollback
    from gitops_kaito.model.gitrefs import branch_problem

    try:
        repo = git.Repo(args.repo)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise CliError(f"{args.repo}: not a git repository") from None
    rev = parse_revision(args.rev)[1]  # main@sha1:<sha> from `history` -> <sha>; a plain sha or tag as given
    if not rev or rev.startswith("-"):  # never an option to git
        raise CliError(f"REV {args.rev!r} is not a revision (a sha, tag or <branch>@sha1:<sha>)")
    problem = branch_problem(args.branch) if args.branch is not None else None
    if problem:
        raise CliError(f"--branch {args.branch!r} is not a branch name git accepts: {problem}")
    try:
        result = rollback(repo, rev, branch=args.branch)
        if args.push:
            result = push_rollback(repo, result)
    except HistoryError as err:
        raise CliError(str(err), exit_code=1) from None
    where = f"on new branch {result.branch}" if result.branch else "on the current branch"
    print(f"rollback commit {result.sha[:12]} {where} restores {len(result.changed_paths)} file(s) "
          f"as of {result.target[:12]}")
    for path in result.changed_paths:
        print(f"  {path}")
    if result.pushed:
        print("pushed to origin")
    elif result.branch:
        print(f"push it for review: git push origin {result.branch}")
    return EXIT_OK
