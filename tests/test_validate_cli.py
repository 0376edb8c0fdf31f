"""Tests for `gitops-kaito validate`: path:line messages, summary, JSON output and exit codes 0/1/2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gitops_kaito.cli import main

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.yaml").is_file())
GOOD = ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: phi\n"
        "spec:\n  model: phi-4-mini-instruct\n")


def make_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_valid_repo_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path, {"models/ml/phi.yaml": GOOD})
    assert main(["validate", "--repo", str(repo)]) == 0
    assert capsys.readouterr().out.strip() == "1 model(s) valid"


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_exits_1_with_path_and_line(case: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / case
    shutil.copytree(CORPUS / case, repo, ignore=shutil.ignore_patterns("expect.yaml"))
    assert main(["validate", "--repo", str(repo)]) == 1
    captured = capsys.readouterr()
    spec = yaml.safe_load((CORPUS / case / "expect.yaml").read_text())
    for want in spec.get("errors", [spec]):
        assert f"{want['path']}:{want['line']}: " in captured.out
    assert "Traceback" not in captured.out + captured.err
    assert captured.out.rstrip().splitlines()[-1].startswith(f"{len(spec.get('errors', [spec]))} error(s)")


def test_json_output_lists_models_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path, {"models/ml/phi.yaml": GOOD,
                                "models/ml/bad.yaml": GOOD.replace("name: phi", "name: bad") + "  nodes: x\n"})
    assert main(["validate", "--repo", str(repo), "-o", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is False
    assert [m["id"] for m in report["models"]] == ["ml.phi"]
    assert report["models"][0]["instanceType"] and report["models"][0]["nodes"] >= 1
    assert report["errors"] == [{"path": "models/ml/bad.yaml", "line": 7, "model": "ml.bad",
                                 "message": "spec.nodes must be an integer, got a string 'x'"}]


def test_missing_repo_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--repo", str(tmp_path / "absent")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_empty_repo_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--repo", str(tmp_path)]) == 0
    assert "no model requests found" in capsys.readouterr().out


def test_real_process_exit_code_and_no_traceback(tmp_path: Path) -> None:
    repo = tmp_path / "alias-bomb"
    shutil.copytree(CORPUS / "alias-bomb", repo, ignore=shutil.ignore_patterns("expect.yaml"))
    done = subprocess.run([sys.executable, "-m", "gitops_kaito", "validate", "--repo", str(repo)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "models/ml/bomb.yaml:9: YAML aliases" in done.stdout
    assert "Traceback" not in done.stderr


def test_broken_template_override_fails_validation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = make_repo(tmp_path, {"models/ml/phi.yaml": GOOD,
                                "templates/workspace-v1beta1.yaml": "apiVersion: kaito.sh/v1beta1\nkind: [\n"})
    assert main(["validate", "--repo", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "templates/workspace-v1beta1.yaml:" in out and "error(s)" in out


def test_every_config_error_is_reported_in_one_run_with_its_line(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Four mistakes in gitops-kaito.yaml: all four come out of one `validate`, each at its own line, in line order
    (before, only the first was shown and the others waited for the next run)."""
    config = ("apiVersion: gitops.kaito.sh/v1alpha1\n"   # 1
              "kind: Config\n"                            # 2
              "gitUrl: https://elsewhere.example/r.git\n"  # 3: never from the repository
              "replacePolicy: sometimes\n"                # 4: not an allowed value
              "prices:\n"                                 # 5
              "  Standard_NO_SUCH_SKU: 1.0\n"             # 6: unknown SKU
              "daemon:\n"                                 # 7
              "  interval: 30s\n"                         # 8
              "  kubeconfig: /etc/other\n"                # 9: never from the repository
              "defaults: {provisionning: kaito}\n")       # 10: unknown field
    repo = make_repo(tmp_path, {"gitops-kaito.yaml": config})
    assert main(["validate", "--repo", str(repo)]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("gitops-kaito.yaml:")]
    assert [int(line.split(":")[1]) for line in lines] == [3, 4, 6, 9, 10], out
    assert "gitUrl can never come from the repository: it is how the repository is found" in lines[0]
    assert "GITOPS_KAITO_GIT_URL" in lines[0] and "unknown field 'gitUrl'" not in out
    assert "replacePolicy" in lines[1] and "Standard_NO_SUCH_SKU" in lines[2]
    assert "daemon.kubeconfig can never come from the repository" in lines[3]
    assert "provisionning" in lines[4] and "did you mean 'provisioning'" in lines[4]
    assert "5 error(s) in 1 file(s)" in out


