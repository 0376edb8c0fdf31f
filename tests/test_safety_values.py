"""Values that are not what they look like: every name, id and reference is matched in full (Python's `$` also
matches before a final newline), label and annotation keys follow Kubernetes' rules, numbers are finite, and
status files anyone can push are read under the same limits as model files."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from gitops_kaito.core.status import ModelReport, parse_model_yaml, render_files, render_model_yaml
from gitops_kaito.model import k8snames
from gitops_kaito.model.ownership import is_dns_label
from gitops_kaito.repo import schemas
from gitops_kaito.repo.catalog import hf_repo_id_problem, load_catalog
from gitops_kaito.repo.config import (
    SettingsError,
    check_instance,
    config_from_document,
    parse_duration,
)
from gitops_kaito.repo.modelrequest import validate_document
from gitops_kaito.repo.yamlsource import SourceError, load_yaml_data, load_yaml_text

PACKAGE = Path(__file__).resolve().parent.parent / "gitops_kaito"
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas"
RE_FUNCTIONS = {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


def _dollar_anchored(pattern: str) -> bool:
    """Whether pattern has an end anchor `$` outside escapes and character classes."""
    return schemas.ecma_pattern(pattern) != pattern


def test_no_python_regex_anchors_its_end_with_dollar() -> None:
    """The cause, not each input: a `$`-anchored pattern accepts "value\\n". Every regular expression in the
    package is written with \\Z or used through fullmatch."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RE_FUNCTIONS
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re" and node.args):
                first = node.args[0]
                parts = first.values if isinstance(first, ast.JoinedStr) else [first]
                text = "".join(p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str))
                if _dollar_anchored(text):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {text!r}")
    assert not found, "\n".join(found)


def test_schema_patterns_keep_ecma_semantics() -> None:
    for name in ("modeldeployment.schema.json", "config.schema.json"):
        text = (SCHEMAS / name).read_text()
        patterns = [v for v in _walk(json.loads(text)) if isinstance(v, str)]
        assert patterns
        for pattern in (p for p in patterns if not p.endswith("\\s*$")):  # durations allow whitespace around
            compiled = schemas.compiled(pattern)
            for probe in ("a", "phi", "main", "30s", "models/a", "x@y.z", "0.0.0.0:80"):
                if compiled.search(probe):
                    assert compiled.search(probe + "\n") is None, (name, pattern, probe)


def _walk(node: object) -> list[object]:
    out: list[object] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern":
                out.append(value)
            else:
                out += _walk(value)
    elif isinstance(node, list):
        for item in node:
            out += _walk(item)
    return out


HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n"


@pytest.mark.parametrize(("field", "document", "line"), [
    ("metadata.name", 'metadata: {name: "phi\\n"}\nspec: {model: phi-4}\n', 3),
    ("metadata.namespace", 'metadata: {name: phi, namespace: "ml\\n"}\nspec: {model: phi-4}\n', 3),
    ("spec.model", 'metadata: {name: phi}\nspec: {model: "org/name\\n"}\n', 4),
    ("spec.instanceType", 'metadata: {name: phi}\nspec: {model: phi-4, instanceType: "Standard_NC24ads_A100_v4\\n"}\n',
     4),
    ("spec.modelAccessSecret", 'metadata: {name: phi}\nspec: {model: phi-4, modelAccessSecret: "hf\\n"}\n', 4),
    ("spec.nodeSelector value", 'metadata: {name: phi}\nspec: {model: phi-4, nodeSelector: {apps: "x\\n"}}\n', 4),
    ("spec.nodeSelector key", 'metadata: {name: phi}\nspec: {model: phi-4, nodeSelector: {"apps\\n": x}}\n', 4),
    ("metadata.labels key", 'metadata: {name: phi, labels: {"a.b/c\\n": x}}\nspec: {model: phi-4}\n', 3),
    ("metadata.annotations key", 'metadata: {name: phi, annotations: {"a\\n": x}}\nspec: {model: phi-4}\n', 3),
    ("spec.adapters image", 'metadata: {name: phi}\nspec: {model: phi-4, adapters: [{name: a, image: "r/a:1\\n"}]}\n',
     4),
    ("spec.adapters name", 'metadata: {name: phi}\nspec: {model: phi-4, adapters: [{name: "a\\n", image: r/a:1}]}\n',
     4),
    ("spec.config key", 'metadata: {name: phi}\nspec: {model: phi-4, config: {"max-model-len\\n": 1}}\n', 4),
])
def test_a_trailing_newline_is_refused_in_every_name_and_reference(field: str, document: str, line: int) -> None:
    problems = validate_document(load_yaml_text(HEADER + document, "models/ml/phi.yaml"))
    assert problems, f"{field} with a trailing newline passed"
    assert all(p.path == "models/ml/phi.yaml" and p.line == line for p in problems), problems


CONFIG = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n"


