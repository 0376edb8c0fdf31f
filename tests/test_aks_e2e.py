"""aks mode end to end: a repository (gitops-kaito.yaml + a model file) -> pools in the local ARM endpoint -> pruned."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from gitops_kaito.provision.agentpool import desired_pools, plan_pools
from gitops_kaito.provision.aks import StaticTokenCredential, merge_settings
from gitops_kaito.provision.provisioner import AgentPoolProvisioner
from gitops_kaito.sandbox.arm import ArmEmulator
from tests.aksfixtures import TARGET, write_repo

loader = pytest.importorskip("gitops_kaito.repo.loader")
render = pytest.importorskip("gitops_kaito.core.render")

@pytest.fixture
def arm() -> Iterator[ArmEmulator]:
    with ArmEmulator() as emulator:
        yield emulator


def test_repository_to_pools_and_back(tmp_path: Path, arm: ArmEmulator) -> None:
    write_repo(tmp_path, ["phi", "phi-b"])
    load = loader.load_repository(tmp_path)
    assert not load.errors, load.errors
    pools = desired_pools(load.models)
    assert len(pools) == 2

    # The environment names the cluster and the local endpoint; the file's azure: only pins the same cluster.
    settings = merge_settings(load.config.azure, env={"GITOPS_KAITO_AZURE_ARM_ENDPOINT": arm.url, **{
        f"GITOPS_KAITO_AZURE_{k.upper()}": v for k, v in TARGET.items()}})
    assert (settings.resource_group, settings.arm_endpoint) == ("rg-ml", arm.url)
    settings = replace(settings, polling_interval_s=0.01, retry_total=0)
    prov = AgentPoolProvisioner.for_settings(settings, StaticTokenCredential(arm.settings.token))

    plan = plan_pools(pools, prov.list_pools())
    rows = [c.row() for c in plan]
    assert [(r["action"], r["nodes"], r["vmSize"]) for r in rows] == [("create", "1", "Standard_NC24ads_A100_v4")] * 2
    assert all(r["pricePerHour"] and r["pricePerHour"] > 0 for r in rows)

    outcomes = prov.reconcile(pools, revision="main@sha1:1111", wait_s=20)
    assert [o.state for o in outcomes] == ["Ready", "Ready"]

    # The BYO Workspace the renderer makes for this model selects exactly the nodes of its pool.
    phi = next(m for m in load.models if m.request.name == "phi")
    workspace = render.render_model(phi, load.config, "main@sha1:1111").objects[-1].manifest
    selector = workspace["resource"]["labelSelector"]["matchLabels"]
    pool = arm.pool(next(p.name for p in pools if p.model_id == "ml.phi"))
    assert pool is not None
    assert selector.items() <= pool["properties"]["nodeLabels"].items()

    # Removing one file removes its pool, and only its pool.
    write_repo(tmp_path, ["phi"])
    load = loader.load_repository(tmp_path)
    outcomes = prov.reconcile(desired_pools(load.models), revision="main@sha1:2222",
                              keep_model_ids=load.discovered_ids, wait_s=20)
    assert sorted((o.model_id, o.state) for o in outcomes) == [("ml.phi", "Ready"), ("ml.phi-b", "Deleted")]
    assert arm.pool_names() == [pool["name"]]
