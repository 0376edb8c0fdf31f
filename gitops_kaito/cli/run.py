"""`gitops-kaito run`: the long-running reconciler (interval + webhooks, leader election, probes and metrics).

Every flag can also come from a GITOPS_KAITO_<NAME> environment variable; flags win (settings.py).
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from gitops_kaito.cli.common import EXIT_OK, CliError, add_scope_flags
from gitops_kaito.provision.aks import add_azure_flags, azure_overrides


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run", help="run the reconciler as a service: follow a Git branch, webhooks, metrics",
        description="Follow a Git repository: a pass at start, then every --interval (with jitter) and at once on "
                    "a signed webhook push. Serves /hooks/{github,gitlab,generic}, /healthz, /readyz and /metrics "
                    "on --listen. Several replicas elect one leader with a Lease; only it acts. Every setting also "
                    "from GITOPS_KAITO_<NAME> (e.g. GITOPS_KAITO_GIT_URL, GITOPS_KAITO_INTERVAL), and the "
                    "interval, jitter, log format, listen address and Lease name also from the repository's "
                    "gitops-kaito.yaml (daemon:); flags win, then the environment, then the repository. "
                    "The https token comes from GITOPS_KAITO_GIT_TOKEN only, never a flag. SIGTERM finishes the "
                    "current pass, releases the Lease and exits.")
    # Defaults are None so settings.resolve_settings can tell "not given" from a value and fall back to env.
    parser.add_argument("--git-url", help="repository URL (env GITOPS_KAITO_GIT_URL)")
    parser.add_argument("--branch", help="branch to follow (default main)")
    parser.add_argument("--status-branch", help="branch for status commits (default: gitops-kaito.yaml, else --branch)")
    parser.add_argument("--interval", help="time between passes, e.g. 60s, 5m (default 60s)")
    parser.add_argument("--jitter", help="random delay added to each interval (default: a tenth of it, at most 5s)")
    parser.add_argument("--listen", help="HOST:PORT of the webhook/metrics listener (default 127.0.0.1:8080)")
    parser.add_argument("--webhook-secret-file", help="file with the webhook secret (at least 16 bytes); "
                                                      "without it webhooks are refused")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context to use")
    parser.add_argument("--cache-dir", help="where the clone is kept (default ~/.cache/gitops-kaito/git)")
    parser.add_argument("--ssh-key-file", help="ssh private key for git@ URLs")
    parser.add_argument("--known-hosts-file", help="known_hosts for the ssh key")
    parser.add_argument("--no-leader-election", dest="leader_election", action="store_const", const=False,
                        help="act without a Lease (a single replica)")
    parser.add_argument("--lease-name", help="Lease name (default gitops-kaito-leader, or gitops-kaito-leader-<instance> "
                                             "with --instance)")
    parser.add_argument("--lease-namespace", help="namespace of the Lease (default gitops-kaito)")
    parser.add_argument("--allow-mass-prune", dest="allow_mass_prune", action="store_const", const=True,
                        help="let a pass prune more than the repository's prune.maxShare")
    parser.add_argument("--notify-url", help="webhook to tell of model state changes (deployed, failed, degraded, "
                                             "removed); a secret: prefer env GITOPS_KAITO_NOTIFY_URL, as a flag "
                                             "shows in `ps`")
    parser.add_argument("--notify-format", choices=("generic", "slack", "teams"),
                        help="payload of --notify-url: generic JSON (default), slack or teams incoming webhook")
    parser.add_argument("--notify-secret-file", help="generic: file with the HMAC key (at least 16 bytes) that "
                                                     "signs each body (X-Signature: sha256=<hex>)")
    parser.add_argument("--notify-cluster", help="this cluster's name in notifications (default: the kubeconfig "
                                                 "context, if any)")
    parser.add_argument("--commit-status", choices=("github", "gitlab"),
                        help="set a commit status on each applied commit: pending while its models progress, success "
                             "when all are Ready, failure when one is Failed, Blocked or Invalid; the token from env "
                             "GITOPS_KAITO_COMMIT_STATUS_TOKEN only")
    parser.add_argument("--commit-status-api", metavar="URL",
                        help="the API base for GitHub Enterprise (https://HOST/api/v3) or self-hosted GitLab "
                             "(https://HOST/api/v4) (default: api.github.com, gitlab.com/api/v4)")
    parser.add_argument("--commit-status-repo", metavar="OWNER/NAME",
                        help="the repository (GitLab: the project path GROUP/.../NAME) (default: from --git-url)")
    parser.add_argument("--commit-status-context", metavar="NAME",
                        help="the status context (default gitops-kaito/<instance>; set one per cluster when several "
                             "clusters follow one repository)")
    parser.add_argument("--commit-status-per-model", dest="commit_status_per_model", action="store_const", const=True,
                        help="also one status per model (<context>/<namespace>/<name>)")
    parser.add_argument("--no-watch", dest="watch", action="store_const", const=False,
                        help="LIST the managed kinds every pass instead of watching them (env GITOPS_KAITO_WATCH=false)")
    parser.add_argument("--max-in-flight", metavar="N",
                        help="writes sent at once within an apply wave (default 16; env GITOPS_KAITO_MAX_IN_FLIGHT)")
    parser.add_argument("--status-commit-interval", metavar="DURATION",
                        help="passes started by changes in the cluster commit status at most this often "
                             "(default 10s)")
    add_scope_flags(parser, env_default=False)  # env GITOPS_KAITO_INSTANCE / GITOPS_KAITO_PATHS via settings
    add_azure_flags(parser)
    parser.set_defaults(func=run, leader_election=None, allow_mass_prune=None, commit_status_per_model=None,
                        base_verbosity=1, watch=None)


def settings_from_args(args: argparse.Namespace) -> Any:
    from gitops_kaito.service.settings import RunSettings, SettingsError, resolve_settings

    flags = {name: getattr(args, name, None) for name in RunSettings.__dataclass_fields__}
    flags.pop("git_token", None)  # a token on the command line would show in `ps`
    flags.pop("commit_status_token", None)
    try:
        settings = resolve_settings(flags)
        settings.webhook_secret()
        settings.check_notify()
    except SettingsError as err:
        raise CliError(str(err)) from None
    if not settings.git_url:
        raise CliError("--git-url (or GITOPS_KAITO_GIT_URL) is required")
    from gitops_kaito.service.commitstatus import build_reporter

    try:
        build_reporter(settings)  # checked before anything connects
    except SettingsError as err:
        raise CliError(str(err)) from None
    return settings


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.adapters.kube import KubeError
    from gitops_kaito.provision.pools import PoolRunner
    from gitops_kaito.service.service import Service

    settings = settings_from_args(args)
    try:
        service = Service.build(settings, pools=PoolRunner(azure_overrides(args)))
    except KubeError as err:
        raise CliError(str(err)) from None
    except OSError as err:  # the listen address is taken or not ours
        raise CliError(f"cannot listen on {settings.listen}: {err}") from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        print(f"gitops-kaito: following {settings.git_url} ({settings.branch}), listening on {service.url}",
              flush=True)
        stop.wait()
        print("gitops-kaito: stopping (finishing the current pass)", flush=True)
    finally:
        service.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
