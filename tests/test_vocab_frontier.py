"""`make bench-vocab`: the vocabulary trim at several sizes, measured in llama.cpp against the
original, and shown in the next export's report (on a tiny model; the real model's frontier is in
the session notes and in `exported/` after `make bench-vocab`)."""

import json

import pytest

from tests.tiny import save_tiny
from toolchain.data.corpus import load_corpus
from toolchain.errors import UserError
from toolchain.measure.vocab_frontier import write_frontier
from toolchain.model.load import load
from toolchain.options import Context, ExportOptions, check_options
from toolchain.paths import frontier_dir
from toolchain.pipeline import run_export
from toolchain.report.frontier import frontier_changes

KEPT = ["en", "de"]


def test_frontier_rows_and_the_exports_report(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_EXPORTS", str(tmp_path / "exported"))
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp_path / "llama")), heads=0.25, layout="free",
                            reps=1, analysis_langs=KEPT + ["fr", "ru"], quant=["Q4_K_M"])
    name, layout = check_options(options)
    loaded = load(options.model)
    ctx = Context(options, loaded, load_corpus(KEPT), layout)
    n_vocab = loaded.model.config.vocab_size
    with pytest.raises(UserError, match="VOCAB=10: the kept languages need at least"):
        write_frontier(ctx, [10], tmp_path / "frontier", threads=(1,), reps=1)

    md = write_frontier(ctx, [None], frontier_dir(name, KEPT), threads=(1,), reps=1)
    result = json.loads(md.with_suffix(".json").read_text())
    original, trimmed = result["rows"]
    assert original["tokens"] == n_vocab > trimmed["tokens"] and trimmed["size"] == "default"
    assert trimmed["file_bytes"] < original["file_bytes"] and trimmed["decode_speedup"]["1"] > 0
    change = frontier_changes(trimmed, original)
    assert set(change["outside"]) == {"fortunes", "manpages"}
    for source, by_lang in change["outside"].items():
        assert set(by_lang) == set(KEPT)
        for lang, (tokens, _) in by_lang.items():  # the trimmed tokenizer never takes fewer tokens
            assert tokens >= 0 and 0 < trimmed["agreement"][source][lang] <= 1, (source, lang)
    text = md.read_text()
    assert f"{trimmed['tokens']:,} (default)" in text and f"{n_vocab:,} (original)" in text

    report = (run_export(options) / "report.md").read_text()
    assert "## Vocabulary size frontier" in report and f"{trimmed['tokens']:,} (default)" in report
