"""Tests for `gitops-kaito init` and `gitops-kaito add`: valid files, refusals, and the printed plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gitops_kaito.cli import main
from gitops_kaito.cli.add import dns_name
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.repo.loader import load_repository


@pytest.fixture
def repo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    root = tmp_path / "repo"
    assert main(["init", str(root)]) == 0
    capsys.readouterr()
    return root


def test_init_creates_a_valid_repository(repo: Path) -> None:
    assert sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()) == [
        ".gitignore", "README.md", "gitops-kaito.yaml", "models/default/phi-4-mini-instruct.yaml"]
    load = load_repository(repo)
    assert load.errors == () and load.config_ok
    (model,) = load.models
    assert model.preset.name == "phi-4-mini-instruct"
    assert model.sku is not None and model.request.instance_type == model.sku.name  # the choice is pinned
    assert "gitops-kaito validate" in (repo / "README.md").read_text()


def test_init_refuses_a_non_empty_folder_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["init", str(tmp_path)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert not (tmp_path / "gitops-kaito.yaml").exists()
    assert main(["init", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "notes.txt").read_text() == "mine"  # --force never deletes what it did not write
    assert load_repository(tmp_path).errors == ()


def test_add_writes_a_valid_request_and_prints_the_plan(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["add", "phi-4", "--namespace", "ml", "--repo", str(repo)]) == 0
    out = capsys.readouterr().out
    written = repo / "models" / "ml" / "phi-4.yaml"
    document = yaml.safe_load(written.read_text())
    assert document["metadata"] == {"name": "phi-4", "namespace": "ml"}
    catalog = load_catalog()
    expected = catalog.choose_sku(catalog.preset("phi-4"), ("azure",))
    assert document["spec"] == {"model": "phi-4", "instanceType": expected.sku.name}
    load = load_repository(repo)
    assert load.errors == () and {m.request.id for m in load.models} == {"default.phi-4-mini-instruct", "ml.phi-4"}
    assert "created models/ml/phi-4.yaml" in out
    assert expected.sku.name in out and f"nodes         {expected.nodes}" in out
    assert "Workspace/ml/phi-4" in out


def test_add_refuses_to_overwrite(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = repo / "models" / "default" / "phi-4-mini-instruct.yaml"
    before = target.read_text()
    assert main(["add", "phi-4-mini-instruct", "--repo", str(repo)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == before


def test_add_gated_model_names_a_secret(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["add", "llama-3.1-8b-instruct", "--name", "llama", "--repo", str(repo)]) == 0
    text = (repo / "models" / "default" / "llama.yaml").read_text()
    assert yaml.safe_load(text)["spec"]["modelAccessSecret"] == "hf-token"
    assert "create secret generic hf-token" in text
    assert load_repository(repo).errors == ()


@pytest.mark.parametrize(("argv", "needle"), [
    (["add", "phi-4-mini-instrct"], "did you mean 'phi-4-mini-instruct'"),
    (["add", "falcon-7b"], "removed"),
    (["add", "llama-3.3-70b-instruct", "--instance-type", "Standard_NV36ads_A10_v5"], "too small"),
    (["add", "phi-4", "--name", "Bad_Name"], "DNS-1123"),
    (["add", "phi-4", "--instance-type", "Standard_NC24ads_A100_v4", "--nodes", "0"], "spec.nodes"),
])
def test_add_rejects_bad_requests_without_writing(repo: Path, capsys: pytest.CaptureFixture[str],
                                                   argv: list[str], needle: str) -> None:
    before = sorted(repo.rglob("*"))
    assert main([*argv, "--repo", str(repo)]) == 1
    assert needle in capsys.readouterr().err
    assert sorted(repo.rglob("*")) == before


def test_add_with_explicit_sku_nodes_and_mode(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["add", "phi-4-mini-instruct", "--name", "phi-nc", "--instance-type", "standard_nc24ads_a100_v4",
            "--nodes", "2", "--provisioning", "nodeclaim", "--repo", str(repo)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    spec = yaml.safe_load((repo / "models" / "default" / "phi-nc.yaml").read_text())["spec"]
    assert spec == {"model": "phi-4-mini-instruct", "instanceType": "Standard_NC24ads_A100_v4", "nodes": 2,
                    "provisioning": "nodeclaim"}
    assert out.count("NodeClaim/") == 2 and "2 GPUs" in out


def test_dns_name() -> None:
    assert dns_name("phi-4-mini-instruct") == "phi-4-mini-instruct"
    assert dns_name("Qwen/Qwen3.5-9B") == "qwen3-5-9b"
    assert dns_name("x" * 80 + "-y") == "x" * 63
