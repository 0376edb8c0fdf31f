"""Finds the data shipped with gitops-kaito (catalog/, templates/, deploy/crds/).

Installed wheels carry them under gitops_kaito/_data; a source checkout reads the top-level folders.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # gitops_kaito/, where wheels keep _data
_CHECKOUT = _PACKAGE.parent
_WHEEL_NAMES = {"catalog": "catalog", "templates": "templates", "deploy/crds": "crds", "schemas": "schemas"}


def data_path(name: str) -> Path:
    """Path of a shipped data folder: 'catalog', 'templates', 'schemas' or 'deploy/crds'."""
    packaged = _PACKAGE / "_data" / _WHEEL_NAMES.get(name, name)
    if packaged.exists():
        return packaged
    return _CHECKOUT / name
