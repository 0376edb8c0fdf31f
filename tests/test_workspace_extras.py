"""The rest of the v0.12 Workspace a ModelDeployment can ask for: inference_config.yaml's top-level keys beside vllm:,
a private (mirrored) preset image, adapters with pull secrets or from a volume; each valid under KAITO's own CRD."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from test_render_schemas import OWN_CRDS, crd_schema, validate

from gitops_kaito.core.render import render_request
from gitops_kaito.repo.loader import load_repository

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"


def load(root: Path, spec: str) -> Any:
    (root / "models/ml").mkdir(parents=True, exist_ok=True)
    (root / "models/ml/phi.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"
                                             f"metadata: {{name: phi}}\nspec:\n{spec}")
    return load_repository(root)


def objects(root: Path, spec: str) -> dict[str, dict[str, Any]]:
    loaded = load(root, spec)
    assert not loaded.errors, loaded.errors
    rendered = render_request(loaded.models[0], loaded.config, REVISION)
    return {o.manifest["kind"]: o.manifest for o in rendered.objects}


def test_top_level_inference_config_keys_beside_vllm(tmp_path: Path) -> None:
    out = objects(tmp_path, "  model: phi-4-mini-instruct\n  config: {max-model-len: 4096}\n"
                            "  inferenceConfig: {max_probe_steps: 3, kv_cache_cpu_memory_utilization: 0}\n")
    text = out["ConfigMap"]["data"]["inference_config.yaml"]
    assert yaml.safe_load(text) == {"vllm": {"max-model-len": 4096}, "max_probe_steps": 3,
                                    "kv_cache_cpu_memory_utilization": 0}
    assert out["Workspace"]["inference"]["config"] == "phi-inference-config"
    only_top = objects(tmp_path / "b", "  model: phi-4-mini-instruct\n  inferenceConfig: {max_probe_steps: 2}\n")
    assert yaml.safe_load(only_top["ConfigMap"]["data"]["inference_config.yaml"]) == {"max_probe_steps": 2}


def test_unknown_top_level_key_is_refused_at_its_line(tmp_path: Path) -> None:
    loaded = load(tmp_path, "  model: phi-4-mini-instruct\n  inferenceConfig: {max_probe_step: 3}\n")
    [error] = loaded.errors
    assert error.line == 6 and "unknown field 'max_probe_step'" in error.message and "max_probe_steps" in error.message


def test_private_image_and_adapter_sources_are_valid_under_kaitos_crd(tmp_path: Path, shared_kaito: Path) -> None:
    out = objects(tmp_path, "  model: phi-4-mini-instruct\n"
                            "  image: {name: myacr.azurecr.io/kaito/phi-4-mini:0.2.0, pullSecrets: [acr-pull]}\n"
                            "  adapters:\n  - name: a\n    image: myacr.azurecr.io/adapters/a:1\n"
                            "    imagePullSecrets: [acr-pull]\n")
    preset = out["Workspace"]["inference"]["preset"]
    assert preset == {"name": "phi-4-mini-instruct", "accessMode": "private",
                      "presetOptions": {"image": "myacr.azurecr.io/kaito/phi-4-mini:0.2.0",
                                        "imagePullSecrets": ["acr-pull"]}}
    assert out["Workspace"]["inference"]["adapters"] == [
        {"source": {"name": "a", "image": "myacr.azurecr.io/adapters/a:1", "imagePullSecrets": ["acr-pull"]}}]
    validate(out["Workspace"], crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1"), "KAITO's CRD")
    validate(out["Workspace"], crd_schema(OWN_CRDS / "workspaces.kaito.sh.yaml", "v1beta1"), "project CRD")


def test_an_adapter_needs_exactly_one_source_and_a_short_name_with_pull_secrets(tmp_path: Path) -> None:
    loaded = load(tmp_path, "  model: phi-4-mini-instruct\n  adapters:\n  - name: a\n")
    assert [(e.line, "exactly one of image, volume and tuning" in e.message) for e in loaded.errors] == [(7, True)]
    long_name = "a" * 32
    loaded = load(tmp_path / "b", f"  model: phi-4-mini-instruct\n  adapters:\n  - name: {long_name}\n"
                                  "    image: reg.io/a:1\n    imagePullSecrets: [s]\n")
    assert [e.line for e in loaded.errors] == [7] and "longer than 31" in loaded.errors[0].message


PARTITION_RULES = [
    ("  provisioning: kaito\n  partition: {mode: mig, profile: 1g.10gb}\n", 7, "only supported with bring-your-own"),
    ("  provisioning: byo\n  partition: {mode: mig, profile: 9g.99gb}\n", 7, "unknown MIG profile '9g.99gb'"),
    ("  provisioning: byo\n  partition: {mode: mig, profile: 1g.5gb}\n", 7, "exceeds the 1g.5gb MIG slice capacity"),
    ("  provisioning: byo\n  partition: {mode: mig, profile: 1g.10gb, count: 2}\n", 7,
     "count is only valid for accelerator mode"),
    ("  provisioning: byo\n  partition: {mode: accelerator}\n", 7, "missing field(s): partition.count"),
    ("  provisioning: byo\n  partition: {mode: accelerator, count: 2, profile: 1g.10gb}\n", 7,
     "profile is not valid for accelerator mode"),
]


def test_partition_rules_fail_at_their_line(tmp_path: Path) -> None:
    for i, (spec, line, needle) in enumerate(PARTITION_RULES):
        loaded = load(tmp_path / str(i), "  model: phi-4-mini-instruct\n" + spec)
        assert [(e.line, needle in e.message) for e in loaded.errors] == [(line, True)], (spec, loaded.errors)


def test_partitioned_workspaces_are_valid_under_kaitos_crd(tmp_path: Path, shared_kaito: Path) -> None:
    kaito = crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1")
    mig = objects(tmp_path, "  model: phi-4-mini-instruct\n  provisioning: byo\n"
                            "  partition: {mode: mig, profile: 1g.10gb}\n")["Workspace"]
    assert mig["resource"]["partition"] == {"mode": "mig", "profile": "1g.10gb"}
    acc = objects(tmp_path / "b", "  model: phi-4-mini-instruct\n  provisioning: nodeclaim\n"
                                  "  partition: {mode: accelerator, count: 2}\n")["Workspace"]
    assert acc["resource"]["partition"] == {"count": 2, "mode": "accelerator"}
    bypass = load(tmp_path / "c", "  model: phi-4-mini-instruct\n  provisioning: byo\n"
                                  "  partition: {mode: mig, profile: 1g.5gb}\n")
    assert bypass.errors  # too small for the weights without the bypass annotation
    for ws in (mig, acc):
        validate(ws, kaito, "KAITO's CRD")


AIKIT = ("  instanceType: Standard_NC24ads_A100_v4\n  template:\n    spec:\n      containers:\n"
         "      - name: llama\n        image: ghcr.io/sozercan/llama3.1:8b\n        ports: [{containerPort: 8080}]\n")


def test_a_pod_template_instead_of_a_preset(tmp_path: Path, shared_kaito: Path) -> None:
    loaded = load(tmp_path, AIKIT)
    assert not loaded.errors, loaded.errors
    model = loaded.models[0]
    assert model.summary == "template: ghcr.io/sozercan/llama3.1:8b" and "never applies a later edit" in model.note
    assert (model.nodes, model.sku.name if model.sku else None) == (1, "Standard_NC24ads_A100_v4")
    ws = {o.manifest["kind"]: o.manifest for o in render_request(model, loaded.config, REVISION).objects}["Workspace"]
    assert "preset" not in ws["inference"]
    assert ws["inference"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/sozercan/llama3.1:8b"
    validate(ws, crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1"), "KAITO's CRD")


def test_template_rules(tmp_path: Path) -> None:
    both = load(tmp_path / "a", "  model: phi-4-mini-instruct\n" + AIKIT)
    assert "cannot be set at the same time" in both.errors[0].message
    with_config = load(tmp_path / "b", AIKIT + "  config: {max-model-len: 10}\n")
    assert "applies to a KAITO preset" in with_config.errors[0].message
    empty = load(tmp_path / "c", "  template: {spec: {containers: []}}\n  instanceType: Standard_NC24ads_A100_v4\n")
    assert "at least one container" in empty.errors[0].message
    neither = load(tmp_path / "d", "  nodes: 1\n")
    assert "needs model" in neither.errors[0].message


def test_a_template_edit_is_a_replace_kaito_would_not_roll(tmp_path: Path) -> None:
    from gitops_kaito.core.plan import Action, PlanPolicy, make_plan

    def workspace(root: Path, spec: str) -> Any:
        loaded = load(root, spec)
        return next(o for o in render_request(loaded.models[0], loaded.config, REVISION).objects
                    if o.manifest["kind"] == "Workspace")

    old = workspace(tmp_path / "a", AIKIT)
    new = workspace(tmp_path / "b", AIKIT.replace("llama3.1:8b", "llama3.2:3b"))
    live = {**old.normalised.stamped, "metadata": {**old.normalised.stamped["metadata"], "managedFields": []}}
    [change] = make_plan([new], [live], PlanPolicy()).changes
    assert change.action == Action.BLOCKED and "inference.template" in change.immutable


def test_an_adapter_from_a_volume(tmp_path: Path, shared_kaito: Path) -> None:
    out = objects(tmp_path, "  model: phi-4-mini-instruct\n  adapters:\n  - name: mine\n"
                            "    volume: {persistentVolumeClaim: {claimName: adapters}}\n")
    assert out["Workspace"]["inference"]["adapters"] == [
        {"source": {"name": "mine", "volumeSource": {"persistentVolumeClaim": {"claimName": "adapters"}}}}]
    validate(out["Workspace"], crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1"), "KAITO's CRD")
    both = load(tmp_path / "b", "  model: phi-4-mini-instruct\n  adapters:\n  - name: mine\n    image: reg.io/a:1\n"
                                "    volume: {emptyDir: {}}\n")
    assert [e.line for e in both.errors] == [7] and "exactly one of image, volume and tuning" in both.errors[0].message