@pytest.mark.parametrize(("document", "line"), [
    ('instance: "team-a\\n"\n', 3),
    ('defaults: {namespace: "ml\\n"}\n', 3),
    ('paths: ["models/a\\n"]\n', 3),
    ('status: {branch: "status\\n"}\n', 3),
    ('status: {path: "status\\n"}\n', 3),
    ('daemon: {listen: "0.0.0.0:8080\\n"}\n', 3),
    ('prices: {Standard_NC24ads_A100_v4: .nan}\n', 3),
    ('prices:\n  Standard_NC24ads_A100_v4: .inf\n', 4),
    ('prune: {maxShare: .nan}\n', 3),
])
def test_config_values_are_matched_in_full_and_finite(document: str, line: int) -> None:
    with pytest.raises(SourceError) as caught:
        config_from_document(load_yaml_text(CONFIG + document, "gitops-kaito.yaml"), load_catalog())
    assert (caught.value.path, caught.value.line) == ("gitops-kaito.yaml", line), str(caught.value)


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1.0e+400", "-2.5e+999"])
def test_numbers_that_are_not_finite_are_refused_with_their_line(text: str) -> None:
    with pytest.raises(SourceError, match="not a finite number") as caught:
        load_yaml_text(f"a: 1\nb:\n  c: {text}\n", "x.yaml")
    assert caught.value.line == 3


def test_an_integer_too_long_to_convert_is_an_error_not_a_traceback() -> None:
    with pytest.raises(SourceError, match="invalid value") as caught:
        load_yaml_text("a: 1\nb: " + "7" * 5000 + "\n", "x.yaml")
    assert caught.value.line == 2


def test_python_checks_match_in_full() -> None:
    assert is_dns_label("phi") and not is_dns_label("phi\n")
    with pytest.raises(ValueError):
        check_instance("team-a\n")
    with pytest.raises(SettingsError):
        parse_duration("30s\nx")
    assert parse_duration("30s\n") == 30  # surrounding whitespace is allowed by the form itself
    assert hf_repo_id_problem("Qwen/Qwen3-0.6B") is None and hf_repo_id_problem("Qwen/Qwen3-0.6B\n")


@pytest.mark.parametrize(("key", "ok"), [
    ("apps", True), ("example.com/pool", True), ("a" * 63, True), ("a" * 64, False), ("x/" + "a" * 63, True),
    ("/x", False), ("x/", False), ("a/b/c", False), ("Example.com/x", False), ("a" * 254 + "/x", False),
    ("a\n", False), ("-a", False), ("a-", False), ("a_b.c-d", True), ("é", False),
])
def test_label_and_annotation_keys_follow_kubernetes(key: str, ok: bool) -> None:
    assert (k8snames.qualified_name_problem(key) is None) == ok
    document = f"metadata:\n  name: phi\n  annotations: {{{json.dumps(key)}: v}}\nspec: {{model: phi-4}}\n"
    problems = validate_document(load_yaml_text(HEADER + document, "models/ml/phi.yaml"))
    assert (not problems) == ok, problems


@pytest.mark.parametrize(("value", "ok"), [("", True), ("a", True), ("a" * 63, True), ("a" * 64, False),
                                            ("a b", False), ("a\n", False), ("-a", False), ("a.b_c-d", True)])
def test_label_values_follow_kubernetes(value: str, ok: bool) -> None:
    assert (k8snames.label_value_problem(value) is None) == ok


# -- status files anyone can push --------------------------------------------------------------------------------

REPORT = ModelReport("ml.a", "ml", "a", "Ready", revision="main@sha1:" + "a" * 40, since="2020-01-01T00:00:00Z")


@pytest.mark.parametrize("hostile", [
    "model: ml/a\nstate: Ready\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",  # an alias bomb
    "model: ml/a\nstate: Ready\nx: " + "[" * 5000 + "]" * 5000 + "\n",  # nesting past any stack
    "model: ml/a\nstate: Ready\nnodes: " + "9" * 5000 + "\n",
    "model: ml/a\nstate: Ready\npricePerHour: .nan\n",
    "model: ml/a\nstate: Ready\nsince: x\n" + "#" * 300_000 + "\n",  # over the size limit
    "model: ml/a\nstate: Ready\n---\nmodel: ml/b\n",
    "model: \"ml/a\\n\"\nstate: Ready\n",
    "model: ../../x/a\nstate: Ready\n",
    "model: ml/a\nconditions: [1, 2]\n",
    "model: ml/a\nendpointCheck: [true]\n",
    "model: ml/a\nnodes: [1]\n",
    "- model: ml/a\n",
])
def test_a_hostile_status_file_is_refused_as_a_value_error(hostile: str) -> None:
    with pytest.raises(ValueError, match="not a gitops-kaito status file"):
        parse_model_yaml(hostile)
    files = render_files([REPORT], {REPORT.status_path: hostile}, "2025-01-01T00:00:00Z")
    assert parse_model_yaml(files[REPORT.status_path]).since == "2025-01-01T00:00:00Z"  # rewritten, not trusted


def test_a_written_status_file_reads_back() -> None:
    assert parse_model_yaml(render_model_yaml(REPORT)) == REPORT


def test_bounded_data_loader_limits() -> None:
    with pytest.raises(SourceError, match="too large"):
        load_yaml_data("a: " + "x" * 100 + "\n", "s.yaml", max_bytes=50)
    with pytest.raises(SourceError, match="aliases"):
        load_yaml_data("a: &x 1\nb: *x\n", "s.yaml")
    assert load_yaml_data("a: [1, {b: 2}]\n", "s.yaml") == {"a": [1, {"b": 2}]}
