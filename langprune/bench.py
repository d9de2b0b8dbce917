"""Existing exports measured again, their reports re-rendered: against their originals (`make bench`, without
re-exporting) and on-device (`make mobile-check`, with `measure/mobile.py` and `measure/arm64.py`)."""

import json
import tempfile
from pathlib import Path

from .data.corpus import load_corpus
from .errors import UserError
from .log import say
from .measure.verify import measure_exports
from .paths import MARKER, adding_to_output, export_dir
from .report.report import summary, write_report


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


def _sides(folder: Path) -> tuple[dict, dict, dict, dict]:
    """(report, the original's files, the export's files, each side's tokenizer) of an export; the original's files
    are the cached ones its report names."""
    from .exporters.files import onnx_reference
    from .model.load import load_tokenizer

    report = json.loads((folder / "report.json").read_text())
    before = {k: Path(v) for k, v in report["files_before"].items()}
    missing = [str(p) for p in before.values() if not p.exists()]
    if missing:
        raise UserError(f"{folder}: the original's exports are gone from the cache ({missing[0]}); re-export")
    after = {k: folder / v for k, v in report["files"].items()}
    # each side's own tokenizer, the one saved beside its ONNX model (a trimmed vocabulary differs)
    tokenizers = {side: load_tokenizer(Path(files[onnx_reference(files)]).parent)
                  for side, files in (("before", before), ("after", after))}
    return report, before, after, tokenizers


def bench_one(folder: Path) -> dict:
    """Runtime figures of one export measured again; report.json and report.md keep the export's."""
    report, before, after, tokenizers = _sides(folder)
    kept, dropped = report["languages"]["kept"], report["languages"]["dropped"]
    options = report["options"]
    corpus = load_corpus(kept + dropped, options.get("corpus"))
    given = Path(report["given"]["file"]) if "given" in report else None  # the model the user gave, if still there
    results = measure_exports(tokenizers, corpus, kept, dropped, before, after, report["deployed"], options["reps"],
                              tuple(options["threads"]), given if given and given.exists() else None)
    bench = {**report, **results}
    with adding_to_output(folder, ["bench.json", "bench.md"]):
        write_report(folder, bench, "bench")
    return bench


def bench(folders: list[Path] | None = None):
    for folder in export_folders(folders):
        yield folder, summary(bench_one(folder))


def deployed_kind(folder: Path) -> str:
    """The GGUF file type of an export's deployed file: bench-quants' baseline; refused for an export without one."""
    from .exporters.files import gguf_kind

    deployed = json.loads((Path(folder) / "report.json").read_text())["deployed"]
    if deployed == "gguf F16":
        raise UserError(f"{folder}: its deployed file is {deployed} (QUANT had no GGUF file type): re-export with "
                        "one, e.g. QUANT=Q4_K_M, to compare file types against it")
    return gguf_kind(deployed)


def bench_quants(folder: Path, threads: tuple[int, ...] = (2,), reps: int = 5,
                 kinds: tuple[str, ...] | None = None) -> dict:
    """What a llama.cpp user would deploy instead (`measure/alternatives.py`), measured beside the export and added
    to its report.json and report.md, with the plot quants.png; `kinds`: the GGUF file types (default: all)."""
    from .data.outside_text import outside_corpora
    from .exporters.imatrix import calibration_matrix
    from .measure.alternatives import measure_alternatives
    from .model.load import load
    from .options import GGUF_QUANTS
    from .report.plots import pareto_plot

    folder = Path(folder)
    report, before, after, tokenizers = _sides(folder)
    kept = report["languages"]["kept"]
    baseline_kind = deployed_kind(folder)
    corpus = load_corpus(kept, report["options"].get("corpus"))
    names = ["quants.png", "report.json", "report.md"]
    with adding_to_output(folder, names), tempfile.TemporaryDirectory() as tmp:  # refused now if a name is not ours
        imatrix = None
        if (report.get("choice") or {}).get("imatrix"):  # IMATRIX=on: the original with its own matrix too
            say("== the original's importance matrix, as the export's (IMATRIX=on)")
            if not (folder / report["choice"]["imatrix"]).exists():
                raise UserError(f"{folder}: its importance matrix {report['choice']['imatrix']} is gone (IMATRIX=on "
                                "made its deployed file with it): re-export")
            imatrix = {"pruned": folder / report["choice"]["imatrix"],
                       "original": calibration_matrix(load(report["model"]["source"]).model, before["gguf F16"],
                                                      tokenizers["before"], corpus, kept, Path(tmp) / "imatrix.gguf")}
        result = measure_alternatives({"original": before["gguf F16"], "pruned": after["gguf F16"]},
                                      {"original": tokenizers["before"], "pruned": tokenizers["after"]},
                                      corpus, outside_corpora(kept), kept,
                                      baseline_kind, threads, reps, tuple(kinds or GGUF_QUANTS), imatrix)
        result["deployed"] = "pruned " + report["deployed"].removeprefix("gguf ")  # alternatives.file_name's
        pareto_plot(result, folder / "quants.png")
        report["alternatives"] = result
        write_report(folder, report)
    return result


def mobile_check(folder: Path, install: bool = False, quants=None, langs=None) -> dict:
    """Run the checks on an export and add them to its report.json and report.md. install: let
    `arm64_setup.prepare_system` run the apt/dpkg commands the arm64 checks need (else they are named);
    quants: the GGUF kinds to run on arm64 (default `arm64.ARM_QUANTS`; each is emulated for minutes);
    langs: the kept languages to check (default: all; each is minutes emulated too)."""
    from .measure.arm64 import arm64_check, gguf_source
    from .measure.arm64_setup import prepare_system
    from .measure.mobile import MOBILE_QUANT, arm64_quants, languages_to_check, onnx_source, ort_mobile

    quants = arm64_quants(quants)

    folder = Path(folder)
    kept = languages_to_check(folder, langs)
    report = json.loads((folder / "report.json").read_text())
    corpus = report["options"].get("corpus")
    names = [f"onnx-{MOBILE_QUANT}", "report.json", "report.md"] + [f"gguf/model-{kind}.gguf" for kind in quants]
    with adding_to_output(folder, names):
        onnx_source(folder)  # the models the checks start from, before the system's packages
        for kind in quants:
            gguf_source(folder, kind)
        prepare_system(install)
        report["mobile"] = {"ort": ort_mobile(folder, kept, corpus), "arm64": arm64_check(folder, kept, corpus, quants)}
        write_report(folder, report)
    return report["mobile"]
