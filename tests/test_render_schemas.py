"""Rendered objects checked against CRD schemas: the project's own (deploy/crds/) and KAITO's/Karpenter's real ones.

Every catalog preset is rendered on its default SKU; unknown fields are errors here (a real API server would
silently prune them, which would hide a rendering mistake).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from test_render import REVISION, config, make_model

from gitops_kaito.core import render
from gitops_kaito.repo.catalog import load_catalog

REPO_ROOT = Path(__file__).resolve().parent.parent
OWN_CRDS = REPO_ROOT / "deploy" / "crds"
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ------------------------------------------------------------------------------------------------
# CRD schema -> JSON Schema
# ------------------------------------------------------------------------------------------------

def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 structural schema -> JSON Schema, with unknown object fields forbidden."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items()
           if k not in ("x-kubernetes-validations", "description")}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    for key in list(out):
        if key.startswith("x-kubernetes-"):
            del out[key]
    return out


def crd_schema(path: Path, version: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        for v in doc["spec"]["versions"]:
            if v["name"] == version:
                schema = to_json_schema(copy.deepcopy(v["schema"]["openAPIV3Schema"]))
                jsonschema.Draft7Validator.check_schema(schema)
                return schema
    raise LookupError(f"{path} has no version {version}")


def own_crd(kind_plural: str) -> Path:
    path = OWN_CRDS / f"{kind_plural}.yaml"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the project's own CRDs are not written yet")
    return path


def validate(manifest: dict[str, Any], schema: dict[str, Any], where: str) -> None:
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, f"{where}: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5])


def check_metadata(manifest: dict[str, Any]) -> None:
    """What the API server checks on every object: name form, label keys and values."""
    meta = manifest["metadata"]
    if manifest["kind"] in ("Workspace",):
        assert DNS_LABEL.match(meta["name"]), meta["name"]  # KAITO's webhook: a DNS-1123 label
    else:
        assert DNS_SUBDOMAIN.match(meta["name"]) and len(meta["name"]) <= 253, meta["name"]
    for key, value in meta.get("labels", {}).items():
        assert LABEL_KEY.match(key) and len(key.split("/")[-1]) <= 63, key
        assert LABEL_VALUE.match(value), (key, value)
    for key, value in meta.get("annotations", {}).items():
        assert isinstance(value, str), key


RESTRICTED_NODECLAIM_KEYS = {
    "beta.kubernetes.io/instance-type", "failure-domain.beta.kubernetes.io/region", "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch", "failure-domain.beta.kubernetes.io/zone", "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region", "node.kubernetes.io/instance-type", "kubernetes.io/arch", "kubernetes.io/os",
    "node.kubernetes.io/windows-build",
}


def check_nodeclaim_cel_rules(manifest: dict[str, Any]) -> None:
    """Karpenter's CEL rules on requirement keys and operators (crd-nodeclaims-karpenter-v1.yaml)."""
    for req in manifest["spec"]["requirements"]:
        key, domain = req["key"], req["key"].split("/")[0] if "/" in req["key"] else ""
        if domain.endswith("kubernetes.io"):
            assert (key in RESTRICTED_NODECLAIM_KEYS or domain.endswith("node.kubernetes.io")
                    or domain.endswith("node-restriction.kubernetes.io")), key
        assert not domain.endswith("k8s.io") or domain.endswith("kops.k8s.io"), key
        assert key in ("karpenter.sh/capacity-type", "karpenter.sh/nodepool") or not domain.endswith("karpenter.sh")
        assert key != "kubernetes.io/hostname"
        if req["operator"] == "In":
            assert req["values"], key
        if req["operator"] in ("Gt", "Lt"):
            assert len(req["values"]) == 1 and int(req["values"][0]) >= 0
    ref = manifest["spec"]["nodeClassRef"]
    assert ref["group"] and ref["kind"] and ref["name"]


# ------------------------------------------------------------------------------------------------
# Models: every supported preset on its default SKU
# ------------------------------------------------------------------------------------------------

def supported_presets() -> list[str]:
    return sorted(p.name for p in load_catalog().presets() if p.status == "supported")


def preset_models(mode: str, **changes: Any) -> Iterator[tuple[str, Any]]:
    for name in supported_presets():
        yield name, make_model(name, mode, **changes)


def rendered_objects(mode: str, **changes: Any) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, model in preset_models(mode, **changes):
        for obj in render.render_model(model, config(), REVISION).objects:
            out.append((f"{name} ({mode}) {obj.ref}", obj.manifest))
    return out


