"""Benchmarks of gitops-kaito: `python bench/run.py [--sizes 10,100,1000,5000] [--json FILE]`.

Prints a Markdown table (date, machine, targets) and optionally writes one JSON row per size.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` and the working tree's package importable
    sys.path.insert(0, str(ROOT))

# Only light imports at the top: the spawned worker re-imports this module, and its RSS must stay its own.
from bench import genrepo  # noqa: E402

DEFAULT_SIZES = "10,100,1000,5000"
WORKER_TIMEOUT_S = 480.0


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": os.cpu_count(),
            "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def run_size(size: int, workdir: Path, kubectl: str | None, latency_s: float = 0.0) -> dict[str, Any]:
    """One size at one API latency: everything at 0 (it also writes the manifests kubectl applies), the first sync
    alone (ours, then kubectl's) otherwise. At 0 the daemon's figures come from a second child of their own, so each
    peak RSS is that flow's alone."""
    from bench import emulator, kubectl_baseline, worker

    repo = workdir / "repo"
    if not repo.exists():
        genrepo.generate(repo, size)
    server, kubeconfig = emulator.start(workdir / f"lat{latency_s * 1000:g}", genrepo.NAMESPACES, latency_s)
    dump = workdir / "manifests"
    try:
        row = _child(server, size, worker.measure, (size, str(repo), str(kubeconfig), str(dump)), latency_s)
        if not latency_s:
            row.update(_child(server, size, worker.measure_daemon, (size, str(repo), str(kubeconfig))))
    finally:
        server.stop()
    if kubectl:
        row.update(kubectl_baseline.run(kubectl, workdir / f"kubectl{latency_s * 1000:g}", dump,
                                        list(genrepo.NAMESPACES), latency_s, again=not latency_s))
    row["latency_ms"] = latency_s * 1000
    return row


def _child(server: Any, size: int, target: Any, args: tuple[Any, ...], *extra: Any) -> dict[str, Any]:
    """Runs `target(*args, conn, *extra)` in a spawned child, answering its requests to clear and count the emulator's
    request log, and returns the row it sends."""
    from bench import emulator

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, theirs, *extra), name=f"bench-{size}")
    row: dict[str, Any] | None = None
    try:
        proc.start()
        theirs.close()
        deadline = time.monotonic() + WORKER_TIMEOUT_S
        while row is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"size {size}: the worker did not finish in {WORKER_TIMEOUT_S:.0f}s")
            if not ours.poll(0.2):
                if not proc.is_alive():
                    raise RuntimeError(f"size {size}: the worker died (exit {proc.exitcode})")
                continue
            message = ours.recv()
            if message[0] == "clear":
                server.request_log.clear()
                ours.send(None)
            elif message[0] == "count":
                ours.send(emulator.counts(server, emulator.OURS).as_dict())
            elif message[0] == "watches":  # watch streams opened so far (logged when a stream starts)
                ours.send(sum(1 for e in server.request_log.select(user_agent_prefix=emulator.OURS)
                              if e.verb == "watch"))
            elif message[0] == "error":
                raise RuntimeError(f"size {size}: the worker failed:\n{message[1]}")
            else:
                row = message[1]
        proc.join(timeout=30)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=10)
    return row


def scenarios(base: Path, git_models: int) -> dict[str, Any]:
    """The git scenarios, in a spawned child too (its imports and threads stay out of the parent)."""
    import logging

    from bench import gitloop

    logging.getLogger("gitops_kaito").setLevel(logging.ERROR)  # the daemon's per-pass lines would drown the table
    (base / "writeback").mkdir(parents=True)
    (base / "webhook").mkdir(parents=True)
    return {"writeback": gitloop.writeback(base / "writeback", git_models),
            "webhook": gitloop.webhook_latency(base / "webhook", git_models)}


