"""AKS agent pools inside a sync pass: settings (env < flags; the file only pins), the provisioner kept across passes,
the pool plan the prune guard counts, and the gate that holds an aks-mode Workspace until its pool's Nodes are Ready.

sync.run_pass drives it: prepare() before planning, reconcile() after, gates() before the Workspace wave.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitops_kaito.model.ownership import DEFAULT_INSTANCE, LABEL_MODEL
from gitops_kaito.model.states import PoolState
from gitops_kaito.provision import agentpool as ap
from gitops_kaito.provision.agentpool import DesiredAgentPool, LivePool, PoolChange, ResolvedModelLike
from gitops_kaito.provision.aks import (
    AksSettings,
    AksSettingsError,
    AzureSettingsLike,
    merge_settings,
    pin_problems,
)
from gitops_kaito.repo.config import CONFIG_FILE

AKS = "aks"
INVALID_POOL = "InvalidAgentPool"  # the outcome code of a model whose pool cannot be built (PoolPlan.invalid)


@dataclass(frozen=True)
class PoolPlan:
    """The pools of one pass before anything is done: what is wanted, what is live, what would change."""

    settings: AksSettings | None
    desired: tuple[DesiredAgentPool, ...]
    live: tuple[LivePool, ...] | None  # None: unknown (settings invalid or listing failed): nothing is pruned
    changes: tuple[PoolChange, ...]
    error: str = ""  # why the pools cannot be reconciled this pass (every aks model reports it)
    instance: str = DEFAULT_INSTANCE  # the gitops-kaito instance whose pools these are
    invalid: tuple[tuple[str, str], ...] = ()  # (model id, why): aks models whose pool cannot be built; each fails

    @property
    def managed_models(self) -> frozenset[str]:
        """Models that have a pool tagged as ours: they count as managed for the prune guard."""
        return frozenset(p.model_id for p in self.live or () if p.instance == self.instance and p.model_id)


def aks_models(models: Iterable[ResolvedModelLike]) -> list[ResolvedModelLike]:
    return [m for m in models if m.provisioning == AKS]


class PoolRunner:
    """Keeps one AgentPoolProvisioner per Azure target across passes (operations started in one pass are
    harvested by the next). `credential` None: DefaultAzureCredential; tests pass a StaticTokenCredential."""

    def __init__(self, overrides: Mapping[str, Any] | None = None, *, credential: Any | None = None,
                 env: Mapping[str, str] | None = None, wait_s: float = 0.0,
                 provisioner_kwargs: Mapping[str, Any] | None = None) -> None:
        self.overrides = dict(overrides or {})
        self.credential = credential
        self.env = env
        self.wait_s = wait_s
        self._provisioner_kwargs = dict(provisioner_kwargs or {})
        self._provisioners: dict[AksSettings, Any] = {}

    def settings(self, config_azure: AzureSettingsLike | None) -> AksSettings:
        return merge_settings(config_azure, self.env, self.overrides)

    def active(self, models: Sequence[ResolvedModelLike], config_azure: AzureSettingsLike | None) -> bool:
        """Pools are reconciled when a model is in aks mode, or when Azure is configured at all: the pool of the
        last aks model removed from the repository must still be deleted."""
        if aks_models(models):
            return True
        s = self.settings(config_azure)
        return bool(s.subscription_id and s.resource_group and s.cluster_name)

    def provisioner(self, settings: AksSettings) -> Any:
        from gitops_kaito.provision.provisioner import AgentPoolProvisioner

        found = self._provisioners.get(settings)
        if found is None:
            found = AgentPoolProvisioner.for_settings(settings, self.credential, **self._provisioner_kwargs)
            self._provisioners[settings] = found
        return found

    def prepare(self, models: Sequence[ResolvedModelLike], config_azure: AzureSettingsLike | None, *,
                prune: bool, keep_model_ids: Collection[str], instance: str = DEFAULT_INSTANCE) -> PoolPlan:
        """List the live pools once and plan against them (pure plan_pools); errors become PoolPlan.error, or,
        for a model whose pool cannot be built, its entry in PoolPlan.invalid. Only `instance`'s pools are changed
        or pruned."""
        from azure.core.exceptions import AzureError

        settings = self.settings(config_azure)
        wanted = ap.model_pools(models, instance)
        desired, invalid = wanted.pools, wanted.invalid
        pins = pin_problems(config_azure, settings)
        if pins and (desired or settings.subscription_id):
            # The repository names another target than the daemon's: no request to Azure at all.
            return PoolPlan(None, desired, None, (), "; ".join(f"{CONFIG_FILE}:{line}: {text}" for _, line, text in pins),
                            instance, invalid)
        try:
            settings.validate()
        except AksSettingsError as err:
            return PoolPlan(None, desired, None, (), str(err), instance, invalid)
        try:
            live = self.provisioner(settings).list_pools()
        except AzureError as err:
            from gitops_kaito.provision.provisioner import error_code, error_message

            return PoolPlan(settings, desired, None, (),
                            f"listing agent pools failed: {error_code(err)}: {error_message(err)}", instance, invalid)
        changes = wanted.plan(live, prune=prune, keep_model_ids=keep_model_ids)
        return PoolPlan(settings, desired, tuple(live), changes, instance=instance, invalid=invalid)

    def reconcile(self, plan: PoolPlan, *, revision: str, dry_run: bool, prune: bool,
                  allow_replace: bool | Collection[str]) -> tuple[Any, ...]:
        """Carry out the changes prepare() planned (not planned again); returns one provisioner.PoolOutcome per
        pool (an error outcome per model when the pools could not even be listed). `prune` False (the prune guard
        refused) leaves out the plan's deletes of pools no model wants, as planning without prune would."""
        from gitops_kaito.provision.provisioner import PoolOutcome

        invalid = tuple(PoolOutcome(ap.pool_name(mid), mid, "unknown", PoolState.FAILED, INVALID_POOL, why)
                        for mid, why in plan.invalid)
        if plan.settings is None or plan.live is None:
            return tuple(PoolOutcome(d.name, d.model_id, "unknown", PoolState.FAILED, "AksNotReachable", plan.error,
                                     vm_size=d.vm_size, count=d.count) for d in plan.desired) + invalid
        # plan_pools gives a pool no model wants (delete, or wait while it is deleting) no desired pool.
        changes = plan.changes if prune else tuple(c for c in plan.changes if c.desired is not None)
        return tuple(self.provisioner(plan.settings).reconcile(
            plan.desired, revision=revision, dry_run=dry_run, allow_replace=allow_replace, wait_s=self.wait_s,
            live=plan.live, instance=plan.instance, changes=changes)) + invalid


