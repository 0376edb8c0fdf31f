"""Azure settings for aks mode: gitops-kaito.yaml < GITOPS_KAITO_AZURE_* < --azure-* flags; http only on loopback."""

from __future__ import annotations

import argparse

import pytest
from azure.core.exceptions import ServiceRequestError

from gitops_kaito.provision.aks import (
    AksSettings,
    AksSettingsError,
    StaticTokenCredential,
    add_azure_flags,
    is_loopback_url,
    make_client,
    merge_settings,
    settings_from_args,
)
from gitops_kaito.repo.config import AzureSettings
from gitops_kaito.sandbox.arm import ArmEmulator


def file_settings() -> AzureSettings:
    """What a repo's gitops-kaito.yaml `azure:` section would give."""
    return AzureSettings(subscription_id="file-sub", resource_group="file-rg", cluster_name="file-cluster")


def test_precedence_env_flags_and_the_file_never_picks_the_target() -> None:
    env = {"GITOPS_KAITO_AZURE_RESOURCE_GROUP": "env-rg", "GITOPS_KAITO_AZURE_CLUSTER_NAME": "env-cluster"}
    merged = merge_settings(file_settings(), env, {"cluster_name": "flag-cluster", "location": None})
    # The file's subscription is not used in place of the operator's (none given here): a pin, not a default.
    assert (merged.subscription_id, merged.resource_group, merged.cluster_name) == ("", "env-rg", "flag-cluster")
    assert merged.arm_endpoint == "https://management.azure.com"


def test_flags_through_argparse() -> None:
    parser = argparse.ArgumentParser()
    add_azure_flags(parser)
    args = parser.parse_args(["--azure-subscription-id", "flag-sub", "--azure-arm-endpoint", "http://127.0.0.1:1"])
    merged = settings_from_args(file_settings(), args, env={})
    assert merged.subscription_id == "flag-sub" and merged.arm_endpoint == "http://127.0.0.1:1"
    assert merged.resource_group == ""


def test_config_module_azure_settings_fit() -> None:
    config = pytest.importorskip("gitops_kaito.repo.config")
    env = {"GITOPS_KAITO_AZURE_SUBSCRIPTION_ID": "s", "GITOPS_KAITO_AZURE_RESOURCE_GROUP": "r",
           "GITOPS_KAITO_AZURE_CLUSTER_NAME": "c"}
    merged = merge_settings(config.AzureSettings(subscription_id="s", resource_group="r", cluster_name="c"), env=env)
    assert merged.validate().cluster_name == "c"


def test_missing_settings_name_every_way_to_set_them() -> None:
    with pytest.raises(AksSettingsError) as err:
        merge_settings(None, env={}).validate()
    text = str(err.value)
    assert "subscription_id" in text and "GITOPS_KAITO_AZURE_SUBSCRIPTION_ID" in text
    assert "--azure-cluster-name" in text and "--azure-resource-group" in text
    assert "azure.clusterName" not in text, "the repository is not a place to set the target"


@pytest.mark.parametrize("url", ["http://management.azure.com", "http://10.0.0.1:8080", "ftp://x"])
def test_plain_http_only_on_loopback(url: str) -> None:
    with pytest.raises(AksSettingsError):
        AksSettings("s", "r", "c", url).validate()


def test_loopback_and_sovereign_endpoints() -> None:
    assert is_loopback_url("http://127.0.0.1:8080") and is_loopback_url("http://[::1]:1")
    assert is_loopback_url("http://localhost:1") and not is_loopback_url("http://10.1.2.3")
    assert AksSettings("s", "r", "c", "http://127.0.0.1:9").validate()
    china = AksSettings("s", "r", "c", "https://management.chinacloudapi.cn/")
    assert china.credential_scope == "https://management.chinacloudapi.cn/.default"


def test_default_credential_is_used_in_production() -> None:
    from azure.identity import DefaultAzureCredential

    client = make_client(AksSettings("s", "r", "c"))
    assert isinstance(client._config.credential, DefaultAzureCredential)
    assert client._config.credential_scopes == ["https://management.azure.com/.default"]


def test_the_sdk_refuses_http_without_the_loopback_policy() -> None:
    from azure.mgmt.containerservice import ContainerServiceClient

    with ArmEmulator() as arm:
        s = arm.settings
        bare = ContainerServiceClient(StaticTokenCredential(s.token), s.subscription_id, base_url=arm.url, retry_total=0)
        with pytest.raises(ServiceRequestError, match="non-TLS"):
            list(bare.agent_pools.list(s.resource_group, s.cluster_name))
        ours = make_client(AksSettings(s.subscription_id, s.resource_group, s.cluster_name, arm.url, retry_total=0),
                           StaticTokenCredential(s.token))
        assert list(ours.agent_pools.list(s.resource_group, s.cluster_name)) == []
