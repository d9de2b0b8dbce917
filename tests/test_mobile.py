"""`make mobile-check` on an export (a tiny model's): ONNX Runtime Mobile's ORT format, the reduced
build's operator config, ONNX Runtime's usability check and greedy parity, added to the report."""

import json
import shutil

import pytest

from tests.tiny import save_tiny
from toolchain.errors import UserError
from toolchain.measure.mobile import mobile_check
from toolchain.options import ExportOptions
from toolchain.pipeline import run_export

KEPT = ["en", "de"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mobile")
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp / "llama")), heads=0.25, layout="free", reps=1,
                            threads=(1,), analysis_langs=KEPT + ["fr"], quant=["Q4_K_M"], out=tmp / "export")
    return run_export(options)


def test_mobile_check_adds_the_ort_checks_to_the_report(export):
    assert not (export / "onnx-int4").exists()  # made by the check from onnx/
    ort = mobile_check(export)["ort"]
    assert (export / ort["ort"]).stat().st_size == ort["ort_bytes"] > 0
    text = "\n".join(ort["operators"])
    assert any(line.startswith("com.microsoft;1;") and "MatMulNBits" in line for line in ort["operators"])
    assert "Softmax" in text and "Gather" in text  # the attention's and the embedding's operators
    assert (export / ort["config"]).read_text().count("\n") >= len(ort["operators"])
    assert "Checking" in ort["usability"] and ("NNAPI" in ort["usability"] or "CoreML" in ort["usability"])
    assert set(ort["greedy"]) == set(KEPT)
    for lang, g in ort["greedy"].items():
        assert g["same"] and len(g["onnx"]) == len(g["ort"]), lang
    report = json.loads((export / "report.json").read_text())
    assert report["mobile"]["ort"]["ort"] == ort["ort"]
    text = (export / "report.md").read_text()
    assert "## On-device" in text and f"{len(ort['operators'])} operator lines" in text and "Not checked" not in text


def test_bad_folders_are_clear_errors(export, tmp_path):
    with pytest.raises(UserError, match="not an export"):
        mobile_check(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(export, copy, ignore=shutil.ignore_patterns("onnx*"))
    with pytest.raises(UserError, match="has no ONNX model"):
        mobile_check(copy)
