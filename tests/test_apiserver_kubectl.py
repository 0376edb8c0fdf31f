"""kubectl against the sandbox API emulator: `get` (server-side Table) and `apply --server-side`.

Skipped when kubectl is not installed; the emulator serves no /openapi, so apply needs --validate=false.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from kubernetes import client, config

from gitops_kaito.sandbox.apiserver import ApiServer

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed on this machine")

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "things.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"plural": "things", "singular": "thing", "kind": "Thing", "shortNames": ["th"]},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]},
}

MANIFEST = """\
apiVersion: example.com/v1
kind: Thing
metadata:
  name: t1
  namespace: default
spec:
  size: {size}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: c1
  namespace: default
data:
  k: v
"""


@pytest.fixture
def kube(server: ApiServer, tmp_path: Path) -> tuple[ApiServer, Path]:
    kc = server.write_kubeconfig(tmp_path / "kc.yaml")
    client.ApiextensionsV1Api(config.new_client_from_config(str(kc))).create_custom_resource_definition(CRD)
    return server, kc


def kubectl(kc: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert KUBECTL is not None
    return subprocess.run([KUBECTL, "--kubeconfig", str(kc), *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={"HOME": str(kc.parent), "PATH": "/usr/bin:/bin"})


def test_kubectl_apply_server_side_and_get(kube: tuple[ApiServer, Path]) -> None:
    srv, kc = kube
    applied = kubectl(kc, "apply", "--server-side", "--validate=false", "-f", "-", stdin=MANIFEST.format(size=2))
    assert applied.returncode == 0, applied.stderr
    assert "thing.example.com/t1 serverside-applied" in applied.stdout
    table = kubectl(kc, "get", "things", "-n", "default")
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "SIZE"] and row.split() == ["t1", "2"]
    again = kubectl(kc, "apply", "--server-side", "--validate=false", "-f", "-", stdin=MANIFEST.format(size=3))
    assert again.returncode == 0, again.stderr
    obj = json.loads(kubectl(kc, "get", "th", "t1", "-n", "default", "-o", "json", "--show-managed-fields").stdout)
    assert obj["spec"]["size"] == 3
    assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["kubectl"]
    assert srv.request_log.count(user_agent_prefix="kubectl", method="PATCH") == 4
    listed = kubectl(kc, "get", "configmaps", "-A")
    assert "c1" in listed.stdout and listed.returncode == 0
