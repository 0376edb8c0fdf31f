"""Render+plan of a repository that mixes every request kind: Workspaces, InferenceSets, tuning runs and RAG engines.

`python bench/mixed.py [--sizes 1000,5000]`: load+render and plan (first sync: nothing live; and settled: the
rendered objects as live) in wall and CPU seconds, per size. Not part of the test suite.

Measured 2026-12-07 15:37 UTC, 2 CPUs (AMD EPYC) shared with a running test suite (load ~7), Python 3.11.7, one run:
  1,000 requests (601 Workspace models, 200 InferenceSets, 100 tuning runs, 99 RAG engines; 1,201 objects):
    render+plan 0.72 s (0.28 CPU s), settled plan 0.07 s
  5,000 requests (3,001 / 1,000 / 500 / 499; 6,001 objects): render+plan 1.71 s (1.30 CPU s), settled plan 0.44 s
Target (issue 17): render+plan of 5,000 mixed requests under 2 s: met.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import genrepo

HEADER = "apiVersion: gitops.kaito.sh/v1alpha1\n"
BACK = 3 * len(genrepo.NAMESPACES)  # 18: slot 9 - 18 is slot 1 (mod 10), same namespace (mod 6)


def tuning_text(namespace: str, name: str) -> str:
    return (f"{HEADER}kind: TuningJob\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
            "  model: phi-3-mini-128k-instruct\n  method: qlora\n  input:\n"
            "    urls: [\"https://huggingface.co/datasets/philschmid/dolly-15k-oai-style/resolve/main/train.parquet\"]\n"
            f"  output:\n    image: registry.example.com/tuned/{name}:v1\n    pushSecret: acr-push\n")


def rag_text(namespace: str, name: str, model: str) -> str:
    return (f"{HEADER}kind: RAGDeployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
            "  compute: {instanceType: Standard_NV36ads_A10_v5}\n"
            "  embedding: {local: {model: BAAI/bge-small-en-v1.5}}\n"
            f"  llm: {{model: {model}}}\n  contextWindowSize: 2048\n")


def inferenceset_text(namespace: str, name: str, index: int) -> str:
    return (f"{HEADER}kind: ModelDeployment\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n"
            f"  model: {genrepo.PRESETS[index % len(genrepo.PRESETS)]}\n  replicas: {2 + index % 3}\n")


def generate(root: Path, count: int) -> dict[str, int]:
    """`count` requests: of every 10, 6 Workspace models (genrepo's mix), 2 InferenceSets, 1 tuning run and 1 RAG
    engine bound to a Workspace model of its namespace (the first 18 files have no RAG engine)."""
    kinds = {"Workspace": 0, "InferenceSet": 0, "TuningJob": 0, "RAGDeployment": 0}
    genrepo.generate(root, count)  # every file a Workspace model; some are rewritten below
    for index in range(count):
        path = genrepo.model_path(root, index)
        ns, name = path.parent.name, path.stem
        slot = index % 10
        if slot in (3, 7):
            path.write_text(inferenceset_text(ns, name, index))
            kinds["InferenceSet"] += 1
        elif slot == 8:
            path.write_text(tuning_text(ns, name))
            kinds["TuningJob"] += 1
        elif slot == 9 and index >= BACK:
            # The model BACK files earlier: the same namespace (genrepo rotates through 6) and a Workspace (slot 1).
            path.write_text(rag_text(ns, name, genrepo.model_path(root, index - BACK).stem))
            kinds["RAGDeployment"] += 1
        else:
            kinds["Workspace"] += 1
    return kinds


def measure(size: int, workdir: Path) -> dict[str, Any]:
    from gitops_kaito.core.plan import make_plan
    from gitops_kaito.reconcile.sync import load_desired, plan_policy

    repo = workdir / f"mixed-{size}"
    kinds = generate(repo, size)
    cpu, started = time.process_time(), time.perf_counter()
    desired = load_desired(repo, "main@sha1:1111111")
    loaded = time.perf_counter()
    plan = make_plan(desired.objects, [], plan_policy(desired))
    planned, cpu_first = time.perf_counter(), time.process_time() - cpu
    if desired.errors:
        raise SystemExit(f"the generated repository has errors: {desired.errors[:3]}")
    live = [dict(o.normalised.stamped) for o in desired.objects]
    cpu2, again = time.process_time(), time.perf_counter()
    settled = make_plan(desired.objects, live, plan_policy(desired))
    settled_s, cpu_settled = time.perf_counter() - again, time.process_time() - cpu2
    by_kind: dict[str, int] = {}
    for o in desired.objects:
        by_kind[o.ref.kind] = by_kind.get(o.ref.kind, 0) + 1
    return {"requests": size, "request_kinds": kinds, "objects": len(desired.objects), "object_kinds": by_kind,
            "load_render_s": round(loaded - started, 3), "plan_s": round(planned - loaded, 3),
            "render_plan_s": round(planned - started, 3), "render_plan_cpu_s": round(cpu_first, 3),
            "creates": plan.counts()["create"], "settled_plan_s": round(settled_s, 3),
            "settled_plan_cpu_s": round(cpu_settled, 3), "settled_changes": settled.has_changes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000", help="comma-separated request counts (default %(default)s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gitops-kaito-mixed-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            print(json.dumps(measure(size, Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
