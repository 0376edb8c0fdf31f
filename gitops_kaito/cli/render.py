"""`gitops-kaito render`: prints every object a model repository asks for, in apply order, as YAML or JSON.

Load errors go to stderr as path:line: message (exit 1) while the valid models are still printed; bugs exit 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import EXIT_INVALID, EXIT_OK, CliError, add_output_flag, add_repo_flag, emit
from gitops_kaito.repo.yamlsource import SourceError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render", help="print the Kubernetes objects a repository renders to",
        description="Render every model request under models/ (with the repository's templates/ overrides) "
                    "and print the desired objects in apply order: ConfigMaps, GPU nodes, Workspaces.")
    add_repo_flag(parser)
    add_output_flag(parser, choices=("yaml", "json"), default="yaml")
    parser.add_argument("--revision", help="value of the revision annotation (default: the checkout's "
                                           "<branch>@sha1:<commit>, or 'local' outside git)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.core import render
    from gitops_kaito.repo.loader import load_repository

    root = Path(args.repo)
    if not root.is_dir():
        raise CliError(f"{root}: not a directory")
    from gitops_kaito.reconcile.sync import local_revision  # the same revision `sync` and `plan` stamp

    revision = args.revision or local_revision(root)
    try:
        load = load_repository(root)
        templates_dir = render.repo_templates_dir(load.root)
        templates = render.load_templates(templates_dir)
    except SourceError as err:  # a broken override template is the user's input, like a broken model
        print(str(err), file=sys.stderr)
        return EXIT_INVALID
    except Exception as err:  # a bug must end as one line and exit 2, never a traceback
        raise CliError(f"internal error while loading {root}: {type(err).__name__}: {err}")

    messages = [str(e) for e in load.errors]
    rendered = []
    for model in sorted(load.models, key=lambda m: m.request.id):
        try:
            rendered.append(render.render_request(model, load.config, revision, templates_dir,
                                                templates=templates))
        except (render.RenderError, SourceError) as err:
            messages.append(str(err))
        except Exception as err:
            raise CliError(f"internal error while rendering {model.request.path}: {type(err).__name__}: {err}")
    manifests = [obj.manifest for obj in render.desired_objects(rendered)]
    if args.output == "json":
        emit(manifests, "json")
    elif manifests:
        emit(manifests, "yaml")
    for message in messages:
        print(message, file=sys.stderr)
    for r in rendered:  # stderr: stdout stays the manifests alone
        if r.model.note:
            print(f"{r.model.request.path}: note: {r.model.note}", file=sys.stderr)
        for obj in r.objects:
            if obj.create_only:  # set once, when the object is created, then left to another controller
                fields = ", ".join(f"{k}: {v}" for k, v in sorted((obj.create_only.get("spec") or {}).items()))
                print(f"{r.model.request.path}: note: {obj.ref} gets spec {fields} when it is created only; then "
                      "its autoscaler owns it", file=sys.stderr)
    return EXIT_INVALID if messages else EXIT_OK
