"""`gitops-kaito demo --speed fast` end to end: both models Ready in STATUS.md on the remote, the rollback reconciled.

Everything is read back from the bare remote the demo created, as a user would after it ends.
"""

from __future__ import annotations

import io
from pathlib import Path

import git
import pytest
import yaml

from gitops_kaito.cli import main
from gitops_kaito.cli.demo import CHANGED, MODELS, NAMESPACE, Progress
from gitops_kaito.core.status import parse_model_yaml


def test_demo_fast_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "demo"
    assert main(["demo", "--speed", "fast", "--workdir", str(work), "--timeout", "60"]) == 0
    out = capsys.readouterr().out
    assert "both models are Ready and their status is committed" in out
    assert "Where to look:" in out and str(work / "models") in out and str(work / "kubeconfig.yaml") in out
    assert "\x1b[" not in out, "no terminal redraws when the output is not a TTY"

    bare = git.Repo(work / "models.git")
    status_md = bare.git.show("main:status/STATUS.md")
    for name in MODELS:
        assert f"{NAMESPACE}/{name}" in status_md
    assert "2 models: 2 Ready" in status_md

    # The change and its revert are the last two commits touching models/, and the revert is what was applied.
    subjects = bare.git.log("--format=%H %s", "main", "--", "models").splitlines()
    revert_sha, revert_subject = subjects[0].split(" ", 1)
    change_sha, change_subject = subjects[1].split(" ", 1)
    assert revert_subject.startswith("Revert") and change_subject == f"{CHANGED}: max-model-len 8192"
    report = parse_model_yaml(bare.git.show(f"main:status/{NAMESPACE}/{CHANGED}.yaml"))
    assert report.state == "Ready" and revert_sha in report.revision
    request = yaml.safe_load(bare.git.show(f"main:models/{NAMESPACE}/{CHANGED}.yaml"))
    assert request["spec"]["config"]["max-model-len"] == 4096
    # Status commits were written by the reconciler, not by the demo's user.
    authors = set(bare.git.log("--format=%an", "main", "--", "status").splitlines())
    assert authors == {"gitops-kaito"}
    assert change_sha in out or change_sha[:12] in out


def test_progress_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, live=True)
    progress.show([("phi", "Provisioning", "-", "waiting")])
    progress.show([("phi", "Ready", "Ready", "")])
    text = out.getvalue()
    assert text.count("MODEL") == 2 and "\x1b[2F\x1b[J" in text


def test_progress_prints_only_changes_otherwise() -> None:
    out = io.StringIO()
    progress = Progress(out, live=False)
    for _ in range(3):
        progress.show([("phi", "Provisioning", "-", "waiting")])
    progress.show([("phi", "Ready", "Ready", "")])
    assert out.getvalue().splitlines() == ["  phi: cluster Provisioning, status in git - (waiting)",
                                           "  phi: cluster Ready, status in git Ready"]
