"""Planning a tuning run and a RAG engine: a changed TuningJob is a new run (replace), never an update; the same
request is left alone whatever its rendering (a template change must not retrain); drift on a run is reported, never
corrected; a RAGEngine's compute and the fields KAITO never rolls onto a running engine are replaced."""

from __future__ import annotations

import copy
from typing import Any

from test_rag_request import doc as rag_doc
from test_rag_request import resolve as resolve_rag
from test_tuning_request import doc, resolve

from gitops_kaito.core import render
from gitops_kaito.core.plan import NEW_RUN, Action, PlanPolicy, make_plan
from gitops_kaito.model.objects import ANNOTATION_DIGEST, DesiredObject
from gitops_kaito.repo.config import RepoConfig

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"


def workspace(**spec: Any) -> DesiredObject:
    objects = render.render_tuning(resolve(doc(**spec)), RepoConfig(), REVISION).objects
    return next(o for o in objects if o.manifest["kind"] == "Workspace")


def fields_v1(node: Any) -> Any:
    """The managedFields tree of every field in node (what the server records for our apply)."""
    return {f"f:{k}": fields_v1(v) for k, v in node.items()} if isinstance(node, dict) else {}


def live_of(obj: DesiredObject, state: str = "Succeeded") -> dict[str, Any]:
    """The object as the cluster holds it after we applied it, with KAITO's status."""
    live = copy.deepcopy(obj.normalised.stamped)
    owned = fields_v1({k: v for k, v in live.items() if k not in ("apiVersion", "kind")})
    live["metadata"]["managedFields"] = [{"manager": "gitops-kaito", "operation": "Apply", "fieldsV1": owned}]
    live["status"] = {"state": state}
    return live


def only(plan: Any) -> Any:
    [change] = plan.changes
    return change


def test_same_request_is_left_alone_whatever_the_rendering() -> None:
    want = workspace()
    live = live_of(want)
    live["resource"]["labelSelector"]["matchLabels"] = {"apps": "from-an-older-template"}
    live["metadata"]["annotations"][ANNOTATION_DIGEST] = "sha256:olderrendering00"
    change = only(make_plan([want], [live], PlanPolicy()))
    assert change.action == Action.NOOP and not change.drift and "same run" in change.reason


def test_drift_on_a_run_is_reported_never_corrected() -> None:
    want = workspace()
    live = live_of(want, state="Running")
    live["resource"]["labelSelector"]["matchLabels"] = {"apps": "edited-by-hand"}
    change = only(make_plan([want], [live], PlanPolicy(drift="correct")))
    assert change.action == Action.NOOP and change.drift_reported and "never corrected" in change.reason


def test_a_changed_request_is_a_new_run() -> None:
    old = workspace()
    new = workspace(input={"urls": ["https://data.example/v2.parquet"]})
    change = only(make_plan([new], [live_of(old, "Succeeded")], PlanPolicy()))
    assert change.action == Action.REPLACE and change.reason.startswith(NEW_RUN)


def test_a_new_run_over_a_running_job_waits_for_the_replace_policy() -> None:
    old = workspace()
    new = workspace(method="lora")
    blocked = only(make_plan([new], [live_of(old, "Running")], PlanPolicy()))
    assert blocked.action == Action.BLOCKED and "stopping the run in progress (Running)" in blocked.reason
    allowed = only(make_plan([new], [live_of(old, "Running")], PlanPolicy(replace_policy="auto")))
    assert allowed.action == Action.REPLACE


def ragengine(**spec: Any) -> DesiredObject:
    return render.render_rag(resolve_rag(rag_doc(**spec)), RepoConfig(), REVISION).objects[0]


def test_ragengine_compute_and_unrolled_fields_are_replaced_env_fields_updated() -> None:
    base = ragengine()
    for spec, field in (({"compute": {"instanceType": "Standard_NC24ads_A100_v4"}}, "spec.compute.instanceType"),
                        ({"compute": None}, "spec.compute"),
                        ({"guardrails": {"enabled": True}}, "spec.guardrails"),
                        ({"storage": {"persistentVolumeClaim": "data"}}, "spec.storage")):
        change = only(make_plan([ragengine(**spec)], [live_of(base, "")], PlanPolicy()))
        assert change.action == Action.BLOCKED and field in change.immutable, spec
    update = only(make_plan([ragengine(contextWindowSize=2048)], [live_of(base, "")], PlanPolicy()))
    assert update.action == Action.UPDATE
