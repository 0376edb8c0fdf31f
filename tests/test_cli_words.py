"""The words of the commands say what happened: a dry run says what it WOULD write, `status` after a local `sync
--repo` says where status is, and no kubeconfig at all says how to point at a cluster (not "in-cluster config")."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_kaito.cli import main
from tests.fixtures_cluster import ClusterTarget, private_emulator

HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ClusterTarget]:
    with private_emulator(tmp_path / "emulator") as t:
        yield t


def repo_with_one_model(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "models" / "ml").mkdir(parents=True)
    (repo / "models" / "ml" / "phi.yaml").write_text(
        f"{HEADER}metadata:\n  name: phi\nspec:\n  model: phi-4-mini-instruct\n  config: {{max-model-len: 4096}}\n")
    return repo


@pytest.mark.cluster
def test_dry_run_rows_say_what_would_be_written(target: ClusterTarget, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    repo = repo_with_one_model(tmp_path)
    assert main(["sync", "--repo", str(repo), *target.cli_args(), "--dry-run"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("ml.phi"))
    assert row.split()[1] == "WouldApply", out
    assert "would write 2 object(s): create ConfigMap/ml/phi-inference-config, create Workspace/ml/phi" in row
    assert "written" not in row.replace("would write", ""), "a dry run must not say it wrote anything"

    capsys.readouterr()
    assert main(["sync", "--repo", str(repo), *target.cli_args(), "--dry-run", "-o", "json"]) == 0
    assert '"state": "WouldApply"' in capsys.readouterr().out

    assert main(["sync", "--repo", str(repo), *target.cli_args()]) == 0  # for real now
    captured = capsys.readouterr()
    row = next(line for line in captured.out.splitlines() if line.startswith("ml.phi"))
    assert row.split()[1] == "Applied" and "2 object(s) written" in row
    assert "status: not written (a local --repo pass writes no status files" in captured.err

    phi = repo / "models" / "ml" / "phi.yaml"
    phi.write_text(phi.read_text() + "  suspend: true\n")
    assert main(["sync", "--repo", str(repo), *target.cli_args(), "--dry-run"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ml.phi"))
    assert row.split()[1] == "Suspended" and "its objects would be removed" in row, row

    (repo / "models" / "ml" / "phi.yaml").unlink()
    (repo / "models" / "ml" / "keep.yaml").write_text(f"{HEADER}metadata:\n  name: keep\nspec:\n"
                                                      "  model: phi-4-mini-instruct\n")
    assert main(["sync", "--repo", str(repo), *target.cli_args(), "--dry-run", "--allow-mass-prune"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("ml.phi"))
    assert row.split()[1] == "WouldPrune" and "would prune Workspace/ml/phi" in row, row


def test_status_after_a_local_sync_says_where_status_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = repo_with_one_model(tmp_path)
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "phi"],
                   check=True)
    assert main(["status", "--repo", str(repo)]) == 0
    captured = capsys.readouterr()
    assert "No resources found" in captured.out
    assert f"no status files in {repo}, status/" in captured.err
    assert "`gitops-kaito run`" in captured.err and "sync --git-url" in captured.err
    assert "a local `sync --repo DIR` writes none" in captured.err


@pytest.mark.parametrize("extra", [[], ["--kubeconfig", "nowhere/kubeconfig"]])
def test_without_a_kubeconfig_the_error_says_how_to_point_at_a_cluster(
        tmp_path: Path, extra: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repo = repo_with_one_model(tmp_path)
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.kube/config either
    monkeypatch.chdir(tmp_path)
    assert main(["sync", "--repo", str(repo), *extra]) == 2
    err = capsys.readouterr().err
    assert "in-cluster" not in err, err
    for way in ("--kubeconfig FILE", "KUBECONFIG=FILE", "gitops-kaito sandbox --kubeconfig-out FILE"):
        assert way in err, err
    if extra:
        assert "kubeconfig nowhere/kubeconfig (from --kubeconfig) does not exist" in err
    else:
        assert "no cluster to talk to" in err
