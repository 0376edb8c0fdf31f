"""`gitops-kaito add MODEL`: the one-command deploy. Writes a valid models/<ns>/<name>.yaml and shows the plan.

The SKU the catalog picks is written into the file, so a later catalog or price change never moves a running model.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitops_kaito.cli.common import EXIT_INVALID, EXIT_OK, CliError, add_repo_flag, open_repo_config

if TYPE_CHECKING:
    from gitops_kaito.repo.catalog import Catalog, Preset
    from gitops_kaito.repo.config import RepoConfig
    from gitops_kaito.repo.resolve import ResolvedModel

DEFAULT_SECRET = "hf-token"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "add", help="add a model request to the repository and show what it will create",
        description="Write models/<namespace>/<name>.yaml for MODEL (a KAITO preset or its Hugging Face id), "
                    "choosing the cheapest GPU SKU that fits unless --instance-type is given. Any other Hugging "
                    "Face id org/name is deployed as KAITO generates it (best effort, vllm): it needs "
                    "--instance-type, since its size is unknown here.")
    parser.add_argument("model", metavar="MODEL", nargs="?", help="preset name or Hugging Face id, e.g. phi-4-mini-instruct "
                                                       "or Qwen/Qwen3-0.6B")
    parser.add_argument("--name", help="request (Workspace) name; default: a DNS-safe form of the preset name")
    parser.add_argument("--namespace", help="namespace; default: defaults.namespace of gitops-kaito.yaml")
    parser.add_argument("--instance-type", help="GPU SKU; default: the cheapest in the allowed clouds that fits")
    parser.add_argument("--nodes", type=int, help="node count; default: KAITO's estimate")
    parser.add_argument("--provisioning", choices=["kaito", "nodeclaim", "machine", "aks", "byo"],
                        help="GPU node mode; default: defaults.provisioning of gitops-kaito.yaml")
    parser.add_argument("--model-access-secret", default=None,
                        help=f"Secret with HF_TOKEN for gated models (default for gated models: {DEFAULT_SECRET})")
    parser.add_argument("--allow-uncataloged", action="store_true",
                        help="deploy this exact Hugging Face id although it is very close to a catalog model's id "
                             "(writes spec.allowUncataloged: true)")
    parser.add_argument("--replicas", type=int,
                        help="serve the model as a KAITO InferenceSet of this many Workspaces (with --autoscale: "
                             "the count at creation)")
    parser.add_argument("--autoscale", metavar="MIN:MAX",
                        help="hand the replica count to keda-kaito-scaler within MIN..MAX (needs --threshold)")
    parser.add_argument("--threshold", type=int, help="with --autoscale: the vLLM metric value that adds a replica")
    tuning = parser.add_argument_group("a fine-tuning run (kind TuningJob) instead of a model")
    tuning.add_argument("--tuning", action="store_true", help="write a TuningJob of MODEL (a preset KAITO can tune)")
    tuning.add_argument("--method", choices=["lora", "qlora"], default="qlora", help="tuning method (default qlora)")
    tuning.add_argument("--input-url", action="append", metavar="URL", help="training data URL (repeatable)")
    tuning.add_argument("--input-image", metavar="IMAGE", help="training data image")
    tuning.add_argument("--input-claim", metavar="PVC", help="training data PersistentVolumeClaim")
    tuning.add_argument("--output-image", metavar="IMAGE", help="where the adapter is pushed")
    tuning.add_argument("--push-secret", metavar="SECRET", help="a .dockerconfigjson Secret to push the adapter with")
    tuning.add_argument("--output-claim", metavar="PVC", help="PersistentVolumeClaim the adapter is written to")
    rag = parser.add_argument_group("a RAG engine (kind RAGDeployment) instead of a model")
    rag.add_argument("--rag", action="store_true", help="write a RAGDeployment (MODEL is not used; give --name)")
    rag.add_argument("--embedding-model", metavar="ID", help="local embedding model, e.g. BAAI/bge-small-en-v1.5")
    rag.add_argument("--embedding-url", metavar="URL", help="remote embedding endpoint")
    rag.add_argument("--llm-model", metavar="NAME", help="a ModelDeployment of the namespace the engine answers with")
    rag.add_argument("--llm-url", metavar="URL", help="the LLM's chat completions URL")
    rag.add_argument("--context-window", type=int, metavar="N", help="the LLM's context window (tokens)")
    add_repo_flag(parser)
    parser.set_defaults(func=run)


def dns_name(model: str) -> str:
    """A DNS-1123 label from a preset name or HF id: 'Qwen/Qwen3.5-9B' -> 'qwen3-5-9b'."""
    base = model.rsplit("/", 1)[-1].lower()
    base = re.sub(r"[^a-z0-9-]+", "-", base)
    base = re.sub(r"-{2,}", "-", base).strip("-")
    return base[:63].rstrip("-") or "model"


@dataclass(frozen=True)
class NewRequest:
    """What `add` (and `init`) will write."""

    name: str
    namespace: str
    model: str
    instance_type: str | None
    nodes: int | None
    provisioning: str | None
    model_access_secret: str | None
    allow_uncataloged: bool = False
    replicas: int | None = None
    autoscale: tuple[int, int, int | None] | None = None  # (min, max, threshold)

    @property
    def path(self) -> str:
        return f"models/{self.namespace}/{self.name}.yaml"


def request_text(new: NewRequest, preset: Preset) -> str:
    """The request file: values quoted by the YAML dumper, so no argument can inject fields."""
    import yaml

    spec: dict[str, Any] = {"model": new.model}
    if new.instance_type:
        spec["instanceType"] = new.instance_type
    if new.nodes is not None:
        spec["nodes"] = new.nodes
    if new.provisioning:
        spec["provisioning"] = new.provisioning
    if new.model_access_secret:
        spec["modelAccessSecret"] = new.model_access_secret
    if new.allow_uncataloged:
        spec["allowUncataloged"] = True
    if new.replicas is not None:
        spec["replicas"] = new.replicas
    if new.autoscale is not None:
        low, high, threshold = new.autoscale
        spec["autoscale"] = {"minReplicas": low, "maxReplicas": high,
                             **({"threshold": threshold} if threshold is not None else {})}
    document = {"apiVersion": "gitops.kaito.sh/v1alpha1", "kind": "ModelDeployment",
                "metadata": {"name": new.name, "namespace": new.namespace}, "spec": spec}
    if preset.cataloged:
        head = f"# {preset.name} ({preset.hf_id}), served by KAITO. Schema: schemas/modeldeployment.schema.json\n"
    else:
        head = (f"# {preset.hf_id}, a Hugging Face model outside KAITO's catalog: KAITO generates it from Hugging "
                "Face (best effort).\n# Its size is not checked: instanceType and nodes are yours to get right. "
                "Schema: schemas/modeldeployment.schema.json\n")
    head += "# instanceType is immutable in KAITO: changing it later replaces the Workspace (and its nodes).\n"
    if new.model_access_secret:
        head += (f"# {preset.hf_id} is gated: create the Secret first, e.g.\n"
                 f"#   kubectl -n {new.namespace} create secret generic {new.model_access_secret} "
                 "--from-literal=HF_TOKEN=<token>\n")
    return head + yaml.safe_dump(document, sort_keys=False)


def resolve_text(text: str, shown: str, namespace: str, catalog: Catalog, config: RepoConfig) -> ResolvedModel:
    """Run text through the same checks as `validate`; raise CliError with file and line when it fails."""
    from gitops_kaito.repo.modelrequest import request_from_document, validate_document
    from gitops_kaito.repo.resolve import ResolveError, resolve_request
    from gitops_kaito.repo.yamlsource import SourceError, load_yaml_text

    try:
        doc = load_yaml_text(text, shown)
    except SourceError as err:
        raise CliError(str(err), EXIT_INVALID)
    problems = validate_document(doc)
    if problems:
        raise CliError("; ".join(str(p) for p in problems), EXIT_INVALID)
    request = request_from_document(doc.data, namespace=namespace, path=shown, default_runtime=config.runtime,
                                    default_provisioning=config.provisioning)
    try:
        return resolve_request(request, catalog, config)
    except ResolveError as err:
        line = doc.line_of(err.json_path)
        raise CliError(f"{shown}:{line}: {err.message}" if line else f"{shown}: {err.message}", EXIT_INVALID)


def plan_new(args: argparse.Namespace, root: Path, catalog: Catalog,
             config: RepoConfig) -> tuple[NewRequest, Preset, ResolvedModel, str]:
    """Decide the new request and check it completely, without writing anything."""
    from gitops_kaito.model.ownership import is_dns_label
    from gitops_kaito.repo.resolve import MODES_NEEDING_SKU, ResolveError, model_preset

    allow = bool(getattr(args, "allow_uncataloged", False))
    try:
        preset = model_preset(args.model, catalog, allow)
    except ResolveError as err:  # the same checks as spec.model in a file: close names, typo guard
        raise CliError(err.message.replace("set spec.allowUncataloged: true", "add --allow-uncataloged"), EXIT_INVALID)
    mode = args.provisioning or config.provisioning
    if not preset.cataloged and not args.instance_type and mode in MODES_NEEDING_SKU:
        raise CliError(f"{preset.name} is not in KAITO's catalog, so gitops-kaito cannot size it or choose a GPU "
                       "SKU: give --instance-type (`gitops-kaito catalog skus` lists them)", EXIT_INVALID)
    allow = allow and not preset.cataloged  # the flag only matters for an id outside the catalog
    name = args.name or dns_name(preset.name)
    namespace = args.namespace or config.default_namespace
    for what, value in (("name", name), ("namespace", namespace)):
        if not is_dns_label(value):
            raise CliError(f"{what} {value!r} is not a DNS-1123 label (lowercase letters, digits and '-', "
                           "at most 63 characters)", EXIT_INVALID)
    secret = args.model_access_secret or (DEFAULT_SECRET if preset.gated else None)
    replicas = getattr(args, "replicas", None)
    autoscale = _autoscale(getattr(args, "autoscale", None), getattr(args, "threshold", None))
    provisional = NewRequest(name, namespace, preset.name, args.instance_type, args.nodes, args.provisioning, secret,
                             allow, replicas, autoscale)
    shown = provisional.path
    resolved = resolve_text(request_text(provisional, preset), shown, namespace, catalog, config)
    sku = resolved.sku.name if resolved.sku else None
    new = NewRequest(name, namespace, preset.name, sku, args.nodes, args.provisioning, secret, allow, replicas,
                     autoscale)
    text = request_text(new, preset)
    resolved = resolve_text(text, shown, namespace, catalog, config)  # what is written is exactly what was checked
    return new, preset, resolved, text


def _autoscale(bounds: str | None, threshold: int | None) -> tuple[int, int, int | None] | None:
    if bounds is None:
        if threshold is not None:
            raise CliError("--threshold needs --autoscale MIN:MAX", EXIT_INVALID)
        return None
    low, sep, high = bounds.partition(":")
    if not sep or not low.strip().isdigit() or not high.strip().isdigit():
        raise CliError(f"--autoscale {bounds!r}: give MIN:MAX replicas, e.g. 1:4", EXIT_INVALID)
    return int(low), int(high), threshold


def priced_catalog(config: RepoConfig) -> Catalog:
    """The shipped catalog with the repository's prices, when it sets any."""
    from gitops_kaito.repo.catalog import load_catalog

    catalog = load_catalog()
    return catalog.with_prices(config.prices) if config.prices else catalog


