"""`gitops-kaito init DIR`: a new model repository with settings, one example model and a README for its users.

The example is written by the same code as `gitops-kaito add`, and the new repository is validated before exit.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gitops_kaito.cli.common import EXIT_ERROR, EXIT_OK, CliError

EXAMPLE_MODEL = "phi-4-mini-instruct"

README = """\
# Models served by KAITO, managed with gitops-kaito

Every file under `models/<namespace>/<name>.yaml` asks for one model. gitops-kaito follows this
repository: after a merge it creates the KAITO Workspace (and the GPU nodes, depending on the
provisioning mode), and it writes each model's state back under `status/`.

## Add a model

    gitops-kaito add phi-4-mini-instruct --namespace ml     # writes models/ml/phi-4-mini-instruct.yaml
    gitops-kaito catalog models                            # every model KAITO can serve
    gitops-kaito catalog fit llama-3.1-8b-instruct         # GPU SKUs that fit, nodes, price

or copy an existing file. The fields (schema: `schemas/modeldeployment.schema.json` in gitops-kaito):

```yaml
apiVersion: gitops.kaito.sh/v1alpha1
kind: ModelDeployment
metadata:
  name: phi-4-mini               # the Workspace name; must match the file name
  namespace: ml                  # optional; must match the folder
spec:
  model: phi-4-mini-instruct     # KAITO preset name or its Hugging Face id
  instanceType: Standard_NV36ads_A10_v5   # optional: the cheapest SKU that fits when absent
  nodes: 1                       # optional: KAITO's estimate when absent
  runtime: vllm                  # vllm | transformers
  provisioning: kaito            # kaito | nodeclaim | machine | aks | byo
  nodeSelector: {apps: phi-4}    # labels of the GPU nodes (default: apps: <name>)
  config: {max-model-len: 8192}  # vLLM parameters
  adapters: []                   # LoRA adapters, at most 10: {name, image}
  modelAccessSecret: hf-token    # Secret with HF_TOKEN, for gated models (meta-llama/...)
  suspend: false                 # true removes the Workspace but keeps the request
```

## Before you open a pull request

    gitops-kaito validate            # every error as file:line: message; exit 1 when something is wrong
    gitops-kaito render              # the Kubernetes objects the requests turn into

## Remove or roll back

Delete the file (or `git revert` the commit that added it): the reconciler deletes the Workspace
and the GPU nodes it created for it. Never edit `status/` by hand: the daemon owns it.

Settings for the whole repository (default namespace, provisioning mode, clouds, prune policy,
status branch, prices) are in `gitops-kaito.yaml`.
"""

# `init --github-actions`: the README's pull-request plan, as a workflow file (tests run its shell step for real).
PLAN_WORKFLOW_PATH = ".github/workflows/gitops-kaito-plan.yaml"
PLAN_WORKFLOW = """\
# Comments the gitops-kaito plan (models, SKUs, nodes, GPUs, price per hour, cost change) on every pull request.
# Written by `gitops-kaito init --github-actions`. It reads git only: no cluster or cloud credentials are needed.
name: gitops-kaito plan
on: pull_request
permissions: {contents: read, pull-requests: write}
jobs:
  plan:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with: {fetch-depth: 0}          # the base branch must be there for --base
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: pip install gitops-kaito   # or pip install git+https://<where you host gitops-kaito>
      - name: plan
        # exit 1 with a plan written means "changes to review", not a failure; a big plan is split into several
        # comments of at most 65,000 characters (GitHub's limit): plan/comment-1.md, plan/comment-2.md, ...
        run: |
          gitops-kaito validate && gitops-kaito plan --base "origin/$BASE" --format markdown \\
            --split-dir plan || test $? -eq 1 -a -s plan/comment-1.md
        env: {BASE: "${{ github.base_ref }}"}
      - name: comment
        # a pull request from a fork gets a read-only token: the plan above still checks it, nothing is posted
        if: github.event.pull_request.head.repo.full_name == github.repository
        run: |
          gh pr comment "$PR" --edit-last --create-if-none --body-file plan/comment-1.md
          for f in $(ls plan/comment-*.md | sort -V | tail -n +2); do gh pr comment "$PR" --body-file "$f"; done
        env: {GH_TOKEN: "${{ github.token }}", PR: "${{ github.event.pull_request.number }}"}
"""

GITIGNORE = """\
# editor and OS files
.DS_Store
*.swp
.idea/
.vscode/
# local output of `gitops-kaito render`
/rendered/
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("init", help="create a new model repository",
                                   description="Create a model repository: gitops-kaito.yaml, an example model "
                                               f"({EXAMPLE_MODEL}), README.md and .gitignore.")
    parser.add_argument("dir", metavar="DIR", help="folder to create (must be empty or absent)")
    parser.add_argument("--namespace", default="default", help="namespace of the example model (default: default)")
    parser.add_argument("--github-actions", action="store_true",
                        help=f"also write {PLAN_WORKFLOW_PATH}: the plan as a comment on every pull request")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty folder (replaces only the files init writes)")
    parser.set_defaults(func=run)


def config_text() -> str:
    from gitops_kaito.repo import config

    return str(config.EXAMPLE_CONFIG)


def run(args: argparse.Namespace) -> int:
    from gitops_kaito.cli.add import NewRequest, request_text, resolve_text
    from gitops_kaito.model.ownership import is_dns_label
    from gitops_kaito.repo.catalog import load_catalog
    from gitops_kaito.repo.config import RepoConfig
    from gitops_kaito.repo.loader import load_repository

    root = Path(args.dir)
    if root.exists() and not root.is_dir():
        raise CliError(f"{root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and not args.force:
        raise CliError(f"{root} is not empty: choose a new folder, or pass --force to write into it")
    if not is_dns_label(args.namespace):
        raise CliError(f"namespace {args.namespace!r} is not a DNS-1123 label")

    catalog = load_catalog()
    config = RepoConfig()
    preset = catalog.preset(EXAMPLE_MODEL)
    draft = NewRequest(preset.name, args.namespace, preset.name, None, None, None, None)
    chosen = resolve_text(request_text(draft, preset), draft.path, args.namespace, catalog, config)
    example = NewRequest(preset.name, args.namespace, preset.name, chosen.sku.name if chosen.sku else None,
                         None, None, None)
    files = {
        "gitops-kaito.yaml": config_text(),
        example.path: request_text(example, preset),
        "README.md": README,
        ".gitignore": GITIGNORE,
    }
    if args.github_actions:
        files[PLAN_WORKFLOW_PATH] = PLAN_WORKFLOW
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    load = load_repository(root)
    if load.errors:  # our own templates failed our own checks: a bug, not the user's input
        for error in load.errors:
            print(f"  {error}")
        raise CliError(f"the new repository in {root} does not validate (a gitops-kaito bug)", EXIT_ERROR)
    print(f"new model repository in {root}: {len(load.models)} example model; next: "
          f"`cd {root} && git init && gitops-kaito validate`")
    return EXIT_OK
