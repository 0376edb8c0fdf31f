"""kubectl against the sandbox API emulator: `get` (server-side Table) and `apply --server-side`.

Skipped when kubectl is not installed; the emulator serves no /openapi, so apply needs --validate=false.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from gitops_kaito.sandbox.apiserver import ApiServer
from tests.fixtures_cluster import wait_until

KUBECTL = shutil.which("kubectl")
REPO_ROOT = Path(__file__).resolve().parent.parent
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


# -- kubectl sees the sandbox as it sees a cluster -----------------------------------------------------------------

def _admin(kc: Path) -> client.ApiClient:
    return config.new_client_from_config(str(kc))


def _event(name: str, last: str, reason: str, kind: str = "ConfigMap", type_: str = "Normal") -> dict[str, Any]:
    return {"metadata": {"name": name}, "involvedObject": {"kind": kind, "name": f"{name}-obj", "namespace": "default"},
            "reason": reason, "message": f"{reason} happened", "type": type_, "count": 2,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": last, "source": {"component": "tester"}}


def test_kubectl_sorts_events_by_last_timestamp_with_the_cluster_columns(kube: tuple[ApiServer, Path]) -> None:
    _, kc = kube
    core = client.CoreV1Api(_admin(kc))
    for name, last, reason in (("b", "2026-01-01T10:00:00Z", "Second"), ("a", "2026-01-01T11:00:00Z", "Third"),
                               ("c", "2026-01-01T09:00:00Z", "First")):
        core.create_namespaced_event("default", _event(name, last, reason))
    done = kubectl(kc, "get", "events", "-n", "default", "--sort-by=.lastTimestamp")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], done.stdout
    assert [row.split()[2] for row in rows] == ["First", "Second", "Third"], done.stdout
    assert rows[0].split()[3] == "configmap/c-obj"
    wide = kubectl(kc, "get", "events", "-n", "default", "-o", "wide", "--sort-by=.lastTimestamp")
    assert wide.stdout.splitlines()[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE",
                                                   "MESSAGE", "FIRST", "SEEN", "COUNT", "NAME"], wide.stdout
    assert wide.stdout.splitlines()[1].split()[-2:] == ["2", "c"], wide.stdout  # COUNT and NAME of the first


def test_kubectl_sorts_workspaces_by_status_state(kube: tuple[ApiServer, Path]) -> None:
    _, kc = kube
    api = _admin(kc)
    crd = yaml.safe_load((REPO_ROOT / "deploy" / "crds" / "workspaces.kaito.sh.yaml").read_text())
    client.ApiextensionsV1Api(api).create_custom_resource_definition(crd)
    custom = client.CustomObjectsApi(api)
    for name, state in (("alpha", "Ready"), ("beta", "Failed"), ("gamma", "Pending")):
        custom.create_namespaced_custom_object("kaito.sh", "v1beta1", "default", "workspaces", {
            "apiVersion": "kaito.sh/v1beta1", "kind": "Workspace", "metadata": {"name": name},
            "resource": {"labelSelector": {"matchLabels": {"apps": name}}},
            "inference": {"preset": {"name": "phi-4-mini-instruct"}}})
        custom.patch_namespaced_custom_object_status("kaito.sh", "v1beta1", "default", "workspaces", name,
                                                     {"status": {"state": state}})
    done = kubectl(kc, "get", "workspaces", "-n", "default", "--sort-by=.status.state")
    assert done.returncode == 0, done.stderr
    rows = done.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["beta", "gamma", "alpha"], done.stdout


def test_kubectl_get_nodes_shows_status_roles_and_version(kube: tuple[ApiServer, Path]) -> None:
    _, kc = kube
    core = client.CoreV1Api(_admin(kc))
    core.create_node({"metadata": {"name": "gpu-1", "labels": {"node-role.kubernetes.io/gpu": ""}}})
    core.patch_node_status("gpu-1", {"status": {
        "conditions": [{"type": "Ready", "status": "True"}],
        "nodeInfo": {"kubeletVersion": "v1.30.0", "architecture": "amd64", "bootID": "b", "containerRuntimeVersion": "c",
                     "kernelVersion": "k", "kubeProxyVersion": "v1.30.0", "machineID": "m", "operatingSystem": "linux",
                     "osImage": "Ubuntu", "systemUUID": "s"}}})
    core.create_node({"metadata": {"name": "cpu-1"}})
    core.patch_node_status("cpu-1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
    done = kubectl(kc, "get", "nodes")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], done.stdout
    cells = {row.split()[0]: row.split() for row in rows}
    assert cells["gpu-1"][1:3] == ["Ready", "gpu"] and cells["gpu-1"][-1] == "v1.30.0", done.stdout
    assert cells["cpu-1"][1:3] == ["NotReady", "<none>"], done.stdout


def test_events_k8s_io_lists_the_core_events(kube: tuple[ApiServer, Path]) -> None:
    _, kc = kube
    client.CoreV1Api(_admin(kc)).create_namespaced_event("default", _event("e1", "2026-01-01T10:00:00Z", "Made"))
    done = kubectl(kc, "get", "events.v1.events.k8s.io", "-n", "default", "-o", "json")
    assert done.returncode == 0, done.stderr
    (item,) = json.loads(done.stdout)["items"]
    assert item["apiVersion"] == "events.k8s.io/v1" and item["metadata"]["name"] == "e1"
    assert item["regarding"]["name"] == "e1-obj" and item["note"] == "Made happened" and item["deprecatedCount"] == 2
    table = kubectl(kc, "get", "events.events.k8s.io", "-n", "default")
    assert "configmap/e1-obj" in table.stdout and "Made happened" in table.stdout, table.stdout


def test_kubectl_watch_rows_keep_their_columns(kube: tuple[ApiServer, Path]) -> None:
    _, kc = kube
    api = _admin(kc)
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("example.com", "v1", "default", "things", {
        "apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t1"}, "spec": {"size": 2}})
    assert KUBECTL is not None
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(kc), "get", "things", "-n", "default", "-w"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={"HOME": str(kc.parent), "PATH": "/usr/bin:/bin"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout or ()),
                              daemon=True)
    reader.start()
    try:
        wait_until(lambda: len(lines) >= 2, timeout=30, what="the watch's first rows")
        custom.patch_namespaced_custom_object("example.com", "v1", "default", "things", "t1", {"spec": {"size": 5}})
        wait_until(lambda: len(lines) >= 3, timeout=30, what="the watch's row for the change")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert lines[0].split() == ["NAME", "SIZE"], lines
    assert lines[1].split() == ["t1", "2"] and lines[2].split() == ["t1", "5"], lines
