"""The desired-state cache: a pass on the same desired inputs neither reads nor renders a model file.

Unit tests of the keys (git trees, file stats, revision, scope) and the daemon's git pass end to end (GitPass).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import git
import pytest

from gitops_kaito.core.render import Desired
from gitops_kaito.reconcile.desiredcache import DesiredCache, stat_fingerprint, tree_fingerprint
from gitops_kaito.reconcile.gitsync import run_git_pass
from gitops_kaito.reconcile.sync import load_desired
from gitops_kaito.repo.config import Scope
from gitops_kaito.service.daemon import PassContext
from gitops_kaito.service.metrics import Metrics
from gitops_kaito.service.service import GitPass, PassReport
from tests.gitfixtures import DEV_ENV, model_file
from tests.test_gitsync import World, served, world  # noqa: F401 - the fixture is used by name

REV = "main@sha1:" + "a" * 40


class CountingLoader:
    """load_desired, counting the repositories it reads: each call reads every model file."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, repo_dir: Path, revision: str, scope: Scope | None) -> Desired:
        self.calls.append(Path(repo_dir))
        return load_desired(repo_dir, revision, scope)


def write_repo(root: Path, models: dict[str, str], config: str = "") -> Path:
    for rel, text in models.items():
        path = root / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if config:
        (root / "gitops-kaito.yaml").write_text(config)
    return root


def age(root: Path, seconds: float = 60.0) -> None:
    """Make every file look written `seconds` ago, as a repository not being edited is (no racy stat)."""
    stamp = time.time() - seconds
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.utime(Path(folder) / name, (stamp, stamp))
    os.utime(root, (stamp, stamp))


# -- the cache and its key ------------------------------------------------------------------------------------------

def test_same_key_loads_once_and_returns_the_same_desired(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"ml/phi.yaml": model_file("phi")})
    counting = CountingLoader()
    cache = DesiredCache(load=counting)
    first = cache.load(repo, REV, None, inputs="tree-1")
    second = cache.load(repo, REV, None, inputs="tree-1")
    assert len(counting.calls) == 1 and second is first
    assert (cache.hits, cache.misses) == (1, 1)
    assert [o.ref.name for o in first.objects] == ["phi"]


@pytest.mark.parametrize("change", ["inputs", "revision", "instance", "paths", "root"])
def test_every_input_of_the_key_invalidates(tmp_path: Path, change: str) -> None:
    repo = write_repo(tmp_path / "repo", {"ml/phi.yaml": model_file("phi"), "team/llm.yaml": model_file(
        "llm", namespace="team")})
    other_root = write_repo(tmp_path / "other", {"ml/phi.yaml": model_file("phi")})
    counting = CountingLoader()
    cache = DesiredCache(load=counting)
    base = {"repo_dir": repo, "revision": REV, "scope": Scope(), "inputs": "tree-1"}
    changed = {**base, **{
        "inputs": {"inputs": "tree-2"},
        "revision": {"revision": "main@sha1:" + "b" * 40},
        "instance": {"scope": Scope(instance="team-a")},
        "paths": {"scope": Scope(paths=("models/team",))},
        "root": {"repo_dir": other_root},
    }[change]}
    before = cache.load(**base)  # type: ignore[arg-type]
    after = cache.load(**changed)  # type: ignore[arg-type]
    assert len(counting.calls) == 2 and after is not before
    if change == "instance":
        assert after.load.config.instance == "team-a"
        assert all(o.manifest["metadata"]["labels"]["gitops.kaito.sh/instance"] == "team-a" for o in after.objects)
    if change == "paths":
        assert [r.model.request.id for r in after.rendered] == ["team.llm"]
    if change == "revision":
        assert {o.manifest["metadata"]["annotations"]["gitops.kaito.sh/revision"] for o in after.objects} == {
            "main@sha1:" + "b" * 40}
    # Exactly one Desired is held: going back to the first key loads again.
    cache.load(**base)  # type: ignore[arg-type]
    assert len(counting.calls) == 3


def test_a_broken_source_is_never_kept(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"ml/phi.yaml": model_file("phi")}, config="prune: [unclosed\n")
    counting = CountingLoader()
    cache = DesiredCache(load=counting)
    first = cache.load(repo, REV, None, inputs="tree-1")
    assert not first.load.config_ok
    cache.load(repo, REV, None, inputs="tree-1")
    assert len(counting.calls) == 2


def test_an_invalid_model_file_is_cached_like_any_other(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"ml/phi.yaml": model_file("phi"), "ml/bad.yaml": "spec: [\n"})
    counting = CountingLoader()
    cache = DesiredCache(load=counting)
    first = cache.load(repo, REV, None, inputs="tree-1")
    assert first.invalid and first.load.config_ok
    assert cache.load(repo, REV, None, inputs="tree-1") is first and len(counting.calls) == 1


# -- git trees -------------------------------------------------------------------------------------------------------

def commit(repo: git.Repo, files: dict[str, str], message: str) -> str:
    root = Path(repo.working_tree_dir or ".")
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
        repo.git.add(rel)
    with repo.git.custom_environment(**DEV_ENV):
        repo.git.commit("-q", "-m", message)
    return repo.head.commit.hexsha


def test_tree_fingerprint_ignores_status_commits_only(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path / "r", initial_branch="main")
    base = commit(repo, {"models/ml/phi.yaml": model_file("phi"), "templates/x.yaml": "a: 1\n",
                         "gitops-kaito.yaml": "prune: {enabled: true}\n", "README.md": "x\n"}, "init")
    status = commit(repo, {"status/ml/phi.yaml": "state: Ready\n", "status/team-a/STATUS.md": "#\n"}, "status")
    assert tree_fingerprint(repo, status) == tree_fingerprint(repo, base)
    for rel in ("models/ml/phi.yaml", "templates/x.yaml", "gitops-kaito.yaml", "README.md", "shared/base.yaml"):
        before = repo.head.commit.hexsha
        after = commit(repo, {rel: f"changed: {rel}\n"}, f"edit {rel}")
        assert tree_fingerprint(repo, after) != tree_fingerprint(repo, before), rel


