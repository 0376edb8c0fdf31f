"""Which presets KAITO v0.12.0 can fine-tune, and which SKUs one tuning job fits on (one node, KAITO's memory need)."""

from __future__ import annotations

import json

import pytest
from test_catalog import run_cli

from gitops_kaito.repo.catalog import Catalog, load_catalog, tuning_fit

TUNABLE = {"phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct", "phi-3-medium-4k-instruct",
           "phi-3-medium-128k-instruct", "phi-3.5-mini-instruct", "phi-4-mini-instruct", "phi-4",
           "qwen2.5-coder-7b-instruct", "qwen2.5-coder-32b-instruct"}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def test_tunable_presets_are_kaitos_tuning_parameter_keys_minus_mistral(catalog: Catalog) -> None:
    # KAITO's transformer_runtime_tuning_parameters.go has 10 keys; mistral-7b's lookup panics at v0.12.0.
    assert {p.name for p in catalog.presets() if not p.tuning_problem} == TUNABLE
    assert "MustGet" in catalog.preset("mistral-7b").tuning_problem
    assert "cannot fine-tune" in catalog.preset("llama-3.1-8b-instruct").tuning_problem


def test_tuning_fit_needs_the_memory_on_one_node(catalog: Catalog) -> None:
    phi3 = catalog.preset("phi-3-mini-128k-instruct")
    assert phi3.tuning_memory_gib == 72 and phi3.tuning_disk_gib == 80
    small = tuning_fit(phi3, catalog.sku("Standard_NV72ads_A10_v5"))  # 2 x 24 GiB = 48 < 72
    assert not small.fits and "needs 72 GiB on one node" in small.reason
    big = tuning_fit(phi3, catalog.sku("Standard_NC24ads_A100_v4"))
    assert big.fits and big.nodes == 1 and big.price_per_hour == big.sku.price.usd_per_hour  # type: ignore[union-attr]
    assert catalog.choose_tuning_sku(phi3, ("azure",)).sku.name == "Standard_NC24ads_A100_v4"
    qwen32 = catalog.preset("qwen2.5-coder-32b-instruct")  # 140 GiB: more than one A100 80 GB
    assert catalog.choose_tuning_sku(qwen32, ("azure",)).sku.name == "Standard_NC48ads_A100_v4"


def test_catalog_fit_tuning_cli(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "fit", "phi-4-mini-instruct", "--tuning", "-o", "json")
    data = json.loads(out)
    assert code == 0 and data["tuning"] and data["default"]["sku"] == "Standard_NC24ads_A100_v4"
    assert all(f["nodes"] == 1 for f in data["fits"])
    code, _, err = run_cli(capsys, "fit", "llama-3.1-8b-instruct", "--tuning")
    assert code == 1 and "cannot fine-tune" in err
    code, out, _ = run_cli(capsys, "models", "--tuning", "-o", "json")
    assert {p["name"] for p in json.loads(out)} == TUNABLE
