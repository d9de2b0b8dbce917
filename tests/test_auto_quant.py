"""QUANT=auto (the default): the deployed GGUF file chosen by llama-bench's tg128 and quality beyond the corpus, on a
tiny model (the real default export: tests/test_export_e2e.py)."""

import json
import shutil
from pathlib import Path

import pytest

from langprune import load_pruned
from langprune.bench import _sides
from langprune.data.corpus import load_corpus
from langprune.errors import UserError
from langprune.exporters.files import gguf_key, gguf_name
from langprune.exporters.imatrix import calibration_matrix, importance_matrix
from langprune.measure import auto_quant
from langprune.measure.alternatives import fastest_then_smallest
from langprune.measure.auto_quant import IMATRIX_NAME, choose_deployed, selection_texts
from langprune.measure.llama_bench import BUSY_SPREAD
from langprune.options import QUALITY_LIMITS, ExportOptions
from langprune.paths import written_files
from langprune.pipeline import run_export
from tests.tiny import save_tiny

KEPT = ["en", "de"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("auto")
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp / "llama")), heads=0.25, layout="free",
                            reps=1, threads=(1,), analysis_langs=KEPT + ["fr"], out=tmp / "export")
    return run_export(options)


def test_auto_deploys_the_fastest_file_within_the_limit_then_the_smallest(export):
    report = json.loads((export / "report.json").read_text())
    choice, deployed = report["choice"], report["deployed"]
    rows, limit = choice["candidates"], choice["limit"]
    assert choice["file"] == deployed and limit == QUALITY_LIMITS["outside_bpb_rise"] and choice["threads"] == 1
    parts = [report["timings_s"][f"choose: {part}"] for part in ("quantize", "llama-bench", "scoring")]
    # where its seconds went (each rounded to 0.1 s)
    assert 0 < sum(parts) <= report["timings_s"]["choose the deployed file"] + 0.05 * (len(parts) + 1)
    # every file type's default and each output layer type that changes the file
    assert {row["kind"] for row in rows.values()} == {"Q8_0", "Q4_K_M"} and gguf_key("Q4_K_M") in rows
    for kind in ("Q8_0", "Q4_K_M"):
        types = [row["output_type"] for row in rows.values() if row["kind"] == kind]
        assert len(types) == len(set(types)) > 1, kind
    texts = set(selection_texts(KEPT))
    assert {"en fortunes", "de manpages"} <= texts
    scored = {key: row for key, row in rows.items() if "held" in row}
    for row in scored.values():  # each up to its first text over the limit, in the order of the texts
        values = list(row["outside"].values())
        assert row["worst_outside"] == max(values)
        assert (set(row["outside"]) == texts) if row["held"] else (values[-1] > limit >= max(values[:-1], default=-1))
    held = {key: row for key, row in scored.items() if row["held"]}
    assert held and choice["within_limit"]  # a tiny model's files differ by well under 1% beyond the corpus
    fastest = max(row["tg128"] for row in held.values())
    # the choice is the rule's over what was scored, and nothing that could have been chosen went unscored
    assert deployed == fastest_then_smallest({k: r["tg128"] for k, r in held.items()},
                                             {k: r["size"] for k, r in held.items()})
    assert all((key in scored) != ("not_scored" in row) for key, row in rows.items())
    unscored = [row for key, row in rows.items() if key not in scored]
    assert all(row["tg128"] < (1 - BUSY_SPREAD) * fastest or row["size"] >= rows[deployed]["size"] for row in unscored)
    # the deployed file beside the file types' own, against the original at its file type; nothing else left
    kind, output = rows[deployed]["kind"], rows[deployed]["output"]
    assert report["files"][deployed] == f"gguf/{gguf_name(kind, output)}"
    assert report["files_before"][deployed] == report["files_before"][gguf_key(kind)]
    for lang in KEPT:  # that file's kept languages scored once, for both keys
        before = report["quality"][deployed]["before"][lang]
        assert before == report["quality"][gguf_key(kind)]["before"][lang] and before["tokens"] > 0
    assert rows[deployed]["size"] == report["sizes"]["after"][deployed] == (export / "gguf" / gguf_name(kind, output)
                                                                           ).stat().st_size
    assert sorted(p.name for p in (export / "gguf").iterdir()) == sorted(
        {"model-F16.gguf", "model-Q8_0.gguf", "model-Q4_K_M.gguf", gguf_name(kind, output)})
    assert f"gguf/{gguf_name(kind, output)}" in written_files(export)
    assert report["llama_bench"]["file"] == report["outside"]["file"] == deployed
    text = (export / "report.md").read_text()
    assert "## The deployed file (QUANT=auto)" in text and f"| {deployed} | {rows[deployed]['output_type']} |" in text
    assert f"`{deployed}` is the fastest file within the limit" in text
    # the deployed file against the model given (a Hugging Face directory: its weights in the original's F16 GGUF)
    given = report["given"]
    assert given["file"] == report["files_before"]["gguf F16"] and given["type"] == "F16"
    assert given["size"] == Path(given["file"]).stat().st_size > rows[deployed]["size"]
    assert list(report["llama_bench"]["files"]) == ["given", "before", "after"]
    for sides in report["outside"]["quality"].values():  # scored on the same text, with the original's tokenizer
        assert sides["given"].keys() == sides["before"].keys() and all(q["tokens"] > 0 for q in sides["given"].values())
    first = text.index("## The deployed file against the model you gave")
    assert first < text.index("## Summary") and f"`{given['file']}` (F16) as given" in text[first:]


