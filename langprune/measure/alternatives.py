"""What a llama.cpp user would deploy instead of the export, measured beside it (`make bench-quants`).

The original and the pruned model at every GGUF file type of GGUF_QUANTS, each with its output layer (a tied
embedding table where that is the output layer) at the file type's default and at every OUTPUT_TYPES type that
changes the file; per file its size, llama-bench pp512 and tg128, and bits per byte per kept language on the
evaluation split and on every text beyond the corpus. The baseline is the original at the export's deployed file
type: each file type's files are measured in one interleaved llama-bench run with it, so every speed is a ratio
taken in one run; its own row (the baseline against itself) shows how close to 1 such a ratio comes.

A file's quality figure for the front is its worst kept language beyond the corpus (bits per byte against the
baseline on the same text), as for the export's limits; the Pareto front is over size, tg128 at the most threads
measured, and that figure. `choose` names the file QUANT=auto's rule would deploy: of the pruned files within the
quality limits, the fastest, then the smallest. Of an export made with IMATRIX=on every file is made with an
importance matrix too: the pruned model's with the export's, the original's with its own on the same calibration
text (`bench.bench_quants`), as a user quantizing the original could.
"""

from pathlib import Path

from ..data.corpus import Corpus
from ..exporters.files import gguf_key
from ..exporters.quantize import OUTPUT_TYPES, output_type_fits, quantize_gguf
from ..log import say
from ..model.gguf_file import read_header
from ..options import GGUF_QUANTS, QUALITY_LIMITS
from ..paths import cache_dir, scratch
from .llama_bench import BUSY_SPREAD, TESTS, bench
from .verify import Artifact, file_size, quality, scorer

SIDES = ("original", "pruned")


def file_name(side: str, kind: str, output: str | None, imatrix: bool = False) -> str:
    """'pruned Q4_K_M' for a file type's default output layer, 'pruned Q4_K_M, output Q4_0' for another, and
    ', imatrix' after either for a file quantized with an importance matrix."""
    return side + gguf_key(kind, output, imatrix).removeprefix("gguf")  # the export's key, by side


def measure_alternatives(f16: dict[str, Path], tokenizers: dict, corpus: Corpus, outside: dict[str, Corpus],
                         kept: list[str], baseline_kind: str, threads: tuple[int, ...], reps: int,
                         kinds: tuple[str, ...] = GGUF_QUANTS, imatrix: dict[str, Path] | None = None) -> dict:
    """{"files": {name: row}, "baseline", "front", ...} for the two sides' F16 GGUF files (`f16` and `tokenizers` by
    side: "original", "pruned") at the file types `kinds` (the baseline's among them); `outside`: the texts beyond
    the corpus by source; `imatrix`: an importance matrix by side (IMATRIX=on's), with which each of that side's
    files is also made."""
    baseline = file_name("original", baseline_kind, None)
    rows = {}
    with scratch(cache_dir() / "alternatives") as work:
        base_path = quantize_gguf(f16["original"], work / "baseline.gguf", baseline_kind)
        for kind in (kind for kind in GGUF_QUANTS if kind in kinds or kind == baseline_kind):
            say(f"== {kind}: quantizing, then bits per byte and llama-bench (interleaved with {baseline})")
            files = {}
            for side in SIDES:
                made = [(*each, False) for each in variants(f16[side], work / f"{side}-{kind}", kind)]
                if side in (imatrix or {}):
                    made += [(output, quantize_gguf(f16[side], work / f"{side}-{kind}-{output}-imatrix.gguf", kind,
                                                    output_type=output, imatrix=imatrix[side]), output_type, True)
                             for output, _, output_type, _ in made]
                for output, path, output_type, weighed in made:
                    name = file_name(side, kind, output, weighed)
                    files[name] = path
                    rows[name] = {"side": side, "kind": kind, "output": output, "size": file_size(path),
                                  "output_type": output_type, "imatrix": weighed,
                                  **_quality(path, tokenizers[side], corpus, outside, kept)}
                    say(f"   {name}: {rows[name]['size'] / 1e6:.1f} MB, output layer {rows[name]['output_type']}, "
                        "bits per byte measured")
            speeds = bench({"baseline": base_path, **files}, threads, reps)
            for name in files:
                rows[name]["speed"] = _speed_rows(speeds, name)
                rows[name]["busy"] = [b for b in speeds["busy"] if b.rsplit(", ", 2)[0] in (name, "baseline")]
            for path in files.values():  # a real model's files of every type would fill a disk
                path.unlink()
    _add_changes(rows, baseline, kept)
    most = str(max(threads))
    return {"files": rows, "baseline": baseline, "threads": list(threads), "reps": reps, "front_threads": most,
            "front": pareto_front(rows, most), "choice": choose(rows, most)}


