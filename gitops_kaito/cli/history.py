"""`gitops-kaito history`: which revisions were applied and when, read from the status commits.

`--model NS/NAME` lists that model's state changes instead. Works on a local clone or a remote URL.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import EXIT_OK, CliError, add_output_flag, emit, print_table


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--repo", default=None, help="a local clone of the model repository (default: .)")
    where.add_argument("--git-url", help="read the repository from this URL instead (file://, https://, ssh://)")
    parser.add_argument("--branch", default=None,
                        help="branch holding the status commits (default: the clone's HEAD, or main for --git-url)")
    parser.add_argument("--status-path", default="status", help="folder of the status files (default: status)")
    parser.add_argument("--instance", help="the gitops-kaito instance whose status to read: a named instance "
                                           "writes under <status-path>/<instance>/ (default: $GITOPS_KAITO_INSTANCE, "
                                           "else default)")


def status_folder(args: argparse.Namespace) -> str:
    """--status-path, or its <instance>/ folder for a named instance (where that instance writes)."""
    import os

    from gitops_kaito.model.ownership import DEFAULT_INSTANCE
    from gitops_kaito.repo.config import check_instance

    root = args.status_path.strip("/") or "status"
    instance = getattr(args, "instance", None) or os.environ.get("GITOPS_KAITO_INSTANCE") or DEFAULT_INSTANCE
    try:
        check_instance(instance)
    except ValueError as err:
        raise CliError(str(err)) from None
    return root if instance == DEFAULT_INSTANCE else f"{root}/{instance}"


@contextmanager
def open_source(args: argparse.Namespace) -> Iterator[tuple[Any, str, Path]]:
    """(git.Repo, ref, checkout dir) for --repo or --git-url; a URL is fetched into a throwaway cache."""
    import git

    from gitops_kaito.adapters.gitsource import GitSource, GitSourceError, SourceSpec

    if args.git_url:
        with tempfile.TemporaryDirectory(prefix="gitops-kaito-") as tmp:
            source = GitSource(SourceSpec(args.git_url, branch=args.branch or "main"), Path(tmp))
            try:
                checkout = source.fetch()
            except GitSourceError as err:
                raise CliError(str(err)) from None
            yield source.repo, checkout.sha, checkout.path
        return
    root = Path(args.repo or ".")
    try:
        repo = git.Repo(root, search_parent_directories=False)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise CliError(f"{root}: not a git repository (use --git-url to read a remote)") from None
    yield repo, args.branch or "HEAD", root


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history", help="list the revisions applied and when (from the status commits)",
        description="Read the status commits the reconciler pushed and list each source revision it applied "
                    "with when it was first reported; with --model, that model's state changes.")
    add_source_flags(parser)
    parser.add_argument("--model", metavar="NS/NAME", help="show one model's state changes")
    add_output_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.adapters.history import HistoryError, model_history, revisions_applied
    from gitops_kaito.core.status import short_revision

    with open_source(args) as (repo, ref, _root):
        try:
            if args.model:
                rows: list[dict[str, Any]] = [asdict(e) for e in model_history(repo, args.model, ref,
                                                                               status_folder(args))]
                columns = ["at", "state", "revision", "message"]
            else:
                rows = [asdict(r) for r in revisions_applied(repo, ref, status_folder(args))]
                columns = ["revision", "applied_at", "last_reported_at", "summary"]
        except HistoryError as err:
            raise CliError(str(err), exit_code=1) from None
    if args.output == "table":
        shown = [{**r, "revision": short_revision(r["revision"])} for r in rows]
        print_table(shown, columns)
    else:
        emit(rows, args.output)
    return EXIT_OK
