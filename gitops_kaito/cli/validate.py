"""`gitops-kaito validate`: checks a model repository and prints every error as path:line: message.

Exit 0 when every model is valid, 1 when some input is invalid, 2 for usage or internal errors (CI relies on these).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitops_kaito.cli.common import EXIT_INVALID, EXIT_OK, CliError, add_output_flag, add_repo_flag, emit

if TYPE_CHECKING:
    from gitops_kaito.resolve import RepoLoad


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("validate", help="check the model requests of a repository",
                                   description="Check gitops-kaito.yaml and every models/<namespace>/<name>.yaml.")
    add_repo_flag(parser)
    add_output_flag(parser, choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.loader import load_repository

    root = Path(args.repo)
    if not root.is_dir():
        raise CliError(f"{root}: not a directory")
    try:
        load = load_repository(root)
    except Exception as err:  # a bug must still end as one line and exit 2, never a traceback in CI logs
        raise CliError(f"internal error while loading {root}: {type(err).__name__}: {err}")
    if args.output == "json":
        emit(_as_json(load), "json")
    else:
        _print_text(load)
    return EXIT_INVALID if load.errors else EXIT_OK


def _as_json(load: RepoLoad) -> dict[str, Any]:
    return {
        "valid": not load.errors,
        "models": [
            {"id": m.request.id, "path": m.request.path, "model": m.preset.name,
             "instanceType": m.sku.name if m.sku else None, "nodes": m.nodes, "gpus": m.gpus,
             "provisioning": m.provisioning, "pricePerHour": m.price_per_hour}
            for m in load.models
        ],
        "errors": [{"path": e.path, "line": e.line, "message": e.message, "model": e.model_id} for e in load.errors],
    }


def _print_text(load: RepoLoad) -> None:
    for error in load.errors:
        print(str(error))
    files = len({e.path for e in load.errors})
    models = len(load.models)
    if load.errors:
        print(f"{len(load.errors)} error(s) in {files} file(s); {models} model(s) valid", file=sys.stdout)
    elif models == 0:
        print("no model requests found under models/ (nothing to validate)")
    else:
        print(f"{models} model(s) valid")
