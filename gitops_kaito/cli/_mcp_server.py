"""The MCP server of `gitops-kaito mcp`, on the official `mcp` SDK: the tools of cli/_mcp_tools.py, each answering
with a short text and structured JSON, over stdio or streamable HTTP on loopback.

Imported only by `gitops-kaito mcp` (its name starts with "_", so the command discovery skips it): the SDK is an
optional dependency and the other commands never load it.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field

from gitops_kaito import __version__
from gitops_kaito.cli import _mcp_tools as tools
from gitops_kaito.cli.common import CliError

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
READ_ONLY_TOOLS = ("catalog_search", "catalog_fit", "validate_repository", "plan", "model_status", "history",
                   "explain_model")

INSTRUCTIONS = """\
gitops-kaito manages KAITO model deployments from a Git repository: one file models/<namespace>/<name>.yaml per
model. Use catalog_search and catalog_fit to pick a model and GPU SKU with its price, validate_repository to check
the files (errors carry file and line), plan to see what a change does and what it costs (offline with base=<git
revision>, or against the cluster), model_status and history for what the reconciler reported, explain_model for why
a model is not Ready. These tools only read; nothing is committed or applied from here."""


def _answer(run: Callable[[], tools.ToolAnswer]) -> CallToolResult:
    """A tool's answer as MCP content: the summary as text, the document as structured content; a refusal (or a
    bug) as an error result with its reason, never a crash of the server. Everything scrubbed on the way out."""
    try:
        answer = run()
    except tools.ToolFailure as err:
        return CallToolResult(content=[TextContent(type="text", text=tools.scrub_tree(str(err)))], is_error=True)
    except Exception as err:  # the server outlives a bug in one tool
        log.exception("tool failed")
        text = tools.scrub_tree(f"internal error: {type(err).__name__}: {err}")
        return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
    return CallToolResult(content=[TextContent(type="text", text=tools.scrub_tree(answer.summary))],
                          structured_content=tools.scrub_tree(answer.data))


def build_server(ctx: tools.ToolContext) -> MCPServer[Any]:
    server: MCPServer[Any] = MCPServer("gitops-kaito", version=__version__, instructions=INSTRUCTIONS)

    def catalog_search(
            query: Annotated[str, Field(description="words to match (name, Hugging Face id, family, GPU model); "
                                                    "empty lists everything")] = "",
            kind: Annotated[str, Field(description="'models' (KAITO presets) or 'skus' (GPU instance types)")]
            = "models",
            cloud: Annotated[str | None, Field(description="skus: only this cloud (azure, aws, ...)")] = None,
            include_removed: Annotated[bool, Field(description="also deprecated and removed entries")] = False,
            limit: Annotated[int, Field(description="at most this many results")] = tools.DEFAULT_LIMIT,
    ) -> CallToolResult:
        """Search KAITO v0.12.0's model presets or GPU SKUs (with prices) shipped with gitops-kaito."""
        return _answer(lambda: tools.catalog_search(ctx, query, kind, cloud, include_removed, limit))

    def catalog_fit(
            model: Annotated[str, Field(description="preset name, alias or Hugging Face id")],
            clouds: Annotated[list[str] | None, Field(description="clouds to consider (default: the "
                                                                  "repository's, else azure)")] = None,
            max_model_len: Annotated[int | None, Field(description="context length to reserve KV cache for")] = None,
    ) -> CallToolResult:
        """Every GPU SKU a model fits on by KAITO's node estimate, cheapest first, with nodes, GPUs and price per
        hour, and the SKU gitops-kaito would choose."""
        return _answer(lambda: tools.catalog_fit(ctx, model, clouds, max_model_len))

    def validate_repository() -> CallToolResult:
        """Check gitops-kaito.yaml and every model request file; each error names its file and line."""
        return _answer(lambda: tools.validate(ctx))

    def plan(
            base: Annotated[str | None, Field(description="plan offline against the repository at this git "
                                                          "revision (e.g. origin/main); omit to plan against the "
                                                          "cluster")] = None,
            head: Annotated[str | None, Field(description="with base: plan this revision instead of the working "
                                                          "tree")] = None,
    ) -> CallToolResult:
        """What a sync would change: models created, updated, replaced or deleted, with SKU, nodes, GPUs, price per
        hour and the change in cost; nothing is applied."""
        return _answer(lambda: tools.plan(ctx, base, head))

    def model_status(
            model: Annotated[str | None, Field(description="NAMESPACE/NAME; omit for every model")] = None,
    ) -> CallToolResult:
        """The models' status as the reconciler last committed it (state, SKU x nodes, price, endpoint, revision,
        since when, conditions, last error)."""
        return _answer(lambda: tools.status(ctx, model))

    def history(
            model: Annotated[str | None, Field(description="NAMESPACE/NAME for one model's state changes; omit "
                                                           "for the revisions applied")] = None,
            limit: Annotated[int, Field(description="at most this many entries, newest last")] = 20,
    ) -> CallToolResult:
        """Which revisions were applied and when (from the status commits), or one model's state changes."""
        return _answer(lambda: tools.history(ctx, model, limit))

    def explain_model(
            model: Annotated[str, Field(description="NAMESPACE/NAME of the model")],
    ) -> CallToolResult:
        """Why a model is not Ready: its request file's errors, KAITO's conditions, its GPU nodes, the Events on its
        Workspace and the last error (live when the server was given a cluster, else from the status files)."""
        return _answer(lambda: tools.explain(ctx, model))

    for fn in (catalog_search, catalog_fit, validate_repository, plan, model_status, history, explain_model):
        server.add_tool(fn, annotations=READ_ONLY)

    if ctx.allow_write:
        def add_model_request(
                model: Annotated[str, Field(description="preset name, alias or Hugging Face id")],
                name: Annotated[str | None, Field(description="the Workspace name (default: from the model)")] = None,
                namespace: Annotated[str | None, Field(description="default: the repository's")] = None,
                instance_type: Annotated[str | None, Field(description="GPU SKU (default: the cheapest that "
                                                                       "fits)")] = None,
                nodes: Annotated[int | None, Field(description="node count (default: KAITO's estimate)")] = None,
                provisioning: Annotated[str | None, Field(description="kaito | nodeclaim | machine | aks | "
                                                                      "byo")] = None,
                allow_uncataloged: Annotated[bool, Field(description="deploy a Hugging Face id close to a "
                                                                     "catalog id anyway")] = False,
        ) -> CallToolResult:
            """Write a checked request file models/<namespace>/<name>.yaml into the working tree (never committed or
            pushed: review, commit and push it yourself). Refuses to overwrite a file."""
            return _answer(lambda: tools.add_model_request(ctx, model, name, namespace, instance_type, nodes,
                                                           provisioning, allow_uncataloged))

        server.add_tool(add_model_request, annotations=WRITES)
    return server


def serve_stdio(ctx: tools.ToolContext) -> None:
    anyio.run(build_server(ctx).run_stdio_async)


def serve_http(ctx: tools.ToolContext, host: str, port: int) -> None:
    """Streamable HTTP on a loopback address only: the tools read a repository and a cluster, with no auth."""
    import uvicorn

    if host not in LOOPBACK:
        raise CliError(f"--http serves on loopback only (127.0.0.1, localhost, ::1), got {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise CliError(f"cannot listen on {host}:{port}: {err}") from None
    bound = sock.getsockname()[1]
    app = build_server(ctx).streamable_http_app(host=host)
    where = f"[{host}]" if ":" in host else host
    print(f"gitops-kaito mcp: streamable HTTP on http://{where}:{bound}/mcp", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))
