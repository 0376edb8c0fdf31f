"""Talks to a model's OpenAI-compatible endpoint through the API server's service proxy.

Used by the status endpoint check (`/v1/models`) and by `gitops-kaito chat`; no port-forward, no cluster network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.repo.bounded import JsonRefused, loads_json

SERVICE_PORT_NAME = "http"  # KAITO's inference Service: port 80 named http -> 5000 (`pkg/workspace/manifests/manifests.go` at v0.12.0)


@dataclass(frozen=True)
class EndpointCheck:
    answers: bool
    served_model: str | None
    error: str = ""


@dataclass(frozen=True)
class ChatReply:
    model: str
    content: str
    usage: dict[str, Any]


class EndpointError(Exception):
    pass


def proxy_path(namespace: str, service: str, path: str, port: str = SERVICE_PORT_NAME) -> str:
    return f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"


# A chat completion or a model list is a few KiB; far more is not an answer worth reading.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


def _call(api: client.ApiClient, method: str, path: str, body: Any = None, timeout_s: float = 15.0) -> Any:
    # CoreV1Api.connect_post_*_proxy cannot carry a body, so both verbs go through the ApiClient directly
    # (client 37: param_serialize adds host and auth, call_api sends, status is checked here).
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    try:
        params = api.param_serialize(method=method, resource_path=path, header_params=headers, body=body,
                                     auth_settings=["BearerToken"])
        resp = api.call_api(*params, _request_timeout=timeout_s)
        resp.read()
    except ApiException as err:
        raise EndpointError(f"HTTP {err.status}: {(err.body or err.reason or '')!s:.200}") from None
    except Exception as err:  # connection refused, timeouts
        raise EndpointError(str(err)) from None
    raw: bytes = resp.data or b""
    if not 200 <= resp.status < 300:
        raise EndpointError(f"HTTP {resp.status}: {raw[:200].decode(errors='replace')}")
    try:  # the model server's answer: bounded like any body nobody vetted
        return loads_json(raw or b"null", MAX_ANSWER_BYTES)
    except JsonRefused as err:
        raise EndpointError(f"the endpoint's answer was refused ({str(err)[:120]}): {raw[:120]!r}") from None


def check_models(api: client.ApiClient, namespace: str, name: str, timeout_s: float = 10.0) -> EndpointCheck:
    """GET /v1/models on the Workspace's Service; the first id is the served model name."""
    try:
        data = _call(api, "GET", proxy_path(namespace, name, "v1/models"), timeout_s=timeout_s)
    except EndpointError as err:
        return EndpointCheck(False, None, str(err))
    models = data.get("data") if isinstance(data, dict) else None
    if not models or not isinstance(models, list) or not isinstance(models[0], dict):
        return EndpointCheck(False, None, "the endpoint answered without a model list")
    return EndpointCheck(True, str(models[0].get("id", "")) or None)


def check_health(api: client.ApiClient, namespace: str, name: str, timeout_s: float = 10.0) -> EndpointCheck:
    """GET /health on a Service (a KAITO RAG engine's: `presets/ragengine/main.py` at v0.12.0)."""
    try:
        _call(api, "GET", proxy_path(namespace, name, "health"), timeout_s=timeout_s)
    except EndpointError as err:
        return EndpointCheck(False, None, str(err))
    return EndpointCheck(True, None)


def chat(api: client.ApiClient, namespace: str, name: str, messages: Sequence[dict[str, str]],
         model: str | None = None, max_tokens: int = 256, timeout_s: float = 120.0,
         temperature: float | None = None) -> ChatReply:
    """POST /v1/chat/completions; discovers the served model name first when not given (vLLM's OpenAI-compatible API)."""
    if model is None:
        check = check_models(api, namespace, name)
        if not check.answers or not check.served_model:
            raise EndpointError(f"{namespace}/{name} does not answer /v1/models: {check.error}")
        model = check.served_model
    body: dict[str, Any] = {"model": model, "messages": list(messages), "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    data = _call(api, "POST", proxy_path(namespace, name, "v1/chat/completions"), body, timeout_s)
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EndpointError("the endpoint's reply has no choices[0].message.content") from None
    return ChatReply(model=model, content=str(content), usage=dict(data.get("usage") or {}))
