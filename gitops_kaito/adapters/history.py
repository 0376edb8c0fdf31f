"""What was applied when (read from status commits), and rollback as a commit that restores the requests.

Rollback never touches status/: it restores models/, gitops-kaito.yaml and templates/ as they were at REV.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import git

from gitops_kaito.adapters.writeback import REVISION_TRAILER, Author
from gitops_kaito.core.status import ModelReport, parse_model_yaml
from gitops_kaito.model.gitrefs import branch_problem
from gitops_kaito.model.ownership import is_dns_label
from gitops_kaito.repo.config import DESIRED_STATE_PATHS

ROLLBACK_TRAILER = "Gitops-Kaito-Rollback-To"
_FIELD, _RECORD = "\x1f", "\x1e"


class HistoryError(Exception):
    """A user-facing problem: unknown revision, nothing to roll back, a dirty working tree."""


@dataclass(frozen=True)
class AppliedRevision:
    revision: str  # "<branch>@sha1:<sha>" as named by the status commit's trailer
    applied_at: str  # commit time of the first status commit that named it (ISO 8601)
    status_commit: str
    summary: str  # the first status commit's subject, e.g. "status: 2 models: 2 Ready"
    last_reported_at: str


@dataclass(frozen=True)
class ModelEvent:
    model: str  # "<ns>/<name>"
    at: str
    state: str  # the state written in that status commit, "Removed" when the file was deleted
    revision: str
    message: str
    status_commit: str


@dataclass(frozen=True)
class RollbackResult:
    sha: str  # the new commit
    target: str  # the commit whose desired state it restores
    branch: str | None  # the new branch, or None when the current branch was advanced
    changed_paths: tuple[str, ...]
    pushed: bool = False


def _status_commits(repo: git.Repo, ref: str, paths: Sequence[str]) -> list[tuple[str, str, str, str]]:
    fmt = _FIELD.join(["%H", "%cI", "%s", f"%(trailers:key={REVISION_TRAILER},valueonly,separator=%x2C)"])
    try:
        out = repo.git.log(f"--format={fmt}{_RECORD}", ref, "--", *paths)
    except git.GitCommandError as err:
        raise HistoryError(f"cannot read history of {ref}: {err.stderr.strip()}") from None
    rows = []
    for rec in out.split(_RECORD):
        rec = rec.strip("\n")
        if not rec:
            continue
        sha, when, subject, trailer = [*rec.split(_FIELD), "", "", "", ""][:4]
        if trailer.strip():
            rows.append((sha, when, subject, trailer.strip().split(",")[-1].strip()))
    return rows


def revisions_applied(repo: git.Repo, ref: str = "HEAD", status_path: str = "status") -> list[AppliedRevision]:
    """Each source revision the reconciler reported, newest first, with when it was first reported."""
    root = status_path.strip("/")
    # Only this folder's own files: the default instance's status/ also holds named instances' <instance>/ folders.
    rows = _status_commits(repo, ref, [f"{root}/STATUS.md", f":(glob){root}/*/*.yaml"])
    firsts: dict[str, tuple[str, str, str, str]] = {}
    lasts: dict[str, str] = {}
    order: list[str] = []
    for sha, when, subject, revision in rows:  # newest first
        if revision not in lasts:
            lasts[revision] = when
            order.append(revision)
        firsts[revision] = (sha, when, subject, revision)
    return [AppliedRevision(rev, firsts[rev][1], firsts[rev][0], firsts[rev][2], lasts[rev]) for rev in order]


def model_history(repo: git.Repo, model: str, ref: str = "HEAD", status_path: str = "status") -> list[ModelEvent]:
    """Every status commit that changed one model's status file, newest first."""
    ns, sep, name = model.partition("/")
    if not sep or not is_dns_label(ns) or not is_dns_label(name):
        raise HistoryError(f"--model must be NAMESPACE/NAME (two DNS-1123 labels), got {model!r}")
    path = f"{status_path}/{ns}/{name}.yaml"
    events = []
    for sha, when, _subject, revision in _status_commits(repo, ref, [path]):
        try:
            text = repo.git.show(f"{sha}:{path}")
        except git.GitCommandError:
            events.append(ModelEvent(model, when, "Removed", revision, "no longer in the repository; pruned", sha))
            continue
        try:  # anyone with push access wrote this file: read it under the status files' limits
            report: ModelReport | None = parse_model_yaml(text, path)
        except ValueError:
            report = None
        events.append(ModelEvent(model, when, report.state if report else "",
                                 (report.revision if report else "") or revision,
                                 report.message if report else "", sha))
    return events


def rollback(repo: git.Repo, rev: str, *, branch: str | None = None, author: Author | None = None,
             paths: Sequence[str] = DESIRED_STATE_PATHS) -> RollbackResult:
    """A commit on top of HEAD whose models/, gitops-kaito.yaml and templates/ are those of `rev`.

    With `branch`, the commit goes on a new branch (ready for a pull request) and the working tree is
    left alone; otherwise the current branch fast-forwards to it.
    """
    try:
        if rev.startswith("-"):
            raise git.GitCommandError("rev-parse", 128)
        target = repo.git.rev_parse("--verify", f"{rev}^{{commit}}")
        head = repo.git.rev_parse("--verify", "HEAD^{commit}")
    except git.GitCommandError:
        raise HistoryError(f"unknown revision {rev!r}") from None
    problem = branch_problem(branch) if branch is not None else None
    if problem:
        raise HistoryError(f"branch {branch!r} is not a branch name git accepts: {problem}")
    if branch and repo.git.branch("--list", branch).strip():
        raise HistoryError(f"branch {branch!r} already exists")
    try:
        return _rollback(repo, rev, target, head, branch, author, paths)
    except git.GitCommandError as err:  # a repository in a state git refuses (locked index, read-only, ...)
        stderr = err.stderr.strip() if isinstance(err.stderr, str) else str(err)
        raise HistoryError(f"git refused the rollback: {stderr or err}") from None


def _rollback(repo: git.Repo, rev: str, target: str, head: str, branch: str | None, author: Author | None,
              paths: Sequence[str]) -> RollbackResult:
    with tempfile.TemporaryDirectory(prefix="gitops-kaito-rollback-") as tmp:
        env = {"GIT_INDEX_FILE": os.path.join(tmp, "index")}
        with repo.git.custom_environment(**env):
            repo.git.read_tree(head)
            repo.git.rm("-r", "--cached", "--ignore-unmatch", "--quiet", "--", *paths)
            for path in paths:
                entry = repo.git.ls_tree(target, "--", path).strip()
                if not entry:
                    continue
                mode, kind, sha = entry.split("\t")[0].split()
                if kind == "tree":
                    repo.git.read_tree(f"--prefix={path}/", sha)
                else:
                    repo.git.update_index("--add", "--cacheinfo", f"{mode},{sha},{path}")
            tree = repo.git.write_tree()
    changed = tuple(repo.git.diff_tree("-r", "--name-only", "--no-commit-id", head, tree).splitlines())
    if not changed:
        raise HistoryError(f"the desired state at HEAD already matches {rev}: nothing to roll back")
    subject = repo.git.log("-1", "--format=%s", target)
    message = (f"Roll back models to {target[:12]} ({subject})\n\n"
               f"Restores {', '.join(paths)} as they were at {target}.\n"
               "Status files are left alone; the next sync pass reconciles this like any other change.\n\n"
               f"{ROLLBACK_TRAILER}: {target}\n")
    env = {}
    if author is not None:
        env = {"GIT_AUTHOR_NAME": author.name, "GIT_AUTHOR_EMAIL": author.email,
               "GIT_COMMITTER_NAME": author.name, "GIT_COMMITTER_EMAIL": author.email}
    try:
        with repo.git.custom_environment(**env):
            sha = repo.git.commit_tree(tree, "-p", head, "-m", message)
    except git.GitCommandError as err:
        raise HistoryError(f"cannot commit: {err.stderr.strip()}") from None
    if branch:
        repo.git.branch(branch, sha)
        return RollbackResult(sha, target, branch, changed)
    if repo.bare:
        repo.git.update_ref("HEAD", sha, head)
    else:
        try:
            repo.git.merge("--ff-only", "--quiet", sha)
        except git.GitCommandError as err:
            raise HistoryError(f"cannot update the working tree: {err.stderr.strip()}") from None
    return RollbackResult(sha, target, None, changed)


def push_rollback(repo: git.Repo, result: RollbackResult, remote: str = "origin") -> RollbackResult:
    """Push the rollback commit: its new branch, or the current branch (never forced)."""
    if result.branch:
        refspec = f"refs/heads/{result.branch}:refs/heads/{result.branch}"
    else:
        try:
            current = repo.active_branch.name
        except TypeError:
            raise HistoryError("HEAD is detached: use --branch to push the rollback for review") from None
        refspec = f"{result.sha}:refs/heads/{current}"
    try:
        repo.git.push(remote, refspec)
    except git.GitCommandError as err:
        raise HistoryError(f"push failed: {err.stderr.strip()}") from None
    return RollbackResult(result.sha, result.target, result.branch, result.changed_paths, True)
