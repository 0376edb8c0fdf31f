"""The project's own CRDs in deploy/crds/: their shape, and that they accept KAITO's own manifests.

Schemas are checked with jsonschema here (no server); tests/test_sandbox_controllers.py installs them through the API.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gitops_kaito.model.resources import data_path

CRD_DIR = data_path("deploy/crds")


def _crds() -> dict[str, dict[str, Any]]:
    crds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        crds[doc["metadata"]["name"]] = doc
    return crds


def _as_jsonschema(node: Any) -> Any:
    """Structural schema -> JSON schema: int-or-string and preserve-unknown-fields need no translation beyond dropping x-*."""
    if isinstance(node, dict):
        out = {k: _as_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
        if node.get("x-kubernetes-int-or-string"):
            out.pop("anyOf", None)
            out["type"] = ["integer", "string"]
        return out
    if isinstance(node, list):
        return [_as_jsonschema(v) for v in node]
    return node


def _validator(crd: dict[str, Any], version: str) -> jsonschema.Draft7Validator:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return jsonschema.Draft7Validator(_as_jsonschema(v["schema"]["openAPIV3Schema"]))
    raise AssertionError(f"{crd['metadata']['name']} has no version {version}")


def test_crd_files_are_the_six_kinds() -> None:
    assert set(_crds()) == {"workspaces.kaito.sh", "nodeclaims.karpenter.sh", "machines.karpenter.sh",
                            "inferencesets.kaito.sh", "ragengines.kaito.sh", "nodepools.karpenter.sh"}


def test_workspace_versions_printer_columns_and_status() -> None:
    crd = _crds()["workspaces.kaito.sh"]
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["wk", "wks"]
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert (versions["v1alpha1"]["served"], versions["v1alpha1"]["storage"]) == (True, False)
    assert (versions["v1beta1"]["served"], versions["v1beta1"]["storage"]) == (True, True)
    for v in versions.values():
        assert v["subresources"] == {"status": {}}
        props = v["schema"]["openAPIV3Schema"]["properties"]
        assert "spec" not in props and {"resource", "inference", "tuning", "status"} <= set(props)
    cols = [c["name"] for c in versions["v1beta1"]["additionalPrinterColumns"]]
    assert cols == ["Instance", "ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded",
                    "TargetNodeCount", "State", "Age"]
    assert [c["name"] for c in versions["v1alpha1"]["additionalPrinterColumns"]] == [
        "Instance", "ResourceReady", "InferenceReady", "JobStarted", "WorkspaceSucceeded", "Age"]


def test_karpenter_crds_are_cluster_scoped_with_status() -> None:
    crds = _crds()
    for name, version in (("nodeclaims.karpenter.sh", "v1"), ("machines.karpenter.sh", "v1alpha5")):
        crd = crds[name]
        assert crd["spec"]["scope"] == "Cluster"
        assert [v["name"] for v in crd["spec"]["versions"]] == [version]
        assert crd["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_kaito_examples_validate_against_workspace_schema(shared_kaito: Path) -> None:
    crd = _crds()["workspaces.kaito.sh"]
    seen = 0
    for path in sorted((shared_kaito / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Workspace":
                version = doc["apiVersion"].split("/")[1]
                errors = list(_validator(crd, version).iter_errors(doc))
                assert not errors, f"{path.name}: {[e.message for e in errors]}"
                seen += 1
    assert seen >= 3


def test_workspace_schema_rejects_missing_label_selector_and_bad_condition_status() -> None:
    validator = _validator(_crds()["workspaces.kaito.sh"], "v1beta1")
    good = {"apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": "w"},
            "resource": {"instanceType": "Standard_NC24ads_A100_v4", "labelSelector": {"matchLabels": {"a": "b"}}},
            "inference": {"preset": {"name": "phi-4-mini-instruct"}}}
    assert not list(validator.iter_errors(good))
    no_selector = copy.deepcopy(good)
    del no_selector["resource"]["labelSelector"]
    assert list(validator.iter_errors(no_selector))
    bad_status = copy.deepcopy(good)
    bad_status["status"] = {"conditions": [{"type": "InferenceReady", "status": "Maybe"}]}
    assert list(validator.iter_errors(bad_status))


def _kaito_nodeclaim() -> dict[str, Any]:
    """A NodeClaim as KAITO's GenerateNodeClaimManifestWithOptions builds it (FACTS.md 5.2)."""
    return {
        "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
        "metadata": {"name": "ws0123456ab", "labels": {"karpenter.sh/nodepool": "kaito",
                                                           "kaito.sh/workspace": "w", "kaito.sh/workspacenamespace": "d"},
                     "annotations": {"karpenter.sh/do-not-disrupt": "true", "kaito.sh/node-image-family": "ubuntu"}},
        "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                 "taints": [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}],
                 "requirements": [{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["kaito"]},
                                  {"key": "node.kubernetes.io/instance-type", "operator": "In",
                                   "values": ["Standard_NC24ads_A100_v4"]}],
                 "resources": {"requests": {"storage": "87Gi"}}},
    }


def test_nodeclaim_schema_accepts_kaito_shape_and_rejects_bad_operator() -> None:
    validator = _validator(_crds()["nodeclaims.karpenter.sh"], "v1")
    claim = _kaito_nodeclaim()
    assert not list(validator.iter_errors(claim))
    claim["spec"]["requirements"][0]["operator"] = "Maybe"
    assert list(validator.iter_errors(claim))
    del claim["spec"]["nodeClassRef"]
    assert any("nodeClassRef" in e.message for e in validator.iter_errors(claim))


@pytest.mark.parametrize("name", ["nodeclaims.karpenter.sh", "machines.karpenter.sh", "workspaces.kaito.sh"])
def test_our_schemas_accept_what_the_real_crds_declare_as_required(name: str, shared_kaito: Path) -> None:
    """Every field KAITO's/Karpenter's CRD requires at the top level is required by ours too."""
    real_file = {"nodeclaims.karpenter.sh": "crd-nodeclaims-karpenter-v1.yaml",
                 "machines.karpenter.sh": "crd-machines-karpenter-v1alpha5.yaml",
                 "workspaces.kaito.sh": "crd-workspaces-v0.12.yaml"}[name]
    real = yaml.safe_load((shared_kaito / real_file).read_text())
    ours = _crds()[name]
    real_versions = {v["name"]: v for v in real["spec"]["versions"]}
    for v in ours["spec"]["versions"]:
        rs = real_versions[v["name"]]["schema"]["openAPIV3Schema"]
        os_ = v["schema"]["openAPIV3Schema"]
        assert set(rs.get("required", [])) == set(os_.get("required", []))
        for field, sub in rs.get("properties", {}).items():
            if isinstance(sub, dict) and sub.get("required"):
                assert set(sub["required"]) == set(os_["properties"][field].get("required", [])), field
        assert (real_versions[v["name"]]["served"], real_versions[v["name"]]["storage"]) == (v["served"], v["storage"])


def test_the_inferenceset_crd_is_kaitos_own_byte_copy(shared_kaito: Path) -> None:
    ours = (CRD_DIR / "inferencesets.kaito.sh.yaml").read_text()
    body = ours[ours.index("---\n"):]  # after the header comment citing the upstream path and tag
    assert body == (shared_kaito / "crd-inferencesets-v0.12.yaml").read_text()
    assert "config/crd/bases/kaito.sh_inferencesets.yaml at tag v0.12.0" in ours
