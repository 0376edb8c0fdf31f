"""Input faults: broken model requests next to good ones, a repository where every file is broken, an empty
repository, and 5,000 files with one bad one. Each sync goes through the real client against the emulator;
the checks are always the same: good models applied, bad ones reported with their file, nothing pruned.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gitops_kaito.model.states import Outcome
from gitops_kaito.reconcile.sync import plan_repository, run_pass
from gitops_kaito.repo.config import API_VERSION as CONFIG_API_VERSION
from gitops_kaito.repo.config import KIND as CONFIG_KIND
from tests.faultkit import KubeWorld, model_file

pytestmark = [pytest.mark.cluster, pytest.mark.emulator_only]

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.yaml").is_file())
REV = "main@sha1:" + "a" * 40
# Good models named like the corpus' broken files, so each broken file shadows a model that is live.
GOOD = {"phi": "phi-4-mini-instruct", "llama": "phi-3.5-mini-instruct", "falcon": "mistral-7b-instruct",
        "qwen": "qwen2.5-coder-7b-instruct"}


@pytest.fixture
def world(tmp_path: Path) -> Iterator[KubeWorld]:
    with KubeWorld(tmp_path) as w:
        write_good(w)
        first = run_pass(w.repo, w.kube, revision=REV)
        assert first.ok and w.workspaces() == set(GOOD)
        yield w


def write_good(world: KubeWorld) -> None:
    models = world.repo / "models"
    shutil.rmtree(models, ignore_errors=True)
    (models / "ml").mkdir(parents=True)
    for name, preset in GOOD.items():
        world.model(name, preset)


def expected_paths(case: str) -> set[str]:
    doc = yaml.safe_load((CORPUS / case / "expect.yaml").read_text())
    return {e["path"] for e in doc.get("errors") or [doc]}


def overlay(world: KubeWorld, case: str) -> None:
    for src in (CORPUS / case).rglob("*"):
        if src.is_file() and src.name != "expect.yaml":
            dest = world.repo / src.relative_to(CORPUS / case)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


def test_every_corpus_case_over_live_models_is_reported_and_prunes_nothing(world: KubeWorld) -> None:
    """Fault: each broken request of the corpus (tests/corpus/, 39 defects, plus a file over the size limit and
    a symlink escaping the repository) is dropped into the live repository, most of them replacing the file of
    a model that is running. Checks, per case: the pass reports an error naming the broken file, every model's
    Workspace is still there and unchanged, the pass makes no write, and the good models stay Unchanged."""
    before = world.snapshot()
    problems: list[str] = []
    generated = {"huge-file": "models/ml/phi.yaml", "symlink-escape": "models/ml/phi.yaml"}
    for case in [*CASES, *generated]:
        write_good(world)
        if case == "huge-file":
            (world.repo / generated[case]).write_text(model_file("phi") + "#" * 300_000 + "\n")
            paths = {generated[case]}
        elif case == "symlink-escape":
            target = world.repo / generated[case]
            target.unlink()
            target.symlink_to("/etc/passwd")
            paths = {generated[case]}
        else:
            overlay(world, case)
            paths = expected_paths(case)
        mark = time.time()
        result = run_pass(world.repo, world.kube, revision=REV)
        reported = {p for p in paths if any(e.startswith(f"{p}:") for e in result.errors)}
        if reported != paths:
            problems.append(f"{case}: {sorted(paths - reported)} not reported in {result.errors}")
        if result.pruned or world.writes(since=mark):
            problems.append(f"{case}: the pass wrote or pruned ({result.summary()})")
        if world.snapshot() != before:
            problems.append(f"{case}: the live objects changed")
        shadowed = {o.model_id for o in result.outcomes if o.state == Outcome.INVALID}
        for o in result.outcomes:
            if o.model_id.startswith("ml.") and o.model_id[3:] in GOOD and o.model_id not in shadowed \
                    and o.state != "Unchanged":
                problems.append(f"{case}: good model {o.model_id} is {o.state}: {o.message}")
    write_good(world)
    assert len(CASES) >= 39, "the corpus was not found"
    assert not problems, "\n".join(problems)
    assert run_pass(world.repo, world.kube, revision=REV).ok


BROKEN = {
    "phi": "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata: {name: phi\n",  # bad YAML
    "llama": model_file("llama", "no-such-model"),
    "falcon": model_file("falcon").replace("spec:\n  model: phi-4-mini-instruct\n", ""),
    "qwen": "- just\n- a list\n",
}


def test_every_file_broken_prunes_nothing(world: KubeWorld) -> None:
    """Fault: every model file in the repository is broken at once (bad YAML, unknown preset, no spec, a list).
    Checks: every model is reported Invalid with its own file, not one object is pruned or written, and
    fixing the files brings the pass back to Unchanged."""
    mark = time.time()
    for name, text in BROKEN.items():
        (world.repo / "models" / "ml" / f"{name}.yaml").write_text(text)
    result = run_pass(world.repo, world.kube, revision=REV)
    assert {o.model_id: o.state for o in result.outcomes} == {f"ml.{n}": Outcome.INVALID for n in GOOD}
    assert {e.split(":")[0] for e in result.errors} == {f"models/ml/{n}.yaml" for n in GOOD}
    assert result.pruned == 0 and world.writes(since=mark) == 0
    assert world.missing(GOOD) == []
    write_good(world)
    assert {o.state for o in run_pass(world.repo, world.kube, revision=REV).outcomes} == {"Unchanged"}


def test_broken_config_file_prunes_nothing(world: KubeWorld) -> None:
    """Fault: gitops-kaito.yaml itself is broken while one model file is removed. Checks: the config error is
    reported with its file, and the removed model is NOT pruned (a broken config must never widen a prune)."""
    (world.repo / "gitops-kaito.yaml").write_text(f"apiVersion: {CONFIG_API_VERSION}\nkind: {CONFIG_KIND}\n"
                                                  "prune: {maxShare: [oops\n")
    (world.repo / "models" / "ml" / "qwen.yaml").unlink()
    result = run_pass(world.repo, world.kube, revision=REV)
    assert any(e.startswith("gitops-kaito.yaml") for e in result.errors), result.errors
    assert result.pruned == 0 and world.missing(GOOD) == []


@pytest.mark.parametrize("emptiness", ["models-removed", "models-empty", "only-a-readme"])
def test_empty_repository_prunes_nothing_unless_allowed(world: KubeWorld, emptiness: str) -> None:
    """Fault: the repository loses every model (models/ removed, models/ emptied, or nothing but a README).
    Checks: the prune guard refuses (an error says so) and every Workspace survives; only an explicit
    allow-mass-prune deletes them all."""
    shutil.rmtree(world.repo / "models")
    if emptiness == "models-empty":
        (world.repo / "models").mkdir()
    elif emptiness == "only-a-readme":
        (world.repo / "README.md").write_text("nothing here\n")
    mark = time.time()
    result = run_pass(world.repo, world.kube, revision=REV)
    assert result.plan.prune_refused and result.plan.prune_refused in result.errors
    assert result.pruned == 0 and world.writes(since=mark) == 0 and world.missing(GOOD) == []
    allowed = run_pass(world.repo, world.kube, revision=REV, allow_mass_prune=True)
    assert allowed.pruned == len(GOOD) and world.workspaces() == set()


def test_5000_files_with_one_bad_one(tmp_path: Path) -> None:
    """Fault: one broken file among 5,000 model requests. Checks (render + plan against the emulator's live
    state, no apply): exactly one error naming that file, 4,999 models rendered and planned for creation,
    nothing to delete."""
    with KubeWorld(tmp_path) as world:
        folder = world.repo / "models" / "ml"
        for i in range(5000):
            (folder / f"m{i:04d}.yaml").write_text(model_file(f"m{i:04d}"))
        (folder / "m2500.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"
                                           "metadata: {name: m2500, namespace: ml}\nspec: {model: 7}\n")
        desired, plan = plan_repository(world.repo, world.kube, revision=REV)
        assert len(desired.errors) == 1 and desired.errors[0].startswith("models/ml/m2500.yaml:"), desired.errors
        assert len(desired.rendered) == 4999
        counts = plan.counts()
        assert counts["create"] == len(desired.objects) and counts["delete"] == 0
        assert {c.model_id for c in plan.changes} == {f"ml.m{i:04d}" for i in range(5000) if i != 2500}
