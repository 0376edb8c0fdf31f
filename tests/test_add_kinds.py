"""`gitops-kaito add --tuning` and `add --rag`: a checked TuningJob / RAGDeployment file, never an invalid one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops_kaito.cli import main


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    assert main(["init", str(tmp_path / "repo")]) == 0
    return tmp_path / "repo"


def test_add_tuning_writes_a_checked_request(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["add", "phi-4-mini-instruct", "--tuning", "--method", "lora", "--name", "tune",
                 "--input-url", "https://example.com/train.parquet", "--output-claim", "adapters", "--repo", str(repo)])
    out = capsys.readouterr().out
    assert code == 0 and "Standard_NC24ads_A100_v4" in out and "Workspace/default/tune" in out
    doc = yaml.safe_load((repo / "models/default/tune.yaml").read_text())
    assert doc["kind"] == "TuningJob" and doc["spec"]["output"] == {
        "volume": {"persistentVolumeClaim": {"claimName": "adapters"}}}
    assert main(["validate", "--repo", str(repo)]) == 0


def test_add_refuses_what_kaito_would(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["add", "phi-4-mini-instruct", "--tuning", "--input-url", "http://169.254.169.254/x",
                 "--output-image", "reg.io/a:1", "--push-secret", "s", "--repo", str(repo)])
    assert code == 1 and "link-local" in capsys.readouterr().err
    assert not list((repo / "models").rglob("*tuning*"))  # nothing written


def test_add_rag_bound_to_a_model(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["add", "--rag", "--name", "docs", "--llm-model", "phi-4-mini-instruct", "--context-window", "4096",
                 "--repo", str(repo)])
    assert code == 0 and "RAGEngine/default/docs" in capsys.readouterr().out
    assert main(["validate", "--repo", str(repo)]) == 0  # init's example model is the one it binds to
    assert main(["add", "--rag", "--name", "orphan", "--llm-model", "nope", "--context-window", "10",
                 "--repo", str(repo)]) == 0
    assert main(["validate", "--repo", str(repo)]) == 1
    assert "llm.model 'nope' is not a model of namespace default" in capsys.readouterr().out
