"""The catalog: KAITO's presets and GPU SKUs (from catalog/), KAITO's own vLLM node estimate, and SKU choice.

Pure: reads only the shipped catalog files. Lookups are case-insensitive, like KAITO's.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from gitops_kaito.model.resources import data_path
from gitops_kaito.repo.yamlsource import FAST_LOADER

CLOUDS = ("azure", "aws", "arc")
PRESET_STATUSES = ("supported", "deprecated", "removed")

GIB = 1024**3

# KAITO v0.12.0 vLLM NodeEstimator (`pkg/workspace/estimator/nodesestimator/estimator.go` at v0.12.0). The constants are
# KAITO's, not ours: changing them makes our node counts disagree with what KAITO will create.
GPU_MEMORY_UTILIZATION = 0.84
BASE_OVERHEAD_GIB = 2.3
WEIGHT_EXPANSION = 1.02  # vLLM's loaded weights are ~2% larger than the safetensors on disk
OVERHEAD_WEIGHT_FACTOR = 1.05
DEFAULT_MAX_MODEL_LEN = 2048

# KAITO itself has no upper limit, but multi-node vLLM serving is pipeline parallelism over Ray: each extra node
# adds a hop to every token, and a fleet of small GPUs for a model that wants big ones is a mistake to flag, not a
# plan to carry out. 8 nodes covers every supported preset on the larger SKUs (the largest, DeepSeek-V4-Pro, needs
# 2 x 8 x H100) while refusing absurd answers such as a 600 GiB model over many 24 GiB GPUs.
MAX_NODES = 8

# A Hugging Face model outside the catalog (KAITO v0.12.0 accepts any preset name containing '/': `pkg/utils/plugin/plugin.go` at v0.12.0).
# KAITO requests this much NodeClaim storage when it does not know the model (pkg/workspace/resource/node_claim.go,
# `pkg/workspace/resource/node_claim.go` at v0.12.0), and its vLLM image serves the model under the lowercase repository name (NewGenerator).
UNKNOWN_MODEL_DISK_GIB = 1024
UNCATALOGED_FAMILY = "huggingface"
# How close (difflib ratio, case-insensitive) an uncataloged id may come to a catalog id before it reads as a typo.
TYPO_RATIO = 0.9
# huggingface_hub's validate_repo_id: word characters, '-' and '.', each part starting and ending with a word
# character (its \b), the name at most 96 characters, no '--' or '..', no '.git' suffix. ASCII only here: \w
# would also admit letters the Hub refuses.
_HF_PART = r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?"
_HF_REPO_ID = re.compile(rf"{_HF_PART}/{_HF_PART}")
HF_NAME_MAX = 96


@dataclass(frozen=True)
class Price:
    """A node's hourly price in USD, where it is valid and where it came from."""

    usd_per_hour: float
    region: str
    source: str
    as_of: str


@dataclass(frozen=True)
class Preset:
    """A model KAITO knows by name."""

    name: str  # what KAITO accepts in inference.preset.name: the legacy short name if any, else the HF id
    hf_id: str
    family: str
    runtimes: tuple[str, ...]
    model_size_gib: float  # 0.0 when unknown (only for presets KAITO no longer serves)
    disk_gib: int
    token_limit: int  # 0 when unknown
    bytes_per_token: int
    supports_tuning: bool
    gated: bool  # the download needs a Hugging Face token (modelAccessSecret)
    served_name: str
    status: str  # supported | deprecated | removed
    replacement: str | None
    aliases: tuple[str, ...]
    cataloged: bool = True  # False: an arbitrary Hugging Face id KAITO generates on its own (uncataloged_preset)
    tuning_memory_gib: float = 0.0  # GPU memory one tuning job needs on its single node; 0 when it cannot be tuned
    tuning_disk_gib: int = 0  # node disk KAITO requests for a tuning job

    @property
    def supported(self) -> bool:
        return self.status == "supported"

    @property
    def tuning_problem(self) -> str:
        """Why KAITO v0.12.0 cannot fine-tune this preset, or "" when it can."""
        if not self.supported:
            return f"{self.name} is {self.status} in KAITO v0.12.0"
        if self.name in TUNING_BROKEN:
            return TUNING_BROKEN[self.name]
        if not self.supports_tuning or self.tuning_memory_gib <= 0:
            return (f"KAITO v0.12.0 cannot fine-tune {self.name}: it has tuning parameters only for the presets "
                    "`gitops-kaito catalog models --tuning` lists")
        return ""


