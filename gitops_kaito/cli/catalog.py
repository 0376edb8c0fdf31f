"""`gitops-kaito catalog models|skus|fit`: what KAITO can serve, on which GPUs, how many nodes and at what price.

Read-only and offline: everything comes from the shipped catalog (and a repo's gitops-kaito.yaml with --repo).
"""

from __future__ import annotations

import argparse
from typing import Any

from gitops_kaito.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    CliError,
    add_output_flag,
    emit,
    open_repo_config,
    print_table,
)
from gitops_kaito.repo.catalog import (
    CLOUDS,
    DEFAULT_MAX_MODEL_LEN,
    Catalog,
    Fit,
    GpuSku,
    Preset,
    RemovedPreset,
    UnknownPreset,
    load_catalog,
    tuning_fit,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("catalog", help="KAITO presets, GPU SKUs and what fits where",
                                   description="Browse the KAITO v0.12.0 catalog shipped with gitops-kaito.")
    sub = parser.add_subparsers(dest="catalog_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _usage(parser))

    models = sub.add_parser("models", help="list model presets",
                            description="List the presets KAITO accepts (--all adds deprecated and removed ones).")
    add_output_flag(models)
    models.add_argument("--all", action="store_true", help="include deprecated and removed presets")
    models.add_argument("--tuning", action="store_true", help="only presets KAITO can fine-tune (TuningJob)")
    models.set_defaults(func=run_models)

    skus = sub.add_parser("skus", help="list GPU SKUs", description="List the GPU SKUs KAITO knows, per cloud.")
    add_output_flag(skus)
    _add_cloud_flag(skus, "clouds to list (repeatable; default: all)")
    skus.add_argument("--all", action="store_true", help="include SKUs removed in KAITO v0.12.0")
    skus.add_argument("--repo", help="apply the prices of this repository's gitops-kaito.yaml")
    skus.set_defaults(func=run_skus)

    fit = sub.add_parser("fit", help="which GPU SKUs a model fits, with nodes and price",
                         description="Every SKU the model fits on, by KAITO's own node estimate, cheapest first; "
                                     "the SKU gitops-kaito would choose is marked.")
    fit.add_argument("model", metavar="MODEL", help="preset name, alias or Hugging Face id")
    add_output_flag(fit)
    _add_cloud_flag(fit, "clouds to consider (repeatable, or 'all'; default: the repo's clouds, else azure)")
    fit.add_argument("--max-model-len", type=int, metavar="N",
                     help=f"context length vLLM reserves KV cache for (default {DEFAULT_MAX_MODEL_LEN})")
    fit.add_argument("--all", action="store_true", help="also list SKUs it does not fit, with the reason")
    fit.add_argument("--tuning", action="store_true",
                     help="fit one fine-tuning job (TuningJob: one node, KAITO's tuning memory need) instead of serving")
    fit.add_argument("--repo", help="use this repository's gitops-kaito.yaml (clouds and prices)")
    fit.set_defaults(func=run_fit)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_cloud_flag(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--cloud", action="append", choices=[*CLOUDS, "all"], help=help_text)


# --- models ----------------------------------------------------------------------------------------------------


def run_models(args: argparse.Namespace) -> int:
    presets = [p for p in load_catalog().presets() if (args.all or p.supported)
               and not (getattr(args, "tuning", False) and p.tuning_problem)]
    if args.output == "table":
        rows = [{"name": p.name, "family": p.family, "size-gib": p.model_size_gib or None, "disk-gib": p.disk_gib,
                 "token-limit": p.token_limit or None, "runtimes": ",".join(p.runtimes),
                 "tuning": not p.tuning_problem,
                 "gated": p.gated, **({"status": p.status, "use-instead": p.replacement} if args.all else {})}
                for p in presets]
        print_table(rows)
    else:
        emit([_preset_json(p) for p in presets], args.output)
    return EXIT_OK


def _preset_json(p: Preset) -> dict[str, Any]:
    return {"name": p.name, "hfId": p.hf_id, "aliases": list(p.aliases), "family": p.family, "status": p.status,
            "replacement": p.replacement, "runtimes": list(p.runtimes), "modelSizeGiB": p.model_size_gib or None,
            "diskGiB": p.disk_gib, "tokenLimit": p.token_limit or None, "bytesPerToken": p.bytes_per_token or None,
            "supportsTuning": not p.tuning_problem, "tuningMemoryGiB": p.tuning_memory_gib or None,
            "tuningDiskGiB": p.tuning_disk_gib or None, "gated": p.gated, "servedName": p.served_name}


# --- skus ------------------------------------------------------------------------------------------------------


def run_skus(args: argparse.Namespace) -> int:
    catalog, _ = _catalog_for(args.repo)
    skus = catalog.skus(_clouds(args.cloud) or CLOUDS, include_removed=args.all)
    if args.output == "table":
        rows = [{"name": s.name, "cloud": s.cloud, "gpus": s.gpu_count, "gpu-model": s.gpu_model,
                 "gpu-mem-gib": s.gpu_memory_gib, "per-gpu-gib": s.gpu_memory_per_gpu_gib,
                 "cuda": s.compute_capability, "nvme": s.nvme,
                 "usd-per-hour": s.price.usd_per_hour if s.price else None,
                 "region": s.price.region if s.price else None, **({"status": s.status} if args.all else {})}
                for s in skus]
        print_table(rows)
    else:
        emit([_sku_json(s) for s in skus], args.output)
    return EXIT_OK


def _sku_json(s: GpuSku) -> dict[str, Any]:
    price = None if s.price is None else {"usdPerHour": s.price.usd_per_hour, "region": s.price.region,
                                            "source": s.price.source, "asOf": s.price.as_of}
    return {"name": s.name, "cloud": s.cloud, "gpuCount": s.gpu_count, "gpuModel": s.gpu_model,
            "gpuMemoryGiB": s.gpu_memory_gib, "gpuMemoryPerGpuGiB": s.gpu_memory_per_gpu_gib,
            "computeCapability": s.compute_capability, "nvme": s.nvme, "vendor": s.vendor, "status": s.status,
            "price": price}


# --- fit -------------------------------------------------------------------------------------------------------


def run_fit(args: argparse.Namespace) -> int:
    catalog, repo_clouds = _catalog_for(args.repo)
    try:
        preset = catalog.preset(args.model)
    except (UnknownPreset, RemovedPreset) as err:
        raise CliError(str(err), EXIT_INVALID)
    if getattr(args, "tuning", False):
        return _run_tuning_fit(args, catalog, preset, _clouds(args.cloud) or repo_clouds)
    length = args.max_model_len
    if length is not None and length <= 0:
        raise CliError(f"--max-model-len must be positive, got {length}", EXIT_INVALID)
    if length is not None and preset.token_limit and length > preset.token_limit:
        raise CliError(f"--max-model-len {length} exceeds {preset.name}'s token limit {preset.token_limit}",
                       EXIT_INVALID)
    clouds = _clouds(args.cloud) or repo_clouds
    fits = catalog.fits(preset, clouds, length)
    try:
        chosen: Fit | None = catalog.choose_sku(preset, clouds, length)
    except LookupError:
        chosen = None
    rejected = [catalog.fit(preset, s, length) for s in catalog.skus(clouds)] if args.all else []
    rejected = [f for f in rejected if not f.fits]

    if args.output == "table":
        _print_fit_table(preset, clouds, length, fits, rejected, chosen)
    else:
        emit({"model": preset.name, "hfId": preset.hf_id, "modelSizeGiB": preset.model_size_gib,
              "maxModelLen": length or DEFAULT_MAX_MODEL_LEN, "clouds": list(clouds),
              "default": _fit_json(chosen) if chosen else None,
              "fits": [_fit_json(f) for f in fits],
              **({"doesNotFit": [_fit_json(f) for f in rejected]} if args.all else {})}, args.output)
    return EXIT_OK if chosen else EXIT_INVALID


def _print_fit_table(preset: Preset, clouds: tuple[str, ...], length: int | None, fits: list[Fit],
                     rejected: list[Fit], chosen: Fit | None) -> None:
    gated = ", gated (needs modelAccessSecret)" if preset.gated else ""
    print(f"{preset.name} ({preset.hf_id}): {preset.model_size_gib:g} GiB weights, "
          f"max-model-len {length or DEFAULT_MAX_MODEL_LEN}, clouds {', '.join(clouds)}{gated}")
    rows = [{"default": chosen is not None and f.sku.name == chosen.sku.name, "sku": f.sku.name,
             "cloud": f.sku.cloud, "nodes": f.nodes, "gpus": f.total_gpus, "gpu-model": f.sku.gpu_model,
             "gpu-mem-gib": f.nodes * f.sku.gpu_memory_gib, "usd-per-hour": f.price_per_hour} for f in fits]
    if rows:
        print_table(rows)
    if chosen:
        price = f" at ${chosen.price_per_hour:g}/h" if chosen.price_per_hour is not None else ""
        print(f"default: {chosen.nodes} x {chosen.sku.name}{price}")
    else:
        print(f"no SKU in {', '.join(clouds)} that gitops-kaito would choose fits {preset.name}")
    for fit in rejected:
        print(f"does not fit: {fit.reason}")


def _run_tuning_fit(args: argparse.Namespace, catalog: Catalog, preset: Preset, clouds: tuple[str, ...]) -> int:
    if preset.tuning_problem:
        raise CliError(preset.tuning_problem, EXIT_INVALID)
    fits = catalog.tuning_fits(preset, clouds)
    try:
        chosen: Fit | None = catalog.choose_tuning_sku(preset, clouds)
    except LookupError:
        chosen = None
    rejected = [f for f in (tuning_fit(preset, s) for s in catalog.skus(clouds)) if not f.fits] if args.all else []
    if args.output == "table":
        print(f"{preset.name} ({preset.hf_id}): one tuning job needs {preset.tuning_memory_gib:g} GiB of GPU memory "
              f"on one node and {preset.tuning_disk_gib} GiB of disk, clouds {', '.join(clouds)}")
        rows = [{"default": chosen is not None and f.sku.name == chosen.sku.name, "sku": f.sku.name,
                 "cloud": f.sku.cloud, "nodes": 1, "gpus": f.total_gpus, "gpu-model": f.sku.gpu_model,
                 "gpu-mem-gib": f.sku.gpu_memory_gib, "usd-per-hour": f.price_per_hour} for f in fits]
        if rows:
            print_table(rows)
        if chosen:
            price = f" at ${chosen.price_per_hour:g}/h while the job's node exists" if chosen.price_per_hour else ""
            print(f"default: 1 x {chosen.sku.name}{price}")
        else:
            print(f"no SKU in {', '.join(clouds)} that gitops-kaito would choose holds a tuning job of {preset.name}")
        for fit in rejected:
            print(f"does not fit: {fit.reason}")
    else:
        emit({"model": preset.name, "hfId": preset.hf_id, "tuning": True,
              "tuningMemoryGiB": preset.tuning_memory_gib, "tuningDiskGiB": preset.tuning_disk_gib,
              "clouds": list(clouds), "default": _fit_json(chosen) if chosen else None,
              "fits": [_fit_json(f) for f in fits],
              **({"doesNotFit": [_fit_json(f) for f in rejected]} if args.all else {})}, args.output)
    return EXIT_OK if chosen else EXIT_INVALID


def _fit_json(f: Fit) -> dict[str, Any]:
    return {"sku": f.sku.name, "cloud": f.sku.cloud, "fits": f.fits, "nodes": f.nodes,
            "gpusPerNode": f.gpus_per_node, "totalGpus": f.total_gpus, "gpuModel": f.sku.gpu_model,
            "pricePerHour": f.price_per_hour, "reason": f.reason}


# --- shared ----------------------------------------------------------------------------------------------------


def _clouds(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return ()
    if "all" in values:
        return CLOUDS
    return tuple(dict.fromkeys(values))


def _catalog_for(repo: str | None) -> tuple[Catalog, tuple[str, ...]]:
    """The catalog with the repo's price overrides, and the repo's clouds (defaults without --repo)."""
    from gitops_kaito.repo.config import RepoConfig

    catalog = load_catalog()
    if repo is None:
        return catalog, RepoConfig().clouds
    _root, config = open_repo_config(repo, catalog)
    return (catalog.with_prices(config.prices) if config.prices else catalog), config.clouds