def test_tree_fingerprint_of_a_nested_status_folder(tmp_path: Path) -> None:
    repo = git.Repo.init(tmp_path / "r", initial_branch="main")
    base = commit(repo, {"models/ml/phi.yaml": model_file("phi"), "ops/notes.md": "n\n"}, "init")
    status = commit(repo, {"ops/status/ml/phi.yaml": "state: Ready\n"}, "status")
    notes = commit(repo, {"ops/notes.md": "changed\n"}, "notes")
    assert tree_fingerprint(repo, status, "ops/status") == tree_fingerprint(repo, base, "ops/status")
    assert tree_fingerprint(repo, notes, "ops/status") != tree_fingerprint(repo, status, "ops/status")
    # With the default status folder, ops/status is content like any other.
    assert tree_fingerprint(repo, status) != tree_fingerprint(repo, base)


# -- file stats (sync --wait on a local directory) ------------------------------------------------------------------

def test_stat_fingerprint_follows_edits_and_refuses_racy_files(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"ml/phi.yaml": model_file("phi")}, config="prune: {enabled: true}\n")
    age(repo)
    first = stat_fingerprint(repo)
    assert first is not None and stat_fingerprint(repo) == first
    (repo / "README.md").write_text("not an input\n")
    assert stat_fingerprint(repo) == first
    (repo / "models" / "ml" / "phi.yaml").write_text(model_file("phi", "phi-4"))
    assert stat_fingerprint(repo) is None  # just written: its stat may not show the next edit
    age(repo)
    edited = stat_fingerprint(repo)
    assert edited is not None and edited != first
    (repo / "models" / "ml" / "llm.yaml").write_text(model_file("llm"))
    age(repo)
    assert stat_fingerprint(repo) not in (None, first, edited)


def test_the_stat_keyed_cache_reloads_after_an_edit(tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"ml/phi.yaml": model_file("phi")})
    age(repo)
    counting = CountingLoader()
    cache = DesiredCache(load=counting)
    load = cache.loader()
    first = load(repo, REV, None)
    assert load(repo, REV, None) is first and len(counting.calls) == 1
    (repo / "models" / "ml" / "llm.yaml").write_text(model_file("llm"))
    racy = load(repo, REV, None)  # a fresh edit is loaded, and not kept while its stat is racy
    assert {r.model.request.id for r in racy.rendered} == {"ml.llm", "ml.phi"}
    load(repo, REV, None)
    assert len(counting.calls) == 3
    age(repo)
    settled = load(repo, REV, None)
    assert load(repo, REV, None) is settled and len(counting.calls) == 4


# -- the daemon's git pass -------------------------------------------------------------------------------------------

pass_ctx = PassContext("interval", lambda: True)


def daemon_pass(world: World, cache: DesiredCache) -> PassReport:  # noqa: F811
    report = GitPass(world.settings, world.kube, Metrics(), desired_cache=cache)(pass_ctx)
    assert report.result is not None, report.summary
    return report


@pytest.mark.cluster
def test_daemon_passes_reuse_the_desired_state_until_models_change(world: World) -> None:  # noqa: F811
    ns = world.ns
    world.dev.write(f"models/{ns}/phi.yaml", world.model("phi"))
    world.dev.commit("phi")
    counting = CountingLoader()
    cache = DesiredCache(load=counting)

    first = daemon_pass(world, cache).result
    assert first is not None and first.sync.created >= 1 and first.sync.desired is not None
    assert first.writeback is not None and first.writeback.committed  # a status-only commit
    assert len(counting.calls) == 1

    # The status commit the first pass pushed changes nothing desired: no model file is read again.
    second = daemon_pass(world, cache).result
    assert second is not None and second.sync.desired is first.sync.desired
    assert len(counting.calls) == 1 and cache.hits == 1
    assert second.checkout.sha != first.checkout.sha and second.revision == first.revision
    assert not second.sync.plan.has_changes
    # Applying did not alter what is held: it equals a fresh render of the same commit.
    fresh = load_desired(second.checkout.path, second.revision, world.settings.scope)
    assert [o.manifest for o in fresh.objects] == [o.manifest for o in first.sync.desired.objects]

    # A person's status-only commit is no desired change either.
    world.dev.pull()
    world.dev.write("status/NOTE.md", "hand-written\n")
    world.dev.commit("status note")
    third = daemon_pass(world, cache).result
    assert third is not None and len(counting.calls) == 1
    assert third.checkout.sha == world.remote.sha() and third.revision == first.revision

    # A commit to models/ is: loaded, rendered and applied.
    world.dev.pull()
    world.dev.write(f"models/{ns}/llm.yaml", world.model("llm"))
    world.dev.commit("llm")
    fourth = daemon_pass(world, cache).result
    assert fourth is not None and len(counting.calls) == 2
    assert fourth.revision != first.revision
    assert fourth.sync.created >= 1 and world.workspace("llm") is not None

    # Other paths (or another instance) over the same commit and the same cache: loaded again.
    scoped_settings = dataclasses.replace(world.settings, scope=Scope(paths=(f"models/{ns}/llm.yaml",)))
    scoped = run_git_pass(scoped_settings, world.kube, dry_run=True, cache=cache, endpoint_checker=served)
    assert len(counting.calls) == 3 and scoped.sync.desired is not None
    assert [r.model.request.id for r in scoped.sync.desired.rendered] == [f"{ns}.llm"]
