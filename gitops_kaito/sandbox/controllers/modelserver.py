"""Simulated KAITO model server behind the Workspace Service, answered through the API server's service proxy.

vLLM's OpenAI-compatible surface, canned: /health, /v1/models (data[0].id = served model name) and
/v1/chat/completions; 503 until the Workspace is InferenceReady. The served name is KAITO's: the catalog's for
a preset, the lowercase repository name for a Hugging Face id outside the catalog (gpus.served_model_name).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from gitops_kaito.sandbox.controllers import conditions as c
from gitops_kaito.sandbox.controllers.base import make_api_client
from gitops_kaito.sandbox.controllers.gpus import served_model_name
from gitops_kaito.sandbox.controllers.kaito import GROUP, INFERENCE_READY, PLURAL, VERSION

HTTP_PORTS = frozenset({"", "80", "http", "5000"})
Reply = tuple[int, dict[str, str], bytes]
JSON = {"Content-Type": "application/json"}


def _json(status: int, doc: Any) -> Reply:
    return status, dict(JSON), json.dumps(doc).encode()


class ModelServer:
    """The proxy handler: ModelServer(url)(namespace, service, port, method, subpath, body)."""

    def __init__(self, url: str) -> None:
        self.api = make_api_client(url, "model-server")
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        self.api.close()

    def _workspace(self, namespace: str, service: str) -> dict[str, Any] | None:
        name = service.removesuffix("-headless")
        try:
            obj: Any = client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name)
            return dict(obj)
        except ApiException:
            return None

    def __call__(self, namespace: str, service: str, port: str | int | None, method: str, subpath: str,
                 body: bytes | str | None) -> Reply | None:
        with self._lock:
            self.requests += 1
        if str(port or "") not in HTTP_PORTS:
            return None
        ws = self._workspace(namespace, service)
        if ws is None or not c.is_true((ws.get("status") or {}).get("conditions"), INFERENCE_READY):
            return None
        preset = ((ws.get("inference") or {}).get("preset") or {}).get("name") or service
        model = served_model_name(str(preset))
        path = "/" + subpath.lstrip("/").split("?", 1)[0]
        method = method.upper()
        if path == "/health" and method == "GET":
            return 200, {"Content-Type": "text/plain"}, b""
        if path == "/v1/models" and method == "GET":
            return _json(200, {"object": "list", "data": [{
                "id": model, "object": "model", "created": int(time.time()), "owned_by": "vllm", "root": str(preset),
                "parent": None, "permission": []}]})
        if path == "/v1/chat/completions" and method == "POST":
            return self._chat(model, body)
        if path == "/version" and method == "GET":
            return _json(200, {"version": "sandbox"})
        return _json(404, {"detail": "Not Found"})

    def _chat(self, model: str, body: bytes | str | None) -> Reply:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _json(400, {"object": "error", "message": "request body is not valid JSON",
                               "type": "BadRequestError", "code": 400})
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            return _json(400, {"object": "error", "message": "messages is required", "type": "BadRequestError",
                               "code": 400})
        asked = request.get("model", model)
        if asked != model:
            return _json(404, {"object": "error", "message": f"The model `{asked}` does not exist.",
                               "type": "NotFoundError", "code": 404})
        last = next((m.get("content", "") for m in reversed(request["messages"])
                     if isinstance(m, dict) and m.get("role") == "user"), "")
        text = f"Hello from the gitops-kaito sandbox. {model} would answer: {str(last)[:200]!r}"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request["messages"] if isinstance(m, dict))
        completion_tokens = len(text.split())
        return _json(200, {
            "id": f"chatcmpl-sandbox-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop",
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })
