"""Files under models/ that cannot be read as regular files: each is an error naming its path, no model that could
live there is pruned, reading never blocks, and `validate` and `sync` report the same paths.

Symlinks, FIFOs and unreadable modes cannot live in git as plain files, so these cases are built here.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gitops_kaito.cli import main
from gitops_kaito.reconcile.sync import run_pass
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.resolve import RepoLoad
from tests.faultkit import KubeWorld, model_file

REV = "main@sha1:" + "b" * 40
GOOD = ("phi", "qwen")
# Prune is allowed without the share guard here: only the loader's sparing keeps the live models.
NO_GUARD = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nprune: {enabled: true, maxShare: 1, allowAll: true}\n"
AS_ROOT = os.geteuid() == 0


def _replace(path: Path) -> None:
    path.unlink()


def dangling(repo: Path) -> None:
    _replace(repo / "models/ml/phi.yaml")
    (repo / "models/ml/phi.yaml").symlink_to("nowhere.yaml")


def symlink_loop(repo: Path) -> None:
    _replace(repo / "models/ml/phi.yaml")
    (repo / "models/ml/phi.yaml").symlink_to("phi.yaml")


def symlink_to_folder(repo: Path) -> None:
    (repo / "elsewhere").mkdir()
    (repo / "elsewhere" / "phi.yaml").write_text(model_file("phi"))
    _replace(repo / "models/ml/phi.yaml")
    (repo / "models/ml/phi.yaml").symlink_to("../../elsewhere")


def symlink_outside(repo: Path) -> None:
    _replace(repo / "models/ml/phi.yaml")
    (repo / "models/ml/phi.yaml").symlink_to("/etc/hostname")


def fifo(repo: Path) -> None:
    _replace(repo / "models/ml/phi.yaml")
    os.mkfifo(repo / "models/ml/phi.yaml")


def device(repo: Path) -> None:
    _replace(repo / "models/ml/phi.yaml")
    (repo / "models/ml/phi.yaml").symlink_to("/dev/zero")


def folder_named_like_a_file(repo: Path) -> None:
    _replace(repo / "models/ml/phi.yaml")
    (repo / "models/ml/phi.yaml").mkdir()


def wrong_case(repo: Path) -> None:
    (repo / "models/ml/phi.yaml").rename(repo / "models/ml/phi.Yml")


def unreadable(repo: Path) -> None:
    (repo / "models/ml/phi.yaml").chmod(0)


def namespace_symlink(repo: Path) -> None:
    shutil.move(repo / "models/ml", repo / "ml-real")
    (repo / "models/ml").symlink_to("../ml-real")


def namespace_dangling(repo: Path) -> None:
    shutil.rmtree(repo / "models/ml")
    (repo / "models/ml").symlink_to("../gone")


def namespace_unreadable(repo: Path) -> None:
    (repo / "models/ml").chmod(0)


def namespace_hidden(repo: Path) -> None:
    (repo / "models/ml").rename(repo / "models/.ml")


def namespace_refused(repo: Path) -> None:
    (repo / "models/ml").rename(repo / "models/ML")


def namespace_refused_unnamed(repo: Path) -> None:
    namespace_refused(repo)
    for path in (repo / "models/ML").iterdir():  # files that do not say their namespace: any model could be theirs
        path.write_text(path.read_text().replace("  namespace: ml\n", ""))


def nested_folder_symlink(repo: Path) -> None:
    (repo / "other").mkdir()
    (repo / "models/ml/sub").symlink_to("../../other")
    _replace(repo / "models/ml/phi.yaml")


# case -> (how to break the repository, the path the error names, its line, what is spared)
# spared: "ml.phi" (the model the name says), "ml" (every model of the namespace), "*" (every model: prune is off)
CASES: dict[str, tuple[Callable[[Path], None], str, int | None, str]] = {
    "dangling-symlink": (dangling, "models/ml/phi.yaml", 1, "ml.phi"),
    "symlink-loop": (symlink_loop, "models/ml/phi.yaml", 1, "ml.phi"),
    "symlink-to-folder": (symlink_to_folder, "models/ml/phi.yaml", 1, "ml.phi"),
    "symlink-outside": (symlink_outside, "models/ml/phi.yaml", 1, "ml.phi"),
    "symlink-to-device": (device, "models/ml/phi.yaml", 1, "ml.phi"),
    "fifo": (fifo, "models/ml/phi.yaml", 1, "ml.phi"),
    "folder-named-like-a-file": (folder_named_like_a_file, "models/ml/phi.yaml", 1, "ml.phi"),
    "wrong-case-extension": (wrong_case, "models/ml/phi.Yml", 1, "ml.phi"),
    "unreadable-file": (unreadable, "models/ml/phi.yaml", 1, "ml.phi"),
    "namespace-folder-symlink": (namespace_symlink, "models/ml", None, "ml"),
    "namespace-folder-dangling": (namespace_dangling, "models/ml", None, "ml"),
    "namespace-folder-unreadable": (namespace_unreadable, "models/ml", None, "ml"),
    "namespace-folder-hidden": (namespace_hidden, "models/.ml", None, "*"),
    "namespace-folder-refused": (namespace_refused, "models/ML/phi.yaml", 1, "ml.phi"),
    "namespace-folder-refused-unnamed": (namespace_refused_unnamed, "models/ML/phi.yaml", 1, "*"),
    "nested-folder-symlink": (nested_folder_symlink, "models/ml/sub", None, "ml"),
}
NEEDS_NON_ROOT = {"unreadable-file", "namespace-folder-unreadable"}


def good_repo(root: Path) -> Path:
    (root / "models" / "ml").mkdir(parents=True)
    for name in GOOD:
        (root / "models" / "ml" / f"{name}.yaml").write_text(model_file(name))
    (root / "gitops-kaito.yaml").write_text(NO_GUARD)
    return root


def loaded_within(root: Path, timeout_s: float = 30.0) -> RepoLoad:
    """load_repository on a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    box: list[RepoLoad] = []
    worker = threading.Thread(target=lambda: box.append(load_repository(root)), daemon=True)
    worker.start()
    worker.join(timeout_s)
    assert not worker.is_alive(), "loading the repository blocked"
    return box[0]


