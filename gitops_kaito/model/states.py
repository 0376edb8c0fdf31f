"""The one vocabulary for where a model stands (ModelState), what one pass did to it (Outcome), to each object
(ObjectStatus) and to an agent pool (PoolState); `model_state` merges an apply outcome with health.

Health, apply, the pass, status files, notifications, metrics and `sync --wait` all speak these words.
"""

from __future__ import annotations

from enum import StrEnum


class ModelState(StrEnum):
    """Where a model stands, as status files, STATUS.md, metrics and notifications show it."""

    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    FAILED = "Failed"
    BLOCKED = "Blocked"
    SUSPENDED = "Suspended"
    INVALID = "Invalid"
    # A tuning run (TuningJob): KAITO's own words for its job (status.state of a tuning Workspace). Succeeded is a
    # tuning run's done, as Ready is a model's.
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"


# States that will not get better without a change in the repository or the cluster.
TROUBLE = frozenset({ModelState.FAILED, ModelState.BLOCKED, ModelState.INVALID})
# States where the model is where its file wants it (a suspended model is meant to have nothing running).
SETTLED = frozenset({ModelState.READY, ModelState.SUSPENDED, ModelState.SUCCEEDED})


class Outcome(StrEnum):
    """What one pass did to a model, most important first (a model shows the first that applies)."""

    INVALID = "Invalid"  # its file failed to load or render: nothing of it is touched
    FAILED = "Failed"
    BLOCKED = "Blocked"
    REPLACING = "Replacing"
    ABANDONED = "Abandoned"  # the pass stopped before reaching this model's objects (leadership lost, stopping)
    PROVISIONING = "Provisioning"
    SUSPENDED = "Suspended"
    PRUNED = "Pruned"
    APPLIED = "Applied"
    UNCHANGED = "Unchanged"


# The order an apply ranks its per-object results in (INVALID and SUSPENDED are decided before any apply).
APPLY_PRIORITY = (Outcome.FAILED, Outcome.BLOCKED, Outcome.REPLACING, Outcome.ABANDONED, Outcome.PROVISIONING,
                  Outcome.PRUNED, Outcome.APPLIED, Outcome.UNCHANGED)


class ObjectStatus(StrEnum):
    """What happened to one object in an apply."""

    DONE = "done"
    ERROR = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"
    DRY_RUN = "dry-run"
    STALE = "stale"  # a delete the API server refused on its preconditions: the object changed since it was read


class PoolState(StrEnum):
    """Where an AKS agent pool stands after one reconcile (`aks` mode)."""

    READY = "Ready"  # the pool exists, Succeeded, and matches
    IN_PROGRESS = "InProgress"  # an operation (ours or someone's) is running; wait
    FAILED = "Failed"  # Azure refused or the operation failed; `code` says why
    THROTTLED = "Throttled"  # 429 beyond what this pass waits for
    AUTH_FAILED = "AuthFailed"  # credentials rejected or unavailable: not retried within the pass
    BLOCKED = "Blocked"  # a replace is needed and the replace policy does not allow it
    CONFLICT = "Conflict"  # the pool name is taken by a pool that is not ours
    DELETED = "Deleted"
    PLANNED = "Planned"  # dry run


def model_state(outcome: str, health: ModelState) -> ModelState:
    """The state a model shows: what health read from the cluster, unless this pass's outcome says more.

    A failed write of a model that is not up yet is a failure now (the cluster would only ever show it
    Pending); a model that is Ready keeps Ready even if a later write failed (it still serves).
    """
    if outcome == Outcome.FAILED and health in (ModelState.PENDING, ModelState.PROVISIONING, ModelState.RUNNING):
        return ModelState.FAILED
    return health