def ready_nodes(nodes: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Ready Nodes per model (the pool's nodeLabels carry our model label onto every Node)."""
    out: dict[str, int] = {}
    for node in nodes:
        mid = ((node.get("metadata") or {}).get("labels") or {}).get(LABEL_MODEL)
        if not mid or (node.get("spec") or {}).get("unschedulable"):
            continue
        conditions = (node.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions if isinstance(c, Mapping)):
            out[mid] = out.get(mid, 0) + 1
    return out


def gate(outcome: Any | None, want_nodes: int, ready: int) -> str:
    """Why an aks model's Workspace must wait, or '' when its pool is Succeeded and all its Nodes are Ready."""
    if outcome is None:
        return "waiting for the agent pool: not planned in this pass"
    if not outcome.ready:
        detail = f" ({outcome.code}: {outcome.message})" if outcome.code else (
            f" ({outcome.message})" if outcome.message else "")
        return f"waiting for agent pool {outcome.pool}: {outcome.state}{detail}"
    if ready < want_nodes:
        return f"waiting for nodes: {ready}/{want_nodes} Nodes of agent pool {outcome.pool} ready"
    return ""


def pool_summary(outcome: Any) -> dict[str, Any]:
    """A PoolOutcome in the shape health.agent_pool_info reads (for the model's status node phases)."""

    state = {PoolState.READY: "Succeeded", PoolState.DELETED: "Deleting", PoolState.IN_PROGRESS: outcome.provisioning_state or "Creating",
             PoolState.PLANNED: "Planned", PoolState.BLOCKED: outcome.provisioning_state or "Succeeded"}.get(outcome.state, "Failed")
    message = f"{outcome.code}: {outcome.message}" if outcome.code else outcome.message
    return {"name": outcome.pool, "provisioningState": state, "count": outcome.count, "message": message}


def failed(outcome: Any) -> bool:

    return bool(outcome.state in (PoolState.FAILED, PoolState.AUTH_FAILED, PoolState.CONFLICT, PoolState.THROTTLED))


__all__ = ["AKS", "INVALID_POOL", "PoolPlan", "PoolRunner", "aks_models", "failed", "gate", "pool_summary",
           "ready_nodes"]
