"""The `gitops-kaito` command line: one module per command group, each with a `register(subparsers)`.

Modules in this package are discovered, so adding a command never means editing a central list.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from collections.abc import Sequence

from gitops_kaito import __version__
from gitops_kaito.cli.common import EXIT_ERROR, CliError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gitops-kaito",
        description="GitOps for KAITO: model requests in Git, Workspaces and GPU nodes in the cluster.",
    )
    parser.add_argument("--version", action="version", version=f"gitops-kaito {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="log line format (default: env GITOPS_KAITO_LOG_FORMAT, else text)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name == "common":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_ERROR
    from gitops_kaito.service.logs import configure_logging

    fmt = args.log_format or os.environ.get("GITOPS_KAITO_LOG_FORMAT", "").strip().lower()
    # A service's log is its output: `run` shows routine lines (info) without -v; other commands only problems.
    configure_logging(verbosity=args.verbose + getattr(args, "base_verbosity", 0), fmt="json" if fmt == "json" else "text")
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `gitops-kaito ... | head` closed the pipe: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:  # a bug must still end as one line and exit 2, never a traceback in CI logs
        logging.getLogger(__name__).debug("internal error", exc_info=True)  # the traceback, with -v
        print(f"error: internal error in {args.command}: {type(err).__name__}: {_scrubbed(err)}"
              " (run with -v for the traceback)", file=sys.stderr)
        return EXIT_ERROR


def _scrubbed(err: Exception) -> str:
    """The exception's text without anything that looks like a credential (it may quote a URL or a header)."""
    from gitops_kaito.core.status import scrub

    return scrub(str(err))[:500]