@dataclass(frozen=True)
class GpuSku:
    """One GPU instance type as KAITO's SKU tables describe it."""

    name: str
    cloud: str
    gpu_count: int
    gpu_model: str
    gpu_memory_gib: float  # total for the node (KAITO's GPUMem)
    gpu_memory_per_gpu_gib: float
    compute_capability: float | None  # None for AMD, Trainium, Inferentia
    nvme: bool
    vendor: str
    price: Price | None
    status: str = "available"  # available | removed (dropped in KAITO v0.12.0; never chosen)

    @property
    def removed(self) -> bool:
        return self.status == "removed"

    @property
    def cuda(self) -> bool:
        return self.compute_capability is not None


@dataclass(frozen=True)
class Fit:
    """How a preset fits on a SKU: KAITO's node estimate, and whether gitops-kaito will plan it."""

    preset: Preset
    sku: GpuSku
    fits: bool
    nodes: int
    gpus_per_node: int
    total_gpus: int
    price_per_hour: float | None  # nodes x the SKU's price; None when the price is unknown
    reason: str  # why it does not fit, with the numbers; "" when it fits


# Presets KAITO lists as tunable but whose tuning cannot work at v0.12.0, with why.
TUNING_BROKEN: dict[str, str] = {
    # GetTuningParameters() looks the served name mistral-7b-v0.3 up in supported_models.yaml, which has no such
    # entry, and MustGet panics (presets/workspace/models/vllm_model.go at v0.12.0).
    "mistral-7b": ("KAITO v0.12.0 cannot fine-tune mistral-7b: its tuning parameters are looked up under "
                   "'mistral-7b-v0.3', which supported_models.yaml lacks (MustGet panics in "
                   "presets/workspace/models/vllm_model.go)"),
}


class CatalogError(ValueError):
    """The shipped catalog files are broken (a packaging or generator bug, not user input)."""


