"""GPU nodes declared in Git are never expired by surprise: NodeClaims are rendered with `expireAfter: Never` (or
what `nodeClaims:` in gitops-kaito.yaml says), and a Karpenter that expires NodeClaims leaves them alone while it
expires one that carries Karpenter's default (720h)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.model.ownership import LABEL_MODEL
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.sandbox import Sandbox, SandboxSettings
from gitops_kaito.sandbox.controllers.karpenter import expire_after_seconds
from gitops_kaito.sandbox.controllers.timing import Timing
from tests.fixtures_cluster import wait_until
from tests.gitfixtures import model_file

pytestmark = pytest.mark.cluster

REV = "main@sha1:" + "e" * 40
SKU = "Standard_NC24ads_A100_v4"
MODEL = model_file("phi") + "  provisioning: nodeclaim\n" + f"  instanceType: {SKU}\n"
# 720h pass in 2 s: Karpenter's default lifetime is over long before the test's timeout.
COMPRESSED = Timing(expiry_scale=720 * 3600 / 2)


def repo_with(tmp_path: Path, config: str = "") -> Path:
    repo = tmp_path / "repo"
    (repo / "models" / "ml").mkdir(parents=True)
    (repo / "models" / "ml" / "phi.yaml").write_text(MODEL)
    if config:
        (repo / "gitops-kaito.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n" + config)
    return repo


def nodeclaims(custom: client.CustomObjectsApi, selector: str = "") -> dict[str, dict[str, Any]]:
    items = custom.list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", label_selector=selector)["items"]
    return {n["metadata"]["name"]: n for n in items if not n["metadata"].get("deletionTimestamp")}


@pytest.fixture
def expiring() -> Iterator[Sandbox]:
    settings = SandboxSettings(speed="fast", node_provisioning="byo", namespaces=("default", "ml"), timing=COMPRESSED)
    with Sandbox(settings) as sb:
        yield sb


def test_our_nodeclaims_outlive_karpenters_default_expiry(expiring: Sandbox, tmp_path: Path) -> None:
    repo = repo_with(tmp_path)
    with Kube.connect(expiring.kubeconfig_path) as kube:
        custom = client.CustomObjectsApi(kube.api_client)
        run_pass(repo, kube, revision=REV)
        ours = nodeclaims(custom, f"{LABEL_MODEL}=ml.phi")
        assert [n["spec"]["expireAfter"] for n in ours.values()] == ["Never"]
        assert "terminationGracePeriod" not in next(iter(ours.values()))["spec"]

        # Made after ours, without expireAfter: the CRD default (720h) applies, and Karpenter expires it.
        custom.create_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", {
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim", "metadata": {"name": "default-lifetime"},
            "spec": {"nodeClassRef": {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"},
                     "requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                       "values": [SKU]}]}})
        made = custom.get_cluster_custom_object("karpenter.sh", "v1", "nodeclaims", "default-lifetime")
        assert made["spec"]["expireAfter"] == "720h"
        wait_until(lambda: "default-lifetime" not in nodeclaims(custom), timeout=20,
                   what="Karpenter to expire the NodeClaim with the default 720h")
        assert set(nodeclaims(custom, f"{LABEL_MODEL}=ml.phi")) == set(ours), "ours is older and still there"


def test_expire_after_and_termination_grace_period_come_from_the_repository(byo_sandbox: Sandbox,
                                                                            tmp_path: Path) -> None:
    repo = repo_with(tmp_path, "nodeClaims:\n  expireAfter: 2160h\n  terminationGracePeriod: 1h30m\n")
    with Kube.connect(byo_sandbox.kubeconfig_path) as kube:
        custom = client.CustomObjectsApi(kube.api_client)
        run_pass(repo, kube, revision=REV)
        [spec] = [n["spec"] for n in nodeclaims(custom, f"{LABEL_MODEL}=ml.phi").values()]
        assert spec["expireAfter"] == "2160h" and spec["terminationGracePeriod"] == "1h30m"
        # changing the setting later does not replace (drain) the existing node: it applies to new NodeClaims
        (repo / "gitops-kaito.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n")
        result = run_pass(repo, kube, revision=REV)
        assert [c.action for c in result.plan.changes if c.ref.kind == "NodeClaim"] == ["noop"]


@pytest.mark.parametrize("value", ["30d", "never", "1h 30m", ""])
def test_a_bad_expire_after_is_an_error_with_its_line(tmp_path: Path, value: str) -> None:
    repo = repo_with(tmp_path, f"nodeClaims:\n  expireAfter: '{value}'\n")
    load = load_repository(repo)
    assert not load.config_ok
    [error] = [e for e in load.errors if e.path == "gitops-kaito.yaml"]
    assert error.line == 4 and "nodeClaims.expireAfter" in error.message and "Never" in error.message


def test_expire_after_parsing_follows_the_crd_pattern() -> None:
    assert expire_after_seconds({"spec": {"expireAfter": "1h30m"}}) == 5400
    assert expire_after_seconds({"spec": {"expireAfter": "Never"}}) is None
    assert expire_after_seconds({"spec": {}}) is None
