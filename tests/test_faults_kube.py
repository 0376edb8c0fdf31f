"""Fault injection on the Kubernetes API: each test injects one fault into the emulator (or cuts it off) during a
sync pass made through the real kubernetes client, then checks the pass retried or failed cleanly, nothing was
pruned by mistake, and the next pass converges.

410 on watch does not apply: the reconciler never watches; each pass is level-triggered on one LIST per managed
kind (kube.read_live), so a 410 can only come from a LIST, which test_410_gone_on_a_list_fails_cleanly covers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gitops_kaito.cli import main
from gitops_kaito.reconcile.sync import SyncError, run_pass
from gitops_kaito.sandbox.apiserver import Fault
from tests.faultkit import UA, KubeWorld, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

REV1, REV2 = "main@sha1:" + "1" * 40, "main@sha1:" + "2" * 40
MODELS = ("phi", "qwen", "mistral")
WS = "/apis/kaito.sh/v1beta1/namespaces/ml/workspaces"
WS_LIST = r"/apis/kaito.sh/v1beta1/workspaces$"
PHI_CONFIG = "  config: {max-model-len: 4096}\n"  # phi also owns a ConfigMap


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KubeWorld]:
    with KubeWorld(tmp_path) as w:
        w.models(MODELS)
        w.model("phi", extra=PHI_CONFIG)
        yield w


def converge(world: KubeWorld, revision: str = REV2) -> None:
    """The pass after the fault: every model applied, nothing failed, and a further pass writes nothing."""
    after = run_pass(world.repo, world.kube, revision=revision)
    assert after.ok and after.failed == 0, f"the pass after the fault did not converge: {after.outcomes}"
    assert world.workspaces() == set(MODELS), "the pass after the fault left the workspaces incomplete"
    mark = time.time()
    again = run_pass(world.repo, world.kube, revision=revision)
    assert (again.created, again.updated, again.pruned, again.failed) == (0, 0, 0, 0)
    assert world.writes(since=mark) == 0, "a converged repository still caused writes"


def test_500s_are_retried_within_the_pass(world: KubeWorld) -> None:
    """Fault: HTTP 500 twice on the first apply of every object kind. Checks: the client retries, the pass ends
    ok with every object created, and the 500s are visible in the emulator's log."""
    world.server.faults.add(Fault(method="PATCH", path_regex=WS, status=500, times=2))
    world.server.faults.add(Fault(method="PATCH", path_regex="/configmaps/", status=500, times=2))
    result = run_pass(world.repo, world.kube, revision=REV1)
    assert result.ok, f"500s were not retried away: {result.outcomes}"
    assert (result.created, result.failed) == (4, 0)
    failed = world.server.request_log.select(user_agent_prefix=UA, method="PATCH")
    failed = [e for e in failed if e.status == 500]
    assert len(failed) == 4, "the injected 500s did not reach the reconciler"
    converge(world, REV1)


def test_persistent_500_fails_one_model_cleanly_and_the_next_pass_converges(world: KubeWorld) -> None:
    """Fault: every apply of qwen's Workspace answers 500 for the whole pass. Checks: qwen ends Failed with the
    server's message, phi and mistral are applied, no model is pruned, and the pass after the fault converges."""
    run_pass(world.repo, world.kube, revision=REV1)
    world.model("qwen", extra="  config: {max-model-len: 2048}\n")  # qwen changes: its update will fail
    world.server.faults.add(Fault(method="PATCH", path_regex=f"{WS}/qwen$", status=500, times=None,
                                  message="etcd leader changed"))
    result = run_pass(world.repo, world.kube, revision=REV2)
    qwen = result.outcome("ml.qwen")
    assert qwen is not None and qwen.state == "Failed", result.outcomes
    assert "etcd leader changed" in qwen.message, "the failure does not carry the server's message"
    assert {o.model_id: o.state for o in result.outcomes if o.model_id != "ml.qwen"} == {
        "ml.mistral": "Unchanged", "ml.phi": "Unchanged"}
    assert result.pruned == 0 and world.missing(MODELS) == [], "a failing model was pruned"
    world.server.faults.clear()
    converge(world)
    assert world.configmaps() == {"phi-inference-config", "qwen-inference-config"}


def test_429_retry_after_is_honoured_and_capped(tmp_path: Path) -> None:
    """Fault: 429 Too Many Requests with Retry-After: 1 on the first Workspace LIST, then Retry-After: 3600.
    Checks: the client waits what the server asked (capped by max_retry_after_s, so a hostile 3600 cannot
    stall the daemon), then the pass succeeds; the waits are recorded, not slept."""
    slept: list[float] = []
    from gitops_kaito.adapters.kube import ApiRetry

    w = KubeWorld(tmp_path, sleep=slept.append,
                  retry=ApiRetry(attempts=4, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=30.0,
                                    request_timeout_s=2.0))
    try:
        w.models(MODELS)
        w.server.faults.add(Fault(method="GET", path_regex=WS_LIST, status=429, retry_after=1, times=1))
        w.server.faults.add(Fault(method="GET", path_regex=WS_LIST, status=429, retry_after=3600, times=1))
        result = run_pass(w.repo, w.kube, revision=REV1)
        assert result.ok and result.created == 3, result.outcomes
        assert slept[:2] == [1.0, 30.0], f"Retry-After not honoured/capped: {slept}"
        assert len([e for e in w.server.request_log.select(user_agent_prefix=UA, method="GET") if e.status == 429]) == 2
    finally:
        w.close()