class UnknownPreset(LookupError):
    """A model name that is no preset; carries the closest names."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {', '.join(repr(s) for s in self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown model {name!r}: not a KAITO v0.12.0 preset{hint} "
                         "(`gitops-kaito catalog models` lists them)")

    def __str__(self) -> str:
        return str(self.args[0])


class RemovedPreset(LookupError):
    """A preset KAITO no longer accepts (deprecated or removed); the message names the replacement."""

    def __init__(self, preset: Preset, requested: str | None = None) -> None:
        self.preset = preset
        what = "is deprecated and rejected by KAITO v0.12.0" if preset.status == "deprecated" \
            else "was removed from KAITO and is not accepted by v0.12.0"
        asked = requested if requested and requested != preset.name else preset.name
        instead = f"; use {preset.replacement!r} instead" if preset.replacement else ""
        super().__init__(f"model {asked!r} {what}{instead}")

    def __str__(self) -> str:
        return str(self.args[0])


class Catalog:
    """Presets and SKUs, immutable once built. Build one with load_catalog()."""

    def __init__(self, presets: Iterable[Preset], skus: Iterable[GpuSku],
                 mig_profiles: Mapping[str, float] | None = None) -> None:
        self._presets = tuple(presets)
        self._skus = tuple(skus)
        # KAITO's known MIG profiles -> GPU memory of one slice in GiB (resource.partition.mode mig).
        self.mig_profiles: Mapping[str, float] = dict(mig_profiles or {})
        self._preset_index: dict[str, Preset] = {}
        for preset in self._presets:
            for key in (preset.name, preset.hf_id, *preset.aliases):
                owner = self._preset_index.setdefault(key.lower(), preset)
                if owner is not preset:
                    raise CatalogError(f"preset name {key!r} belongs to both {owner.name!r} and {preset.name!r}")
        self._sku_index: dict[str, GpuSku] = {}
        for sku in self._skus:
            if self._sku_index.setdefault(sku.name.lower(), sku) is not sku:
                raise CatalogError(f"SKU {sku.name!r} is listed twice")
        # The catalog never changes, so a fit list depends only on (preset, clouds, max-model-len); a repository
        # of thousands of models asks the same few questions (choose_sku was ~12 % of a 5,000-model render).
        self._fits_cache: dict[tuple[Preset, tuple[str, ...] | None, int | None], tuple[Fit, ...]] = {}

    # --- presets -------------------------------------------------------------------------------------------

    def presets(self) -> tuple[Preset, ...]:
        return self._presets

    def find_preset(self, name: str) -> Preset | None:
        """The preset named name (name, alias or HF id, any case), deprecated/removed ones included."""
        return self._preset_index.get(name.strip().lower())

    def preset(self, name: str) -> Preset:
        """A preset KAITO accepts. Raises UnknownPreset (with suggestions) or RemovedPreset (with replacement)."""
        found = self.find_preset(name)
        if found is None:
            raise UnknownPreset(name, self.suggest(name))
        if not found.supported:
            raise RemovedPreset(found, name)
        return found

    def close_hf_ids(self, name: str, cutoff: float = TYPO_RATIO) -> tuple[str, ...]:
        """Hugging Face ids of supported presets within `cutoff` (difflib ratio, any case) of name, closest first:
        an uncataloged id this close to a catalog one is more likely a typo than another repository."""
        wanted = name.strip().lower()
        scored: dict[str, float] = {}
        matcher = difflib.SequenceMatcher()
        for preset in self._presets:
            if not preset.supported:
                continue
            for key in (preset.hf_id, preset.name):
                if "/" not in key or key.lower() == wanted:
                    continue
                matcher.set_seqs(wanted, key.lower())
                # The quick bounds first (upper bounds of ratio()): most keys are ruled out without the full match.
                if matcher.real_quick_ratio() < cutoff or matcher.quick_ratio() < cutoff:
                    continue
                ratio = matcher.ratio()
                if ratio >= cutoff:
                    scored[preset.hf_id] = max(ratio, scored.get(preset.hf_id, 0.0))
        return tuple(sorted(scored, key=lambda k: (-scored[k], k)))

    def suggest(self, name: str, limit: int = 5) -> tuple[str, ...]:
        """Supported preset names close to name, best first."""
        wanted = name.strip().lower()
        keys = {key: preset for key, preset in self._preset_index.items() if preset.supported}
        # Compare against the part after "org/" too, so "llama-3.3-70b" finds meta-llama/... and vice versa.
        candidates: dict[str, Preset] = {}
        for key, preset in keys.items():
            candidates.setdefault(key, preset)
            candidates.setdefault(key.rsplit("/", 1)[-1], preset)
        probe = wanted.rsplit("/", 1)[-1] if wanted.rsplit("/", 1)[-1] not in ("", wanted) else wanted
        out: list[str] = []
        for probe_name in dict.fromkeys((wanted, probe)):
            for match in difflib.get_close_matches(probe_name, list(candidates), n=limit * 3, cutoff=0.6):
                out.append(candidates[match].name)
        if len(wanted) >= 3:
            out.extend(p.name for k, p in sorted(candidates.items()) if wanted in k)
        return tuple(dict.fromkeys(out))[:limit]

    # --- SKUs ----------------------------------------------------------------------------------------------

    def sku(self, name: str, clouds: Sequence[str] | None = None, include_removed: bool = False) -> GpuSku | None:
        """The SKU called name (any case) within clouds; removed SKUs only when include_removed."""
        found = self._sku_index.get(name.strip().lower())
        if found is None or (clouds is not None and found.cloud not in clouds):
            return None
        if found.removed and not include_removed:
            return None
        return found

    def skus(self, clouds: Sequence[str] | None = None, include_removed: bool = False) -> tuple[GpuSku, ...]:
        return tuple(s for s in self._skus
                     if (clouds is None or s.cloud in clouds) and (include_removed or not s.removed))

    def with_prices(self, overrides: Mapping[str, float]) -> Catalog:
        """A copy whose SKU prices are replaced by overrides (SKU name -> USD per node-hour, any case)."""
        wanted = {name.strip().lower(): float(usd) for name, usd in overrides.items()}
        unknown = sorted(name for name in overrides if name.strip().lower() not in self._sku_index)
        if unknown:
            raise KeyError(f"prices for unknown SKUs: {', '.join(unknown)}")
        bad = sorted(name for name, usd in overrides.items() if not (math.isfinite(float(usd)) and float(usd) >= 0))
        if bad:
            raise ValueError(f"prices must be finite and not negative: {', '.join(bad)}")
        skus = [replace(s, price=Price(wanted[s.name.lower()], "", "gitops-kaito.yaml", ""))
                if s.name.lower() in wanted else s for s in self._skus]
        return Catalog(self._presets, skus, self.mig_profiles)

    # --- fit -----------------------------------------------------------------------------------------------

    def fit(self, preset: Preset, sku: GpuSku, max_model_len: int | None = None) -> Fit:
        """KAITO's vLLM node estimate for preset on sku, and whether gitops-kaito will plan it."""
        return estimate_fit(preset, sku, max_model_len)

    def fits(self, preset: Preset, clouds: Sequence[str] | None = None,
             max_model_len: int | None = None) -> list[Fit]:
        """Every available SKU in clouds the preset fits on, cheapest first (see rank())."""
        return list(self._fits(preset, clouds, max_model_len))

    def _fits(self, preset: Preset, clouds: Sequence[str] | None, max_model_len: int | None) -> tuple[Fit, ...]:
        # Keyed by the preset itself (a frozen dataclass), so an edited copy of a preset is never confused with it.
        key = (preset, tuple(clouds) if clouds is not None else None, max_model_len)
        found = self._fits_cache.get(key)
        if found is None:
            fits = [self.fit(preset, sku, max_model_len) for sku in self.skus(clouds)]
            found = tuple(sorted((f for f in fits if f.fits), key=rank))
            self._fits_cache[key] = found
        return found

    def tuning_fits(self, preset: Preset, clouds: Sequence[str] | None = None) -> list[Fit]:
        """Every available SKU in clouds one tuning job of preset fits on (one node), cheapest first."""
        fits = (tuning_fit(preset, sku) for sku in self.skus(clouds))
        return sorted((f for f in fits if f.fits), key=rank)

    def choose_tuning_sku(self, preset: Preset, clouds: Sequence[str] | None = None) -> Fit:
        """The cheapest CUDA SKU a tuning job of preset fits on. Raises LookupError when none does."""
        for fit in self.tuning_fits(preset, clouds):
            if fit.sku.cuda:
                return fit
        where = ", ".join(clouds) if clouds else "any cloud"
        raise LookupError(f"no GPU SKU in {where} has the {preset.tuning_memory_gib:g} GiB of GPU memory a "
                          f"tuning job of {preset.name} needs on one node")

    def choose_sku(self, preset: Preset, clouds: Sequence[str] | None = None,
                   max_model_len: int | None = None) -> Fit:
        """The default SKU: the cheapest fitting CUDA SKU. Raises LookupError when none fits."""
        # KAITO's preset images are CUDA builds; AMD/Trainium/Inferentia SKUs are in its tables but are never
        # chosen for a user. A request may still name one explicitly.
        for fit in self._fits(preset, clouds, max_model_len):
            if fit.sku.cuda:
                return fit
        where = ", ".join(clouds) if clouds else "any cloud"
        raise LookupError(f"no GPU SKU in {where} fits {preset.name!r} ({preset.model_size_gib:g} GiB of weights) "
                          f"within {MAX_NODES} nodes")