def variants(f16: Path, stem: Path, kind: str, default: Path | None = None):
    """(output type asked for or None, path, the output layer's type) of each distinct file of one file type: the
    default (`default` where it is made already), then each output type that fits the rows and changes some tensor's
    type; written to `stem`-<output type>.gguf."""
    seen = set()
    for output in (None, *(other for other in OUTPUT_TYPES if output_type_fits(f16, other))):
        path = (default if output is None and default else
                quantize_gguf(f16, Path(f"{stem}-{output or 'default'}.gguf"), kind, output_type=output))
        types = {t.name: t.type.name for t in read_header(path).tensors}
        if tuple(types.items()) in seen:
            path.unlink()
            continue
        seen.add(tuple(types.items()))
        yield output, path, types.get("output.weight", types["token_embd.weight"])  # a tied table is the output


def _quality(path: Path, tokenizer, corpus: Corpus, outside: dict[str, Corpus], kept: list[str]) -> dict:
    score = scorer(Artifact("llama.cpp", path.stem, path))
    beyond = {source: quality(score, tokenizer, text, [lang for lang in text.languages if lang in kept])
              for source, text in outside.items()}
    return {"evaluation": quality(score, tokenizer, corpus, kept), "outside": beyond}


def _speed_rows(speeds: dict, name: str) -> dict:
    """{threads: {test: {"mean", "sd", "ratio"}}}: the ratio against the baseline measured in the same run."""
    files = speeds["files"]
    return {str(t): {test: {"mean": files[name][t][test]["mean"], "sd": files[name][t][test]["sd"],
                       "ratio": files[name][t][test]["mean"] / files["baseline"][t][test]["mean"]}
                for test in TESTS} for t in files[name]}  # by str(threads), as JSON keeps it


def _add_changes(rows: dict, baseline: str, kept: list[str]) -> None:
    """Each file's bits per byte against the baseline's on the same text: "changes" per language and the worst
    kept language beyond the corpus ("worst_outside"), the front's quality figure."""
    base = rows[baseline]
    for row in rows.values():
        evaluation = {lang: _rise(row["evaluation"][lang], base["evaluation"][lang]) for lang in kept}
        outside = {lang: max(_rise(row["outside"][source][lang], base["outside"][source][lang])
                             for source in row["outside"] if lang in row["outside"][source])
                   for lang in kept if any(lang in by_lang for by_lang in row["outside"].values())}
        row["changes"] = {"evaluation": evaluation, "outside": outside}
        row["worst_outside"] = max(outside.values(), default=max(evaluation.values()))
        row["relative_size"] = row["size"] / base["size"]


def _rise(after: dict, before: dict) -> float:
    return after["bits_per_byte"] / before["bits_per_byte"] - 1


def within_limits(row: dict) -> bool:
    """Every kept language within QUALITY_LIMITS against the baseline: bits per byte beyond the corpus (the worst
    text) and on the evaluation split."""
    return (row["worst_outside"] <= QUALITY_LIMITS["outside_bpb_rise"]
            and max(row["changes"]["evaluation"].values()) <= QUALITY_LIMITS["kept_bpb_rise"])


def choose(rows: dict, threads: str) -> str | None:
    """The pruned file to deploy (`fastest_then_smallest`) of those within the limits; None if none holds them."""
    held = {name: row for name, row in rows.items() if row["side"] == "pruned" and within_limits(row)}
    return fastest_then_smallest({name: row["speed"][threads]["tg128"]["ratio"] for name, row in held.items()},
                                 {name: row["size"] for name, row in held.items()})


def fastest_then_smallest(speed: dict[str, float], size: dict[str, int]) -> str | None:
    """QUANT=auto's rule over files that hold the limits: as fast as the fastest (tg128 within BUSY_SPREAD of it:
    closer is noise), then the smallest; None for no file."""
    if not speed:
        return None
    fast = [name for name in speed if speed[name] >= (1 - BUSY_SPREAD) * max(speed.values())]
    return min(fast, key=lambda name: (size[name], -speed[name]))


def pareto_front(rows: dict, threads: str) -> list[str]:
    """The files no other file `dominates`."""
    return [name for name, row in rows.items() if not any(dominates(other, row, threads) for other in rows.values())]


def dominates(a: dict, b: dict, threads: str) -> bool:
    """File a is no larger, no slower (tg128 at `threads`: the ratio to the baseline measured in the same run) and no
    worse beyond the corpus (its worst kept language) than file b, and better on one."""
    def point(row):
        return row["size"], -row["speed"][threads]["tg128"]["ratio"], row["worst_outside"]

    return all(x <= y for x, y in zip(point(a), point(b))) and point(a) != point(b)
