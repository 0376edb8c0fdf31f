"""`plan`'s per-model rows (core.report.model_rows) in aks mode: a model whose Workspace is unchanged takes its action
from its agent pools, and only from its own.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from gitops_kaito.core.plan import Action, Change, Plan
from gitops_kaito.core.report import model_rows
from gitops_kaito.model.objects import ObjectRef, Wave
from gitops_kaito.provision.agentpool import PoolChange


def _unchanged_workspace(model_id: str) -> Change:
    name = model_id.split(".", 1)[1]
    return Change(ref=ObjectRef("kaito.sh/v1beta1", "Workspace", "ml", name), action=Action.NOOP,
                  model_id=model_id, wave=Wave.WORKLOAD)


def _pool(model_id: str, action: str) -> PoolChange:
    return PoolChange(action=action, pool=model_id.replace(".", ""), model_id=model_id, vm_size="Standard_NC24ads_A100_v4",
                      count=1)


def test_an_unchanged_workspace_takes_its_action_from_its_own_pools() -> None:
    models = ("ml.blocked", "ml.mixed", "ml.plain", "ml.replaced", "ml.scaled")
    plan = Plan(tuple(_unchanged_workspace(m) for m in models), node_pools=(
        _pool("ml.scaled", "scale"),
        _pool("ml.blocked", "blocked"),
        _pool("ml.replaced", "replace"),
        _pool("ml.mixed", "scale"), _pool("ml.mixed", "blocked"),  # blocked wins over a change
        _pool("ml.plain", "noop"), _pool("ml.plain", "wait"),  # neither changes the pool
    ))
    desired: Any = SimpleNamespace(rendered=(), invalid=())
    actions = {row["model"]: row["action"] for row in model_rows(desired, plan)}
    assert actions == {"ml.blocked": "blocked", "ml.mixed": "blocked", "ml.plain": "no change",
                       "ml.replaced": "replace", "ml.scaled": "update"}
