"""Where langprune keeps what it downloads, caches and exports, and how it writes there."""

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .errors import UserError, option

PACKAGE_DIR = Path(__file__).resolve().parent
T = TypeVar("T")
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # in temporary names: whose process ids they hold


def cache_dir() -> Path:
    """Everything langprune fetches, builds and caches, shared by every checkout and installation of it:
    `LANGPRUNE_CACHE`, else the user's cache directory (`$XDG_CACHE_HOME/langprune`, ~/.cache/langprune)."""
    if os.environ.get("LANGPRUNE_CACHE"):
        return Path(os.environ["LANGPRUNE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "langprune"


def export_dir() -> Path:
    """Where exports go unless told otherwise: `LANGPRUNE_EXPORTS`, else exported/ in the current directory."""
    return Path(os.environ.get("LANGPRUNE_EXPORTS") or Path.cwd() / "exported")


def export_folder(model_name: str, langs: list[str]) -> Path:
    """Where `make export` writes a model's export for the kept languages, unless told otherwise."""
    return export_dir() / f"{model_name}-{'-'.join(langs)}"


def frontier_dir(model_name: str, langs: list[str]) -> Path:
    """Where `make bench-frontier` writes the frontier of a model and kept languages."""
    return export_dir() / f"frontier-{model_name}-{'-'.join(langs)}"


def recipes_dir() -> Path:
    """The model presets: `LANGPRUNE_RECIPES`, else the package's own."""
    return Path(os.environ.get("LANGPRUNE_RECIPES") or PACKAGE_DIR / "recipes")


def cache_entry(kind: str, inputs: Sequence[str], modules: Sequence[str], suffix: str = "") -> Path:
    """Where the cache keeps what `modules` made from `inputs` (fingerprints of the model, the text and the settings):
    other inputs, or a change to any of those modules' code, are another entry, never one older code made."""
    return cache_dir() / kind / f"{'-'.join(inputs)}-{code_version(*modules)}{suffix}"


def cached(entry: Path, make: Callable[[Path], object], read: Callable[[Path], T]) -> tuple[T, bool]:
    """(read(entry), whether it was in the cache): when it is not, make(path) writes it first, under a temporary
    name that becomes `entry` only once whole (`written`), so a failure never leaves an entry behind."""
    if entry.exists():
        return read(entry), True
    with written(entry) as partial:
        make(partial)
    return read(entry), False


def code_version(*module_names: str) -> str:
    """A hash of the source of the modules that make a cache entry, for its key: a fix to any of them
    makes a new entry instead of reading one the old code made."""
    import hashlib
    import importlib

    digest = hashlib.sha256()
    for name in module_names:
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()[:12]


@contextmanager
def written(path: str | Path) -> Iterator[Path]:
    """A hidden temporary name beside `path` to write a file or folder under; when the block ends
    it takes `path`'s place whole (an older file or folder there goes), and if the block fails it
    is removed, with the folders made for it that are left empty: nothing half-written ever sits under
    the real name. The temporary names are new each time and carry the machine and process, so nothing already
    beside `path` is touched but what a killed langprune on this machine left there (`_remove_left_behind`).
    Whether `path` may be replaced is the caller's to decide: a user's output folder goes through
    `output_folder`."""
    path = Path(path)
    made = [parent for parent in path.parents if not parent.exists()]  # deepest first
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write {path} ({err.strerror})") from None
    _remove_left_behind(path)
    token = f"{HOST}-{os.getpid()}-{secrets.token_hex(4)}"
    partial, old = (path.with_name(f".{path.name}.{token}.{suffix}") for suffix in ("partial", "old"))
    try:
        yield partial
    except BaseException:
        _remove(partial)
        for folder in made:
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    if path.is_dir() and not path.is_symlink():
        path.rename(old)
    partial.replace(path)
    _remove(old)


@contextmanager
def scratch(path: str | Path) -> Iterator[Path]:
    """A folder for work files (files measured, then dropped) under a hidden name beside `path`, gone when the block
    ends, however it ends; one a killed langprune left there goes on the next run (`_remove_left_behind`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_left_behind(path)
    folder = path.with_name(f".{path.name}.{HOST}-{os.getpid()}-{secrets.token_hex(4)}.partial")
    folder.mkdir()
    try:
        yield folder
    finally:
        _remove(folder)


def _remove_left_behind(path: Path) -> None:
    """Remove the `.<name>.<host>-<pid>-<token>.partial` beside path of a process of this machine that no longer runs:
    a script killed by SIGTERM or anything killed by SIGKILL runs no cleanup. (Another machine's, on a shared
    folder, are left: its process ids are not this one's to check.)"""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.{HOST}-(\d+)-[0-9a-f]{{8}}\.partial")
    for other in path.parent.iterdir() if path.parent.is_dir() else ():
        if (match := pattern.fullmatch(other.name)) and not _running(int(match[1])):
            _remove(other)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's
        pass
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- a user's output folders -----------------------------------------------------------------------
# An output folder (an export, a frontier, an analysis) holds MARKER: the list of every file the
# langprune wrote there. It may replace or add to a folder only when everything in it is on that list;
# a folder that holds anything else is the user's, and is refused before any work.
MARKER = ".langprune.json"


def written_files(folder: Path) -> set[str]:
    """The files under folder that langprune wrote, as its marker lists them (none: not an output)."""
    try:
        return set(json.loads((folder / MARKER).read_text())["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _files_under(path: Path, folder: Path) -> list[str]:
    """Everything under path (a file, a folder or a link), relative to folder: what a replacement would lose.
    Files and links by name; an empty folder as its name and a slash."""
    if path.is_dir() and not path.is_symlink():
        return sorted(str(p.relative_to(folder)) + ("/" if p.is_dir() and not p.is_symlink() else "")
                      for p in path.rglob("*") if not p.is_dir() or p.is_symlink() or not any(p.iterdir()))
    return [str(path.relative_to(folder))] if path.exists() or path.is_symlink() else []


def check_output(folder: str | Path) -> Path:
    """Before any work: the folder an output may take whole (new, empty, or an earlier output of this
    langprune holding only files it wrote), resolved; anything else raises UserError naming it."""
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option('out', folder)}: is a file, not a folder; give a new folder or an earlier output")
    for parent in folder.parents:
        if parent.exists():
            if not parent.is_dir() or not os.access(parent, os.W_OK):
                raise UserError(f"{option('out', folder)}: cannot write under {parent}")
            break
    foreign = sorted(set(_files_under(folder, folder)) - written_files(folder) - {MARKER}) if folder.is_dir() else []
    if foreign and (folder / "report.json").is_file() and not (folder / MARKER).exists():
        raise UserError(f"{option('out', folder)}: looks like an export of an earlier version (report.json, no "
                        f"{MARKER} listing what it wrote), so it is not replaced: remove it yourself, or give another "
                        "folder")
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise UserError(f"{option('out', folder)}: holds files langprune did not write "
                        f"({', '.join(foreign[:3])}{more}); it never replaces them: give a new folder, or an earlier "
                        "output of langprune")
    return folder


@contextmanager
def output_folder(folder: str | Path) -> Iterator[Path]:
    """Write an output folder whole: a new folder to fill, which takes folder's place when the block
    ends, with MARKER listing what is in it. Checked again just before the swap, so a file the user
    put there meanwhile is never lost."""
    folder = check_output(folder)
    with written(folder) as partial:
        try:
            partial.mkdir()
        except OSError as err:
            raise UserError(f"{option('out', folder)}: cannot write there ({err.strerror})") from None
        yield partial
        _write_marker(partial, _files_under(partial, partial))
        check_output(folder)


@contextmanager
def adding_to_output(folder: str | Path, names: list[str]) -> Iterator[Path]:
    """Add to an earlier output (a bench, an on-device check): folder must be one, and names (files or
    folders inside it) may be replaced only if langprune wrote all that is there; what the block
    wrote under names joins MARKER's list."""
    folder = Path(folder)
    if not (folder / MARKER).is_file():
        raise UserError(f"{folder}: not an output of langprune (it has no {MARKER}); export into a new folder first")
    ours = written_files(folder)
    foreign = [f for name in names for f in _files_under(folder / name, folder) if f not in ours]
    if foreign:
        raise UserError(f"{folder}: {foreign[0]} was not written by langprune; it is never replaced: move it first")
    try:
        yield folder
    finally:  # what the block wrote is listed even when it fails: the folder stays langprune's own
        new = [f for name in names for f in _files_under(folder / name, folder)]
        _write_marker(folder, sorted(ours | set(new)))


def _write_marker(folder: Path, files: list[str]) -> None:
    text = json.dumps({"written_by": "langprune", "files": sorted(set(files) - {MARKER})}, indent=1)
    with written(folder / MARKER) as partial:
        partial.write_text(text)