FULL = {"config": (("max-model-len", 2048),), "model_access_secret": "hf-token"}


def test_every_supported_preset_has_a_default_sku() -> None:
    presets = supported_presets()
    assert len(presets) >= 50
    for name, model in preset_models("kaito"):
        assert model.sku is not None and model.nodes >= 1, name


def by_kind(objects: list[tuple[str, dict[str, Any]]], kind: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(w, m) for w, m in objects if m["kind"] == kind]
    assert found, f"no {kind} rendered"
    return found


@pytest.mark.parametrize("mode", ["kaito", "nodeclaim", "aks", "byo"])
def test_v1beta1_workspaces_match_kaitos_crd(shared_kaito: Path, mode: str) -> None:
    schema = crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1")
    for where, manifest in by_kind(rendered_objects(mode, **FULL), "Workspace"):
        validate(manifest, schema, where)
        check_metadata(manifest)
        has_instance_type = "instanceType" in manifest["resource"]
        assert has_instance_type == (mode == "kaito"), where  # NAP form only in kaito mode (webhook §4.1.3)


@pytest.mark.parametrize("mode", ["kaito", "nodeclaim", "aks", "byo"])
def test_v1beta1_workspaces_match_our_crd(mode: str) -> None:
    schema = crd_schema(own_crd("workspaces.kaito.sh"), "v1beta1")
    for where, manifest in by_kind(rendered_objects(mode, **FULL), "Workspace"):
        validate(manifest, schema, where)


def test_nodeclaims_match_karpenters_crd_and_rules(shared_kaito: Path) -> None:
    schema = crd_schema(shared_kaito / "crd-nodeclaims-karpenter-v1.yaml", "v1")
    for where, manifest in by_kind(rendered_objects("nodeclaim"), "NodeClaim"):
        validate(manifest, schema, where)
        check_metadata(manifest)
        check_nodeclaim_cel_rules(manifest)
        assert not render.RESERVED_LABEL_KEYS & set(manifest["metadata"]["labels"]), where


def test_nodeclaims_match_our_crd() -> None:
    schema = crd_schema(own_crd("nodeclaims.karpenter.sh"), "v1")
    for where, manifest in by_kind(rendered_objects("nodeclaim"), "NodeClaim"):
        validate(manifest, schema, where)


def test_machine_mode_matches_the_legacy_crds(shared_kaito: Path) -> None:
    machine_schema = crd_schema(shared_kaito / "crd-machines-karpenter-v1alpha5.yaml", "v1alpha5")
    legacy_ws = crd_schema(shared_kaito / "crd-workspaces-v0.3-legacy.yaml", "v1alpha1")
    current_ws = crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1alpha1")
    objects = rendered_objects("machine", **FULL)
    for where, manifest in by_kind(objects, "Machine"):
        validate(manifest, machine_schema, where)
        check_metadata(manifest)
    for where, manifest in by_kind(objects, "Workspace"):
        validate(manifest, legacy_ws, where)
        validate(manifest, current_ws, where)
        check_metadata(manifest)


def test_machine_mode_matches_our_crds() -> None:
    machine_schema = crd_schema(own_crd("machines.karpenter.sh"), "v1alpha5")
    ws_schema = crd_schema(own_crd("workspaces.kaito.sh"), "v1alpha1")
    objects = rendered_objects("machine", **FULL)
    for where, manifest in by_kind(objects, "Machine"):
        validate(manifest, machine_schema, where)
    for where, manifest in by_kind(objects, "Workspace"):
        validate(manifest, ws_schema, where)


def test_configmaps_are_valid_core_objects() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for where, manifest in by_kind(rendered_objects("kaito", **FULL), "ConfigMap"):
        check_metadata(manifest)
        try:
            kubernetes_validate.validate(manifest, "1.30", strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{where}: {err}")
        assert yaml.safe_load(manifest["data"]["inference_config.yaml"]) == {"vllm": {"max-model-len": 2048}}


def test_kaitos_own_examples_pass_the_schema_conversion(shared_kaito: Path) -> None:
    """The converter is not too strict: KAITO's examples validate against KAITO's CRD."""
    schema = crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1")
    seen = 0
    for path in sorted((shared_kaito / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Workspace":
                validate(doc, schema, path.name)
                seen += 1
    assert seen >= 2
    bad = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "x"},
           "resource": {"labelSelector": {}, "instanceTyp": "typo"}}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad)), "unknown fields must be reported"


MODE_MODEL = """\
apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model: {model}
  provisioning: {mode}
  nodes: 2
  config:
    max-model-len: 4096
"""


