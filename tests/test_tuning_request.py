"""TuningJob requests: parsing, KAITO v0.12.0's tuning webhook rules checked offline, the SKU choice, rendering (a
tuning Workspace valid under KAITO's own CRD, the training ConfigMap, the request digest that marks a run)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_render_schemas import OWN_CRDS, check_metadata, crd_schema, validate

from gitops_kaito.core import render
from gitops_kaito.model.ownership import ANNOTATION_REQUEST_DIGEST
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.resolve import ResolveError
from gitops_kaito.repo.tuning import ResolvedTuning, request_from_document, resolve_tuning, url_problem

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"
TUNABLE = [p.name for p in load_catalog().presets() if not p.tuning_problem]


def doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"model": "phi-3-mini-128k-instruct", "method": "qlora",
                            "input": {"urls": ["https://huggingface.co/datasets/x/y/resolve/main/train.parquet"]},
                            "output": {"image": "example.azurecr.io/adapters/phi3:1", "pushSecret": "acr-push"}}
    base.update(spec)
    return {"apiVersion": "gitops.kaito.sh/v1alpha1", "kind": "TuningJob",
            "metadata": {"name": "phi3-tune"}, "spec": base}


def resolve(data: dict[str, Any], config: RepoConfig | None = None) -> ResolvedTuning:
    config = config or RepoConfig()
    request = request_from_document(data, "ml", "models/ml/phi3-tune.yaml", config)
    return resolve_tuning(request, load_catalog(), config)


def refused(data: dict[str, Any]) -> ResolveError:
    with pytest.raises(ResolveError) as caught:
        resolve(data)
    return caught.value


def test_defaults_choose_the_cheapest_single_node_that_holds_the_job() -> None:
    resolved = resolve(doc())
    assert resolved.sku is not None and resolved.sku.name == "Standard_NC24ads_A100_v4"  # 72 GiB need, 80 GiB
    assert (resolved.nodes, resolved.gpus, resolved.price_per_hour) == (1, 1, resolved.sku.price.usd_per_hour)  # type: ignore[union-attr]
    assert resolved.summary == "phi-3-mini-128k-instruct (qlora tuning)"


# One case per KAITO webhook rule (api/v1beta1/workspace_validation.go, tuning_config_validation.go at v0.12.0)
# plus gitops-kaito's own checks that KAITO would only hit at run time.
RULES = [
    ({"model": "llama-3.1-8b-instruct"}, ("spec", "model"), "cannot fine-tune"),
    ({"model": "mistral-7b"}, ("spec", "model"), "MustGet"),
    ({"model": "phi-5-nope"}, ("spec", "model"), "Unsupported tuning preset name"),
    ({"provisioning": "byo"}, ("spec", "provisioning"), "needs provisioning kaito"),
    ({"instanceType": "Standard_NV36ads_A10_v5"}, ("spec", "instanceType"), "needs 72 GiB on one node"),
    ({"instanceType": "Standard_Nope_v9"}, ("spec", "instanceType"), "unknown GPU instance type"),
    ({"config": {"Bogus": {}}}, ("spec", "config", "Bogus"), "Unrecognized section: Bogus"),
    ({"config": {"QuantizationConfig": {"load_in_4bit": True, "load_in_8bit": True}}},
     ("spec", "config", "QuantizationConfig"), "Cannot set both"),
    ({"method": "lora", "config": {"QuantizationConfig": {"load_in_4bit": True}}},
     ("spec", "config", "QuantizationConfig"), "For method 'lora'"),
    ({"config": {"QuantizationConfig": {"load_in_4bit": False}}},
     ("spec", "config", "QuantizationConfig"), "For method 'qlora'"),
    ({"config": {"LoraConfig": {"r": 8}}}, ("spec", "config"), "For method 'qlora'"),
    ({"config": {"QuantizationConfig": {"load_in_4bit": "yes"}}},
     ("spec", "config", "QuantizationConfig", "load_in_4bit"), "must be true or false"),
    ({"method": "lora", "config": {"TrainingArguments": {"output_dir": "../etc"}}},
     ("spec", "config", "TrainingArguments", "output_dir"), "Invalid output_dir"),
    ({"method": "lora", "config": {"TrainingArguments": {"output_dir": "/"}}},
     ("spec", "config", "TrainingArguments", "output_dir"), "Invalid output_dir"),
    ({"input": {}}, ("spec", "input"), "Exactly one of URLs, Volume, or Image"),
    ({"input": {"urls": ["https://a.example/x"], "image": "reg.io/data:1"}}, ("spec", "input"), "Exactly one"),
    ({"input": {"urls": ["ftp://a.example/x"]}}, ("spec", "input", "urls", 0), "HTTP or HTTPS"),
    ({"input": {"urls": ["http://169.254.169.254/latest"]}}, ("spec", "input", "urls", 0), "link-local"),
    ({"input": {"urls": ["http://localhost:8080/d"]}}, ("spec", "input", "urls", 0), "local or metadata"),
    ({"input": {"urls": ["http://10.0.0.5/d"]}}, ("spec", "input", "urls", 0), "private"),
    ({"input": {"image": "Reg.io/Data::1"}}, ("spec", "input", "image"), "Unable to parse input image"),
    ({"input": {"volume": {}}}, ("spec", "input"), "Exactly one"),
    ({"input": {"volume": {"persistentVolumeClaim": {}}}}, ("spec", "input", "volume", "persistentVolumeClaim"),
     "claimName"),
    ({"output": {"image": "reg.io/a:1"}}, ("spec", "output"), "pushSecret"),
    ({"output": {}}, ("spec", "output"), "Exactly one of Volume or Image"),
    ({"output": {"image": "reg.io/a:1", "pushSecret": "s", "volume": {"emptyDir": {}}}}, ("spec", "output"),
     "Exactly one of Volume or Image"),
    ({"nodeSelector": {"kaito.sh/workspace": "x"}}, ("spec", "nodeSelector"), "KAITO-reserved"),
]


@pytest.mark.parametrize(("spec", "path", "message"), RULES, ids=[r[2] for r in RULES])
def test_each_rule_names_its_field(spec: dict[str, Any], path: tuple[Any, ...], message: str) -> None:
    err = refused(doc(**spec))
    assert err.json_path == path and message in err.message


def test_url_problem_checks_literal_hosts_only() -> None:
    assert url_problem("https://huggingface.co/x") == ""
    assert "loopback" in url_problem("http://127.0.0.1/x")
    assert url_problem("http://[::1]/x") != ""
    assert url_problem("https://internal-looking.example.com/x") == ""  # names are not resolved offline


def _workspace(objects: tuple[Any, ...]) -> dict[str, Any]:
    return next(o.manifest for o in objects if o.manifest["kind"] == "Workspace")


def test_render_workspace_and_training_config() -> None:
    config = {"QuantizationConfig": {"load_in_4bit": True}, "TrainingArguments": {"output_dir": "/mnt/results"}}
    resolved = resolve(doc(config=config, nodeSelector={"team": "nlp"}))
    rendered = render.render_tuning(resolved, RepoConfig(), REVISION)
    cm, ws = (o.manifest for o in rendered.objects)
    assert [o.wave for o in rendered.objects] == sorted(o.wave for o in rendered.objects)
    assert cm["metadata"]["name"] == "phi3-tune-tuning-config"
    assert yaml.safe_load(cm["data"]["training_config.yaml"]) == {"training_config": config}
    assert ws["resource"] == {"instanceType": "Standard_NC24ads_A100_v4",
                              "labelSelector": {"matchLabels": {"team": "nlp"}}}
    assert ws["tuning"] == {"preset": {"name": "phi-3-mini-128k-instruct"}, "method": "qlora",
                            "config": "phi3-tune-tuning-config",
                            "input": {"urls": ["https://huggingface.co/datasets/x/y/resolve/main/train.parquet"]},
                            "output": {"image": "example.azurecr.io/adapters/phi3:1", "imagePushSecret": "acr-push"}}
    assert "inference" not in ws and "count" not in ws["resource"]
    assert ws["metadata"]["annotations"][ANNOTATION_REQUEST_DIGEST] == resolved.request.digest


def test_request_digest_follows_the_request_not_the_rendering() -> None:
    one = resolve(doc()).request.digest
    assert resolve(doc()).request.digest == one
    assert resolve(doc(input={"urls": ["https://a.example/other"]})).request.digest != one
    suspended = copy.deepcopy(doc())
    suspended["spec"]["suspend"] = True
    assert resolve(suspended).request.digest == one  # suspending is not a different run
    assert render.render_tuning(resolve(suspended), RepoConfig(), REVISION).objects == ()


def test_volume_input_and_output_render_as_volume_sources() -> None:
    resolved = resolve(doc(input={"volume": {"persistentVolumeClaim": {"claimName": "in"}}},
                           output={"volume": {"persistentVolumeClaim": {"claimName": "out"}}}))
    ws = _workspace(render.render_tuning(resolved, RepoConfig(), REVISION).objects)
    assert ws["tuning"]["input"] == {"volumeSource": {"persistentVolumeClaim": {"claimName": "in"}}}
    assert ws["tuning"]["output"] == {"volumeSource": {"persistentVolumeClaim": {"claimName": "out"}}}
    assert "config" not in ws["tuning"]  # KAITO's qlora template then


@pytest.mark.parametrize("preset", TUNABLE)
def test_every_tunable_preset_renders_valid_under_kaitos_crd(preset: str, shared_kaito: Path) -> None:
    """Every tuning Workspace gitops-kaito can render, over the catalog, with URL / image / volume input."""
    kaito = crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1")
    own = crd_schema(OWN_CRDS / "workspaces.kaito.sh.yaml", "v1beta1")
    for data_in in ({"urls": ["https://a.example/d.json"]}, {"image": "reg.io/data:1", "imagePullSecrets": ["p"]},
                    {"volume": {"persistentVolumeClaim": {"claimName": "d"}}}):
        resolved = resolve(doc(model=preset, method="lora", input=data_in,
                               config={"LoraConfig": {"r": 8}, "TrainingArguments": {"output_dir": "/mnt/out"}}))
        for obj in render.render_tuning(resolved, RepoConfig(), REVISION).objects:
            check_metadata(obj.manifest)
            if obj.manifest["kind"] == "Workspace":
                validate(obj.manifest, kaito, f"{preset} (KAITO's CRD)")
                validate(obj.manifest, own, f"{preset} (project CRD)")
