"""Sync passes against the sandbox with simulated KAITO and Karpenter running: what they add is never our diff.

KAITO's finalizer, annotations, status and its own NodeClaims must neither show as drift nor be pruned.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.model.objects import MANAGED_KINDS
from gitops_kaito.reconcile.apply import ApplyOptions
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.repo.config import API_VERSION, KIND
from gitops_kaito.sandbox import Sandbox
from tests.fixtures_cluster import wait_until

pytestmark = pytest.mark.cluster

UA = "gitops-kaito/"
HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"


@pytest.fixture
def kube(sandbox: Sandbox) -> Iterator[Kube]:
    with Kube.connect(sandbox.kubeconfig_path) as k:
        yield k


def _write(repo: Path, name: str, spec: str) -> None:
    path = repo / "models" / "default" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HEADER}metadata:\n  name: {name}\nspec:\n{spec}")


def _workspaces(api: client.ApiClient) -> dict[str, dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object("kaito.sh", "v1beta1", "default",
                                                                       "workspaces")["items"]
    return {w["metadata"]["name"]: w for w in items}


def _kaito_nodeclaims(api: client.ApiClient) -> set[str]:
    items = client.CustomObjectsApi(api).list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]
    return {n["metadata"]["name"] for n in items if "kaito.sh/workspace" in (n["metadata"].get("labels") or {})}


def _processed_by_kaito(api: client.ApiClient, names: set[str]) -> bool:
    ws = _workspaces(api)
    return names <= set(ws) and all(
        ws[n]["metadata"].get("finalizers") and any(k.startswith("workspace.kaito.io/")
                                                    for k in ws[n]["metadata"].get("annotations") or {})
        and (ws[n].get("status") or {}).get("conditions") for n in names)


def _settled_by_kaito(api: client.ApiClient, names: set[str]) -> bool:
    """KAITO wrote its last condition (WorkspaceSucceeded): it writes these Workspaces no more. Until then a delete
    is refused as stale whenever a status write falls between the pass's read and its delete, and a pass gives up
    after a few such refusals (planned again by the next pass): a single-pass assertion must wait for this."""
    ws = _workspaces(api)
    return names <= set(ws) and all(
        any(c.get("type") == "WorkspaceSucceeded" and c.get("status") == "True"
            for c in (ws[n].get("status") or {}).get("conditions") or []) for n in names)


def test_what_kaito_adds_is_not_drift_and_its_nodeclaims_are_never_pruned(
        sandbox: Sandbox, kube: Kube, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    for name, model in (("phi", "phi-4-mini-instruct"), ("qwen", "qwen2.5-coder-7b-instruct"),
                        ("mistral", "mistral-7b-instruct")):
        _write(repo, name, f"  model: {model}\n")
    api = client.ApiClient(kube.api_client.configuration)
    assert run_pass(repo, kube, revision="main@sha1:1").created == 3
    wait_until(lambda: _processed_by_kaito(api, {"phi", "qwen", "mistral"}), timeout=30,
               what="KAITO to take the Workspaces (finalizer, annotations, status)")
    claims = wait_until(lambda: _kaito_nodeclaims(api) if len(_kaito_nodeclaims(api)) >= 3 else None,
                        timeout=30, what="KAITO's NodeClaims")

    since = time.time()
    again = run_pass(repo, kube, revision="main@sha1:2")
    assert not again.plan.has_changes, [(str(c.ref), c.patch) for c in again.plan.pending]
    def ours() -> list[Any]:
        return [e for e in sandbox.server.request_log.select(user_agent_prefix=UA) if e.time >= since]

    wait_until(lambda: len(ours()) >= len(MANAGED_KINDS), timeout=10, what="the pass's requests logged")
    assert [e.verb for e in ours()] == ["list"] * len(MANAGED_KINDS)  # logged after replying: waited for above

    wait_until(lambda: _settled_by_kaito(api, {"phi", "qwen", "mistral"}), timeout=30, what="KAITO to finish")
    (repo / "models" / "default" / "phi.yaml").unlink()
    since = time.time()
    pruned = run_pass(repo, kube, revision="main@sha1:3")
    assert pruned.pruned == 1 and [str(c.ref) for c in pruned.plan.pending] == ["Workspace/default/phi"]
    wait_until(lambda: any(e.verb == "delete" for e in ours()), timeout=10, what="the delete logged")
    deletes = [e.path for e in ours() if e.verb == "delete"]
    # KAITO may write the Workspace between our read and our delete: that delete is refused on its preconditions,
    # read and planned again, and sent again; only ever for phi.
    assert set(deletes) == {"/apis/kaito.sh/v1beta1/namespaces/default/workspaces/phi"}
    wait_until(lambda: "phi" not in _workspaces(api), timeout=30, what="KAITO to release the Workspace")
    survivors = _kaito_nodeclaims(api)
    assert {c for c in claims if c in survivors}, "KAITO's NodeClaims of the kept models survive"
    assert set(_workspaces(api)) == {"qwen", "mistral"}


def test_a_replace_waits_for_kaitos_finalizer_then_recreates(sandbox: Sandbox, kube: Kube, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    _write(repo, "phi", "  model: phi-4-mini-instruct\n")
    api = client.ApiClient(kube.api_client.configuration)
    run_pass(repo, kube, revision="main@sha1:1")
    wait_until(lambda: _processed_by_kaito(api, {"phi"}) and _settled_by_kaito(api, {"phi"}), timeout=30,
               what="KAITO's finalizer and its last condition")
    uid = _workspaces(api)["phi"]["metadata"]["uid"]
    _write(repo, "phi", "  model: phi-3.5-mini-instruct\n")
    (repo / "gitops-kaito.yaml").write_text(f"apiVersion: {API_VERSION}\nkind: {KIND}\nreplacePolicy: auto\n")
    result = run_pass(repo, kube, revision="main@sha1:2", options=ApplyOptions(replace_wait_s=30, poll_s=0.05))
    assert result.replaced == 1, result.outcomes
    ws = _workspaces(api)["phi"]
    assert ws["metadata"]["uid"] != uid and ws["inference"]["preset"]["name"] == "phi-3.5-mini-instruct"