def spared(load: RepoLoad, mid: str) -> bool:
    return not load.config_ok or mid in load.discovered_ids or mid.partition(".")[0] in load.kept_namespaces


@pytest.fixture
def restore_modes(tmp_path: Path) -> Iterator[None]:
    yield
    for path in tmp_path.rglob("*"):  # chmod 0 folders would stop pytest's cleanup
        if not path.is_symlink():
            path.chmod(0o755)


@pytest.mark.parametrize("case", sorted(CASES))
def test_an_unreadable_path_is_an_error_and_spares_what_could_live_there(case: str, tmp_path: Path,
                                                                          restore_modes: None) -> None:
    """Each way a path under models/ can fail to be a regular readable file inside the repository: the load gives
    an error naming that path (line 1 for a file), returns without blocking, and spares the model the file name
    says, every model of the namespace folder, or (when nothing can be told) every model."""
    if case in NEEDS_NON_ROOT and AS_ROOT:
        pytest.skip("root reads files whatever their mode")
    breaker, path, line, what = CASES[case]
    root = good_repo(tmp_path / "repo")
    breaker(root)
    load = loaded_within(root)
    assert (path, line) in {(e.path, e.line) for e in load.errors}, load.errors
    if what == "*":
        assert not load.config_ok, "nothing may be pruned while the folder is there"
    elif "." in what:
        assert what in load.discovered_ids and load.config_ok
    else:
        assert what in load.kept_namespaces and load.config_ok
    assert spared(load, "ml.phi")
    if what != "ml.phi":
        assert spared(load, "ml.qwen")