def test_no_file_within_the_limit_deploys_the_smallest_file_types_default(export):
    """A limit nothing holds (below any file's change): each candidate is scored up to its first text, all over, and
    the export's Q4_K_M goes, as without auto; so too where no kept language has text beyond the corpus (Esperanto
    has none), with nothing scored; no file is added or left behind."""
    _, before, after, tokenizers = _sides(export)
    files, sides = sorted((export / "gguf").iterdir()), {"before": before, "after": after}
    choice = choose_deployed(sides, tokenizers, KEPT, ["Q4_K_M"], 1, 1, limit=-1.0)
    assert (choice["file"], choice["within_limit"]) == ("gguf Q4_K_M", False)
    assert choice["path"] == after["gguf Q4_K_M"] and sorted((export / "gguf").iterdir()) == files
    assert all(row["held"] is False and len(row["outside"]) == 1 for row in choice["candidates"].values())
    unchecked = choose_deployed(sides, tokenizers, ["eo"], ["Q4_K_M"], 1, 1, limit=0.01)
    assert (unchecked["file"], unchecked["within_limit"], unchecked["texts"]) == ("gguf Q4_K_M", False, [])
    assert not any("held" in row for row in unchecked["candidates"].values())
    assert sorted((export / "gguf").iterdir()) == files


def test_imatrix_quantizes_each_file_over_the_limit_again_and_scores_it_next(export, tmp_path, monkeypatch):
    """IMATRIX=on: where nothing holds the limit, each scored file's twin with the importance matrix (made once) is
    scored after it: the same tensor types, so its twin's tg128, and other values; nothing is left behind. A twin
    that holds it (here by decree: the rule's wiring) is deployed with its matrix beside it."""
    folder = shutil.copytree(export, tmp_path / "export")
    _, before, after, tokenizers = _sides(folder)
    model, sides, made = load_pruned(folder)[0], {"before": before, "after": after}, []
    files = sorted((folder / "gguf").iterdir())

    def imatrix(path):
        made.append(path)
        return importance_matrix(model, after["gguf F16"], [tokenizers["after"]("All human beings")["input_ids"]],
                                 path, "one sentence")

    choice = choose_deployed(sides, tokenizers, KEPT, ["Q4_K_M"], 1, 1, limit=-1.0, imatrix=imatrix)
    rows = choice["candidates"]
    twins = {key: row for key, row in rows.items() if row.get("imatrix")}
    plain_scored = [key for key, row in rows.items() if "held" in row and not row.get("imatrix")]
    assert len(made) == 1 and twins and sorted(row["timed_as"] for row in twins.values()) == sorted(plain_scored)
    for key, row in twins.items():
        plain = rows[row["timed_as"]]
        assert key == f"{row['timed_as']}, imatrix" and row["tg128"] == plain["tg128"]
        assert abs(row["size"] - plain["size"]) < 1024 and row["held"] is False and len(row["outside"]) == 1
    assert (choice["file"], choice["imatrix"]) == ("gguf Q4_K_M", None)
    assert sorted((folder / "gguf").iterdir()) == files

    def decree(key, row, *args):  # every file over the limit but the twins
        row.update(outside={"en fortunes": 0.0 if row.get("imatrix") else 1.0}, held=bool(row.get("imatrix")),
                   worst_outside=0.0 if row.get("imatrix") else 1.0)

    monkeypatch.setattr(auto_quant, "_score", decree)
    choice = choose_deployed(sides, tokenizers, KEPT, ["Q4_K_M"], 1, 1, limit=0.01, imatrix=imatrix)
    row = choice["candidates"][choice["file"]]
    assert row["imatrix"] and choice["imatrix"] == f"gguf/{IMATRIX_NAME}" and choice["file"].endswith(", imatrix")
    assert choice["path"] == folder / "gguf" / gguf_name(row["kind"], row["output"], imatrix=True)
    assert sorted((folder / "gguf").iterdir()) == sorted([*files, choice["path"], folder / "gguf" / IMATRIX_NAME])


def test_an_explicit_quant_deploys_the_smallest_file_and_chooses_nothing(tmp_path):
    options = ExportOptions(langs=KEPT, model=str(save_tiny("llama", tmp_path / "llama")), heads=0.25,
                            layout="free", reps=1, threads=(1,), analysis_langs=KEPT, quant=["Q4_0", "Q8_0"],
                            out=tmp_path / "export")
    report = json.loads((run_export(options) / "report.json").read_text())
    assert (report["choice"], report["deployed"]) == (None, "gguf Q4_0")
    assert not any("output" in key for key in report["files"])


