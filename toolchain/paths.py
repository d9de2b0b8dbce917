"""Where the toolchain keeps what it downloads, caches and exports, and how it writes there."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def cache_dir() -> Path:
    """Models assembled by `make setup`, the UDHR corpus, cached analyses."""
    return Path(os.environ.get("LANGPRUNE_CACHE", REPO_ROOT / ".cache"))


def export_dir() -> Path:
    return Path(os.environ.get("LANGPRUNE_EXPORTS", REPO_ROOT / "exported"))


def frontier_dir(model_name: str, langs: list[str]) -> Path:
    """Where `make bench-frontier` writes the frontier of a model and kept languages."""
    return export_dir() / f"frontier-{model_name}-{'-'.join(langs)}"


def recipes_dir() -> Path:
    return Path(os.environ.get("LANGPRUNE_RECIPES", REPO_ROOT / "recipes"))


@contextmanager
def written(path: str | Path) -> Iterator[Path]:
    """A hidden temporary name beside `path` to write a file or folder under; when the block ends
    it takes `path`'s place whole (an older file or folder there goes), and if the block fails it
    is removed: nothing half-written ever sits under the real name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial, old = (path.with_name(f".{path.name}.{suffix}") for suffix in ("partial", "old"))
    _remove(partial)
    try:
        yield partial
    except BaseException:
        _remove(partial)
        raise
    _remove(old)
    if path.is_dir():
        path.rename(old)
    partial.replace(path)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
