"""langprune from Python: export, analyze and load_pruned, without printing and without touching the environment."""

import os
import subprocess
import sys
import weakref
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import langprune
from langprune import pipeline
from langprune.cuts.plan import apply_cuts
from langprune.measure import verify
from langprune.measure.verify import measure_exports
from langprune.model.parts import HEADS
from tests.tiny import save_tiny, tiny_model


def test_importing_langprune_changes_no_environment_and_prints_nothing():
    code = ("import os; before = dict(os.environ); import langprune, langprune.pipeline, langprune.model.load; "
            "assert dict(os.environ) == before, set(os.environ) ^ set(before)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stderr[-2000:]


def test_the_package_and_the_ort_greedy_client_import_with_the_standard_library_numpy_and_onnxruntime_alone():
    """`measure/arm64.py` runs `measure/ort_greedy.py` in an aarch64 Python that has only numpy and onnxruntime."""
    code = ("import builtins, sys; real = builtins.__import__\n"
            "def only(name, *args, **kwargs):\n"
            "    top = name.split('.')[0]\n"
            "    if args and len(args) > 3 and args[3]: return real(name, *args, **kwargs)  # relative\n"
            "    if top not in sys.stdlib_module_names and top not in ('langprune', 'numpy', 'onnxruntime'):\n"
            "        raise ImportError(f'{name} is not in the aarch64 Python')\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = only\n"
            "import langprune.measure.ort_greedy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@contextmanager
def written_to_fds(tmp: Path):
    """What the block writes to file descriptors 1 and 2 (Python's prints, native libraries' logs, progress bars)."""
    saved, captured = [os.dup(fd) for fd in (1, 2)], {}
    files = [open(tmp / name, "w+b") for name in ("stdout", "stderr")]
    sys.stdout.flush(), sys.stderr.flush()
    for fd, file in zip((1, 2), files):
        os.dup2(file.fileno(), fd)
    try:
        yield captured
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        for fd, copy, file in zip((1, 2), saved, files):
            os.dup2(copy, fd)
            os.close(copy)
            file.seek(0)
            captured[fd] = file.read().decode(errors="replace")
            file.close()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One export from Python, of a tiny model, what it wrote to stdout and stderr, and how many of its two PyTorch
    models (the original, the pruned) were alive when the runtimes' checks began."""
    tmp = tmp_path_factory.mktemp("api")
    model = save_tiny("llama", tmp / "llama")
    models, alive = [], []

    def cut(loaded, *args, **kwargs):
        pruned, tokenizer = apply_cuts(loaded, *args, **kwargs)
        models.extend(weakref.ref(m) for m in (loaded.model, pruned))
        return pruned, tokenizer

    def measured(*args, **kwargs):
        alive.append(sum(ref() is not None for ref in models))
        return measure_exports(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, written_to_fds(tmp) as printed:
        patch.setattr(pipeline, "apply_cuts", cut)
        patch.setattr(verify, "measure_exports", measured)
        result = langprune.export(langs="en,de", model=model, heads=0.25, layout="free", out=tmp / "out")
    return result, model, printed, alive


def test_export_returns_the_folder_its_report_and_the_files_it_wrote(exported):
    result, _, _, _ = exported
    assert result.report["languages"]["kept"] == ["en", "de"] and result.report["heads"]["dropped"]
    assert {"report.json", "report.md", "pytorch/config.json"} <= {str(f) for f in result.files}
    assert any(f.parent.name == "gguf" and f.suffix == ".gguf" for f in result.files)
    assert all((result.folder / f).is_file() for f in result.files)


def test_the_runtimes_checks_run_beside_no_pytorch_model(exported):
    """Verify's ONNX Runtime and llama.cpp checks open whole models: the PyTorch ones are gone by then (the pruned
    model's PyTorch quality is measured before)."""
    result, _, _, alive = exported
    assert alive == [0] and "pytorch fp32" in result.report["quality"]


def test_the_library_prints_nothing(exported):
    """No phase lines and no progress bars; the command line turns them on (`show_progress`)."""
    _, _, printed, _ = exported
    assert printed[1] == "", printed[1][-2000:]
    assert "== verify" not in printed[2] and "it/s" not in printed[2] and "%|" not in printed[2], printed[2][-2000:]


def test_load_pruned_gives_the_cut_model(exported):
    result, _, _, _ = exported
    model, tokenizer = langprune.load_pruned(result.folder)
    heads = sum(HEADS.sizes(model))
    assert heads == sum(HEADS.sizes(tiny_model("llama"))) - len(result.report["heads"]["dropped"])
    ids = tokenizer("Alle Menschen sind frei", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()


def test_analyze_scores_every_head_of_every_language(exported):
    _, model, _, _ = exported
    analysis = langprune.analyze(["en", "de"], model=model, analysis_langs=["fr"])
    config = tiny_model("llama").config
    assert analysis.languages == ["de", "en", "fr"]  # sorted: one analysis for every kept set of them
    for scores in analysis.scores.values():
        assert scores.shape == (3, config.num_hidden_layers, config.num_attention_heads)


def test_bad_input_raises_before_any_work(tmp_path):
    with pytest.raises(langprune.UserError, match="unknown language code 'xx'"):
        langprune.export(langs=["en", "xx"], out=tmp_path / "out")
    with pytest.raises(TypeError, match="unknown option Heads: langprune takes .*heads"):
        langprune.export(langs=["en", "de"], Heads=0.25, out=tmp_path / "out")
    with pytest.raises(langprune.UserError, match="--threads 0,2: give positive numbers of threads"):
        langprune.export(langs=["en", "de"], threads=(0, 2), out=tmp_path / "out")
    with pytest.raises(langprune.UserError, match="--threads 0: give positive numbers of threads"):
        langprune.export(langs=["en", "de"], threads=0, out=tmp_path / "out")  # one count, as a plain number
    with pytest.raises(langprune.UserError, match="is not a model langprune saved"):
        langprune.load_pruned(tmp_path)
    assert not any(tmp_path.iterdir())


WARNED = """import sys
import langprune
try:
    langprune.export(langs=["en", "sw"], model=sys.argv[1], heads=0, ffn=0, layout="free", analysis_langs=["de"],
                     vocab=50, out=sys.argv[2])
except langprune.UserError as err:
    print("refused:", err, file=sys.stderr)"""


def test_a_script_sees_the_warnings_and_nothing_else(tmp_path):
    """Warnings (here: no word frequencies for Swahili) reach a script that configured no logging, on stderr."""
    model = save_tiny("llama", tmp_path / "llama")
    result = subprocess.run([sys.executable, "-c", WARNED, str(model), str(tmp_path / "out")], capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stdout == "", result.stderr[-2000:]
    assert "warning: wordfreq has no word frequencies for sw" in result.stderr
    assert "refused: --vocab 50" in result.stderr
    assert "== select" not in result.stderr


DEQUANTIZE = """import sys
import langprune
from langprune.model import load
load.SHARD_BYTES = 1 << 16  # a checkpoint of several files, which transformers loads with a progress bar of its own
if sys.argv[2] == "show":
    langprune.show_progress()
load.load(sys.argv[1])"""


@pytest.mark.parametrize("show", ["show", "quiet"])
def test_dequantizing_a_gguf_prints_only_when_asked(tmp_path, show):
    """A GGUF is dequantized once, with a progress bar: silent from a script, shown as the command line shows it;
    transformers' bar as it reads the checkpoint back, never."""
    from langprune.exporters.export_gguf import export_gguf
    from tests.tiny import tiny_tokenizer

    gguf = export_gguf(tiny_model("llama"), None, tiny_tokenizer(), tmp_path / "tiny-F16.gguf")
    env = {**os.environ, "LANGPRUNE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", DEQUANTIZE, str(gguf), show], capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    said = "Dequantizing tiny-F16.gguf" in result.stdout and "dequantize: 100%" in result.stderr
    assert said if show == "show" else (result.stdout == "" and "quantiz" not in result.stderr), result
    assert "Loading checkpoint shards" not in result.stderr


OPEN_GGUF = """import sys
from langprune.measure.llamacpp import open_gguf
open_gguf(sys.argv[1], n_ctx=64)"""


def test_opening_a_sliding_window_gguf_prints_nothing(tmp_path):
    """llama.cpp warns as it opens a model with sliding-window attention (`using full-size SWA cache`), and
    llama-cpp-python's verbose=False lets it through to stderr; langprune routes llama.cpp's log to logging."""
    from langprune.exporters.export_gguf import export_gguf
    from tests.test_export_gguf import tiny_gemma6
    from tests.tiny import tiny_tokenizer

    gguf = export_gguf(tiny_gemma6(), None, tiny_tokenizer(), tmp_path / "gemma3.gguf")
    result = subprocess.run([sys.executable, "-c", OPEN_GGUF, str(gguf)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == "", result.stderr[-2000:]


def test_a_model_over_the_float32_limit_is_exported_and_checked_in_onnx_int4(tmp_path, monkeypatch, caplog):
    """Above ONNX_FLOAT32_LIMIT no float32 ONNX model is written: the ONNX model is int4 (with its ORT-format copy),
    ONNX Runtime's checks run it, and the int8 copy asked for, quantized from the float32 file, is said not written;
    the mobile checks start from it as it is."""
    import onnx

    from langprune.exporters import files
    from langprune.measure.mobile import onnx_source

    monkeypatch.setattr(files, "ONNX_FLOAT32_LIMIT", 0)
    model = save_tiny("qwen2", tmp_path / "qwen2")
    result = langprune.export(langs="en,de", model=model, heads=0.25, layout="free", quant=["Q8_0", "int8", "int4"],
                              reps=1, threads=(1,), out=tmp_path / "out")
    assert "onnx int4" in result.report["quality"] and "onnx fp32" not in result.report["quality"]
    assert not [key for key in result.report["files"] if key.endswith(("fp32", "int8"))], result.report["files"]
    assert {"onnx/model.onnx", "onnx/model.ort"} <= {str(f) for f in result.files}
    graph = onnx.load(str(result.folder / "onnx" / "model.onnx"), load_external_data=False).graph
    assert "MatMulNBits" in {node.op_type for node in graph.node}
    assert "no ONNX int8 file" in caplog.text
    model_file = result.folder / "onnx" / "model.onnx"  # already the 4-bit model `make mobile-check` starts from
    assert onnx_source(result.folder) == (model_file, model_file)
