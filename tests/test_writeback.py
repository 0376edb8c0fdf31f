"""Write-back against a real bare remote: commit only on change, trailer, bot author, push races, never force."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import git
import pytest

from gitops_kaito.adapters.gitsource import GitSource, SourceSpec
from gitops_kaito.adapters.writeback import (
    REVISION_TRAILER,
    Author,
    WritebackError,
    desired_state_changed,
    last_desired_commit,
    write_status,
)
from tests.gitfixtures import Developer, Remote

REV = "main@sha1:" + "1" * 40


@pytest.fixture
def source(remote: Remote, dev: Developer, tmp_path: Path) -> GitSource:
    src = GitSource(SourceSpec(remote.url), tmp_path / "cache")
    src.fetch()
    return src


def fixed(files: Mapping[str, str]) -> object:
    def build(previous: Mapping[str, str]) -> Mapping[str, str]:
        return files
    return build


def test_commits_status_with_trailer_and_bot_author(source: GitSource, remote: Remote, dev: Developer) -> None:
    base = remote.sha()
    res = write_status(source, "main", fixed({"STATUS.md": "# one\n", "ml/a.yaml": "state: Ready\n"}),  # type: ignore[arg-type]
                       REV, author=Author("kaito-bot", "bot@example.com"), summary="1 model: 1 Ready")
    assert res.committed and res.sha == remote.sha() and res.attempts == 1
    commit = git.Repo(remote.bare).commit("main")
    assert commit.parents[0].hexsha == base
    assert commit.author.name == "kaito-bot" and commit.author.email == "bot@example.com"
    assert commit.message.splitlines()[0] == "status: 1 model: 1 Ready"
    assert f"{REVISION_TRAILER}: {REV}" in commit.message
    assert remote.show("status/ml/a.yaml") == "state: Ready"
    assert remote.show("models/ml/a.yaml") == "a: 1"  # the rest of the tree is kept
    assert sorted(commit.stats.files) == ["status/STATUS.md", "status/ml/a.yaml"]


def test_no_commit_when_nothing_changed(source: GitSource, remote: Remote) -> None:
    files = {"STATUS.md": "# one\n"}
    assert write_status(source, "main", fixed(files), REV).committed  # type: ignore[arg-type]
    tip = remote.sha()
    again = write_status(source, "main", fixed(files), REV)  # type: ignore[arg-type]
    assert not again.committed and again.sha is None
    assert remote.sha() == tip


def test_previous_files_are_given_to_the_builder_and_stale_files_removed(source: GitSource, remote: Remote) -> None:
    write_status(source, "main", fixed({"STATUS.md": "x\n", "ml/a.yaml": "a\n", "ml/b.yaml": "b\n"}), REV)  # type: ignore[arg-type]
    seen: list[dict[str, str]] = []

    def build(previous: Mapping[str, str]) -> Mapping[str, str]:
        seen.append(dict(previous))
        return {"STATUS.md": "x\n", "ml/a.yaml": "a\n"}

    assert write_status(source, "main", build, REV).committed
    assert seen == [{"STATUS.md": "x\n", "ml/a.yaml": "a\n", "ml/b.yaml": "b\n"}]
    names = git.Repo(remote.bare).git.ls_tree("-r", "--name-only", "main").splitlines()
    assert "status/ml/b.yaml" not in names and "status/ml/a.yaml" in names


def test_push_race_rebuilds_on_top_and_loses_nothing(source: GitSource, remote: Remote, dev: Developer) -> None:
    raced: list[str] = []
    builds: list[dict[str, str]] = []
    delays: list[float] = []

    def another_commit_lands(attempt: int) -> None:
        if attempt == 1:
            dev.write("models/ml/b.yaml", "b: 2\n")
            raced.append(dev.commit("add b while the reconciler was pushing"))

    def build(previous: Mapping[str, str]) -> Mapping[str, str]:
        builds.append(dict(previous))
        return {"STATUS.md": f"built {len(builds)}\n"}

    res = write_status(source, "main", build, REV, before_push=another_commit_lands, sleep=delays.append,
                       backoff_s=0.25)
    assert res.committed and res.attempts == 2 and len(builds) == 2
    assert delays == [0.25]
    log = remote.log()
    assert log[0].split()[0] == res.sha and log[1].split()[0] == raced[0]  # status on top of the racer
    tip = git.Repo(remote.bare).commit("main")
    assert tip.parents[0].hexsha == raced[0]
    assert remote.show("models/ml/b.yaml") == "b: 2" and remote.show("models/ml/a.yaml") == "a: 1"
    assert remote.show("status/STATUS.md") == "built 2"
    assert len(tip.parents) == 1  # rebuilt, not merged


def test_gives_up_after_max_attempts_without_forcing(source: GitSource, remote: Remote, dev: Developer) -> None:
    count = iter(range(100))
    delays: list[float] = []

    def always_race(attempt: int) -> None:
        dev.write(f"models/ml/r{next(count)}.yaml", "r\n")
        dev.commit("race")

    with pytest.raises(WritebackError, match="rejected 3 times"):
        write_status(source, "main", fixed({"STATUS.md": "x\n"}), REV, before_push=always_race,  # type: ignore[arg-type]
                     max_attempts=3, backoff_s=1, sleep=delays.append)
    assert delays == [1, 2]  # exponential
    assert remote.log()[0].endswith("race")  # every developer commit survived; ours never forced
    assert len(remote.log()) == 4


def test_separate_status_branch_as_orphan(source: GitSource, remote: Remote) -> None:
    res = write_status(source, "gitops-status", fixed({"STATUS.md": "x\n"}), REV)  # type: ignore[arg-type]
    assert res.committed and res.base_sha is None
    repo = git.Repo(remote.bare)
    assert repo.git.ls_tree("-r", "--name-only", "gitops-status").splitlines() == ["status/STATUS.md"]
    assert not repo.commit("gitops-status").parents
    assert not write_status(source, "gitops-status", fixed({"STATUS.md": "x\n"}), REV).committed  # type: ignore[arg-type]


def test_separate_status_branch_from_followed_branch(source: GitSource, remote: Remote) -> None:
    main = remote.sha()
    write_status(source, "status", fixed({"STATUS.md": "x\n"}), REV, create_from=main)  # type: ignore[arg-type]
    repo = git.Repo(remote.bare)
    assert repo.commit("status").parents[0].hexsha == main
    assert remote.sha("main") == main  # the followed branch is untouched


def test_status_only_commits_are_not_desired_state_changes(source: GitSource, remote: Remote,
                                                           dev: Developer) -> None:
    before = remote.sha()
    write_status(source, "main", fixed({"STATUS.md": "x\n"}), REV)  # type: ignore[arg-type]
    status_commit = remote.sha()
    assert not desired_state_changed(source.repo, before, status_commit)
    assert last_desired_commit(source.repo, status_commit) == before
    dev.pull()
    dev.write("models/ml/b.yaml", "b\n")
    change = dev.commit("add b")
    source.fetch()
    assert desired_state_changed(source.repo, status_commit, change)
    assert last_desired_commit(source.repo, change) == change
    assert desired_state_changed(source.repo, None, change)
    assert desired_state_changed(source.repo, "f" * 40, change)  # unknown old commit counts as a change


def test_previous_files_are_read_with_one_batch_byte_exact(source: GitSource, remote: Remote,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"STATUS.md": "# ü ✓\n", "ml/empty.yaml": "", "ml/no-newline.yaml": "a: 1", "ml/lines.yaml": "a\n\nb\n\n",
             "ml/same.yaml": "a: 1"}  # same content as another file: one blob, two paths
    write_status(source, "main", fixed(files), REV)  # type: ignore[arg-type]
    calls: list[list[str]] = []
    original = GitSource._run

    def counting(self: GitSource, repo: git.Repo, args: list[str], *a: object, **kw: object) -> str:
        calls.append(list(args))
        return original(self, repo, args, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(GitSource, "_run", counting)
    seen: list[dict[str, str]] = []

    def build(previous: Mapping[str, str]) -> Mapping[str, str]:
        seen.append(dict(previous))
        return previous

    assert not write_status(source, "main", build, REV).committed
    assert seen == [files]
    assert [c[:2] for c in calls if c[0] == "cat-file"] == [["cat-file", "--batch"]]


def test_a_known_tip_saves_the_fetch_and_a_stale_one_is_rejected_then_rebuilt(
        source: GitSource, remote: Remote, dev: Developer, monkeypatch: pytest.MonkeyPatch) -> None:
    tip = remote.sha()
    fetched: list[str] = []
    original = GitSource.fetch_branch

    def fetch_branch(self: GitSource, branch: str) -> str | None:
        fetched.append(branch)
        return original(self, branch)

    monkeypatch.setattr(GitSource, "fetch_branch", fetch_branch)
    res = write_status(source, "main", fixed({"STATUS.md": "one\n"}), REV, tip=tip)  # type: ignore[arg-type]
    assert res.committed and res.base_sha == tip and fetched == []

    dev.pull()
    dev.write("models/ml/c.yaml", "c: 1\n")
    racer = dev.commit("the branch moved after our fetch")
    res = write_status(source, "main", fixed({"STATUS.md": "two\n"}), REV, tip=res.sha,  # type: ignore[arg-type]
                       sleep=lambda _s: None)
    assert res.committed and res.attempts == 2 and fetched == ["main"] and res.base_sha == racer
    assert remote.show("models/ml/c.yaml") == "c: 1" and remote.show("status/STATUS.md") == "two"
