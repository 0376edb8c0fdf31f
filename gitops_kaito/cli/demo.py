"""`gitops-kaito demo`: the whole GitOps loop on this machine in about a minute, with no cluster and no account.

A sandbox cluster, a local Git remote with two models, the reconciler; then a change and a rollback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import EXIT_OK, CliError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="see the whole loop work locally: sandbox cluster, Git remote, reconciler, change, rollback",
        description="Start a local sandbox (simulated KAITO, Karpenter and model server), create a model repository "
                    "with two model requests as a local bare remote, run the reconciler, and show progress until "
                    "both models are Ready with their status committed; then push a change and roll it back. "
                    "Needs no cluster, no cloud account and no network.")
    parser.add_argument("--speed", choices=["demo", "fast"], default="demo",
                        help="demo: simulated provisioning takes about half a minute; fast: seconds (tests)")
    parser.add_argument("--workdir", help="where the repository, clone and kubeconfig go (default: a new temp dir)")
    parser.add_argument("--stay", action="store_true",
                        help="keep the sandbox and reconciler running afterwards, for kubectl and chat (Ctrl-C ends)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each step may take (default 120)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from gitops_kaito.service.demo import DemoError, DemoSettings, run_demo

    if not args.verbose:
        # The demo prints its own progress; the reconciler's log lines would bury it (-v brings them back).
        for name in ("gitops_kaito", "apscheduler"):
            logging.getLogger(name).setLevel(logging.ERROR)

    settings = DemoSettings(speed=args.speed, workdir=Path(args.workdir) if args.workdir else None,
                            step_timeout_s=args.timeout, stay=args.stay)
    try:
        run_demo(settings)
    except DemoError as err:
        raise CliError(f"demo: {err}") from None
    return EXIT_OK
