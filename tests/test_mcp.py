"""`gitops-kaito mcp` driven by the MCP SDK's own client: over stdio (a real subprocess, as an MCP client starts it)
and over streamable HTTP on loopback, on a sample repository (real git) and, for the live tools, the sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import git
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from gitops_kaito.adapters.kube import Kube
from gitops_kaito.cli import main
from gitops_kaito.cli._mcp_server import READ_ONLY_TOOLS
from gitops_kaito.core.status import ModelReport, render_model_yaml
from gitops_kaito.model.states import ModelState
from gitops_kaito.reconcile.gitsync import GitSyncSettings, run_git_pass
from gitops_kaito.sandbox.hooks import Fault
from tests.fixtures_cluster import ClusterTarget, skip_on_real, wait_until
from tests.gitfixtures import DEV_ENV, Developer, make_remote, model_file

ROOT = Path(__file__).resolve().parent.parent
LEAKED = "Authorization: Bearer abcDEF123456ghiJKL789"
# The unknown field sits on line 8 of this file: the validation error must say so.
BROKEN = ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: broken\n"
          "  namespace: ml\nspec:\n  model: phi-4-mini-instruct\n  replica: 3\n")  # a typo of spec.replicas


def server(repo: Path, *extra: str) -> StdioServerParameters:
    """The server as a client starts it; no inherited $KUBECONFIG (a bare one names a cluster, as for kubectl)."""
    env = {**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return StdioServerParameters(command=sys.executable, args=["-m", "gitops_kaito", "mcp", "--repo", str(repo),
                                                               *extra], env=env)


def in_process(*args: str) -> Any:
    """The server `gitops-kaito mcp ARGS` would serve, in this process (the stdio and HTTP transports are tested
    with real processes below): the same argument parsing, environment rules and tools."""
    from gitops_kaito.cli import build_parser
    from gitops_kaito.cli._mcp_server import build_server
    from gitops_kaito.cli.mcp import tool_context

    return build_server(tool_context(build_parser().parse_args(["mcp", *args])))


def session(target: Any, calls: Sequence[tuple[str, dict[str, Any]]]
            ) -> tuple[list[Any], list[CallToolResult]]:
    """Connect, list the tools, make the calls in order: what an MCP client does."""
    async def run() -> tuple[list[Any], list[CallToolResult]]:
        async with Client(target, read_timeout_seconds=60) as client:
            tools = (await client.list_tools()).tools
            return tools, [await client.call_tool(name, args) for name, args in calls]
    return asyncio.run(run())


def text(result: CallToolResult) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository whose last commit has phi; the working tree adds qwen and a broken file, and a status file
    whose last error carries a credential."""
    root = tmp_path_factory.mktemp("sample")
    repo = git.Repo.init(root, initial_branch="main")
    (root / "models/ml").mkdir(parents=True)
    (root / "models/ml/phi.yaml").write_text(model_file("phi"))
    repo.git.add("models")
    with repo.git.custom_environment(**DEV_ENV):
        repo.git.commit("-q", "-m", "phi")
    (root / "models/ml/qwen.yaml").write_text(model_file("qwen", "qwen2.5-coder-7b-instruct"))
    (root / "models/ml/broken.yaml").write_text(BROKEN)
    (root / "status/ml").mkdir(parents=True)
    (root / "status/ml/phi.yaml").write_text(render_model_yaml(ModelReport(
        "ml.phi", "ml", "phi", "Failed", "ApplyFailed", "the API server refused it", last_error=LEAKED)))
    return root


