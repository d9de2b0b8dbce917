"""A user's files are never replaced, moved or deleted: output folders (langprune/paths.py)."""

import json
import os
import subprocess
import sys

import pytest

from langprune.errors import UserError
from langprune.paths import HOST, MARKER, adding_to_output, check_output, output_folder, written


def snapshot(root):
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def write_output(folder, files):
    with output_folder(folder) as partial:
        for name, text in files.items():
            (partial / name).parent.mkdir(parents=True, exist_ok=True)
            (partial / name).write_text(text)


def test_a_new_output_lists_what_it_wrote_and_replaces_only_its_own(tmp_path):
    out = tmp_path / "out"
    write_output(out, {"report.md": "1", "onnx/model.onnx": "2"})
    assert json.loads((out / MARKER).read_text())["files"] == ["onnx/model.onnx", "report.md"]
    write_output(out, {"report.md": "3"})  # an earlier output goes whole
    assert snapshot(out).keys() == {MARKER, "report.md"} and (out / "report.md").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


@pytest.mark.parametrize("user_file", ["notes.txt", "onnx/mine.onnx", "drafts/"])
def test_a_folder_holding_a_users_file_is_refused_and_left_as_it_was(tmp_path, user_file):
    out = tmp_path / "work"
    write_output(out, {"report.md": "ours", "onnx/model.onnx": "ours"})
    if user_file.endswith("/"):  # an empty folder of the user's
        (out / user_file).mkdir()
    else:
        (out / user_file).parent.mkdir(exist_ok=True)
        (out / user_file).write_text("the user's")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=f"did not write \\({user_file}\\)"):
        write_output(out, {"report.md": "new"})
    assert snapshot(tmp_path) == before


def test_a_users_folder_without_a_marker_is_refused_before_the_block_runs(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("years of work")
    ran = []
    with pytest.raises(UserError, match="home: holds files langprune did not write"):
        with output_folder(tmp_path / "home"):
            ran.append(True)
    assert not ran and (tmp_path / "home" / "thesis.tex").read_text() == "years of work"
    with pytest.raises(UserError, match="is a file, not a folder"):
        check_output(tmp_path / "home" / "thesis.tex")


def test_a_file_the_user_puts_there_during_the_work_stops_the_swap(tmp_path):
    out = tmp_path / "out"
    out.mkdir()  # empty: may be taken
    with pytest.raises(UserError, match="new.txt"):
        with output_folder(out) as partial:
            (partial / "report.md").write_text("ours")
            (out / "new.txt").write_text("the user's")
    assert snapshot(tmp_path) == {"out": None, "out/new.txt": b"the user's"}


def test_written_never_touches_what_already_sits_beside_the_path(tmp_path):
    for name in (".out.partial", ".out.old"):
        (tmp_path / name).write_text("the user's")
    with written(tmp_path / "out") as partial:
        partial.write_text("ours")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {
        ".out.partial": "the user's", ".out.old": "the user's", "out": "ours"}


def test_written_removes_what_a_killed_langprune_left_half_written(tmp_path):
    """A script killed by SIGTERM (Python runs no cleanup then) left its partial folder: the next write of that
    path removes it, and only it: not a running process's, not another machine's, not another path's, not a user's
    look-alike."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = dead.stdout.strip()
    left = {f".out.{HOST}-{pid}-0123abcd.partial"}
    kept = {f".out.{HOST}-{os.getpid()}-0123abcd.partial", f".out.0badc0de-{pid}-0123abcd.partial",
            f".other.{HOST}-{pid}-0123abcd.partial", f".out.{HOST}-{pid}-notours.partial"}
    for name in left | kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.onnx").write_text("half")
    with written(tmp_path / "out") as partial:
        partial.write_text("ours")
    assert {p.name for p in tmp_path.iterdir()} == {"out"} | kept


def test_a_failed_output_leaves_no_folder_it_made_and_every_folder_it_did_not(tmp_path):
    (tmp_path / "kept").mkdir()
    for out in (tmp_path / "exported" / "model-en", tmp_path / "kept" / "a" / "model-en"):
        with pytest.raises(RuntimeError):
            with output_folder(out) as partial:
                (partial / "report.md").write_text("half")
                raise RuntimeError("the export failed")
    assert snapshot(tmp_path) == {"kept": None}  # exported/ and kept/a/ were made for it; kept/ was the user's


def test_adding_to_an_output_records_new_files_and_never_replaces_a_users(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UserError, match="not an output of langprune"):
        with adding_to_output(tmp_path, ["bench.md"]):
            pass
    write_output(out, {"report.md": "1"})
    with adding_to_output(out, ["bench.md", "onnx-int4"]):
        (out / "bench.md").write_text("2")
        (out / "onnx-int4").mkdir()
        (out / "onnx-int4" / "model.onnx").write_text("3")
    assert json.loads((out / MARKER).read_text())["files"] == ["bench.md", "onnx-int4/model.onnx", "report.md"]
    with pytest.raises(RuntimeError):  # a step that fails after writing: what it wrote is listed all the same
        with adding_to_output(out, ["mobile.md"]):
            (out / "mobile.md").write_text("half")
            raise RuntimeError("the arm64 check failed")
    assert "mobile.md" in json.loads((out / MARKER).read_text())["files"]
    check_output(out)  # still langprune's own folder: a later export or check may replace it
    (out / "onnx-int4" / "mine.txt").write_text("the user's")
    with pytest.raises(UserError, match="onnx-int4/mine.txt was not written by langprune"):
        with adding_to_output(out, ["onnx-int4"]):
            raise AssertionError("the block must not run")
    with pytest.raises(UserError, match="mine.txt"):
        check_output(out)


def test_a_cache_key_changes_with_the_code_that_made_the_entry(tmp_path, monkeypatch):
    import importlib

    from langprune.paths import code_version

    (tmp_path / "maker.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    first = code_version("maker")
    assert code_version("maker") == first
    (tmp_path / "maker.py").write_text("VALUE = 2  # a fix\n")
    assert code_version("maker") != first
    assert code_version("maker", "langprune.paths") != code_version("maker")


def test_a_scratch_folder_goes_however_its_block_ends_and_a_killed_ones_on_the_next_run(tmp_path):
    """`scratch`: the quantized files `bench-quants` and `bench-frontier` measure, then drop (GBs on a real model)."""
    from langprune.paths import scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / f".work.{HOST}-{dead.stdout.strip()}-0123abcd.partial"
    left.mkdir()
    (left / "model-Q4_0.gguf").write_text("left by a killed run")
    (tmp_path / "work").mkdir()  # a user's folder of that name is not scratch: kept
    with pytest.raises(RuntimeError):
        with scratch(tmp_path / "work") as folder:
            (folder / "model-Q4_K_M.gguf").write_text("half")
            assert folder.parent == tmp_path and not left.exists()
            raise RuntimeError("a measurement failed")
    with scratch(tmp_path / "work") as folder:
        (folder / "model-Q4_K_M.gguf").write_text("measured")
    assert {p.name for p in tmp_path.iterdir()} == {"work"}
