"""Apply in parallel within a wave, against the emulator: the serial pass's results, Retry-After honoured by every
thread, one model's failure its own, and waves strictly ordered, each read from the API server's request log.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gitops_kaito.adapters.kube import ApiRetry
from gitops_kaito.cli import main
from gitops_kaito.model.states import Outcome
from gitops_kaito.reconcile.apply import ApplyOptions, ApplyResult, apply_plan
from gitops_kaito.reconcile.sync import plan_repository, run_pass
from gitops_kaito.sandbox.hooks import Fault, LoggedRequest
from tests.faultkit import UA, KubeWorld

REV = "main@sha1:" + "a" * 40
REV2 = "main@sha1:" + "b" * 40
HELD = "cfg0"  # first in plan order within the config wave of both commits
WRITES = ("create", "patch", "update", "delete")
CONFIG = "  config: {max-model-len: 4096}\n"
NODECLAIM = "  provisioning: nodeclaim\n"
# A mix of what one wave holds: Workspace-only models, models with a ConfigMap, models with their own NodeClaims.
FIRST = {**{f"ws{i}": "" for i in range(4)}, **{f"cfg{i}": CONFIG for i in range(4)},
         **{f"nc{i}": NODECLAIM for i in range(2)}, "nccfg": NODECLAIM + CONFIG}
# The second commit: two models gone (prunes in reverse wave order), configs edited, a Workspace annotated, new ones.
SECOND = {**{k: v for k, v in FIRST.items() if k not in ("cfg3", "nc1")},
          "cfg0": "  config: {max-model-len: 8192}\n", "cfg1": "  config: {max-model-len: 2048}\n",
          "ws5": CONFIG, "nc5": NODECLAIM + CONFIG}


def write_repo(world: KubeWorld, models: dict[str, str], note: dict[str, str] | None = None) -> None:
    for path in (world.repo / "models" / "ml").glob("*.yaml"):
        path.unlink()
    for name, extra in models.items():
        world.model(name, extra=extra, note=(note or {}).get(name, ""))


def writes(world: KubeWorld, since: float = 0.0) -> list[LoggedRequest]:
    """The reconciler's writes that persist (server-side dry runs and Events left out), in arrival order."""
    return sorted((e for e in world.requests(WRITES, since) if "dryRun" not in e.query and "/events" not in e.path),
                  key=lambda e: e.time)


def kind_of(entry: LoggedRequest) -> str:
    for segment, kind in (("/configmaps/", "ConfigMap"), ("/nodeclaims/", "NodeClaim"), ("/workspaces/", "Workspace"),
                          ("/namespaces/", "Namespace")):
        if segment in entry.path:
            return kind
    return entry.path


def without_uids(result: ApplyResult) -> ApplyResult:
    """uids are the one thing two clusters holding the same objects answer differently."""
    return dataclasses.replace(result, outcomes=tuple(
        dataclasses.replace(m, objects=tuple(dataclasses.replace(o, uid="") for o in m.objects))
        for m in result.outcomes))


def overlapped(log: Sequence[LoggedRequest], held: LoggedRequest) -> list[LoggedRequest]:
    """Requests that arrived while `held` was being answered: after it arrived, logged (answered) before it."""
    order = {id(e): i for i, e in enumerate(log)}
    return [e for e in log if e.time > held.time and order[id(e)] < order[id(held)]]


