"""Tests for render.py and templates/: per-mode objects, ownership, injection safety, overrides, determinism.

Models are built by hand from the real catalog so these tests do not depend on the loader's rules.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops_kaito.core import render
from gitops_kaito.model import ownership
from gitops_kaito.model.objects import Wave
from gitops_kaito.repo.catalog import load_catalog
from gitops_kaito.repo.config import RepoConfig
from gitops_kaito.repo.modelrequest import Adapter, ModelRequest
from gitops_kaito.repo.resolve import ResolvedModel

REVISION = "main@sha1:0123456789abcdef0123456789abcdef01234567"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
GPU_PROVISIONER_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")


def make_request(name: str = "phi", namespace: str = "ml", **changes: Any) -> ModelRequest:
    base = ModelRequest(
        namespace=namespace, name=name, model="phi-4-mini-instruct", instance_type=None, nodes=None,
        runtime="vllm", provisioning="kaito", node_selector=(), config=(), adapters=(),
        model_access_secret=None, suspend=False, annotations=(), path=f"models/{namespace}/{name}.yaml",
    )
    return dataclasses.replace(base, **changes)


def make_model(preset_name: str = "phi-4-mini-instruct", provisioning: str = "kaito", *,
               sku_name: str | None = None, nodes: int | None = None, name: str | None = None,
               namespace: str = "ml", label_selector: tuple[tuple[str, str], ...] | None = None,
               **request_changes: Any) -> ResolvedModel:
    """A ResolvedModel for a catalog preset on its default (cheapest fitting Azure) SKU, or sku_name."""
    catalog = load_catalog()
    preset = catalog.preset(preset_name)
    if sku_name is None:
        fit = catalog.choose_sku(preset, clouds=("azure",))
    else:
        sku = catalog.sku(sku_name)
        assert sku is not None
        fit = catalog.fit(preset, sku)
    name = name or workload_name(preset.name)
    request = make_request(name=name, namespace=namespace, model=preset.name, provisioning=provisioning,
                           instance_type=fit.sku.name, **request_changes)
    count = nodes or fit.nodes
    return ResolvedModel(
        request=request, preset=preset, sku=fit.sku, fit=fit, nodes=count,
        gpus=count * fit.gpus_per_node, provisioning=provisioning, price_per_hour=fit.price_per_hour,
        disk_gib=preset.disk_gib,
        label_selector=label_selector if label_selector is not None else (("apps", name),),
    )


def workload_name(preset_name: str) -> str:
    """A DNS-1123 label for a preset name (HF ids contain '/' and capitals)."""
    return re.sub(r"[^a-z0-9]+", "-", preset_name.lower()).strip("-")[:63].rstrip("-")


def config(**ref: str) -> RepoConfig:
    node_class_ref = {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default", **ref}
    return RepoConfig(node_class_ref=node_class_ref)


def kinds(rendered: render.RenderedModel) -> list[str]:
    return [o.manifest["kind"] for o in rendered.objects]


def dump(rendered: render.RenderedModel) -> str:
    return yaml.safe_dump_all([o.manifest for o in rendered.objects], sort_keys=False)


def all_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *all_strings(v)]]
    if isinstance(node, list):
        return [s for item in node for s in all_strings(item)]
    return [node] if isinstance(node, str) else []


def all_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in all_keys(v)}
    if isinstance(node, list):
        return {k for item in node for k in all_keys(item)}
    return set()


# ------------------------------------------------------------------------------------------------
# Per-mode shapes
# ------------------------------------------------------------------------------------------------

def test_kaito_mode_renders_a_nap_workspace_like_kaitos_example() -> None:
    model = make_model(sku_name="Standard_NC24ads_A100_v4", name="workspace-phi-4-mini",
                       label_selector=(("apps", "phi-4"),))
    rendered = render.render_model(model, config(), REVISION)
    assert kinds(rendered) == ["Workspace"]
    ws = rendered.objects[0].manifest
    assert rendered.objects[0].wave is Wave.WORKLOAD
    assert rendered.objects[0].model_id == "ml.workspace-phi-4-mini"
    assert ws["apiVersion"] == "kaito.sh/v1beta1"
    assert "spec" not in ws
    assert ws["resource"] == {"instanceType": "Standard_NC24ads_A100_v4",
                              "labelSelector": {"matchLabels": {"apps": "phi-4"}}}
    assert ws["inference"] == {"preset": {"name": "phi-4-mini-instruct"}}
    assert ws["metadata"]["name"] == "workspace-phi-4-mini"
    assert ws["metadata"]["namespace"] == "ml"
    assert ws["metadata"]["labels"] == ownership.owner_labels("ml", "workspace-phi-4-mini")
    assert ws["metadata"]["annotations"] == {
        ownership.ANNOTATION_REVISION: REVISION,
        ownership.ANNOTATION_SOURCE_PATH: "models/ml/workspace-phi-4-mini.yaml",
    }


def test_config_secret_and_adapters_reach_the_workspace_and_a_configmap_comes_first() -> None:
    model = make_model(
        preset_name="llama-3.3-70b-instruct", name="llama",
        config=(("gpu-memory-utilization", 0.95), ("max-model-len", 16384)),
        model_access_secret="hf-token",
        adapters=(Adapter("sql", "registry.example/sql:1"), Adapter("chat", "registry.example/chat:2", "0.5")),
        annotations=(("kaito.sh/enablelb", "True"),),
    )
    rendered = render.render_model(model, config(), REVISION)
    assert kinds(rendered) == ["ConfigMap", "Workspace"]
    cm, ws = (o.manifest for o in rendered.objects)
    assert rendered.objects[0].wave is Wave.CONFIG
    assert cm["metadata"]["name"] == "llama-inference-config"
    assert cm["metadata"]["namespace"] == "ml"
    assert cm["metadata"]["labels"] == ownership.owner_labels("ml", "llama")
    assert set(cm["data"]) == {"inference_config.yaml"}
    assert yaml.safe_load(cm["data"]["inference_config.yaml"]) == {
        "vllm": {"gpu-memory-utilization": 0.95, "max-model-len": 16384}}
    inference = ws["inference"]
    assert inference["config"] == "llama-inference-config"
    assert inference["preset"] == {"name": "llama-3.3-70b-instruct",
                                   "presetOptions": {"modelAccessSecret": "hf-token"}}
    assert inference["adapters"] == [
        {"source": {"name": "sql", "image": "registry.example/sql:1"}},
        {"source": {"name": "chat", "image": "registry.example/chat:2"}, "strength": "0.5"},
    ]
    assert ws["metadata"]["annotations"]["kaito.sh/enablelb"] == "True"
    assert "count" not in ws["resource"]  # vLLM: KAITO estimates the node count itself


def test_transformers_runtime_sets_the_runtime_annotation_and_count() -> None:
    model = make_model(preset_name="phi-4-mini-instruct", runtime="transformers", nodes=2)
    ws = render.render_model(model, config(), REVISION).objects[-1].manifest
    assert ws["metadata"]["annotations"][render.ANNOTATION_RUNTIME] == "transformers"
    assert ws["resource"]["count"] == 2
    vllm = render.render_model(make_model(), config(), REVISION).objects[-1].manifest
    assert render.ANNOTATION_RUNTIME not in vllm["metadata"]["annotations"]


def test_nodeclaim_mode_renders_one_nodeclaim_per_node_then_a_byo_workspace() -> None:
    model = make_model(preset_name="llama-3.3-70b-instruct", provisioning="nodeclaim",
                       sku_name="Standard_NC48ads_A100_v4", nodes=2, name="llama",
                       label_selector=(("apps", "llama"), ("team", "ml")))
    rendered = render.render_model(model, config(), REVISION)
    assert kinds(rendered) == ["NodeClaim", "NodeClaim", "Workspace"]
    assert [o.wave for o in rendered.objects] == [Wave.NODES, Wave.NODES, Wave.WORKLOAD]
    ws = rendered.objects[-1].manifest
    assert ws["apiVersion"] == "kaito.sh/v1beta1"
    assert "instanceType" not in ws["resource"]
    assert ws["resource"]["labelSelector"] == {"matchLabels": {"apps": "llama", "team": "ml"}}
    names = [o.manifest["metadata"]["name"] for o in rendered.objects[:2]]
    assert len(set(names)) == 2
    for obj in rendered.objects[:2]:
        nc = obj.manifest
        assert nc["apiVersion"] == "karpenter.sh/v1"
        assert "namespace" not in nc["metadata"]
        assert GPU_PROVISIONER_NAME.match(nc["metadata"]["name"]), "gpu-provisioner names the agent pool after it"
        labels = nc["metadata"]["labels"]
        assert labels["apps"] == "llama" and labels["team"] == "ml"  # the Workspace selector matches the node
        assert labels["nvidia.com/gpu.count"] == "2"
        assert labels["nvidia.com/gpu.memory"] == str(80 * 1024)  # MiB per GPU
        assert LABEL_VALUE.match(labels["nvidia.com/gpu.product"])
        assert not render.RESERVED_LABEL_KEYS & set(labels)
        assert all(LABEL_VALUE.match(v) for v in labels.values())
        for k, v in ownership.owner_labels("ml", "llama").items():
            assert labels[k] == v
        spec = nc["spec"]
        assert spec["nodeClassRef"] == {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}
        assert spec["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
        assert spec["requirements"] == [
            {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["Standard_NC48ads_A100_v4"]},
            {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
            {"key": "karpenter.azure.com/sku-name", "operator": "In", "values": ["Standard_NC48ads_A100_v4"]},
        ]
        assert spec["resources"] == {"requests": {"storage": f"{model.disk_gib}Gi"}}
        assert nc["metadata"]["annotations"][ownership.ANNOTATION_REVISION] == REVISION


def test_nodeclaim_names_are_stable_unique_per_model_and_readable_off_gpu_provisioner() -> None:
    long_name = "a" * 57  # "other." + the name: the longest that fits the model label (at most 63)
    model = make_model(provisioning="nodeclaim", nodes=3, name=long_name)
    aks_ref = config(group="karpenter.azure.com", kind="AKSNodeClass", name="image-family-ubuntu")
    names = render.node_object_names(model, aks_ref, "NodeClaim")
    assert names == render.node_object_names(model, aks_ref, "NodeClaim")
    assert len(set(names)) == 3
    for i, name in enumerate(names):
        assert DNS_LABEL.match(name) and len(name) <= 63
        assert name.endswith(f"-{i}") and name.startswith("aaaa")
    other_ns = make_model(provisioning="nodeclaim", nodes=3, name=long_name, namespace="other")
    assert not set(names) & set(render.node_object_names(other_ns, aks_ref, "NodeClaim"))
    compact = render.node_object_names(model, config(), "NodeClaim")
    assert all(GPU_PROVISIONER_NAME.match(n) for n in compact)
    assert not set(compact) & set(render.node_object_names(other_ns, config(), "NodeClaim"))
    rendered = render.render_model(model, aks_ref, REVISION)
    assert rendered.objects[0].manifest["spec"]["nodeClassRef"]["kind"] == "AKSNodeClass"


def test_machine_mode_renders_legacy_machines_and_a_v1alpha1_workspace() -> None:
    model = make_model(provisioning="machine", sku_name="Standard_NC24ads_A100_v4", nodes=2,
                       model_access_secret="hf-token")
    rendered = render.render_model(model, config(), REVISION)
    assert kinds(rendered) == ["Machine", "Machine", "Workspace"]
    for obj in rendered.objects[:2]:
        machine = obj.manifest
        assert machine["apiVersion"] == "karpenter.sh/v1alpha5"
        name = machine["metadata"]["name"]
        assert GPU_PROVISIONER_NAME.match(name) and len(name) <= 11
        assert machine["spec"]["machineTemplateRef"] == {"name": name}
        assert {"key": "kaito.sh/machine-type", "operator": "In", "values": ["gpu"]} in machine["spec"]["requirements"]
        assert machine["metadata"]["labels"]["karpenter.sh/provisioner-name"] == "default"
        assert not render.RESERVED_LABEL_KEYS & set(machine["metadata"]["labels"])
        assert machine["spec"]["resources"]["requests"]["storage"] == f"{model.disk_gib}Gi"
    ws = rendered.objects[-1].manifest
    assert ws["apiVersion"] == "kaito.sh/v1alpha1"
    assert ws["resource"]["instanceType"] == "Standard_NC24ads_A100_v4"
    assert ws["resource"]["count"] == 2
    assert "presetOptions" not in ws["inference"]["preset"]  # v1alpha1 has no modelAccessSecret


@pytest.mark.parametrize("mode", ["aks", "byo"])
def test_aks_and_byo_modes_render_only_a_byo_workspace(mode: str) -> None:
    rendered = render.render_model(make_model(provisioning=mode, name="m"), config(), REVISION)
    assert kinds(rendered) == ["Workspace"]
    resource = rendered.objects[0].manifest["resource"]
    assert resource == {"labelSelector": {"matchLabels": {"apps": "m"}}}


def test_suspended_model_renders_nothing_but_says_so() -> None:
    rendered = render.render_model(make_model(provisioning="nodeclaim", suspend=True), config(), REVISION)
    assert rendered.objects == ()
    assert rendered.suspended
    assert not render.render_model(make_model(), config(), REVISION).suspended


def test_modes_needing_a_sku_fail_clearly_without_one() -> None:
    model = dataclasses.replace(make_model(provisioning="nodeclaim"), sku=None)
    with pytest.raises(render.RenderError, match="instance type"):
        render.render_model(model, config(), REVISION)
    byo = dataclasses.replace(make_model(provisioning="byo"), sku=None)
    assert kinds(render.render_model(byo, config(), REVISION)) == ["Workspace"]


def test_desired_objects_are_in_wave_order_across_models() -> None:
    a = render.render_model(make_model(name="a", config=(("max-model-len", 4096),)), config(), REVISION)
    b = render.render_model(make_model(name="b", provisioning="nodeclaim", config=(("max-model-len", 4096),)),
                            config(), REVISION)
    waves = [o.wave for o in render.desired_objects([a, b])]
    assert waves == sorted(waves)
    assert [o.manifest["kind"] for o in render.desired_objects([a, b])] == [
        "ConfigMap", "ConfigMap", "NodeClaim", "Workspace", "Workspace"]


# ------------------------------------------------------------------------------------------------
# Injection: request values are values, never YAML text or template markers
# ------------------------------------------------------------------------------------------------

HOSTILE = ["x\nfoo: bar", "{{ .name }}", "{{.labels}}", "a: {b: c}", "- item", "'; rm -rf /", "x\n---\nkind: Secret"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_request_values_never_create_fields(hostile: str) -> None:
    model = make_model(
        provisioning="nodeclaim",
        model_access_secret=hostile,
        config=(("max-model-len", 2048), ("served-model-name", hostile)),
        adapters=(Adapter("ad", hostile, hostile),),
        annotations=(("note", hostile),),
        label_selector=(("apps", "phi"),),
    )
    # A label value is refused outright (the schema refuses it in the request first; this is the backstop).
    with pytest.raises(render.TemplateError, match="label value"):
        render.render_model(dataclasses.replace(model, label_selector=(("apps", hostile),)), config(), REVISION)
    rendered = render.render_model(model, config(), REVISION)
    text = dump(rendered)
    reparsed = list(yaml.safe_load_all(text))
    assert reparsed == [o.manifest for o in rendered.objects]  # one document per object, nothing more
    assert len(reparsed) == 3
    for manifest in reparsed:
        assert "foo" not in all_keys(manifest)
        assert "{{ .labels }}" not in all_keys(manifest)
        assert manifest["metadata"]["labels"][ownership.LABEL_MODEL] == model.request.id
    ws = reparsed[-1]
    assert ws["inference"]["preset"]["presetOptions"]["modelAccessSecret"] == hostile
    assert ws["inference"]["adapters"][0] == {"source": {"name": "ad", "image": hostile}, "strength": hostile}
    assert ws["metadata"]["annotations"]["note"] == hostile
    assert ws["resource"]["labelSelector"]["matchLabels"] == {"apps": "phi"}
    cm_config = yaml.safe_load(reparsed[0]["data"]["inference_config.yaml"])
    assert cm_config == {"vllm": {"max-model-len": 2048, "served-model-name": hostile}}


def test_request_annotations_cannot_overwrite_provenance() -> None:
    model = make_model(annotations=((ownership.ANNOTATION_REVISION, "forged"),
                                    (ownership.ANNOTATION_SOURCE_PATH, "elsewhere")))
    ws = render.render_model(model, config(), REVISION).objects[0].manifest
    assert ws["metadata"]["annotations"][ownership.ANNOTATION_REVISION] == REVISION
    assert ws["metadata"]["annotations"][ownership.ANNOTATION_SOURCE_PATH] == model.request.path


# ------------------------------------------------------------------------------------------------
# Template overrides
# ------------------------------------------------------------------------------------------------

def write_override(tmp_path: Path, file_name: str, text: str) -> Path:
    folder = tmp_path / "templates"
    folder.mkdir(exist_ok=True)
    (folder / file_name).write_text(text)
    return folder


def test_override_can_add_fields_but_not_drop_identity_or_ownership(tmp_path: Path) -> None:
    folder = write_override(tmp_path, render.TEMPLATE_WORKSPACE_NAP, """\
