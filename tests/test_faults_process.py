"""Crash faults: a real `python -m gitops_kaito sync --git-url ...` process is SIGKILLed at each stage of a pass,
then a fresh pass runs; the cluster and the remote repository must end exactly as after an uninterrupted run.

The process stops at a named stage through gitsync's test hook (GITOPS_KAITO_TEST_PAUSE_AT writes a marker file
and blocks); "mid-apply" needs no hook: the emulator holds one Workspace apply while others are already written.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git
import pytest

from gitops_kaito.reconcile.gitsync import PAUSE_AT_ENV, PAUSE_FILE_ENV, GitSyncSettings, run_git_pass
from gitops_kaito.sandbox.apiserver import Fault
from tests.faultkit import KubeWorld, normalize_status, wait_until
from tests.gitfixtures import Developer, Remote, make_remote, model_file

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGES = ("fetched", "mid-apply", "applied", "status-built", "committed")


@dataclass(frozen=True)
class EndState:
    cluster: dict[str, Any]
    files: dict[str, Any]  # the remote's main branch, status files with timestamps blanked
    commits: int
    subjects: tuple[str, ...]


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One remote with the developers' commits; every world copies it, so commit ids are the same everywhere."""
    tmp = tmp_path_factory.mktemp("seed")
    remote = make_remote(tmp)
    dev = Developer(remote, tmp / "dev")
    dev.write("README.md", "models\n")
    dev.commit("init")
    dev.write("models/ml/phi.yaml", model_file("phi") + "  config: {max-model-len: 4096}\n")
    dev.commit("add phi")
    dev.write("models/ml/qwen.yaml", model_file("qwen", "qwen2.5-coder-7b-instruct"))
    dev.write("models/ml/mistral.yaml", model_file("mistral", "mistral-7b-instruct"))
    dev.commit("add qwen and mistral")
    return remote.bare


class World:
    def __init__(self, tmp: Path, seed: Path) -> None:
        self.kw = KubeWorld(tmp)
        shutil.copytree(seed, tmp / "models.git")
        self.remote = Remote(tmp / "models.git")
        self.developer_commits = [ln.split()[0] for ln in self.remote.log()]
        self.settings = GitSyncSettings(url=self.remote.url, cache_dir=tmp / "cache")
        self.tmp = tmp

    def close(self) -> None:
        self.kw.close()

    def run(self, now: str) -> Any:
        return run_git_pass(self.settings, self.kw.kube, now=now)

    def end_state(self) -> EndState:
        repo = git.Repo(self.remote.bare)
        names = repo.git.ls_tree("-r", "--name-only", "main").splitlines()
        files = normalize_status({n: repo.git.show(f"main:{n}") for n in names})
        subjects = tuple(ln.split(" ", 1)[1] for ln in self.remote.log())
        return EndState(self.kw.snapshot(), files, len(subjects), subjects)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, seed: Path) -> EndState:
    """The uninterrupted run: one pass, then a second that must change nothing."""
    world = World(tmp_path_factory.mktemp("reference"), seed)
    try:
        first = world.run("2025-01-01T00:00:00Z")
        assert first.sync.ok and first.writeback is not None and first.writeback.committed
        second = world.run("2025-01-01T00:05:00Z")
        assert second.writeback is not None and not second.writeback.committed
        state = world.end_state()
        assert sorted(state.cluster) == ["ConfigMap/ml/phi-inference-config", "Workspace/ml/mistral",
                                         "Workspace/ml/phi", "Workspace/ml/qwen"]
        assert {"status/STATUS.md", "status/ml/phi.yaml"} <= set(state.files)
        return state
    finally:
        world.close()


@pytest.fixture
def world(tmp_path: Path, seed: Path) -> Iterator[World]:
    w = World(tmp_path, seed)
    yield w
    w.close()


def crash_at(world: World, stage: str) -> None:
    """Start the CLI pass in a subprocess, wait until it sits at `stage`, and SIGKILL it."""
    marker = world.tmp / "paused-at"
    env = {**os.environ, PAUSE_AT_ENV: stage, PAUSE_FILE_ENV: str(marker), "PYTHONPATH": str(REPO_ROOT)}
    gate = None
    if stage == "mid-apply":  # phi's ConfigMap and mistral's and phi's Workspaces are written; qwen's is held
        env.pop(PAUSE_AT_ENV)
        gate = world.kw.server.faults.add(Fault(
            method="PATCH", path_regex="/namespaces/ml/workspaces/qwen$", status=0, delay_s=60.0,
            drop_connection=True, times=1))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gitops_kaito", "sync", "--git-url", world.settings.url,
         "--kubeconfig", str(world.kw.kubeconfig), "--cache-dir", str(world.settings.cache_dir), "-o", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=world.tmp)

    def paused() -> bool:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            raise AssertionError(f"the pass ended (exit {proc.returncode}) before stage {stage}: {err.decode()}")
        return gate.hits >= 1 if gate is not None else marker.exists()

    try:
        wait_until(paused, timeout=30, interval=0.02, what=f"the subprocess to reach stage {stage}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    shutil.rmtree(Path("/tmp") / f"gitops-kaito-{proc.pid}", ignore_errors=True)  # its discovery cache


@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_at_a_stage_then_restart_converges_to_the_uninterrupted_state(
        world: World, reference: EndState, stage: str) -> None:
    """Fault: SIGKILL of a real sync process at `stage` (after fetch; mid-apply with some objects written;
    after apply; status files built but not committed; status committed but not pushed). Checks: what the
    crash left is partial as expected, then one fresh pass (same cache dir) reaches the same cluster objects
    (names, labels, annotations, specs) and the same remote files and commit list as an uninterrupted run,
    no developer commit is lost, and a further pass changes nothing."""
    crash_at(world, stage)
    crashed = world.end_state()
    assert crashed.commits == len(world.developer_commits), "the killed pass pushed a status commit"
    if stage == "fetched":
        assert crashed.cluster == {}
    elif stage == "mid-apply":
        assert {k.split("/")[-1] for k in crashed.cluster} == {"phi-inference-config", "mistral", "phi"}
    else:
        assert crashed.cluster == reference.cluster, "the apply before the crash was incomplete"

    first = world.run("2025-01-01T00:10:00Z")
    assert first.sync.ok, first.sync.outcomes
    state = world.end_state()
    assert state.cluster == reference.cluster, "the cluster differs from the uninterrupted run"
    assert state.files == reference.files, "the remote's files differ from the uninterrupted run"
    assert state.subjects == reference.subjects, "the remote's history differs from the uninterrupted run"
    assert set(world.developer_commits) <= {ln.split()[0] for ln in world.remote.log()}
    writes = world.kw.writes()
    again = world.run("2025-01-01T00:15:00Z")
    assert again.writeback is not None and not again.writeback.committed
    assert world.kw.writes() == writes
