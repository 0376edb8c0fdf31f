"""`gitops-kaito chat`: one-shot and conversation modes against the sandbox's model server, and the clear errors.

The conversation's history is checked on the wire, by recording what reaches the model server through the proxy.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from gitops_kaito.adapters.endpoint import EndpointError
from gitops_kaito.cli import main
from gitops_kaito.cli.chat import Conversation, parse_target, repl
from gitops_kaito.cli.common import CliError
from gitops_kaito.sandbox.apiserver import Fault
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.kaito_helpers import create, get, wait_inference_ready, workspace

pytestmark = pytest.mark.cluster


@pytest.fixture
def ready(cluster: ClusterTarget) -> Iterator[tuple[ClusterTarget, list[str]]]:
    """A Ready 'phi' in the test namespace and the cluster flags to reach it."""
    skip_on_real(cluster, "needs the simulated model server")
    api = cluster.api_client()
    create(api, cluster.namespace, workspace("phi"))
    wait_inference_ready(api, cluster.namespace, "phi")
    api.close()
    yield cluster, ["--kubeconfig", str(cluster.kubeconfig)]


@pytest.fixture
def wire(cluster: ClusterTarget) -> Iterator[list[dict[str, Any]]]:
    """Every chat body the model server receives while the test runs."""
    sb = cluster.sandbox
    assert sb is not None and sb.model_server is not None
    inner = sb.model_server
    bodies: list[dict[str, Any]] = []

    def recording(namespace: str, service: str, port: str, method: str, subpath: str, body: bytes) -> Any:
        if method == "POST" and subpath.startswith("/v1/chat/completions"):
            bodies.append(json.loads(body))
        return inner(namespace, service, port, method, subpath, body)

    sb.server.set_proxy_handler(recording)
    try:
        yield bodies
    finally:
        sb.server.set_proxy_handler(sb.proxy_handler)


def test_one_shot_prints_the_answer(ready: tuple[ClusterTarget, list[str]], wire: list[dict[str, Any]],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    cluster, flags = ready
    code = main(["chat", f"{cluster.namespace}/phi", "what is KAITO?", "--max-tokens", "64", *flags])
    out = capsys.readouterr().out
    assert code == 0
    assert "what is KAITO?" in out and "phi-4-mini-instruct" in out
    assert wire == [{"model": "phi-4-mini-instruct", "max_tokens": 64,
                     "messages": [{"role": "user", "content": "what is KAITO?"}]}]


def test_one_shot_json_with_system_prompt_and_explicit_model(ready: tuple[ClusterTarget, list[str]],
                                                              wire: list[dict[str, Any]],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cluster, flags = ready
    code = main(["chat", "phi", "hi", "-n", cluster.namespace, "--model", "phi-4-mini-instruct",
                 "--system", "be brief", "--temperature", "0.1", "-o", "json", *flags])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["workspace"] == f"{cluster.namespace}/phi" and doc["model"] == "phi-4-mini-instruct"
    assert doc["usage"]["total_tokens"] > 0
    assert wire[0]["messages"][0] == {"role": "system", "content": "be brief"}
    assert wire[0]["temperature"] == 0.1


def test_conversation_keeps_history_and_clear_forgets_it(ready: tuple[ClusterTarget, list[str]],
                                                         wire: list[dict[str, Any]],
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cluster, flags = ready
    monkeypatch.setattr("sys.stdin", io.StringIO("first\nsecond\n/clear\nthird\n"))  # then end of input (Ctrl-D)
    code = main(["chat", f"{cluster.namespace}/phi", *flags])
    out = capsys.readouterr().out
    assert code == 0
    assert "chatting with phi-4-mini-instruct" in out and "(conversation cleared)" in out
    assert [[m["role"] for m in b["messages"]] for b in wire] == [
        ["user"], ["user", "assistant", "user"], ["user"]]
    second = wire[1]["messages"]
    assert second[0]["content"] == "first" and "first" in second[1]["content"] and second[2]["content"] == "second"
    assert wire[2]["messages"][0]["content"] == "third"


def test_exit_stops_reading(ready: tuple[ClusterTarget, list[str]], wire: list[dict[str, Any]],
                            monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, flags = ready
    monkeypatch.setattr("sys.stdin", io.StringIO("one\n/exit\ntwo\n"))
    assert main(["chat", f"{cluster.namespace}/phi", *flags]) == 0
    assert [b["messages"][-1]["content"] for b in wire] == ["one"]


def test_a_failed_answer_is_reported_and_left_out_of_the_history(ready: tuple[ClusterTarget, list[str]],
                                                                 wire: list[dict[str, Any]],
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cluster, flags = ready
    assert cluster.sandbox is not None
    cluster.sandbox.server.faults.add(Fault(method="POST", path_regex="/proxy/v1/chat/completions$", status=500,
                                            times=1))
    monkeypatch.setattr("sys.stdin", io.StringIO("lost\nkept\n"))
    assert main(["chat", f"{cluster.namespace}/phi", *flags]) == 0
    captured = capsys.readouterr()
    assert "error: HTTP 500" in captured.err
    assert [m["content"] for m in wire[-1]["messages"]] == ["kept"]  # the failed turn was not sent again


def test_a_model_that_is_not_ready_says_its_state(cluster: ClusterTarget, capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_real(cluster, "needs an injected image-pull failure")
    assert cluster.sandbox is not None
    ns = cluster.namespace
    failure = cluster.sandbox.inject("image-pull", workspace="stuck", namespace=ns)
    api = cluster.api_client()
    try:
        create(api, ns, workspace("stuck"))
        wait_until(lambda: (get(api, ns, "stuck").get("status") or {}).get("conditions"), what="KAITO's status")
        code = main(["chat", f"{ns}/stuck", "hello", "--kubeconfig", str(cluster.kubeconfig)])
    finally:
        cluster.sandbox.clear_failures(failure)
        api.close()
    err = capsys.readouterr().err
    assert code == 1
    assert f"{ns}/stuck is not ready to chat: state " in err
    assert "Traceback" not in err


def test_a_missing_workspace_and_a_bad_target(cluster: ClusterTarget, capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--kubeconfig", str(cluster.kubeconfig)]
    assert main(["chat", f"{cluster.namespace}/nope", "hi", *flags]) == 1
    assert f"workspace {cluster.namespace}/nope not found" in capsys.readouterr().err
    assert main(["chat", "a/b/c", "hi", *flags]) == 2
    assert "expected NS/NAME" in capsys.readouterr().err


def test_an_unreachable_cluster_is_one_line(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "x",
        "clusters": [{"name": "x", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "x", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "x", "user": "x"}}]}))
    assert main(["chat", "ml/phi", "hi", "--kubeconfig", str(kubeconfig)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: cannot reach the API server") and "Traceback" not in err


# --- the conversation loop alone ---------------------------------------------------------------------------

def test_repl_unit_history_errors_and_eof() -> None:
    seen: list[list[dict[str, str]]] = []
    answers = iter(["A1", EndpointError("boom"), "A3"])

    def ask(messages: list[dict[str, str]]) -> str:
        seen.append([dict(m) for m in messages])
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    lines = iter(["q1", "", "q2", "/help", "q3"])

    def read(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    out, err = io.StringIO(), io.StringIO()
    convo = Conversation(system="sys")
    assert repl(ask, convo, read, out, err) == 0
    assert [m["content"] for m in seen[2]] == ["sys", "q1", "A1", "q3"]
    assert "error: boom" in err.getvalue()
    assert out.getvalue().splitlines()[:2] == ["A1", "/exit (or Ctrl-D) to leave, /clear to forget the conversation"]
    assert convo.messages[-1] == {"role": "assistant", "content": "A3"}


def test_parse_target() -> None:
    assert parse_target("ml/phi", "default") == ("ml", "phi")
    assert parse_target("phi", "team") == ("team", "phi")
    with pytest.raises(CliError):
        parse_target("/phi", "default")
