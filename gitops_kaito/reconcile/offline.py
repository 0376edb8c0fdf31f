"""Offline plan for pull requests: the repository as rendered at a base revision stands in for the cluster.

Trees are read from git objects into temporary folders (the user's working tree and index are never touched);
no Kubernetes API, no Azure: `plan --base REV` works in CI that cannot reach the cluster.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import git

from gitops_kaito.core.plan import PlanPolicy, make_plan
from gitops_kaito.core.render import Desired
from gitops_kaito.core.report import WORKING_TREE, Cost, OfflinePlan
from gitops_kaito.model.objects import DesiredObject, Manifest, with_digest
from gitops_kaito.model.ownership import FIELD_MANAGER
from gitops_kaito.provision.agentpool import TAG_REVISION, DesiredAgentPool, LivePool, PoolChange, model_pools
from gitops_kaito.provision.pools import AKS
from gitops_kaito.reconcile.sync import SyncError, load_desired, local_revision, plan_policy, with_waits
from gitops_kaito.repo.config import Scope
from gitops_kaito.repo.loader import CONFIG_FILE, MODELS_DIR
from gitops_kaito.repo.resolve import ResolvedModel

# What load_desired reads below a repository root; nothing else is exported from the base commit.
INPUTS = (CONFIG_FILE, MODELS_DIR, "templates")


class OfflineError(Exception):
    """The offline plan cannot run: not a git repository, an unknown revision, a folder that cannot be read."""


def plan_offline(repo_dir: Path, base: str, head: str | None = None, *, revision: str = "",
                 allow_mass_prune: bool = False, scope: Scope | None = None) -> OfflinePlan:
    """Render `base` and the head (the working tree, or the `head` revision) and plan the difference.
    `scope` (--instance/--path) applies to both sides."""
    repo, rel = open_repository(Path(repo_dir))
    try:
        base_sha = resolve_revision(repo, base)
        head_sha = resolve_revision(repo, head) if head else ""
        with tempfile.TemporaryDirectory(prefix="gitops-kaito-base-") as tmp:
            base_dir = export_tree(repo, base_sha, rel, Path(tmp) / "base")
            base_desired = _load(base_dir, f"{base}@sha1:{base_sha}", scope)
            if head:
                head_dir = export_tree(repo, head_sha, rel, Path(tmp) / "head")
                head_desired = _load(head_dir, revision or f"{head}@sha1:{head_sha}", scope)
            else:
                head_desired = _load(Path(repo_dir), revision or local_revision(Path(repo_dir)), scope)
    finally:
        repo.close()
    policy = plan_policy(head_desired, allow_mass_prune=allow_mass_prune)
    live = [as_applied(obj) for obj in base_desired.objects]
    pools, pool_models, pool_errors = offline_pools(base_desired, head_desired, policy, f"{base}@sha1:{base_sha}")
    if pool_errors:
        head_desired = _with_errors(head_desired, pool_errors)
    plan = with_waits(make_plan(head_desired.objects, live, policy, pools=pools, pool_models=pool_models),
                      head_desired, None)
    return OfflinePlan(base_ref=base, base_sha=base_sha, head_ref=head or WORKING_TREE, base=base_desired,
                       head=head_desired, plan=plan, before=cost(base_desired, exclude=policy.keep),
                       after=cost(head_desired))


def _load(root: Path, revision: str, scope: Scope | None) -> Desired:
    try:
        return load_desired(root, revision, scope)
    except SyncError as err:
        raise OfflineError(str(err)) from None


def _with_errors(desired: Desired, errors: Sequence[str]) -> Desired:
    return dataclasses.replace(desired, errors=desired.errors + tuple(errors))


# ---------------------------------------------------------------------------------------------- git


def open_repository(repo_dir: Path) -> tuple[git.Repo, PurePosixPath]:
    """The git repository holding `repo_dir`, and where the model repository sits inside its work tree."""
    if not repo_dir.is_dir():
        raise OfflineError(f"{repo_dir}: not a directory")
    try:
        repo = git.Repo(repo_dir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        raise OfflineError(f"{repo_dir}: not inside a git repository (--base reads the base revision "
                           f"from git)") from None
    if repo.working_tree_dir is None:
        repo.close()
        raise OfflineError(f"{repo_dir}: a bare git repository; run in a checkout")
    try:
        rel = repo_dir.resolve().relative_to(Path(repo.working_tree_dir).resolve())
    except ValueError:  # e.g. inside .git
        repo.close()
        raise OfflineError(f"{repo_dir}: not inside the work tree of {repo.working_tree_dir}") from None
    return repo, PurePosixPath(rel.as_posix())


def resolve_revision(repo: git.Repo, rev: str) -> str:
    """The commit sha `rev` names (any git revision syntax: origin/main, HEAD~1, a tag, a sha)."""
    if not rev or rev.startswith("-"):  # never let a revision be read as an option
        raise OfflineError(f"invalid revision {rev!r}")
    try:
        return str(repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}")).strip()
    except git.GitCommandError:
        raise OfflineError(f"unknown revision {rev!r} (with actions/checkout, fetch the base branch: "
                           f"fetch-depth: 0)") from None


def export_tree(repo: git.Repo, sha: str, rel: PurePosixPath, dest: Path) -> Path:
    """Write the loader's inputs under `rel` at commit `sha` into `dest`, from git objects only.

    A folder missing at that commit exports as empty (a repository that had no models yet).
    """
    dest.mkdir(parents=True)
    tree = repo.commit(sha).tree
    if str(rel) != ".":
        try:
            tree = tree / str(rel)
        except KeyError:
            return dest
        if tree.type != "tree":
            raise OfflineError(f"{rel} is not a folder at {sha[:12]}")
    for name in INPUTS:
        try:
            item = tree / name
        except KeyError:
            continue
        for entry in [item, *(item.traverse() if item.type == "tree" else ())]:
            _write(entry, dest / PurePosixPath(entry.path).relative_to(tree.path))
    return dest


def _write(entry: Any, target: Path) -> None:
    if entry.type == "tree":
        target.mkdir(parents=True, exist_ok=True)
    elif entry.type == "blob":
        target.parent.mkdir(parents=True, exist_ok=True)
        data = entry.data_stream.read()
        if stat.S_ISLNK(entry.mode):  # kept a link: the loader refuses links that leave the repository
            os.symlink(data.decode(), target)
        else:
            target.write_bytes(data)
    # a submodule ("commit") has no content here; the loader never reads one


# ---------------------------------------------------------------------------------------------- live stand-ins


def as_applied(obj: DesiredObject) -> Manifest:
    """A desired object as the cluster would hold it right after our apply: digest annotation, owner labels (the
    render sets them) and a managedFields entry of our field manager, so planning prunes and diffs it as ours."""
    manifest = with_digest(obj.manifest)
    manifest["metadata"]["managedFields"] = [{
        "manager": FIELD_MANAGER, "operation": "Apply", "apiVersion": obj.ref.api_version,
        "fieldsType": "FieldsV1", "fieldsV1": fields_v1(manifest),
    }]
    return manifest


def fields_v1(manifest: Manifest) -> dict[str, Any]:
    """The fieldsV1 set server-side apply records for a manifest: every map key; lists as whole leaves."""
    def walk(value: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return {f"f:{k}": walk(v) for k, v in value.items()}
        return {}

    tree = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in (tree.get("metadata") or {}).items() if k not in ("name", "namespace", "managedFields")}
    return walk({**tree, "metadata": meta})


def offline_pools(base: Desired, head: Desired, policy: PlanPolicy,
                  base_revision: str) -> tuple[tuple[PoolChange, ...], frozenset[str], list[str]]:
    """aks mode: the base's agent pools as live pools, planned against the head's (pure plan_pools).

    Returns the changes, the models that own a base pool (the prune guard counts them) and head errors.
    """
    base_models = [r.model for r in base.rendered if isinstance(r.model, ResolvedModel)]
    head_models = [r.model for r in head.rendered if isinstance(r.model, ResolvedModel)]
    if not any(m.provisioning == AKS for m in [*base_models, *head_models]):
        return (), frozenset(), []
    # A base model whose pool cannot be built had none to list; a head one is its own error (and keeps its pool).
    live = [live_pool(p, base_revision) for p in model_pools(base_models, base.load.config.instance).pools]
    wanted = model_pools(head_models, policy.instance)
    paths = {m.request.id: m.request.path for m in head_models}
    changes = wanted.plan(live, prune=policy.source_ok and policy.prune, keep_model_ids=policy.keep)
    return changes, frozenset(p.model_id for p in live), [f"{paths[mid]}: {why}" for mid, why in wanted.invalid]


def live_pool(pool: DesiredAgentPool, revision: str) -> LivePool:
    """A desired pool as ARM would list it once our provisioner created it at `revision`."""
    return LivePool(name=pool.name, vm_size=pool.vm_size, count=pool.count, labels=pool.labels, taints=pool.taints,
                    tags=tuple(sorted((*pool.tags, (TAG_REVISION, revision[:256])))), os_disk_gb=pool.os_disk_gb)


def cost(desired: Desired, exclude: Iterable[str] = ()) -> Cost:
    """Hourly cost of the rendered, running models (the plan table's total). `exclude`: models left as they are
    because their head file is broken; they count on neither side of the change."""
    skip = set(exclude)
    total, known = 0.0, True
    for r in desired.rendered:
        m = r.model
        if r.suspended or m.request.id in skip:
            continue
        if m.price_per_hour is not None:
            total += m.price_per_hour
        elif m.nodes:
            known = False
    return Cost(total, known)


__all__ = ["Cost", "OfflineError", "OfflinePlan", "as_applied", "cost", "export_tree", "fields_v1", "live_pool",
           "offline_pools", "open_repository", "plan_offline", "resolve_revision"]
