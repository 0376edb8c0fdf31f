"""Reads a model repository: gitops-kaito.yaml and every models/<namespace>/<name>.yaml, each validated and resolved.

A bad file fails that model only; every error names the file and line, and broken files still count as discovered.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import os
import stat
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gitops_kaito.model.k8snames import LABEL_VALUE_MAX
from gitops_kaito.model.ownership import is_dns_label, model_id
from gitops_kaito.repo.catalog import Catalog, load_catalog
from gitops_kaito.repo.config import CONFIG_FILE, RepoConfig, Scope, load_config, recover_scope
from gitops_kaito.repo.kinds import API_VERSION, Request, RequestKind, Resolved
from gitops_kaito.repo.modelrequest import LoadError, validate_document
from gitops_kaito.repo.rag import RAG_DEPLOYMENT, link_llm
from gitops_kaito.repo.resolve import MODEL_DEPLOYMENT, RepoLoad, ResolveError
from gitops_kaito.repo.tuning import TUNING_JOB, fill_adapters, link_adapters
from gitops_kaito.repo.yamlsource import (
    LocatedDoc,
    SourceError,
    each_error,
    escapes,
    load_yaml_file,
    special_kind,
)

__all__ = ["MODELS_DIR", "RepoLoad", "load_repository"]

MODELS_DIR = "models"
SUFFIXES = (".yaml", ".yml")

# Every request kind a file under models/ may be, by its `kind:`; one id space (<namespace>.<name>) across them.
KINDS: dict[str, RequestKind] = {k.kind: k for k in (MODEL_DEPLOYMENT, TUNING_JOB, RAG_DEPLOYMENT)}
DEFAULT_KIND = MODEL_DEPLOYMENT.kind  # a document without a usable kind is checked against this kind's schema
# KAITO's own kinds written as requests: what to write instead.
KIND_HINTS = {
    "InferenceSet": " (a ModelDeployment with spec.replicas or spec.autoscale is served by a KAITO InferenceSet)",
    "Workspace": " (a ModelDeployment renders the KAITO Workspace)",
}

# Cross-request references (a RAG engine's model, an adapter's tuning job), checked once every request resolved:
# each hook returns (request id, json path, message) for every reference that does not hold.
Link = Callable[[Mapping[str, Resolved]], list[tuple[str, tuple[str | int, ...], str]]]
LINKS: tuple[Link, ...] = (link_llm, link_adapters)


@dataclass
class _Collected:
    """Mutable scratch state of one load; frozen into a RepoLoad at the end."""

    requests: list[tuple[Request, LocatedDoc, RequestKind]] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    discovered: set[str] = field(default_factory=set)
    tree_ok: bool = True

    kept_namespaces: set[str] = field(default_factory=set)
    unread: list[str] = field(default_factory=list)  # paths that could hold models and could not be read

    def cannot_read(self, path: str, message: str, mid: str | None) -> None:
        """A file or folder under models/ that could hold models and cannot be read: an error naming it, and the
        models that could live there are spared: its own model id when its name says it, else every model of
        its namespace folder, else (directly in models/, or a folder that is not a namespace) every model."""
        self.fail(path, None, message, mid)
        if not mid:
            self.unread.append(path)

    def spare_unread(self, paths: tuple[str, ...]) -> None:
        """Keep the models the unreadable paths in scope could hold (see cannot_read)."""
        for path in self.unread:
            if not in_scope(path, paths) and not any(p.startswith(path + "/") for p in paths):
                continue
            namespace = _namespace_of(path)
            if namespace is not None and is_dns_label(namespace):
                self.kept_namespaces.add(namespace)
            else:
                self.tree_ok = False

    def fail(self, path: str, line: int | None, message: str, mid: str | None) -> None:
        # Problems with a whole file (too large, misplaced, hidden) point at its first line, so editors and CI
        # annotations can still jump to it; only folders keep line None.
        if line is None and _yaml_named(path):
            line = 1
        self.errors.append(LoadError(path=path, line=line, message=message, model_id=mid))
        if mid:
            self.discovered.add(mid)


def load_repository(root: Path, catalog: Catalog | None = None, scope: Scope | None = None) -> RepoLoad:
    """Load, validate and resolve every model request under root. Never raises for bad user input.

    `scope` overrides the config's instance and paths; only model files under the paths are read (the others
    belong to another instance: they are not loaded, reported, nor spared from anything here).
    """
    with _no_cyclic_gc():
        return _load_repository(Path(root), catalog, scope or Scope())


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    # Loading allocates hundreds of thousands of small acyclic objects (parsed YAML, positions, requests),
    # and the cyclic collector kept re-scanning them: ~8 % of loading 5,000 files. Reference counting still
    # frees everything; the collector runs again as usual afterwards.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_repository(root: Path, catalog: Catalog | None, scope: Scope) -> RepoLoad:
    real_root = root.resolve()
    out = _Collected()
    config_ok = True
    try:
        config = load_config(root)
    except SourceError as err:
        config_ok = False
        config = recover_scope(root)
        for each in each_error(err):  # every problem of the file at once, each with its line
            out.fail(each.path, each.line, each.message, None)
    config = scope.apply(config)
    catalog = catalog or load_catalog()
    if config.prices:
        catalog = catalog.with_prices(config.prices)

    for path, namespace, shown in _model_files(root, real_root, out):
        if in_scope(shown, config.paths):
            _load_one(path, namespace, shown, root, config, out)
    if config.paths:
        out.errors = [e for e in out.errors if e.path in (MODELS_DIR, CONFIG_FILE) or in_scope(e.path, config.paths)]
        for missing in (p for p in config.paths if not (root / p).exists()):
            # A mistyped path must not read as "this instance has no models": that would prune them all.
            out.tree_ok = False
            out.fail(missing, None, f"path {missing} (instance {config.instance!r}) does not exist: nothing is "
                     "pruned until it does", None)

    out.spare_unread(config.paths)
    models = _resolve_all(out, catalog, config)
    return RepoLoad(
        root=root, config=config, models=tuple(sorted(models, key=lambda m: m.request.id)),
        errors=tuple(sorted(out.errors, key=lambda e: (e.path, e.line or 0, e.message))),
        # An unreadable models/ tree must not read as "no models" either: prune keys off config_ok.
        config_ok=config_ok and out.tree_ok, discovered_ids=frozenset(out.discovered),
        kept_namespaces=frozenset(out.kept_namespaces),
    )


def in_scope(shown: str, paths: tuple[str, ...]) -> bool:
    """Whether a repo-relative path is one of `paths` or below one (no paths: everything is)."""
    return not paths or any(shown == p or shown.startswith(p + "/") for p in paths)


def _stem_id(namespace: str | None, path: Path) -> str | None:
    stem = path.name.rsplit(".", 1)[0]
    if namespace is None or not is_dns_label(namespace) or not is_dns_label(stem):
        return None
    return model_id(namespace, stem)


def _yaml_named(name: str) -> bool:
    """A name that says "model file", in any letter case (.YAML is a mistake to report, not a file to skip)."""
    return name.lower().endswith(SUFFIXES)


def _namespace_of(shown: str) -> str | None:
    """The namespace folder a path under models/ is or sits in (models/<ns>[/...]); None for a file directly in
    models/."""
    parts = shown.split("/")
    if len(parts) == 2 and not _yaml_named(parts[1]):  # models/<name>: a namespace folder (or what should be one)
        return parts[1]
    return parts[1] if len(parts) > 2 else None


def _model_files(root: Path, real_root: Path, out: _Collected) -> list[tuple[Path, str | None, str]]:
    """Candidate model files with the namespace folder they sit in (None when misplaced) and their shown path.

    Only regular files inside the repository are read. Anything else with a model file's name (a dangling
    symlink, a symlink to a folder or out of the repository, a FIFO or device, a wrongly cased extension) and any
    folder that cannot be walked (a symlink, unreadable) is an error naming the path, and the models that could
    live there are kept from prune (see _Collected.cannot_read).
    """
    models = root / MODELS_DIR
    if not models.exists() and not models.is_symlink():
        return []
    if models.is_symlink() or escapes(models, real_root) or not models.is_dir():
        out.tree_ok = False
        out.fail(MODELS_DIR, None, "models/ must be a real directory inside the repository", None)
        return []
    try:
        entries = _scan(models)
    except OSError as err:
        out.tree_ok = False
        out.fail(MODELS_DIR, None, f"cannot list models/: {err.strerror or err}", None)
        return []
    found: list[tuple[Path, str | None, str]] = []
    for entry in entries:
        shown = f"{MODELS_DIR}/{entry.name}"
        path = models / entry.name
        kind = _entry_kind(entry, path, real_root, out, shown, None)
        if kind == "file":
            found.append((path, None, shown))
        elif kind == "dir":
            for child, child_shown in _walk(path, shown, real_root, out):
                found.append((child, entry.name if child.parent == path else None, child_shown))
    return found


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    # os.scandir: the entry types come with the listing, not one or two stat calls per file.
    with os.scandir(folder) as listing:
        return sorted(listing, key=lambda e: e.name)


def _walk(folder: Path, shown_folder: str, real_root: Path, out: _Collected) -> list[tuple[Path, str]]:
    files: list[tuple[Path, str]] = []
    try:
        entries = _scan(folder)
    except OSError as err:
        out.cannot_read(shown_folder, f"cannot list folder: {err.strerror or err}", None)
        return files
    for entry in entries:
        shown = f"{shown_folder}/{entry.name}"
        path = folder / entry.name
        kind = _entry_kind(entry, path, real_root, out, shown, folder.name)
        if kind == "dir":
            files.extend(_walk(path, shown, real_root, out))
        elif kind == "file":
            files.append((path, shown))
    return files


def _entry_kind(entry: os.DirEntry[str], path: Path, real_root: Path, out: _Collected, shown: str,
                folder: str | None) -> str:
    """'file' (a regular file to load), 'dir' (a real folder to walk) or '' (skipped, or reported here)."""
    yaml_named = _yaml_named(entry.name)
    stem_id = _stem_id(folder, path) if yaml_named else None
    if entry.name.startswith("."):
        hidden = "hidden files and folders under models/ are not read: rename it"
        if yaml_named:
            out.fail(shown, None, hidden, _stem_id(folder, path.with_name(entry.name.lstrip("."))))
        elif entry.is_dir(follow_symlinks=False):
            out.cannot_read(shown, hidden, None)
        return ""
    try:
        linked = entry.is_symlink()
        info = path.stat()  # follows a symlink: what would be read
    except OSError as err:  # a dangling symlink, a symlink loop, a file that vanished
        if yaml_named or linked:
            what = "symlink points nowhere (dangling or a loop)" if linked else f"cannot read: {err.strerror or err}"
            out.cannot_read(shown, f"{what}: refused", stem_id)
        return ""
    if linked and escapes(path, real_root):
        out.cannot_read(shown, "symlink points outside the repository: refused", stem_id)
        return ""
    if stat.S_ISDIR(info.st_mode):
        if linked:  # a folder reached twice, or a loop: models live in real folders only
            out.cannot_read(shown, "symlink to a folder: folders under models/ must be real folders", stem_id)
            return ""
        if yaml_named:
            out.cannot_read(shown, "a folder named like a model file: refused", stem_id)
            return ""
        return "dir"
    if not yaml_named:
        return ""
    if not stat.S_ISREG(info.st_mode):
        out.cannot_read(shown, f"not a regular file ({special_kind(info.st_mode)}): refused", stem_id)
        return ""
    if not entry.name.endswith(SUFFIXES):
        out.cannot_read(shown, f"extension {entry.name.rsplit('.', 1)[1]!r} must be written in lowercase "
                        f"(.yaml or .yml): rename it", stem_id)
        return ""
    return "file"


def _doc_id(doc: LocatedDoc | None, namespace: str | None, path: Path, default_ns: str) -> str | None:
    """The model id a file claims, as far as it can be read, so prune spares it while it is broken."""
    data = doc.data if doc is not None else None
    meta = data.get("metadata") if isinstance(data, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    ns = ns if is_dns_label(ns) else namespace if namespace is not None else default_ns
    if isinstance(name, str) and isinstance(ns, str) and is_dns_label(name) and is_dns_label(ns):
        return model_id(ns, name)
    return _stem_id(namespace, path)


def _load_one(path: Path, namespace: str | None, shown: str, root: Path, config: RepoConfig,
              out: _Collected) -> None:
    try:
        doc = load_yaml_file(path, root, shown=shown)
    except SourceError as err:
        if err.line is None:  # the file could not be read at all
            out.cannot_read(err.path, err.message, _stem_id(namespace, path))
        else:
            out.fail(err.path, err.line, err.message, _stem_id(namespace, path))
        return
    mid = _doc_id(doc, namespace, path, config.default_namespace)
    for known in (mid, _stem_id(namespace, path)):
        if known:
            out.discovered.add(known)
    if namespace is None:
        out.fail(shown, None, "model files must sit directly in models/<namespace>/ (e.g. models/ml/phi-4.yaml)",
                 mid)
        return
    if not is_dns_label(namespace):
        out.fail(shown, None, f"folder models/{namespace}/ is not a valid namespace (a DNS-1123 label: lowercase "
                 "letters, digits and '-', at most 63 characters)", mid)
        if mid is None:  # which model this would be cannot be told: no model is pruned while it is there
            out.tree_ok = False
        return
    kind = _kind_of(doc)
    if kind is None:
        data = doc.data if isinstance(doc.data, dict) else {}
        named = str(data.get("kind"))
        close = difflib.get_close_matches(named, sorted(KINDS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else KIND_HINTS.get(named, "")
        out.fail(shown, doc.line_of(("kind",)), f"unknown kind {named!r}{hint}: a file under models/ is one of "
                 f"{', '.join(sorted(KINDS))} ({API_VERSION})", mid)
        return
    problems = validate_document(doc, kind.schema_file)
    if problems:
        for problem in problems:
            out.fail(problem.path, problem.line, problem.message, mid)
        return
    meta = doc.data["metadata"]
    declared_ns = meta.get("namespace")
    if declared_ns is not None and declared_ns != namespace:
        out.fail(shown, doc.line_of(("metadata", "namespace")), f"metadata.namespace is {declared_ns!r} but the "
                 f"file is in models/{namespace}/: move the file or fix the namespace", mid)
        return
    # A name that differs from the file name is an error, not a warning: status files, the source-path annotation
    # and duplicate detection all assume models/<namespace>/<name>.yaml.
    stem = path.name.rsplit(".", 1)[0]
    if meta["name"] != stem:
        out.fail(shown, doc.line_of(("metadata", "name")), f"metadata.name is {meta['name']!r} but the file is "
                 f"named {path.name}: they must match", mid)
        return
    label = model_id(namespace, str(meta["name"]))
    if len(label) > LABEL_VALUE_MAX:
        # Every object of the model carries it as the gitops.kaito.sh/model label, whose value Kubernetes caps.
        out.fail(shown, doc.line_of(("metadata", "name")), f"namespace and name together ({namespace}.{meta['name']}, "
                 f"{len(label)} characters) must fit a Kubernetes label value of at most {LABEL_VALUE_MAX}: "
                 "shorten the name", mid)
        return
    out.requests.append((kind.parse(doc.data, namespace, shown, config), doc, kind))


def _kind_of(doc: LocatedDoc) -> RequestKind | None:
    """The document's request kind; None for a kind we do not know. A document without a string kind, or not of
    our apiVersion, is held to the default kind's schema, which says what is wrong with it."""
    data = doc.data if isinstance(doc.data, dict) else {}
    named = data.get("kind")
    if not isinstance(named, str) or data.get("apiVersion") != API_VERSION:
        return KINDS[DEFAULT_KIND]
    return KINDS.get(named)


