"""`make mobile-check` on an export (a tiny model's): ONNX Runtime Mobile's ORT format, the reduced
build's operator config, ONNX Runtime's usability check and greedy parity; llama.cpp cross-built for
arm64 under qemu-user against the host; all added to the report."""

import json
import shutil

import pytest

from langprune.bench import mobile_check
from langprune.errors import UserError
from langprune.measure import arm64, arm64_setup
from langprune.options import ExportOptions
from langprune.pipeline import run_export
from tests.tiny import save_tiny

KEPT = ["en", "de"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mobile")
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp / "llama")), heads=0.25, layout="free", reps=1,
                            threads=(1,), analysis_langs=KEPT + ["fr"], quant=["Q4_K_M"], out=tmp / "export")
    return run_export(options)


@pytest.fixture(scope="module")
def mobile(export):
    assert not (export / "onnx-int4").exists()  # made by the check from onnx/
    return mobile_check(export, install=True)  # the suite's consent: on a machine without them, installs the tools


@pytest.mark.arm64
def test_mobile_check_adds_the_ort_and_arm64_checks_to_the_report(export, mobile):
    ort = mobile["ort"]
    assert (export / ort["ort"]).stat().st_size == ort["ort_bytes"] > 0
    text = "\n".join(ort["operators"])
    assert any(line.startswith("com.microsoft;1;") and "MatMulNBits" in line for line in ort["operators"])
    assert "Softmax" in text and "Gather" in text  # the attention's and the embedding's operators
    assert (export / ort["config"]).read_text().count("\n") >= len(ort["operators"])
    assert "Checking" in ort["usability"] and ("NNAPI" in ort["usability"] or "CoreML" in ort["usability"])
    assert set(ort["greedy"]) == set(KEPT)
    for lang, g in ort["greedy"].items():
        assert g["same"] and len(g["onnx"]) == len(g["ort"]), lang
        arm = ort["arm64"][lang]  # onnxruntime for aarch64 under qemu-user, against the .ort here
        assert arm["greedy_x86"] == g["ort"] and len(arm["greedy_arm64"]) == len(g["ort"]) and arm["greedy_holds"], lang
    report = json.loads((export / "report.json").read_text())
    assert report["mobile"]["ort"]["ort"] == ort["ort"]
    text = (export / "report.md").read_text()
    assert "## On-device" in text and f"{len(ort['operators'])} operator lines" in text and "Not checked" not in text
    assert report["mobile"]["arm64"] == mobile["arm64"] and "llama.cpp on arm64" in text and "model-Q4_0.gguf" in text


@pytest.mark.arm64
def test_arm64_gguf_files_match_the_host(export, mobile):
    """Each GGUF kind, cross-built llama.cpp under qemu-user: the host's tokens, greedy tokens, perplexity."""
    from langprune.cuts.rewrite import load_pruned

    arm = mobile["arm64"]
    assert set(arm["files"]) == set(arm64.ARM_QUANTS)
    for kind, checked in arm["files"].items():
        assert (export / checked["file"]).stat().st_size == checked["bytes"] > checked["weights_read_per_token"] > 0
        assert set(checked["languages"]) == set(KEPT), kind
        for lang, r in checked["languages"].items():
            assert r["tokens_same"] and abs(r["perplexity_diff"]) <= 0.01, (kind, lang)
            assert r["perplexity_x86"] != r["perplexity_arm64"]  # two runs, not one number twice
            # greedy tokens agree, or part where the host's top two logits are a near tie (a random tiny model's
            # often are)
            assert len(r["greedy_arm64"]) == arm64.GREEDY_TOKENS and r["greedy_agree"] >= 1, (kind, lang)
            assert r["greedy_arm64"][:r["greedy_agree"]] == r["greedy_x86"][:r["greedy_agree"]]
            assert r["greedy_same"] or r["margin_at_divergence"] < arm64.NEAR_TIE, (kind, lang)
            assert abs(r["flash_attn_diff"]) > 0  # the host's own spread: flash attention on against off
        assert checked["holds"]
    assert arm["files"]["Q4_0"]["repacked_mib"] > 0  # repacked for the dot product at load
    # K and V rows of every layer's KV heads, float16, for 1,024 positions
    model, _ = load_pruned(export / "pytorch")
    widths = [layer.self_attn.k_proj.out_features + layer.self_attn.v_proj.out_features for layer in model.model.layers]
    assert arm["files"]["Q8_0"]["kv_bytes_per_1k_tokens"] == 1024 * 2 * sum(widths)


def test_missing_system_packages_are_named_and_installed_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no cross tools, no dpkg, no apt-get
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no aarch64 Python cached
    ran = []
    monkeypatch.setattr(arm64_setup, "run_tool", lambda command, *args, **kwargs: ran.append(command))
    with pytest.raises(UserError, match="g\\+\\+-aarch64-linux-gnu qemu-user"):
        arm64_setup.ensure_tools()
    with pytest.raises(UserError, match="run, as root, `apt-get install -y -q --no-install-recommends "
                       "g\\+\\+-aarch64-linux-gnu qemu-user && dpkg --add-architecture arm64 && apt-get update -q`, "
                       "or let mobile-check run it \\(--install\\)"):
        arm64_setup.prepare_system(install=False)
    monkeypatch.setattr(arm64_setup.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="run as root"):
        arm64_setup.prepare_system(install=True)
    assert ran == []  # nothing ran without the consent and the rights


def test_bad_folders_are_clear_errors(export, tmp_path):
    with pytest.raises(UserError, match="not an export"):
        mobile_check(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(export, copy, ignore=shutil.ignore_patterns("onnx*"))
    with pytest.raises(UserError, match="has no ONNX model"):
        mobile_check(copy)
    shutil.rmtree(copy)
    shutil.copytree(export, copy, ignore=shutil.ignore_patterns("gguf"))
    with pytest.raises(UserError, match="has no GGUF model"):
        arm64.arm64_check(copy, KEPT)
