"""Pure agent-pool logic: pool names, the desired pool of a model, the REST body, and plan_pools."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from gitops_kaito.provision import agentpool as ap
from gitops_kaito.provision.agentpool import (
    LivePool,
    desired_pool,
    desired_pools,
    model_pools,
    plan_pools,
    pool_name,
)


@dataclass(frozen=True)
class Req:
    namespace: str
    name: str
    suspend: bool = False


@dataclass(frozen=True)
class Sku:
    name: str = "Standard_NC24ads_A100_v4"
    gpu_count: int = 1
    gpu_model: str = "NVIDIA A100"
    gpu_memory_per_gpu_gib: float = 80.0


@dataclass(frozen=True)
class Model:
    request: Req
    sku: Sku | None = Sku()
    nodes: int = 1
    disk_gib: int = 1024
    label_selector: tuple[tuple[str, str], ...] = (("apps", "phi-4"),)
    price_per_hour: float | None = 3.67
    provisioning: str = "aks"


def model(name: str = "phi", **kw: object) -> Model:
    return Model(Req("ml", name), **kw)  # type: ignore[arg-type]


def live_of(d: ap.DesiredAgentPool, **kw: object) -> LivePool:
    base = LivePool(d.name, d.vm_size, d.count, d.labels, d.taints,
                    tuple(sorted((*d.tags, (ap.TAG_REVISION, "main@sha1:old")))), d.os_disk_gb)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_pool_name_is_stable_valid_and_distinct() -> None:
    names = {pool_name(f"ml.model-{i}") for i in range(2000)}
    assert len(names) == 2000
    for n in names:
        assert ap.POOL_NAME_RE.fullmatch(n) and len(n) == 12 and n.startswith("gk")
    assert pool_name("ml.phi") == pool_name("ml.phi")
    assert pool_name("ml.phi") != pool_name("ml.phj")


def test_desired_pool_labels_taint_tags_and_body() -> None:
    d = desired_pool(model(nodes=2))
    labels = dict(d.labels)
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100"
    assert labels["nvidia.com/gpu.count"] == "1"
    assert labels["nvidia.com/gpu.memory"] == "81920"
    assert labels["apps"] == "phi-4"
    assert labels["gitops.kaito.sh/managed-by"] == "gitops-kaito"
    assert labels["gitops.kaito.sh/model"] == "ml.phi"
    assert d.taints == ("sku=gpu:NoSchedule",)
    assert dict(d.tags) == {ap.TAG_MANAGED_BY: "gitops-kaito", ap.TAG_MODEL: "ml.phi", ap.TAG_INSTANCE: "default"}
    assert (d.count, d.vm_size, d.os_disk_gb, d.model_id) == (2, "Standard_NC24ads_A100_v4", 1024, "ml.phi")

    body = d.body("main@sha1:abc", keep_tags={"costcenter": "42", ap.TAG_REVISION: "stale"})
    props = body["properties"]
    assert props["mode"] == "User" and props["type"] == "VirtualMachineScaleSets"
    assert props["gpuProfile"] == {"driver": "Install"}
    assert props["nodeTaints"] == ["sku=gpu:NoSchedule"]
    assert props["tags"] == {"costcenter": "42", ap.TAG_MANAGED_BY: "gitops-kaito", ap.TAG_MODEL: "ml.phi",
                             ap.TAG_INSTANCE: "default", ap.TAG_REVISION: "main@sha1:abc"}
    assert props["osDiskSizeGB"] == 1024 and props["count"] == 2


def test_desired_pool_body_is_accepted_by_sdk_model() -> None:
    from azure.mgmt.containerservice.models import AgentPool

    sdk = AgentPool(desired_pool(model()).body("r"))
    assert sdk.vm_size == "Standard_NC24ads_A100_v4"
    assert sdk.gpu_profile.driver == "Install"
    assert sdk.node_taints == ["sku=gpu:NoSchedule"]


def test_desired_pool_needs_a_sku() -> None:
    with pytest.raises(ValueError, match="no instance type"):
        desired_pool(model(sku=None))


def test_plan_create_noop_scale_replace_update() -> None:
    d = desired_pool(model())
    assert [c.action for c in plan_pools([d], [])] == ["create"]
    assert plan_pools([d], [])[0].price_per_hour == 3.67
    assert [c.action for c in plan_pools([d], [live_of(d)])] == ["noop"]  # revision tag alone is not drift

    scale = plan_pools([d], [live_of(d, count=3)])[0]
    assert (scale.action, scale.live_count, scale.count) == ("scale", 3, 1)
    assert "count 3 -> 1" in scale.reasons

    replace_ = plan_pools([replace(d, vm_size="Standard_NC48ads_A100_v4")], [live_of(d)])[0]
    assert replace_.action == "replace" and "vmSize" in replace_.reasons[0]

    labels = tuple(sorted({**dict(d.labels), "apps": "other", "extra": "x"}.items()))
    upd = plan_pools([d], [live_of(d, labels=labels)])[0]
    assert upd.action == "update" and upd.reasons == ("nodeLabels differ: apps, extra",)
    assert plan_pools([d], [live_of(d, taints=())])[0].action == "update"


def test_plan_wait_retry_conflict() -> None:
    d = desired_pool(model())
    assert plan_pools([d], [live_of(d, provisioning_state="Creating")])[0].action == "wait"
    assert plan_pools([d], [live_of(d, provisioning_state="Failed")])[0].action == "retry"
    foreign = LivePool(d.name, d.vm_size, 1)
    assert plan_pools([d], [foreign])[0].action == "conflict"


def test_plan_prunes_only_our_pools_and_respects_keep() -> None:
    d = desired_pool(model())
    gone = desired_pool(model("gone"))
    broken = desired_pool(model("broken"))
    untagged = LivePool("userpool", "Standard_D4s_v5", 3, tags=(("team", "x"),))
    system = LivePool("nodepool1", "Standard_D4s_v5", 1)
    live = [live_of(d), live_of(gone), live_of(broken), untagged, system]
    changes = {c.pool: c.action for c in plan_pools([d], live, keep_model_ids={"ml.broken"})}
    assert changes == {d.name: "noop", gone.name: "delete"}
    assert {c.pool: c.action for c in plan_pools([d], live, prune=False)} == {d.name: "noop"}
    deleting = plan_pools([], [live_of(gone, provisioning_state="Deleting")])
    assert [c.action for c in deleting] == ["wait"]


def test_a_model_whose_pool_cannot_be_built_is_its_own_error_and_keeps_its_pool() -> None:
    a, broken, c = desired_pool(model("a")), desired_pool(model("broken")), desired_pool(model("c"))
    found = model_pools([model("a"), model("broken", sku=None), model("c")])
    assert [p.model_id for p in found.pools] == ["ml.a", "ml.c"]
    assert found.invalid == (("ml.broken", "model ml.broken has no instance type; aks provisioning needs one"),)
    changes = {c.pool: c.action for c in found.plan([live_of(a), live_of(broken)])}
    assert changes == {a.name: "noop", c.name: "create"}  # the broken model's pool is not deleted
    with pytest.raises(ValueError, match="no instance type"):
        desired_pools([model("a"), model("broken", sku=None)])


def test_desired_pools_only_for_running_aks_models() -> None:
    models = [model("a"), model("b", provisioning="nodeclaim"), Model(Req("ml", "c", suspend=True))]
    assert [p.model_id for p in desired_pools(models)] == ["ml.a"]


def test_plan_rows_show_nodes_size_and_price() -> None:
    d = desired_pool(model(nodes=2))
    row = plan_pools([d], [live_of(desired_pool(model()))])[0].row()
    assert (row["action"], row["nodes"], row["vmSize"], row["pricePerHour"]) == (
        "scale", "1 -> 2", "Standard_NC24ads_A100_v4", 3.67)
    gone = plan_pools([], [live_of(d)])[0].row()
    assert (gone["action"], gone["pricePerHour"]) == ("delete", None)