def scenario_lines(s: dict[str, Any]) -> list[str]:
    wb, hook = s["writeback"], s["webhook"]

    def git_ops(p: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(p["git_network"].items()))

    lines = [f"Git scenarios ({wb['models']} models, bare repository on disk as the remote, emulator as the cluster):",
             "",
             "| pass | status commits | status files in the commit | API requests (LISTs / writes) "
             "| git operations marked network | seconds |",
             "|---|---:|---:|---|---|---:|"]
    for key, label in (("first", "first pass"), ("unchanged", "nothing changed (target 0 commits)"),
                       ("one_changed", "one model changed (target 1 commit)"), ("unchanged_again", "nothing changed")):
        p = wb[key]
        lines.append(f"| {label} | {p['commits']} | {p['status_files_changed']} "
                     f"| {p['api_requests']} ({p['api_lists']} / {p['api_writes']}) | {git_ops(p)} | {p['seconds']:.2f} |")
    lines += ["", f"Webhook to first apply ({hook['models']} models, signed GitHub push delivery on loopback, "
              f"{hook['deliveries']} deliveries): median {hook['median_s']:.3f} s, max {hook['max_s']:.3f} s "
              f"(target < 1 s); whole pass median {hook['pass_s_median']:.2f} s."]
    return lines


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def size_table(rows: list[dict[str, Any]]) -> str:
    head = ("| models | objects | load+render s | plan s | render+plan s (CPU s) | µs/model | first sync s | no-op pass s "
            "| cached no-op pass s (CPU s) | no-op requests (LISTs) | no-op writes | peak RSS MB | kubectl first apply s / requests "
            "| kubectl re-apply s / requests |")
    lines = [head, "|" + "|".join("---:" for _ in range(head.count("|") - 1)) + "|"]
    for r in rows:
        kubectl_first = kubectl_again = "n/a"
        if "kubectl_first_s" in r:
            kubectl_first = f"{r['kubectl_first_s']:.2f} / {r['kubectl_first_requests']}"
            kubectl_again = f"{r['kubectl_noop_s']:.2f} / {r['kubectl_noop_requests']}"
        lines.append(
            f"| {r['models']} | {r['objects']} | {fmt(r['load_render_s'])} | {fmt(r['plan_s'])} "
            f"| {fmt(r['render_plan_s'])} ({fmt(r['render_plan_cpu_s'])}) | {r['render_plan_s'] / r['models'] * 1e6:.0f} | {fmt(r['first_sync_s'])} "
            f"| {fmt(r['noop_sync_s'])} | {fmt(r.get('noop_cached_s'))} ({fmt(r.get('noop_cached_cpu_s'))}) "
            f"| {r['noop_api_requests']} ({r['noop_lists']}) | {r['noop_writes']} "
            f"| {fmt(r['peak_rss_mb'], 0)} | {kubectl_first} | {kubectl_again} |")
    return "\n".join(lines)


def edit_scenario(base: Path, models: int, kubectl: str | None) -> dict[str, Any]:
    """The hand-edit scenario: the emulator here, the daemon in a spawned process of its own (bench/watchloop)."""
    import logging

    from bench import watchloop

    logging.getLogger("gitops_kaito").setLevel(logging.ERROR)
    base.mkdir(parents=True)
    return watchloop.hand_edit(base, models, kubectl)


def latency_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| models | API latency ms | first sync s (CPU s) | requests | its Events sent by s (requests with them) "
             "| kubectl apply --server-side s | requests | ours / kubectl |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        theirs = r.get("kubectl_first_s")
        ratio = f"{r['first_sync_s'] / theirs:.2f}" if theirs else "n/a"
        lines.append(f"| {r['models']} | {r['latency_ms']:g} | {fmt(r['first_sync_s'])} ({fmt(r.get('first_sync_cpu_s'))}) "
                     f"| {r.get('first_requests', 'n/a')} | {fmt(r.get('first_events_done_s'))} "
                     f"({r.get('first_requests_with_events', 'n/a')}) | {fmt(theirs)} "
                     f"| {r.get('kubectl_first_requests', 'n/a')} | {ratio} |")
    return "\n".join(lines)


