import os
import signal
import subprocess
import sys
import time

import pytest

from tests.tiny import save_tiny


def run(*args):
    return subprocess.run([sys.executable, "-m", "langprune.cli", *args], capture_output=True, text=True)


def test_languages_lists_the_corpus():
    result = run("languages")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("de    German") for line in lines)
    assert lines[-1].startswith("77 languages from udhr")


def test_a_stopped_export_leaves_nothing_half_written(tmp_path):
    exports = tmp_path / "exported"
    model_dir = save_tiny("llama", tmp_path / "llama")
    proc = subprocess.Popen([sys.executable, "-m", "langprune.cli", "export", "--langs", "en,de", "--model",
                             str(model_dir), "--heads", "0.25", "--layout", "free"],
                            env={**os.environ, "LANGPRUNE_EXPORTS": str(exports)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(exports.glob("*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, "the export ended before it could be stopped"
    time.sleep(0.5)  # inside the export (loading, analysis), and short: a warm tiny export can end in seconds
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, proc.stderr.read()[-2000:]
    assert not exports.exists()  # made for the export, so gone with it


def test_selection_against_random_heads(tmp_path):
    model_dir = save_tiny("llama", tmp_path / "llama")
    args = ["analyze", "--langs", "en,de", "--model", str(model_dir), "--analysis-langs", "fr,es,ru", "--out",
            str(tmp_path / "a")]
    result = run(*args, "--against-random", "2,4")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split(" | ") for line in (tmp_path / "a" / "selectivity-en-de.md").read_text().splitlines()[2:]]
    assert [(r[0].strip("| "), r[1]) for r in rows] == [("0", "original")] + [
        (n, s + refit) for n in ("2", "4") for s in ("selected", "random 0", "random 1", "random 2")
        for refit in ("", " + refit")]
    # masking heads changes the loss (the perplexities' two decimals show it where a rise's three round to 0.000)
    assert all(row[5:] != rows[0][5:] for row in rows[1:]) and len({row[2] for row in rows[1::2]}) > 1
    # the refit changes perplexities
    assert all(masked[5:] != refit[5:] for masked, refit in zip(rows[1::2], rows[2::2]))


def test_a_vocabulary_budget_below_what_the_languages_need_is_refused(tmp_path):
    model_dir = save_tiny("llama", tmp_path / "llama")
    args = ["export", "--langs", "en,sw", "--model", str(model_dir), "--heads", "0", "--ffn", "0", "--layout", "free",
            "--analysis-langs", "de", "--out", str(tmp_path / "out")]
    result = run(*args, "--vocab", "50")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "--vocab 50: the kept languages need at least" in result.stderr, result.stderr[-2000:]
    assert "wordfreq has no word frequencies for sw" in result.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fault, status, message", [
    (OSError(28, "No space left on device", "/exported/x/report.json"), 2,
     "error: no space left on the disk writing /exported/x/report.json: free some"),
    (KeyboardInterrupt(), 130, "error: interrupted; nothing half-written is left"),
], ids=["full disk", "Ctrl-C"])
def test_a_full_disk_or_ctrl_c_is_one_line(monkeypatch, capsys, fault, status, message):
    from langprune import cli

    def fail(args):
        raise fault

    monkeypatch.setitem(cli.COMMANDS, "languages", fail)
    assert cli.main(["languages"]) == status
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1  # one line, no traceback
