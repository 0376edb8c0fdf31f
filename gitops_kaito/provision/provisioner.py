"""Carries the agent-pool plan out against ARM, level-triggered: one list per pass, LROs started but not awaited serially.

Azure errors become a `PoolOutcome` (state, Azure code, message) per model, for the model's status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from gitops_kaito.model.ownership import DEFAULT_INSTANCE
from gitops_kaito.model.states import PoolState
from gitops_kaito.provision import agentpool as ap
from gitops_kaito.provision.agentpool import DesiredAgentPool, LivePool, PoolChange, plan_pools
from gitops_kaito.provision.aks import AksSettings, live_pool, make_client

_IN_PROGRESS_TEXT = "in progress"
_WRAPPER_CODES = frozenset({"InvalidTemplateDeployment", "DeploymentFailed", "MultipleErrorsOccurred"})


@dataclass(frozen=True)
class PoolOutcome:
    """What happened to one pool in one pass."""

    pool: str
    model_id: str
    action: str
    state: str
    code: str = ""
    message: str = ""
    provisioning_state: str = ""
    vm_size: str = ""
    count: int = 0
    retry_after_s: float | None = None

    @property
    def ready(self) -> bool:
        return self.state == PoolState.READY


@dataclass
class _Pending:
    change: PoolChange
    poller: Any  # azure.core.polling.LROPoller
    kind: str  # "put" | "delete"
    revision: str


@dataclass(frozen=True)
class _Failure:
    code: str
    message: str
    at: float
    desired: DesiredAgentPool | None


class AgentPoolProvisioner:
    """Reconciles agent pools for one cluster. One reconcile at a time; keep the instance across passes so
    the errors of operations that finish between passes reach the status (a new instance still works: it
    reads provisioningState and status.provisioningError from ARM)."""

    def __init__(
        self,
        client_factory: Callable[[], Any],
        settings: AksSettings,
        *,
        retry_failed_after_s: float = 300.0,
        max_throttle_retries: int = 3,
        max_retry_after_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._client: Any = None
        self._retry_failed_after_s = retry_failed_after_s
        self._max_throttle_retries = max_throttle_retries
        self._max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._failures: dict[str, _Failure] = {}

    @classmethod
    def for_settings(cls, settings: AksSettings, credential: Any | None = None, **kwargs: Any) -> AgentPoolProvisioner:
        settings.validate()
        return cls(lambda: make_client(settings, credential), settings, **kwargs)

    # --- reading ---------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def list_pools(self) -> tuple[LivePool, ...]:
        s = self.settings
        return self._call(lambda: tuple(live_pool(p) for p in self.client.agent_pools.list(s.resource_group, s.cluster_name)))

    def plan(self, desired: Sequence[DesiredAgentPool], *, prune: bool = True,
             keep_model_ids: Collection[str] = (), instance: str = DEFAULT_INSTANCE) -> tuple[PoolChange, ...]:
        return plan_pools(desired, self.list_pools(), prune=prune, keep_model_ids=keep_model_ids, instance=instance)

    # --- reconciling -----------------------------------------------------------------------------------
    def reconcile(
        self,
        desired: Sequence[DesiredAgentPool],
        *,
        revision: str,
        dry_run: bool = False,
        prune: bool = True,
        keep_model_ids: Collection[str] = (),
        allow_replace: bool | Collection[str] = True,
        wait_s: float = 0.0,
        live: Sequence[LivePool] | None = None,
        instance: str = DEFAULT_INSTANCE,
        changes: Sequence[PoolChange] | None = None,
    ) -> tuple[PoolOutcome, ...]:
        """One level-triggered pass. Started operations run concurrently; `wait_s` bounds how long this call
        waits for them (0: return at once, the next pass sees their provisioningState). `allow_replace` is a
        flag, or the model ids whose pools may be replaced. `live`: pools the caller listed this pass already;
        `changes`: the plan_pools the caller made against that `live` already (prune and keep_model_ids are
        then its own), carried out instead of planning again."""
        self._harvest()
        if live is None:
            try:
                live = self.list_pools()
            except AzureError as err:
                # Nothing is known about the live pools, so nothing is changed (and certainly nothing pruned).
                return tuple(self._error_outcome(_unknown_change(d), err, "listing agent pools failed")
                             for d in desired)
        self._settle_with_live(live)
        if changes is None:
            changes = plan_pools(desired, live, prune=prune, keep_model_ids=keep_model_ids, instance=instance)
        outcomes: dict[str, PoolOutcome] = {}
        started: list[str] = []
        auth_error: ClientAuthenticationError | None = None
        for change in changes:
            if auth_error is not None:
                outcomes[change.pool] = self._error_outcome(change, auth_error)
                continue
            try:
                replace_ok = allow_replace if isinstance(allow_replace, bool) else change.model_id in allow_replace
                outcomes[change.pool] = self._apply(change, revision, dry_run, replace_ok)
            except ClientAuthenticationError as err:
                auth_error = err
                outcomes[change.pool] = self._error_outcome(change, err)
            except AzureError as err:
                outcomes[change.pool] = self._error_outcome(change, err)
            if change.pool in self._pending and outcomes[change.pool].state == PoolState.IN_PROGRESS:
                started.append(change.pool)
        if wait_s > 0 and started and auth_error is None:
            self._wait(started, outcomes, self._clock() + wait_s)
        return tuple(outcomes[c.pool] for c in changes)

    def _apply(self, change: PoolChange, revision: str, dry_run: bool, allow_replace: bool) -> PoolOutcome:
        action = change.action
        if action == ap.NOOP:
            self._failures.pop(change.pool, None)
            return _outcome(change, PoolState.READY)
        if action == ap.WAIT:
            return _outcome(change, PoolState.IN_PROGRESS, message=f"waiting: {', '.join(change.reasons)}")
        if action == ap.CONFLICT:
            return _outcome(change, PoolState.CONFLICT, code="PoolNameTaken", message="; ".join(change.reasons))
        if action == ap.REPLACE and not allow_replace:
            return _outcome(change, PoolState.BLOCKED, code="ReplaceRequired",
                            message="; ".join(change.reasons) + "; the replace policy is manual, so the pool is left as it is")
        backoff = self._in_backoff(change)
        if backoff is not None:
            return backoff
        if dry_run:
            return _outcome(change, PoolState.PLANNED, message="; ".join(change.reasons))
        s = self.settings
        pools = self.client.agent_pools
        if action in (ap.CREATE, ap.SCALE, ap.UPDATE, ap.RETRY):
            assert change.desired is not None
            body = _body(change.desired, change.live, revision)
            poller = self._call(lambda: pools.begin_create_or_update(
                s.resource_group, s.cluster_name, change.pool, body, polling_interval=s.polling_interval_s))
            self._pending[change.pool] = _Pending(change, poller, "put", revision)
            return _outcome(change, PoolState.IN_PROGRESS, message=f"{action} started: " + "; ".join(change.reasons))
        if action in (ap.REPLACE, ap.DELETE):
            try:
                poller = self._call(lambda: pools.begin_delete(
                    s.resource_group, s.cluster_name, change.pool, polling_interval=s.polling_interval_s))
            except ResourceNotFoundError:
                return _outcome(change, PoolState.DELETED if action == ap.DELETE else PoolState.IN_PROGRESS,
                                message="the pool was already gone")
            self._pending[change.pool] = _Pending(change, poller, "delete", revision)
            what = ("deleting the pool to recreate it: " if action == ap.REPLACE else "deleting: ") + "; ".join(change.reasons)
            return _outcome(change, PoolState.IN_PROGRESS, message=what)
        raise AssertionError(f"unknown pool action {action!r}")

    def _in_backoff(self, change: PoolChange) -> PoolOutcome | None:
        """A pool that just failed is not hammered every pass; a changed desired state is tried at once."""
        failure = self._failures.get(change.pool)
        if failure is None or failure.desired != change.desired:
            return None
        left = self._retry_failed_after_s - (self._clock() - failure.at)
        if left <= 0:
            return None
        return _outcome(change, PoolState.FAILED, code=failure.code, message=f"{failure.message} (next attempt in {left:.0f}s)")

    def _wait(self, started: list[str], outcomes: dict[str, PoolOutcome], deadline: float) -> None:
        """Wait for this pass's operations together (they poll in their own threads) until the deadline."""
        queue = list(started)
        while queue:
            name = queue.pop(0)
            pending = self._pending.get(name)
            if pending is None:
                continue
            remaining = deadline - self._clock()
            if remaining > 0:
                try:
                    pending.poller.wait(timeout=remaining)
                except AzureError:
                    pass  # the poller keeps its exception; _finish reads it
            if not pending.poller.done():
                continue
            outcome = self._finish(name)
            if outcome is not None:
                outcomes[name] = outcome
            follow_up = pending.change
            if (follow_up.action == ap.REPLACE and outcome is not None and outcome.state == PoolState.IN_PROGRESS
                    and self._clock() < deadline and follow_up.desired is not None):
                # The old pool is gone: create the new one within the same bound.
                create = PoolChange(ap.CREATE, follow_up.pool, follow_up.model_id, follow_up.vm_size, follow_up.count,
                                    price_per_hour=follow_up.price_per_hour, reasons=("recreate after replace",),
                                    desired=follow_up.desired)
                try:
                    outcomes[name] = self._apply(create, pending.revision, False, True)
                except AzureError as err:
                    outcomes[name] = self._error_outcome(create, err)
                if name in self._pending:
                    queue.append(name)

    def _harvest(self) -> None:
        """Record how operations from earlier passes ended."""
        for name in [n for n, p in self._pending.items() if p.poller.done()]:
            self._finish(name)

    def _settle_with_live(self, live: Sequence[LivePool]) -> None:
        """ARM's provisioningState is the truth: an operation it shows as over is over, even if our poller
        has not polled yet (its thread ends on its own)."""
        by_name = {p.name: p for p in live}
        for name, pending in list(self._pending.items()):
            pool = by_name.get(name)
            if pending.kind != "put" or pool is None or pool.busy:
                continue
            del self._pending[name]
            if pool.failed:
                self._failures[name] = _Failure(pool.error_code or "Failed",
                                                pool.error_message or "the agent pool operation failed",
                                                self._clock(), pending.change.desired)
            else:
                self._failures.pop(name, None)

    def _finish(self, name: str) -> PoolOutcome | None:
        pending = self._pending.pop(name)
        change = pending.change
        try:
            result = pending.poller.result(timeout=0)
        except ClientAuthenticationError as err:
            return self._error_outcome(change, err)
        except AzureError as err:
            return self._error_outcome(change, err)
        if pending.kind == "delete":
            if change.action == ap.REPLACE:
                return _outcome(change, PoolState.IN_PROGRESS, message="old pool deleted; creating the new one")
            return _outcome(change, PoolState.DELETED)
        self._failures.pop(name, None)
        state = str(getattr(result, "provisioning_state", "") or "Succeeded")
        return PoolOutcome(change.pool, change.model_id, change.action,
                           PoolState.READY if state.lower() == "succeeded" else PoolState.IN_PROGRESS,
                           provisioning_state=state, vm_size=change.vm_size, count=change.count)

    # --- errors ----------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run one ARM call, waiting out 429s for Retry-After a few times (bounded, so a pass cannot stall)."""
        attempt = 0
        while True:
            try:
                return fn()
            except HttpResponseError as err:
                if err.status_code != 429 or attempt >= self._max_throttle_retries:
                    raise
                delay = _retry_after(err)
                if delay > self._max_retry_after_s:
                    raise
                attempt += 1
                self._sleep(delay)

    def _error_outcome(self, change: PoolChange, err: AzureError, context: str = "") -> PoolOutcome:
        code, message = error_code(err), error_message(err)
        if context:
            message = f"{context}: {message}"
        status = getattr(err, "status_code", None)
        if isinstance(err, ClientAuthenticationError):
            return _outcome(change, PoolState.AUTH_FAILED, code=code or "AuthenticationFailed", message=message)
        if status == 409 and _IN_PROGRESS_TEXT in message.lower():
            # AKS is already running an operation on this pool (maybe one we started before a restart): wait for it.
            return _outcome(change, PoolState.IN_PROGRESS, code=code, message=f"operation in progress, waiting: {message}")
        if status == 429:
            response = getattr(err, "response", None)
            return _outcome(change, PoolState.THROTTLED, code=code or "TooManyRequests", message=message,
                            retry_after_s=_retry_after(err) if response is not None else None)
        if change.desired is not None or change.action in (ap.DELETE, ap.REPLACE):
            self._failures[change.pool] = _Failure(code, message, self._clock(), change.desired)
        return _outcome(change, PoolState.FAILED, code=code, message=message)


