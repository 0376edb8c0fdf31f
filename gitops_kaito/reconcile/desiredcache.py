"""The long-running passes' desired-state cache: the last `Desired` (loaded and rendered), reused while its inputs hold.

Keyed by what rendering reads: the repository content (git trees, or file stats), revision, scope, catalog, version.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git

from gitops_kaito import __version__
from gitops_kaito.core.render import Desired
from gitops_kaito.reconcile.sync import DesiredLoader, load_desired
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.repo.config import Scope
from gitops_kaito.repo.loader import CONFIG_FILE, MODELS_DIR

TEMPLATES_DIR = "templates"
# A file changed this recently may change again within the clock's granularity without its stat changing
# (git calls it "racy"): such a tree is never cached by its stats, it is loaded again next pass.
RACY_S = 2.0


@dataclass(frozen=True)
class DesiredKey:
    """Everything a `Desired` is a function of. `revision` is stamped into every object's annotations, so it is
    part of the key: in a git pass it moves only with a commit outside status/ (status-only commits keep it)."""

    inputs: str  # the repository content load_desired may read (tree shas, or stat fingerprint)
    root: str
    revision: str
    scope: Scope
    catalog: int  # identity of the process's catalog (load_catalog keeps it alive: the id cannot be reused)
    version: str = __version__


def tree_fingerprint(repo: git.Repo, sha: str, exclude: str = "status") -> str:
    """The commit's content outside `exclude` (the status folder), from git's tree objects alone: no file is read.

    Everything else is kept, not only models/, templates/ and gitops-kaito.yaml: a model file may be a symlink to
    a file elsewhere in the repository, and the whole root costs the same few tree lookups."""
    tree = repo.commit(sha).tree
    names = [p for p in exclude.strip("/").split("/") if p]
    if not names:
        return "git:" + tree.hexsha
    parts: list[str] = []
    path = ""
    for name in names:
        entries = {e.name: e for e in tree}
        parts += [f"{path}{n}:{e.hexsha}:{e.mode:o}" for n, e in sorted(entries.items()) if n != name]
        below = entries.get(name)
        if below is None or below.type != "tree":
            break
        tree = below
        path += name + "/"
    return "git:" + _digest(parts)


def stat_fingerprint(repo_dir: Path, now: float | None = None) -> str | None:
    """A local directory's inputs by name, type, size, times and inode (following symlinks, as the loader does),
    or None when one changed too recently to trust its stat. No file is read."""
    root = Path(repo_dir)
    limit = (time.time() if now is None else now) - RACY_S
    rows: list[str] = []
    seen: set[tuple[int, int]] = set()

    def add(path: Path, shown: str) -> bool:
        try:
            st = os.stat(path)
        except OSError:
            rows.append(f"{shown}:missing")
            return True
        if st.st_mtime >= limit:  # (the ctime is in the row: a write that sets an old mtime still shows)
            return False
        rows.append(f"{shown}:{st.st_mode:o}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
        if stat.S_ISDIR(st.st_mode):
            if (st.st_dev, st.st_ino) in seen:  # a symlink back up the tree: listed once
                return True
            seen.add((st.st_dev, st.st_ino))
            try:
                names = sorted(os.listdir(path))
            except OSError as err:
                rows.append(f"{shown}:unlistable:{err.errno}")
                return True
            return all(add(path / n, f"{shown}/{n}") for n in names)
        return True

    if not all(add(root / name, name) for name in (CONFIG_FILE, MODELS_DIR, TEMPLATES_DIR)):
        return None
    return "stat:" + _digest(rows)


def _digest(rows: list[str]) -> str:
    # The key stays small however many files there are.
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


class DesiredCache:
    """Holds exactly one previous `Desired` and its key; `loader()` gives the `sync.run_pass(load=...)` to use.

    A miss drops the held `Desired` before loading (never two at once); a source that failed as a whole (broken
    gitops-kaito.yaml, unlistable models/, broken template override) is not kept, so it is read again next pass.
    """

    def __init__(self, load: DesiredLoader = load_desired,
                 fingerprint: Callable[[Path], str | None] = stat_fingerprint) -> None:
        self._load = load
        self._fingerprint = fingerprint
        self._lock = threading.Lock()
        self._held: tuple[DesiredKey, Desired] | None = None
        self.hits = 0
        self.misses = 0

    def loader(self, inputs: str | None = None) -> DesiredLoader:
        """A loader for one pass. `inputs`: the content fingerprint when the caller knows it (a git pass knows
        the commit it checked out); None: the stats of the directory's inputs (`stat_fingerprint`)."""

        def load(repo_dir: Path, revision: str, scope: Scope | None) -> Desired:
            return self.load(repo_dir, revision, scope, inputs)

        return load

    def load(self, repo_dir: Path, revision: str, scope: Scope | None, inputs: str | None = None) -> Desired:
        fingerprint = inputs if inputs is not None else self._fingerprint(Path(repo_dir))
        key = None if fingerprint is None else DesiredKey(fingerprint, str(Path(repo_dir).resolve()), revision,
                                                          scope or Scope(), id(load_catalog()))
        with self._lock:
            if key is not None and self._held is not None and self._held[0] == key:
                self.hits += 1
                return self._held[1]
            self._held = None
            self.misses += 1
        desired = self._load(Path(repo_dir), revision, scope)
        if key is not None and desired.load.config_ok and desired.templates_ok:
            with self._lock:
                self._held = (key, desired)
        return desired

    def clear(self) -> None:
        with self._lock:
            self._held = None


__all__ = ["DesiredCache", "DesiredKey", "stat_fingerprint", "tree_fingerprint"]
