"""Pure AKS agent-pool logic: the pool a model needs (name, size, labels, taint, tags) and the plan against live pools.

No I/O here: `provision/aks.py` lists pools and carries the plan out; `plan` output uses `plan_pools` directly.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from gitops_kaito.model.ownership import (
    DEFAULT_INSTANCE,
    LABEL_INSTANCE,
    MANAGED_BY_VALUE,
    Spared,
    model_id,
    owner_labels,
)

POOL_NAME_RE = re.compile(r"[a-z][a-z0-9]{0,11}")
POOL_NAME_PREFIX = "gk"

TAG_MANAGED_BY = "gitops-kaito-managed-by"
TAG_MODEL = "gitops-kaito-model"
TAG_REVISION = "gitops-kaito-revision"
TAG_INSTANCE = "gitops-kaito-instance"  # the gitops-kaito instance owning the pool; absent on older pools = default
OUR_TAGS = frozenset({TAG_MANAGED_BY, TAG_MODEL, TAG_REVISION, TAG_INSTANCE})

GPU_TAINT = "sku=gpu:NoSchedule"
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"
LABEL_GPU_COUNT = "nvidia.com/gpu.count"
LABEL_GPU_MEMORY = "nvidia.com/gpu.memory"  # MiB per GPU, the unit GPU Feature Discovery and KAITO's BYO check use

# provisioningState values during which AKS refuses another operation on the pool (a PUT answers 409).
BUSY_STATES = frozenset(
    {"creating", "updating", "scaling", "deleting", "upgrading", "starting", "stopping", "migrating", "canceling"}
)

# Planned actions.
CREATE, SCALE, UPDATE, REPLACE, DELETE, RETRY, WAIT, NOOP, CONFLICT = (
    "create", "scale", "update", "replace", "delete", "retry", "wait", "noop", "conflict",
)

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


class _RequestLike(Protocol):
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def suspend(self) -> bool: ...


class _SkuLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def gpu_count(self) -> int: ...
    @property
    def gpu_model(self) -> str: ...
    @property
    def gpu_memory_per_gpu_gib(self) -> float: ...


class ResolvedModelLike(Protocol):
    """The parts of resolve.ResolvedModel an agent pool is derived from."""

    @property
    def request(self) -> _RequestLike: ...
    @property
    def sku(self) -> _SkuLike | None: ...
    @property
    def nodes(self) -> int: ...
    @property
    def disk_gib(self) -> int: ...
    @property
    def label_selector(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def price_per_hour(self) -> float | None: ...
    @property
    def provisioning(self) -> str: ...


if TYPE_CHECKING:
    from gitops_kaito.repo.resolve import ResolvedModel

    def _resolved_model_fits(model: ResolvedModel) -> ResolvedModelLike:  # mypy checks the contract here
        return model


@dataclass(frozen=True)
class DesiredAgentPool:
    """The agent pool one model needs. Labels and tags are sorted pairs so the value is hashable and comparable."""

    name: str
    model_id: str
    vm_size: str
    count: int
    labels: tuple[tuple[str, str], ...]
    taints: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    os_disk_gb: int
    mode: str = "User"
    os_type: str = "Linux"
    os_sku: str = "Ubuntu"
    gpu_driver: str = "Install"  # AKS installs the NVIDIA driver (KAITO's device plugin DaemonSet does the rest)
    price_per_hour: float | None = None  # the whole pool (count x VM price), when the catalog knows the price

    def body(self, revision: str = "", keep_tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The REST body for PUT, tagged with `revision`. `keep_tags` are tags someone else put on the live pool
        (e.g. Azure Policy): kept as they are."""
        tags = {k: v for k, v in (keep_tags or {}).items() if k not in OUR_TAGS}
        tags.update(dict(self.tags))
        if revision:
            tags[TAG_REVISION] = revision[:256]
        props: dict[str, Any] = {
            "count": self.count,
            "vmSize": self.vm_size,
            "mode": self.mode,
            "osType": self.os_type,
            "osSKU": self.os_sku,
            "type": "VirtualMachineScaleSets",
            "nodeLabels": dict(self.labels),
            "nodeTaints": list(self.taints),
            "tags": tags,
            "gpuProfile": {"driver": self.gpu_driver},
        }
        if self.os_disk_gb > 0:
            props["osDiskSizeGB"] = self.os_disk_gb
        return {"properties": props}


