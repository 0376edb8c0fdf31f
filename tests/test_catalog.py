"""Tests for the catalog: shipped data, lookups and their errors, KAITO's node estimate, SKU choice and prices.

The expected node counts are worked out by hand in the comments from KAITO's published constants, not recomputed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from gitops_kaito.repo.catalog import (
    MAX_NODES,
    Catalog,
    RemovedPreset,
    UnknownPreset,
    load_catalog,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


# --- the shipped data ------------------------------------------------------------------------------------------


def test_counts_match_kaito_v0_12_0(catalog: Catalog) -> None:
    presets = catalog.presets()
    assert len(presets) == 65  # 30 legacy names + 35 catalog-only HF ids
    statuses = [p.status for p in presets]
    assert statuses.count("supported") == 60
    assert statuses.count("deprecated") == 1  # phi-2
    assert statuses.count("removed") == 4  # the Falcon presets
    assert {c: len(catalog.skus([c])) for c in ("azure", "aws", "arc")} == {"azure": 14, "aws": 35, "arc": 8}
    removed = [s for s in catalog.skus(include_removed=True) if s.removed]
    assert len(removed) == 7 + 24 + 2
    assert all(s.compute_capability is not None and s.compute_capability < 8.0 for s in removed)


def test_committed_catalog_is_what_the_generator_writes(shared_kaito: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("build_catalog", REPO_ROOT / "tools" / "build_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--shared", str(shared_kaito), "--out", str(tmp_path)]) == 0
    # The counts above, checked against the facts themselves rather than our copy of them.
    import yaml

    facts = yaml.safe_load((shared_kaito / "presets.yaml").read_text())["presets"]
    assert [p["kind"] for p in facts].count("legacy-preset") == 30 and len(facts) == 65
    tables = yaml.safe_load((shared_kaito / "gpu_skus.yaml").read_text())["skus"]
    assert {cloud: len(rows) for cloud, rows in tables.items()} == {"azure": 14, "aws": 35, "arc": 8}
    for name in ("presets.yaml", "skus.yaml", "prices.yaml"):
        assert (tmp_path / name).read_text() == (REPO_ROOT / "catalog" / name).read_text(), \
            f"catalog/{name} is stale: run python tools/build_catalog.py"


def test_preset_fields(catalog: Catalog) -> None:
    llama = catalog.preset("llama-3.3-70b-instruct")
    assert llama.hf_id == "meta-llama/Llama-3.3-70B-Instruct"
    assert llama.model_size_gib == 131.42 and llama.disk_gib == 211
    assert llama.bytes_per_token == 327680 and llama.token_limit == 131072
    assert llama.gated and llama.runtimes == ("vllm", "transformers") and not llama.supports_tuning
    phi = catalog.preset("phi-4-mini-instruct")
    assert not phi.gated and phi.supports_tuning and phi.runtimes == ("vllm",)
    mistral = catalog.preset("mistral-7b")
    assert mistral.served_name == "mistral-7b-v0.3"  # renamed in KAITO v0.11.0
    qwen = catalog.preset("Qwen/Qwen3.5-9B")
    assert qwen.name == "Qwen/Qwen3.5-9B"  # catalog-only models are named by their HF id


def test_sku_fields(catalog: Catalog) -> None:
    nd = catalog.sku("Standard_ND96asr_A100_v4")
    assert nd is not None
    assert (nd.gpu_count, nd.gpu_memory_gib, nd.gpu_memory_per_gpu_gib, nd.nvme) == (8, 320.0, 40.0, False)
    assert nd.compute_capability == 8.0 and nd.vendor == "NVIDIA" and nd.cloud == "azure"
    assert nd.price is not None and nd.price.usd_per_hour == 27.197 and nd.price.region == "eastus"
    assert nd.price.as_of == "2026-06-18" and nd.price.source.startswith("https://github.com/Azure/")
    h200 = catalog.sku("p5e.48xlarge")
    assert h200 is not None and h200.price is None  # the source has no on-demand price for it
    arc = catalog.sku("Standard_NC4_A2")
    assert arc is not None and arc.cloud == "arc" and arc.price is None


# --- lookups ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["phi-4-mini-instruct", "PHI-4-Mini-Instruct", "microsoft/Phi-4-mini-instruct",
                                  "microsoft/phi-4-mini-instruct", "  phi-4-mini-instruct "])
def test_lookup_by_name_hf_id_any_case(catalog: Catalog, name: str) -> None:
    assert catalog.preset(name).name == "phi-4-mini-instruct"


def test_lookup_by_alias(catalog: Catalog) -> None:
    assert catalog.preset("gemma-3-4b-it").name == "gemma-3-4b-instruct"  # served name
    assert catalog.preset("qwen3.5-9b").name == "Qwen/Qwen3.5-9B"


@pytest.mark.parametrize(("name", "status", "replacement"), [
    ("phi-2", "deprecated", "phi-4-mini-instruct"),
    ("microsoft/phi-2", "deprecated", "phi-4-mini-instruct"),
    ("falcon-7b", "removed", "mistral-7b"),
    ("Falcon-7B-Instruct", "removed", "mistral-7b-instruct"),
    ("falcon-40b", "removed", "gpt-oss-20b"),
    ("tiiuae/falcon-40b-instruct", "removed", "gpt-oss-20b"),
])
def test_deprecated_and_removed_name_the_replacement(catalog: Catalog, name: str, status: str,
                                                     replacement: str) -> None:
    with pytest.raises(RemovedPreset) as err:
        catalog.preset(name)
    assert err.value.preset.status == status
    message = str(err.value)
    assert name in message and f"use {replacement!r} instead" in message
    assert ("deprecated" if status == "deprecated" else "removed") in message
    assert catalog.preset(replacement).supported
    found = catalog.find_preset(name)
    assert found is not None and found.status == status  # find_preset never raises


@pytest.mark.parametrize(("typo", "expected"), [
    ("phi-4-mini", "phi-4-mini-instruct"),
    ("llama-3.3-70b", "llama-3.3-70b-instruct"),
    ("lama-3.1-8b-instruct", "llama-3.1-8b-instruct"),
    ("Qwen/Qwen3.5-9", "Qwen/Qwen3.5-9B"),
    ("gpt-oss-12b", "gpt-oss-120b"),
])
def test_unknown_names_get_suggestions(catalog: Catalog, typo: str, expected: str) -> None:
    with pytest.raises(UnknownPreset) as err:
        catalog.preset(typo)
    assert err.value.name == typo
    assert expected in err.value.suggestions
    assert "did you mean" in str(err.value) and expected in str(err.value)
    assert catalog.find_preset(typo) is None


def test_suggestions_never_offer_removed_presets(catalog: Catalog) -> None:
    with pytest.raises(UnknownPreset) as err:
        catalog.preset("falcon-7b-chat")
    assert not any("falcon" in s for s in err.value.suggestions)


def test_nonsense_gets_no_suggestions(catalog: Catalog) -> None:
    with pytest.raises(UnknownPreset) as err:
        catalog.preset("zz")
    assert err.value.suggestions == ()


def test_sku_lookup_is_case_insensitive_and_filters(catalog: Catalog) -> None:
    sku = catalog.sku("standard_nc24ADS_a100_v4")
    assert sku is not None and sku.name == "Standard_NC24ads_A100_v4"
    assert catalog.sku("Standard_NC24ads_A100_v4", clouds=["aws"]) is None
    assert catalog.sku("g5.xlarge", clouds=["aws", "arc"]) is not None
    assert catalog.sku("nonexistent") is None
    assert catalog.sku("Standard_NC4as_T4_v3") is None  # removed in v0.12.0
    t4 = catalog.sku("Standard_NC4as_T4_v3", include_removed=True)
    assert t4 is not None and t4.removed and t4.gpu_model == "NVIDIA T4"


def test_sku_names_are_unique_across_clouds(catalog: Catalog) -> None:
    names = [s.name.lower() for s in catalog.skus(include_removed=True)]
    assert len(names) == len(set(names))


# --- KAITO's node estimate -------------------------------------------------------------------------------------
# For llama-3.3-70b-instruct: 131.42 GiB of weights -> 131.42 x 1.02 = 134.05 GiB loaded; BytesPerToken 327680,
# so the KV cache for maxModelLen 2048 is 2048 x 327680 B = 640 MiB = 0.625 GiB per node, split across its GPUs.


@pytest.mark.parametrize(("sku", "max_len", "nodes", "gpus"), [
    # 1 x 80 GiB: 80 x 0.84 = 67.2 usable; reserve 2.3 + 0.625 = 2.925; (67.2 - 2.925) / 1.05 = 61.21 GiB for
    # weights; 134.05 / 61.21 = 2.19 -> 3 GPUs -> 3 nodes.
    ("Standard_NC24ads_A100_v4", None, 3, 3),
    # 2 x 80 GiB: reserve 2.3 + 0.3125; 61.51 GiB for weights; 2.18 -> 3 GPUs -> 2 nodes.
    ("Standard_NC48ads_A100_v4", None, 2, 4),
    # KAITO's own example deploys it on NC48ads_A100_v4 with count 2 and max-model-len 16384:
    # KV 16384 x 327680 / 2 = 2.5 GiB; (67.2 - 4.8) / 1.05 = 59.43; 134.05 / 59.43 = 2.26 -> 3 GPUs -> 2 nodes.
    ("Standard_NC48ads_A100_v4", 16384, 2, 4),
    # 4 x 80 GiB: 3 GPUs needed, one node has 4.
    ("Standard_NC96ads_A100_v4", None, 1, 4),
    # 8 x 40 GiB: 40 x 0.84 = 33.6; reserve 2.3 + 0.078; 29.74 GiB for weights; 4.51 -> 5 GPUs -> 1 node.
    ("Standard_ND96asr_A100_v4", None, 1, 8),
    # AWS p4d is the same 8 x 40 GiB A100 node.
    ("p4d.24xlarge", None, 1, 8),
])
def test_llama_70b_node_estimate(catalog: Catalog, sku: str, max_len: int | None, nodes: int, gpus: int) -> None:
    found = catalog.sku(sku)
    assert found is not None
    fit = catalog.fit(catalog.preset("llama-3.3-70b-instruct"), found, max_len)
    assert (fit.fits, fit.nodes, fit.total_gpus, fit.gpus_per_node, fit.reason) == (True, nodes, gpus,
                                                                                  found.gpu_count, "")
    assert found.price is not None and fit.price_per_hour == pytest.approx(nodes * found.price.usd_per_hour)


def test_too_many_nodes_does_not_fit(catalog: Catalog) -> None:
    # 1 x 24 GiB A10: 20.16 usable; (20.16 - 2.925) / 1.05 = 16.41 GiB; 134.05 / 16.41 = 8.17 -> 9 nodes > 8.
    sku = catalog.sku("Standard_NV36ads_A10_v5")
    assert sku is not None
    fit = catalog.fit(catalog.preset("llama-3.3-70b-instruct"), sku)
    assert not fit.fits and fit.nodes == 9 > MAX_NODES
    assert "9 GPUs" in fit.reason and "8-node limit" in fit.reason


def test_reserve_larger_than_gpu_does_not_fit(catalog: Catalog) -> None:
    preset = catalog.preset("phi-3-mini-128k-instruct")  # 7.12 GiB, BytesPerToken 393216
    a10, a100 = catalog.sku("Standard_NV36ads_A10_v5"), catalog.sku("Standard_NC24ads_A100_v4")
    assert a10 is not None and a100 is not None
    # Full context 131072 x 393216 B = 48 GiB of KV cache: more than the 20.16 GiB an A10 offers.
    fit = catalog.fit(preset, a10, 131072)
    assert not fit.fits and fit.nodes == 0 and fit.price_per_hour is None
    assert "20.2 GiB usable" in fit.reason and "50.30 GiB reserve" in fit.reason
    # An 80 GiB A100: (67.2 - 50.3) / 1.05 = 16.1 GiB for 7.26 GiB of weights -> 1 node.
    fit = catalog.fit(preset, a100, 131072)
    assert fit.fits and fit.nodes == 1
    # The default context (2048) fits the A10 easily: 0.75 GiB KV cache.
    assert catalog.fit(preset, a10).nodes == 1


def test_max_model_len_beyond_token_limit_does_not_fit(catalog: Catalog) -> None:
    sku = catalog.sku("Standard_NC24ads_A100_v4")
    assert sku is not None
    fit = catalog.fit(catalog.preset("phi-3-mini-4k-instruct"), sku, 8192)
    assert not fit.fits and "token limit 4096" in fit.reason
    with pytest.raises(ValueError):
        catalog.fit(catalog.preset("phi-3-mini-4k-instruct"), sku, 0)


def test_removed_preset_never_fits(catalog: Catalog) -> None:
    sku = catalog.sku("Standard_ND96amsr_A100_v4")
    falcon = catalog.find_preset("falcon-7b")
    assert sku is not None and falcon is not None
    fit = catalog.fit(falcon, sku)
    assert not fit.fits and "removed" in fit.reason


# --- choosing a SKU --------------------------------------------------------------------------------------------


def test_choose_cheapest_by_price_per_cloud(catalog: Catalog) -> None:
    phi = catalog.preset("phi-4-mini-instruct")
    azure = catalog.choose_sku(phi, ["azure"])
    assert (azure.sku.name, azure.nodes, azure.price_per_hour) == ("Standard_NV36ads_A10_v5", 1, 3.2)
    aws = catalog.choose_sku(phi, ["aws"])
    assert (aws.sku.name, aws.nodes, aws.price_per_hour) == ("g6.xlarge", 1, 0.8048)
    assert catalog.choose_sku(phi, ["azure", "aws"]).sku.name == "g6.xlarge"


def test_choose_counts_every_node_in_the_price(catalog: Catalog) -> None:
    # llama-3.3-70b on Azure: 3 x NC24ads ($11.019) beats 2 x NC48ads ($14.692) and 1 x NC96ads ($14.692).
    fit = catalog.choose_sku(catalog.preset("llama-3.3-70b-instruct"), ["azure"])
    assert (fit.sku.name, fit.nodes, fit.price_per_hour) == ("Standard_NC24ads_A100_v4", 3, 11.019)
    prices = [f.price_per_hour for f in catalog.fits(catalog.preset("llama-3.3-70b-instruct"), ["azure"])]
    known = [p for p in prices if p is not None]
    assert prices[: len(known)] == sorted(known)  # cheapest first; the one unpriced SKU (NG32adms) comes last
    assert prices[len(known):] == [None]


def test_choose_by_memory_when_no_prices(catalog: Catalog) -> None:
    # Arc has no prices: the smallest total GPU memory wins; four 1 x 16 GiB SKUs tie, the name decides.
    fit = catalog.choose_sku(catalog.preset("phi-4-mini-instruct"), ["arc"])
    assert fit.price_per_hour is None and fit.sku.gpu_memory_gib == 16.0 and fit.nodes == 1
    assert fit.sku.name == "Standard_NC4_A16"
    # phi-3-medium (26 GiB -> 26.52 loaded) on 16 GiB GPUs: 13.44 usable, ~10.3 GiB left for weights per GPU, so
    # 3 GPUs. Three 1-GPU nodes hold 48 GiB in total; two 2-GPU nodes (4 GPUs) would hold 64 GiB: the smaller wins.
    fit = catalog.choose_sku(catalog.preset("phi-3-medium-4k-instruct"), ["arc"])
    assert (fit.nodes, fit.total_gpus, fit.sku.gpu_count) == (3, 3, 1)


def test_priced_skus_rank_before_unpriced(catalog: Catalog) -> None:
    fits = catalog.fits(catalog.preset("phi-4-mini-instruct"), ["azure", "arc"])
    priced = [f.price_per_hour is not None for f in fits]
    assert priced == sorted(priced, reverse=True) and priced[0] and not priced[-1]
    assert catalog.choose_sku(catalog.preset("phi-4-mini-instruct"), ["azure", "arc"]).sku.cloud == "azure"


def test_choice_is_deterministic(catalog: Catalog) -> None:
    preset = catalog.preset("gpt-oss-20b")
    first = [f.sku.name for f in catalog.fits(preset, ["azure", "aws", "arc"])]
    shuffled = Catalog(reversed(catalog.presets()), reversed(catalog.skus(include_removed=True)))
    assert [f.sku.name for f in shuffled.fits(preset, ["azure", "aws", "arc"])] == first


def test_removed_and_non_cuda_skus_are_never_chosen(catalog: Catalog) -> None:
    phi = catalog.preset("phi-4-mini-instruct")
    # Even at a near-zero price, the AMD V620 is listed as fitting but not chosen; the T4 is not even listed.
    cheap = catalog.with_prices({"Standard_NG32ads_V620_v1": 0.01, "Standard_NC4as_T4_v3": 0.001})
    fits = cheap.fits(phi, ["azure"])
    assert fits[0].sku.name == "Standard_NG32ads_V620_v1"
    assert all(not f.sku.removed for f in fits)
    assert cheap.choose_sku(phi, ["azure"]).sku.name == "Standard_NV36ads_A10_v5"


def test_nothing_fits_raises(catalog: Catalog) -> None:
    # DeepSeek-V4-Pro (805 GiB) needs more than 8 nodes of anything Arc offers (at most 2 x 16 GiB per node).
    with pytest.raises(LookupError, match="no GPU SKU in arc fits"):
        catalog.choose_sku(catalog.preset("deepseek-ai/DeepSeek-V4-Pro"), ["arc"])


def test_every_supported_preset_has_a_default_on_azure(catalog: Catalog) -> None:
    for preset in catalog.presets():
        if preset.supported:
            fit = catalog.choose_sku(preset, ["azure"])
            assert fit.fits and fit.sku.cloud == "azure" and 1 <= fit.nodes <= MAX_NODES


# --- prices ----------------------------------------------------------------------------------------------------


def test_price_overrides(catalog: Catalog) -> None:
    phi = catalog.preset("phi-4-mini-instruct")
    cheaper = catalog.with_prices({"standard_nc24ads_a100_v4": 1.5, "Standard_NC4_A2": 0.2})
    sku = cheaper.sku("Standard_NC24ads_A100_v4")
    assert sku is not None and sku.price is not None
    assert (sku.price.usd_per_hour, sku.price.source) == (1.5, "gitops-kaito.yaml")
    assert cheaper.choose_sku(phi, ["azure"]).sku.name == "Standard_NC24ads_A100_v4"
    assert cheaper.choose_sku(phi, ["arc"]).price_per_hour == 0.2
    # The original is untouched.
    original = catalog.sku("Standard_NC24ads_A100_v4")
    assert original is not None and original.price is not None and original.price.usd_per_hour == 3.673
    assert catalog.choose_sku(phi, ["azure"]).sku.name == "Standard_NV36ads_A10_v5"


def test_price_overrides_reject_unknown_and_negative(catalog: Catalog) -> None:
    with pytest.raises(KeyError, match="Standard_Bogus"):
        catalog.with_prices({"Standard_Bogus": 1.0})
    with pytest.raises(ValueError, match=r"g5\.xlarge"):
        catalog.with_prices({"g5.xlarge": -1.0})


def test_load_catalog_is_cached_and_reads_a_folder(tmp_path: Path, catalog: Catalog) -> None:
    assert load_catalog() is catalog
    for name in ("presets.yaml", "skus.yaml"):
        (tmp_path / name).write_text((REPO_ROOT / "catalog" / name).read_text())
    unpriced = load_catalog(tmp_path)  # prices.yaml is optional
    assert unpriced is not catalog and all(s.price is None for s in unpriced.skus())
    assert len(unpriced.presets()) == 65


def test_fit_uses_the_sku_as_given(catalog: Catalog) -> None:
    # Callers may pass a SKU built elsewhere (e.g. from BYO node labels); fit must not re-read the catalog.
    sku = catalog.sku("Standard_NC24ads_A100_v4")
    assert sku is not None
    doubled = replace(sku, name="custom", gpu_count=2, gpu_memory_gib=160.0, price=None)
    fit = catalog.fit(catalog.preset("llama-3.3-70b-instruct"), doubled)
    assert (fit.nodes, fit.price_per_hour) == (2, None)


# --- the CLI ---------------------------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from gitops_kaito.cli import main

    code = main(["catalog", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_models_table_lists_supported_only(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "FAMILY", "SIZE-GIB"]
    assert len(lines) == 1 + 60
    assert any(line.startswith("phi-4-mini-instruct ") for line in lines)
    assert not any(line.startswith(("phi-2 ", "falcon-")) for line in lines)


def test_cli_models_all_json(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = run_cli(capsys, "models", "--all", "-o", "json")
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)}
    assert len(models) == 65
    assert models["phi-2"]["status"] == "deprecated" and models["phi-2"]["replacement"] == "phi-4-mini-instruct"
    assert models["llama-3.3-70b-instruct"]["gated"] is True
    assert models["llama-3.3-70b-instruct"]["modelSizeGiB"] == 131.42


def test_cli_skus_per_cloud_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    code, out, _ = run_cli(capsys, "skus", "--cloud", "aws", "-o", "yaml")
    assert code == 0
    skus = yaml.safe_load(out)
    assert len(skus) == 35 and {s["cloud"] for s in skus} == {"aws"}
    g6 = next(s for s in skus if s["name"] == "g6.xlarge")
    assert g6["price"]["usdPerHour"] == 0.8048 and g6["price"]["region"] == "us-east-1"
    code, out, _ = run_cli(capsys, "skus", "--cloud", "arc", "--all")
    assert code == 0 and "Standard_NK6" in out and "removed" in out
    assert len(out.splitlines()) == 1 + 8 + 2


def test_cli_fit_marks_the_default_cheapest_first(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "llama-3.3-70b-instruct")
    assert code == 0
    lines = out.splitlines()
    assert "131.42 GiB" in lines[0] and "clouds azure" in lines[0] and "gated" in lines[0]
    rows = [line.split() for line in lines[2:] if line.startswith(("yes ", "no "))]
    assert rows[0][:4] == ["yes", "Standard_NC24ads_A100_v4", "azure", "3"]
    assert sum(r[0] == "yes" for r in rows) == 1
    assert "Standard_NV36ads_A10_v5" not in out  # needs 9 nodes: does not fit
    assert lines[-1] == "default: 3 x Standard_NC24ads_A100_v4 at $11.019/h"


def test_cli_fit_json_with_cloud_and_max_model_len(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code, out, _ = run_cli(capsys, "fit", "LLAMA-3.3-70B-INSTRUCT", "--cloud", "azure", "--max-model-len", "16384",
                           "-o", "json", "--all")
    assert code == 0
    data = json.loads(out)
    assert data["maxModelLen"] == 16384 and data["clouds"] == ["azure"]
    nc48 = next(f for f in data["fits"] if f["sku"] == "Standard_NC48ads_A100_v4")
    assert (nc48["nodes"], nc48["totalGpus"]) == (2, 4)  # what KAITO's own example deploys
    assert any(f["sku"] == "Standard_NV36ads_A10_v5" and "8-node limit" in f["reason"] for f in data["doesNotFit"])


def test_cli_fit_unknown_model_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "fit", "phi-4-mini")
    assert code == 1 and out == ""
    assert "unknown model 'phi-4-mini'" in err and "did you mean 'phi-4-mini-instruct'" in err
    assert "Traceback" not in err


def test_cli_fit_removed_model_names_replacement(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "fit", "falcon-40b")
    assert code == 1 and "removed" in err and "use 'gpt-oss-20b' instead" in err


def test_cli_fit_bad_max_model_len(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "fit", "phi-3-mini-4k-instruct", "--max-model-len", "8192")
    assert code == 1 and "token limit 4096" in err


def test_cli_fit_nothing_fits_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "deepseek-ai/DeepSeek-V4-Pro", "--cloud", "arc")
    assert code == 1 and "no SKU in arc" in out


def test_cli_fit_uses_repo_prices_and_clouds(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "gitops-kaito.yaml").write_text(
        "apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nclouds: [aws]\nprices:\n  g5.xlarge: 0.5\n")
    code, out, _ = run_cli(capsys, "fit", "phi-4-mini-instruct", "--repo", str(tmp_path))
    assert code == 0 and "clouds aws" in out
    assert out.splitlines()[-1] == "default: 1 x g5.xlarge at $0.5/h"
    (tmp_path / "gitops-kaito.yaml").write_text("apiVersion: gitops.kaito.sh/v1alpha1\nkind: Config\nbogus: 1\n")
    code, _, err = run_cli(capsys, "fit", "phi-4-mini-instruct", "--repo", str(tmp_path))
    assert code == 1 and "gitops-kaito.yaml:3" in err


def test_cli_catalog_without_subcommand_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys)
    assert code == 2 and "models" in out and "fit" in out