@dataclasses.dataclass
class Run:
    world: KubeWorld
    results: list[ApplyResult]
    marks: list[float]  # server time before each commit's apply


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, Run]]:
    """The same two commits applied to two fresh clusters, one write at a time and 16 at once. In each commit's apply
    the first model's ConfigMap write (the first one sent) is held for 0.5 s by the server, so the log shows whether
    others went out meanwhile."""
    out: dict[int, Run] = {}
    try:
        for in_flight in (1, 16):
            world = KubeWorld(tmp_path_factory.mktemp(f"in-flight-{in_flight}"))
            run = out[in_flight] = Run(world, [], [])
            for revision, models, held in ((REV, FIRST, HELD), (REV2, SECOND, HELD)):
                write_repo(world, models, note={"ws1": "second"} if revision == REV2 else None)
                _, plan = plan_repository(world.repo, world.kube, revision=revision)
                world.server.faults.add(Fault(method="PATCH", path_regex=f"/configmaps/{held}-inference-config$",
                                              status=0, delay_s=0.5, times=1))
                run.marks.append(world.server.request_log.entries()[-1].time)
                run.results.append(apply_plan(plan, world.kube, ApplyOptions(max_in_flight=in_flight)))
        yield out
    finally:
        for run in out.values():
            run.world.close()


def test_parallel_apply_gives_the_serial_results_and_the_same_cluster(runs: dict[int, Run]) -> None:
    serial, parallel = runs[1], runs[16]
    for one, many in zip(serial.results, parallel.results, strict=True):
        assert without_uids(many) == without_uids(one)
    first, second = serial.results
    assert (first.created, second.created, second.updated, second.pruned) == (16, 4, 3, 3), second
    assert {m.model_id: m.state for m in second.outcomes if m.state != Outcome.UNCHANGED} == {
        "ml.cfg0": Outcome.APPLIED, "ml.cfg1": Outcome.APPLIED, "ml.ws1": Outcome.APPLIED, "ml.cfg3": Outcome.PRUNED,
        "ml.nc1": Outcome.PRUNED, "ml.ws5": Outcome.APPLIED, "ml.nc5": Outcome.PROVISIONING,
        # no controllers here: their NodeClaims never become ready, so their Workspaces wait
        "ml.nc0": Outcome.PROVISIONING, "ml.nccfg": Outcome.PROVISIONING}
    assert parallel.world.snapshot() == serial.world.snapshot()
    assert nodeclaims_of(parallel.world) == nodeclaims_of(serial.world)


def nodeclaims_of(world: KubeWorld) -> dict[str, Any]:
    """The NodeClaims (cluster-scoped, outside KubeWorld.snapshot): name -> labels and spec."""
    items = world.custom().list_cluster_custom_object("karpenter.sh", "v1", "nodeclaims")["items"]
    return {i["metadata"]["name"]: {"labels": i["metadata"].get("labels"), "spec": i.get("spec")} for i in items}


def test_writes_overlap_only_when_more_than_one_is_allowed(runs: dict[int, Run]) -> None:
    """The held write shows it: 16 in flight, other models' writes arrive while it is being answered; one in flight,
    every write arrives after the one before it was answered."""
    for in_flight, run in runs.items():
        log = run.world.server.request_log.entries()
        for mark, held_name in zip(run.marks, (HELD, HELD), strict=True):
            held = next(e for e in log if e.time > mark and e.path.endswith(f"/configmaps/{held_name}-inference-config"))
            meanwhile = overlapped([e for e in log if e.user_agent.startswith(UA)], held)
            assert bool(meanwhile) == (in_flight > 1), (in_flight, held_name, [e.path for e in meanwhile])


def test_waves_stay_ordered_under_parallelism(runs: dict[int, Run]) -> None:
    """ConfigMaps, then NodeClaims, then Workspaces; deletes after every apply, Workspaces first, ConfigMaps last.
    No write of a wave arrives before the last write of the wave before it (by arrival time in the server's log)."""
    run = runs[16]
    for mark, order in zip(run.marks, ((("ConfigMap", "patch"), ("NodeClaim", "patch"), ("Workspace", "patch")),
                                       (("ConfigMap", "patch"), ("NodeClaim", "patch"), ("Workspace", "patch"),
                                        ("Workspace", "delete"), ("NodeClaim", "delete"), ("ConfigMap", "delete"))),
                            strict=True):
        seen = [(kind_of(e), e.verb, e.time) for e in writes(run.world, since=mark)]
        if mark == run.marks[0]:
            seen = [s for s in seen if s[2] < run.marks[1]]
        steps = [[t for k, v, t in seen if (k, v) == step] for step in order]
        assert all(steps), (order, seen)  # every step of the order is there to be ordered
        assert sorted({(k, v) for k, v, _ in seen}) == sorted(order), seen
        for earlier, later in itertools.pairwise(steps):
            assert max(earlier) < min(later), (order, seen)


