"""Where the toolchain keeps what it downloads, caches and exports."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Models assembled by `make setup`, the UDHR corpus, cached analyses."""
    return Path(os.environ.get("LANGPRUNE_CACHE", REPO_ROOT / ".cache"))


def export_dir() -> Path:
    return Path(os.environ.get("LANGPRUNE_EXPORTS", REPO_ROOT / "exported"))


def recipes_dir() -> Path:
    return Path(os.environ.get("LANGPRUNE_RECIPES", REPO_ROOT / "recipes"))
