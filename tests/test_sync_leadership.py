"""Leadership lost in the middle of a pass: nothing more is written after the wave where it was noticed.

The daemon's PassContext.should_continue reaches sync.run_pass (between waves) and the status write-back.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from gitops_kaito.adapters.events import flush
from gitops_kaito.model.states import Outcome
from gitops_kaito.reconcile.apply import ABANDONED_MESSAGE
from gitops_kaito.reconcile.gitsync import run_git_pass
from gitops_kaito.service.daemon import PassContext
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.service import GitPass
from tests.gitfixtures import model_file
from tests.test_gitsync import World, served, world  # noqa: F401 - the fixture is used by name

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]


def leading_for(calls: int) -> tuple[Callable[[], bool], list[int]]:
    """should_continue that says True `calls` times, then False (the Lease was lost)."""
    asked = [0]

    def should_continue() -> bool:
        asked[0] += 1
        return asked[0] <= calls

    return should_continue, asked


def test_lost_after_the_config_wave_applies_no_workspace_and_writes_no_status(world: World) -> None:  # noqa: F811
    world.dev.write("models/ml/phi.yaml", model_file("phi") + "  config: {max-model-len: 4096}\n")
    world.dev.commit("phi")
    should_continue, asked = leading_for(1)  # the CONFIG wave starts; the NODES wave sees the lost Lease
    done = run_git_pass(world.settings, world.kube, should_continue=should_continue, endpoint_checker=served)
    result = done.sync
    assert asked[0] >= 2
    core = client.CoreV1Api(world.admin)
    assert core.read_namespaced_config_map("phi-inference-config", "ml").metadata.name == "phi-inference-config"
    assert world.workspace("phi") is None
    assert result.abandoned == ABANDONED_MESSAGE and "abandoned: lost leadership / stopping" in result.summary()
    phi = result.outcome("ml.phi")
    assert phi is not None and phi.state == Outcome.ABANDONED and "Workspace/ml/phi" in phi.message
    assert done.writeback is None
    with pytest.raises(Exception):  # noqa: B017 - the status file was never pushed
        world.remote.show("status/ml/phi.yaml")

    # Leading again: the next pass finishes the job and writes status.
    again = run_git_pass(world.settings, world.kube, should_continue=lambda: True, endpoint_checker=served)
    assert not again.sync.abandoned and world.workspace("phi") is not None
    assert again.writeback is not None and again.writeback.committed


def test_the_daemon_pass_hands_its_context_to_the_sync(world: World) -> None:  # noqa: F811
    world.dev.write("models/ml/phi.yaml", model_file("phi"))
    world.dev.commit("phi")
    should_continue, _ = leading_for(1)  # the daemon's own check before the pass, then the first wave
    report = GitPass(world.settings, world.kube, Metrics())(PassContext("interval", should_continue))
    assert "abandoned: lost leadership / stopping" in report.summary
    assert world.workspace("phi") is None


def test_a_replica_without_the_lease_writes_no_drift_event(world: World) -> None:  # noqa: F811
    world.dev.write("gitops-kaito.yaml", "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ndrift: report\n")
    world.dev.write("models/ml/phi.yaml", model_file("phi") + "  config: {max-model-len: 4096}\n")
    world.dev.commit("phi; hand edits reported")
    run_git_pass(world.settings, world.kube, endpoint_checker=served)
    core = client.CoreV1Api(world.admin)
    client.CustomObjectsApi(world.admin).patch_namespaced_custom_object(  # a hand edit of a field we manage
        "kaito.sh", "v1beta1", "ml", "workspaces", "phi",
        {"metadata": {"annotations": {"gitops.kaito.sh/source-path": "edited/by/hand.yaml"}}},
        field_manager="kubectl-annotate")

    def drift_events() -> int:
        assert flush(world.kube, 30)  # queued Events are sent by the connection's own threads
        events = core.list_namespaced_event("ml").items
        return sum(1 for e in events if e.reason == "DriftDetected")

    follower = run_git_pass(world.settings, world.kube, should_continue=lambda: False, endpoint_checker=served)
    assert follower.sync.plan.drift_reported, "the drift was seen"
    assert drift_events() == 0, "a replica that lost its Lease wrote an Event"
    run_git_pass(world.settings, world.kube, should_continue=lambda: True, endpoint_checker=served)
    assert drift_events() == 1
