"""Real git repositories for tests: a bare repository on disk as the remote, clones as developers.

Every helper drives the git binary through GitPython; nothing is faked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import git
import pytest

DEV_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
           "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}


@dataclass
class Remote:
    bare: Path

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def log(self, branch: str = "main") -> list[str]:
        return git.Repo(self.bare).git.log("--format=%H %s", branch).splitlines()

    def sha(self, branch: str = "main") -> str:
        return git.Repo(self.bare).git.rev_parse(branch)

    def show(self, path: str, branch: str = "main") -> str:
        return git.Repo(self.bare).git.show(f"{branch}:{path}")


class Developer:
    """A clone that writes files, commits and pushes like a person would."""

    def __init__(self, remote: Remote, where: Path, branch: str = "main") -> None:
        self.repo = git.Repo.clone_from(remote.url, where)
        self.path = where
        self.branch = branch
        if not self.repo.head.is_valid():
            self.repo.git.checkout("--orphan", branch)

    def write(self, rel: str, content: str) -> None:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        self.repo.git.add(rel)

    def remove(self, rel: str) -> None:
        self.repo.git.rm("-q", rel)

    def commit(self, message: str, push: bool = True) -> str:
        with self.repo.git.custom_environment(**DEV_ENV):
            self.repo.git.commit("-q", "-m", message)
        if push:
            self.push()
        return self.repo.head.commit.hexsha

    def push(self) -> None:
        """Push; when a running daemon's status commit got there first, rebase on it and push again (as people do)."""
        for attempt in range(5):
            try:
                self.repo.git.push("-q", "origin", f"HEAD:refs/heads/{self.branch}")
                return
            except git.GitCommandError as err:
                if attempt == 4 or "rejected" not in str(err):
                    raise
                self.pull()

    def pull(self) -> None:
        self.repo.git.pull("-q", "--rebase", "origin", self.branch)


def make_remote(tmp: Path, name: str = "models.git") -> Remote:
    bare = tmp / name
    git.Repo.init(bare, bare=True, initial_branch="main")
    return Remote(bare)


def model_file(name: str, model: str = "phi-4-mini-instruct", namespace: str = "ml") -> str:
    return (f"apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: {name}\n"
            f"  namespace: {namespace}\nspec:\n  model: {model}\n")


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    """A bare repository on disk, the remote every test pushes to and fetches from."""
    return make_remote(tmp_path)


@pytest.fixture
def dev(remote: Remote, tmp_path: Path) -> Developer:
    """A developer's clone with one model file committed and pushed."""
    d = Developer(remote, tmp_path / "dev")
    d.write("models/ml/a.yaml", "a: 1\n")
    d.commit("add a")
    return d
