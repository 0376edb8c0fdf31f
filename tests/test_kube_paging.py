"""Paged LISTs: kube.Kube.list_versioned reads a kind in pages (limit/continue) and keeps compact projections; the
emulator serves the pages as kube-apiserver does (one snapshot, remainingItemCount, 410 Expired on a compacted token).

Through the official client over HTTP, against the emulator (faults are the emulator's, so emulator_only).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.adapters.kube import LIST_RESTARTS, Kube
from gitops_kaito.sandbox.apiserver import ApiServer, Fault

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

LIST_PATH = r"^/api/v1/configmaps$"
SELECTOR = "paging=yes"


@pytest.fixture
def kube(server: ApiServer, tmp_path: Path) -> Iterator[Kube]:
    with Kube.connect(server.write_kubeconfig(tmp_path / "kubeconfig")) as k:
        yield k


def make(api: client.ApiClient, names: list[str], namespace: str = "default") -> None:
    core = client.CoreV1Api(api)
    for name in names:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"paging": "yes"}},
                                                      "data": {"k": name}})


def lists(server: ApiServer) -> list[dict[str, str]]:
    """Our LIST requests of ConfigMaps, in order, as their query parameters."""
    return [{k: v[-1] for k, v in parse_qs(e.query).items()}
            for e in server.request_log.select(user_agent_prefix="gitops-kaito/", method="GET")
            if e.path == "/api/v1/configmaps"]


def names(items: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in items]


def test_a_paged_list_returns_every_object_once_as_compact_projections(
        server: ApiServer, api: client.ApiClient, kube: Kube) -> None:
    made = [f"cm-{i}" for i in range(7)]
    make(api, made)
    client.CoreV1Api(api).create_namespaced_config_map("default", {"metadata": {"name": "other"}})
    items, version = kube.list_versioned("v1", "ConfigMap", SELECTOR, page_size=3)
    assert sorted(names(items)) == made  # each once, the unlabelled one left out
    assert [q.get("limit") for q in lists(server)] == ["3", "3", "3"]
    assert "continue" not in lists(server)[0] and all("continue" in q for q in lists(server)[1:])
    assert version == str(server.api.store.rv)
    assert all(o["apiVersion"] == "v1" and o["kind"] == "ConfigMap" for o in items)
    # The projection: managedFields without their times; the data and our manager's fields are all there.
    for o in items:
        (entry,) = o["metadata"]["managedFields"]
        assert "time" not in entry and entry["fieldsV1"]["f:data"] == {"f:k": {}}
        assert o["data"] == {"k": o["metadata"]["name"]}
    # Objects with the same field set share one copy of it.
    assert len({id(o["metadata"]["managedFields"][0]["fieldsV1"]) for o in items}) == 1


def test_an_expired_continue_token_lists_again_from_the_first_page(
        server: ApiServer, api: client.ApiClient, kube: Kube) -> None:
    made = [f"cm-{i}" for i in range(7)]
    make(api, made)
    server.faults.add(Fault(method="GET", path_regex=LIST_PATH, query_regex="continue=", status=410, times=1,
                            message="The provided continue parameter is too old"))
    items, _ = kube.list_versioned("v1", "ConfigMap", SELECTOR, page_size=3)
    assert sorted(names(items)) == made  # nothing twice: the pages read before the 410 were dropped
    tokens = ["continue" in q for q in lists(server)]
    assert tokens == [False, True, False, True, True]  # page 1, the expired page 2, then all three again


def test_a_token_that_keeps_expiring_ends_in_one_unpaged_list(
        server: ApiServer, api: client.ApiClient, kube: Kube) -> None:
    made = [f"cm-{i}" for i in range(5)]
    make(api, made)
    server.faults.add(Fault(method="GET", path_regex=LIST_PATH, query_regex="continue=", status=410, times=None))
    items, _ = kube.list_versioned("v1", "ConfigMap", SELECTOR, page_size=2)
    assert sorted(names(items)) == made
    queries = lists(server)
    assert len(queries) == 2 * LIST_RESTARTS + 1 and "limit" not in queries[-1]


def test_a_410_on_the_first_page_is_an_error_not_a_restart(
        server: ApiServer, api: client.ApiClient, kube: Kube) -> None:
    make(api, ["a"])
    server.faults.add(Fault(method="GET", path_regex=LIST_PATH, status=410, times=1))
    with pytest.raises(Exception, match="410"):
        kube.list_versioned("v1", "ConfigMap", SELECTOR, page_size=2)
    assert len(lists(server)) == 1


# ---- the emulator's pages, as kube-apiserver serves them --------------------------------------------------------


def test_pages_are_one_snapshot_at_the_first_pages_resource_version(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    make(api, ["a", "b", "c", "d"])
    first = core.list_namespaced_config_map("default", limit=2)
    assert [c.metadata.name for c in first.items] == ["a", "b"]
    at = first.metadata.resource_version
    assert first.metadata.remaining_item_count == 2
    # Changes after the first page: none of them shows on the later pages.
    core.delete_namespaced_config_map("c", "default")
    core.patch_namespaced_config_map("d", "default", {"data": {"k": "changed"}})
    make(api, ["bb", "e"])
    rest = core.list_namespaced_config_map("default", limit=2, _continue=first.metadata._continue)
    assert [(c.metadata.name, c.data["k"]) for c in rest.items] == [("c", "c"), ("d", "d")]
    assert rest.metadata.resource_version == at and not rest.metadata._continue
    assert rest.metadata.remaining_item_count is None
    # A new LIST sees the present.
    now = core.list_namespaced_config_map("default")
    assert [c.metadata.name for c in now.items] == ["a", "b", "bb", "d", "e"]
    assert int(now.metadata.resource_version) > int(at)


def test_a_filtered_page_has_no_remaining_item_count(api: client.ApiClient) -> None:
    make(api, ["a", "b", "c"])
    page = client.CoreV1Api(api).list_namespaced_config_map("default", limit=1, label_selector=SELECTOR)
    assert page.metadata._continue and page.metadata.remaining_item_count is None


def test_a_continue_token_older_than_the_history_is_410_expired(server: ApiServer, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    make(api, ["a", "b", "c"])
    first = core.list_namespaced_config_map("default", limit=1)
    make(api, ["d"])
    server.api.store.compact()  # etcd compacted the revision the pages are read at
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default", limit=1, _continue=first.metadata._continue)
    assert err.value.status == 410 and json.loads(err.value.body)["reason"] == "Expired"
    # A token from after the compaction still reads.
    again = core.list_namespaced_config_map("default", limit=1)
    token = json.loads(base64.urlsafe_b64decode(again.metadata._continue.encode()))
    assert str(token["rv"]) == again.metadata.resource_version
    assert len(core.list_namespaced_config_map("default", limit=10, _continue=again.metadata._continue).items) == 3
