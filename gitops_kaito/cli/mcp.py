"""`gitops-kaito mcp`: an MCP server over a model repository and, when given one, a cluster (read-only by default).

The server itself is cli/_mcp_server.py, loaded only here: the `mcp` SDK is the optional extra `gitops-kaito[mcp]`.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from gitops_kaito.cli.common import EXIT_OK, CliError, add_cluster_flags, add_repo_flag

if TYPE_CHECKING:
    from gitops_kaito.cli._mcp_tools import ToolContext

CLIENT_CONFIG = """\
an MCP client's configuration (e.g. claude_desktop_config.json or .vscode/mcp.json):
  {"mcpServers": {"gitops-kaito": {"command": "gitops-kaito",
                                   "args": ["mcp", "--repo", "/path/to/models-repo"]}}}
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "mcp", help="an MCP server for AI assistants: catalog, fit, validate, plan, status, history, explain",
        description="Serve the Model Context Protocol over stdio (default) or streamable HTTP on loopback: tools to "
                    "search the catalog, fit a model to GPU SKUs with price, validate the repository, plan "
                    "(offline against a base revision, or against the cluster given with --kubeconfig/--context), "
                    "read status and history, and explain why a model is not Ready. Read-only unless "
                    "--allow-write, which adds one tool that writes a request file (never commits or pushes).",
        epilog=CLIENT_CONFIG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_repo_flag(parser)
    add_cluster_flags(parser)
    parser.add_argument("--instance", help="the gitops-kaito instance whose status and objects to read "
                                           "(default: gitops-kaito.yaml's)")
    parser.add_argument("--http", metavar="HOST:PORT",
                        help="serve streamable HTTP at http://HOST:PORT/mcp instead of stdio (loopback only; port 0 "
                             "picks a free one, printed on stderr)")
    parser.add_argument("--allow-write", action="store_true",
                        help="add the add_model_request tool, which writes models/<ns>/<name>.yaml into the working "
                             "tree (never commits or pushes)")
    parser.set_defaults(func=run)


def tool_context(args: argparse.Namespace) -> ToolContext:
    """The ToolContext of these arguments (a CliError for a bad --instance); the repository, cluster and writes."""
    from gitops_kaito.cli._mcp_tools import ToolContext, repo_root
    from gitops_kaito.repo.config import SettingsError, check_instance

    try:
        instance = check_instance(args.instance) if args.instance else None
    except (SettingsError, ValueError) as err:
        raise CliError(str(err)) from None
    return ToolContext(repo_root(args.repo), kubeconfig=args.kubeconfig, context=args.context, instance=instance,
                       allow_write=args.allow_write, kubeconfig_env=bool(os.environ.get("KUBECONFIG")))


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.repo.config import SettingsError, parse_listen

    try:
        import mcp  # noqa: F401 - only to say clearly what is missing
    except ImportError:
        raise CliError("the MCP server needs the `mcp` package (the official MCP Python SDK): "
                       "pip install 'gitops-kaito[mcp]'") from None
    try:
        address = parse_listen(args.http) if args.http else None
    except (SettingsError, ValueError) as err:
        raise CliError(str(err).replace("--listen", "--http")) from None
    ctx = tool_context(args)
    from gitops_kaito.cli import _mcp_server

    if address is not None:
        host, port = address
        _mcp_server.serve_http(ctx, host.strip("[]"), port)  # parse_listen keeps an IPv6 host's brackets
    else:
        _mcp_server.serve_stdio(ctx)
    return EXIT_OK
