"""Every bad input, run through the CLI as a process: exit 2, one line on stderr naming what was wrong,
no traceback, in seconds, and every folder it was pointed at byte-for-byte as before."""

import json
import os
import subprocess
import sys
import time

import pytest

from langprune.paths import MARKER
from tests import REPO_ROOT
from tests.tiny import save_tiny

UDHR_TEXT = "\n\n".join(f"Paragraph {i}: all human beings are born free and equal." for i in range(12))


def user_folder(root):
    (root / "work").mkdir()
    (root / "work" / "thesis.tex").write_text("years of work")
    return root / "work"


def export_over_a_users_file(root):
    """The default output folder: an earlier export, where the user has put a file of their own."""
    folder = root / "exported" / "gemma3-270m-en-de"
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("ours")
    (folder / ".langprune.json").write_text(json.dumps({"files": ["report.md"]}))
    (folder / "my-notes.md").write_text("the user's")
    return EXPORT


def languages_bench_over_a_users_file(root):
    """bench-languages whose en,de export would go where the user has put a file of their own."""
    export_over_a_users_file(root)
    return ["bench-languages", "ru", "en,de"]


def an_earlier_versions_export(root):
    """An export written before output folders listed their files: refused, with what to do."""
    folder = root / "old-export"
    (folder / "gguf").mkdir(parents=True)
    (folder / "report.json").write_text("{}")
    (folder / "gguf" / "model-Q4_K_M.gguf").write_bytes(b"GGUF")
    return folder


def a_file(root, name="notes.txt", data=b"not a model"):
    (root / name).write_bytes(data)
    return root / name


def corpus(root, files):
    (root / "corpus").mkdir()
    for name, text in files.items():
        (root / "corpus" / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return root / "corpus"


def model_dir(root, config):
    (root / "model").mkdir()
    (root / "model" / "config.json").write_text(config)
    (root / "model" / "model.safetensors").write_bytes(b"")
    return root / "model"


def users_report(root):
    (root / "results").mkdir()
    (root / "results" / "report.json").write_text("{}")
    return root / "results"


def an_export(root, langs=("en", "de"), deployed="gguf Q4_K_M"):
    folder = root / f"gemma3-270m-{'-'.join(langs)}"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps({"languages": {"kept": list(langs)}, "options": {},
                                                    "deployed": deployed}))
    (folder / MARKER).write_text('{"written_by": "langprune", "files": ["report.json"]}')
    return folder


EXPORT = ["export", "--langs", "en,de"]
FRONTIER = ["bench-frontier", "--langs", "en,de"]

