"""`gitops-kaito init --github-actions`: the pull-request plan workflow, its plan step run for real with bash against a
pull request made of real commits (a bare remote, a clone as actions/checkout makes it, origin/<base> present)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest
import yaml

from gitops_kaito.cli import main
from gitops_kaito.cli.init import PLAN_WORKFLOW_PATH
from tests.gitfixtures import DEV_ENV

BASH = shutil.which("bash")
CLI_DIR = Path(sys.executable).parent  # where pip put the gitops-kaito console script beside this Python


def step(workflow: Path, name: str, base: str = "main") -> tuple[str, dict[str, str]]:
    """The run script of the named step (the base branch filled in) and its env (expressions filled with test values)."""
    doc = yaml.safe_load(workflow.read_text())
    [found] = [s for s in doc["jobs"]["plan"]["steps"] if s.get("name") == name]
    values = {"${{ github.base_ref }}": base, "${{ github.token }}": "token",
              "${{ github.event.pull_request.number }}": "42"}
    env = {k: str(v) for k, v in (found.get("env") or {}).items()}
    for expr, value in values.items():
        env = {k: v.replace(expr, value) for k, v in env.items()}
    script = str(found["run"])
    for expr, value in values.items():
        script = script.replace(expr, value)
    return script, env


def run_step(workflow: Path, name: str, cwd: Path, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    # GitHub's `bash` shell: bash --noprofile --norc -eo pipefail {0}
    script, env = step(workflow, name)
    search = f"{path}{os.pathsep}" if path else ""
    env = {**os.environ, **env, "PATH": f"{search}{CLI_DIR}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([str(BASH), "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def fake_gh(tmp: Path) -> tuple[Path, Path]:
    """A `gh` that records its arguments, one call per line: the only stand-in, for GitHub's own CLI."""
    folder, log = tmp / "fake-bin", tmp / "gh-calls.txt"
    folder.mkdir()
    (folder / "gh").write_text(f'#!/bin/sh\necho "$GH_TOKEN $*" >> {log}\n')
    (folder / "gh").chmod(0o755)
    return folder, log


@pytest.fixture
def pull_request(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, git.Repo]:
    """main holds `init --github-actions`; the branch `add-qwen` adds a model; `checkout` is the CI checkout."""
    if BASH is None or not (CLI_DIR / "gitops-kaito").exists():
        pytest.skip("needs bash and the gitops-kaito console script beside this Python (pip install -e .)")
    bare = tmp_path / "models.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    work = tmp_path / "work"
    assert main(["init", str(work), "--github-actions"]) == 0
    dev = git.Repo.init(work, initial_branch="main")
    dev.git.add("-A")
    with dev.git.custom_environment(**DEV_ENV):
        dev.git.commit("-q", "-m", "new model repository")
        dev.create_remote("origin", bare.as_uri()).push("main")
        dev.git.checkout("-q", "-b", "add-qwen")
        assert main(["add", "qwen2.5-coder-7b-instruct", "--repo", str(work), "--name", "qwen"]) == 0
        dev.git.add("-A")
        dev.git.commit("-q", "-m", "add qwen")
    dev.remote("origin").push("add-qwen")
    capsys.readouterr()
    checkout = git.Repo.clone_from(bare.as_uri(), tmp_path / "checkout", branch="add-qwen")
    return Path(checkout.working_dir), dev


def test_init_writes_the_workflow_only_when_asked(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / PLAN_WORKFLOW_PATH).exists()
    assert main(["init", str(tmp_path / "ci"), "--github-actions"]) == 0
    doc = yaml.safe_load((tmp_path / "ci" / PLAN_WORKFLOW_PATH).read_text())
    assert doc["permissions"] == {"contents": "read", "pull-requests": "write"}
    assert any(s.get("with", {}).get("fetch-depth") == 0 for s in doc["jobs"]["plan"]["steps"])


def test_the_plan_step_writes_the_comment_for_a_pull_request_that_adds_a_model(
        pull_request: tuple[Path, git.Repo]) -> None:
    checkout, _ = pull_request
    done = run_step(checkout / PLAN_WORKFLOW_PATH, "plan", checkout)
    assert done.returncode == 0, done.stderr
    comment = (checkout / "plan" / "comment-1.md").read_text()
    [row] = [line for line in comment.splitlines() if line.startswith("| `default.qwen`")]
    assert "create" in row and "Standard_NV36ads_A10_v5" in row and "$3.20" in row, row
    assert "Change in cost per hour: **+$3.20/h**" in comment


def test_the_plan_step_fails_the_check_on_a_broken_request(pull_request: tuple[Path, git.Repo]) -> None:
    checkout, _ = pull_request
    broken = checkout / "models" / "default" / "qwen.yaml"
    broken.write_text(broken.read_text().replace("model: qwen2.5-coder-7b-instruct", "model: qwen-does-not-exist"))
    done = run_step(checkout / PLAN_WORKFLOW_PATH, "plan", checkout)
    assert done.returncode != 0
    assert "models/default/qwen.yaml" in done.stdout + done.stderr


def test_a_big_plan_is_posted_as_several_comments_the_first_one_edited_in_place(
        pull_request: tuple[Path, git.Repo], tmp_path: Path) -> None:
    checkout, _ = pull_request
    template = (checkout / "models" / "default" / "qwen.yaml").read_text()
    for i in range(80):  # ~1,200 characters of diff each: more than one 65,000-character comment
        (checkout / "models" / "default" / f"qwen-{i}.yaml").write_text(template.replace("name: qwen", f"name: qwen-{i}"))
    workflow = checkout / PLAN_WORKFLOW_PATH
    assert run_step(workflow, "plan", checkout).returncode == 0
    comments = sorted((checkout / "plan").glob("comment-*.md"))
    assert len(comments) >= 2 and all(len(c.read_text()) <= 65_000 for c in comments)
    folder, log = fake_gh(tmp_path)
    done = run_step(workflow, "comment", checkout, path=folder)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "token pr comment 42 --edit-last --create-if-none --body-file plan/comment-1.md"
    assert calls[1:] == [f"token pr comment 42 --body-file plan/comment-{i}.md" for i in range(2, len(comments) + 1)]


def test_the_readme_shows_the_workflow_init_writes() -> None:
    from gitops_kaito.cli.init import PLAN_WORKFLOW

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert PLAN_WORKFLOW in readme