def test_azure_target_in_the_repository_is_only_a_pin(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    config = ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n"
              "azure:\n  subscriptionId: victim-sub\n  clusterName: prod-aks\n  location: westeurope\n")
    repo = make_repo(tmp_path, {"gitops-kaito.yaml": config, "models/ml/phi.yaml": GOOD})
    for name in ("SUBSCRIPTION_ID", "RESOURCE_GROUP", "CLUSTER_NAME", "ARM_ENDPOINT"):
        monkeypatch.delenv(f"GITOPS_KAITO_AZURE_{name}", raising=False)
    assert main(["validate", "--repo", str(repo)]) == 0  # nothing to compare with: each pin gets a note
    out = capsys.readouterr().out
    assert ("gitops-kaito.yaml:4: note: azure.subscriptionId is only checked against the daemon's "
            "--azure-subscription-id / GITOPS_KAITO_AZURE_SUBSCRIPTION_ID, never used in its place") in out
    assert "gitops-kaito.yaml:5: note: azure.clusterName" in out and "location" not in out

    monkeypatch.setenv("GITOPS_KAITO_AZURE_SUBSCRIPTION_ID", "our-sub")
    monkeypatch.setenv("GITOPS_KAITO_AZURE_CLUSTER_NAME", "prod-aks")
    assert main(["validate", "--repo", str(repo)]) == 1  # this environment's target differs: the daemon would refuse
    out = capsys.readouterr().out
    assert ("gitops-kaito.yaml:4: azure.subscriptionId 'victim-sub' is not the daemon's (--azure-subscription-id / "
            "GITOPS_KAITO_AZURE_SUBSCRIPTION_ID is 'our-sub')") in out
    assert "azure.clusterName 'prod-aks' is not" not in out


AKS_MODEL = ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: phi\nspec:\n"
             "  model: phi-4-mini-instruct\n  provisioning: aks\n  instanceType: Standard_NC24ads_A100_v4\n")


def test_aks_without_the_azure_target_is_invalid_at_the_line_that_asks_for_aks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SUBSCRIPTION_ID", "RESOURCE_GROUP", "CLUSTER_NAME"):
        monkeypatch.delenv(f"GITOPS_KAITO_AZURE_{name}", raising=False)
    repo = make_repo(tmp_path / "a", {"models/ml/phi.yaml": AKS_MODEL})
    assert main(["validate", "--repo", str(repo)]) == 1
    out = capsys.readouterr().out
    assert "models/ml/phi.yaml:7: ml.phi: provisioning: aks: aks provisioning needs subscription_id, " \
           "resource_group, cluster_name" in out and "GITOPS_KAITO_AZURE_SUBSCRIPTION_ID" in out

    by_default = make_repo(tmp_path / "b", {
        "gitops-kaito.yaml": "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndefaults:\n  provisioning: aks\n",
        "models/ml/phi.yaml": AKS_MODEL.replace("  provisioning: aks\n", "")})
    assert main(["validate", "--repo", str(by_default)]) == 1
    assert "gitops-kaito.yaml:4: ml.phi: provisioning: aks: " in capsys.readouterr().out

    monkeypatch.setenv("GITOPS_KAITO_AZURE_SUBSCRIPTION_ID", "00000000-0000-0000-0000-000000000000")
    monkeypatch.setenv("GITOPS_KAITO_AZURE_RESOURCE_GROUP", "rg")
    assert main(["validate", "--repo", str(repo), "--azure-cluster-name", "aks-1"]) == 0
    assert "1 model(s) valid" in capsys.readouterr().out
