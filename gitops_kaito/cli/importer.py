"""`gitops-kaito import`: writes a model request for each Workspace or InferenceSet in the cluster that gitops-kaito
does not manage (never for an InferenceSet's replicas: KAITO's own).

Brownfield adoption: each file is validated and rendered back, and written only if the next pass updates in place.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    CliError,
    add_cluster_flags,
    add_scope_flags,
    emit,
    open_repo_config,
    print_table,
    scope_from_args,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import", help="write request files for existing Workspaces and InferenceSets not managed by gitops-kaito",
        description="Find KAITO Workspaces and InferenceSets without gitops-kaito's owner labels and write "
                    "models/<ns>/<name>.yaml for each, so the next sync pass adopts them in place (no recreation); "
                    "an InferenceSet's replicas (child Workspaces, KAITO's own) are never imported. Ones that cannot "
                    "be expressed as a request (tuning, custom templates, legacy API, ...) are skipped with the "
                    "reason. Exit 0 when everything found was imported, 1 when some were skipped, 2 on errors.")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="default", help="namespace to import from (default: default)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="import from every namespace")
    parser.add_argument("--repo", default=".", help="model repository directory (default: .)")
    parser.add_argument("--dry-run", action="store_true", help="check and show, write nothing")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table", help="output format")
    add_cluster_flags(parser)
    add_scope_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.adapters.kube import Kube, KubeError

    root, config = open_repo_config(args.repo)
    config = scope_from_args(args).apply(config)  # files land where this instance reads; rendered with its label
    namespace = None if args.all_namespaces else args.namespace
    try:
        with Kube.connect(args.kubeconfig, args.context) as kube:
            rows = import_workspaces(kube, root, config, namespace, dry_run=args.dry_run)
    except KubeError as err:
        raise CliError(str(err)) from None
    if args.output != "table":
        emit(rows, args.output)
    else:
        print_table(rows, ["model", "result", "path", "detail"])
        done = sum(1 for r in rows if r["result"] in ("imported", "would import"))
        skipped = sum(1 for r in rows if r["result"] == "skipped")
        verb = "would import" if args.dry_run else "imported"
        print(f"{done} {verb}, {skipped} skipped" + ("; commit models/ and the next sync pass adopts them in place"
                                                       if done and not args.dry_run else ""))
    return EXIT_INVALID if any(r["result"] == "skipped" for r in rows) else EXIT_OK


def import_workspaces(kube: Any, root: Path, config: Any, namespace: str | None, *,
                      dry_run: bool = False) -> list[dict[str, Any]]:
    """Read the cluster, decide each Workspace's file, check it renders back in place, write the good ones."""
    from gitops_kaito.core import adopt
    from gitops_kaito.model.objects import INFERENCESET_VERSIONS, ObjectRef
    from gitops_kaito.model.ownership import kaito_owned
    from gitops_kaito.repo.catalog import load_catalog
    from gitops_kaito.repo.loader import in_scope

    version = kube.workspace_version("kaito.sh/v1beta1")
    found = kube.list_owned(version, "Workspace", label_selector="")
    if kube.served(INFERENCESET_VERSIONS[0], "InferenceSet"):
        found += kube.list_owned(INFERENCESET_VERSIONS[0], "InferenceSet", label_selector="")
    # An InferenceSet's replicas are KAITO's (its created-by label): the set is imported, never its children.
    live = [w for w in found if not kaito_owned(w)
            and (namespace is None or (w.get("metadata") or {}).get("namespace") == namespace)]
    catalog = load_catalog()
    rows: list[dict[str, Any]] = []
    candidates: list[tuple[adopt.Adoption, dict[str, Any]]] = []
    for ws in sorted(live, key=lambda w: (w["metadata"].get("namespace", ""), w["metadata"]["name"])):
        if adopt.is_managed(ws):
            continue
        meta = ws["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        target = root / "models" / ns / f"{name}.yaml"
        if not in_scope(f"models/{ns}/{name}.yaml", config.paths):
            rows.append(_row(adopt.Adoption(ns, name, skipped=f"models/{ns}/{name}.yaml is outside the paths "
                                            f"of instance {config.instance!r} ({', '.join(config.paths)})")))
            continue
        if target.exists() or target.with_suffix(".yml").exists():
            rows.append(_row(adopt.Adoption(ns, name, skipped=f"{target.relative_to(root)} exists already")))
            continue
        cm_name = adopt.configmap_name(ws)
        configmap = kube.get(ObjectRef("v1", "ConfigMap", ns, cm_name)) if cm_name else None
        adoption = adopt.request_for(ws, configmap, catalog, config)
        if adoption.skipped:
            rows.append(_row(adoption))
        else:
            candidates.append((adoption, ws))
    checked = _check(root, candidates, config.instance)
    for adoption in checked:
        if not adoption.skipped and not dry_run:
            path = root / adoption.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(adoption.text)
        rows.append(_row(adoption, dry_run))
    return sorted(rows, key=lambda r: r["model"])


def _check(root: Path, candidates: list[tuple[Any, dict[str, Any]]], instance: str) -> list[Any]:
    """Load and render the new files beside the repo's own config and templates with sync.load_desired, exactly
    as a pass would (template overrides included)."""
    from dataclasses import replace

    from gitops_kaito.core import adopt
    from gitops_kaito.reconcile.sync import load_desired
    from gitops_kaito.repo.config import Scope

    if not candidates:
        return []
    out: list[adopt.Adoption] = []
    with tempfile.TemporaryDirectory(prefix="gitops-kaito-import-") as tmp:
        scratch = Path(tmp)
        for name in ("gitops-kaito.yaml", "gitops-kaito.yml"):
            if (root / name).is_file():
                shutil.copy2(root / name, scratch / name)
        if (root / "templates").is_dir():
            shutil.copytree(root / "templates", scratch / "templates")
        for adoption, _ in candidates:
            path = scratch / adoption.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(adoption.text)
        desired = load_desired(scratch, "import", Scope(instance=instance, paths=()))  # only candidates are here
        errors = {e.model_id: str(e) for e in desired.load.errors if e.model_id}
        # A render error is the model's; a broken template override breaks every model (load_desired adds its
        # error last and renders none).
        unrendered = dict(desired.invalid) if desired.templates_ok else {
            m.request.id: desired.errors[-1] for m in desired.load.models}
        rendered = {r.model.request.id: r for r in desired.rendered}
        for adoption, live in candidates:
            mid = adoption.model_id
            if mid in errors:
                out.append(replace(adoption, skipped=f"the request would not validate: {errors[mid]}"))
                continue
            if mid in unrendered:
                out.append(replace(adoption, skipped=f"the request does not render: {unrendered[mid]}"))
                continue
            if mid not in rendered:
                out.append(replace(adoption, skipped="the request did not load"))
                continue
            immutable, other = adopt.differences(rendered[mid], live)
            if immutable:
                out.append(replace(adoption, skipped=f"adopting would replace the {live.get('kind')}: immutable "
                                   f"{', '.join(immutable)} would differ"))
                continue
            notes = adoption.notes + ((f"the first pass also changes {', '.join(other)}",) if other else ())
            out.append(replace(adoption, notes=notes))
    return out


def _row(adoption: Any, dry_run: bool = False) -> dict[str, Any]:
    if adoption.skipped:
        return {"model": f"{adoption.namespace}/{adoption.name}", "result": "skipped", "path": "",
                "detail": adoption.skipped}
    return {"model": f"{adoption.namespace}/{adoption.name}", "result": "would import" if dry_run else "imported",
            "path": adoption.path, "detail": "; ".join(adoption.notes)}