@dataclass(frozen=True)
class LivePool:
    """An agent pool as listed from ARM, reduced to what the plan compares."""

    name: str
    vm_size: str
    count: int
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    os_disk_gb: int | None = None
    provisioning_state: str = "Succeeded"
    error_code: str = ""  # status.provisioningError of the last failed operation, when AKS reports one
    error_message: str = ""

    @property
    def managed(self) -> bool:
        return dict(self.tags).get(TAG_MANAGED_BY) == MANAGED_BY_VALUE

    @property
    def model_id(self) -> str:
        return dict(self.tags).get(TAG_MODEL, "")

    @property
    def instance(self) -> str:
        """The gitops-kaito instance owning the pool ('' when not ours; untagged = the default instance)."""
        return (dict(self.tags).get(TAG_INSTANCE) or DEFAULT_INSTANCE) if self.managed else ""

    @property
    def busy(self) -> bool:
        return self.provisioning_state.lower() in BUSY_STATES

    @property
    def failed(self) -> bool:
        return self.provisioning_state.lower() == "failed"


@dataclass(frozen=True)
class PoolChange:
    """One planned step for one pool, with what it costs and why."""

    action: str
    pool: str
    model_id: str
    vm_size: str  # desired vmSize (live vmSize for a delete)
    count: int  # desired node count (live count for a delete)
    live_vm_size: str | None = None
    live_count: int | None = None
    provisioning_state: str = ""
    price_per_hour: float | None = None
    reasons: tuple[str, ...] = ()
    desired: DesiredAgentPool | None = field(default=None, compare=False)
    live: LivePool | None = field(default=None, compare=False)

    @property
    def mutates(self) -> bool:
        return self.action in (CREATE, SCALE, UPDATE, REPLACE, DELETE, RETRY)

    def row(self) -> dict[str, Any]:
        """One line of `plan` output: what happens to which pool, its nodes and price."""
        nodes = str(self.count) if self.live_count in (None, self.count) else f"{self.live_count} -> {self.count}"
        size = self.vm_size if self.live_vm_size in (None, self.vm_size) else f"{self.live_vm_size} -> {self.vm_size}"
        return {
            "action": self.action, "model": self.model_id, "pool": self.pool, "vmSize": size, "nodes": nodes,
            "pricePerHour": None if self.action == DELETE else self.price_per_hour, "reason": "; ".join(self.reasons),
        }