def test_an_mcp_client_lists_the_tools_and_gets_answers_from_each(sample: Path) -> None:
    tools, (search, fit, validate, offline, no_cluster, bad_base, status, explain, unknown) = session(
        server(sample), [
            ("catalog_search", {"query": "phi mini"}),
            ("catalog_fit", {"model": "qwen2.5-coder-7b-instruct"}),
            ("validate_repository", {}),
            ("plan", {"base": "HEAD"}),
            ("plan", {}),
            ("plan", {"base": "no-such-revision"}),
            ("model_status", {}),
            ("explain_model", {"model": "ml/broken"}),
            ("catalog_fit", {"model": "phi-4-mini-instrct"}),
        ])
    assert sorted(t.name for t in tools) == sorted(READ_ONLY_TOOLS), "read-only unless --allow-write"
    assert all(t.annotations is not None and t.annotations.read_only_hint for t in tools)
    assert all(t.description for t in tools)

    names = [r["name"] for r in data(search)["results"]]
    assert "phi-4-mini-instruct" in names and all("phi" in n and "mini" in n for n in names)

    fitted = data(fit)
    prices = [f["pricePerHour"] for f in fitted["fits"] if f["pricePerHour"] is not None]
    assert prices == sorted(prices), "cheapest first"
    default = fitted["default"]  # the cheapest CUDA SKU (KAITO's preset images are CUDA builds)
    assert default["pricePerHour"] == min(f["pricePerHour"] for f in fitted["fits"] if "NVIDIA" in f["gpuModel"])
    assert default["sku"] in text(fit) and f"${default['pricePerHour']:,.2f}/h" in text(fit)

    checked = data(validate)
    assert checked["valid"] is False
    (error,) = checked["errors"]
    assert (error["path"], error["line"]) == ("models/ml/broken.yaml", 8) and "replicas" in error["message"]
    assert "models/ml/broken.yaml:8:" in text(validate)
    assert {m["id"] for m in checked["models"]} == {"ml.phi", "ml.qwen"}

    planned = data(offline)
    (qwen,) = [r for r in planned["models"] if r["model"] == "ml.qwen"]
    assert qwen["action"] == "create" and qwen["sku"] and qwen["pricePerHour"] > 0
    assert planned["offline"]["costPerHour"]["change"] == pytest.approx(qwen["pricePerHour"])
    assert any("broken.yaml:8" in e for e in planned["errors"])
    assert "create ml.qwen" in text(offline) and "cost per hour" in text(offline)
    assert "ml.phi" not in text(offline), "an unchanged model is not listed as a change"
    assert all("patch" not in c for c in planned["changes"])

    assert no_cluster.is_error and "no cluster" in text(no_cluster)
    assert bad_base.is_error and "no-such-revision" in text(bad_base)

    reported = data(status)
    assert reported["models"][0]["lastError"] is not None
    assert "abcDEF123456ghiJKL789" not in str(reported) + text(status), "no credential leaves the server"

    why = data(explain)
    assert (why["state"], why["source"]) == ("Invalid", "status file")
    assert why["request"]["errors"][0]["line"] == 8 and "models/ml/broken.yaml:8:" in text(explain)

    assert unknown.is_error and "phi-4-mini-instruct" in text(unknown), "the catalog's did-you-mean"


def test_the_write_tool_exists_only_with_the_flag_and_never_commits(tmp_path: Path) -> None:
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("models/ml/phi.yaml", model_file("phi"))
    head = dev.commit("phi")
    tools, (added, again, bad) = session(in_process("--repo", str(dev.path), "--allow-write"), [
        ("add_model_request", {"model": "qwen2.5-coder-7b-instruct", "name": "coder", "namespace": "ml"}),
        ("add_model_request", {"model": "qwen2.5-coder-7b-instruct", "name": "coder", "namespace": "ml"}),
        ("add_model_request", {"model": "not-a-model"}),
    ])
    (tool,) = [t for t in tools if t.name == "add_model_request"]
    assert tool.annotations is not None and tool.annotations.read_only_hint is False
    written = data(added)
    assert written["path"] == "models/ml/coder.yaml" and written["committed"] is False
    assert written["instanceType"] and written["pricePerHour"] > 0
    assert (dev.path / "models/ml/coder.yaml").read_text() == written["content"]
    assert again.is_error and "already exists" in text(again)
    assert bad.is_error and "not-a-model" in text(bad)
    assert dev.repo.head.commit.hexsha == head and remote.sha() == head, "nothing committed or pushed"
    assert dev.repo.untracked_files == ["models/ml/coder.yaml"]