# (name, arguments (a callable gets the test's folder and may create the user's files there), what stderr names)
CASES = [
    ("out holds a user's file", lambda r: EXPORT + ["--out", str(user_folder(r))], "did not write (thesis.tex)"),
    ("out is a file", lambda r: EXPORT + ["--out", str(a_file(r))], "is a file, not a folder"),
    ("out is an earlier version's export", lambda r: EXPORT + ["--out", str(an_earlier_versions_export(r))],
     "looks like an export of an earlier version"),
    ("out under a file", lambda r: EXPORT + ["--out", str(a_file(r) / "sub")], "cannot write under"),
    ("out where nothing can be made", lambda r: EXPORT + ["--out", "/proc/langprune"],
     "--out /proc/langprune: cannot write"),
    ("default out holds a user's file", export_over_a_users_file, "did not write (my-notes.md)"),
    ("frontier out holds a user's file", lambda r: FRONTIER + ["--out", str(user_folder(r))], "thesis.tex"),
    ("analyze out holds a user's file", lambda r: ["analyze", "--langs", "en", "--out", str(user_folder(r))],
     "thesis.tex"),
    ("unknown language", lambda r: ["export", "--langs", "en,xx"], "unknown language code 'xx'"),
    ("no language", lambda r: ["export", "--langs", " , "], "no language given"),
    ("no --langs", lambda r: ["export"], "the following arguments are required: --langs"),
    ("unknown analysis language", lambda r: EXPORT + ["--analysis-langs", "fr,qq"], "unknown language code 'qq'"),
    ("empty analysis languages", lambda r: EXPORT + ["--analysis-langs", ""],
     "--analysis-langs '': give language codes"),
    ("heads is 1", lambda r: EXPORT + ["--heads", "1.0"], "--heads 1.0: the fraction to drop must be in [0, 1)"),
    ("heads negative", lambda r: EXPORT + ["--heads", "-0.1"], "--heads -0.1: the fraction"),
    ("heads not a number", lambda r: EXPORT + ["--heads", "abc"], "argument --heads: invalid float value: 'abc'"),
    # fractions that round to no unit or every unit, refused from the GGUF header or config.json (were minutes in)
    ("heads round to none", lambda r: EXPORT + ["--heads", "0.1"], "--heads 0.1 drops no head of 4 a layer"),
    ("heads round to all", lambda r: EXPORT + ["--heads", "0.9"], "--heads 0.9 drops every head of 4 a layer"),
    ("heads round to none in a directory", lambda r: EXPORT + ["--heads", "0.01", "--model",
                                                                 str(save_tiny("llama", r / "llama"))],
     "--heads 0.01 drops no head of 4 a layer with the uniform layout"),
    ("ffn rounds to none", lambda r: EXPORT + ["--ffn", "0.01"], "--ffn 0.01 drops no FFN neuron of 2048 a layer"),
    ("ffn rounds to all", lambda r: EXPORT + ["--ffn", "0.99"], "--ffn 0.99 drops every FFN neuron of 2048"),
    ("ffn is 2", lambda r: EXPORT + ["--ffn", "2"], "--ffn 2.0: the fraction"),
    ("tol is 0", lambda r: EXPORT + ["--tol", "0"], "--tol 0.0: the tolerance is a fraction"),
    ("tol is 1.5", lambda r: EXPORT + ["--tol", "1.5"], "--tol 1.5: the tolerance is a fraction"),
    ("heal is 0", lambda r: EXPORT + ["--heal", "0"], "--heal 0.0: give the minutes"),
    ("heal is inf", lambda r: EXPORT + ["--heal", "inf"], "--heal inf: give the minutes"),  # it trained forever
    ("heal is nan", lambda r: EXPORT + ["--heal", "nan"], "--heal nan: give the minutes"),
    ("a flag twice", lambda r: EXPORT + ["--langs", "de"], "--langs given twice: give it once"),  # the last won
    ("a flag twice, abbreviated", lambda r: EXPORT + ["--lang", "de"], "--langs given twice: give it once"),
    ("unknown search", lambda r: EXPORT + ["--search", "sideways"], "--search sideways: choose once or iterative"),
    ("empty search", lambda r: EXPORT + ["--search", ""], "--search '': choose once or iterative"),
    ("unknown layout", lambda r: EXPORT + ["--layout", "diagonal"], "--layout diagonal: choose free or uniform"),
    ("layout the GGUF cannot load", lambda r: EXPORT + ["--layout", "free"], "loads only uniform layouts"),
    ("unknown quantization", lambda r: EXPORT + ["--quant", "Q2"], "--quant Q2: choose auto (the default) or any of"),
    ("empty quantization", lambda r: EXPORT + ["--quant", ","], "--quant '': choose auto"),
    ("auto's limit not a fraction", lambda r: EXPORT + ["--quant-limit", "2"], "--quant-limit 2.0: a fraction"),
    ("auto's limit not a number", lambda r: EXPORT + ["--quant-limit", "1%"], "--quant-limit: invalid float value"),
    ("auto's limit without auto", lambda r: EXPORT + ["--quant", "Q4_K_M", "--quant-limit", "0.02"],
     "--quant-limit 0.02 is the limit of --quant auto: add auto to --quant Q4_K_M"),
    ("an importance matrix without auto", lambda r: EXPORT + ["--quant", "Q4_K_M", "--imatrix", "on"],
     "--imatrix on quantizes --quant auto's candidates again: add auto to --quant Q4_K_M"),
    ("an importance matrix neither on nor off", lambda r: EXPORT + ["--imatrix", "maybe"], "'maybe': say on or off"),
    ("vocab in words", lambda r: EXPORT + ["--vocab", "many"], "'many': say auto (on), off or a number of tokens"),
    ("vocab 0", lambda r: EXPORT + ["--vocab", "0"], "--vocab 0: give a number of tokens, or off"),
    ("nothing to cut", lambda r: EXPORT + ["--heads", "0", "--ffn", "0", "--vocab", "off"], "nothing to cut"),
    ("a hub id", lambda r: EXPORT + ["--model", "org/some-model"], "works offline"),
    ("a missing GGUF", lambda r: EXPORT + ["--model", str(r / "missing.gguf")], "nor an existing file"),
    ("a GGUF that is not one", lambda r: EXPORT + ["--model", str(a_file(r, "m.gguf", b"GGUF\x03"))],
     "is not a readable GGUF file"),
    ("a text file as model", lambda r: EXPORT + ["--model", str(a_file(r))], "is not a GGUF file or a Hugging Face"),
    ("a folder without config.json", lambda r: EXPORT + ["--model", str(user_folder(r))], "has no config.json"),
    ("a config.json that is not JSON", lambda r: EXPORT + ["--model", str(model_dir(r, "{"))], "is not valid JSON"),
    ("an unsupported model type", lambda r: EXPORT + ["--model", str(model_dir(r, '{"model_type": "bert"}'))],
     "model type 'bert' is not supported"),
    ("a layout the family cannot load", lambda r: EXPORT + ["--model", str(save_tiny("qwen3", r / "q")), "--layout",
                                                           "free"], "loads only uniform layouts"),
    ("Gemma settings llama.cpp hard-codes", lambda r: EXPORT + ["--model", str(save_tiny("gemma3", r / "g"))],
     "llama.cpp's gemma3 graph cannot run this model"),
    ("missing corpus folder", lambda r: EXPORT + ["--corpus", str(r / "nope")], "no such folder"),
    ("corpus without text files", lambda r: EXPORT + ["--corpus", str(user_folder(r))], "holds no <lang>.txt files"),
    ("corpus of empty files", lambda r: EXPORT + ["--corpus", str(corpus(r, {"en.txt": "", "de.txt": ""}))],
     "en.txt has 0 paragraphs"),
    ("corpus not UTF-8", lambda r: EXPORT + ["--corpus", str(corpus(r, {"en.txt": UDHR_TEXT, "de.txt": b"\xff\xfe"}))],
     "de.txt is not UTF-8 text"),
    ("corpus of binary bytes", lambda r: EXPORT + ["--corpus", str(corpus(r, {"en.txt": UDHR_TEXT,
                                                                             "de.txt": bytes(range(128)) * 40}))],
     "de.txt is not text: 1,160 of its 5,120 characters are control characters"),  # valid UTF-8: it was accepted
    ("kept language not in the corpus", lambda r: ["export", "--langs", "en,fr", "--corpus",
                                                   str(corpus(r, {"en.txt": UDHR_TEXT, "de.txt": UDHR_TEXT}))],
     "unknown language code 'fr'"),
    ("corpus file not named by a code", lambda r: EXPORT + ["--corpus", str(corpus(r, {"en.txt": UDHR_TEXT,
                                                                                        "de.txt": UDHR_TEXT,
                                                                                        "My Notes.txt": UDHR_TEXT}))],
     "My Notes.txt is not named by a language code"),
    ("analyze takes no --heads", lambda r: ["analyze", "--langs", "en", "--heads", "0.5"],
     "analyze does not take --heads"),
    ("analyze budgets", lambda r: ["analyze", "--langs", "en", "--against-random", "2,x"], "expected positive whole"),
    ("frontier takes no --quant", lambda r: FRONTIER + ["--quant", "Q8_0"], "bench-frontier does not take --quant"),
    ("export reps 0", lambda r: EXPORT + ["--reps", "0"], "--reps 0: give at least 1"),
    ("export threads", lambda r: EXPORT + ["--threads", "2,x"], "--threads '2,x': expected positive whole numbers"),
    ("frontier reps 0", lambda r: FRONTIER + ["--reps", "0"], "--reps 0: give at least 1"),
    ("languages bench reps 0", lambda r: ["bench-languages", "en,de", "--reps", "0"], "--reps 0: give at least 1"),
    ("frontier no threads", lambda r: FRONTIER + ["--threads", ""], "--threads '': expected positive whole numbers"),
    ("frontier threads 0", lambda r: FRONTIER + ["--threads", "0,2"], "--threads '0,2': expected positive whole"),
    ("frontier unknown level", lambda r: FRONTIER + ["--levels", "vocab,bogus"], "'bogus' is not one of"),
    ("frontier level vocab=0", lambda r: FRONTIER + ["--levels", "vocab=0"], "'vocab=0' is not one of"),
    ("languages bench, a typo in a set", lambda r: ["bench-languages", "en,de", "ja,zj"], "'zj'"),
    ("languages bench over a user's file", languages_bench_over_a_users_file, "my-notes.md"),
    ("languages bench over a user's folder", lambda r: ["bench-languages", "ru", "--out", str(user_folder(r))],
     "thesis.tex"),
    ("bench a missing folder", lambda r: ["bench", str(r / "nope")], "no such folder"),
    ("bench a user's folder", lambda r: ["bench", str(users_report(r))], "not an export of langprune"),
    ("bench-quants a user's folder", lambda r: ["bench-quants", str(users_report(r))], "not an export of langprune"),
    ("bench-quants a file type it does not make", lambda r: ["bench-quants", "--quants", "q4_0,Q2_K"],
     "--quants q4_0,Q2_K: choose from Q8_0"),
    ("bench-quants an export with no GGUF file type", lambda r: ["bench-quants", str(an_export(r, ["ru"])),
                                                                  str(an_export(r, deployed="gguf F16"))],
     "gemma3-270m-en-de: its deployed file is gguf F16 (QUANT had no GGUF file type)"),
    ("bench-quants reps 0", lambda r: ["bench-quants", "--reps", "0"], "--reps 0: give at least 1"),
    ("mobile-check a user's folder", lambda r: ["mobile-check", str(users_report(r))], "not an export of langprune"),
    ("mobile-check a GGUF kind it does not run", lambda r: ["mobile-check", "--quants", "Q4_0,Q5_0"],
     "--quants Q5_0: the arm64 check runs Q4_K_M, Q8_0, Q4_0"),
    ("mobile-check a language the export does not keep", lambda r: ["mobile-check", str(an_export(r)),
                                                                     "--langs", "de,fr"],
     "--langs fr: gemma3-270m-en-de keeps en, de"),
    ("mobile-check a language the second export does not keep",  # refused before the first export's check
     lambda r: ["mobile-check", str(an_export(r)), str(an_export(r, ["ja", "zh"])), "--langs", "de"],
     "--langs de: gemma3-270m-ja-zh keeps ja, zh"),
    ("prepare a missing model", lambda r: ["prepare", str(r / "missing")], "nor an existing file or directory"),
    ("unknown subcommand", lambda r: ["exprot", "--langs", "en"], "invalid choice: 'exprot'"),
]


