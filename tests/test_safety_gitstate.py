"""Status write-back never changes desired state, branch names are ones git accepts, and no command ends in a
traceback: hostile settings, repositories and arguments give one clear error and a documented exit code."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import git
import pytest

from gitops_kaito.adapters.gitsource import GitSource, SourceSpec
from gitops_kaito.adapters.writeback import WritebackError, write_status
from gitops_kaito.cli import main
from gitops_kaito.model.gitrefs import branch_problem
from gitops_kaito.repo.config import load_config, status_path_problem
from gitops_kaito.repo.yamlsource import SourceError
from tests.gitfixtures import Developer, Remote, make_remote, model_file

CHECKOUT = Path(__file__).resolve().parent.parent
REV = "main@sha1:" + "2" * 40
CONFIG = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n"
NAMES = ["main", "feature/x", "a..b", "a b", "a~b", "a^b", "a:b", "a?b", "a*b", "a[b", "a\\b", "-x", "@", "HEAD",
         "a@{b", "a@b", "a.", "a.lock", "a.lock/b", "x/.hidden", ".x", "/a", "a/", "a//b", "a\tb", "a\nb", "a\x7fb",
         "ünï", "refs/heads/x", "a/b.c", "a.b", "@{-1}", "a/./b", "a/../b", "..", ".", "x.lock.y", "HEAD/x", "x/HEAD",
         "a@", "a}b", "a{b", "a!b", "a#b", "a'b", 'a"b', "a;b", "a|b", "a<b", "a>b", "a,b", "a=b", "a+b", "-",
         "a-", "0", "a/b/c/d", "status", "gitops-kaito/status"]


def test_branch_rules_are_gits_own(tmp_path: Path) -> None:
    """Our offline check against `git check-ref-format --branch` itself, name by name."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    for name in NAMES:
        if name.startswith("@{"):
            continue  # --branch expands @{-N} to a previous branch of the repository it runs in
        accepted = subprocess.run(["git", "check-ref-format", "--branch", name], cwd=tmp_path,
                                  capture_output=True, check=False).returncode == 0
        assert (branch_problem(name) is None) == accepted, (name, branch_problem(name))


@pytest.mark.parametrize(("path", "why"), [
    ("gitops-kaito.yaml", "is gitops-kaito.yaml"), ("models", "is models"), ("models/status", "is inside models/"),
    ("templates/x", "is inside templates/"), (".github/status", "hidden folder"), (".git", "hidden folder"),
    ("a/./b", "plain folder path"), ("team/../models", "plain folder path"), ("x/.hidden", "hidden folder"),
])
def test_a_status_path_into_desired_state_is_refused_with_its_line(path: str, why: str, tmp_path: Path) -> None:
    assert why in (status_path_problem(path) or "")
    (tmp_path / "gitops-kaito.yaml").write_text(f"{CONFIG}status:\n  path: {path!r}\n")
    with pytest.raises(SourceError) as caught:
        load_config(tmp_path)
    assert (caught.value.path, caught.value.line) == ("gitops-kaito.yaml", 4), str(caught.value)


def test_a_status_path_over_paths_or_a_file_is_refused(tmp_path: Path) -> None:
    assert "is inside models/" in (status_path_problem("models/team-a/status", ("models/team-a",)) or "")
    assert status_path_problem("status/team-a") is None and status_path_problem("ops/status") is None
    (tmp_path / "README.md").write_text("docs\n")
    (tmp_path / "gitops-kaito.yaml").write_text(f"{CONFIG}status:\n  path: README.md\n")
    with pytest.raises(SourceError, match="is a file or symlink in the repository") as caught:
        load_config(tmp_path)
    assert caught.value.line == 4


@pytest.mark.parametrize("branch", ["a..b", "has space", "-D", "x.lock", "HEAD", "a:b", "ends/"])
def test_a_status_branch_git_refuses_is_refused_by_validate(branch: str, tmp_path: Path) -> None:
    (tmp_path / "gitops-kaito.yaml").write_text(f"{CONFIG}status:\n  branch: {branch!r}\n")
    with pytest.raises(SourceError) as caught:
        load_config(tmp_path)
    assert caught.value.line == 4 and "branch" in str(caught.value)


# -- the write-back itself, against a real remote ---------------------------------------------------------------

@pytest.fixture
def source(remote: Remote, dev: Developer, tmp_path: Path) -> GitSource:
    dev.write("gitops-kaito.yaml", CONFIG)
    dev.write("models/ml/phi.yaml", model_file("phi"))
    dev.write("docs/README.md", "how we run models\n")
    dev.write("docs/ml/notes.txt", "keep me\n")
    dev.commit("desired state and docs")
    src = GitSource(SourceSpec(remote.url), tmp_path / "cache")
    src.fetch()
    return src


def fixed(files: Mapping[str, str]) -> object:
    return lambda previous: files


def tree(remote: Remote) -> dict[str, str]:
    commit = git.Repo(remote.bare).commit("main")
    return {b.path: b.hexsha for b in commit.tree.traverse() if b.type == "blob"}


@pytest.mark.parametrize("folder", ["gitops-kaito.yaml", "models", "models/ml", "templates", "docs/README.md"])
def test_a_status_commit_never_deletes_or_rewrites_desired_state(source: GitSource, remote: Remote,
                                                                 folder: str) -> None:
    """Fault: a status path the config check would refuse reaches the write-back anyway (an older config, a flag).
    Checks: the write is refused with WritebackError and the branch is exactly as it was."""
    before, tip = tree(remote), remote.sha()
    with pytest.raises(WritebackError):
        write_status(source, "main", fixed({"STATUS.md": "# s\n", "ml/phi.yaml": "state: Ready\n"}),  # type: ignore[arg-type]
                     REV, status_path=folder)
    assert remote.sha() == tip and tree(remote) == before