def _resolve_all(out: _Collected, catalog: Catalog, config: RepoConfig) -> list[Resolved]:
    by_id: dict[str, list[tuple[Request, LocatedDoc, RequestKind]]] = defaultdict(list)
    for request, doc, kind in out.requests:
        by_id[request.id].append((request, doc, kind))
        out.discovered.add(request.id)
    models: list[Resolved] = []
    docs: dict[str, tuple[Request, LocatedDoc]] = {}
    for mid, entries in sorted(by_id.items()):
        if len(entries) > 1:
            paths = [r.path for r, _, _ in entries]
            for request, doc, _ in entries:
                others = ", ".join(p for p in paths if p != request.path)
                out.fail(request.path, doc.line_of(("metadata", "name")),
                         f"duplicate model {request.namespace}/{request.name}: also defined in {others}", mid)
            continue
        request, doc, kind = entries[0]
        try:
            models.append(kind.resolve(request, catalog, config))
        except ResolveError as err:
            out.fail(request.path, doc.line_of(err.json_path), err.message, mid)
            continue
        docs[mid] = (request, doc)
    by_model = {m.request.id: m for m in models}
    broken: set[str] = set()
    for link in LINKS:
        for mid, json_path, message in link(by_model):
            request, doc = docs[mid]
            out.fail(request.path, doc.line_of(json_path), message, mid)
            broken.add(mid)
    # A model's adapters that name a TuningJob take that run's output (the links above made sure it is one).
    return [fill_adapters(m, by_model) for m in models if m.request.id not in broken]