def snapshot(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None, p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("name, make_args, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_in_seconds_and_touches_nothing(tmp_path, name, make_args, message):
    args = make_args(tmp_path)
    before = snapshot(tmp_path)
    env = {**os.environ, "LANGPRUNE_EXPORTS": str(tmp_path / "exported")}
    env.pop("LANGPRUNE_VIA", None)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "langprune.cli", *args], capture_output=True, text=True, env=env,
                            timeout=60)
    seconds = time.monotonic() - start
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert seconds < 15, seconds
    assert snapshot(tmp_path) == before


def test_under_make_a_message_names_the_make_variable():
    result = subprocess.run(["make", "-s", "export", "LANGS=en,de", "HEADS=1.0", f"PY={sys.executable}"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode != 0 and "error: HEADS=1.0: the fraction to drop must be in [0, 1)" in result.stderr
    result = subprocess.run(["make", "-s", "export", "LANGS=en,de", "QUANT_LIMIT=2%", f"PY={sys.executable}"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)  # argparse's refusal too
    assert result.returncode != 0 and "QUANT_LIMIT=2%: invalid float value" in result.stderr


# A cache folder holding only part of what `make setup` prepares (a user's own cache, setup never run for it, or
# half run): what it holds, and the one line an export then gets, in seconds, before any work.
PARTLY_PREPARED = [
    ((), "the UDHR corpus is not installed"),
    (("udhr",), "is missing: run `langprune prepare` (it unpacks fortunes, text beyond the corpus in en)"),
    (("udhr", "outside", "models", "hf"), "llama-bench is not built for this CPU"),  # not downloaded and built later
]


@pytest.mark.parametrize("command", [EXPORT, ["bench-frontier", "--langs", "en,de"]], ids=["export", "frontier"])
@pytest.mark.parametrize("held, message", PARTLY_PREPARED, ids=["nothing", "only the corpus", "all but llama-bench"])
def test_a_partly_prepared_cache_names_what_is_missing_and_what_to_run(tmp_path, held, message, command):
    from langprune.paths import cache_dir

    (tmp_path / "cache").mkdir()
    for name in held:
        (tmp_path / "cache" / name).symlink_to(cache_dir() / name)
    _refused_at_once(tmp_path, command, message)


def test_an_export_names_prepare_where_llama_quantize_is_not_built(tmp_path):
    """A cache from before prepare built llama-quantize (QUANT=auto's importance matrix needs it)."""
    from langprune.llama_runtime import build_dir
    from langprune.paths import cache_dir

    (tmp_path / "cache").mkdir()
    for name in ("udhr", "outside", "models", "hf"):
        (tmp_path / "cache" / name).symlink_to(cache_dir() / name)
    build = tmp_path / "cache" / build_dir().name
    build.mkdir()
    for built in build_dir().iterdir():
        if built.name != "llama-quantize":
            (build / built.name).symlink_to(built)
    _refused_at_once(tmp_path, EXPORT, "llama-quantize is not built for this CPU")


def _refused_at_once(tmp_path, command: list[str], message: str) -> None:
    env = {**os.environ, "LANGPRUNE_CACHE": str(tmp_path / "cache"), "LANGPRUNE_EXPORTS": str(tmp_path / "exported")}
    env.pop("LANGPRUNE_VIA", None)
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "langprune", *command], capture_output=True, text=True, env=env,
                            timeout=60)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert message in lines[0] and "run `langprune prepare`" in lines[0], lines
    assert time.monotonic() - start < 15 and not (tmp_path / "exported").exists()
