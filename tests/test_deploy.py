"""deploy/ renders with kustomize and every manifest passes the Kubernetes schemas; the pod runs locked down."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot run `kubectl kustomize deploy/`")
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_manifests_pass_kubernetes_schemas(rendered: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(["Namespace", "ServiceAccount", "Role", "ClusterRole", "ClusterRole", "RoleBinding",
                            "ClusterRoleBinding", "ClusterRoleBinding", "ConfigMap", "Service", "Deployment"])
    for doc in rendered:
        kubernetes_validate.validate(doc, "1.32", strict=True)


def test_pod_is_non_root_read_only_with_limits_and_probes(rendered: list[dict[str, Any]]) -> None:
    deployment = next(d for d in rendered if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert all(d["metadata"].get("namespace") == "gitops-kaito" for d in rendered
               if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"))


def test_cluster_role_grants_no_secrets_and_no_wildcards(rendered: list[dict[str, Any]]) -> None:
    roles = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "ClusterRole"}
    for rule in roles["gitops-kaito"]["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "secrets" not in rule["resources"], "the reconciler's own role reads no Secrets"
    # The modelAccessSecret check reads key names by get only (never list/watch), from a role of its own that an
    # operator can leave out.
    assert roles["gitops-kaito-secret-keys"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]
