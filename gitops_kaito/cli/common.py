"""Conventions shared by every command: exit codes, `-o table|json|yaml` output, cluster flags.

Exit codes follow what CI scripts expect: 0 ok / no change, 1 changes or invalid input, 2 usage or internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

if TYPE_CHECKING:
    from gitops_kaito.repo.catalog import Catalog
    from gitops_kaito.repo.config import RepoConfig, Scope

EXIT_OK = 0
EXIT_CHANGES = 1  # diff/plan: there are changes; validate: the input is invalid
EXIT_INVALID = 1
EXIT_ERROR = 2


class CliError(Exception):
    """An error to show the user as one plain line, with the exit code to return."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_output_flag(parser: argparse.ArgumentParser, choices: Sequence[str] = ("table", "json", "yaml"),
                    default: str = "table") -> None:
    parser.add_argument("-o", "--output", choices=list(choices), default=default, help="output format")


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context to use")


def add_repo_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repo", default=".", help="model repository directory (default: .)")


INSTANCE_ENV = "GITOPS_KAITO_INSTANCE"


def add_scope_flags(parser: argparse.ArgumentParser, *, env_default: bool = True) -> None:
    """--instance and --path: which gitops-kaito instance this is and which part of models/ it follows."""
    where = f" (default: ${INSTANCE_ENV}, else gitops-kaito.yaml's instance, else default)" if env_default else ""
    parser.add_argument("--instance", help="gitops-kaito instance name: only objects labelled "
                                           f"gitops.kaito.sh/instance=<name> are listed, changed or pruned{where}")
    parser.add_argument("--path", dest="paths", action="append", metavar="PATH",
                        help="load only model files under this repo-relative path (e.g. models/team-a); "
                             "repeatable (default: gitops-kaito.yaml's paths, else all of models/)")


def scope_from_args(args: argparse.Namespace) -> Scope:
    """The Scope of --instance (or $GITOPS_KAITO_INSTANCE) and --path; a bad value is a usage error."""
    import os

    from gitops_kaito.repo.config import Scope, check_instance, normalize_scope_path

    instance = getattr(args, "instance", None) or os.environ.get(INSTANCE_ENV) or None
    paths = getattr(args, "paths", None)
    try:
        return Scope(instance=check_instance(instance) if instance else None,
                     paths=tuple(dict.fromkeys(normalize_scope_path(p) for p in paths)) if paths else None)
    except ValueError as err:
        raise CliError(str(err)) from None


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                out: TextIO | None = None) -> None:
    """kubectl-style table: upper-case headers, columns padded, no borders."""
    out = out or sys.stdout
    if not rows:
        print("No resources found.", file=out)
        return
    cols = list(columns or rows[0].keys())
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    print("   ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip(), file=out)
    for r in cells:
        print("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=out)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


class _Dumper(yaml.SafeDumper):
    """Safe YAML that writes the state words (model/states.py StrEnums) as the plain strings they are."""


_Dumper.add_multi_representer(StrEnum, lambda dumper, value: dumper.represent_str(str(value)))


def emit(data: Any, fmt: str, out: TextIO | None = None) -> None:
    """Print structured data as json or yaml."""
    out = out or sys.stdout
    if fmt == "json":
        json.dump(data, out, indent=2, sort_keys=False, default=str)
        out.write("\n")
    elif fmt == "yaml":
        if isinstance(data, list) and data and all(isinstance(d, dict) and "kind" in d for d in data):
            yaml.dump_all(data, out, Dumper=_Dumper, sort_keys=False)
        else:
            yaml.dump(data, out, Dumper=_Dumper, sort_keys=False)
    else:
        raise CliError(f"unknown output format {fmt!r}")


def open_repo_config(repo: str, catalog: Catalog | None = None, hint: str = "") -> tuple[Path, RepoConfig]:
    """The repository folder and its gitops-kaito.yaml, or one plain error (exit 2 no folder, 1 bad config)."""
    from gitops_kaito.repo.config import load_config
    from gitops_kaito.repo.yamlsource import SourceError

    root = Path(repo)
    if not root.is_dir():
        raise CliError(f"{root}: not a directory{hint}")
    try:
        return root, load_config(root, catalog)
    except SourceError as err:
        raise CliError(f"{err} (fix gitops-kaito.yaml first)", EXIT_INVALID) from None
