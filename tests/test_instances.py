"""Several gitops-kaito instances on one cluster: the instance label, scoped LISTs and prune, blocked adoption of
another instance's objects, the upgrade path of unlabelled objects, path scoping, agent-pool tags and status folders.

Cluster parts run on a private bare emulator (they count requests), two repositories or two path sets syncing into it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import git
import pytest
from kubernetes import client

from gitops_kaito.adapters.history import revisions_applied
from gitops_kaito.adapters.kube import ApiRetry, Kube
from gitops_kaito.cli import main
from gitops_kaito.core.plan import Action, make_plan
from gitops_kaito.core.status import other_instances_files
from gitops_kaito.model.objects import MANAGED_KINDS
from gitops_kaito.model.ownership import (
    DEFAULT_INSTANCE,
    LABEL_INSTANCE,
    LABEL_MODEL,
    instance_of,
    instance_selector,
    owned_by,
    owner_labels,
)
from gitops_kaito.provision import agentpool as ap
from gitops_kaito.reconcile.sync import load_desired, plan_policy, run_pass
from gitops_kaito.repo.config import API_VERSION, KIND, RepoConfig, Scope, StatusSettings, load_config
from gitops_kaito.repo.loader import load_repository
from gitops_kaito.repo.yamlsource import SourceError
from gitops_kaito.service.settings import SettingsError, resolve_settings
from tests.fixtures_cluster import ClusterTarget, private_emulator, wait_until

HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"
REV1, REV2 = "main@sha1:" + "1" * 40, "main@sha1:" + "2" * 40
UA = "gitops-kaito/"


def write_repo(root: Path, models: dict[str, str], config: str = "", ns: str = "ml") -> Path:
    folder = root / "models" / ns
    folder.mkdir(parents=True, exist_ok=True)
    for name, preset in models.items():
        (folder / f"{name}.yaml").write_text(f"{HEADER}metadata:\n  name: {name}\nspec:\n  model: {preset}\n")
    if config:
        (root / "gitops-kaito.yaml").write_text(f"apiVersion: {API_VERSION}\nkind: {KIND}\n{config}")
    return root


# ---------------------------------------------------------------------------------------------- pure parts


def test_ownership_helpers_treat_a_missing_instance_label_as_default() -> None:
    labels = owner_labels("ml", "phi", "team-a")
    assert labels[LABEL_INSTANCE] == "team-a"
    assert owner_labels("ml", "phi")[LABEL_INSTANCE] == DEFAULT_INSTANCE
    legacy = {k: v for k, v in labels.items() if k != LABEL_INSTANCE}
    assert instance_of(legacy) == DEFAULT_INSTANCE and owned_by(legacy) and not owned_by(legacy, "team-a")
    assert instance_of(labels) == "team-a" and owned_by(labels, "team-a") and not owned_by(labels)
    assert instance_of({"app": "x"}) == "" and not owned_by({"app": "x"})
    assert instance_selector() == "gitops.kaito.sh/managed-by=gitops-kaito"
    assert instance_selector("team-a") == ("gitops.kaito.sh/managed-by=gitops-kaito,"
                                           "gitops.kaito.sh/instance=team-a")


def test_config_instance_and_paths(tmp_path: Path) -> None:
    write_repo(tmp_path, {}, "instance: team-a\npaths: [./models/team-a/, models/shared]\n")
    config = load_config(tmp_path)
    assert (config.instance, config.paths) == ("team-a", ("models/team-a", "models/shared"))
    assert config.status_dir == "status/team-a"
    assert RepoConfig().status_dir == "status" and RepoConfig().instance == DEFAULT_INSTANCE
    custom = RepoConfig(status=StatusSettings(path="ops/status"), instance="b")
    assert custom.status_dir == "ops/status/b"
    assert Scope(instance="cli", paths=("models/x",)).apply(config).instance == "cli"
    assert Scope().apply(config) == config

    for bad, where in (("instance: Team_A\n", "instance"), ("paths: [templates/x]\n", "paths"),
                       ("paths: [models/../x]\n", "paths")):
        write_repo(tmp_path, {}, bad)
        with pytest.raises(SourceError) as err:
            load_config(tmp_path)
        assert where in str(err.value) and err.value.line == 3


def test_loader_reads_only_the_paths_and_a_missing_path_blocks_prune(tmp_path: Path) -> None:
    write_repo(tmp_path, {"phi": "phi-4-mini-instruct"}, ns="team-a")
    write_repo(tmp_path, {"qwen": "qwen2.5-coder-7b-instruct"}, ns="team-b")
    (tmp_path / "models" / "team-b" / "broken.yaml").write_text("not: [valid\n")
    load = load_repository(tmp_path, scope=Scope(instance="a", paths=("models/team-a",)))
    assert [m.request.id for m in load.models] == ["team-a.phi"]
    assert load.errors == () and load.config_ok  # team-b's broken file is another instance's business
    assert load.config.instance == "a"

    typo = load_repository(tmp_path, scope=Scope(paths=("models/tema-a",)))
    assert typo.models == () and not typo.config_ok  # read as "cannot tell", never as "no models"
    assert "does not exist" in typo.errors[0].message

    everything = load_repository(tmp_path)
    assert {m.request.id for m in everything.models} == {"team-a.phi", "team-b.qwen"}


def test_a_broken_config_keeps_its_instance(tmp_path: Path) -> None:
    write_repo(tmp_path, {"phi": "phi-4-mini-instruct"}, "instance: team-a\nprune: {enabled: maybe}\n")
    load = load_repository(tmp_path)
    assert not load.config_ok and load.config.instance == "team-a"
    desired = load_desired(tmp_path, REV1)
    (ws,) = [o.manifest for o in desired.objects if o.ref.kind == "Workspace"]
    assert ws["metadata"]["labels"][LABEL_INSTANCE] == "team-a"


def test_every_rendered_object_carries_the_instance(tmp_path: Path) -> None:
    write_repo(tmp_path, {}, "instance: team-a\ndefaults: {provisioning: nodeclaim}\n")
    (tmp_path / "models" / "ml" / "phi.yaml").write_text(
        f"{HEADER}metadata:\n  name: phi\nspec:\n  model: phi-4-mini-instruct\n  config: {{max-model-len: 4096}}\n")
    desired = load_desired(tmp_path, REV1)
    kinds = sorted(o.ref.kind for o in desired.objects)
    assert kinds == ["ConfigMap", "NodeClaim", "Workspace"]
    assert all(o.manifest["metadata"]["labels"][LABEL_INSTANCE] == "team-a" for o in desired.objects)


def _live(desired: Any, instance: str | None) -> list[dict[str, Any]]:
    """The desired objects as if applied by `instance` (None: before instances existed, no label)."""
    out = []
    for o in desired.objects:
        meta = dict(o.manifest["metadata"])
        labels = {k: v for k, v in meta["labels"].items() if k != LABEL_INSTANCE}
        if instance is not None:
            labels[LABEL_INSTANCE] = instance
        out.append({**o.manifest, "metadata": {**meta, "labels": labels}})
    return out


def test_plan_blocks_another_instances_object_and_never_prunes_it(tmp_path: Path) -> None:
    write_repo(tmp_path, {"phi": "phi-4-mini-instruct"}, "instance: team-b\n")
    desired = load_desired(tmp_path, REV1)
    policy = plan_policy(desired)
    assert policy.instance == "team-b"
    theirs = _live(desired, "team-a")
    stray = {**theirs[0], "metadata": {**theirs[0]["metadata"], "name": "other"}}
    plan = make_plan(desired.objects, [*theirs, stray], policy)
    (change,) = plan.changes  # the stray object of team-a is not ours to prune
    assert change.action == Action.BLOCKED
    assert change.reason.startswith("blocked: owned by gitops-kaito instance 'team-a'")
    assert plan.managed_models == frozenset()


def test_plan_of_the_default_instance_owns_unlabelled_objects_without_rewriting_them(tmp_path: Path) -> None:
    write_repo(tmp_path, {"phi": "phi-4-mini-instruct", "qwen": "qwen2.5-coder-7b-instruct"})
    desired = load_desired(tmp_path, REV1)
    legacy = _live(desired, None)
    plan = make_plan(desired.objects, legacy, plan_policy(desired))
    assert not plan.has_changes, [(str(c.ref), c.patch) for c in plan.pending]
    # A named instance sees the same objects as someone else's.
    write_repo(tmp_path, {}, "instance: team-a\n")
    named = load_desired(tmp_path, REV1)
    blocked = make_plan(named.objects, legacy, plan_policy(named))
    assert {c.action for c in blocked.changes} == {Action.BLOCKED}
    assert all("instance 'default'" in c.reason for c in blocked.changes)


# ---------------------------------------------------------------------------------------------- agent pools


class _Sku:
    name, gpu_count, gpu_model, gpu_memory_per_gpu_gib = "Standard_NC24ads_A100_v4", 1, "NVIDIA A100", 80.0


class _Request:
    def __init__(self, name: str) -> None:
        self.namespace, self.name, self.suspend = "ml", name, False


class _Model:
    def __init__(self, name: str) -> None:
        self.request = _Request(name)
        self.sku, self.nodes, self.disk_gib, self.label_selector = _Sku(), 1, 256, (("apps", name),)
        self.price_per_hour, self.provisioning = 3.67, "aks"


def _as_live(pool: ap.DesiredAgentPool, drop_instance: bool = False) -> ap.LivePool:
    tags = tuple(t for t in pool.tags if not (drop_instance and t[0] == ap.TAG_INSTANCE))
    labels = tuple(lb for lb in pool.labels if not (drop_instance and lb[0] == LABEL_INSTANCE))
    return ap.LivePool(pool.name, pool.vm_size, pool.count, labels, pool.taints, tags, pool.os_disk_gb)


def test_agent_pools_are_tagged_and_planned_per_instance() -> None:
    mine = ap.desired_pool(_Model("phi"), "team-b")
    assert dict(mine.tags)[ap.TAG_INSTANCE] == "team-b" and dict(mine.labels)[LABEL_INSTANCE] == "team-b"
    theirs = _as_live(ap.desired_pool(_Model("qwen"), "team-a"))
    same_name = _as_live(ap.desired_pool(_Model("phi"), "team-a"))
    assert theirs.instance == "team-a"

    changes = ap.plan_pools([mine], [theirs, same_name], instance="team-b")
    assert [(c.pool, c.action) for c in changes] == [(mine.name, ap.CONFLICT)]  # theirs: not pruned
    assert "owned by gitops-kaito instance 'team-a'" in changes[0].reasons[0]
    # team-a itself prunes its removed pool, and only that one.
    assert [(c.pool, c.action) for c in ap.plan_pools([], [theirs], instance="team-a")] == [(theirs.name, ap.DELETE)]
    assert ap.plan_pools([], [theirs], instance="team-b") == ()


def test_an_untagged_pool_belongs_to_the_default_instance_without_an_update() -> None:
    want = ap.desired_pool(_Model("phi"))
    legacy = _as_live(want, drop_instance=True)
    assert legacy.instance == DEFAULT_INSTANCE
    assert [c.action for c in ap.plan_pools([want], [legacy])] == [ap.NOOP]
    assert [c.action for c in ap.plan_pools([], [legacy])] == [ap.DELETE]
    assert ap.plan_pools([], [legacy], instance="team-a") == ()


# ---------------------------------------------------------------------------------------------- status and settings


def test_the_default_instance_keeps_named_instances_status_files() -> None:
    previous = {"STATUS.md": "x", "ml/phi.yaml": "x", "team-a/STATUS.md": "a", "team-a/ml/qwen.yaml": "a"}
    assert other_instances_files(previous) == {"team-a/STATUS.md": "a", "team-a/ml/qwen.yaml": "a"}


def test_run_settings_instance_paths_and_lease_name() -> None:
    s = resolve_settings({}, env={"GITOPS_KAITO_INSTANCE": "team-a", "GITOPS_KAITO_PATHS": "models/a/, models/b"})
    assert (s.instance, s.paths, s.lease_name) == ("team-a", ("models/a", "models/b"), "gitops-kaito-leader-team-a")
    assert s.scope() == Scope(instance="team-a", paths=("models/a", "models/b"))
    explicit = resolve_settings({"instance": "team-a", "lease_name": "mine"}, env={})
    assert explicit.lease_name == "mine"
    plain = resolve_settings({}, env={})
    assert (plain.lease_name, plain.scope()) == ("gitops-kaito-leader", Scope())
    with pytest.raises(SettingsError, match="DNS-1123"):
        resolve_settings({"instance": "Team A"}, env={})


def test_status_and_history_cli_read_the_instance_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = git.Repo.init(tmp_path)
    doc = "model: ml/{n}\nstate: Ready\nrevision: main@sha1:{r}\nsku: Standard_NC24ads_A100_v4\nnodes: 1\n"
    for folder, name, rev in (("status", "phi", "1" * 40), ("status/team-a", "qwen", "2" * 40)):
        path = tmp_path / folder / "ml" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc.format(n=name, r=rev))
        (tmp_path / folder / "STATUS.md").write_text(name)
        repo.index.add([str(path), str(tmp_path / folder / "STATUS.md")])
        repo.index.commit(f"status: {name}\n\nGitops-Kaito-Revision: main@sha1:{rev}\n")
    assert main(["status", "--repo", str(tmp_path), "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert "ml/phi" in out and "ml/qwen" not in out
    assert main(["status", "--repo", str(tmp_path), "--instance", "team-a", "-o", "json"]) == 0
    out = capsys.readouterr().out
    assert "ml/qwen" in out and "ml/phi" not in out

    assert [r.revision for r in revisions_applied(repo, "HEAD", "status")] == ["main@sha1:" + "1" * 40]
    assert [r.revision for r in revisions_applied(repo, "HEAD", "status/team-a")] == ["main@sha1:" + "2" * 40]


# ---------------------------------------------------------------------------------------------- on a cluster


class Cluster:
    """A private emulator, a reconciler client and an admin client; requests counted by arrival time."""

    def __init__(self, target: ClusterTarget) -> None:
        assert target.emulator is not None
        self.target = target
        self.server = target.emulator
        self.kube = Kube.connect(target.kubeconfig, retry=ApiRetry(base_delay_s=0.01, max_delay_s=0.05))
        self.admin = target.api_client("test-admin/1.0")
        self.since = 0.0

    def close(self) -> None:
        self.kube.close()
        self.admin.close()

    def workspaces(self) -> dict[str, dict[str, str]]:
        items = client.CustomObjectsApi(self.admin).list_namespaced_custom_object(
            "kaito.sh", "v1beta1", "ml", "workspaces")["items"]
        return {i["metadata"]["name"]: i["metadata"].get("labels") or {} for i in items
                if not i["metadata"].get("deletionTimestamp")}

    def strip_instance_labels(self) -> None:
        """Make every object look like it was made before instances existed."""
        custom = client.CustomObjectsApi(self.admin)
        patch = {"metadata": {"labels": {LABEL_INSTANCE: None}}}
        for name in self.workspaces():
            custom.patch_namespaced_custom_object("kaito.sh", "v1beta1", "ml", "workspaces", name, patch)
        core = client.CoreV1Api(self.admin)
        for cm in core.list_namespaced_config_map("ml", label_selector=LABEL_MODEL).items:
            core.patch_namespaced_config_map(cm.metadata.name, "ml", patch)

    def mark(self) -> None:
        self.since = time.time()

    def requests(self, verbs: tuple[str, ...]) -> list[Any]:
        return [e for e in self.server.request_log.select(user_agent_prefix=UA, verbs=verbs) if e.time >= self.since]

    def lists(self) -> list[Any]:
        wait_until(lambda: len(self.requests(("list",))) >= len(MANAGED_KINDS), timeout=10,
                   what="the pass's LISTs logged")
        return self.requests(("list",))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with private_emulator(tmp_path / "emulator") as target:
        c = Cluster(target)
        yield c
        c.close()


pytestmark_cluster = pytest.mark.cluster


@pytestmark_cluster
def test_two_instances_from_two_repositories_never_prune_each_other(cluster: Cluster, tmp_path: Path) -> None:
    a = write_repo(tmp_path / "a", {"phi": "phi-4-mini-instruct", "mistral": "mistral-7b-instruct"},
                   "instance: team-a\n")
    b = write_repo(tmp_path / "b", {"qwen": "qwen2.5-coder-7b-instruct"}, "instance: team-b\n")
    assert run_pass(a, cluster.kube, revision=REV1).created == 2
    second = run_pass(b, cluster.kube, revision=REV1)
    assert (second.created, second.pruned) == (1, 0)
    assert {n: labels[LABEL_INSTANCE] for n, labels in cluster.workspaces().items()} == {
        "phi": "team-a", "mistral": "team-a", "qwen": "team-b"}

    cluster.mark()
    again = run_pass(a, cluster.kube, revision=REV2)
    assert not again.plan.has_changes and again.plan.managed_models == {"ml.phi", "ml.mistral"}
    lists = cluster.lists()
    assert len(lists) == len(MANAGED_KINDS) and all("instance%3Dteam-a" in e.query or "instance=team-a" in unquote(e.query)
                                   for e in lists if not e.path.endswith(("nodeclaims", "machines", "workspaces")))
    assert cluster.requests(("get",)) == []  # nothing desired is missing: no adoption lookups

    (b / "models" / "ml" / "qwen.yaml").unlink()  # team-b removes its only model
    pruned = run_pass(b, cluster.kube, revision=REV2, allow_mass_prune=True)
    assert pruned.pruned == 1
    wait_until(lambda: set(cluster.workspaces()) == {"phi", "mistral"}, what="only qwen pruned")


@pytestmark_cluster
def test_another_instances_model_is_blocked_not_adopted(cluster: Cluster, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    a = write_repo(tmp_path / "a", {"phi": "phi-4-mini-instruct"}, "instance: team-a\n")
    b = write_repo(tmp_path / "b", {"phi": "phi-3.5-mini-instruct"})  # instance from --instance / the env
    run_pass(a, cluster.kube, revision=REV1)
    before = cluster.workspaces()["phi"]

    result = run_pass(b, cluster.kube, revision=REV1, scope=Scope(instance="team-b"))
    outcome = result.outcome("ml.phi")
    assert outcome is not None and outcome.state == "Blocked"
    assert "owned by gitops-kaito instance 'team-a'" in outcome.message
    assert result.created == result.updated == result.replaced == 0
    assert cluster.workspaces()["phi"] == before

    code = main(["plan", "--repo", str(b), "--instance", "team-b", *cluster.target.cli_args()])
    out = capsys.readouterr().out
    assert code == 1 and "blocked: owned by gitops-kaito instance 'team-a'" in out


@pytestmark_cluster
def test_unlabelled_objects_stay_with_the_default_instance(cluster: Cluster, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    repo = write_repo(tmp_path / "repo", {"phi": "phi-4-mini-instruct", "qwen": "qwen2.5-coder-7b-instruct",
                                          "mistral": "mistral-7b-instruct"})
    (repo / "models" / "ml" / "phi.yaml").write_text(
        f"{HEADER}metadata:\n  name: phi\nspec:\n  model: phi-4-mini-instruct\n  config: {{max-model-len: 4096}}\n")
    assert run_pass(repo, cluster.kube, revision=REV1).created == 4
    cluster.strip_instance_labels()  # as an install from before this change left them
    assert all(LABEL_INSTANCE not in labels for labels in cluster.workspaces().values())

    other = write_repo(tmp_path / "other", {"llama": "phi-3.5-mini-instruct"}, "instance: team-a\n")
    assert run_pass(other, cluster.kube, revision=REV1).pruned == 0  # not team-a's to prune
    cluster.mark()
    upgraded = run_pass(repo, cluster.kube, revision=REV2)
    assert not upgraded.plan.has_changes, [(str(c.ref), c.reason) for c in upgraded.plan.pending]
    assert upgraded.plan.managed_models == {"ml.phi", "ml.qwen", "ml.mistral"}
    assert len(cluster.lists()) == len(MANAGED_KINDS)  # one LIST per kind, team-a's objects filtered out client-side
    assert cluster.requests(("get",)) == []

    (repo / "models" / "ml" / "mistral.yaml").unlink()
    (repo / "models" / "ml" / "qwen.yaml").write_text(
        f"{HEADER}metadata:\n  name: qwen\n  annotations: {{team: x}}\nspec:\n  model: qwen2.5-coder-7b-instruct\n")
    monkeypatch.setenv("GITOPS_KAITO_INSTANCE", "default")
    assert main(["sync", "--repo", str(repo), "--revision", REV2, *cluster.target.cli_args()]) == 0
    wait_until(lambda: set(cluster.workspaces()) == {"phi", "qwen", "llama"}, what="mistral pruned")
    labels = cluster.workspaces()
    assert labels["qwen"][LABEL_INSTANCE] == DEFAULT_INSTANCE  # labelled with its next real change
    assert LABEL_INSTANCE not in labels["phi"] and labels["llama"][LABEL_INSTANCE] == "team-a"


@pytestmark_cluster
def test_two_instances_split_one_repository_by_path(cluster: Cluster, tmp_path: Path) -> None:
    repo = write_repo(tmp_path / "repo", {"phi": "phi-4-mini-instruct", "qwen": "qwen2.5-coder-7b-instruct"})
    a = Scope(instance="a", paths=("models/ml/phi.yaml",))
    b = Scope(instance="b", paths=("models/ml/qwen.yaml",))
    assert run_pass(repo, cluster.kube, revision=REV1, scope=a).created == 1
    assert run_pass(repo, cluster.kube, revision=REV1, scope=b).created == 1
    assert {n: labels[LABEL_INSTANCE] for n, labels in cluster.workspaces().items()} == {"phi": "a", "qwen": "b"}
    assert not run_pass(repo, cluster.kube, revision=REV2, scope=a).plan.has_changes
    assert not run_pass(repo, cluster.kube, revision=REV2, scope=b).plan.has_changes

    assert main(["sync", "--repo", str(repo), "--instance", "a", "--path", "models/ml/phi.yaml",
                 "--path", "models/ml/qwen.yaml", "--revision", REV2, *cluster.target.cli_args()]) == 1
    assert cluster.workspaces()["qwen"][LABEL_INSTANCE] == "b"  # claimed by both: blocked for a, still b's


@pytestmark_cluster
def test_two_instances_write_status_into_one_repository_without_fighting(cluster: Cluster, tmp_path: Path) -> None:
    from gitops_kaito.core.status import EndpointCheck
    from gitops_kaito.reconcile.gitsync import GitSyncSettings, run_git_pass
    from tests.gitfixtures import Developer, make_remote, model_file

    remote = make_remote(tmp_path)
    dev = Developer(remote, tmp_path / "dev")
    dev.write("models/ml/phi.yaml", model_file("phi"))
    dev.write("models/ml/qwen.yaml", model_file("qwen", "qwen2.5-coder-7b-instruct"))
    dev.commit("two models")
    base = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache-default",
                           scope=Scope(paths=("models/ml/phi.yaml",)))
    team = GitSyncSettings(url=remote.url, cache_dir=tmp_path / "cache-team",
                           scope=Scope(instance="team-a", paths=("models/ml/qwen.yaml",)))

    def served(api: Any, ns: str, name: str) -> EndpointCheck:
        return EndpointCheck(True, name)

    first = run_git_pass(base, cluster.kube, now="2026-01-01T00:00:00Z", endpoint_checker=served)
    applied = first.revision
    team_pass = run_git_pass(team, cluster.kube, now="2026-01-01T00:00:01Z", endpoint_checker=served)
    assert team_pass.revision == applied  # the default instance's status commit is not a desired-state change
    assert team_pass.writeback is not None and team_pass.writeback.committed
    again = run_git_pass(base, cluster.kube, now="2026-01-01T00:00:02Z", endpoint_checker=served)
    assert again.revision == applied and again.writeback is not None and not again.writeback.committed

    files = set(git.Repo(remote.bare).git.ls_tree("-r", "--name-only", "main", "--", "status").splitlines())
    assert files == {"status/STATUS.md", "status/ml/phi.yaml", "status/team-a/STATUS.md",
                     "status/team-a/ml/qwen.yaml"}
    assert "qwen" not in remote.show("status/STATUS.md") and "qwen" in remote.show("status/team-a/STATUS.md")
