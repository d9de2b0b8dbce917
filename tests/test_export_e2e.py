"""`make export LANGS=en,de` on the real default model, end to end, and the report it writes."""

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from langprune.data.languages import LANGUAGES
from langprune.measure.llama_bench import MIN_REPS
from langprune.measure.verify import LLAMA_BENCH_REPS
from langprune.options import QUALITY_LIMITS
from langprune.report.tables import limit_rows, limits_verdict
from tests import REPO_ROOT

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    env = {**os.environ, "LANGPRUNE_EXPORTS": str(out)}
    # one speed repetition at 2 threads (the defaults: 3, at 1 and 2): the suite checks what is measured, benchmarks
    # how fast (llama-bench at one thread count: 275 s less of verify on the 2-core EPYC)
    result = subprocess.run(["make", "export", "LANGS=en,de", "REPS=1", "THREADS=2"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = out / "gemma3-270m-en-de"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # nothing partial left over
    return folder, result.stdout


def test_export_writes_every_artifact(export):
    folder, stdout = export
    for name in ("report.md", "report.json", "pytorch/config.json",
                 "onnx/model.onnx", "gguf/model-F16.gguf", "gguf/model-Q8_0.gguf", "gguf/model-Q4_K_M.gguf"):
        assert (folder / name).exists(), name
    # the default cuts no head, so no head analysis runs (HEADS= or TOL= ask for it)
    assert not (folder / "analysis.json").exists() and not (folder / "heatmap.png").exists()
    assert "decode tok/s" in stdout and "bits/byte" in stdout  # the summary table


def test_report_numbers_are_measured_and_sane(export):
    folder, _ = export
    report = json.loads((folder / "report.json").read_text())
    kept, dropped = report["languages"]["kept"], report["languages"]["dropped"]
    assert kept == ["en", "de"] and len(dropped) >= 6
    # the default: the largest FFN cut within TOL=0.05, every head kept, and a trimmed vocabulary
    before, after = report["structure"]["before"], report["structure"]["after"]
    assert after["heads_per_layer"] == before["heads_per_layer"] and report["analysis"] is None
    assert "analyze heads" not in report["timings_s"] and "neuron statistics" in report["timings_s"]  # no refit
    # every step's own peak memory, and each of verify's checks' ("verify: quality"); the weights are memory-mapped
    # from the cache and count once read: a cached step reads none (neuron statistics, 0.46 GB on the Xeon)
    steps, peaks = [step for step in report["timings_s"] if ":" not in step], report["peak_rss_mb"]
    assert [step for step in peaks if ":" not in step] == steps and all(256 < mb < 16 * 1024 for mb in peaks.values())
    assert {step for step in peaks if ":" in step} == {step for step in report["timings_s"] if "verify:" in step}
    share = report["ceiling"]["parts"]["after"]["attention projections"]["bytes"] / report["ceiling"]["bytes_after"]
    assert f"The attention projections are {share:.1%} of the weights read" in (folder / "report.md").read_text()
    assert len(set(after["heads_per_layer"])) == 1 and len(set(after["ffn_per_layer"])) == 1  # gemma3 GGUF: uniform
    assert after["ffn_per_layer"][0] % 64 == 0 and after["ffn_per_layer"][0] <= before["ffn_per_layer"][0]
    assert after["vocabulary"] <= 0.65 * before["vocabulary"]  # VOCAB=auto: 160,815 of 262,144 (en manual pages)
    search = report["tolerance_search"]
    assert search["tol"] == 0.05 and search["probes"] and {p["cut"] for p in search["probes"]} == {"ffn"}
    # each probe also measured the kept languages' text beyond the corpus (its selection sample), held to +1% bpb
    assert {f"{lang} manpages" for lang in kept} <= set(search["outside"]) <= set(search["baseline"])
    passing = [p["size"] for p in search["probes"] if p["cut"] == "ffn" and p["within_tolerance"]]
    assert max(passing, default=0) == pytest.approx(1 - after["ffn_per_layer"][0] / before["ffn_per_layer"][0])
    for lang in kept:
        assert report["tokenization"][lang]["share"] >= 0.99  # the trimmed vocabulary tokenizes kept text as before
        for key in ("pytorch fp32", "gguf Q4_K_M"):  # within the report's own limit (QUALITY_LIMITS)
            runs = report["quality"][key]
            limit = 1 + QUALITY_LIMITS["kept_bpb_rise"]
            assert runs["after"][lang]["bits_per_byte"] <= limit * runs["before"][lang]["bits_per_byte"], (key, lang)
    # QUANT=auto: of Q8_0 and Q4_K_M, each with the output layer at any type, the fastest within +1% beyond the
    # corpus, then the smallest (tests/test_auto_quant.py): a 4-bit output layer is faster, and over the limit
    choice, deployed = report["choice"], report["deployed"]
    assert choice["file"] == deployed and choice["within_limit"] and deployed in ("gguf Q4_K_M", "gguf Q8_0")
    assert {row["output_type"] for row in choice["candidates"].values()} == {"Q8_0", "Q5_0", "Q4_0", "IQ4_NL"}
    assert not any(row.get("held") for row in choice["candidates"].values() if row["output_type"] in ("Q4_0", "IQ4_NL"))
    text = (folder / "report.md").read_text()
    assert "## The deployed file (QUANT=auto)" in text
    # README's headline: every kept language within every limit (the evaluation split, text beyond the corpus)
    assert all(within == "yes" for *_, within in limit_rows(report)) and limits_verdict(limit_rows(report)) in text
    # the deployed file against the model the user gave (the recipe's published Q4_K_M): no larger, and first
    given = report["given"]
    assert given["file"] == report["model"]["source"] and given["type"] == "Q4_K_M"
    assert report["sizes"]["after"][deployed] <= given["size"] == Path(given["file"]).stat().st_size
    assert not any("left_out" in row for row in choice["candidates"].values() if row["size"] <= given["size"])
    assert text.index("## The deployed file against the model you gave") < text.index("## Summary")
    assert list(report["llama_bench"]["files"]) == ["given", "before", "after"]
    assert all(set(sides["given"]) == set(kept) for sides in report["outside"]["quality"].values())
    # every exported file was loaded and run by its runtime: each has quality figures
    for key in ("pytorch fp32", "onnx fp32", "gguf F16", "gguf Q8_0", "gguf Q4_K_M"):
        for side in ("before", "after"):  # dropped languages: in the deployed file only
            assert set(report["quality"][key][side]) == set(kept + dropped if key == deployed else kept)
            for lang in report["quality"][key][side]:
                q = report["quality"][key][side][lang]
                assert math.isfinite(q["perplexity"]) and q["perplexity"] > 1 and 0 < q["bits_per_byte"] < 10
    # ONNX Runtime and llama.cpp (F16) agree with PyTorch on the pruned model
    for lang in kept:
        torch_ppl = report["quality"]["pytorch fp32"]["after"][lang]["perplexity"]
        assert report["quality"]["onnx fp32"]["after"][lang]["perplexity"] == pytest.approx(torch_ppl, rel=1e-3)
        assert report["quality"]["gguf F16"]["after"][lang]["perplexity"] == pytest.approx(torch_ppl, rel=0.01)
    assert report["speed_setup"]["reps"] == 1
    for by_threads in report["speed"].values():
        assert set(by_threads) == {"2"}
        for row in by_threads.values():
            for metric in ("prefill_tps", "decode_tps"):
                assert row[f"{metric}_before"] > 0 and row[f"{metric}_after"] > 0
                assert row[f"{metric}_ratio"] == pytest.approx(row[f"{metric}_after"] / row[f"{metric}_before"])
            assert row["peak_rss_mb_after"] > 0
    # llama-bench: the deployed file before and after, whatever REPS says: LLAMA_BENCH_REPS fresh-process runs, or as
    # many as fit in its time budget (10 rounds of ~13 s at 2 threads on the EPYC), never fewer than MIN_REPS
    bench = report["llama_bench"]
    assert bench["file"] == report["deployed"] and MIN_REPS <= bench["reps"] <= LLAMA_BENCH_REPS
    for side in ("before", "after"):
        assert set(bench["files"][side]) == {"2"}
        for tests in bench["files"][side].values():
            for figures in tests.values():
                assert len(figures["runs"]) == bench["reps"] and min(figures["runs"]) > 0
                assert figures["mean"] == pytest.approx(sum(figures["runs"]) / bench["reps"])
    # each run's own peak, not its parent's (a 250 MB Q4_K_M runs in well under 2 GB; the export's process is >5 GB)
    sampled = f"{report['deployed']}, sampled"  # beside llama-bench: generation with llama.cpp's default sampler
    assert set(report["speed"]) == {"onnx fp32", sampled} and f"| {sampled} | 2 |" in (folder / "report.md").read_text()
    assert all(row["decode_tps_ratio"] > 1 for row in report["speed"][sampled].values())  # 262k logits a token, fewer
    peaks = bench["peak_rss_mb"]
    assert all(100 < peaks[side][t] < 2000 for side in ("before", "after") for t in ("2",)), peaks
    for key, size in report["sizes"]["after"].items():
        assert 0 < size < report["sizes"]["before"][key], key
    ceiling = report["ceiling"]
    assert 0 < ceiling["fraction_removed"] < 1
    assert ceiling["speedup_ceiling"] == pytest.approx(ceiling["bytes_before"] / ceiling["bytes_after"])
    # the tied 262k-row embedding is read whole per token as the output layer; trimming cuts it with the vocabulary
    output = {side: ceiling["parts"][side]["output layer (vocabulary)"]["bytes"] for side in ("before", "after")}
    n_vocab = {side: report["structure"][side]["vocabulary"] for side in ("before", "after")}
    assert output["after"] / output["before"] == pytest.approx(n_vocab["after"] / n_vocab["before"], rel=0.01)
    # text beyond the corpus (fortunes, manual pages, a book, help pages), in the deployed file, both sides
    outside = report["outside"]
    assert outside["file"] == deployed and set(outside["quality"]) == {"fortunes", "manpages", "handbook", "help"}
    for source, quality in outside["quality"].items():
        assert set(quality["before"]) == set(quality["after"]) == set(kept)  # kept languages scored
        for lang, before in quality["before"].items():
            after = quality["after"][lang]
            assert before["tokens"] > 600  # ~4,000 characters (outside_text.CHARS)
            assert 0 < before["bits_per_byte"] < 10 and 0 < after["bits_per_byte"] < 10
        counted = outside["dropped_tokens"][source]  # dropped ones counted: a trimmed vocabulary spells them longer
        assert counted["before"] and set(counted["before"]) == set(counted["after"])
        assert not set(counted["before"]) & set(kept)
        assert all(counted["after"][lang] >= counted["before"][lang] > 600 for lang in counted["before"])
        assert all(counted["after"][lang] > counted["before"][lang] for lang in counted["before"]
                   if LANGUAGES[lang].script != "Latin")  # French, Spanish: as before with 160,815 tokens kept
        for lang in kept:  # the trimmed vocabulary never makes text shorter in tokens
            agreement = outside["tokenization"][source][lang]
            assert agreement["tokens_after"] >= agreement["tokens"] == quality["before"][lang]["tokens"]
    for runs in report["fidelity"].values():
        for side in ("before", "after"):
            assert set(runs[side]) == set(kept) and all(0 <= runs[side][lang]["share"] <= 1 for lang in kept)



@pytest.mark.arm64
def test_mobile_check_on_the_real_export(export):
    """`make mobile-check` on the default export: its 4-bit ONNX model in ORT format for ONNX Runtime Mobile (also
    run by onnxruntime for aarch64 under qemu-user), and its Q4_0 GGUF (which llama.cpp repacks for ARM's dot
    product) in llama.cpp cross-built for arm64, under qemu-user: the host's tokens, greedy tokens and perplexity
    within 1% for the kept language checked. One GGUF kind and one language (German): the three kinds and the ORT
    check for en and de took 1,462 s of make test, ORT and Q4_0 for en and de 701 s (tests/test_mobile.py runs
    every kind and language on a tiny model)."""
    folder, _ = export
    result = subprocess.run(["make", "mobile-check", f"EXPORTS={folder}", "INSTALL=1", "QUANTS=Q4_0", "LANGS=de"],
                            cwd=REPO_ROOT, capture_output=True, text=True)  # INSTALL=1: the suite's consent
    assert result.returncode == 0, result.stderr[-3000:]
    ort = json.loads((folder / "report.json").read_text())["mobile"]["ort"]
    # a 4-bit copy: well under a third of the float32 ONNX model's bytes
    assert ort["ort_bytes"] < (folder / "onnx" / "model.onnx.data").stat().st_size / 3
    assert any("MatMulNBits" in line for line in ort["operators"])
    assert all(g["same"] for g in ort["greedy"].values()) and set(ort["greedy"]) == {"de"}
    assert all(r["greedy_holds"] for r in ort["arm64"].values()) and set(ort["arm64"]) == {"de"}
    arm = json.loads((folder / "report.json").read_text())["mobile"]["arm64"]
    assert set(arm["files"]) == {"Q4_0"} and arm["files"]["Q4_0"]["repacked_mib"] > 0
    for kind, checked in arm["files"].items():
        assert set(checked["languages"]) == {"de"} and checked["holds"], (kind, checked["languages"])
    text = (folder / "report.md").read_text()
    assert "## On-device" in text and "llama.cpp on arm64" in text


def test_onnx_runtime_genai_generates_what_pytorch_does(export):
    """The default export's onnx/ folder loads in ONNX Runtime GenAI; greedy continuations of a prompt in each
    kept language equal the pruned PyTorch model's."""
    import torch

    from langprune.cuts.rewrite import load_pruned
    from langprune.data.corpus import encode, load_corpus
    from langprune.measure.verify import fidelity_prompts
    from tests.test_export_onnx import _genai_greedy

    folder, _ = export
    model, tokenizer = load_pruned(folder / "pytorch")
    corpus = load_corpus(["en", "de"])
    for lang in ("en", "de"):
        ids = encode(tokenizer, fidelity_prompts(corpus, lang)[0])
        context = list(ids)
        with torch.no_grad():
            for _ in range(12):
                context.append(int(model(torch.tensor([context])).logits[0, -1].argmax()))
        assert _genai_greedy(folder / "onnx", ids, 12) == context[len(ids):], lang