@pytest.mark.cluster
@pytest.mark.emulator_only
def test_sync_and_validate_agree_and_nothing_is_pruned(tmp_path: Path, restore_modes: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Fault: over live models (prune guard lifted), each case is made in the repository. Checks per case: the
    pass reports the path, prunes and writes nothing, every Workspace is still there; `validate -o json` exits 1
    and names exactly the same paths as the pass."""
    with KubeWorld(tmp_path) as world:
        for name in GOOD:
            world.model(name)
        (world.repo / "gitops-kaito.yaml").write_text(NO_GUARD)
        assert run_pass(world.repo, world.kube, revision=REV).ok and world.workspaces() == set(GOOD)
        problems: list[str] = []
        for case, (breaker, path, _line, _what) in sorted(CASES.items()):
            if case in NEEDS_NON_ROOT and AS_ROOT:
                continue
            fresh = tmp_path / f"case-{case}"
            good_repo(fresh)
            breaker(fresh)
            mark = time.time()
            result = run_pass(fresh, world.kube, revision=REV)
            synced = {e.split(":", 1)[0] for e in result.errors}
            if path not in synced:
                problems.append(f"{case}: sync did not name {path}: {result.errors}")
            if result.pruned or world.writes(since=mark) or world.missing(GOOD):
                problems.append(f"{case}: the pass wrote or pruned ({result.summary()})")
            capsys.readouterr()
            code = main(["validate", "--repo", str(fresh), "-o", "json"])
            validated = {e["path"] for e in json.loads(capsys.readouterr().out)["errors"]}
            if code != 1 or validated != synced:
                problems.append(f"{case}: validate exit {code} named {sorted(validated)}, sync {sorted(synced)}")
            for p in fresh.rglob("*"):
                if not p.is_symlink():
                    p.chmod(0o755)
        assert not problems, "\n".join(problems)


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling", "outside"])
def test_a_template_override_that_is_no_regular_file_is_refused_not_skipped(kind: str, tmp_path: Path) -> None:
    """templates/<name> that is a FIFO, a folder, a dangling symlink or a link out of the repository: an error
    naming it (which holds every model back and prunes nothing, as any broken override), never a silent fallback
    to the built-in template, and never a read that blocks."""
    from gitops_kaito.core import render

    root = good_repo(tmp_path / "repo")
    override = root / "templates" / render.TEMPLATE_WORKSPACE_NAP
    override.parent.mkdir()
    {"fifo": lambda: os.mkfifo(override), "folder": override.mkdir,
     "dangling": lambda: override.symlink_to("gone.yaml"), "outside": lambda: override.symlink_to("/etc/hostname"),
     }[kind]()
    box: list[BaseException] = []

    def load() -> None:
        try:
            render.load_templates(render.repo_templates_dir(root))
        except render.TemplateError as err:
            box.append(err)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "reading the template override blocked"
    assert box and str(box[0]).startswith("templates/workspace-v1beta1.yaml"), box


@pytest.mark.parametrize("kind", ["too-large", "fifo", "dangling", "outside"])
def test_a_config_that_cannot_be_read_is_refused_once_and_never_parsed(kind: str, tmp_path: Path) -> None:
    """gitops-kaito.yaml over the size limit (its `instance:` line readable at the top), a FIFO, a dangling
    symlink, a link out of the repository: one error naming the file, nothing pruned, and the file is never parsed
    by any other path (the named instance in the too-large file is not recovered from it), nor read blocking."""
    root = good_repo(tmp_path / "repo")
    config = root / "gitops-kaito.yaml"
    config.unlink()
    if kind == "too-large":
        config.write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\ninstance: team-a\n" + "# pad\n" * 20_000)
    elif kind == "fifo":
        os.mkfifo(config)
    elif kind == "dangling":
        config.symlink_to("gone.yaml")
    else:
        config.symlink_to("/etc/hostname")
    load = loaded_within(root)
    errors = [e for e in load.errors if e.path == "gitops-kaito.yaml"]
    assert len(errors) == 1, load.errors
    assert not load.config_ok and load.config.instance == "default"
