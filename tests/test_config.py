"""Tests for gitops-kaito.yaml: defaults, every override, and errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gitops_kaito.repo.config import (
    EXAMPLE_CONFIG,
    AzureSettings,
    DaemonConfig,
    PrunePolicy,
    RepoConfig,
    StatusSettings,
    load_config,
)
from gitops_kaito.repo.yamlsource import SourceError

REPO_ROOT = Path(__file__).resolve().parent.parent
HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\n"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "gitops-kaito.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def error_of(tmp_path: Path, text: str) -> SourceError:
    with pytest.raises(SourceError) as err:
        load_config(write(tmp_path, text))
    return err.value


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path)
    assert config == RepoConfig()
    assert (config.default_namespace, config.provisioning, config.runtime) == ("default", "kaito", "vllm")
    assert config.clouds == ("azure",) and config.replace_policy == "manual" and config.drift == "correct"
    assert config.prune == PrunePolicy(enabled=True, max_share=0.5, allow_all=False)
    assert config.status == StatusSettings(branch="", path="status", author_name="gitops-kaito",
                                           author_email="gitops-kaito@users.noreply.local")
    assert dict(config.prices) == {}
    assert config.azure.arm_endpoint == "https://management.azure.com"
    assert dict(config.node_class_ref) == {"group": "kaito.sh", "kind": "KaitoNodeClass", "name": "default"}


def test_minimal_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, HEADER)) == RepoConfig()


def test_example_config_is_valid_and_shows_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, EXAMPLE_CONFIG)) == RepoConfig()


def test_every_override(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HEADER + """\
defaults:
  namespace: ml
  provisioning: nodeclaim
  runtime: transformers
clouds: [aws, azure]
prune: {enabled: false, maxShare: 0.25, allowAll: true}
replacePolicy: auto
drift: report
status:
  branch: gitops/status
  path: ops/status/
  authorName: Bot
  authorEmail: bot@example.com
prices:
  standard_nc24ads_a100_v4: 2.5
  g5.xlarge: 1
azure:
  subscriptionId: 00000000-0000-0000-0000-000000000000
  resourceGroup: rg
  clusterName: aks1
  armEndpoint: http://127.0.0.1:8443
  location: eastus
nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
"""))
    assert (config.default_namespace, config.provisioning, config.runtime) == ("ml", "nodeclaim", "transformers")
    assert config.clouds == ("aws", "azure") and config.replace_policy == "auto" and config.drift == "report"
    assert config.prune == PrunePolicy(enabled=False, max_share=0.25, allow_all=True)
    assert config.status == StatusSettings("gitops/status", "ops/status", "Bot", "bot@example.com")
    # SKU names come back in the catalog's spelling, so later lookups and messages match the catalog.
    assert dict(config.prices) == {"Standard_NC24ads_A100_v4": 2.5, "g5.xlarge": 1.0}
    assert config.azure == AzureSettings("00000000-0000-0000-0000-000000000000", "rg", "aks1",
                                         "http://127.0.0.1:8443", "eastus")
    assert dict(config.node_class_ref) == {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"}


@pytest.mark.parametrize(("text", "line", "fragment"), [
    # an unknown field, with the closest allowed name
    (HEADER + "prune:\n  maxShar: 0.3\n", 4, "unknown field 'prune.maxShar'; did you mean 'maxShare'?"),
    (HEADER + "colouds: [aws]\n", 3, "unknown field 'colouds'; did you mean 'clouds'?"),
    (HEADER + "defaults:\n  zone: x\n", 4, "unknown field 'defaults.zone' (allowed: namespace, provisioning, runtime)"),
    # wrong header
    ("apiVersion: gitops.kaito.sh/v1\nkind: Config\n", 1, "apiVersion: \"gitops.kaito.sh/v1\" must be gitops"),
    ("apiVersion: gitops.kaito.sh/v1alpha1\nkind: ModelDeployment\n", 2, "kind: \"ModelDeployment\" must be Config"),
    ("kind: Config\n", 1, "'apiVersion' is a required property"),
    # bad values
    (HEADER + "defaults:\n  namespace: My_NS\n", 4, "defaults.namespace: \"My_NS\" must be a Kubernetes namespace"),
    (HEADER + "defaults:\n  provisioning: karpenter\n", 4, "defaults.provisioning"),
    (HEADER + "clouds: []\n", 3, "clouds: [] must be a non-empty list"),
    (HEADER + "clouds: [azure, gcp]\n", 3, "clouds[1]"),
    (HEADER + "prune:\n  maxShare: 1.5\n", 4, "prune.maxShare: 1.5 is greater than the maximum of 1"),
    (HEADER + "prune:\n  enabled: maybe\n", 4, "prune.enabled: 'maybe' is not of type 'boolean'"),
    (HEADER + "replacePolicy: always\n", 3, "replacePolicy"),
    (HEADER + "drift: ignore\n", 3, "drift: 'ignore' is not one of ['correct', 'report']"),
    (HEADER + "status:\n  path: ../outside\n", 4, "must be a relative folder path"),
    (HEADER + "status:\n  path: /abs\n", 4, "must be a relative folder path"),
    (HEADER + "status:\n  path: models/status\n", 4, "inside models/"),
    (HEADER + "status:\n  branch: a..b\n", 4, "must be a git branch name"),
    (HEADER + "status:\n  authorEmail: nobody\n", 4, "must be an e-mail address"),
    (HEADER + "prices:\n  Standard_NC24ads_A100_v4: -1\n", 4, "must be a price in USD per hour"),
    (HEADER + "prices:\n  Standard_NC24ads_A100_v5: 1\n", 4,
     "unknown GPU SKU 'Standard_NC24ads_A100_v5'; did you mean Standard_NC24ads_A100_v4"),
    (HEADER + "prices:\n  g5.xlarge: 1\n  G5.XLARGE: 2\n", 5, "listed twice"),
    (HEADER + "azure:\n  armEndpoint: ftp://x\n", 4, "must be an http(s) URL"),
    (HEADER + "nodeClassRef: {group: kaito.sh}\n", 3, "'kind' is a required property"),
    # broken YAML is reported by the YAML layer, still with file and line
    (HEADER + "prune: [\n", 4, "invalid YAML"),
    (HEADER + "a: &x 1\nb: *x\n", 4, "aliases"),
])
def test_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    err = error_of(tmp_path, text)
    assert err.path == "gitops-kaito.yaml"
    assert err.line == line, str(err)
    assert fragment in err.message, str(err)
    assert str(err).startswith(f"gitops-kaito.yaml:{line}")


def test_first_error_in_the_file_is_reported(tmp_path: Path) -> None:
    err = error_of(tmp_path, HEADER + "clouds: [gcp]\nreplacePolicy: never\nzzz: 1\n")
    assert err.line == 3 and "clouds" in err.message


def test_empty_and_non_mapping_files_are_errors(tmp_path: Path) -> None:
    assert error_of(tmp_path, "").line == 1
    assert "expected a mapping" in error_of(tmp_path, "- a\n- b\n").message


def test_huge_file_is_refused(tmp_path: Path) -> None:
    err = error_of(tmp_path, HEADER + "#" * (70 * 1024) + "\n")
    assert "too large" in err.message


def test_shipped_schema_is_valid_and_strict() -> None:
    schema = json.loads((REPO_ROOT / "schemas" / "config.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    for name, sub in schema["properties"].items():
        if sub.get("type") == "object" and name != "prices":
            assert sub.get("additionalProperties") is False, name


def test_daemon_section_is_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, HEADER + """\
daemon:
  interval: 5m
  jitter: 2s
  logFormat: json
  listen: 0.0.0.0:9090
  leaseName: models-leader