def test_streamable_http_on_loopback(sample: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "gitops_kaito", "mcp", "--repo", str(sample), "--http",
                             "127.0.0.1:0"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    try:
        found: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "streamable HTTP on " in line:
                    found.append(line.split("streamable HTTP on ")[1].strip())
                    return

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(30)
        assert found, "the server did not say where it listens"
        tools, (validate,) = session(found[0], [("validate_repository", {})])
        assert {t.name for t in tools} == set(READ_ONLY_TOOLS)
        assert data(validate)["errors"][0]["line"] == 8
    finally:
        proc.terminate()
        proc.wait(10)


def test_http_refuses_a_non_loopback_address_and_a_missing_sdk_is_a_clear_error(
        sample: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["mcp", "--repo", str(sample), "--http", "0.0.0.0:0"]) == 2
    assert "loopback only" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if the optional extra were not installed
    assert main(["mcp", "--repo", str(sample)]) == 2
    assert "pip install 'gitops-kaito[mcp]'" in capsys.readouterr().err


def test_validate_repository_answers_what_validate_answers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # An azure: pin that differs from this environment's target is an error of `validate`: the tool says so too.
    from gitops_kaito.cli._mcp_tools import ToolContext, validate
    from tests.test_validate_cli import GOOD, make_repo

    config = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nazure:\n  subscriptionId: victim-sub\n"
    repo = make_repo(tmp_path, {"gitops-kaito.yaml": config, "models/ml/phi.yaml": GOOD})
    monkeypatch.setenv("GITOPS_KAITO_AZURE_SUBSCRIPTION_ID", "our-sub")
    assert main(["validate", "--repo", str(repo), "-o", "json"]) == 1
    cli = json.loads(capsys.readouterr().out)
    answer = validate(ToolContext(repo))
    assert answer.data == cli and answer.data["valid"] is False
    assert "gitops-kaito.yaml:4: azure.subscriptionId 'victim-sub' is not the daemon's" in answer.summary


@pytest.mark.cluster
def test_explain_a_failed_model_from_the_sandbox(cluster: ClusterTarget, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    skip_on_real(cluster, "an injected quota failure of simulated Karpenter")
    assert cluster.sandbox is not None
    ns = cluster.namespace
    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write(f"models/{ns}/llama.yaml", model_file("llama", namespace=ns))
    sha = dev.commit("llama")
    cluster.sandbox.inject("quota", workspace="llama", namespace=ns)
    settings = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache")
    with Kube.connect(str(cluster.kubeconfig), cluster.context) as kube:
        def failed() -> bool:
            done = run_git_pass(settings, kube)
            return done.reports[0].state == ModelState.FAILED
        wait_until(failed, 60, interval=0.2, what="llama Failed")
    dev.pull()
    _tools, (explain, status, history, planned) = session(
        in_process("--repo", str(dev.path), *cluster.cli_args()), [
            ("explain_model", {"model": f"{ns}/llama"}),
            ("model_status", {"model": f"{ns}/llama"}),
            ("history", {}),
            ("plan", {}),
        ])
    why = data(explain)
    assert (why["state"], why["source"]) == ("Failed", "cluster")
    live = why["cluster"]
    assert live["workspace"] and any(n["phase"] == "Failed" for n in live["nodes"])
    assert "quota" in (why["message"] + " ".join(why["why"])).lower()
    assert any(c["status"] != "True" for c in live["conditions"])
    assert any(e["reason"] == "Created" and e["from"] == "gitops-kaito" for e in live["events"]), \
        "the Events on the Workspace"
    assert why["statusFile"]["state"] == "Failed" and why["request"]["path"] == f"models/{ns}/llama.yaml"
    assert f"{ns}/llama is Failed" in text(explain)
    assert data(status)["models"][0]["state"] == "Failed"
    assert data(history)["entries"][0]["revision"] == f"main@sha1:{sha}"
    assert data(planned)["hasChanges"] is False and "no changes" in text(planned)
    # Events are read with a permission of their own: without it, the model is still explained, and why not shown.
    cluster.sandbox.server.faults.add(Fault(method="GET", path_regex=f"/namespaces/{ns}/events$", status=403,
                                            times=1, message="events is forbidden"))
    # A bare $KUBECONFIG, no flags, names the cluster as it does for kubectl and the other commands.
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    _tools, (again,) = session(in_process("--repo", str(dev.path)), [("explain_model", {"model": f"{ns}/llama"})])
    why = data(again)
    assert why["source"] == "cluster" and why["state"] == "Failed" and why["cluster"]["events"] == [] and why["cluster"]["nodes"]
    assert any("cannot read the Events on" in line and "403" in line for line in why["why"]), why["why"]
