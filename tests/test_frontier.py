"""`make bench-frontier`: the cuts at several levels, measured in llama.cpp against the original,
and shown in the next export's report (on a tiny model; the real model's frontier is in the session
notes and in `exported/` after `make bench-frontier`)."""

import json
import re

import pytest

from langprune.data.corpus import load_corpus
from langprune.errors import UserError
from langprune.frontier import Level, parse_level, write_frontier
from langprune.measure.verify import LLAMA_BENCH_REPS
from langprune.model.load import load
from langprune.options import Context, ExportOptions, all_languages
from langprune.paths import frontier_dir
from langprune.pipeline import run_export
from langprune.preflight import check_options
from langprune.report.frontier import frontier_changes
from tests.tiny import save_tiny

KEPT = ["en", "de"]


def test_levels_parse_and_bad_ones_fail_clearly():
    assert parse_level("vocab=65536+heads=0.25+norefit") == Level("vocab=65536+heads=0.25+norefit", 65536, 0.25,
                                                                  None, False)
    assert parse_level("vocab") == Level("vocab", vocab=True)
    assert parse_level("ffn=0.125+heal=5") == Level("ffn=0.125+heal=5", ffn=0.125, heal=5.0)
    assert parse_level("heads=0.25+ffn=0.25+iterative") == Level("heads=0.25+ffn=0.25+iterative", heads=0.25, ffn=0.25,
                                                                 search="iterative")
    assert parse_level("output=q4_0") == Level("output=q4_0", output="Q4_0")  # the original quantized harder
    assert parse_level("vocab+quant=IQ4_NL+output=Q5_0") == Level("vocab+quant=IQ4_NL+output=Q5_0", vocab=True,
                                                                  quant="IQ4_NL", output="Q5_0")
    for bad in ("heads=half", "vocab=many", "layers=2", "norefit=1", "heal=0", "heal", "iterative=1", "output=Q2_K",
                "vocab+quant=Q9_0", "output"):
        with pytest.raises(UserError, match="is not one of vocab"):
            parse_level(bad)
    with pytest.raises(UserError, match="norefit, iterative and heal go with a cut"):
        parse_level("output=Q4_0+heal=5")
    for bad in ("heads=1.5", "vocab+ffn=-0.1", "ffn=1"):  # the export's own check of --heads and --ffn
        with pytest.raises(UserError, match=rf"level '{re.escape(bad)}': the fraction to drop must be in \[0, 1\)"):
            parse_level(bad)
    for bad in ("norefit", "ffn=0", "quant=Q4_K_M"):
        with pytest.raises(UserError, match="cuts nothing"):
            parse_level(bad)


def test_frontier_rows_and_the_exports_report(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_EXPORTS", str(tmp_path / "exported"))
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp_path / "llama")), heads=0.25, layout="free",
                            reps=1, analysis_langs=KEPT + ["fr", "ru"], quant=["Q4_K_M"])
    name, layout = check_options(options)
    loaded = load(options.model)
    ctx = Context(options, loaded, load_corpus(all_languages(options)), layout)
    config = loaded.model.config
    n_vocab, n_heads = config.vocab_size, config.num_hidden_layers * config.num_attention_heads
    with pytest.raises(UserError, match="vocab 10: the kept languages need at least"):
        write_frontier(ctx, [parse_level("heads=0.25"), parse_level("vocab=10")], tmp_path / "frontier",
                       threads=(1,), reps=1)
    with pytest.raises(UserError, match=r"level 'output=Q6_K': .* does not fit Q6_K's blocks \(rows of 64\)"):
        write_frontier(ctx, [parse_level("vocab"), parse_level("output=Q6_K")], tmp_path / "frontier", threads=(1,))
    assert not (tmp_path / "frontier").exists()

    levels = [parse_level(text) for text in ("vocab", "heads=0.25+norefit", "heads=0.25", "vocab+ffn=0.25",
                                             "heads=0.25+heal=0.01", "output=Q4_0")]
    md = write_frontier(ctx, levels, frontier_dir(name, KEPT), threads=(1,), reps=1)
    result = json.loads(md.with_suffix(".json").read_text())
    original, trimmed, masked, refit, both, healed, harder = result["rows"]
    assert [r["cut"] for r in result["rows"]] == ["original"] + [level.name for level in levels]
    assert result["dropped"] == ["fr", "ru"] and result["reps"] == LLAMA_BENCH_REPS  # as an export's
    assert original["tokens"] == n_vocab > trimmed["tokens"] == both["tokens"] and original["heads"] == n_heads
    assert masked["tokens"] == refit["tokens"] == n_vocab and masked["heads"] == refit["heads"] < n_heads
    assert both["neurons"] < original["neurons"] == trimmed["neurons"] == refit["neurons"]
    for row in result["rows"][1:]:
        assert row["file_bytes"] < original["file_bytes"] and row["decode_speedup"]["1"] > 0
        assert row["prompt_speedup"]["1"] > 0  # llama-bench's pp512, beside its tg128
        assert ("agreement" in row) == (row["tokens"] < n_vocab), row["cut"]
    # the same heads go with and without the refit; only the refit's o_proj changes what they compute
    assert masked["file_bytes"] == refit["file_bytes"] == healed["file_bytes"] and healed["heal"]["steps"] >= 1
    assert len({row["evaluation"]["en"]["bits_per_byte"] for row in (masked, refit, healed)}) == 3
    assert "heal" not in refit
    # quantized harder, uncut: the original's shape and tokens, another file
    assert [harder[k] for k in ("heads", "neurons", "tokens")] == [original[k] for k in ("heads", "neurons", "tokens")]
    assert harder["output"] == "Q4_0" and "agreement" not in harder
    assert harder["evaluation"]["en"]["bits_per_byte"] != original["evaluation"]["en"]["bits_per_byte"]
    for row in (masked, refit):  # the tokenizer is the original's: the same tokens, scored by another model
        change = frontier_changes(row, original)
        assert all(tokens == 0 for by_lang in change["outside"].values() for tokens, _ in by_lang.values())
        assert set(change["dropped"]) == {"fr", "ru"}
        assert all(row["dropped"][lang]["tokens"] == original["dropped"][lang]["tokens"] for lang in ("fr", "ru"))
    change = frontier_changes(trimmed, original)
    assert set(change["outside"]) == {"fortunes", "manpages", "handbook", "help"}
    for source, by_lang in change["outside"].items():
        assert set(by_lang) == set(KEPT)
        for lang, (tokens, _) in by_lang.items():  # the trimmed tokenizer never takes fewer tokens
            assert tokens >= 0 and 0 < trimmed["agreement"][source][lang] <= 1, (source, lang)
    text = md.read_text()
    assert "`heads=0.25+norefit`" in text and f"{n_heads} / {original['neurons']:,} / {n_vocab:,}" in text

    report = (run_export(options) / "report.md").read_text()
    assert "## Frontier" in report and "`vocab+ffn=0.25`" in report