def run(args: argparse.Namespace) -> int:
    root, config = open_repo_config(args.repo, hint=" (create a repository with `gitops-kaito init DIR`)")
    catalog = priced_catalog(config)
    if args.tuning or args.rag:
        return _run_other_kind(args, root, catalog, config)
    if not args.model:
        raise CliError("add needs MODEL (or --rag)", EXIT_INVALID)
    new, _, resolved, text = plan_new(args, root, catalog, config)
    write_new(root, new.path, text)
    print(f"created {new.path}")
    print_plan(resolved, config, root)
    return EXIT_OK


def write_new(root: Path, path: str, text: str) -> None:
    """Write a new request file; CliError when it (or its .yml twin) exists: an existing request is never replaced."""
    target = root / path
    for existing in (target, target.with_suffix(".yml")):
        if existing.exists():
            raise CliError(f"{existing.relative_to(root).as_posix()} already exists: edit it, or choose "
                           "another name", EXIT_INVALID)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("x", encoding="utf-8") as handle:  # "x": never overwrite, even if one appeared meanwhile
        handle.write(text)


def _run_other_kind(args: argparse.Namespace, root: Path, catalog: Catalog, config: RepoConfig) -> int:
    """add --tuning / --rag: a TuningJob or RAGDeployment file, checked like `validate` checks it before it is
    written (the RAG engine's model is checked against the repository by `validate`)."""
    import yaml

    from gitops_kaito.core.render import render_request
    from gitops_kaito.model.ownership import is_dns_label
    from gitops_kaito.repo.loader import KINDS
    from gitops_kaito.repo.modelrequest import validate_document
    from gitops_kaito.repo.resolve import ResolveError
    from gitops_kaito.repo.yamlsource import SourceError, load_yaml_text

    if args.tuning and args.rag:
        raise CliError("--tuning and --rag are two different kinds: give one", EXIT_INVALID)
    if args.tuning and not args.model:
        raise CliError("add --tuning needs MODEL: a preset KAITO can tune (`gitops-kaito catalog models --tuning`)",
                       EXIT_INVALID)
    name = args.name or (dns_name(args.model) + "-tuning" if args.tuning else "rag")
    namespace = args.namespace or config.default_namespace
    for what, value in (("name", name), ("namespace", namespace)):
        if not is_dns_label(value):
            raise CliError(f"{what} {value!r} is not a DNS-1123 label", EXIT_INVALID)
    spec: dict[str, Any] = {}
    if args.tuning:
        kind = "TuningJob"
        spec = {"model": args.model, "method": args.method}
        if args.instance_type:
            spec["instanceType"] = args.instance_type
        source: dict[str, Any] = {}
        if args.input_url:
            source["urls"] = list(args.input_url)
        if args.input_image:
            source["image"] = args.input_image
        if args.input_claim:
            source["volume"] = {"persistentVolumeClaim": {"claimName": args.input_claim}}
        out: dict[str, Any] = {}
        if args.output_image:
            out = {"image": args.output_image, **({"pushSecret": args.push_secret} if args.push_secret else {})}
        if args.output_claim:
            out["volume"] = {"persistentVolumeClaim": {"claimName": args.output_claim}}
        spec.update({"input": source, "output": out})
    else:
        kind = "RAGDeployment"
        if args.instance_type:
            spec["compute"] = {"instanceType": args.instance_type}
        spec["embedding"] = ({"remote": {"url": args.embedding_url}} if args.embedding_url
                             else {"local": {"model": args.embedding_model or "BAAI/bge-small-en-v1.5"}})
        if args.llm_model or args.llm_url:
            spec["llm"] = {"model": args.llm_model} if args.llm_model else {"url": args.llm_url}
        if args.context_window is not None:
            spec["contextWindowSize"] = args.context_window
    document = {"apiVersion": "gitops.kaito.sh/v1alpha1", "kind": kind,
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    path = f"models/{namespace}/{name}.yaml"
    text = f"# Schema: schemas/{KINDS[kind].schema_file}\n" + yaml.safe_dump(document, sort_keys=False)
    try:
        doc = load_yaml_text(text, path)
    except SourceError as err:
        raise CliError(str(err), EXIT_INVALID)
    problems = validate_document(doc, KINDS[kind].schema_file)
    if problems:
        raise CliError("; ".join(str(p) for p in problems), EXIT_INVALID)
    try:
        resolved = KINDS[kind].resolve(KINDS[kind].parse(doc.data, namespace, path, config), catalog, config)
    except ResolveError as err:
        line = doc.line_of(err.json_path)
        raise CliError(f"{path}:{line}: {err.message}" if line else f"{path}: {err.message}", EXIT_INVALID)
    write_new(root, path, text)
    print(f"created {path}")
    print(f"  {kind:<13} {resolved.summary}")
    if resolved.sku is not None:
        print(f"  instanceType  {resolved.sku.name} ({resolved.sku.gpu_count} x {resolved.sku.gpu_model})")
    if resolved.price_per_hour is not None:
        print(f"  price         ${resolved.price_per_hour:.2f}/hour while its node exists")
    templates = root / "templates"
    rendered = render_request(resolved, config, "uncommitted", templates if templates.is_dir() else None)
    print("  objects (in apply order):")
    for obj in rendered.objects:
        print(f"    {obj.ref}")
    print("next: commit and push; `gitops-kaito validate` also checks it against the other requests")
    return EXIT_OK


def print_plan(model: ResolvedModel, config: RepoConfig, root: Path) -> None:
    """What the request will turn into: SKU, nodes, GPUs, price and the objects the reconciler will apply."""
    from gitops_kaito.core.render import render_model

    preset = model.preset
    if preset.cataloged:
        print(f"  model         {preset.name} ({preset.hf_id})")
    else:
        print(f"  model         {preset.name} (Hugging Face; served as {preset.served_name})")
        print(f"  note          {model.note}")
    what = "inferenceset" if model.replicas is not None else "workspace"
    print(f"  {what:<13} {model.request.namespace}/{model.request.name}")
    if model.replicas is not None:
        scale = model.request.autoscale
        print(f"  replicas      {model.replicas}" + (f" at creation, then keda-kaito-scaler's within "
                                                     f"{scale.min_replicas}..{scale.max_replicas}" if scale else ""))
    print(f"  provisioning  {model.provisioning}")
    if model.sku is not None:
        sku = model.sku
        print(f"  instanceType  {sku.name} ({sku.cloud}: {sku.gpu_count} x {sku.gpu_model}, "
              f"{sku.gpu_memory_gib:g} GiB GPU memory)")
        per, all_ = (" per replica", " in all") if model.replicas is not None else ("", "")
        print(f"  nodes         {model.nodes}{per} ({model.gpus} GPU{'s' if model.gpus != 1 else ''}{all_})")
    else:
        print(f"  nodes         your existing nodes labelled {dict(model.label_selector)}")
    if model.price_per_hour is not None:
        price = model.sku.price if model.sku else None
        source = f" (on-demand list price, {price.region}, as of {price.as_of})" if price else ""
        print(f"  price         ${model.price_per_hour:.2f}/hour{source}")
    else:
        print("  price         unknown (set prices in gitops-kaito.yaml)")
    print(f"  disk          {model.disk_gib} GiB per node")
    templates = root / "templates"
    rendered = render_model(model, config, revision="uncommitted",
                            templates_dir=templates if templates.is_dir() else None)
    print("  objects (in apply order):")
    for obj in rendered.objects:
        print(f"    {obj.ref}")
    if model.provisioning == "aks":
        print(f"    AKS agent pool for {model.request.name} (created through Azure)")
    print("next: commit and push; the daemon applies it (`gitops-kaito plan` shows the diff against the cluster)")
