"""Tests for loading a model repository: the broken-request corpus, isolation of bad files, and resolution."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import RepoLoad

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.yaml").is_file())
HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"


def model_text(name: str, spec: str = "  model: phi-4-mini-instruct\n", meta: str = "") -> str:
    return f"{HEADER}metadata:\n  name: {name}\n{meta}spec:\n{spec}"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def expectations(case: str) -> list[dict[str, Any]]:
    spec = yaml.safe_load((CORPUS / case / "expect.yaml").read_text())
    return list(spec["errors"]) if "errors" in spec else [spec]


def copy_case(case: str, dest: Path) -> Path:
    shutil.copytree(CORPUS / case, dest / case, ignore=shutil.ignore_patterns("expect.yaml"))
    return dest / case


def assert_errors(load: RepoLoad, expected: list[dict[str, Any]]) -> None:
    got = [(e.path, e.line, e.message) for e in load.errors]
    assert len(got) == len(expected), got
    for error, want in zip(sorted(load.errors, key=lambda e: e.path), sorted(expected, key=lambda w: w["path"]),
                           strict=True):
        assert error.path == want["path"], got
        assert error.line == want["line"], got
        for needle in want["contains"]:
            assert needle in error.message, got


@pytest.mark.parametrize("case", CASES)
def test_corpus_case_gives_one_located_error(case: str, tmp_path: Path) -> None:
    load = load_repository(copy_case(case, tmp_path))
    assert_errors(load, expectations(case))
    assert load.models == ()
    spares = yaml.safe_load((CORPUS / case / "expect.yaml").read_text()).get("spares", "")
    # `spares: every model`: the broken path could hold any model, so the pass prunes nothing at all.
    assert load.config_ok == (spares != "every model")


def test_corpus_covers_the_issue_list() -> None:
    wanted = {"bad-yaml-syntax", "unknown-field", "bad-name-uppercase", "bad-name-too-long", "path-trick-name",
              "unknown-preset", "removed-preset", "deprecated-preset", "sku-too-small", "too-many-adapters",
              "wrong-namespace", "duplicates", "alias-bomb", "tabs", "top-level-list", "wrong-types"}
    assert wanted <= set(CASES)


def test_huge_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "models/ml/huge.yaml", model_text("huge") + "#" * 300_000 + "\n")
    load = load_repository(tmp_path)
    assert [(e.path, e.line) for e in load.errors] == [("models/ml/huge.yaml", 1)]
    assert "too large" in load.errors[0].message
    assert "ml.huge" in load.discovered_ids


def test_symlink_escaping_the_repo_is_refused(tmp_path: Path) -> None:
    outside = write(tmp_path, "outside/secret.yaml", model_text("phi"))
    repo = tmp_path / "repo"
    (repo / "models" / "ml").mkdir(parents=True)
    (repo / "models" / "ml" / "phi.yaml").symlink_to(outside)
    (repo / "models" / "prod").symlink_to(outside.parent, target_is_directory=True)
    load = load_repository(repo)
    assert sorted((e.path, e.line) for e in load.errors) == [("models/ml/phi.yaml", 1), ("models/prod", None)]
    assert all("outside the repository" in e.message for e in load.errors)
    assert load.models == ()
    assert "ml.phi" in load.discovered_ids  # a refused file must not read as a deleted model


def test_symlink_inside_the_repo_is_read(tmp_path: Path) -> None:
    write(tmp_path, "shared/phi.yaml", model_text("phi"))
    (tmp_path / "models" / "ml").mkdir(parents=True)
    (tmp_path / "models" / "ml" / "phi.yaml").symlink_to(tmp_path / "shared" / "phi.yaml")
    load = load_repository(tmp_path)
    assert load.errors == ()
    assert [m.request.id for m in load.models] == ["ml.phi"]


def test_one_bad_file_fails_only_its_model(tmp_path: Path) -> None:
    write(tmp_path, "models/ml/good.yaml", model_text("good"))
    write(tmp_path, "models/team-b/other.yml", model_text("other", "  model: phi-4\n  nodes: 2\n"))
    write(tmp_path, "models/ml/broken.yaml", HEADER + "metadata:\n  name: broken\nspec: {model: [\n")
    write(tmp_path, "models/ml/typo.yaml", model_text("typo", "  model: phi-4\n  instanceTyp: x\n"))
    load = load_repository(tmp_path)
    assert [m.request.id for m in load.models] == ["ml.good", "team-b.other"]
    assert sorted(e.path for e in load.errors) == ["models/ml/broken.yaml", "models/ml/typo.yaml"]
    assert load.config_ok
    # Broken files still count as discovered, so prune never deletes what they describe.
    assert load.discovered_ids == {"ml.good", "team-b.other", "ml.broken", "ml.typo"}
    other = load.models[1]
    assert other.nodes == 2 and other.request.path == "models/team-b/other.yml"


def test_resolution_defaults(tmp_path: Path) -> None:
    write(tmp_path, "models/ml/phi.yaml", model_text("phi"))
    load = load_repository(tmp_path)
    assert load.errors == ()
    (model,) = load.models
    request = model.request
    assert (request.namespace, request.name, request.runtime, request.provisioning) == ("ml", "phi", "vllm", "kaito")
    assert model.label_selector == (("apps", "phi"),)
    assert model.sku is not None and model.fit is not None and model.fit.fits
    assert model.nodes == model.fit.nodes >= 1
    assert model.gpus == model.nodes * model.sku.gpu_count
    assert model.disk_gib == model.preset.disk_gib > 0
    if model.sku.price is not None:
        assert model.price_per_hour == pytest.approx(model.sku.price.usd_per_hour * model.nodes)


def test_a_models_price_is_the_catalogs_figure_for_its_nodes(tmp_path: Path) -> None:
    """One rounding for every price: a resolved model's (status files, plan) is the catalog's for that many
    nodes, to the precision prices.yaml is written in (p4d.24xlarge: 21.957642 USD an hour)."""
    from gitops_kaito.repo.catalog import price_for

    write(tmp_path, "gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nclouds: [aws]\n")
    write(tmp_path, "models/ml/phi.yaml", model_text("phi", "  model: phi-4-mini-instruct\n"
                                                             "  instanceType: p4d.24xlarge\n  nodes: 3\n"))
    load = load_repository(tmp_path)
    assert load.errors == ()
    (model,) = load.models
    assert model.sku is not None and model.fit is not None and model.nodes == 3
    assert model.price_per_hour == price_for(model.sku, 3) == 65.872926
    assert model.fit.nodes == 1 and model.fit.price_per_hour == price_for(model.sku, 1) == 21.957642


def test_request_fields_are_carried(tmp_path: Path) -> None:
    spec = ("  model: phi-4\n  instanceType: standard_nc24ads_a100_v4\n  nodes: 3\n  suspend: true\n"
            "  nodeSelector: {pool: gpu, kaito.sh/workspace: x}\n  config: {max-model-len: 4096}\n"
            "  adapters:\n    - {name: a1, image: myacr.azurecr.io/a1:1}\n  modelAccessSecret: hf-token\n")
    write(tmp_path, "models/ml/phi.yaml", model_text("phi", spec, meta="  annotations: {team: x}\n"))
    load = load_repository(tmp_path)
    assert load.errors == ()
    (model,) = load.models
    req = model.request
    assert req.instance_type == "standard_nc24ads_a100_v4"
    assert model.sku is not None and model.sku.name == "Standard_NC24ads_A100_v4"  # case-insensitive like KAITO
    assert model.nodes == 3  # more than the estimate is allowed
    assert req.suspend is True and req.max_model_len == 4096
    assert req.config == (("max-model-len", 4096),)
    assert [a.name for a in req.adapters] == ["a1"]
    assert req.model_access_secret == "hf-token" and req.annotations == (("team", "x"),)
    assert model.label_selector == (("pool", "gpu"),)  # KAITO-reserved keys dropped, like KAITO does


def test_byo_without_instance_type_uses_the_selector_only(tmp_path: Path) -> None:
    spec = "  model: phi-4\n  provisioning: byo\n  nodeSelector: {pool: my-gpus}\n"
    write(tmp_path, "models/ml/phi.yaml", model_text("phi", spec))
    (model,) = load_repository(tmp_path).models
    assert model.sku is None and model.fit is None and model.provisioning == "byo"
    assert model.label_selector == (("pool", "my-gpus"),) and model.nodes == 1


def test_namespace_may_be_set_when_it_matches(tmp_path: Path) -> None:
    write(tmp_path, "models/ml/phi.yaml", model_text("phi", meta="  namespace: ml\n"))
    assert [m.request.id for m in load_repository(tmp_path).models] == ["ml.phi"]


def test_sku_of_another_cloud_names_the_cloud(tmp_path: Path) -> None:
    write(tmp_path, "models/ml/phi.yaml", model_text("phi", "  model: phi-4\n  instanceType: p5.48xlarge\n"))
    (error,) = load_repository(tmp_path).errors
    assert error.line == 7 and "aws" in error.message and "clouds" in error.message


def test_repo_without_models_folder_is_empty_not_broken(tmp_path: Path) -> None:
    load = load_repository(tmp_path)
    assert (load.models, load.errors, load.config_ok, load.discovered_ids) == ((), (), True, frozenset())


def test_models_path_that_is_a_file_blocks_prune(tmp_path: Path) -> None:
    write(tmp_path, "models", "not a folder")
    load = load_repository(tmp_path)
    assert not load.config_ok and len(load.errors) == 1


def test_broken_config_is_reported_and_blocks_prune(tmp_path: Path) -> None:
    write(tmp_path, "gitops-kaito.yaml", "provisioning: [kaito\n")
    write(tmp_path, "models/ml/phi.yaml", model_text("phi"))
    load = load_repository(tmp_path)
    assert not load.config_ok
    assert [e.path for e in load.errors] == ["gitops-kaito.yaml"]
    assert load.errors[0].line is not None
    assert "ml.phi" in load.discovered_ids


def test_non_yaml_and_hidden_housekeeping_files_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "models/ml/phi.yaml", model_text("phi"))
    write(tmp_path, "models/ml/README.md", "# notes\n")
    write(tmp_path, "models/ml/.gitkeep", "")
    load = load_repository(tmp_path)
    assert load.errors == () and len(load.models) == 1


def test_mutated_requests_never_crash_the_loader(tmp_path: Path) -> None:
    """Seeded random edits of valid and corpus files: every outcome is a model or a located error."""
    import random

    seeds = [model_text("phi", "  model: phi-4-mini-instruct\n  nodes: 1\n  nodeSelector: {apps: phi}\n"
                               "  config: {max-model-len: 4096}\n  adapters:\n  - {name: a, image: x.io/a:1}\n")]
    seeds += [p.read_text() for p in sorted(CORPUS.rglob("*.y*ml")) if p.name != "expect.yaml"]
    tokens = ["{", "}", "[", "]", ":", "- ", "\n", " &a", " *a", "!!binary ", "'", '"', "~", "yes", "<<: ",
              "? ", "|\n", "\t", "%YAML 1.1\n", "`", "\x00", "2020-01-01", "99999999999999999999", ".nan"]
    rng = random.Random(20240601)
    target = tmp_path / "models" / "ml" / "phi.yaml"
    target.parent.mkdir(parents=True)
    for _ in range(300):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            pos = rng.randint(0, len(text))
            roll = rng.random()
            if roll < 0.4:
                text[pos:pos] = list(rng.choice(tokens))
            elif roll < 0.7:
                del text[pos:pos + rng.randint(1, 5)]
            else:
                start = rng.randint(0, len(text))
                text[pos:pos] = text[start:start + rng.randint(1, 20)]
        target.write_text("".join(text))
        load = load_repository(tmp_path)
        assert len(load.models) + len(load.errors) >= 1
        for error in load.errors:
            assert error.path == "models/ml/phi.yaml" and error.line is not None, error