apiVersion: kaito.sh/v1beta1
kind: Workspace
metadata:
  name: hard-coded
  labels: {cost-center: "42"}
  annotations: {kaito.sh/disable-benchmark: "true"}
resource:
  instanceType: "{{ .instance_type }}"
  labelSelector:
    matchLabels: "{{ .match_labels }}"
inference:
  preset:
    name: "{{ .preset_name }}"
""")
    ws = render.render_model(make_model(name="m"), config(), REVISION, folder).objects[0].manifest
    meta = ws["metadata"]
    assert meta["name"] == "m" and meta["namespace"] == "ml"
    assert meta["labels"] == {"cost-center": "42", **ownership.owner_labels("ml", "m")}
    assert meta["annotations"]["kaito.sh/disable-benchmark"] == "true"
    assert meta["annotations"][ownership.ANNOTATION_REVISION] == REVISION
    # the other templates still come from the built-in set
    nodeclaim = render.render_model(make_model(provisioning="nodeclaim"), config(), REVISION, folder)
    assert kinds(nodeclaim) == ["NodeClaim", "Workspace"]


@pytest.mark.parametrize(("text", "message"), [
    ("apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata:\n  name: \"{{ .nmae }}\"\n",
     r"templates/workspace-v1beta1.yaml:4:.*unknown placeholder \.nmae; did you mean name"),
    ("apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata:\n  name: \"ws-{{ .name }}\"\n",
     r"templates/workspace-v1beta1.yaml:4:.*whole value"),
    ("apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata:\n  \"{{ .name }}\": x\n",
     r"templates/workspace-v1beta1.yaml:4:.*not in keys"),
    ("apiVersion: v1\nkind: Secret\nmetadata: {}\n",
     r"templates/workspace-v1beta1.yaml.*must produce apiVersion kaito.sh/v1beta1 kind Workspace"),
    ("apiVersion: kaito.sh/v1beta1\nkind: Workspace\nmetadata: [unclosed\n",
     r"templates/workspace-v1beta1.yaml:\d+.*template cannot be read"),
    ("a: &x [1]\nb: *x\n", r"templates/workspace-v1beta1.yaml.*template cannot be read"),
    ("- just\n- a list\n", r"templates/workspace-v1beta1.yaml.*cannot be read|must be a YAML mapping"),
])
def test_broken_override_is_a_clear_error_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    folder = write_override(tmp_path, render.TEMPLATE_WORKSPACE_NAP, text)
    with pytest.raises(render.TemplateError) as info:
        render.render_model(make_model(), config(), REVISION, folder)
    assert re.search(message, str(info.value)), str(info.value)
    with pytest.raises(render.TemplateError):
        render.check_templates(folder)


def test_override_cannot_put_kaito_reserved_labels_on_our_nodeclaims(tmp_path: Path) -> None:
    builtin = (render.builtin_templates_dir() / render.TEMPLATE_NODECLAIM).read_text()
    text = builtin.replace('labels: "{{ .labels }}"', "labels: {kaito.sh/workspace: stolen}")
    assert text != builtin
    folder = write_override(tmp_path, render.TEMPLATE_NODECLAIM, text)
    with pytest.raises(render.TemplateError, match="reserved label"):
        render.render_model(make_model(provisioning="nodeclaim"), config(), REVISION, folder)


def test_edited_override_is_read_again(tmp_path: Path) -> None:
    builtin = (render.builtin_templates_dir() / render.TEMPLATE_WORKSPACE_BYO).read_text()
    folder = write_override(tmp_path, render.TEMPLATE_WORKSPACE_BYO, builtin)
    first = render.render_model(make_model(provisioning="byo"), config(), REVISION, folder).objects[0].manifest
    assert "extra" not in first["metadata"]["labels"]
    path = folder / render.TEMPLATE_WORKSPACE_BYO
    path.write_text(builtin.replace('labels: "{{ .labels }}"', "labels: {extra: yes-really}"))
    second = render.render_model(make_model(provisioning="byo"), config(), REVISION, folder).objects[0].manifest
    assert second["metadata"]["labels"]["extra"] == "yes-really"


def test_builtin_templates_all_parse() -> None:
    render.check_templates(None)
    for name in render.TEMPLATE_FILES:
        assert (render.builtin_templates_dir() / name).is_file()


# ------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------

def test_same_input_gives_byte_identical_yaml_whatever_the_input_order() -> None:
    def build(order: int) -> str:
        selector = (("apps", "x"), ("team", "ml"), ("tier", "gpu"))
        params = (("gpu-memory-utilization", 0.9), ("max-model-len", 4096), ("swap-space", 4))
        notes = (("a.example/x", "1"), ("b.example/y", "2"))
        if order:
            selector, params, notes = selector[::-1], params[::-1], notes[::-1]
        model = make_model(provisioning="nodeclaim", nodes=2, name="x", label_selector=selector,
                           config=params, annotations=notes)
        return dump(render.render_model(model, config(), REVISION))

    assert build(0) == build(0)
    assert build(0) == build(1)


# ------------------------------------------------------------------------------------------------
# render_repository and the CLI
# ------------------------------------------------------------------------------------------------

def write_repo(root: Path, models: dict[str, str], gitops_yaml: str | None = None) -> Path:
    for rel, text in models.items():
        path = root / "models" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if gitops_yaml is not None:
        (root / "gitops-kaito.yaml").write_text(gitops_yaml)
    return root


GOOD_MODEL = """\
apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: {name}
spec:
  model: phi-4-mini-instruct
  config:
    max-model-len: 4096
