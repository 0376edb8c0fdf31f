"""Hugging Face models outside the catalog (spec.model org/name that KAITO v0.12.0 generates itself): accepted with
instanceType, vllm and the SKU's GPUs and price; refused with file, line and field otherwise; the typo guard and its
spec.allowUncataloged opt-in; rendering against KAITO's CRDs; the note in validate, render, plan and add."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from test_render import REVISION, config
from test_render_schemas import check_metadata, check_nodeclaim_cel_rules, crd_schema, validate

from gitops_kaito.cli import main
from gitops_kaito.core import render
from gitops_kaito.provision.agentpool import model_pools
from gitops_kaito.repo.catalog import UNKNOWN_MODEL_DISK_GIB, hf_repo_id_problem, load_catalog, price_for
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import UNCATALOGED_NOTE, RepoLoad, ResolvedModel, ResolveError, model_preset
from tests.gitfixtures import Developer, Remote
from tests.test_init_add import repo  # noqa: F401 - the fixture (a new repository from `init`) is used by name

HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"
HF_ID = "Qwen/Qwen3-0.6B"
A10, A100 = "Standard_NV36ads_A10_v5", "Standard_NC24ads_A100_v4"
NOTE = f"{HF_ID} is {UNCATALOGED_NOTE}"


def write_model(root: Path, name: str, spec: str, namespace: str = "ml") -> Path:
    path = root / "models" / namespace / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HEADER}metadata:\n  name: {name}\nspec:\n{spec}")
    return path


def load_one(tmp_path: Path, spec: str, config_text: str = "") -> RepoLoad:
    if config_text:
        (tmp_path / "gitops-kaito.yaml").write_text(
            "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n" + config_text)
    write_model(tmp_path, "m", spec)
    return load_repository(tmp_path)


def only_model(load: RepoLoad) -> ResolvedModel:
    assert load.errors == (), [str(e) for e in load.errors]
    (model,) = load.models
    return model


def only_error(load: RepoLoad) -> tuple[int | None, str]:
    assert load.models == ()
    (error,) = load.errors
    assert error.path == "models/ml/m.yaml" and error.model_id == "ml.m"
    return error.line, error.message


# ------------------------------------------------------------------------------------------------
# Catalog helpers
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Qwen/Qwen3-0.6B", "org_x/model.v1-2", "a/b", "_x/y_", "o/" + "n" * 96])
def test_ids_the_hub_accepts(name: str) -> None:
    assert hf_repo_id_problem(name) is None


@pytest.mark.parametrize(("name", "why"), [
    ("Qwen3-0.6B", "exactly one '/'"), ("a/b/c", "exactly one '/'"), ("Qwen/Qwen3--0.6B", "'--'"),
    ("Qwen/Qwen3..6B", "'..'"), ("Qwen/model.git", ".git"), ("Qwen/-model", "starting and ending"),
    ("Qwen/model-", "starting and ending"), ("Qwen/mod el", "letters, digits"), ("Qwen/Qwén", "letters, digits"),
    ("o/" + "n" * 97, "at most 96"), ("/model", "starting and ending"),
])
def test_ids_the_hub_refuses(name: str, why: str) -> None:
    problem = hf_repo_id_problem(name)
    assert problem is not None and why in problem


def test_close_hf_ids_finds_near_misses_of_catalog_ids_only() -> None:
    catalog = load_catalog()
    assert catalog.close_hf_ids("Qwen/Qwen3.5-9") == ("Qwen/Qwen3.5-9B",)
    assert catalog.close_hf_ids("MICROSOFT/phi-4-mini-instruc")[0] == "microsoft/Phi-4-mini-instruct"  # closest first
    assert catalog.close_hf_ids(HF_ID) == ()  # Qwen/Qwen3-8B-AWQ is not that close (ratio 0.75)
    assert catalog.close_hf_ids("tiiuae/falcon-7c") == ()  # removed presets are never suggested


def test_an_id_outside_the_catalog_computes_only_the_suggestions_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """catalog.suggest (difflib over every preset) is for names without '/'; the typo guard is skipped when opted
    out of. Both ran on every load of such a model and were thrown away."""
    catalog = load_catalog()
    calls: list[str] = []
    real_suggest, real_close = catalog.suggest, catalog.close_hf_ids

    def suggest(name: str, limit: int = 5) -> tuple[str, ...]:
        calls.append(name)
        return real_suggest(name, limit)

    def close_hf_ids(name: str) -> tuple[str, ...]:
        calls.append(f"close:{name}")
        return real_close(name)

    monkeypatch.setattr(catalog, "suggest", suggest)
    monkeypatch.setattr(catalog, "close_hf_ids", close_hf_ids)
    assert model_preset(HF_ID, catalog).name == HF_ID
    assert calls == [f"close:{HF_ID}"]
    assert model_preset("Qwen/Qwen3.5-9", catalog, allow_uncataloged=True).name == "Qwen/Qwen3.5-9"
    assert calls == [f"close:{HF_ID}"]
    with pytest.raises(ResolveError):
        model_preset("phi-4-mini-instrct", catalog)
    assert calls == [f"close:{HF_ID}", "phi-4-mini-instrct"]


# ------------------------------------------------------------------------------------------------
# Accepted
# ------------------------------------------------------------------------------------------------

def test_an_hf_id_outside_the_catalog_is_accepted_with_the_skus_gpus_and_price(tmp_path: Path) -> None:
    model = only_model(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: {A10}\n"))
    sku = load_catalog().sku(A10)
    assert sku is not None and sku.price is not None
    assert model.uncataloged and not model.preset.cataloged
    assert (model.preset.name, model.preset.hf_id, model.preset.served_name) == (HF_ID, HF_ID, "qwen3-0.6b")
    assert (model.sku, model.fit, model.nodes, model.gpus) == (sku, None, 1, 1)
    assert model.price_per_hour == price_for(sku, 1) == sku.price.usd_per_hour
    assert model.disk_gib == UNKNOWN_MODEL_DISK_GIB == 1024
    assert model.note == NOTE


def test_nodes_as_given_multiply_gpus_and_price(tmp_path: Path) -> None:
    model = only_model(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: Standard_NC48ads_A100_v4\n"
                                          "  nodes: 3\n", "prices: {Standard_NC48ads_A100_v4: 2.5}\n"))
    assert (model.nodes, model.gpus, model.price_per_hour) == (3, 6, 7.5)


def test_the_id_is_kept_as_written_and_a_catalog_id_in_any_case_stays_a_catalog_preset(tmp_path: Path) -> None:
    model = only_model(load_one(tmp_path, "  model: qwen/QWEN3.5-9b\n"))
    assert model.preset.cataloged and model.preset.name == "Qwen/Qwen3.5-9B" and model.note == ""
    assert model.sku is not None  # sized by the catalog: no instanceType needed


def test_allow_uncataloged_on_a_catalog_preset_changes_nothing(tmp_path: Path) -> None:
    model = only_model(load_one(tmp_path, "  model: Qwen/Qwen3.5-9B\n  allowUncataloged: true\n"))
    assert model.preset.cataloged and model.fit is not None


def test_byo_needs_no_instance_type_as_for_presets(tmp_path: Path) -> None:
    model = only_model(load_one(tmp_path, f"  model: {HF_ID}\n  provisioning: byo\n  nodes: 2\n"))
    assert (model.sku, model.nodes, model.gpus, model.price_per_hour) == (None, 2, 0, None)


# ------------------------------------------------------------------------------------------------
# Refused, each with file, line and field
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["kaito", "nodeclaim", "aks"])
def test_instance_type_is_required_where_a_sku_is_needed(tmp_path: Path, mode: str) -> None:
    line, message = only_error(load_one(tmp_path, f"  provisioning: {mode}\n  model: {HF_ID}\n"))
    assert line == 7  # the model line: the reason the SKU cannot be chosen
    assert message.startswith(f"spec.instanceType is required for {HF_ID}")
    assert "cannot size it" in message and "gitops-kaito catalog skus" in message


def test_transformers_is_refused_on_the_runtime_line(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: {A10}\n"
                                                  "  runtime: transformers\n"))
    assert line == 8
    assert "runtime is transformers" in message and "only with vllm" in message and "spec.runtime: vllm" in message


def test_transformers_as_the_repository_default_is_refused_too(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: {A10}\n",
                                        "defaults: {runtime: transformers}\n"))
    assert line == 5 and "only with vllm" in message  # no runtime line: the spec line


def test_an_unknown_sku_is_refused_on_its_line(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: Standard_NV36ads_A10\n"))
    assert line == 7 and "unknown GPU instance type 'Standard_NV36ads_A10'" in message


@pytest.mark.parametrize(("model", "why"), [
    ("Qwen/Qwen3/0.6B", "exactly one '/'"), ("Qwen/Qwen3--0.6B", "'--'"), ("Qwen/Qwen3-0.6B-", "starting and ending"),
])
def test_an_id_the_hub_would_refuse_is_refused_on_the_model_line(tmp_path: Path, model: str, why: str) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: {model}\n  instanceType: {A10}\n"))
    assert line == 6 and message.startswith(f"spec.model {model!r} is neither a KAITO v0.12.0 preset") and why in message


def test_characters_outside_any_id_are_refused_by_the_schema(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: 'Qwen/Qwen 3'\n  instanceType: {A10}\n"))
    assert line == 6 and "spec.model 'Qwen/Qwen 3' must be a KAITO preset name or a Hugging Face id" in message


def test_a_near_miss_of_a_catalog_id_is_refused_as_a_likely_typo(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  instanceType: {A10}\n  model: Qwen/Qwen3.5-9\n"))
    assert line == 7
    assert message == ("spec.model 'Qwen/Qwen3.5-9' is not in KAITO v0.12.0's catalog; did you mean "
                       "'Qwen/Qwen3.5-9B'? To deploy this exact Hugging Face repository anyway, set "
                       "spec.allowUncataloged: true")


def test_the_near_miss_guard_ignores_case(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, "  model: MICROSOFT/phi-4-mini-instruc\n"))
    assert line == 6 and "did you mean 'microsoft/Phi-4-mini-instruct'," in message


def test_allow_uncataloged_deploys_the_near_miss_as_written(tmp_path: Path) -> None:
    model = only_model(load_one(tmp_path, f"  model: Qwen/Qwen3.5-9\n  instanceType: {A10}\n"
                                          "  allowUncataloged: true\n"))
    assert model.uncataloged and model.preset.name == "Qwen/Qwen3.5-9" and model.preset.served_name == "qwen3.5-9"


def test_allow_uncataloged_must_be_a_boolean(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: {A10}\n"
                                                  "  allowUncataloged: 'yes'\n"))
    assert line == 8 and "spec.allowUncataloged must be true or false" in message


def test_a_typo_without_slash_keeps_the_close_name_suggestion(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, "  model: phi-4-mini-instrct\n"))
    assert line == 6
    assert "unknown model 'phi-4-mini-instrct': not a KAITO v0.12.0 preset; did you mean 'phi-4-mini-instruct'" \
        in message
    assert "allowUncataloged" not in message


def test_allow_uncataloged_does_not_admit_a_name_without_slash(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, "  model: my-model\n  allowUncataloged: true\n"))
    assert line == 6 and "unknown model 'my-model'" in message
    assert "spec.allowUncataloged applies only to Hugging Face ids" in message


def test_a_removed_preset_named_by_its_hf_id_is_refused_unless_opted_in(tmp_path: Path) -> None:
    line, message = only_error(load_one(tmp_path, f"  model: tiiuae/falcon-7b\n  instanceType: {A10}\n"))
    assert line == 6 and "was removed from KAITO" in message and "set spec.allowUncataloged: true" in message
    # KAITO v0.12 takes any org/name as a model it generates: with the opt-in it is deployed as such.
    model = only_model(load_one(tmp_path, f"  model: tiiuae/falcon-7b\n  instanceType: {A10}\n"
                                          "  allowUncataloged: true\n"))
    assert model.uncataloged and model.preset.name == "tiiuae/falcon-7b"
    _, message = only_error(load_one(tmp_path, "  model: falcon-7b\n  allowUncataloged: true\n"))
    assert "was removed from KAITO" in message, "a short name is not a Hugging Face id: still refused"


# ------------------------------------------------------------------------------------------------
# Rendering, against KAITO's and Karpenter's real CRDs
# ------------------------------------------------------------------------------------------------

def rendered(tmp_path: Path, spec: str) -> tuple[ResolvedModel, list[dict[str, Any]]]:
    model = only_model(load_one(tmp_path, spec))
    return model, [o.manifest for o in render.render_model(model, config(), REVISION).objects]


def test_kaito_mode_renders_the_id_as_written_and_matches_kaitos_crd(tmp_path: Path, shared_kaito: Path) -> None:
    _, objects = rendered(tmp_path, f"  model: {HF_ID}\n  instanceType: {A10}\n  config: {{max-model-len: 4096}}\n"
                                    "  modelAccessSecret: hf-token\n")
    assert [o["kind"] for o in objects] == ["ConfigMap", "Workspace"]
    ws = objects[1]
    validate(ws, crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1"), "Workspace")
    check_metadata(ws)
    assert ws["inference"]["preset"] == {"name": HF_ID, "presetOptions": {"modelAccessSecret": "hf-token"}}
    assert ws["resource"]["instanceType"] == A10 and "count" not in ws["resource"]


@pytest.mark.parametrize("mode", ["nodeclaim", "aks", "byo"])
def test_byo_form_workspaces_match_kaitos_crd(tmp_path: Path, shared_kaito: Path, mode: str) -> None:
    _, objects = rendered(tmp_path, f"  model: {HF_ID}\n  instanceType: {A10}\n  provisioning: {mode}\n")
    schema = crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1")
    (ws,) = [o for o in objects if o["kind"] == "Workspace"]
    validate(ws, schema, mode)
    assert ws["inference"]["preset"]["name"] == HF_ID and "instanceType" not in ws["resource"]


def test_nodeclaim_mode_requests_1024gi_per_node_and_matches_karpenters_crd(tmp_path: Path,
                                                                            shared_kaito: Path) -> None:
    _, objects = rendered(tmp_path, f"  model: {HF_ID}\n  instanceType: {A100}\n  provisioning: nodeclaim\n"
                                    "  nodes: 2\n")
    schema = crd_schema(shared_kaito / "crd-nodeclaims-karpenter-v1.yaml", "v1")
    claims = [o for o in objects if o["kind"] == "NodeClaim"]
    assert len(claims) == 2
    for claim in claims:
        validate(claim, schema, "NodeClaim")
        check_metadata(claim)
        check_nodeclaim_cel_rules(claim)
        assert claim["spec"]["resources"] == {"requests": {"storage": "1024Gi"}}


def test_machine_mode_refuses_a_model_legacy_kaito_cannot_generate(tmp_path: Path) -> None:
    # Presets generated from Hugging Face came with KAITO v0.11.0; machine mode is for legacy KAITO (<= v0.4.1).
    line, message = only_error(load_one(tmp_path, f"  model: {HF_ID}\n  instanceType: {A100}\n"
                                                  "  provisioning: machine\n"))
    assert line == 6, message
    assert "machine mode targets legacy KAITO" in message and "use provisioning kaito, nodeclaim, aks or byo" in message


def test_aks_mode_plans_a_pool_with_the_nodes_and_1024_gb_disk(tmp_path: Path) -> None:
    model, _ = rendered(tmp_path, f"  model: {HF_ID}\n  instanceType: {A100}\n  provisioning: aks\n  nodes: 2\n")
    (pool,) = model_pools([model], RepoConfig().instance).pools
    assert (pool.vm_size, pool.count, pool.os_disk_gb) == (A100, 2, 1024)


# ------------------------------------------------------------------------------------------------
# The note in validate, render, plan (text, markdown, json, --base) and add
# ------------------------------------------------------------------------------------------------

def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_shows_the_note_in_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_model(tmp_path, "qwen", f"  model: {HF_ID}\n  instanceType: {A10}\n")
    write_model(tmp_path, "phi", "  model: phi-4-mini-instruct\n")
    code, out, _ = run(capsys, "validate", "--repo", str(tmp_path))
    assert code == 0
    assert out.splitlines() == [f"models/ml/qwen.yaml: note: {NOTE}", "2 model(s) valid"]
    code, out, _ = run(capsys, "validate", "--repo", str(tmp_path), "-o", "json")
    models = {m["id"]: m for m in json.loads(out)["models"]}
    assert code == 0 and models["ml.qwen"]["note"] == NOTE and models["ml.phi"]["note"] is None
    assert models["ml.qwen"]["model"] == HF_ID and models["ml.qwen"]["gpus"] == 1


def test_render_prints_the_manifests_and_the_note_on_stderr(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    write_model(tmp_path, "qwen", f"  model: {HF_ID}\n  instanceType: {A10}\n")
    code, out, err = run(capsys, "render", "--repo", str(tmp_path), "--revision", "r1")
    (ws,) = list(yaml.safe_load_all(out))
    assert code == 0 and ws["inference"]["preset"]["name"] == HF_ID
    assert err == f"models/ml/qwen.yaml: note: {NOTE}\n"


PRICES = f"apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nprices: {{{A10}: 2.0, {A100}: 4.5}}\n"


@pytest.fixture
def dev(tmp_path: Path) -> Developer:
    """A clone whose origin/main holds one catalog model (and pinned prices)."""
    bare = tmp_path / "models.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    d = Developer(Remote(bare), tmp_path / "dev")
    d.write("gitops-kaito.yaml", PRICES)
    d.write("models/ml/phi.yaml", f"{HEADER}metadata:\n  name: phi\nspec:\n  model: phi-4-mini-instruct\n"
                                  f"  instanceType: {A10}\n")
    d.commit("one model")
    d.repo.git.fetch("-q", "origin")
    return d


def test_plan_base_shows_the_note_and_counts_the_cost(dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    write_model(dev.path, "qwen", f"  model: {HF_ID}\n  instanceType: {A100}\n  provisioning: nodeclaim\n"
                                  "  nodes: 2\n")
    base = ("plan", "--repo", str(dev.path), "--base", "origin/main")

    code, out, _ = run(capsys, *base)
    assert code == 1
    assert f"note: ml.qwen: {NOTE}" in out.splitlines()
    assert "Change in cost per hour: +$9.00/h ($2.00/h at origin/main -> $11.00/h)" in out

    code, out, _ = run(capsys, *base, "--format", "markdown")
    model_table = out.split("#### GPU nodes")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([^`]+)` \| (.*) \|$", model_table, re.M)}
    assert rows["ml.qwen"] == f"🟢 create | {HF_ID} | {A100} | 2 | 2 | $9.00"
    assert "| **Total after this change** | | | | | **3** | **$11.00** |" in out
    assert f"> [!NOTE]\n> - `ml.qwen`: {NOTE}\n" in out
    assert "| `ml.qwen` | nodeclaim | NodeClaim | 2 | Standard_NC24ads_A100_v4 | $9.00 |" in out
    assert "`ml.phi`:" not in out  # a catalog preset gets no note

    code, out, _ = run(capsys, *base, "--format", "json")
    doc = json.loads(out)
    rows_json = {r["model"]: r for r in doc["models"]}
    assert rows_json["ml.qwen"]["uncataloged"] is True and rows_json["ml.qwen"]["note"] == NOTE
    assert rows_json["ml.phi"]["uncataloged"] is False and rows_json["ml.phi"]["note"] == ""
    assert (rows_json["ml.qwen"]["nodes"], rows_json["ml.qwen"]["gpus"], rows_json["ml.qwen"]["pricePerHour"]) \
        == (2, 2, 9.0)
    assert doc["offline"]["costPerHour"] == {"before": 2.0, "after": 11.0, "change": 9.0, "known": True}


def test_add_writes_an_hf_id_with_its_instance_type(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, out, err = run(capsys, "add", HF_ID, "--instance-type", A10, "--namespace", "ml", "--repo", str(repo))
    assert code == 0, err
    text = (repo / "models" / "ml" / "qwen3-0-6b.yaml").read_text()
    assert yaml.safe_load(text)["spec"] == {"model": HF_ID, "instanceType": A10}
    assert "outside KAITO's catalog" in text.splitlines()[0]
    assert f"  note          {NOTE}" in out and "  disk          1024 GiB per node" in out
    assert "served as qwen3-0.6b" in out
    (model,) = [m for m in load_repository(repo).models if m.request.namespace == "ml"]
    assert model.uncataloged and model.nodes == 1


def test_add_needs_an_instance_type_for_an_hf_id(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, _, err = run(capsys, "add", HF_ID, "--repo", str(repo))
    assert code == 1 and "give --instance-type" in err
    assert not (repo / "models" / "default" / "qwen3-0-6b.yaml").exists()


def test_add_refuses_a_near_miss_unless_allowed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, _, err = run(capsys, "add", "Qwen/Qwen3.5-9", "--instance-type", A10, "--repo", str(repo))
    assert code == 1 and "did you mean 'Qwen/Qwen3.5-9B'?" in err and "add --allow-uncataloged" in err
    code, _, err = run(capsys, "add", "Qwen/Qwen3.5-9", "--instance-type", A10, "--allow-uncataloged",
                       "--repo", str(repo))
    assert code == 0, err
    spec = yaml.safe_load((repo / "models" / "default" / "qwen3-5-9.yaml").read_text())["spec"]
    assert spec == {"model": "Qwen/Qwen3.5-9", "instanceType": A10, "allowUncataloged": True}
