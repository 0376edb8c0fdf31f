"""History from status commits and rollback commits, on real repositories, through the library and the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import git
import pytest
import yaml

from gitops_kaito.adapters.gitsource import GitSource, SourceSpec
from gitops_kaito.adapters.history import HistoryError, model_history, revisions_applied, rollback
from gitops_kaito.adapters.writeback import write_status
from gitops_kaito.cli import main
from gitops_kaito.core.status import ModelReport, render_files
from tests.gitfixtures import Developer, Remote, make_remote, model_file


def reports(revision: str, **states: str) -> list[ModelReport]:
    return [ModelReport(model_id=f"ml.{n}", namespace="ml", name=n, state=s, revision=revision,
                        message=f"{n} is {s}") for n, s in states.items()]


def push_status(source: GitSource, revision: str, now: str, **states: str) -> None:
    def build(previous: Mapping[str, str]) -> Mapping[str, str]:
        return render_files(reports(revision, **states), previous, now)
    write_status(source, "main", build, revision)


@pytest.fixture
def world(tmp_path: Path) -> tuple[Remote, Developer, GitSource, list[str]]:
    """A: add phi; status Provisioning then Ready. B: add mistral; status. Returns the model commits."""
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("gitops-kaito.yaml", "defaultNamespace: ml\n")
    dev.write("models/ml/phi.yaml", model_file("phi"))
    a = dev.commit("add phi")
    source = GitSource(SourceSpec(remote.url), tmp_path / "cache")
    source.fetch()
    push_status(source, f"main@sha1:{a}", "2025-01-01T00:00:00Z", phi="Provisioning")
    push_status(source, f"main@sha1:{a}", "2025-01-01T00:10:00Z", phi="Ready")
    dev.pull()
    dev.write("models/ml/mistral.yaml", model_file("mistral", "mistral-7b-instruct"))
    dev.write("models/ml/phi.yaml", model_file("phi") + "  nodes: 2\n")
    b = dev.commit("add mistral, scale phi")
    source.fetch()
    push_status(source, f"main@sha1:{b}", "2025-01-01T00:20:00Z", phi="Ready", mistral="Provisioning")
    dev.pull()
    return remote, dev, source, [a, b]


def test_revisions_applied(world: tuple[Remote, Developer, GitSource, list[str]]) -> None:
    remote, _dev, _src, (a, b) = world
    revs = revisions_applied(git.Repo(remote.bare), "main")
    assert [r.revision for r in revs] == [f"main@sha1:{b}", f"main@sha1:{a}"]
    assert revs[1].summary.startswith("status:")
    assert revs[1].applied_at <= revs[1].last_reported_at


def test_model_history(world: tuple[Remote, Developer, GitSource, list[str]]) -> None:
    remote, _dev, _src, (a, b) = world
    events = model_history(git.Repo(remote.bare), "ml/phi", "main")
    assert [e.state for e in events] == ["Ready", "Ready", "Provisioning"]
    assert events[0].revision == f"main@sha1:{b}" and events[-1].revision == f"main@sha1:{a}"
    with pytest.raises(HistoryError, match="NAMESPACE/NAME"):
        model_history(git.Repo(remote.bare), "phi", "main")


def test_rollback_restores_models_and_leaves_status(world: tuple[Remote, Developer, GitSource, list[str]]) -> None:
    _remote, dev, _src, (a, _b) = world
    status_before = dev.repo.git.ls_tree("-r", "HEAD", "--", "status/")
    head = dev.repo.head.commit.hexsha
    res = rollback(dev.repo, a)
    assert res.branch is None and res.target == a
    assert set(res.changed_paths) == {"models/ml/mistral.yaml", "models/ml/phi.yaml"}
    commit = dev.repo.head.commit
    assert commit.hexsha == res.sha and commit.parents[0].hexsha == head
    assert not (dev.path / "models/ml/mistral.yaml").exists()  # the working tree followed
    assert (dev.path / "models/ml/phi.yaml").read_text() == model_file("phi")
    assert dev.repo.git.ls_tree("-r", "HEAD", "--", "status/") == status_before
    assert dev.repo.git.diff(a, "HEAD", "--", "models", "gitops-kaito.yaml") == ""
    assert f"Gitops-Kaito-Rollback-To: {a}" in commit.message
    with pytest.raises(HistoryError, match="nothing to roll back"):
        rollback(dev.repo, a)


def test_rollback_to_a_branch_leaves_worktree(world: tuple[Remote, Developer, GitSource, list[str]]) -> None:
    remote, dev, _src, (a, _b) = world
    head = dev.repo.head.commit.hexsha
    assert main(["rollback", f"main@sha1:{a}", "--branch", "rollback-phi", "--repo", str(dev.path), "--push"]) == 0
    assert dev.repo.head.commit.hexsha == head and (dev.path / "models/ml/mistral.yaml").exists()
    names = git.Repo(remote.bare).git.ls_tree("-r", "--name-only", "rollback-phi", "--", "models").splitlines()
    assert names == ["models/ml/phi.yaml"]
    assert main(["rollback", a, "--branch", "rollback-phi", "--repo", str(dev.path)]) == 1  # branch exists
    assert main(["rollback", "no-such-rev", "--repo", str(dev.path)]) == 1


def test_history_and_status_cli(world: tuple[Remote, Developer, GitSource, list[str]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    remote, dev, _src, (a, b) = world
    assert main(["history", "--git-url", remote.url, "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["revision"] for d in data] == [f"main@sha1:{b}", f"main@sha1:{a}"]
    assert main(["history", "--repo", str(dev.path), "--model", "ml/phi"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["AT", "STATE", "REVISION", "MESSAGE"]
    assert [ln.split()[1] for ln in out.splitlines()[1:]] == ["Ready", "Ready", "Provisioning"]
    assert main(["status", "--repo", str(dev.path)]) == 0
    out = capsys.readouterr().out
    assert "2 models: 1 Ready, 1 Provisioning" in out and "ml/mistral" in out
    assert main(["status", "--git-url", remote.url, "-o", "yaml"]) == 0
    doc = yaml.safe_load(capsys.readouterr().out)
    assert [m["model"] for m in doc["models"]] == ["ml/mistral", "ml/phi"]
    assert main(["history", "--repo", str(dev.path / "models")]) == 2  # not a repository: one-line error
    assert "not a git repository" in capsys.readouterr().err