"""

BAD_MODEL = """\
apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: broken
spec:
  model: phi-4-mini-instruct
  colour: blue
"""


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Ran:
    """The CLI in-process (an exception escaping main fails the test as a traceback would); the real process's exit
    code and its missing traceback are test_validate_cli's and test_safety_gitstate's."""
    from gitops_kaito.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return Ran(code, out.out, out.err)


@pytest.fixture
def loader() -> Any:
    try:
        from gitops_kaito.repo import loader as module
    except ImportError as err:
        pytest.skip(f"the repository loader is not available yet: {err}")
    return module


def test_render_repository_uses_repo_overrides(tmp_path: Path, loader: Any) -> None:
    write_repo(tmp_path, {"ml/b.yaml": GOOD_MODEL.format(name="b"), "ml/a.yaml": GOOD_MODEL.format(name="a")})
    builtin = (render.builtin_templates_dir() / render.TEMPLATE_INFERENCE_CONFIG).read_text()
    write_override(tmp_path, render.TEMPLATE_INFERENCE_CONFIG,
                   builtin.replace('labels: "{{ .labels }}"', "labels: {overridden: 'yes'}"))
    load = loader.load_repository(tmp_path)
    assert not load.errors, load.errors
    rendered = render.render_repository(load, REVISION)
    assert [r.model.request.name for r in rendered] == ["a", "b"]
    for r in rendered:
        assert r.objects[0].manifest["metadata"]["labels"]["overridden"] == "yes"


def test_cli_render_prints_objects_in_apply_order_and_errors_with_exit_1(tmp_path: Path, loader: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_repo(tmp_path, {"ml/a.yaml": GOOD_MODEL.format(name="a"), "ml/b.yaml": GOOD_MODEL.format(name="b"),
                          "ml/broken.yaml": BAD_MODEL})
    result = run_cli(capsys, "render", "--repo", str(tmp_path), "--revision", "r1")
    assert result.returncode == 1, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert [d["kind"] for d in docs] == ["ConfigMap", "ConfigMap", "Workspace", "Workspace"]
    assert all(d["metadata"]["annotations"][ownership.ANNOTATION_REVISION] == "r1" for d in docs)
    assert re.search(r"models/ml/broken.yaml:\d+: ", result.stderr), result.stderr
    assert "Traceback" not in result.stderr

    as_json = run_cli(capsys, "render", "--repo", str(tmp_path), "-o", "json", "--revision", "r1")
    assert json.loads(as_json.stdout) == docs


def test_cli_render_valid_repo_exits_0_and_broken_override_exits_1(tmp_path: Path, loader: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    write_repo(tmp_path, {"ml/a.yaml": GOOD_MODEL.format(name="a")})
    ok = run_cli(capsys, "render", "--repo", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert [d["kind"] for d in yaml.safe_load_all(ok.stdout)] == ["ConfigMap", "Workspace"]
    write_override(tmp_path, render.TEMPLATE_WORKSPACE_NAP, "apiVersion: v1\nkind: Pod\n")
    broken = run_cli(capsys, "render", "--repo", str(tmp_path))
    assert broken.returncode == 1
    assert "templates/workspace-v1beta1.yaml" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_cli_render_defaults_the_revision_to_the_checkout_commit(tmp_path: Path, loader: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    git = pytest.importorskip("git")
    write_repo(tmp_path, {"ml/a.yaml": GOOD_MODEL.format(name="a")})
    repo = git.Repo.init(tmp_path, initial_branch="main")
    repo.index.add(["models/ml/a.yaml"])
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "t").set_value("user", "email", "t@example.invalid")
    sha = repo.index.commit("a model").hexsha
    result = run_cli(capsys, "render", "--repo", str(tmp_path), "-o", "json")
    assert result.returncode == 0, result.stderr
    revisions = {d["metadata"]["annotations"][ownership.ANNOTATION_REVISION] for d in json.loads(result.stdout)}
    assert revisions == {f"main@sha1:{sha}"}


def test_cli_render_internal_error_exits_2_without_traceback(tmp_path: Path, loader: Any,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from gitops_kaito.cli import main

    write_repo(tmp_path, {"ml/a.yaml": GOOD_MODEL.format(name="a")})

    def boom(*_args: Any, **_kwargs: Any) -> render.RenderedModel:
        raise RuntimeError("bug")

    monkeypatch.setitem(render.RENDERERS, "ModelDeployment", boom)
    assert main(["render", "--repo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "internal error" in err and "RuntimeError: bug" in err and "Traceback" not in err