def test_timeout_beyond_the_client_deadline_is_retried(tmp_path: Path) -> None:
    """Fault: the server holds qwen's apply for 5 s, beyond the client's 0.3 s request deadline, then drops it.
    Checks: the client gives up on that request (ApiRetry.request_timeout_s) and retries instead of hanging,
    and the pass succeeds with every object written."""
    from gitops_kaito.adapters.kube import ApiRetry

    w = KubeWorld(tmp_path, retry=ApiRetry(attempts=4, base_delay_s=0.01, max_delay_s=0.05,
                                              request_timeout_s=0.3))
    try:
        w.models(MODELS)
        held = w.server.faults.add(Fault(method="PATCH", path_regex=f"{WS}/qwen$", status=0, delay_s=5.0,
                                         drop_connection=True, times=1))
        result = run_pass(w.repo, w.kube, revision=REV1)
        assert held.hits == 1, "the slow request was never made"
        assert result.ok and result.created == 3, result.outcomes
        assert w.workspaces() == set(MODELS)
    finally:
        w.close()


def test_discovery_that_never_answers_times_out_and_the_next_pass_recovers(tmp_path: Path) -> None:
    """Fault: the server accepts the discovery request (GET /apis) and holds it far beyond the client's deadline.
    Checks: discovery is bounded by ApiRetry.request_timeout_s like every other call (the dynamic client passes
    no deadline of its own), is retried, and the pass then fails with one clear error instead of hanging; once
    discovery answers again the next pass converges."""
    from gitops_kaito.adapters.kube import ApiRetry

    w = KubeWorld(tmp_path, retry=ApiRetry(attempts=2, base_delay_s=0.01, max_delay_s=0.05,
                                              request_timeout_s=0.3))
    try:
        w.models(MODELS)
        held = w.server.faults.add(Fault(method="GET", path_regex=r"^/apis$", status=0, delay_s=5.0, times=None))
        with pytest.raises(SyncError, match="timed out"):
            run_pass(w.repo, w.kube, revision=REV1)
        assert held.hits == 2, "discovery was not retried once, or not bounded"
        w.server.faults.clear()
        result = run_pass(w.repo, w.kube, revision=REV1)
        assert result.ok and result.created == 3, result.outcomes
    finally:
        w.close()


