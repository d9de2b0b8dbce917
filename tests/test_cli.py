import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "toolchain.cli", *args], capture_output=True, text=True)


def test_languages_lists_the_corpus():
    result = run("languages")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("de    German") for line in lines)
    assert lines[-1].startswith("77 languages from udhr")


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    result = run("prepare", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