"""))
    assert config.daemon == DaemonConfig(interval="5m", jitter="2s", log_format="json", listen="0.0.0.0:9090",
                                         lease_name="models-leader")


def test_example_daemon_section_uncommented_is_valid(tmp_path: Path) -> None:
    lines = EXAMPLE_CONFIG.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# daemon:"))
    uncommented = [line[2:] if i >= start and line.startswith("# ") else line for i, line in enumerate(lines)]
    config = load_config(write(tmp_path, "\n".join(uncommented) + "\n"))
    assert config.daemon.interval == "60s" and config.daemon.listen == "127.0.0.1:8080"
    assert config.daemon.lease_name == "gitops-kaito-leader"


@pytest.mark.parametrize(("key", "value", "reason"), [
    ("gitUrl", "https://evil.example/r.git", "how the repository is found"),
    ("kubeconfig", "/etc/other", "must not pick the cluster"),
    ("context", "prod", "must not pick the cluster"),
    ("gitToken", "ghp_x", "credentials never live in Git"),
    ("webhookSecretFile", "/tmp/s", "secrets are the operator's"),
    ("leaderElection", "false", "must not let two replicas act at once"),
    ("leaseNamespace", "ops", "the Deployment's Role grants access"),
])
def test_daemon_settings_a_repository_may_not_choose(tmp_path: Path, key: str, value: str, reason: str) -> None:
    err = error_of(tmp_path, HEADER + f"daemon:\n  interval: 30s\n  {key}: {value}\n")
    assert err.line == 5
    assert f"daemon.{key} can never come from the repository" in str(err) and reason in str(err)


@pytest.mark.parametrize(("body", "line", "message"), [
    ("daemon:\n  interval: soon\n", 4, "must be a duration"),
    ("daemon:\n  listen: '8080'\n", 4, "must be HOST:PORT"),
    ("daemon:\n  logFormat: xml\n", 4, "daemon.logFormat"),
    ("daemon:\n  intervall: 30s\n", 4, "did you mean 'interval'"),
    ("daemon:\n  leaseName: Not_A_Name\n", 4, "Kubernetes object name"),
    ("daemon:\n  interval: 9999h\n", 4, "longer than 7 days"),
    ("daemon:\n  interval: 500ms\n", 4, "shorter than 1s"),
    ("daemon:\n  listen: 0.0.0.0:99999\n", 4, "is not a port"),
])
def test_daemon_section_errors_name_the_line(tmp_path: Path, body: str, line: int, message: str) -> None:
    err = error_of(tmp_path, HEADER + body)
    assert err.line == line and message in str(err), str(err)
