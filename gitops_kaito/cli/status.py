"""`gitops-kaito status`: the current report as the reconciler last wrote it into the repository.

Reads status/<ns>/<name>.yaml from a local clone or a remote URL; no cluster access.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import EXIT_OK, CliError, add_output_flag, emit, print_table
from gitops_kaito.cli.history import add_source_flags, open_source, status_folder


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status", help="print the models' status as last written to the repository",
        description="Print the status report the reconciler committed under status/: state, SKU x nodes, "
                    "endpoint, applied revision, since when, message.")
    add_source_flags(parser)
    add_output_flag(parser)
    parser.set_defaults(func=run)


def read_reports(folder: Path) -> list[Any]:
    from gitops_kaito.core.status import STATUS_FILE_MAX_BYTES, parse_model_yaml
    from gitops_kaito.repo.yamlsource import SourceError, decode_text, read_regular_file

    reports = []
    for path in sorted(folder.glob("*/*.yaml")):
        try:  # never blocks on a FIFO, never reads more than a status file may weigh
            text = decode_text(read_regular_file(path, STATUS_FILE_MAX_BYTES, str(path)), str(path))
            reports.append(parse_model_yaml(text, str(path)))
        except SourceError as err:
            print(f"warning: {err}", file=sys.stderr)
        except ValueError as err:
            print(f"warning: {path}: {err}", file=sys.stderr)
    return sorted(reports, key=lambda r: r.model_id)


def no_status_hint(where: str) -> str:
    """Where status comes from, for a repository that has none: a local `sync --repo` writes none, which a user who
    just ran one would otherwise not know."""
    return (f"no status files in {where}: status is committed to the repository by `gitops-kaito run` and "
            "`gitops-kaito sync --git-url URL` (pull the status branch, or read the remote with `gitops-kaito status "
            "--git-url URL`); a local `sync --repo DIR` writes none: `gitops-kaito sync --repo DIR --wait` shows the "
            "models' progress and `kubectl get workspaces -A` the cluster's view")


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.core.status import (
        cost_line,
        gpu_cost,
        message_cell,
        model_document,
        price_cell,
        short_revision,
        sku_cell,
        summary_line,
    )

    with open_source(args) as (repo, ref, root):
        if args.branch and not args.git_url:
            # A named branch of a local clone: read its tree, not the working directory.
            import git

            from gitops_kaito.core.status import STATUS_FILE_MAX_BYTES, parse_model_yaml

            reports = []
            prefix = status_folder(args) + "/"
            try:
                listing = repo.git.ls_tree("-r", "-l", "--end-of-options", ref, "--", prefix).splitlines()
            except git.GitCommandError:
                raise CliError(f"branch {args.branch!r} not found in {args.repo or '.'}") from None
            for entry in listing:
                info, _, name = entry.partition("\t")
                size = info.split()[3]
                if not size.isdigit() or int(size) > STATUS_FILE_MAX_BYTES:
                    print(f"warning: {name}: not read (over {STATUS_FILE_MAX_BYTES} bytes)", file=sys.stderr)
                    continue
                if name.endswith(".yaml") and name.count("/") == prefix.count("/") + 1:
                    # Through GitPython's one long-lived `cat-file --batch`, not a `git show` process per file.
                    blob = repo.odb.stream(bytes.fromhex(info.split()[2])).read()
                    try:
                        reports.append(parse_model_yaml(blob.decode("utf-8", "surrogateescape")))
                    except ValueError:
                        continue
            reports.sort(key=lambda r: r.model_id)
        else:
            reports = read_reports(root / status_folder(args))
        where = f"{args.git_url or root}, {f'branch {args.branch}, ' if args.branch else ''}{status_folder(args)}/"
    if not reports:
        print(no_status_hint(where), file=sys.stderr)
    if args.output != "table":
        cost = gpu_cost(reports)
        emit({"summary": summary_line(reports),
              "gpuCost": None if cost is None else {"nodes": cost.nodes, "pricePerHour": cost.usd_per_hour,
                                                    "unpricedModels": cost.unpriced_models},
              "models": [model_document(r) for r in reports]}, args.output)
        return EXIT_OK
    rows = [{"model": f"{r.namespace}/{r.name}", "state": r.state, "sku x nodes": sku_cell(r),
             "per hour": price_cell(r), "endpoint": r.endpoint, "revision": short_revision(r.revision), "since": r.since,
             "message": message_cell(r)} for r in reports]
    print_table(rows, ["model", "state", "sku x nodes", "per hour", "endpoint", "revision", "since", "message"])
    print(summary_line(reports))
    if line := cost_line(reports):
        print(line)
    return EXIT_OK