def daemon_table(rows: list[dict[str, Any]], edits: list[dict[str, Any]]) -> str:
    by_size = {e["models"]: e for e in edits}
    lines = ["| models | daemon no-op pass s (CPU s) | requests | writes | re-planned pass s (requests) "
             "| hand edit -> correction s, median / max | kubectl re-apply s / requests | peak RSS MB (one-shot / with "
             "the daemon's caches) |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "daemon_noop_s" not in r:
            continue
        e = by_size.get(r["models"])
        edit = f"{e['median_s']:.2f} / {e['max_s']:.2f}" if e else "n/a"
        kubectl_again = f"{r['kubectl_noop_s']:.2f} / {r['kubectl_noop_requests']}" if "kubectl_noop_s" in r else "n/a"
        lines.append(f"| {r['models']} | {r['daemon_noop_s']:.4f} ({r['daemon_noop_cpu_s']:.4f}) "
                     f"| {r['daemon_noop_requests']} | {r['daemon_noop_writes']} "
                     f"| {r['daemon_replan_s']:.2f} ({r['daemon_replan_requests']}) | {edit} | {kubectl_again} "
                     f"| {fmt(r['peak_rss_mb'], 0)} / {fmt(r['peak_rss_daemon_mb'], 0)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated model counts (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write the rows and the scenario figures to this file")
    parser.add_argument("--no-kubectl", action="store_true", help="skip the kubectl baseline")
    parser.add_argument("--no-git", action="store_true", help="skip the git scenarios (write-back, webhook)")
    parser.add_argument("--git-models", type=int, default=100, help="models in the git scenarios (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the generated repositories (printed at the end)")
    parser.add_argument("--latencies", default="0,5,20",
                        help="API latencies in ms for the first-sync comparison (default %(default)s)")
    parser.add_argument("--edit-sizes", default="1000,5000",
                        help="model counts of the hand-edit scenario with the real daemon ('' to skip)")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated integers")
    from bench import kubectl_baseline

    kubectl = None if args.no_kubectl else kubectl_baseline.kubectl_path()
    info = machine()
    info["kubectl"] = kubectl_baseline.kubectl_version(kubectl) if kubectl else "absent"
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="gitops-kaito-bench-"))
    latencies = [float(x) / 1000 for x in args.latencies.split(",") if x.strip()]
    rows: list[dict[str, Any]] = []
    slow: list[dict[str, Any]] = []
    for size in sizes:
        for latency in sorted(set([0.0, *latencies])):
            print(f"size {size}, latency {latency * 1000:g} ms ...", file=sys.stderr, flush=True)
            row = run_size(size, base / f"n{size}", kubectl, latency)
            (rows if latency == 0 else slow).append(row)
    first_rows = sorted([*(r for r in rows if 0.0 in latencies), *slow], key=lambda r: (r["models"], r["latency_ms"]))
    edits: list[dict[str, Any]] = []
    for size in [int(x) for x in args.edit_sizes.split(",") if x.strip()]:
        print(f"hand edit, {size} models ...", file=sys.stderr, flush=True)
        edits.append(edit_scenario(base / f"edit{size}", size, kubectl))  # the daemon gets a process of its own
    extra: dict[str, Any] = {}
    if not args.no_git:
        print("git scenarios ...", file=sys.stderr, flush=True)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            extra = pool.apply(scenarios, (base / "git", args.git_models))
    info["total_s"] = round(time.monotonic() - started, 1)

    print(f"gitops-kaito benchmarks, {info['date']}: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
          f"kubectl {info['kubectl']}; total {info['total_s']} s")
    print()
    print(size_table(rows))
    print()
    print("First sync against API latency (a fresh emulator each; kubectl on another fresh one):")
    print()
    print(latency_table(first_rows))
    print()
    print("The watch-driven daemon:")
    print()
    print(daemon_table(rows, edits))
    if extra:
        print()
        print("\n".join(scenario_lines(extra)))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows, "latency_rows": slow, "hand_edit": edits,
                                         **extra}, indent=2) + "\n")
    if args.keep:
        print(f"\nworking files: {base}", file=sys.stderr)
    else:
        import shutil

        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
