"""`make bench` re-measures an existing export without re-exporting (on a tiny model)."""

import json

from transformers import AutoTokenizer

from langprune.bench import bench
from langprune.data.corpus import load_corpus
from langprune.data.evaluate import scored_tokens
from langprune.data.outside_text import outside_corpora
from langprune.exporters.files import gguf_kind
from langprune.measure.alternatives import within_limits
from langprune.measure.llama_bench import BUSY_SPREAD
from langprune.model.load import load
from langprune.options import ExportOptions
from langprune.paths import MARKER, written_files
from langprune.pipeline import run_export
from tests.tiny import save_tiny


def test_bench_remeasures_an_existing_export(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_EXPORTS", str(tmp_path / "exported"))
    model_dir = save_tiny("llama", tmp_path / "llama")
    options = ExportOptions(langs=["en", "de"], model=str(model_dir), heads=0.25, layout="free", reps=1,
                            analysis_langs=["en", "de", "fr", "es", "ru", "it", "nl", "pl"])
    folder = run_export(options)
    exported = {p.relative_to(folder): p.stat().st_mtime for p in folder.rglob("*") if p.is_file() and p.name != MARKER}
    report, text = json.loads((folder / "report.json").read_text()), (folder / "report.md").read_text()
    tokenizer, dropped, deployed = load(str(model_dir)).tokenizer, report["languages"]["dropped"], report["deployed"]
    corpus = load_corpus(dropped)
    for lang in dropped:  # dropped languages: in the deployed file, on the first 3 evaluation documents
        first = scored_tokens(tokenizer, corpus.texts[lang]["evaluation"][:3])
        assert report["quality"][deployed]["before"][lang]["tokens"] == first < scored_tokens(
            tokenizer, corpus.texts[lang]["evaluation"]), lang
    assert report["languages"]["dropped_documents"] == 3 and "on the first 3 evaluation documents" in text
    outside = report["outside"]  # text beyond the corpus: kept languages scored, dropped ones counted
    assert set(outside["quality"]["fortunes"]["after"]) == {"en", "de"}
    counted, fortunes = outside["dropped_tokens"]["fortunes"], outside_corpora(dropped)["fortunes"]
    assert set(counted["before"]) == set(counted["after"]) == {"es", "ru", "it"}  # the dropped ones fortunes has
    trimmed = AutoTokenizer.from_pretrained(folder / "pytorch")  # each side counted by its own tokenizer
    for lang in counted["before"]:
        docs = fortunes.texts[lang]["evaluation"]
        before, after = scored_tokens(tokenizer, docs), scored_tokens(trimmed, docs)
        assert counted["before"][lang] == before <= counted["after"][lang] == after
    assert "Kept languages scored, dropped ones counted in tokens" in text

    [(benched, rows)] = list(bench())
    assert benched == folder
    bench_report = json.loads((folder / "bench.json").read_text())
    assert set(bench_report["speed"]) == {"onnx fp32", f"{deployed}, sampled"}  # the Python worker's measures
    assert bench_report["deployed"] == deployed and bench_report["llama_bench"]["file"] == deployed
    assert len([r for r in rows if "tok/s" in r[0] and "llama-bench" not in r[0]]) == 8  # 2 runs, 2 metrics, 2 thr
    assert len([r for r in rows if "tok/s (llama-bench)" in r[0]]) == 4  # pp512 and tg128 at 1 and 2 threads
    for by_threads in bench_report["speed"].values():
        for row in by_threads.values():
            assert row["decode_tps_ratio"] == row["decode_tps_after"] / row["decode_tps_before"]
            assert row["decode_tps_after"] > 0
    # where a token's weight reads go: heads and vocabulary were cut, FFN neurons were not
    ceiling = bench_report["ceiling"]
    for side in ("before", "after"):
        assert sum(p["bytes"] for p in ceiling["parts"][side].values()) == ceiling[f"bytes_{side}"]
    before, after = ceiling["parts"]["before"], ceiling["parts"]["after"]
    for part in ("attention projections", "output layer (vocabulary)"):
        assert after[part]["bytes"] < before[part]["bytes"], part
    assert after["FFN"] == before["FFN"]
    assert "weights read per token" in (folder / "bench.md").read_text()
    # nothing was re-exported; the export's list of what langprune wrote there has the bench's files too
    assert all((folder / p).stat().st_mtime == t for p, t in exported.items())
    assert written_files(folder) == {str(p) for p in exported} | {"bench.json", "bench.md"}


def test_the_deployed_file_is_the_smallest_gguf_whatever_the_order_typed(tmp_path):
    from langprune.measure.verify import deployed_file

    files = {}
    for key, size in (("gguf F16", 400), ("gguf Q8_0", 200), ("gguf Q4_K_M", 120), ("gguf Q4_0", 110)):
        files[key] = tmp_path / key.replace(" ", "-")
        files[key].write_bytes(b"x" * size)
    assert deployed_file(files, ["Q4_K_M", "Q8_0"]) == deployed_file(files, ["Q8_0", "Q4_K_M"]) == "gguf Q4_K_M"
    assert deployed_file(files, ["Q4_0", "Q8_0", "Q4_K_M"]) == "gguf Q4_0"
    assert deployed_file(files, []) == "gguf F16"


def test_the_report_says_within_the_limits_only_when_every_kept_language_is():
    from langprune.report.tables import limit_rows, limits_verdict

    def q(tokens, bpb):
        return {"tokens": tokens, "bits_per_byte": bpb}

    report = {"deployed": "gguf Q4_K_M", "languages": {"kept": ["ja", "zh"]},
              "quality": {"gguf Q4_K_M": {"before": {"ja": q(100, 1.0), "zh": q(100, 1.0)},
                                          "after": {"ja": q(100, 1.01), "zh": q(100, 0.99)}}},
              "outside": {"quality": {"manpages": {"before": {"ja": q(1000, 2.0), "zh": q(1000, 2.0)},
                                                   "after": {"ja": q(1006, 2.0), "zh": q(1000, 2.01)}}}}}
    rows = limit_rows(report)
    assert [(what, within) for what, _, _, within in rows] == [
        ("bits/byte, ja evaluation, change", "yes"), ("bits/byte, zh evaluation, change", "yes"),
        ("tokens, ja manpages, change", "no"), ("bits/byte, ja manpages, change", "yes"),
        ("tokens, zh manpages, change", "yes"), ("bits/byte, zh manpages, change", "yes")]
    assert limits_verdict(rows) == "**Not within the limits**: tokens, ja manpages, change +0.60%."
    report["outside"]["quality"]["manpages"]["after"]["ja"] = q(1005, 2.0)
    assert limits_verdict(limit_rows(report)) == "Every kept language is within every limit."


def test_the_chosen_file_is_the_fastest_within_the_limits_then_the_smallest():
    """QUANT=auto's rule on Gemma-like rows: the fastest file over the limit is passed over, and of two files 3%
    apart in speed (noise) the smaller one goes; no pruned file within the limits: none."""
    from langprune.measure.alternatives import choose

    def row(side, size, tg128, worst, evaluation=0.0):
        return {"side": side, "size": size, "worst_outside": worst, "changes": {"evaluation": {"en": evaluation}},
                "speed": {"2": {"tg128": {"ratio": tg128}}}}

    rows = {"original Q4_K_M": row("original", 100, 1.0, 0.0),
            "original Q4_K_M, output Q4_0": row("original", 67, 1.76, 0.0),
            "pruned Q4_K_M": row("pruned", 72, 1.33, 0.0), "pruned Q4_K_M, output Q5_0": row("pruned", 56, 1.30, 0.004),
            "pruned Q4_K_M, output IQ4_NL": row("pruned", 51, 2.01, 0.046),
            "pruned Q4_0": row("pruned", 50, 1.9, 0.0, evaluation=0.06)}
    assert choose(rows, "2") == "pruned Q4_K_M, output Q5_0"
    rows["pruned Q4_K_M, output Q5_0"]["speed"]["2"]["tg128"]["ratio"] = 1.2  # now 10% slower: speed first
    assert choose(rows, "2") == "pruned Q4_K_M"
    assert choose({k: v for k, v in rows.items() if "IQ4_NL" in k or "original" in k}, "2") is None


def test_bench_quants_measures_every_file_type_of_both_models_and_marks_the_front(tmp_path, monkeypatch):
    """`make bench-quants`: both models at every GGUF file type, each output-layer type that changes the file, the
    baseline (the original at the deployed type) against itself, the front as no file beats it, added to the
    report; the deployed file re-made from the export's F16 is the export's own."""
    from langprune.bench import bench_quants

    monkeypatch.setenv("LANGPRUNE_EXPORTS", str(tmp_path / "exported"))
    options = ExportOptions(langs=["en", "de"], model=str(save_tiny("llama", tmp_path / "llama")), heads=0.25,
                            layout="free", reps=1, threads=(1,), analysis_langs=["en", "de", "fr"])
    folder = run_export(options)
    result = bench_quants(folder, threads=(1,), reps=1, kinds=("Q4_0",))  # and the deployed type
    rows, baseline, deployed = result["files"], result["files"][result["baseline"]], result["files"][result["deployed"]]
    export = json.loads((folder / "report.json").read_text())
    kind = gguf_kind(export["deployed"])  # QUANT=auto's choice on llama-bench's times: Q8_0 or Q4_K_M on a tiny model
    assert kind in ("Q8_0", "Q4_K_M") and result["baseline"] == f"original {kind}"
    assert result["deployed"] == export["deployed"].replace("gguf", "pruned")
    for side in ("original", "pruned"):
        for each in (kind, "Q4_0"):
            outputs = [row["output_type"] for row in rows.values() if (row["side"], row["kind"]) == (side, each)]
            assert outputs and len(set(outputs)) == len(outputs), (side, each)  # each file differs from the others
    assert {row["kind"] for row in rows.values()} == {kind, "Q4_0"}
    assert baseline["relative_size"] == 1 and set(baseline["changes"]["evaluation"].values()) == {0.0}
    assert set(baseline["changes"]["outside"]) == {"en", "de"} and baseline["worst_outside"] == 0.0
    assert deployed["size"] == (folder / export["files"][export["deployed"]]).stat().st_size
    for name, row in rows.items():
        assert row["size"] < rows[name.replace("pruned", "original")]["size"] if row["side"] == "pruned" else True
        assert row["speed"]["1"]["tg128"]["mean"] > 0 and row["speed"]["1"]["pp512"]["ratio"] > 0
        assert all(b.rsplit(", ", 2)[0] in (name, "baseline") for b in row["busy"])  # not "..., output Q4_0"'s

    def point(row):
        return row["size"], -row["speed"]["1"]["tg128"]["ratio"], row["worst_outside"]

    for name, row in rows.items():  # on the front exactly when no file is at least as good on all three, better on one
        beaten = any(all(a <= b for a, b in zip(point(other), point(row))) and point(other) != point(row)
                     for other in rows.values())
        assert (name in result["front"]) != beaten, name
    held = [name for name, row in rows.items() if row["side"] == "pruned" and within_limits(row)]
    choice, speed = result["choice"], {name: row["speed"]["1"]["tg128"]["ratio"] for name, row in rows.items()}
    assert (choice is None) == (not held)
    if held:  # within the limits, as fast as the fastest of them (llama-bench's noise), and none as fast is smaller
        fastest = max(speed[n] for n in held)
        assert choice in held and speed[choice] >= (1 - BUSY_SPREAD) * fastest
        assert not any(speed[n] >= (1 - BUSY_SPREAD) * fastest and rows[n]["size"] < rows[choice]["size"]
                       for n in held)
    report, text = json.loads((folder / "report.json").read_text()), (folder / "report.md").read_text()
    assert report["alternatives"]["front"] == result["front"] and "## What else a user could deploy" in text
    assert "Chosen by that measure" in text and (f"`{choice}`" in text if choice else "none, no pruned file" in text)
    assert all(f"| {name} |" in text for name in rows)
    assert (folder / "quants.png").read_bytes()[:4] == b"\x89PNG" and "quants.png" in written_files(folder)