def test_bench_quants_makes_each_file_with_an_importance_matrix_too(export, tmp_path):
    """Of an IMATRIX=on export that deployed a file made with its matrix, bench-quants' table has each file twice,
    without and with a matrix: the pruned files with the export's, the original's with one of its own made on the same
    calibration text."""
    from langprune.bench import bench_quants

    folder = shutil.copytree(export, tmp_path / "export", symlinks=True)
    _, _, after, tokenizers = _sides(folder)
    report = json.loads((folder / "report.json").read_text())
    report["choice"]["imatrix"] = f"gguf/{IMATRIX_NAME}"  # as an IMATRIX=on export's
    (folder / "report.json").write_text(json.dumps(report))
    with pytest.raises(UserError, match=f"its importance matrix gguf/{IMATRIX_NAME} is gone"):  # before any work
        bench_quants(folder, threads=(1,), reps=1, kinds=("Q4_K_M",))
    calibration_matrix(load_pruned(folder)[0], after["gguf F16"], tokenizers["after"], load_corpus(KEPT), KEPT,
                       folder / "gguf" / IMATRIX_NAME)
    rows = bench_quants(folder, threads=(1,), reps=1, kinds=("Q4_K_M",))["files"]
    for side in ("original", "pruned"):
        plain = {key: row for key, row in rows.items() if row["side"] == side and not row["imatrix"]}
        weighed = {key: row for key, row in rows.items() if row["side"] == side and row["imatrix"]}
        assert plain and sorted(weighed) == sorted(f"{key}, imatrix" for key in plain), side
        assert all(weighed[f"{key}, imatrix"]["output_type"] == row["output_type"] for key, row in plain.items())
        assert all(row["speed"]["1"]["tg128"]["mean"] > 0 and row["worst_outside"] is not None
                   for row in weighed.values())
    assert "pruned Q4_K_M, imatrix" in (folder / "report.md").read_text()


def test_auto_leaves_out_files_larger_than_the_model_given(export, tmp_path):
    """Where QUANT names no file type, a candidate larger than the model the user gave is neither timed nor chosen
    (unless every one is); the report's table says which were left out for size."""
    from langprune.report.alternatives import deployed_choice_text

    folder = shutil.copytree(export, tmp_path / "export")
    _, before, after, tokenizers = _sides(folder)
    sides = {"before": before, "after": after}
    q8, q4 = (after[gguf_key(kind)].stat().st_size for kind in ("Q8_0", "Q4_K_M"))
    choice = choose_deployed(sides, tokenizers, KEPT, ["Q8_0", "Q4_K_M"], 1, 1, limit=0.01, largest=(q8 + q4) // 2)
    rows = choice["candidates"]
    over = {key for key, row in rows.items() if row["size"] > (q8 + q4) // 2}
    assert gguf_key("Q8_0") in over and {key for key, row in rows.items() if "left_out" in row} == over
    assert all("tg128" not in rows[key] and "held" not in rows[key] for key in over)
    assert choice["file"] not in over and rows[choice["file"]]["size"] <= (q8 + q4) // 2 and not choice["all_larger"]
    text = "\n".join(deployed_choice_text({"choice": choice}))
    assert f"| {gguf_key('Q8_0')} | " in text and "left out: larger than the model given" in text
    everything = choose_deployed(sides, tokenizers, KEPT, ["Q4_K_M"], 1, 1, limit=0.01, largest=1000)
    assert everything["all_larger"] and not any("left_out" in row for row in everything["candidates"].values())
    assert "Every candidate is larger than the model given" in "\n".join(deployed_choice_text({"choice": everything}))


def test_as_fast_within_the_spread_means_the_smaller_file_wins():
    """Qwen2.5-Coder-0.5B's en,de export (issue 62, llama-bench tg128 at 2 threads, each the mean of two interleaved
    runs): the deployed Q8_0 with a Q4_0 output layer 3% faster than the pruned Q4_K_M and 29% larger. The rule
    takes the smaller; a file more than BUSY_SPREAD faster still wins."""
    speed = {"gguf Q8_0, output Q4_0": (31.0 + 29.3) / 2, "gguf Q4_K_M": (29.2 + 29.3) / 2}
    size = {"gguf Q8_0, output Q4_0": 534_880_192, "gguf Q4_K_M": 413_214_144}
    assert fastest_then_smallest(speed, size) == "gguf Q4_K_M"
    faster = {**speed, "gguf Q8_0, output Q4_0": speed["gguf Q4_K_M"] / (1 - BUSY_SPREAD) * 1.01}
    assert fastest_then_smallest(faster, size) == "gguf Q8_0, output Q4_0"
