"""The aks-mode default credential path: the REAL DefaultAzureCredential against a loopback managed-identity endpoint.

Only environment variables are set; no code is patched, so the token really flows endpoint -> azure-identity -> ARM.
"""

from __future__ import annotations

from gitops_kaito.provision.agentpool import desired_pool
from gitops_kaito.provision.aks import AksSettings
from gitops_kaito.provision.provisioner import AgentPoolProvisioner
from gitops_kaito.sandbox.arm import ArmEmulator, ArmSettings
from tests.aksfixtures import IDENTITY_HEADER, TokenEndpoint
from tests.test_aks_agentpool import model

WAIT = 20.0  # upper bound for LROs in a pass; they finish in milliseconds here


def settings_for(arm: ArmEmulator) -> AksSettings:
    s = arm.settings
    return AksSettings(s.subscription_id, s.resource_group, s.cluster_name, arm.url, s.location,
                       polling_interval_s=0.01, retry_total=0)


def test_default_credential_uses_app_service_managed_identity(app_service_env: TokenEndpoint) -> None:
    endpoint = app_service_env
    phi = desired_pool(model("phi"))
    with ArmEmulator(ArmSettings(token=endpoint.token)) as arm:
        # No credential argument: make_client builds DefaultAzureCredential itself.
        prov = AgentPoolProvisioner.for_settings(settings_for(arm), sleep=lambda _s: None)
        outcomes = prov.reconcile([phi], revision="main@sha1:aaa", wait_s=WAIT)

        assert [(o.pool, o.action, o.state, o.code) for o in outcomes] == [(phi.name, "create", "Ready", "")]
        pool = arm.pool(phi.name)
        assert pool is not None and pool["properties"]["provisioningState"] == "Succeeded"
        # The emulator answers 401 to any other bearer token, so every logged success carried the issued one.
        assert arm.request_log.count(status=401) == 0
        assert arm.request_log.count(method="PUT", pool=phi.name) == 1

    assert endpoint.requests, "the token endpoint was never called"
    path, query, headers = endpoint.requests[0]
    assert path == "/msi/token"
    assert query["api-version"] == ["2019-08-01"]
    # The audience is the configured ARM endpoint (sovereign-cloud rule), not the public cloud.
    assert query["resource"][0].rstrip("/") == arm.url.rstrip("/")
    assert headers["x-identity-header"] == IDENTITY_HEADER
    # azure-identity caches the token: one endpoint call serves the whole pass (list, put, polls).
    assert len(endpoint.requests) == 1


def test_default_credential_token_is_what_arm_sees(app_service_env: TokenEndpoint) -> None:
    """An emulator expecting a different token rejects the issued one: the bearer really is the endpoint's."""
    phi = desired_pool(model("phi"))
    with ArmEmulator(ArmSettings(token="some-other-token")) as arm:
        prov = AgentPoolProvisioner.for_settings(settings_for(arm), sleep=lambda _s: None)
        outcomes = prov.reconcile([phi], revision="main@sha1:aaa", wait_s=WAIT)

        assert arm.pool(phi.name) is None
        assert arm.request_log.count(status=401) >= 1
        assert arm.request_log.count(method="PUT") == 0
    assert [(o.pool, o.state, o.code) for o in outcomes] == [(phi.name, "AuthFailed", "InvalidAuthenticationToken")]
    assert len(app_service_env.requests) >= 1