def pool_name(model_id: str) -> str:
    """A stable agent-pool name for a model: "gk" + 10 base36 chars of its sha256 (AKS: ^[a-z][a-z0-9]{0,11}$)."""
    number = int.from_bytes(hashlib.sha256(model_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(10):
        number, rem = divmod(number, 36)
        chars.append(_BASE36[rem])
    name = POOL_NAME_PREFIX + "".join(chars)
    assert POOL_NAME_RE.fullmatch(name)
    return name


def label_value(value: str) -> str:
    """A Kubernetes label value (63 chars of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE_BAD.sub("-", value.strip())[:63]
    return cleaned.strip("-_.")


def gpu_labels(sku: _SkuLike) -> dict[str, str]:
    """The nvidia.com/gpu.* labels KAITO's BYO validation reads (GPU Feature Discovery would set the same keys)."""
    return {
        LABEL_GPU_PRODUCT: label_value(sku.gpu_model),
        LABEL_GPU_COUNT: str(sku.gpu_count),
        LABEL_GPU_MEMORY: str(round(sku.gpu_memory_per_gpu_gib * 1024)),
    }


def desired_pool(model: ResolvedModelLike, instance: str = DEFAULT_INSTANCE) -> DesiredAgentPool:
    """The agent pool a resolved model needs. Raises ValueError when the model has no VM size (nothing to provision).

    The revision tag is not part of it: the provisioner stamps the revision of the pass that writes the pool.
    """
    req = model.request
    mid = f"{req.namespace}.{req.name}"
    if model.sku is None:
        raise ValueError(f"model {mid} has no instance type; aks provisioning needs one")
    if model.nodes < 1:
        raise ValueError(f"model {mid} needs at least one node, got {model.nodes}")
    labels = owner_labels(req.namespace, req.name, instance)
    labels.update(gpu_labels(model.sku))
    labels.update(dict(model.label_selector))
    tags = {TAG_MANAGED_BY: MANAGED_BY_VALUE, TAG_MODEL: mid, TAG_INSTANCE: instance}
    return DesiredAgentPool(
        name=pool_name(mid),
        model_id=mid,
        vm_size=model.sku.name,
        count=model.nodes,
        labels=tuple(sorted(labels.items())),
        taints=(GPU_TAINT,),
        tags=tuple(sorted(tags.items())),
        os_disk_gb=int(model.disk_gib),
        price_per_hour=model.price_per_hour,
    )


@dataclass(frozen=True)
class ModelPools:
    """The pools of a set of models, and the models whose pool cannot be built: each of those is its own error."""

    pools: tuple[DesiredAgentPool, ...]
    invalid: tuple[tuple[str, str], ...]  # (model id, why) for aks models whose pool cannot be built
    instance: str = DEFAULT_INSTANCE

    def plan(self, live: Iterable[LivePool], *, prune: bool = True,
             keep_model_ids: Collection[str] = ()) -> tuple[PoolChange, ...]:
        """plan_pools of these pools. A model whose pool cannot be built keeps the pool it has, like a model whose
        file is broken: its error is not a reason to delete its GPUs."""
        keep = Spared.of(keep_model_ids, (mid for mid, _ in self.invalid))
        return plan_pools(self.pools, live, prune=prune, keep_model_ids=keep, instance=self.instance)


def model_pools(models: Iterable[ResolvedModelLike], instance: str = DEFAULT_INSTANCE) -> ModelPools:
    """The pools of the models in `aks` mode (a suspended model has none, so its pool is deleted: GPUs cost money).
    A model whose pool cannot be built (desired_pool's ValueError) is set aside with the reason; the other models'
    pools are still planned. Both the sync pass (pools.PoolRunner.prepare) and the offline plan use this."""
    pools: list[DesiredAgentPool] = []
    invalid: list[tuple[str, str]] = []
    for m in models:
        if m.provisioning != "aks" or m.request.suspend:
            continue
        try:
            pools.append(desired_pool(m, instance))
        except ValueError as err:
            invalid.append((model_id(m.request.namespace, m.request.name), str(err)))
    return ModelPools(tuple(pools), tuple(invalid), instance)


def desired_pools(models: Iterable[ResolvedModelLike], instance: str = DEFAULT_INSTANCE
                  ) -> tuple[DesiredAgentPool, ...]:
    """model_pools(...).pools, raising the ValueError of the first model whose pool cannot be built."""
    found = model_pools(models, instance)
    if found.invalid:
        raise ValueError(found.invalid[0][1])
    return found.pools


def plan_pools(
    desired: Sequence[DesiredAgentPool],
    live: Iterable[LivePool],
    *,
    prune: bool = True,
    keep_model_ids: Collection[str] = (),
    instance: str = DEFAULT_INSTANCE,
) -> tuple[PoolChange, ...]:
    """Desired pools against live ones. Pools without our managed-by tag, or tagged for another gitops-kaito
    `instance`, are never changed or deleted.

    `keep_model_ids` are models whose pools must survive even though they are not desired (e.g. their file is broken).
    """
    live_by_name = {p.name: p for p in live}
    changes: list[PoolChange] = []
    wanted: set[str] = set()
    for d in desired:
        wanted.add(d.name)
        changes.append(_plan_one(d, live_by_name.get(d.name), instance))
    for p in sorted(live_by_name.values(), key=lambda p: p.name):
        if p.name in wanted or p.instance != instance:
            continue
        if not prune or p.model_id in keep_model_ids:
            continue
        action = WAIT if p.provisioning_state.lower() == "deleting" else DELETE
        changes.append(PoolChange(
            action, p.name, p.model_id, p.vm_size, p.count, p.vm_size, p.count, p.provisioning_state,
            reasons=("model removed from the repository",), live=p,
        ))
    return tuple(changes)


def _plan_one(d: DesiredAgentPool, live: LivePool | None, instance: str = DEFAULT_INSTANCE) -> PoolChange:
    def change(action: str, *reasons: str) -> PoolChange:
        return PoolChange(
            action, d.name, d.model_id, d.vm_size, d.count,
            live.vm_size if live else None, live.count if live else None,
            live.provisioning_state if live else "", d.price_per_hour, tuple(reasons), d, live,
        )

    if live is None:
        return change(CREATE, "pool does not exist")
    if not live.managed:
        return change(CONFLICT, f"agent pool {d.name} exists and is not tagged {TAG_MANAGED_BY}={MANAGED_BY_VALUE}; not touching it")
    if live.instance != instance:
        return change(CONFLICT, f"blocked: agent pool {d.name} is owned by gitops-kaito instance {live.instance!r}")
    if live.model_id and live.model_id != d.model_id:
        return change(CONFLICT, f"agent pool {d.name} belongs to model {live.model_id}")
    if live.busy:
        return change(WAIT, f"operation in progress (provisioningState {live.provisioning_state})")
    drift = _drift(d, live)
    if live.vm_size.lower() != d.vm_size.lower():
        return change(REPLACE, f"vmSize {live.vm_size} -> {d.vm_size} (AKS cannot resize a pool in place)", *drift)
    if live.os_disk_gb and d.os_disk_gb and live.os_disk_gb != d.os_disk_gb:
        return change(REPLACE, f"osDiskSizeGB {live.os_disk_gb} -> {d.os_disk_gb} (immutable)", *drift)
    if live.count != d.count:
        return change(SCALE, f"count {live.count} -> {d.count}", *drift)
    if drift:
        return change(UPDATE, *drift)
    if live.failed:
        return change(RETRY, "the last operation on the pool failed")
    return change(NOOP)


def _drift(d: DesiredAgentPool, live: LivePool) -> list[str]:
    reasons = []
    want_labels, have_labels = dict(d.labels), dict(live.labels)
    if want_labels.get(LABEL_INSTANCE) == DEFAULT_INSTANCE and LABEL_INSTANCE not in have_labels:
        del want_labels[LABEL_INSTANCE]  # a pool made before instances existed: no AKS operation just for that
    if want_labels != have_labels:
        diff = sorted(
            k for k in want_labels.keys() | have_labels.keys() if want_labels.get(k) != have_labels.get(k)
        )
        reasons.append("nodeLabels differ: " + ", ".join(diff))
    if sorted(d.taints) != sorted(live.taints):
        reasons.append(f"nodeTaints {sorted(live.taints)} -> {sorted(d.taints)}")
    # The revision tag is provenance, not desired state: a new commit alone must not cost an AKS operation.
    live_tags = dict(live.tags)
    for key, value in d.tags:
        if key == TAG_INSTANCE and value == DEFAULT_INSTANCE and key not in live_tags:
            continue  # untagged means default (see LivePool.instance)
        if key != TAG_REVISION and live_tags.get(key) != value:
            reasons.append(f"tag {key} missing or changed")
    return reasons