def test_connection_refused_fails_the_pass_cleanly(world: KubeWorld, capsys: pytest.CaptureFixture[str]) -> None:
    """Fault: the API server is gone before the pass (connection refused). Checks: run_pass raises SyncError
    naming the unreachable server, the CLI exits 2 with one plain error line and no traceback, nothing changes,
    and once the server is back the next pass converges."""
    run_pass(world.repo, world.kube, revision=REV1)
    before = world.snapshot()
    world.proxy.cut()
    with pytest.raises(SyncError, match="cannot reach the API server"):
        run_pass(world.repo, world.kube, revision=REV2)
    code = main(["sync", "--repo", str(world.repo), "--kubeconfig", str(world.kubeconfig)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the API server" in err, err
    assert "Traceback" not in err
    assert world.snapshot() == before, "a pass against an unreachable server changed something"
    world.proxy.restore()
    converge(world, REV1)


def test_api_server_goes_away_in_the_middle_of_a_pass(world: KubeWorld) -> None:
    """Fault: the API server vanishes (open connections reset, new ones refused) while the pass is applying the
    second of four changed models; a model removed from the repository is due for prune in the same pass.
    Checks: the pass returns (no exception, no hang) with the unreached models Failed and a clear connection
    message, nothing is pruned by mistake (every model's Workspace, and the removed one's, still exist),
    and once the server is back the next pass converges and then prunes what the repository removed."""
    world.model("llama")
    run_pass(world.repo, world.kube, revision=REV1)
    assert world.workspaces() == {*MODELS, "llama"}
    for name in MODELS:  # every model changes, so every Workspace is patched in the next pass
        world.model(name, note="v2", extra=PHI_CONFIG if name == "phi" else "")
    (world.repo / "models" / "ml" / "llama.yaml").unlink()
    # The pass reaches mistral's Workspace first (sorted apply order), then hangs on phi's: the server goes away then.
    gate = world.server.faults.add(Fault(method="PATCH", path_regex=f"{WS}/phi$", status=0, delay_s=10.0,
                                         drop_connection=True, times=1))

    def cut_when_phi_is_in_flight() -> None:
        wait_until(lambda: gate.hits >= 1, timeout=20, what="phi's apply to reach the server")
        world.proxy.cut()

    cutter = threading.Thread(target=cut_when_phi_is_in_flight, daemon=True)
    cutter.start()
    result = run_pass(world.repo, world.kube, revision=REV2)
    cutter.join(timeout=20)
    assert not world.proxy.up
    failed = {o.model_id for o in result.outcomes if o.state == "Failed"}
    assert "ml.phi" in failed and "cannot reach the API server" in (result.outcome("ml.phi") or result).message
    assert result.pruned == 0, "a prune went through while the server was gone"
    assert world.missing([*MODELS, "llama"]) == [], "objects were lost while the API server was away"
    world.proxy.restore()
    after = run_pass(world.repo, world.kube, revision=REV2)
    assert after.failed == 0 and after.pruned == 1, after.outcomes
    assert world.workspaces() == set(MODELS)
    converge(world)


def test_409_conflict_fails_one_object_and_the_next_pass_converges(world: KubeWorld) -> None:
    """Fault: 409 Conflict on mistral's Workspace apply (another writer won a race). Checks: a conflict is not
    retried blindly in-pass (it is not transient), only mistral fails with the server's reason, the other
    models are created, and the next pass converges."""
    world.server.faults.add(Fault(method="PATCH", path_regex=f"{WS}/mistral$", status=409, times=1,
                                  message="Operation cannot be fulfilled: the object has been modified"))
    result = run_pass(world.repo, world.kube, revision=REV1)
    mistral = result.outcome("ml.mistral")
    assert mistral is not None and mistral.state == "Failed" and "Conflict" in mistral.message, result.outcomes
    assert world.workspaces() == {"phi", "qwen"}
    converge(world, REV1)


def test_webhook_denial_of_one_model_is_reported_and_isolated(world: KubeWorld) -> None:
    """Fault: an admission webhook denies every write of qwen's Workspace (403 with a Status message, as KAITO's
    validating webhook answers). Checks: qwen is Failed with the webhook's message verbatim, its existing
    Workspace is kept as it was, the other models are updated, and after the webhook relents the pass converges."""
    run_pass(world.repo, world.kube, revision=REV1)
    old_qwen = world.workspace("qwen")
    world.model("qwen", note="v2")
    world.model("mistral", note="v2")
    denial = ('admission webhook "validation.workspace.kaito.sh" denied the request: '
              "validation failed: instanceType Standard_NC6 is not supported")
    world.server.faults.add(Fault(method="PATCH", path_regex=f"{WS}/qwen$", status=403, times=None, message=denial))
    result = run_pass(world.repo, world.kube, revision=REV2)
    qwen = result.outcome("ml.qwen")
    assert qwen is not None and qwen.state == "Failed" and denial in qwen.message, result.outcomes
    assert {o.model_id: o.state for o in result.outcomes} == {
        "ml.mistral": "Applied", "ml.phi": "Unchanged", "ml.qwen": "Failed"}
    assert world.workspace("qwen") == old_qwen, "a denied model's live object changed"
    assert world.missing(MODELS) == []
    world.server.faults.clear()
    converge(world)


def test_410_gone_on_a_list_fails_cleanly(world: KubeWorld) -> None:
    """Fault: 410 Gone (Expired) on the Workspace LIST that reads live state. Checks: the pass stops before any
    write (planning without knowing the live state could prune), with a SyncError naming the 410, and the next
    pass converges."""
    run_pass(world.repo, world.kube, revision=REV1)
    mark = time.time()
    world.server.faults.add(Fault(method="GET", path_regex=WS_LIST, status=410, times=1,
                                  message="The provided continue parameter is too old"))
    with pytest.raises(SyncError, match="410"):
        run_pass(world.repo, world.kube, revision=REV2)
    assert world.writes(since=mark) == 0 and world.missing(MODELS) == []
    converge(world)


def test_failed_prune_keeps_the_object_and_retries_next_pass(world: KubeWorld) -> None:
    """Fault: 500 on every DELETE while a removed model is pruned. Checks: the prune is reported failed, the
    object is still there, the kept models are untouched, and the next pass completes the prune."""
    world.model("llama")
    run_pass(world.repo, world.kube, revision=REV1)
    (world.repo / "models" / "ml" / "llama.yaml").unlink()
    world.server.faults.add(Fault(method="DELETE", path_regex=f"{WS}/llama$", status=500, times=None))
    result = run_pass(world.repo, world.kube, revision=REV2)
    assert result.failed == 1 and result.pruned == 0
    assert world.missing([*MODELS, "llama"]) == []
    world.server.faults.clear()
    after = run_pass(world.repo, world.kube, revision=REV2)
    assert after.pruned == 1 and world.workspaces() == set(MODELS)
    converge(world)
