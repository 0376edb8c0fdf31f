"""The gitops_kaito_drift_detected gauge: objects drifted and left in place (drift: report), by kind, per pass.

Fed from a pass's plan (plan.reported_drift_counts); a kind that was drifted and is clean now reads 0, not stale.
"""

from __future__ import annotations

from gitops_kaito.core.plan import PlanPolicy, make_plan, reported_drift_counts
from gitops_kaito.service.metrics import Metrics
from tests.test_plan import REV2, _hand_edited_configmap, configmap, served, workspace


def value(metrics: Metrics, kind: str) -> float | None:
    return metrics.registry.get_sample_value("gitops_kaito_drift_detected", {"kind": kind})


def test_the_gauge_follows_each_pass_and_goes_back_to_zero() -> None:
    metrics = Metrics()
    assert value(metrics, "ConfigMap") is None  # nothing exported before a kind has drifted
    live_ws = served(workspace())
    live_ws["inference"]["config"] = "hand-made"
    drifted = make_plan([configmap(rev=REV2), workspace(rev=REV2)], [_hand_edited_configmap(), live_ws],
                        PlanPolicy(drift="report"))
    metrics.set_drift_detected(reported_drift_counts(drifted))
    assert (value(metrics, "ConfigMap"), value(metrics, "Workspace")) == (1.0, 1.0)
    assert metrics.registry.get_sample_value("gitops_kaito_drift_corrected_total", {"kind": "ConfigMap"}) is None

    corrected = make_plan([configmap(rev=REV2), workspace(rev=REV2)], [_hand_edited_configmap(), live_ws])
    assert reported_drift_counts(corrected) == {}  # drift: correct: a correction, not a report
    metrics.set_drift_detected(reported_drift_counts(corrected))
    assert (value(metrics, "ConfigMap"), value(metrics, "Workspace")) == (0.0, 0.0)
    assert b'gitops_kaito_drift_detected{kind="Workspace"} 0.0' in metrics.render()