# -- faults -------------------------------------------------------------------------------------------------------

# Retry-After is honoured up to 2 s here (the suite's usual client caps it at 0.05 s to stay fast).
HONOUR = ApiRetry(attempts=4, base_delay_s=0.01, max_delay_s=0.05, max_retry_after_s=2.0, request_timeout_s=5.0)
THROTTLED = {f"cfg{i}": CONFIG for i in range(5)}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KubeWorld]:
    w = KubeWorld(tmp_path, retry=HONOUR)
    try:
        yield w
    finally:
        w.close()


def test_429_retry_after_holds_back_every_thread_and_every_write_lands(world: KubeWorld) -> None:
    """API priority and fairness: the server answers 429 with Retry-After: 1.
    - Every ConfigMap write's first attempt: each is retried no earlier than 1 s after its 429 arrived, and lands.
    - In the node wave, `nc1`'s first NodeClaim write is throttled while `nc0`'s first is held by the server; `nc0`'s
      second NodeClaim write starts after the 429 was answered (its first took 0.8 s), on another thread: the shared
      not-before time holds it back too, so it arrives no earlier than 1 s after the 429 did.
    The pass reports no failure and every object is written."""
    models = {**THROTTLED, "nc0": "  provisioning: nodeclaim\n  nodes: 2\n", "nc1": NODECLAIM, "plain": ""}
    write_repo(world, models)
    _, plan = plan_repository(world.repo, world.kube, revision=REV)
    claims = {m: [c.ref.name for c in plan.for_model(f"ml.{m}") if c.ref.kind == "NodeClaim"] for m in ("nc0", "nc1")}
    assert len(claims["nc0"]) == 2 and len(claims["nc1"]) == 1, claims
    for name in THROTTLED:
        world.server.faults.add(Fault(method="PATCH", path_regex=f"/configmaps/{name}-inference-config$", status=429,
                                      retry_after=1, times=1))
    world.server.faults.add(Fault(method="PATCH", path_regex=f"/nodeclaims/{claims['nc0'][0]}$", status=0,
                                  delay_s=0.8, times=1))
    world.server.faults.add(Fault(method="PATCH", path_regex=f"/nodeclaims/{claims['nc1'][0]}$", status=429,
                                  retry_after=1, times=1))
    result = run_pass(world.repo, world.kube, revision=REV, options=ApplyOptions(max_in_flight=16))
    assert result.ok and result.failed == 0, result.outcomes
    assert result.created == 2 * len(THROTTLED) + 1 + 3, result.outcomes  # + plain's Workspace, 3 NodeClaims
    assert world.configmaps() == {f"{name}-inference-config" for name in THROTTLED}
    assert world.workspaces() == {*THROTTLED, "plain"}  # the NodeClaim models' wait for their nodes
    log = [e for e in world.requests() if "dryRun" not in e.query]  # the preflight's dry runs came before
    throttled = [e for e in log if e.status == 429]
    assert len(throttled) == len(THROTTLED) + 1
    for answer in throttled:  # each throttled write's retry: the next request on its path
        retry = next(e for e in log if e.path == answer.path and e.time > answer.time)
        assert retry.time - answer.time >= 1.0 and retry.status in (200, 201), (answer.path, retry)
    throttle = next(e for e in throttled if e.path.endswith(claims["nc1"][0]))
    held = next(e for e in log if e.path.endswith(claims["nc0"][0]))
    second = next(e for e in log if e.path.endswith(claims["nc0"][1]))
    # Both went out at the wave's start, so nc0's second write (0.8 s after its first) starts after the 429 was seen.
    assert abs(held.time - throttle.time) < 0.3, held.time - throttle.time
    assert second.time - throttle.time >= 1.0, (second.time - throttle.time, second.time - held.time)


