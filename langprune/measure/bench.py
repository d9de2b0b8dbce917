"""`make bench`: re-measure existing exports against their originals, without re-exporting."""

import json
from pathlib import Path

from ..data.corpus import load_corpus
from ..errors import UserError
from ..paths import MARKER, adding_to_output, export_dir
from ..report.report import ceiling, render, summary
from .verify import measure_exports


def export_folders(folders: list[Path] | None = None) -> list[Path]:
    found = [Path(f) for f in folders] if folders else sorted(p.parent for p in export_dir().glob("*/report.json"))
    if not found:
        raise UserError(f"no exports under {export_dir()}: run `make export LANGS=en,de` first")
    for folder in found:
        if not folder.is_dir():
            raise UserError(f"{folder}: no such folder")
        if not (folder / "report.json").exists() or not (folder / MARKER).exists():
            raise UserError(f"{folder} has no {'report.json' if (folder / MARKER).exists() else MARKER}: not an export "
                            "of langprune")
    return found


def bench_one(folder: Path) -> dict:
    """Runtime figures of one export measured again; report.json and report.md keep the export's."""
    from ..model.load import load_tokenizer

    report = json.loads((folder / "report.json").read_text())
    before = {k: Path(v) for k, v in report["files_before"].items()}
    missing = [str(p) for p in before.values() if not p.exists()]
    if missing:
        raise UserError(f"{folder}: the original's exports are gone from the cache ({missing[0]}); re-export")
    after = {k: folder / v for k, v in report["files"].items()}
    kept, dropped = report["languages"]["kept"], report["languages"]["dropped"]
    options = report["options"]
    # each side's own tokenizer, the one saved beside its ONNX model (a trimmed vocabulary differs)
    tokenizers = {side: load_tokenizer(Path(files["onnx fp32"]).parent)
                  for side, files in (("before", before), ("after", after))}
    corpus = load_corpus(kept + dropped, options.get("corpus"))
    quants = [k.split()[1] for k in report["files"] if k.startswith("gguf ") and k != "gguf F16"]
    results = measure_exports(tokenizers, corpus, kept, dropped, before, after, quants, options["reps"],
                              tuple(options["threads"]))
    gguf_key = report["ceiling"]["file"]
    bench = {**report, **results, "ceiling": {"file": gguf_key, **ceiling(before[gguf_key], after[gguf_key])}}
    with adding_to_output(folder, ["bench.json", "bench.md"]):
        (folder / "bench.json").write_text(json.dumps(bench, indent=1, default=str))
        (folder / "bench.md").write_text(render(bench))
    return bench


def bench(folders: list[Path] | None = None):
    for folder in export_folders(folders):
        yield folder, summary(bench_one(folder))
