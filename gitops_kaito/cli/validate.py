"""`gitops-kaito validate`: checks a model repository and prints every error as path:line: message.

Exit 0 when every model is valid, 1 when some input is invalid, 2 for usage or internal errors (CI relies on these).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitops_kaito.cli.common import EXIT_INVALID, EXIT_OK, CliError, add_output_flag, add_repo_flag, emit
from gitops_kaito.provision.aks import add_azure_flags, azure_overrides

if TYPE_CHECKING:
    from gitops_kaito.repo.modelrequest import LoadError
    from gitops_kaito.repo.resolve import RepoLoad


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("validate", help="check the model requests of a repository",
                                   description="Check gitops-kaito.yaml and every models/<namespace>/<name>.yaml.")
    add_repo_flag(parser)
    add_output_flag(parser, choices=("text", "json"), default="text")
    add_azure_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.repo.loader import load_repository

    root = Path(args.repo)
    if not root.is_dir():
        raise CliError(f"{root}: not a directory")
    try:
        load = load_repository(root)
        problems = problems_of(load, azure_overrides(args))
    except Exception as err:  # a bug must still end as one line and exit 2, never a traceback in CI logs
        raise CliError(f"internal error while loading {root}: {type(err).__name__}: {err}")
    if args.output == "json":
        emit(_as_json(load, problems), "json")
    else:
        _print_text(load, problems)
    return EXIT_INVALID if problems else EXIT_OK


def problems_of(load: RepoLoad, azure: Mapping[str, Any] | None = None) -> list[LoadError]:
    """Everything that makes a repository invalid: its files' errors, what cannot render, azure: pins that
    differ from this environment's target, aks models without a target (`validate` and the MCP server's
    validate_repository alike). `azure`: --azure-* flags, over the GITOPS_KAITO_AZURE_* environment."""
    return [*load.errors, *_render_problems(load), *_pin_problems(load), *_aks_problems(load, azure or {})]


def _render_problems(load: RepoLoad) -> list[LoadError]:
    """Rendering is part of validity: a request that resolves but cannot render (e.g. a broken template
    override in templates/) must fail the pull request too, not the first sync after merge."""
    from gitops_kaito.core import render
    from gitops_kaito.repo.modelrequest import LoadError
    from gitops_kaito.repo.yamlsource import SourceError

    templates_dir = render.repo_templates_dir(load.root)
    try:
        templates = render.load_templates(templates_dir)
    except SourceError as err:
        return [LoadError(err.path, err.line, err.message, None)]
    problems: list[LoadError] = []
    for model in load.models:
        try:
            render.render_request(model, load.config, "validate", templates_dir, templates=templates)
        except SourceError as err:
            problems.append(LoadError(err.path, err.line, err.message, model.request.id))
        except render.RenderError as err:
            problems.append(LoadError(model.request.path, None, str(err), model.request.id))
    return problems


def _pin_problems(load: RepoLoad) -> list[LoadError]:
    """azure: pins that differ from the target this environment states (GITOPS_KAITO_AZURE_*): the daemon would refuse
    every agent-pool write. Without the variables there is nothing to compare with; the text output notes each pin."""
    import os

    from gitops_kaito.provision.aks import env_var, merge_settings, pin_problems
    from gitops_kaito.repo.config import CONFIG_FILE
    from gitops_kaito.repo.modelrequest import LoadError

    return [LoadError(CONFIG_FILE, line, text, None) for name, line, text in
            pin_problems(load.config.azure, merge_settings(None)) if os.environ.get(env_var(name))]


def _pin_notes(load: RepoLoad) -> list[str]:
    from gitops_kaito.provision.aks import TARGET_FIELDS, camel_case, pin_source
    from gitops_kaito.repo.config import CONFIG_FILE

    lines = load.config.azure.lines
    return [f"{CONFIG_FILE}:{lines[name]}: note: azure.{camel_case(name)} is only checked against the daemon's "
            f"{pin_source(name)}, never used in its place (a merged change must not pick where agent pools are "
            "written)" for name in TARGET_FIELDS if name in lines]
def _aks_problems(load: RepoLoad, azure: Mapping[str, Any]) -> list[LoadError]:
    """An aks model needs the Azure target (subscription, resource group, cluster) the daemon is given by
    --azure-* or GITOPS_KAITO_AZURE_*: without it every pass would fail it, so validate refuses it now, at the
    line that asks for aks (the model's spec.provisioning, or defaults.provisioning in gitops-kaito.yaml)."""
    from gitops_kaito.provision.aks import AksSettingsError, merge_settings
    from gitops_kaito.repo.config import CONFIG_FILE
    from gitops_kaito.repo.modelrequest import LoadError
    from gitops_kaito.repo.yamlsource import SourceError, load_yaml_file

    aks = [m for m in load.models if m.provisioning == "aks"]
    if not aks:
        return []
    try:
        merge_settings(None, None, azure).validate()  # never the repository's values
    except AksSettingsError as err:
        problem = str(err)
    else:
        return []

    def line(path: str, json_path: tuple[str, str]) -> int | None:
        """The line of the key, None when the file does not set it."""
        try:
            doc = load_yaml_file(load.root / path, load.root)
        except (SourceError, OSError):
            return None
        section = doc.data.get(json_path[0])
        return doc.line_of(json_path) if isinstance(section, dict) and json_path[1] in section else None

    # gitops-kaito.yaml's line is the same for every model that takes its default: read once.
    config_line = line(CONFIG_FILE, ("defaults", "provisioning")) if (load.root / CONFIG_FILE).is_file() else None
    out = []
    for model in aks:
        where, at = model.request.path, line(model.request.path, ("spec", "provisioning"))
        if at is None and (load.root / CONFIG_FILE).is_file():
            where, at = CONFIG_FILE, config_line
        out.append(LoadError(where, at, f"{model.request.id}: provisioning: aks: {problem}", model.request.id))
    return out


def _as_json(load: RepoLoad, problems: list[LoadError]) -> dict[str, Any]:
    failed = {p.model_id for p in problems}
    return {
        "valid": not problems,
        "models": [
            {"id": m.request.id, "path": m.request.path, "model": m.summary,
             "instanceType": m.sku.name if m.sku else None, "nodes": m.nodes, "gpus": m.gpus,
             "provisioning": m.provisioning, "pricePerHour": m.price_per_hour, "note": m.note or None}
            for m in load.models if m.request.id not in failed
        ],
        "errors": [{"path": e.path, "line": e.line, "message": e.message, "model": e.model_id} for e in problems],
    }


def _print_text(load: RepoLoad, problems: list[LoadError]) -> None:
    for error in problems:
        print(str(error))
    files = len({e.path for e in problems})
    failed = {p.model_id for p in problems}
    for model in load.models:  # valid, but what was checked is less than for a catalog preset: say what
        if model.note and model.request.id not in failed:
            print(f"{model.request.path}: note: {model.note}")
    for note in _pin_notes(load):
        print(note)
    models = len([m for m in load.models if m.request.id not in failed])
    if problems:
        print(f"{len(problems)} error(s) in {files} file(s); {models} model(s) valid", file=sys.stdout)
    elif models == 0:
        print("no model requests found under models/ (nothing to validate)")
    else:
        print(f"{models} model(s) valid")