def test_one_model_refused_fails_alone_while_its_wave_lands(world: KubeWorld) -> None:
    """The API server answers 422 to one Workspace's write (its first: no dry run before it): that model Failed
    with the server's words, every other Workspace of the same wave written, the next pass retries it."""
    models = {**{f"ws{i}": "" for i in range(6)}, "cfg0": CONFIG}
    write_repo(world, models)
    world.server.faults.add(Fault(method="PATCH", path_regex=r"/workspaces/ws3$", status=422, times=1,
                                  message="Workspace.kaito.sh \"ws3\" is invalid: refused by this test"))
    result = run_pass(world.repo, world.kube, revision=REV, options=ApplyOptions(max_in_flight=16))
    states = {o.model_id: o.state for o in result.outcomes}
    assert states == {**{f"ml.{m}": Outcome.APPLIED for m in models}, "ml.ws3": Outcome.FAILED}
    failed = result.outcome("ml.ws3")
    assert failed is not None and "refused by this test" in failed.message
    assert result.failed == 1 and not result.ok
    assert world.workspaces() == set(models) - {"ws3"}
    again = run_pass(world.repo, world.kube, revision=REV)
    assert again.ok and world.workspaces() == set(models)


# -- `sync --max-in-flight` -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "env", "said"), [
    (["--max-in-flight", "0"], None, "--max-in-flight: max-in-flight must be between 1 and 256, not 0"),
    (["--max-in-flight", "lots"], "4", "--max-in-flight: max-in-flight must be a whole number, not 'lots'"),
    ([], "300", "GITOPS_KAITO_MAX_IN_FLIGHT: max-in-flight must be between 1 and 256, not 300"),
])
def test_sync_refuses_a_bad_max_in_flight_before_connecting(world: KubeWorld, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], flag: list[str],
                                                            env: str | None, said: str) -> None:
    write_repo(world, {"cfg0": CONFIG})
    if env is not None:
        monkeypatch.setenv("GITOPS_KAITO_MAX_IN_FLIGHT", env)
    before = len(world.requests())
    assert main(["sync", "--repo", str(world.repo), "--kubeconfig", str(world.kubeconfig), *flag]) == 2
    assert capsys.readouterr().err.strip() == f"error: {said}"
    assert len(world.requests()) == before  # nothing was asked of the cluster


def test_sync_sends_as_many_writes_at_once_as_max_in_flight_says(world: KubeWorld, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """cfg0's ConfigMap write is held 0.5 s by the server: with GITOPS_KAITO_MAX_IN_FLIGHT=1 nothing else goes out
    meanwhile (the default, 16, would send the others); then `--max-in-flight 4` wins over that environment and the
    next commit's writes (every config edited) go out while cfg0's is held."""
    monkeypatch.setenv("GITOPS_KAITO_MAX_IN_FLIGHT", "1")
    seen: dict[str, list[LoggedRequest]] = {}
    for flag, config in (([], "4096"), (["--max-in-flight", "4"], "8192")):
        write_repo(world, {f"cfg{i}": f"  config: {{max-model-len: {config}}}\n" for i in range(4)})
        world.server.faults.add(Fault(method="PATCH", path_regex=f"/configmaps/{HELD}-inference-config$", status=0,
                                      delay_s=0.5, times=1))
        mark = world.server.request_log.entries()[-1].time if len(world.server.request_log) else 0.0
        assert main(["sync", "--repo", str(world.repo), "--kubeconfig", str(world.kubeconfig), *flag]) == 0
        log = [e for e in world.requests() if e.time > mark]
        held = next(e for e in log if e.path.endswith(f"/configmaps/{HELD}-inference-config") and e.verb == "patch")
        seen["flag" if flag else "env"] = overlapped(log, held)
    assert seen["env"] == [] and len(seen["flag"]) >= 1, {k: [e.path for e in v] for k, v in seen.items()}
    assert capsys.readouterr().out.count("Applied") == 8