def error_code(err: AzureError) -> str:
    """Azure's error code; quota codes nested under a deployment wrapper are lifted out."""
    error = getattr(err, "error", None)
    code = str(getattr(error, "code", "") or "")
    if code in _WRAPPER_CODES:
        for detail in getattr(error, "details", None) or ():
            if getattr(detail, "code", None):
                return str(detail.code)
    return code or type(err).__name__


def error_message(err: AzureError) -> str:
    error = getattr(err, "error", None)
    message = str(getattr(error, "message", "") or "") or str(getattr(err, "message", "") or err)
    return " ".join(message.split())[:800]


def _retry_after(err: AzureError) -> float:
    response = getattr(err, "response", None)
    raw = response.headers.get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else 5.0
    except ValueError:
        return 5.0


def _body(desired: DesiredAgentPool, live: LivePool | None, revision: str) -> dict[str, Any]:
    return desired.body(revision, keep_tags=dict(live.tags) if live is not None else None)


def _outcome(change: PoolChange, state: str, *, code: str = "", message: str = "",
             retry_after_s: float | None = None) -> PoolOutcome:
    return PoolOutcome(change.pool, change.model_id, change.action, state, code, message,
                       change.provisioning_state, change.vm_size, change.count, retry_after_s)


def _unknown_change(d: DesiredAgentPool) -> PoolChange:
    return PoolChange("unknown", d.name, d.model_id, d.vm_size, d.count, price_per_hour=d.price_per_hour, desired=d)
