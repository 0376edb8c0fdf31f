"""`gitops-kaito sandbox`: runs the local KAITO sandbox (API emulator + simulated KAITO/Karpenter) in the foreground.

Prints the kubeconfig path any client can use, and stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gitops_kaito.cli.common import EXIT_OK, CliError
from gitops_kaito.repo.config import SettingsError, parse_duration


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sandbox", help="run a local Kubernetes API with simulated KAITO and Karpenter",
        description="Start the sandbox in the foreground: a loopback Kubernetes API with KAITO's and Karpenter's "
                    "CRDs, simulated KAITO, Karpenter and model-server controllers. Ctrl-C stops it.")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--kubeconfig-out", type=Path, help="write the kubeconfig here (default: a temp file)")
    parser.add_argument("--speed", choices=["fast", "demo"], default="demo",
                        help="demo: seconds per step, like a small cluster; fast: as quick as possible")
    parser.add_argument("--byo", action="store_true",
                        help="KAITO with bring-your-own nodes (no auto-provisioning) instead of NodeClaims")
    parser.add_argument("--crds-only", action="store_true",
                        help="serve the CRDs with no simulated controllers (no KAITO, so no KAITO webhook): what a "
                             "kind cluster with deploy/crds applied is, the target the cluster tests recommend")
    parser.add_argument("--latency", default="0s",
                        help="added to every API request, e.g. 20ms: what a real API server's round trip costs "
                             "(default 0s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.sandbox import Sandbox, SandboxSettings

    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be between 0 and 65535, not {args.port}")
    try:
        latency = parse_duration(args.latency)
    except (ValueError, SettingsError) as err:
        raise CliError(f"--latency: {err}") from None
    if latency < 0 or latency > 10:
        raise CliError(f"--latency must be between 0s and 10s, not {args.latency}")
    settings = SandboxSettings(speed=args.speed, node_provisioning="byo" if args.byo else "nap", port=args.port,
                               kubeconfig_path=args.kubeconfig_out.resolve() if args.kubeconfig_out else None,
                               latency_s=latency, controllers=not args.crds_only)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sb = Sandbox(settings).start()
        except OSError as err:
            raise CliError(f"cannot start the sandbox on 127.0.0.1:{args.port}: {err.strerror or err}")
        try:
            mode = "bring-your-own nodes" if args.byo else "node auto-provisioning (NodeClaims)"
            lag = f", {latency * 1000:g} ms added per request" if latency else ""
            print(f"sandbox API: {sb.url} (speed {args.speed}, KAITO with {mode}{lag})")
            print(f"kubeconfig: {sb.kubeconfig_path}")
            print(f"try: kubectl --kubeconfig {sb.kubeconfig_path} get workspaces,nodeclaims,nodes -A")
            print("press Ctrl-C to stop")
            sys.stdout.flush()
            while not stop.wait(0.5):
                pass
            print("stopping sandbox")
        finally:
            sb.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("sandbox stopped")
    return EXIT_OK
