"""Fault injection on Git: each test breaks the followed repository (unreachable, credentials refused, history
rewritten by a force-push, a push race on every attempt, a corrupted cache clone) around a git-integrated pass
(real git, real kubernetes client against the emulator) and checks that the cluster keeps the last applied state,
the reconciler recovers on the next pass, and no developer commit is lost from the remote.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from gitops_kaito.adapters.gitsource import GitAuth, GitSourceError
from gitops_kaito.adapters.writeback import WritebackError
from tests.faultkit import GitHttpServer, GitWorld

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

TOKEN = "s3cr3t-token-value"


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GitWorld]:
    w = GitWorld(tmp_path)
    yield w
    w.close()


def applied(gw: GitWorld) -> GitWorld:
    """Two models merged and applied, status committed: the 'last applied state' the faults must not disturb."""
    gw.commit("add phi and qwen", phi="phi-4-mini-instruct", qwen="qwen2.5-coder-7b-instruct")
    first = gw.run()
    assert first.sync.ok and gw.kw.workspaces() == {"phi", "qwen"}
    assert first.writeback is not None and first.writeback.committed
    return gw


def test_unreachable_remote_keeps_the_cluster_and_recovers(gw: GitWorld) -> None:
    """Fault: the remote disappears (its directory is moved away) after a developer pushed a new model.
    Checks: the pass raises GitSourceError naming the remote before applying anything, the cluster is exactly
    as it was, and once the remote is back the next pass applies the new model and loses no commit."""
    applied(gw)
    gw.dev.pull()
    gw.commit("add mistral", mistral="mistral-7b-instruct")
    before = gw.kw.snapshot()
    away = gw.remote.bare.with_name("moved.git")
    gw.remote.bare.rename(away)
    try:
        with pytest.raises(GitSourceError, match="git fetch failed contacting"):
            gw.run()
        assert gw.kw.snapshot() == before, "the cluster changed while the remote was unreachable"
    finally:
        away.rename(gw.remote.bare)
    after = gw.run(now="2025-01-01T00:01:00Z")
    assert after.sync.ok and gw.kw.workspaces() == {"phi", "qwen", "mistral"}
    assert after.writeback is not None and after.writeback.committed
    assert gw.lost_commits() == []


@pytest.fixture
def http_gw(tmp_path: Path) -> Iterator[tuple[GitWorld, GitHttpServer]]:
    server = GitHttpServer(tmp_path, TOKEN)
    w = GitWorld(tmp_path, url=server.url("models.git"), auth=GitAuth(token=TOKEN))
    yield w, server
    w.close()
    server.stop()


def test_auth_refused_on_fetch_keeps_the_cluster_and_hides_the_token(http_gw: tuple[GitWorld, GitHttpServer]) -> None:
    """Fault: the git server starts refusing the reconciler's token (401 on every request, as after a rotation),
    while a developer's change waits. Checks: the pass fails with an authentication error that does not contain
    the token, nothing is applied, and after the credentials work again the change is applied and committed."""
    gw, server = http_gw
    applied(gw)
    gw.dev.pull()
    gw.commit("add mistral", mistral="mistral-7b-instruct")
    before = gw.kw.snapshot()
    server.refuse = "all"
    with pytest.raises(GitSourceError) as caught:
        gw.run()
    message = str(caught.value)
    assert "401" in message or "Authentication failed" in message or "could not read Username" in message, message
    assert TOKEN not in message
    assert any(code == 401 for _, _, code in server.requests)
    assert gw.kw.snapshot() == before, "the cluster changed while git refused our credentials"
    server.refuse = ""
    after = gw.run(now="2025-01-01T00:01:00Z")
    assert after.sync.ok and gw.kw.workspaces() == {"phi", "qwen", "mistral"}
    assert gw.lost_commits() == []


def test_push_refused_after_apply_is_reported_and_the_next_pass_commits(
        http_gw: tuple[GitWorld, GitHttpServer]) -> None:
    """Fault: the token may read but not push (403 on receive-pack, a read-only deploy key). Checks: the pass
    applies the model, then fails the status write-back with a GitSourceError (no force, no partial ref), the
    remote is untouched, and once pushing is allowed again the next pass commits status without applying twice."""
    gw, server = http_gw
    gw.commit("add phi", phi="phi-4-mini-instruct")
    tip = gw.remote.sha()
    server.refuse = "push"
    with pytest.raises(GitSourceError, match="push"):
        gw.run()
    assert gw.kw.workspaces() == {"phi"}, "the apply did not happen before the push failed"
    assert gw.remote.sha() == tip, "a refused push moved the remote"
    server.refuse = ""
    writes = gw.kw.writes()
    after = gw.run(now="2025-01-01T00:01:00Z")
    assert after.writeback is not None and after.writeback.committed
    assert gw.kw.writes() == writes, "the retried pass applied again"
    assert gw.lost_commits() == [] and len(gw.status_commits()) == 1


def test_force_push_rewriting_history_is_followed_without_force(gw: GitWorld) -> None:
    """Fault: someone force-pushes main, dropping the commit that added qwen (and our status commit on top of it)
    and adding mistral instead. Checks: the pass follows the rewritten branch (qwen pruned, mistral created),
    builds its status commit on the new tip with a plain push (every commit of the new history kept, the status
    commit's parent is the new tip), and a second pass changes nothing."""
    applied(gw)
    base = gw.dev_commits[0]
    gw.dev.repo.git.reset("--hard", base)
    gw.dev.write("models/ml/phi.yaml", gw.remote.show("models/ml/phi.yaml"))
    gw.dev.write("models/ml/mistral.yaml", gw.remote.show("models/ml/phi.yaml").replace("phi", "mistral")
                 .replace("mistral-4-mini-instruct", "mistral-7b-instruct"))
    with gw.dev.repo.git.custom_environment(GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="d@x",
                                            GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="d@x"):
        gw.dev.repo.git.commit("-q", "-m", "rewrite: phi and mistral")
    gw.dev.repo.git.push("-q", "--force", "origin", "HEAD:refs/heads/main")
    rewritten = [base, gw.dev.repo.head.commit.hexsha]
    result = gw.run(now="2025-01-01T00:01:00Z")
    assert result.revision == f"main@sha1:{rewritten[-1]}"
    assert gw.kw.workspaces() == {"phi", "mistral"} and result.sync.pruned == 1
    assert result.writeback is not None and result.writeback.committed
    tip = git.Repo(gw.remote.bare).commit("main")
    assert tip.hexsha == result.writeback.sha and [p.hexsha for p in tip.parents] == [rewritten[-1]]
    assert gw.lost_commits(rewritten) == []
    again = gw.run(now="2025-01-01T00:02:00Z")
    assert again.writeback is not None and not again.writeback.committed
    assert (again.sync.created, again.sync.updated, again.sync.pruned) == (0, 0, 0)


def test_push_race_on_every_attempt_but_the_last_loses_nothing(gw: GitWorld) -> None:
    """Fault: a developer pushes between our commit and our push on attempts 1-3 (one of those commits adds a
    model). Checks: the status push is rebuilt on each new tip and lands on attempt 4 as a single commit on top
    of all three developer commits (none lost, never forced); the next pass applies the model that raced in."""
    applied(gw)
    gw.dev.pull()
    gw.commit("add mistral", mistral="mistral-7b-instruct")
    raced: list[str] = []

    def race(attempt: int) -> None:
        if attempt <= 3:
            files = {"llama": "phi-3.5-mini-instruct"} if attempt == 2 else {}
            if not files:
                gw.dev.write(f"docs/note-{attempt}.md", f"raced {attempt}\n")
            raced.append(gw.commit(f"race {attempt}", **files))

    result = gw.run(now="2025-01-01T00:01:00Z", before_push=race)
    assert result.writeback is not None and result.writeback.attempts == 4
    log = [ln.split()[0] for ln in gw.remote.log()]
    assert log[0] == result.writeback.sha and log[1] == raced[-1]
    assert gw.lost_commits() == []
    next_pass = gw.run(now="2025-01-01T00:02:00Z")
    assert "llama" in gw.kw.workspaces() and next_pass.sync.ok


def test_push_race_that_never_ends_fails_cleanly_and_the_next_pass_commits(gw: GitWorld) -> None:
    """Fault: a developer wins the race on every push attempt. Checks: write-back gives up with WritebackError
    after its attempts (the cluster is already applied), every raced developer commit is on the remote, and the
    next pass, without the race, commits status exactly once."""
    gw.commit("add phi", phi="phi-4-mini-instruct")

    def race(attempt: int) -> None:
        gw.dev.pull()
        gw.dev.write("docs/race.md", f"attempt {attempt}\n")
        gw.commit(f"race {attempt}")

    with pytest.raises(WritebackError, match="rejected"):
        gw.run(before_push=race)
    assert gw.kw.workspaces() == {"phi"}
    assert gw.lost_commits() == [] and gw.status_commits() == []
    result = gw.run(now="2025-01-01T00:01:00Z")
    assert result.writeback is not None and result.writeback.committed and len(gw.status_commits()) == 1


CORRUPTIONS = {
    "head-garbage": lambda cache: (cache / ".git" / "HEAD").write_text("garbage\n"),
    "objects-deleted": lambda cache: [shutil.rmtree(p) for p in (cache / ".git" / "objects").iterdir()
                                      if p.is_dir() and p.name not in ("info",)],
    "index-truncated": lambda cache: (cache / ".git" / "index").write_bytes(b"DIRC\x00"),
    "cache-is-a-file": lambda cache: (shutil.rmtree(cache), cache.write_text("not a repository")),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_cache_clone_is_recloned(gw: GitWorld, corruption: str) -> None:
    """Fault: the reconciler's cache clone is corrupted between passes (garbage HEAD, objects deleted, truncated
    index, or the clone replaced by a file). Checks: the next pass recovers by cloning again, applies the
    developer's new commit, writes nothing for the unchanged models, and loses no commit."""
    applied(gw)
    gw.dev.pull()
    gw.commit("add mistral", mistral="mistral-7b-instruct")
    cache = gw.cache()
    assert cache.is_dir()
    CORRUPTIONS[corruption](cache)
    result = gw.run(now="2025-01-01T00:01:00Z")
    assert result.sync.ok and result.sync.created == 1 and result.sync.updated == 0, result.sync.outcomes
    assert gw.kw.workspaces() == {"phi", "qwen", "mistral"}
    assert result.writeback is not None and result.writeback.committed
    assert gw.lost_commits() == []
