"""Commits status files back to the repository and pushes them, rebuilding on top when the push races.

Commits are built with git plumbing (a private index), so the followed checkout is never disturbed; never force-pushes.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import git

from gitops_kaito.adapters.gitsource import GitSource, GitSourceError, PushRejected
from gitops_kaito.core.status import STATUS_FILE_MAX_BYTES
from gitops_kaito.repo.config import DESIRED_STATE_PATHS

log = logging.getLogger(__name__)

REVISION_TRAILER = "Gitops-Kaito-Revision"

# Given the status files on the branch tip (relative to the status folder), return the full new set.
BuildStatus = Callable[[Mapping[str, str]], Mapping[str, str]]


@dataclass(frozen=True)
class Author:
    name: str = "gitops-kaito"
    email: str = "gitops-kaito@users.noreply.local"


@dataclass(frozen=True)
class WritebackResult:
    committed: bool  # False: the status files were already up to date
    sha: str | None  # the pushed status commit
    branch: str
    attempts: int
    base_sha: str | None  # the branch tip the commit was built on


class WritebackError(GitSourceError):
    """Status could not be pushed after every retry."""


def write_status(
    source: GitSource,
    branch: str,
    build: BuildStatus,
    revision: str,
    *,
    author: Author = Author(),
    status_path: str = "status",
    summary: str = "",
    body: str = "",
    create_from: str | None = None,
    max_attempts: int = 5,
    backoff_s: float = 0.5,
    max_backoff_s: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
    before_push: Callable[[int], None] | None = None,
    tip: str | None = None,
) -> WritebackResult:
    """Write the status folder on `branch` and push it; one commit, only when a file changed.

    A branch the remote lacks is created from `create_from` (a commit) or as an orphan when None.
    On a rejected push: fetch, rebuild from the new tip (regenerating the files, not merging), retry
    with exponential backoff. `before_push(attempt)` runs right before each push (tests race it).
    `tip`: the branch's sha as just fetched by the caller (the followed branch): the first attempt builds on it
    without asking the remote again; a rejected push fetches as usual.
    """
    status_path = status_path.strip("/")
    for attempt in range(1, max_attempts + 1):
        base = tip if attempt == 1 and tip else source.fetch_branch(branch)
        parent = base or create_from
        previous = read_tree_files(source, parent, status_path) if parent else {}
        files = dict(build(previous))
        if parent and base and files == previous:  # the common pass: nothing to write, and no index to build
            return WritebackResult(False, None, branch, attempt, base)
        tree = _tree_with_status(source, parent, status_path, files, previous)
        if parent and base and tree == source.run(["rev-parse", f"{parent}^{{tree}}"]):
            return WritebackResult(False, None, branch, attempt, base)
        message = commit_message(revision, summary, body)
        sha = _commit_tree(source, tree, parent, message, author)
        if before_push is not None:
            before_push(attempt)
        try:
            source.push(sha, branch)
        except PushRejected as err:
            if attempt == max_attempts:
                raise WritebackError(f"push of status to {branch} rejected {attempt} times: {err}") from None
            delay = min(max_backoff_s, backoff_s * 2 ** (attempt - 1))
            log.info("status push rejected; rebuilding on the new tip", extra={"fields": {
                "branch": branch, "attempt": attempt, "retry_in_s": delay}})
            sleep(delay)
            continue
        log.info("status pushed", extra={"fields": {"branch": branch, "sha": sha, "revision": revision}})
        return WritebackResult(True, sha, branch, attempt, base)
    raise WritebackError(f"status was not pushed to {branch}")  # pragma: no cover - loop always returns


def commit_message(revision: str, summary: str = "", body: str = "") -> str:
    first = f"status: {summary}" if summary else "status: update"
    middle = f"{body.strip()}\n\n" if body.strip() else ""
    return f"{first}\n\n{middle}{REVISION_TRAILER}: {revision}\n"


def read_tree_files(source: GitSource, commit: str, folder: str, max_bytes: int = STATUS_FILE_MAX_BYTES
                    ) -> dict[str, str]:
    """Every file under `folder` at `commit` of at most max_bytes, keyed by path relative to it."""
    try:
        listing = source.run(["ls-tree", "-r", "-l", "-z", "--full-tree", commit, "--", folder])
    except GitSourceError:
        return {}
    blobs: dict[str, str] = {}
    for entry in filter(None, listing.split("\0")):
        info, _, path = entry.partition("\t")
        _mode, kind, sha, size = info.split()
        # A file anyone could have pushed: one over the limit is not read (the pass writes it anew).
        if kind == "blob" and size.isdigit() and int(size) <= max_bytes:
            blobs[path[len(folder) + 1:]] = sha
    # One `cat-file --batch` for all of them (it was one process per status file: ~5,000 at 5,000 models).
    texts = source.read_blobs(list(blobs.values()))
    return {rel: texts[sha] for rel, sha in blobs.items()}


def is_status_file(rel: str) -> bool:
    """What a status commit writes under its folder: STATUS.md and <ns>/<name>.yaml, and a named instance's in its
    <instance>/ folder. Only such files are ever deleted by one: anything else found there stays as it is."""
    parts = rel.split("/")
    if parts[-1] == "STATUS.md":
        return len(parts) <= 2
    return parts[-1].endswith(".yaml") and len(parts) in (2, 3)


def _tree_with_status(source: GitSource, parent: str | None, folder: str, files: Mapping[str, str],
                      previous: Mapping[str, str]) -> str:
    """The parent's tree with the status files under `folder` made exactly `files`, via a private index file.

    Never anything else: a folder that is a file on the branch is refused, only previous status files are removed,
    and the result must leave desired state (models/, gitops-kaito.yaml, templates/) exactly as the parent has it.
    """
    with tempfile.TemporaryDirectory(prefix="gitops-kaito-index-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        if parent:
            kinds = source.run(["ls-tree", "-z", "--full-tree", parent, "--", folder]).split("\0")
            if any(entry.partition("\t")[2] == folder and " blob " in entry for entry in kinds):
                raise WritebackError(f"status path {folder!r} is a file on the branch: status is not written there "
                                     "(set status.path to a folder of its own)")
            source.run(["read-tree", parent], env=env)
            stale = [f"{folder}/{rel}" for rel in previous if rel not in files and is_status_file(rel)]
            if stale:
                source.run(["update-index", "-z", "--force-remove", "--stdin"], env=env,
                           stdin="".join(f"{p}\0" for p in stale).encode())
        else:
            source.run(["read-tree", "--empty"], env=env)
        # Only files that differ from the parent's: the rest are in the index already (read-tree), and writing all
        # 5,000 of a large repository to disk again took seconds in every status commit.
        changed = {rel: text for rel, text in files.items() if not parent or previous.get(rel) != text}
        if changed:
            # Two git processes for all the status files (it was two per file: ~10,000 at 5,000 models):
            # `hash-object --stdin-paths` stores every blob, `update-index --index-info` stages them.
            rels = sorted(changed)
            blob_paths = []
            for i, rel in enumerate(rels):
                blob = Path(tmp) / f"blob-{i}"
                blob.write_bytes(changed[rel].encode())
                blob_paths.append(f"{blob}\n")
            shas = source.run(["hash-object", "-w", "--no-filters", "--stdin-paths"],
                              stdin="".join(blob_paths).encode()).split()
            entries = "".join(f"100644 {sha}\t{folder}/{rel}\0" for rel, sha in zip(rels, shas, strict=True))
            source.run(["update-index", "-z", "--index-info"], env=env, stdin=entries.encode())
        tree = source.run(["write-tree"], env=env)
    if parent and _desired_state(source, tree) != _desired_state(source, parent):
        raise WritebackError(f"a status commit under {folder!r} would change desired state "
                             f"({', '.join(DESIRED_STATE_PATHS)}): refused")
    return tree


def _desired_state(source: GitSource, treeish: str) -> str:
    return source.run(["ls-tree", "--full-tree", treeish, "--", *DESIRED_STATE_PATHS])


def _commit_tree(source: GitSource, tree: str, parent: str | None, message: str, author: Author) -> str:
    env = {
        "GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email,
    }
    args = ["commit-tree", tree, "-m", message]
    if parent:
        args += ["-p", parent]
    return source.run(args, env=env)


def desired_state_changed(repo: git.Repo | Path | str, old_sha: str | None, new_sha: str,
                          status_path: str = "status") -> bool:
    """True when something outside status/ differs between the commits (or the old one is unknown)."""
    if not old_sha:
        return True
    if old_sha == new_sha:
        return False
    r = repo if isinstance(repo, git.Repo) else git.Repo(repo)
    try:
        names = r.git.diff("--name-only", "--no-renames", old_sha, new_sha).splitlines()
    except git.GitCommandError:
        return True  # the old commit is gone (force-push, shallow cache): treat as a change
    prefix = status_path.strip("/") + "/"
    return any(not n.startswith(prefix) for n in names)


def last_desired_commit(repo: git.Repo | Path | str, sha: str, status_path: str = "status") -> str:
    """The newest commit at or before `sha` that touched anything outside status/.

    Its sha is what a pass applies, so status-only commits never change the applied revision.
    """
    r = repo if isinstance(repo, git.Repo) else git.Repo(repo)
    try:
        found = r.git.log("-1", "--format=%H", sha, "--", ".", f":(exclude){status_path.strip('/')}")
    except git.GitCommandError:
        return sha
    return found.strip() or sha
