"""`gitops-kaito plan --base REV` and `diff --base REV`: a pull request's plan from git alone, no cluster, no Azure.

Real git repositories (a bare remote and a clone, tests/gitfixtures.py); the cluster and network are made unreachable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from gitops_kaito.cli import main
from gitops_kaito.core.plan import Action, make_plan
from gitops_kaito.model.objects import DesiredObject, Wave
from gitops_kaito.model.ownership import owner_labels
from gitops_kaito.reconcile.offline import as_applied, offline_pools
from gitops_kaito.reconcile.sync import load_desired, plan_policy
from tests.aksfixtures import write_repo as write_aks_repo
from tests.gitfixtures import Developer, Remote

A10, A100, H100 = "Standard_NV36ads_A10_v5", "Standard_NC24ads_A100_v4", "Standard_NC40ads_H100_v5"
# Pinned prices (gitops-kaito.yaml prices:) so the expected costs do not follow the catalog's price table.
PRICE = {A10: 2.0, A100: 4.5, H100: 10.25}
CONFIG = ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nprices:\n"
          + "".join(f"  {sku}: {usd}\n" for sku, usd in PRICE.items()))


def model(name: str, preset: str, sku: str, extra: str = "") -> str:
    return (f"apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\nmetadata:\n  name: {name}\n"
            f"  namespace: ml\nspec:\n  model: {preset}\n  instanceType: {sku}\n{extra}")


BASE = {
    "phi-4-mini": model("phi-4-mini", "phi-4-mini-instruct", A10, "  config: {max-model-len: 4096}\n"),
    "mistral": model("mistral", "mistral-7b-instruct", A10),
    "qwen-coder": model("qwen-coder", "qwen2.5-coder-32b-instruct", H100),
}


@pytest.fixture(autouse=True)
def no_cluster_no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test here runs where the cluster and the network cannot be reached."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the offline plan contacted a cluster, Azure or the network")

    monkeypatch.setattr("gitops_kaito.adapters.kube.Kube.connect", refuse)
    monkeypatch.setattr("gitops_kaito.provision.pools.PoolRunner.prepare", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Developer]:
    """A clone whose origin/main holds the three BASE models (and pinned prices)."""
    bare = tmp_path / "models.git"
    git.Repo.init(bare, bare=True, initial_branch="main")
    d = Developer(Remote(bare), tmp_path / "dev")
    d.write("gitops-kaito.yaml", CONFIG)
    for name, text in BASE.items():
        d.write(f"models/ml/{name}.yaml", text)
    d.commit("three models")
    d.repo.git.fetch("-q", "origin")
    yield d
    d.repo.close()


def edit_like_the_pr(root: Path) -> None:
    """Edit phi-4-mini, move mistral to another SKU (immutable: blocked), add coder-7b, remove qwen-coder."""
    models = root / "models" / "ml"
    (models / "phi-4-mini.yaml").write_text(BASE["phi-4-mini"].replace("4096", "8192"))
    (models / "mistral.yaml").write_text(model("mistral", "mistral-7b-instruct", A100))
    (models / "coder-7b.yaml").write_text(model("coder-7b", "qwen2.5-coder-7b-instruct", A10))
    (models / "qwen-coder.yaml").unlink()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def table(markdown: str) -> dict[str, list[str]]:
    """The model table of a plan comment: model id -> its cells (action, preset, SKU, nodes, GPUs, price)."""
    rows = {}
    for line in markdown.splitlines():
        m = re.match(r"^\| `([^`]+)` \| (.*) \|$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split(" | ")]
    return rows


def untouched(repo: git.Repo) -> tuple[str, str]:
    """What the user would notice changing: the status of the working tree and the bytes of the index."""
    index = Path(repo.git_dir) / "index"
    return repo.git.status("--porcelain"), hashlib.sha256(index.read_bytes()).hexdigest()


def test_markdown_shows_each_model_with_nodes_gpus_price_and_the_cost_change(
        dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    edit_like_the_pr(dev.path)
    before = untouched(dev.repo)

    code, out, err = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main", "--format", "markdown")

    assert code == 1, err
    assert untouched(dev.repo) == before
    rows = table(out)
    assert rows["ml.coder-7b"] == ["🟢 create", "qwen2.5-coder-7b-instruct", A10, "1", "1", "$2.00"]
    assert rows["ml.phi-4-mini"] == ["🟡 update", "phi-4-mini-instruct", A10, "1", "1", "$2.00"]
    assert rows["ml.mistral"] == ["⛔ blocked", "mistral-7b-instruct", A100, "1", "1", "$4.50"]
    assert rows["ml.qwen-coder"][:3] == ["🔴 delete", "qwen2.5-coder-32b-instruct", H100]
    assert "| **Total after this change** | | | | | **3** | **$8.50** |" in out
    # before: 2.00 + 2.00 + 10.25 = 14.25; after: 2.00 + 4.50 + 2.00 = 8.50
    assert "Change in cost per hour: **-$5.75/h** ($14.25/h at `origin/main` -> $8.50/h)" in out
    assert "**1** to create, **1** to update, **0** to replace, **1** to delete, **1** blocked." in out
    assert "immutable field(s) resource.instanceType changed" in out
    assert "--- origin/main/ConfigMap/ml/phi-4-mini-inference-config" in out
    assert "+  inference_config.yaml: \"vllm:\\n  max-model-len: 8192\\n\"" in out


def test_json_and_text_carry_the_cost_on_both_sides(dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    edit_like_the_pr(dev.path)

    code, out, _ = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main", "--format", "json")
    data = json.loads(out)

    assert code == 1
    assert data["offline"]["base"] == "origin/main"
    assert data["offline"]["baseSha"] == dev.repo.git.rev_parse("origin/main")
    assert data["offline"]["costPerHour"] == {"before": 14.25, "after": 8.5, "change": -5.75, "known": True}
    assert {c["object"]: c["action"] for c in data["changes"] if c["action"] != "noop"} == {
        "ConfigMap/ml/phi-4-mini-inference-config": "update", "Workspace/ml/mistral": "blocked",
        "Workspace/ml/coder-7b": "create", "Workspace/ml/qwen-coder": "delete"}

    code, out, _ = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main")
    assert code == 1
    assert "Change in cost per hour: -$5.75/h ($14.25/h at origin/main -> $8.50/h)" in out


def test_no_change_against_the_base_exits_0(dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main")

    assert code == 0
    assert "No changes: the repository renders the same as origin/main." in out
    assert "Change in cost per hour: +$0.00/h ($14.25/h at origin/main -> $14.25/h)" in out


def test_a_broken_file_in_the_head_is_shown_with_file_and_line_and_fails_the_plan(
        dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    text = BASE["mistral"] + "  nodes: many\n"  # line 9
    (dev.path / "models" / "ml" / "mistral.yaml").write_text(text)

    code, out, _ = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main", "--format", "markdown")

    assert code == 1  # nothing changes in the cluster, but invalid input must fail CI
    assert "> `models/ml/mistral.yaml:9: spec.nodes must be an integer" in out
    assert table(out)["ml.mistral"][0] == "❌ invalid"
    assert "to delete" not in out  # the broken model keeps what it has: nothing of it is pruned
    assert "Change in cost per hour: **+$0.00/h** ($12.25/h at `origin/main` -> $12.25/h)" in out


def test_head_revision_is_read_from_git_not_the_working_tree(
        dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    edit_like_the_pr(dev.path)
    dev.repo.git.add("-A")
    dev.commit("the pull request", push=False)
    for f in (dev.path / "models" / "ml").glob("*.yaml"):  # later local edits must not count
        f.unlink()

    code, out, _ = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main", "--head", "HEAD",
                       "--format", "json")

    assert code == 1
    assert {m["model"]: m["action"] for m in json.loads(out)["models"]} == {
        "ml.coder-7b": "create", "ml.mistral": "blocked", "ml.phi-4-mini": "update", "ml.qwen-coder": "delete"}


def test_model_repository_in_a_subfolder_of_the_git_repository(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = git.Repo.init(tmp_path / "mono", initial_branch="main")
    sub = tmp_path / "mono" / "deploy" / "kaito"
    (sub / "models" / "ml").mkdir(parents=True)
    (sub / "gitops-kaito.yaml").write_text(CONFIG)
    (sub / "models" / "ml" / "mistral.yaml").write_text(BASE["mistral"])
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "one model", env={"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
                                                 "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"})
    (sub / "models" / "ml" / "phi-4-mini.yaml").write_text(BASE["phi-4-mini"])

    code, out, _ = run(capsys, "plan", "--repo", str(sub), "--base", "HEAD", "--format", "json")

    assert code == 1
    assert {m["model"]: m["action"] for m in json.loads(out)["models"]} == {
        "ml.mistral": "no change", "ml.phi-4-mini": "create"}
    repo.close()


def test_removing_every_model_is_held_by_the_prune_guard(dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    for f in (dev.path / "models" / "ml").glob("*.yaml"):
        f.unlink()

    code, out, _ = run(capsys, "plan", "--repo", str(dev.path), "--base", "origin/main", "--format", "json")
    data = json.loads(out)

    assert code == 1
    assert "refusing to delete 3 of 3 managed models" in data["pruneRefused"]
    assert {c["action"] for c in data["changes"]} == {"blocked"}


def test_diff_against_the_base(dev: Developer, capsys: pytest.CaptureFixture[str]) -> None:
    edit_like_the_pr(dev.path)

    code, out, _ = run(capsys, "diff", "--repo", str(dev.path), "--base", "origin/main")

    assert code == 1
    assert "--- origin/main/Workspace/ml/mistral\n+++ desired/Workspace/ml/mistral" in out
    assert f"-  instanceType: {A10}\n+  instanceType: {A100}" in out
    assert "- delete Workspace/ml/qwen-coder (ml.qwen-coder): model removed from the repository" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--base", "origin/no-such-branch"], "unknown revision 'origin/no-such-branch'"),
    (["--base=--all"], "invalid revision '--all'"),
    (["--head", "HEAD"], "--head needs --base"),
    (["--base", "origin/main", "--server-dry-run"], "cannot be combined with --base"),
])
def test_usage_errors_exit_2(dev: Developer, capsys: pytest.CaptureFixture[str], argv: list[str],
                             message: str) -> None:
    code, out, err = run(capsys, "plan", "--repo", str(dev.path), *argv)

    assert code == 2
    assert message in err
    assert out == ""


def test_outside_a_git_repository_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "plain" / "models").mkdir(parents=True)

    code, _, err = run(capsys, "plan", "--repo", str(tmp_path / "plain"), "--base", "main")

    assert code == 2
    assert "not inside a git repository" in err


def test_aks_pools_are_planned_between_the_two_renderings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "aks"
    repo = git.Repo.init(root, initial_branch="main")
    write_aks_repo(root, ["a", "b"])
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "two pools", env={"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@b",
                                                 "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@b"})
    write_aks_repo(root, ["b", "c"])
    b = root / "models" / "ml" / "b.yaml"
    b.write_text(b.read_text().replace(A100, A10))

    code, out, _ = run(capsys, "plan", "--repo", str(root), "--base", "main", "--format", "json")
    data = json.loads(out)

    assert code == 1
    pools = {p["model"]: (p["action"], p["vmSize"], p["nodes"]) for p in data["nodePools"]}
    assert pools == {"ml.a": ("delete", A100, "1"), "ml.b": ("replace", f"{A100} -> {A10}", "1"),
                     "ml.c": ("create", A100, "1")}
    made = {(r["model"], r["sku"]) for r in data["newNodes"]}
    assert made == {("ml.b", A10), ("ml.c", A100)}
    repo.close()

    # The model table must not say "no change" for b: its Workspace is the same, but its pool is replaced.
    code, out, _ = run(capsys, "plan", "--repo", str(root), "--base", "main", "--format", "markdown")
    b_row = next(line for line in out.splitlines() if line.startswith("| `ml.b`"))  # the model table comes first
    assert "replace" in b_row, b_row


def test_an_aks_model_whose_pool_cannot_be_built_is_one_error_and_the_other_pools_are_planned(tmp_path: Path) -> None:
    """The same isolation as the sync pass (pools.PoolRunner.prepare): one error naming the model's file, its
    pool at the base kept, every other model's pool planned."""
    base_root, head_root = tmp_path / "base", tmp_path / "head"
    write_aks_repo(base_root, ["a", "b"])
    write_aks_repo(head_root, ["a", "b", "c"])
    base = load_desired(base_root, "main@sha1:" + "1" * 40)
    head = load_desired(head_root, "local")
    # No VM size for b: the loader refuses such a request, so the resolved model is made so here.
    head = dataclasses.replace(head, rendered=tuple(
        dataclasses.replace(r, model=dataclasses.replace(r.model, sku=None)) if r.model.request.name == "b" else r
        for r in head.rendered))

    changes, pool_models, errors = offline_pools(base, head, plan_policy(head), "main@sha1:" + "1" * 40)

    assert errors == ["models/ml/b.yaml: model ml.b has no instance type; aks provisioning needs one"]
    assert {c.model_id: c.action for c in changes} == {"ml.a": "noop", "ml.c": "create"}  # b's pool is not deleted
    assert pool_models == {"ml.a", "ml.b"}


def test_base_objects_stand_in_as_applied_by_us() -> None:
    """Fields we applied at the base and no longer want show as removals (managedFields), and the objects prune."""
    labels = owner_labels("ml", "m")
    base: dict[str, Any] = {"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "m", "namespace": "ml", "labels": labels,
                                         "annotations": {"team": "x"}},
                            "data": {"a": "1"}}
    head = {**base, "metadata": {"name": "m", "namespace": "ml", "labels": labels}}
    live = [as_applied(DesiredObject(base, "ml.m", Wave.CONFIG))]

    same = make_plan([DesiredObject(base, "ml.m", Wave.CONFIG)], live)
    edited = make_plan([DesiredObject(head, "ml.m", Wave.CONFIG)], live)
    gone = make_plan([], live, None)

    assert [c.action for c in same.changes] == [Action.NOOP]
    assert [(c.action, [op["op"] for op in c.patch]) for c in edited.changes] == [(Action.UPDATE, ["remove"])]
    assert not edited.changes[0].drift
    assert gone.prune_refused  # the only managed model removed: the guard counts it as ours
    assert base["metadata"].get("managedFields") is None  # the rendering itself is not altered
