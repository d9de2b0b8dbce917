"""The output layer's precision is measured on this CPU or forced, and both paths give the same analysis."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from langprune.analysis.masking import masking_deltas
from langprune.analysis.precision import ENV, matmul_gflops, output_layer_precision
from langprune.errors import UserError
from tests.tiny import tiny_model


@pytest.fixture
def fresh_choice():
    output_layer_precision.cache_clear()
    yield
    output_layer_precision.cache_clear()


@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_a_setting_forces_either_precision(monkeypatch, fresh_choice, forced):
    monkeypatch.setenv(ENV, forced)
    choice = output_layer_precision()
    assert choice.dtype == getattr(torch, forced) and choice.name == forced
    assert "forced" in choice.reason and torch.backends.cpu.get_cpu_capability() in choice.reason


def test_an_unknown_precision_is_a_clear_error(monkeypatch, fresh_choice):
    monkeypatch.setenv(ENV, "float8")
    with pytest.raises(UserError, match="float32, bfloat16"):
        output_layer_precision()


def test_auto_picks_bfloat16_only_where_it_is_measured_faster(monkeypatch, fresh_choice):
    monkeypatch.delenv(ENV, raising=False)
    choice = output_layer_precision()
    assert "measured" in choice.reason
    fp32, bf16 = matmul_gflops((torch.float32, torch.bfloat16)).values()
    print(choice, f"re-measured: float32 {fp32:.1f}, bfloat16 {bf16:.1f} GFLOP/s")
    if choice.dtype == torch.bfloat16:
        assert bf16 > fp32
    else:
        assert bf16 < 3 * fp32  # a CPU where bf16 is far faster would have chosen it


@pytest.mark.parametrize("bf16, chosen", [(10.0, "float32"), (300.0, "bfloat16")])
def test_auto_takes_bfloat16_where_it_is_measured_faster_by_the_margin(monkeypatch, fresh_choice, bf16, chosen):
    from langprune.analysis import precision

    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(precision, "matmul_gflops", lambda dtypes: dict(zip(dtypes, (100.0, bf16), strict=True)))
    assert output_layer_precision().name == chosen


def test_a_busy_cpu_does_not_change_the_choice(monkeypatch):
    """Each process measures once; beside two busy cores it must choose what it chooses idle, or it misses the
    analysis cached in the other precision (best of 3, one type after the other, flipped 3 of 5 fresh processes)."""
    monkeypatch.delenv(ENV, raising=False)
    choose = [sys.executable, "-c", "from langprune.analysis.precision import output_layer_precision as p; "
              "print(p().name)"]
    idle = subprocess.run(choose, capture_output=True, text=True, check=True).stdout
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        loaded = [subprocess.run(choose, capture_output=True, text=True, check=True).stdout for _ in range(5)]
    finally:
        for process in busy:
            process.kill()
    assert loaded == [idle] * 5, (idle, loaded)


@pytest.mark.parametrize("output", ["candidates", "exact"])
def test_bfloat16_output_layer_keeps_the_masking_ranking(output):
    """The bfloat16 path runs on every machine here (a tiny vocabulary keeps it cheap where it is emulated)."""
    model = tiny_model("llama")
    torch.manual_seed(3)
    chunks = {"a": torch.randint(1, 320, (40,)).tolist(), "b": torch.randint(1, 320, (40,)).tolist()}
    exact, _ = masking_deltas(model, chunks, output=output, top=16, dtype=torch.float32)
    fast, _ = masking_deltas(model, chunks, output=output, top=16, dtype=torch.bfloat16)
    assert not np.array_equal(fast, exact)  # the bfloat16 matmul did run
    assert np.corrcoef(exact.ravel(), fast.ravel())[0, 1] > 0.99
    assert np.abs(fast - exact).max() < 0.1 * np.abs(exact).max()


@pytest.mark.parametrize("forced", ["float32", "bfloat16"])
def test_masking_check_ranks_each_variant_against_exact_float32(monkeypatch, fresh_choice, forced):
    from langprune.analysis.analyze import Settings
    from langprune.data.corpus import udhr_corpus
    from langprune.measure.masking_check import compare_masking, top_overlap
    from langprune.report.benchmarks import render_masking_check
    from tests.tiny import tiny_tokenizer

    monkeypatch.setenv(ENV, forced)
    settings = Settings(("en", "de", "ru"), masking_tokens=48, candidate_top=16)
    result = compare_masking(tiny_model("llama"), tiny_tokenizer(), udhr_corpus(list(settings.languages)), settings)
    expected = {"candidates float32"} | ({"exact bfloat16", "candidates bfloat16"} if forced == "bfloat16" else set())
    assert set(result["agreement"]) == expected and set(result["seconds"]) == expected | {"exact float32"}
    for variant in result["agreement"].values():
        assert set(variant) == {"en", "de", "ru"}
        assert all(a["spearman"] > 0.8 and 4 <= a["top8"] <= 8 for a in variant.values()), variant
    assert "| mean |" in render_masking_check(result) and forced in result["precision"]
    assert top_overlap(np.arange(12.0), -np.arange(12.0), k=4) == 0
    assert top_overlap(np.arange(12.0), np.arange(12.0)) == 8


def test_each_precision_has_its_own_cached_analysis(monkeypatch, fresh_choice):
    from langprune.analysis.analyze import Settings, cache_path
    from langprune.data.corpus import udhr_corpus

    corpus, settings = udhr_corpus(["en"]), Settings(("en",))
    paths = {}
    for forced in ("float32", "bfloat16"):
        monkeypatch.setenv(ENV, forced)
        output_layer_precision.cache_clear()
        paths[forced] = cache_path("model", corpus, settings)
    assert paths["float32"] != paths["bfloat16"] and "-float32-" in paths["float32"].name
