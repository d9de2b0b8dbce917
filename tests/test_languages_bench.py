"""`bench-languages`: one export per language set, and a table read from their reports."""

import json
import os
import subprocess
import sys

from langprune.report.languages import write_languages
from tests.tiny import save_tiny


def test_one_export_per_set_and_a_row_from_each_report(tmp_path):
    exports, model = tmp_path / "exported", save_tiny("llama", tmp_path / "llama")
    env = {**os.environ, "LANGPRUNE_EXPORTS": str(exports)}
    args = [sys.executable, "-m", "langprune.cli", "bench-languages", "en,de", "ru", "--model", str(model),
            "--threads", "1", "--reps", "1"]
    result = subprocess.run(args, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    table = json.loads((exports / "languages-llama" / "languages.json").read_text())
    assert [row["langs"] for row in table["rows"]] == ["en,de", "ru"]
    for row, folder in zip(table["rows"], ("llama-en-de", "llama-ru")):  # each set where `export` puts it
        report = json.loads((exports / folder / "report.json").read_text())
        assert report["languages"]["kept"] == row["langs"].split(",")
        assert row["tokens"] == [report["structure"][side]["vocabulary"] for side in ("before", "after")]
        deployed = report["deployed"]
        # <= 1: the default keeps every head, and the tiny model's vocabulary and FFN may all stay
        assert row["size"] == report["sizes"]["after"][deployed] / report["sizes"]["before"][deployed] <= 1
        bench = report["llama_bench"]["files"]  # the deployed file's decode: llama-bench's tg128
        assert row["decode"] == {t: bench["after"][t]["tg128"]["mean"] / bench["before"][t]["tg128"]["mean"]
                                 for t in bench["before"]}
        # the speed flags reach it
        assert report["speed_setup"]["reps"] == 1 and set(bench["after"]) == {"1"} == set(row["decode"])
        verdict = "Every kept language is within every limit." in (exports / folder / "report.md").read_text()
        assert row["within_limits"] == verdict  # the table says what each report says
    assert "| en,de | " in (exports / "languages-llama" / "languages.md").read_text()


def test_a_refused_set_is_a_row_with_its_message(tmp_path):
    write_languages(tmp_path, "gemma3-270m", {"ar": "--vocab auto: ar takes +18% tokens on handbook"})
    assert json.loads((tmp_path / "languages.json").read_text())["rows"] == [
        {"langs": "ar", "refused": "--vocab auto: ar takes +18% tokens on handbook"}]
    assert "| ar | refused: --vocab auto: ar takes +18% tokens on handbook |" in (tmp_path / "languages.md").read_text()
