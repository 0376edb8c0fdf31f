"""`gitops-kaito chat NS/NAME [PROMPT]`: talk to a Ready model through the API server's service proxy.

One answer with a prompt, a conversation (history kept, /exit or Ctrl-D to leave) without one; no port-forward.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from gitops_kaito.cli.common import EXIT_ERROR, EXIT_INVALID, EXIT_OK, CliError, add_cluster_flags, emit

EXIT_NOT_READY = EXIT_INVALID  # the model exists but cannot answer yet: a state, not a usage error
HELP_LINE = "/exit (or Ctrl-D) to leave, /clear to forget the conversation"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat", help="chat with a Ready model through the API server's service proxy",
        description="Send a prompt to a model's OpenAI-compatible endpoint (POST /v1/chat/completions) through "
                    "the API server's service proxy. With PROMPT: print one answer. Without: a conversation "
                    f"({HELP_LINE}). Exit 1 when the model is not ready, 2 on connection or usage errors.")
    parser.add_argument("target", metavar="NS/NAME", help="the Workspace: namespace/name (or NAME with -n)")
    parser.add_argument("prompt", nargs="?", metavar="PROMPT", help="one prompt; '-' reads it from stdin")
    parser.add_argument("-n", "--namespace", default="default", help="namespace when NS/ is omitted")
    parser.add_argument("--model", help="served model name (default: the first id of /v1/models)")
    parser.add_argument("--max-tokens", type=int, default=1000, help="answer length limit (default 1000)")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the server's)")
    parser.add_argument("--system", help="a system prompt sent before the conversation")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for one answer")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text",
                        help="one-shot output: the answer's text, or JSON with model and usage")
    add_cluster_flags(parser)
    parser.set_defaults(func=run)


def parse_target(target: str, default_namespace: str) -> tuple[str, str]:
    namespace, sep, name = target.partition("/")
    if not sep:
        namespace, name = default_namespace, target
    if not namespace or not name or "/" in name:
        raise CliError(f"expected NS/NAME (e.g. ml/phi-4-mini), got {target!r}")
    return namespace, name


@dataclass
class Conversation:
    """The messages sent so far. Only real answers join the history: an error never becomes an assistant turn."""

    system: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)

    def outgoing(self, prompt: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.messages, {"role": "user", "content": prompt}]

    def record(self, prompt: str, answer: str) -> None:
        self.messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]

    def clear(self) -> None:
        self.messages.clear()


Ask = Callable[[list[dict[str, str]]], str]


def repl(ask: Ask, conversation: Conversation, read: Callable[[str], str], out: TextIO, err: TextIO,
         prompt: str = "> ") -> int:
    """Read-ask-print until /exit or end of input; a failed answer is reported and the conversation goes on."""
    while True:
        try:
            line = read(prompt).strip()
        except EOFError:
            print(file=out)
            return EXIT_OK
        if not line:
            continue
        if line in ("/exit", "/quit", "/q"):
            return EXIT_OK
        if line == "/clear":
            conversation.clear()
            print("(conversation cleared)", file=out)
            continue
        if line in ("/help", "/?"):
            print(HELP_LINE, file=out)
            continue
        from gitops_kaito.adapters.endpoint import EndpointError

        try:
            answer = ask(conversation.outgoing(line))
        except EndpointError as error:
            print(f"error: {error}", file=err)
            continue
        conversation.record(line, answer)
        print(answer, file=out)
        out.flush()


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.adapters import endpoint
    from gitops_kaito.adapters.kube import Kube, KubeError

    namespace, name = parse_target(args.target, args.namespace)
    if args.max_tokens < 1:
        raise CliError("--max-tokens must be at least 1")
    prompt = args.prompt
    if prompt == "-":
        prompt = sys.stdin.read().strip()
        if not prompt:
            raise CliError("no prompt on stdin")
    try:
        kube = Kube.connect(args.kubeconfig, args.context)
    except KubeError as err:
        raise CliError(str(err)) from None
    with kube:
        service = _require_ready(kube, namespace, name)
        model = args.model
        if model is None:
            check = endpoint.check_models(kube.api_client, namespace, service)
            if not check.answers or not check.served_model:
                raise CliError(f"{namespace}/{name} is Ready but its endpoint does not answer /v1/models: "
                               f"{check.error}", EXIT_NOT_READY)
            model = check.served_model

        def send(messages: list[dict[str, str]]) -> endpoint.ChatReply:
            return endpoint.chat(kube.api_client, namespace, service, messages, model=model,
                                 max_tokens=args.max_tokens, temperature=args.temperature, timeout_s=args.timeout)

        def ask(messages: list[dict[str, str]]) -> str:
            return send(messages).content

        conversation = Conversation(system=args.system)
        if prompt is not None:
            try:
                reply = send(conversation.outgoing(prompt))
            except endpoint.EndpointError as err:
                raise CliError(f"{namespace}/{name}: {err}", EXIT_ERROR) from None
            if args.output == "json":
                emit({"workspace": f"{namespace}/{name}", "model": reply.model, "content": reply.content,
                      "usage": reply.usage}, "json")
            else:
                print(reply.content)
            return EXIT_OK
        interactive = sys.stdin.isatty()
        if interactive:
            try:
                import readline  # noqa: F401 - line editing and in-session history for input()
            except ImportError:
                pass
        print(f"chatting with {model} on {namespace}/{name} through the API server's service proxy; {HELP_LINE}")
        return repl(ask, conversation, input, sys.stdout, sys.stderr, prompt="> " if interactive else "")


def _require_ready(kube: Any, namespace: str, name: str) -> str:
    """Read the Workspace (or the InferenceSet) and return the Service to talk to: the Workspace's own, or a serving
    replica's for an InferenceSet (KAITO makes no Service for the set itself without its Gateway API extension);
    a missing or not-yet-serving model is a clear message with its state, not a 503."""
    from gitops_kaito.adapters.kube import KubeError
    from gitops_kaito.core import health
    from gitops_kaito.model.kaito import INFERENCESET_CREATED_BY_LABEL
    from gitops_kaito.model.objects import INFERENCESET_VERSIONS, ObjectRef

    try:
        version = kube.workspace_version()
        workspace = kube.get(ObjectRef(version, "Workspace", namespace, name))
        iset = None
        if workspace is None and kube.served(INFERENCESET_VERSIONS[0], "InferenceSet"):
            iset = kube.get(ObjectRef(INFERENCESET_VERSIONS[0], "InferenceSet", namespace, name))
        replicas = [w for w in kube.list_owned(version, "Workspace", label_selector=(
            f"{INFERENCESET_CREATED_BY_LABEL}={name}")) if (w.get("metadata") or {}).get("namespace") == namespace
            ] if iset is not None else []
    except KubeError as err:
        raise CliError(str(err)) from None
    if iset is not None:
        state = health.assess_inferenceset(iset, replicas)
        serving = state.endpoint.partition("://")[2].split(".", 1)[0] if state.endpoint else ""
        if not serving:
            detail = f" ({state.reason}: {state.message})" if state.message else ""
            raise CliError(f"{namespace}/{name} is not ready to chat: state {state.state}{detail}", EXIT_NOT_READY)
        return serving
    if workspace is None:
        raise CliError(f"workspace {namespace}/{name} not found", EXIT_NOT_READY)
    state = health.assess(workspace)
    if not state.inference_ready:
        detail = f" ({state.reason}: {state.message})" if state.message else ""
        raise CliError(f"{namespace}/{name} is not ready to chat: state {state.state}{detail}", EXIT_NOT_READY)
    return name