def rank(fit: Fit) -> tuple[Any, ...]:
    """Sort key: known prices first, cheapest first; then the least GPU memory in total, fewest nodes, name.

    A deployment with no known price is never ranked above one with a price, because "cheapest" cannot be
    claimed for it; among unpriced ones the smallest total GPU memory is the proxy for cost.
    """
    price = fit.price_per_hour
    cloud = CLOUDS.index(fit.sku.cloud) if fit.sku.cloud in CLOUDS else len(CLOUDS)
    return (price is None, price if price is not None else 0.0, fit.nodes * fit.sku.gpu_memory_gib, fit.nodes,
            cloud, fit.sku.name.lower())


def estimate_fit(preset: Preset, sku: GpuSku, max_model_len: int | None = None) -> Fit:
    """KAITO v0.12.0's NodeEstimator, computed in bytes as KAITO does (`pkg/workspace/estimator/nodesestimator/estimator.go` at v0.12.0).

    per-GPU available = (node GPU memory / GPU count) x 0.84
    reserve           = 2.3 GiB + maxModelLen x BytesPerToken / GPU count
    minGPUs           = floor(size x 1.02 / ((available - reserve) / 1.05)) + 1
    nodes             = ceil(minGPUs / GPU count)
    It does not fit when available <= reserve (KAITO's estimator errors), or when it needs more than MAX_NODES.
    """
    length = DEFAULT_MAX_MODEL_LEN if max_model_len is None else max_model_len
    if length <= 0:
        raise ValueError(f"max-model-len must be positive, got {length}")

    def no(reason: str, nodes: int = 0) -> Fit:
        return Fit(preset, sku, False, nodes, sku.gpu_count, nodes * sku.gpu_count,
                   price_for(sku, nodes) if nodes else None, reason)

    if not preset.supported:
        return no(f"{preset.name} is {preset.status} in KAITO v0.12.0")
    if preset.model_size_gib <= 0:
        return no(f"{preset.name} has no known model size")
    if sku.gpu_count <= 0 or sku.gpu_memory_gib <= 0:
        return no(f"{sku.name} has no GPU memory information")
    if preset.token_limit and length > preset.token_limit:
        return no(f"max-model-len {length} exceeds {preset.name}'s token limit {preset.token_limit}")

    # resource.Quantity.Value() rounds up to whole bytes; GPU memory per GPU is an integer division in Go.
    model_bytes = math.ceil(preset.model_size_gib * GIB) * WEIGHT_EXPANSION
    per_gpu = float(round(sku.gpu_memory_gib * GIB) // sku.gpu_count)
    available = per_gpu * GPU_MEMORY_UTILIZATION
    kv_cache = float(length * preset.bytes_per_token) / sku.gpu_count
    reserve = BASE_OVERHEAD_GIB * GIB + kv_cache
    if available <= reserve:
        return no(f"{sku.name}: each GPU has {available / GIB:.1f} GiB usable "
                  f"({per_gpu / GIB:g} GiB x {GPU_MEMORY_UTILIZATION}), not more than the "
                  f"{reserve / GIB:.2f} GiB reserve (2.3 GiB + {kv_cache / GIB:.2f} GiB KV cache for "
                  f"max-model-len {length})")
    for_weights = (available - reserve) / OVERHEAD_WEIGHT_FACTOR
    min_gpus = int(model_bytes / for_weights) + 1
    nodes = -(-min_gpus // sku.gpu_count)
    if nodes > MAX_NODES:
        return no(f"{sku.name}: {preset.name} needs {min_gpus} GPUs = {nodes} nodes of {sku.gpu_count} x "
                  f"{sku.gpu_memory_per_gpu_gib:g} GiB ({model_bytes / GIB:.1f} GiB loaded weights, "
                  f"{for_weights / GIB:.1f} GiB per GPU for weights), more than the {MAX_NODES}-node limit",
                  nodes)
    return Fit(preset, sku, True, nodes, sku.gpu_count, nodes * sku.gpu_count, price_for(sku, nodes), "")


def tuning_fit(preset: Preset, sku: GpuSku) -> Fit:
    """Whether one tuning job of preset fits on one node of sku.

    KAITO tunes on exactly one node (`api/v1beta1/workspace_validation.go` at v0.12.0 refuses multinode tuning) and
    gives the job every GPU of the SKU (`pkg/workspace/tuning/preset_tuning.go`); its tuning parameters state the
    GPU memory the job needs (`presets/workspace/models/transformer_runtime_tuning_parameters.go`). KAITO's webhook
    does not compare the two; a job on a smaller SKU runs out of memory, so gitops-kaito refuses it up front.
    """
    def no(reason: str) -> Fit:
        return Fit(preset, sku, False, 1, sku.gpu_count, sku.gpu_count, price_for(sku, 1), reason)

    problem = preset.tuning_problem
    if problem:
        return no(problem)
    if sku.gpu_count <= 0 or sku.gpu_memory_gib <= 0:
        return no(f"{sku.name} has no GPU memory information")
    if sku.gpu_memory_gib < preset.tuning_memory_gib:
        return no(f"{sku.name} has {sku.gpu_memory_gib:g} GiB of GPU memory ({sku.gpu_count} x "
                  f"{sku.gpu_memory_per_gpu_gib:g} GiB); a tuning job of {preset.name} needs "
                  f"{preset.tuning_memory_gib:g} GiB on one node (KAITO tunes on one node only)")
    return Fit(preset, sku, True, 1, sku.gpu_count, sku.gpu_count, price_for(sku, 1), "")


def hf_repo_id_problem(name: str) -> str | None:
    """Why name is not a Hugging Face model repository id (org/name), or None when it is one."""
    if name.count("/") != 1:
        return "a Hugging Face repository id has exactly one '/' (org/name)"
    if "--" in name or ".." in name:
        return "a Hugging Face repository id never contains '--' or '..'"
    if name.endswith(".git"):
        return "a Hugging Face repository id never ends in '.git'"
    if not _HF_REPO_ID.fullmatch(name) or len(name.split("/", 1)[1]) > HF_NAME_MAX:
        return ("a Hugging Face repository id is org/name, each of letters, digits, '-', '_' and '.', starting "
                f"and ending with a letter, digit or '_', the name at most {HF_NAME_MAX} characters")
    return None


def uncataloged_preset(hf_id: str) -> Preset:
    """A Hugging Face model KAITO does not know by name: inference.preset.name is the id as written, and KAITO
    generates the model from Hugging Face (best effort). Nothing about its size is known here: size and token limit
    0, disk KAITO's 1024 GiB for unknown models, vllm only (transformers needs KAITO's per-model parameters)."""
    return Preset(
        name=hf_id, hf_id=hf_id, family=UNCATALOGED_FAMILY, runtimes=("vllm",), model_size_gib=0.0,
        disk_gib=UNKNOWN_MODEL_DISK_GIB, token_limit=0, bytes_per_token=0, supports_tuning=False, gated=False,
        served_name=hf_id.rsplit("/", 1)[-1].lower(), status="supported", replacement=None, aliases=(),
        cataloged=False,
    )


def price_for(sku: GpuSku, nodes: int) -> float | None:
    """USD per hour for `nodes` nodes of `sku`, None when its price is unknown. Every price figure (a fit, a resolved
    model, its status file and agent pool) comes from here, rounded to 6 decimals: prices.yaml's own precision."""
    return round(sku.price.usd_per_hour * nodes, 6) if sku.price is not None else None


# --- loading ---------------------------------------------------------------------------------------------------


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog in path (default: the shipped catalog/ folder). Cached per folder."""
    return _load_cached((path or data_path("catalog")).resolve())


@functools.lru_cache(maxsize=8)
def _load_cached(folder: Path) -> Catalog:
    presets_doc = _read(folder / "presets.yaml")
    skus_doc = _read(folder / "skus.yaml")
    prices_path = folder / "prices.yaml"
    prices_doc = _read(prices_path) if prices_path.exists() else {"prices": []}
    try:
        presets = [_preset(raw) for raw in presets_doc["presets"]]
        prices = {(p["cloud"], p["sku"].lower()): Price(float(p["usd_per_hour"]), str(p["region"]),
                                                        str(p["source"]), str(p["as_of"]))
                  for p in prices_doc.get("prices") or []}
        skus = [_sku(cloud, raw, prices.get((cloud, raw["name"].lower())))
                for cloud, rows in skus_doc["skus"].items() for raw in rows or []]
        mig = {str(k): float(v) for k, v in (skus_doc.get("mig_profiles") or {}).items()}
    except (KeyError, TypeError, ValueError) as err:
        raise CatalogError(f"catalog in {folder} is malformed: {err!r}")
    return Catalog(presets, skus, mig)


def _read(path: Path) -> dict[str, Any]:
    try:
        # libyaml: the pure-Python loader took ~0.6 s for the catalog, once per process.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=FAST_LOADER)
    except (OSError, yaml.YAMLError) as err:
        raise CatalogError(f"cannot read catalog file {path}: {err}")
    if not isinstance(data, dict):
        raise CatalogError(f"catalog file {path} is not a mapping")
    return data


def _preset(raw: dict[str, Any]) -> Preset:
    status = raw["status"]
    if status not in PRESET_STATUSES:
        raise ValueError(f"preset {raw['name']}: unknown status {status!r}")
    return Preset(
        name=raw["name"], hf_id=raw["hf_id"], family=raw["family"], runtimes=tuple(raw.get("runtimes") or ()),
        model_size_gib=float(raw.get("model_size_gib") or 0.0), disk_gib=int(raw.get("disk_gib") or 0),
        token_limit=int(raw.get("token_limit") or 0), bytes_per_token=int(raw.get("bytes_per_token") or 0),
        supports_tuning=bool(raw.get("supports_tuning")), gated=bool(raw.get("gated")),
        served_name=raw["served_name"], status=status, replacement=raw.get("replacement"),
        aliases=tuple(raw.get("aliases") or ()),
        tuning_memory_gib=float(raw.get("tuning_memory_gib") or 0.0), tuning_disk_gib=int(raw.get("tuning_disk_gib") or 0),
    )


def _sku(cloud: str, raw: dict[str, Any], price: Price | None) -> GpuSku:
    if cloud not in CLOUDS:
        raise ValueError(f"unknown cloud {cloud!r}")
    capability = raw.get("compute_capability")
    return GpuSku(
        name=raw["name"], cloud=cloud, gpu_count=int(raw["gpu_count"]), gpu_model=raw["gpu_model"],
        gpu_memory_gib=float(raw["gpu_memory_gib"]), gpu_memory_per_gpu_gib=float(raw["gpu_memory_per_gpu_gib"]),
        compute_capability=float(capability) if capability is not None else None, nvme=bool(raw["nvme"]),
        vendor=raw["vendor"], price=price, status=raw.get("status", "available"),
    )