def test_a_loaded_repository_in_every_mode_renders_valid_objects(shared_kaito: Path, tmp_path: Path) -> None:
    """End to end through the real loader and resolver: files -> RepoLoad -> render -> KAITO's schemas."""
    from gitops_kaito.repo.loader import load_repository

    modes = ["kaito", "nodeclaim", "machine", "aks", "byo"]
    for mode in modes:
        path = tmp_path / "models" / "ml" / f"m-{mode}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(MODE_MODEL.format(name=f"m-{mode}", model="phi-4-mini-instruct", mode=mode))
    load = load_repository(tmp_path)
    assert not load.errors, [str(e) for e in load.errors]
    schemas = {
        ("kaito.sh/v1beta1", "Workspace"): crd_schema(shared_kaito / "crd-workspaces-v0.12.yaml", "v1beta1"),
        ("kaito.sh/v1alpha1", "Workspace"): crd_schema(shared_kaito / "crd-workspaces-v0.3-legacy.yaml", "v1alpha1"),
        ("karpenter.sh/v1", "NodeClaim"): crd_schema(shared_kaito / "crd-nodeclaims-karpenter-v1.yaml", "v1"),
        ("karpenter.sh/v1alpha5", "Machine"): crd_schema(shared_kaito / "crd-machines-karpenter-v1alpha5.yaml",
                                                         "v1alpha5"),
    }
    rendered = render.render_repository(load, REVISION)
    seen = set()
    for r in rendered:
        for obj in r.objects:
            key = (obj.manifest["apiVersion"], obj.manifest["kind"])
            seen.add(key)
            check_metadata(obj.manifest)
            if key in schemas:
                validate(obj.manifest, schemas[key], str(obj.ref))
    assert seen == {*schemas, ("v1", "ConfigMap")}
    by_mode = {r.model.provisioning: [o.manifest["kind"] for o in r.objects] for r in rendered}
    assert by_mode["aks"] == by_mode["byo"] == by_mode["kaito"] == ["ConfigMap", "Workspace"]
    assert by_mode["nodeclaim"][-1] == by_mode["machine"][-1] == "Workspace"
    assert by_mode["nodeclaim"][1:-1] == ["NodeClaim", "NodeClaim"]  # one per node
    assert by_mode["machine"][1:-1] == ["Machine", "Machine"]


# ------------------------------------------------------------------------------------------------
# InferenceSets: every supported preset, static and autoscaled replicas, kaito and byo
# ------------------------------------------------------------------------------------------------

def inferencesets(mode: str, autoscaled: bool) -> list[tuple[str, dict[str, Any]]]:
    from gitops_kaito.model.objects import merge_partial
    from gitops_kaito.repo.modelrequest import Autoscale

    scale = Autoscale(min_replicas=1, max_replicas=4, threshold=10) if autoscaled else None
    out = []
    for name in supported_presets():
        model = make_model(name, mode, replicas=None if autoscaled else 3, autoscale=scale, **FULL)
        model = dataclasses.replace(model, replicas=1 if autoscaled else 3)
        for obj in render.render_model(model, config(), REVISION).objects:
            if obj.ref.kind == "InferenceSet":
                # as created: the create-only replicas applied with it
                out.append((f"{name} ({mode}) {obj.ref}", merge_partial(obj.manifest, obj.create_only or {})))
    assert out
    return out


@pytest.mark.parametrize("autoscaled", [False, True])
@pytest.mark.parametrize("mode", ["kaito", "byo"])
def test_inferencesets_match_kaitos_crd(shared_kaito: Path, mode: str, autoscaled: bool) -> None:
    schema = crd_schema(shared_kaito / "crd-inferencesets-v0.12.yaml", "v1beta1")
    for where, manifest in inferencesets(mode, autoscaled):
        validate(manifest, schema, where)
        check_metadata(manifest)
        assert manifest["spec"]["replicas"] == (1 if autoscaled else 3), where
        # KAITO's webhook (api/v1beta1/inferenceset_validation.go): instanceType required with NAP, empty with byo
        assert ("resource" in manifest["spec"]["template"]) == (mode == "kaito"), where


@pytest.mark.parametrize("mode", ["kaito", "byo"])
def test_inferencesets_match_our_crd(mode: str) -> None:
    schema = crd_schema(own_crd("inferencesets.kaito.sh"), "v1beta1")
    for where, manifest in inferencesets(mode, autoscaled=True):
        validate(manifest, schema, where)