def test_a_status_folder_shared_with_other_files_keeps_them(source: GitSource, remote: Remote) -> None:
    """status.path pointing at a folder that holds other files: the status commit adds and removes status files
    only; README.md and notes stay."""
    write_status(source, "main", fixed({"STATUS.md": "# s\n", "ml/phi.yaml": "state: Ready\n"}),  # type: ignore[arg-type]
                 REV, status_path="docs")
    write_status(source, "main", fixed({"STATUS.md": "# none\n"}), REV, status_path="docs")  # type: ignore[arg-type]
    files = tree(remote)
    assert "docs/README.md" in files and "docs/ml/notes.txt" in files
    assert "docs/ml/phi.yaml" not in files and "docs/STATUS.md" in files


# -- no traceback from any command ------------------------------------------------------------------------------

def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(CHECKOUT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "gitops_kaito", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A developer clone with hand-edited status files; the commands below only read it (each one is refused or
    reports), so the module shares one."""
    tmp = tmp_path_factory.mktemp("gitstate")
    dev = Developer(make_remote(tmp), tmp / "dev")
    dev.write("models/ml/a.yaml", "a: 1\n")
    dev.commit("add a")
    dev.write("models/ml/phi.yaml", model_file("phi"))
    dev.commit("phi")
    dev.write("status/ml/phi.yaml", "model: ml/phi\nstate: Ready\nconditions: 7\n")  # the wrong shape
    dev.write("status/ml/bomb.yaml", "model: ml/bomb\na: &a [x, x, x, x, x, x, x, x, x]\n"
                                     "b: [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n")
    dev.write("status/ml/deep.yaml", "model: ml/deep\nx: " + "[" * 3000 + "]" * 3000 + "\n")
    dev.commit("status: hand-edited")
    return dev.path


@pytest.mark.parametrize(("args", "code", "says"), [
    (["rollback", "HEAD~1", "--branch", "a..b"], 2, "not a branch name git accepts"),
    (["rollback", "HEAD~1", "--branch=-D"], 2, "not a branch name git accepts"),
    (["rollback", "HEAD~1", "--branch", ""], 2, "not a branch name git accepts"),
    (["rollback", "no-such-rev"], 1, "unknown revision"),
    (["rollback", "--", "-D"], 2, "is not a revision"),
    (["status"], 0, "warning"),
    (["status", "-o", "json"], 0, "warning"),
    (["status", "--branch", "no-such-branch"], 2, "not found"),
    (["history", "--model", "ml/phi"], 0, ""),
    (["history", "--model", "ml/bomb"], 0, ""),
    (["history", "--model", "../x"], 1, "NAMESPACE/NAME"),
    (["history", "--branch", "no-such-branch"], 1, "cannot read history"),
    (["sync", "--git-url", "file:///nowhere", "--status-branch", "a b"], 2, "not a branch name git accepts"),
    (["sync", "--git-url", "file:///nowhere", "--branch", "x.lock"], 2, "not a branch name git accepts"),
    (["run", "--git-url", "file:///nowhere", "--branch", "a..b"], 2, "not a branch name git accepts"),
    (["validate", "--repo", "models/ml/phi.yaml"], 2, "not a directory"),
])
def test_no_command_ends_in_a_traceback(clone: Path, args: list[str], code: int, says: str,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Each hostile command line in-process (an exception escaping main fails the test as a traceback would)."""
    monkeypatch.chdir(clone)
    returned = main(args)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out, out.err
    assert returned == code, (returned, out.out, out.err)
    assert says in out.out + out.err


@pytest.mark.parametrize(("args", "code"), [(["rollback", "HEAD~1", "--branch=-D"], 2), (["status"], 0)])
def test_a_real_process_prints_no_traceback(clone: Path, args: list[str], code: int) -> None:
    done = _cli(args, clone)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)


BOMB = ("model: ml/phi\nstate: Ready\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n")


@pytest.mark.cluster
@pytest.mark.emulator_only
@pytest.mark.parametrize("hostile", [BOMB, "model: ml/phi\nx: " + "[" * 50_000 + "]" * 50_000 + "\n",
                                     "model: ml/phi\nstate: Ready\n" + "#" * 400_000 + "\n"])
def test_a_hostile_status_file_pushed_to_the_branch_is_rewritten_not_expanded(tmp_path: Path, hostile: str) -> None:
    """Fault: someone with push access replaces a model's status file with an alias bomb (10^5 nodes from a few
    hundred bytes), nesting past any stack, or a file over the limit. Checks: the next git pass completes, and the
    file is rewritten as a status file of that model."""
    from tests.faultkit import GitWorld

    world = GitWorld(tmp_path)
    try:
        world.commit("add phi", phi="phi-4-mini-instruct")
        assert world.run().writeback is not None
        world.dev.pull()
        world.dev.write("status/ml/phi.yaml", hostile)
        world.dev.commit("status: by hand")
        done = world.run(now="2025-01-01T00:01:00Z")
        assert done.writeback is not None and done.writeback.committed
        text = world.remote.show("status/ml/phi.yaml")
        assert "&a" not in text and len(text) < 10_000 and "model: ml/phi" in text
    finally:
        world.close()
