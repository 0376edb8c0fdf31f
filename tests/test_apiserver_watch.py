"""Watch on the sandbox API emulator: initial ADDED events, resume, selectors, timeouts, 410 and clean stop.

Uses kubernetes.watch.Watch, the way informers and the reconciler consume events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox.apiserver import ApiServer


@pytest.fixture
def server() -> Iterator[ApiServer]:
    """The shared server with a short watch history, so a resume from an old resourceVersion hits 410."""
    srv = ApiServer(history_limit=20).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


def cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data or {}}


def collect(core: client.CoreV1Api, count: int, **kwargs: Any) -> list[tuple[str, str]]:
    w = watch.Watch()
    seen: list[tuple[str, str]] = []
    for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5, **kwargs):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) >= count:
            w.stop()
    return seen


def test_initial_added_events_without_resource_version(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", cm("a"))
    core.create_namespaced_config_map("default", cm("b"))
    assert collect(core, 2) == [("ADDED", "a"), ("ADDED", "b")]


def test_resume_from_resource_version_sees_only_later_changes(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", cm("a"))
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.create_namespaced_config_map("default", cm("b"))
    core.delete_namespaced_config_map("a", "default")
    assert collect(core, 3, resource_version=rv) == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_label_selector_filters_and_translates_transitions(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", cm("a", {"app": "x"}))
    core.create_namespaced_config_map("default", cm("b", {"app": "y"}))
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"app": "z"}}})  # leaves selector
    core.patch_namespaced_config_map("b", "default", {"metadata": {"labels": {"app": "x"}}})  # enters selector
    events = collect(core, 3, resource_version=rv, label_selector="app=x")
    assert events == [("ADDED", "a"), ("DELETED", "a"), ("ADDED", "b")]


def test_live_events_are_delivered_while_watching(core: client.CoreV1Api) -> None:
    ready = threading.Event()
    result: list[tuple[str, str]] = []

    def watcher() -> None:
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        ready.set()
        result.extend(collect(core, 1, resource_version=rv))

    t = threading.Thread(target=watcher)
    t.start()
    assert ready.wait(5)
    core.create_namespaced_config_map("default", cm("live"))
    t.join(10)
    assert result == [("ADDED", "live")]


def test_timeout_seconds_ends_the_stream(core: client.CoreV1Api) -> None:
    start = time.monotonic()
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    events = list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                       timeout_seconds=1))
    assert events == []
    assert time.monotonic() - start < 10  # ended by the server, not the pytest timeout


def test_compacted_resource_version_gives_410(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", cm("a")).metadata.resource_version
    for i in range(50):
        core.patch_namespaced_config_map("a", "default", {"data": {"i": str(i)}})
    with pytest.raises(ApiException) as gone:
        list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=first,
                                  timeout_seconds=2))
    assert gone.value.status == 410


def test_stop_ends_open_watch_streams_promptly(server: ApiServer, core: client.CoreV1Api) -> None:
    finished = threading.Event()

    def watcher() -> None:
        try:
            rv = core.list_namespaced_config_map("default").metadata.resource_version
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                          timeout_seconds=60):
                pass
        except Exception:
            pass
        finished.set()

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while server.request_log.count(verbs=["watch"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.request_log.count(verbs=["watch"]) == 1
    server.stop()
    assert finished.wait(5)


def test_watch_cluster_scoped_nodes_through_dynamic_client(server: ApiServer, core: client.CoreV1Api,
                                                           tmp_path: Path) -> None:
    from kubernetes.dynamic import DynamicClient

    core.create_node({"metadata": {"name": "n1"}})
    dyn = DynamicClient(core.api_client, cache_file=str(tmp_path / "discovery.json"))
    nodes = dyn.resources.get(api_version="v1", kind="Node")
    seen = []
    for event in dyn.watch(nodes, timeout=5):
        seen.append((event["type"], event["object"].metadata.name))
        break
    assert seen == [("ADDED", "n1")]


def raw_events(core: client.CoreV1Api, count: int, **kwargs: Any) -> list[dict[str, Any]]:
    """Watch events as the server sent them (BOOKMARKs included), until `count` arrived or the stream ended."""
    w = watch.Watch()
    seen: list[dict[str, Any]] = []
    for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=5, **kwargs):
        seen.append(event)
        if len(seen) >= count:
            w.stop()
    return seen


def test_bookmarks_carry_the_resource_version_past_other_kinds_writes(server: ApiServer,
                                                                      core: client.CoreV1Api) -> None:
    server.api.bookmark_interval_s = 0.05
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespace({"metadata": {"name": "elsewhere"}})  # another kind: never an event on this stream
    newest = core.create_namespaced_config_map("elsewhere", cm("x")).metadata.resource_version
    events = raw_events(core, 1, resource_version=rv, allow_watch_bookmarks=True)
    assert [e["type"] for e in events] == ["BOOKMARK"]
    assert int(events[0]["raw_object"]["metadata"]["resourceVersion"]) >= int(newest)
    # Without the opt-in no bookmark is sent: the stream just ends at its timeout.
    assert list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=newest,
                                     timeout_seconds=1)) == []


def test_bookmark_ends_a_timed_out_stream(server: ApiServer, core: client.CoreV1Api) -> None:
    server.api.bookmark_interval_s = 3600  # only the closing one
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    events = list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                       timeout_seconds=1, allow_watch_bookmarks=True))
    assert [e["type"] for e in events] == ["BOOKMARK"]


def test_restart_serves_the_same_objects_and_expires_older_versions(server: ApiServer,
                                                                    core: client.CoreV1Api) -> None:
    before = core.create_namespaced_config_map("default", cm("a")).metadata.resource_version
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})  # history the restart forgets
    port = server.port
    server.restart(compact=True)
    assert server.port == port
    listed = core.list_namespaced_config_map("default")
    assert [i.metadata.name for i in listed.items] == ["a"]
    with pytest.raises(ApiException) as gone:
        list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=before,
                                  timeout_seconds=2))
    assert gone.value.status == 410
    # From the listed version the watch works again.
    core.create_namespaced_config_map("default", cm("b"))
    assert collect(core, 1, resource_version=listed.metadata.resource_version) == [("ADDED", "b")]


def test_lost_watch_events_are_stored_but_never_delivered(server: ApiServer, core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    server.lose_watch_events(lambda etype, obj: obj["metadata"]["name"] == "b")
    for name in ("a", "b", "c"):
        core.create_namespaced_config_map("default", cm(name))
    assert collect(core, 2, resource_version=rv) == [("ADDED", "a"), ("ADDED", "c")]
    assert {i.metadata.name for i in core.list_namespaced_config_map("default").items} == {"a", "b", "c"}


def test_latency_delays_requests_without_holding_stop() -> None:
    srv = ApiServer(latency_s=30.0).start()
    finished = threading.Event()
    failures: list[BaseException] = []

    def call() -> None:
        configuration = client.Configuration()
        configuration.host = srv.url
        try:
            client.CoreV1Api(client.ApiClient(configuration)).list_namespace(_request_timeout=60)
        except BaseException as err:  # the stop cuts the request: that is the point
            failures.append(err)
        finished.set()

    threading.Thread(target=call, daemon=True).start()
    assert not finished.wait(0.2)  # still held by the 30 s latency
    srv.stop()
    assert finished.wait(10)
