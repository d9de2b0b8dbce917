"""QUANT=auto: the deployed GGUF file, chosen by the speed llama.cpp users quote and by quality beyond the corpus.

The candidates are the pruned model at each GGUF file type QUANT asks for, its output layer (a tied embedding table
where that is the output layer) at the type's default and at every other type that changes the file
(`alternatives.variants`). All are timed first, which is cheap: llama-bench's tg128 at the most threads asked,
interleaved with the original at each file type. Then, fastest first, each is scored beyond the corpus against the
original at its own file type (scored on every text once, then cached) while the rule
(`alternatives.fastest_then_smallest`) could still choose it: once a file holds the limit, only smaller files within
BUSY_SPREAD of its speed can. The score is bits per byte per kept language on a quarter of each source's
"selection" sample (`outside_text`: every SAMPLE_EVERY-th document, about CHARS characters, as many as the report
scores); the report scores the "evaluation" sample, which the choice never reads. A file's first text over the
limit ends its scoring: the rule needs every text within. With IMATRIX=on, a file over the limit is quantized
again with an importance matrix of the kept languages' calibration text (`exporters/imatrix.py`; computed once, when
first needed) and scored at once: its tensor types are the same, so its speed and size are its twin's (not timed
again), and the twin without the matrix comes first where both hold. Where no file holds the limit, or no kept
language has text beyond the corpus to hold it on, the default file of the smallest file type is deployed, as
without auto, and the report says so. Where QUANT names no file type, a candidate larger than the model the user gave
is left out before any of this (a user reads "smaller and faster" against what they have), unless every one is.
"""

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from ..data.corpus import Corpus
from ..data.outside_text import CHARS, SELECTION_CHARS, outside_corpora
from ..exporters.files import gguf_key, gguf_name
from ..exporters.quantize import quantize_gguf
from ..log import say
from ..paths import cache_entry, cached, scratch
from ..timing import timed
from .alternatives import fastest_then_smallest, variants
from .llama_bench import bench
from .verify import Artifact, deployed_file, file_size, quality, scorer

SAMPLE_EVERY = SELECTION_CHARS // CHARS
IMATRIX_NAME = "imatrix.gguf"  # the importance matrix of a deployed file quantized with one, in its gguf/ folder


def choose_deployed(files: dict, tokenizers: dict, kept: list[str], kinds: list[str], threads: int, reps: int,
                    limit: float, imatrix: Callable[[Path], Path] | None = None, largest: int | None = None) -> dict:
    """{"file": the deployed file's key, "path", "candidates": {key: row}, ...} of the pruned files (`files` and
    `tokenizers` by side, "before" and "after", as the export has them; `kinds`: the GGUF file types asked for;
    `imatrix`: writes the importance matrix to the path it is given, for IMATRIX=on). A chosen file with another
    output layer type or an importance matrix is written beside the export's GGUF files (with the matrix, as
    IMATRIX_NAME: "imatrix" is its name in the export); the other candidates are gone when this returns. `largest`:
    the bytes of the model the user gave, over which a candidate is left out. "seconds": the time of each part."""
    before, after = files["before"], files["after"]
    rows, paths, seconds = {}, {}, {}
    gguf_dir = Path(after["gguf F16"]).parent
    with scratch(gguf_dir / "candidates") as work:
        with timed(seconds, "quantize"):
            for kind in kinds:
                for output, path, output_type in variants(after["gguf F16"], work / kind, kind, after[gguf_key(kind)]):
                    key = gguf_key(kind, output)
                    paths[key] = path
                    rows[key] = {"kind": kind, "output": output, "output_type": output_type, "size": file_size(path),
                                 "relative_size": file_size(path) / file_size(before[gguf_key(kind)])}
        over = [key for key, row in rows.items() if largest is not None and row["size"] > largest]
        if len(over) < len(rows):  # every one larger: the rule chooses among them all, and the report says so
            for key in over:
                rows[key]["left_out"] = f"larger than the model given ({largest / 1e6:.1f} MB)"
                say(f"   {key}: {rows[key]['size'] / 1e6:.1f} MB, larger than the model given: left out")
        candidates = {key: row for key, row in rows.items() if "left_out" not in row}
        say(f"   {len(candidates)} candidate files; llama-bench tg128 at {threads} threads, each file type's original "
            "interleaved")
        with timed(seconds, "llama-bench"):
            speeds = bench({**{key: paths[key] for key in candidates},
                            **{f"original {kind}": before[gguf_key(kind)] for kind in kinds}}, (threads,), reps,
                           tests=("tg128",))
        for key, row in candidates.items():
            row["tg128"] = speeds["files"][key][threads]["tg128"]["mean"]
            row["tg128_ratio"] = row["tg128"] / speeds["files"][f"original {row['kind']}"][threads]["tg128"]["mean"]
        texts = selection_texts(kept)
        twin = (lambda key: _imatrix_twin(candidates, paths, key, Path(after["gguf F16"]), work / IMATRIX_NAME,
                                          imatrix, before)) if imatrix else None
        with timed(seconds, "scoring"):
            _score_fastest_first(candidates, paths, before, tokenizers, texts, limit, twin)
        rows.update(candidates)  # with the importance matrix's twins
        held = {key: row for key, row in rows.items() if row.get("held")}
        chosen = fastest_then_smallest({key: row["tg128"] for key, row in held.items()},
                                       {key: row["size"] for key, row in held.items()})
        file = chosen or deployed_file(after, kinds)
        kind, output, weighed = rows[file]["kind"], rows[file]["output"], rows[file].get("imatrix", False)
        path = Path(after[file]) if file in after else paths[file].rename(gguf_dir / gguf_name(kind, output, weighed))
        if weighed:
            (work / IMATRIX_NAME).rename(gguf_dir / IMATRIX_NAME)
    why = f"no candidate within +{limit:.1%} beyond the corpus" if texts else "no text beyond the corpus to check"
    say(f"   deployed: {file}" + ("" if chosen else f" ({why})"))
    return {"file": file, "kind": kind, "path": path, "within_limit": chosen is not None, "limit": limit,
            "texts": list(texts), "threads": threads, "reps": reps, "candidates": rows, "busy": speeds["busy"],
            "largest": largest, "all_larger": bool(rows) and len(over) == len(rows),
            "imatrix": f"{gguf_dir.name}/{IMATRIX_NAME}" if weighed else None, "seconds": seconds}


def _score_fastest_first(rows: dict, paths: dict, before: dict, tokenizers: dict, texts: dict, limit: float,
                         twin: Callable[[str], str] | None) -> None:
    """Each row's "outside" (rise of bits per byte against the original at its file type, by text, up to the first
    over the limit), "worst_outside" and "held", fastest first, while the rule could still choose the file (were it
    within the limit, beside those found within it so far; a slower one found later never takes it back); else
    "not_scored". A file over the limit has its `twin` (the key of a new row) scored next. Nothing is scored without
    `texts`."""
    for key in sorted(rows, key=lambda key: -rows[key]["tg128"]) if texts else ():
        rivals = [k for k, r in rows.items() if r.get("held")] + [key]
        if fastest_then_smallest({k: rows[k]["tg128"] for k in rivals}, {k: rows[k]["size"] for k in rivals}) != key:
            rows[key]["not_scored"] = "slower or no smaller than a file within the limit"
            continue
        _score(key, rows[key], paths[key], before, tokenizers, texts, limit)
        if twin and not rows[key]["held"]:
            other = twin(key)
            _score(other, rows[other], paths[other], before, tokenizers, texts, limit)


def _score(key: str, row: dict, path: Path, before: dict, tokenizers: dict, texts: dict, limit: float) -> None:
    score, row["outside"] = scorer(Artifact("llama.cpp", key, path)), {}
    original = _original_bits_per_byte(Path(before[gguf_key(row["kind"])]), tokenizers["before"], texts)
    for name, (lang, text) in texts.items():
        bpb = quality(score, tokenizers["after"], text, [lang])[lang]["bits_per_byte"]
        row["outside"][name] = bpb / original[name] - 1
        if row["outside"][name] > limit:
            break
    row["worst_outside"] = max(row["outside"].values())
    row["held"] = row["worst_outside"] <= limit
    say(f"   {key}: tg128 {row['tg128_ratio']:.2f}x its file type's original, worst beyond the corpus "
        f"{row['worst_outside']:+.2%} ({'within' if row['held'] else 'over'} the limit)")


def _imatrix_twin(rows: dict, paths: dict, key: str, f16: Path, matrix: Path, make_matrix: Callable[[Path], Path],
                  before: dict) -> str:
    """Candidate `key` quantized again with the importance matrix (made at `matrix` the first time), added to `rows`
    and `paths` as a new candidate: the same tensor types, so the same speed (its twin's tg128, "timed_as")."""
    row = rows[key]
    if not matrix.exists():
        say("   importance matrix of the kept languages' calibration text")
        make_matrix(matrix)
    twin = gguf_key(row["kind"], row["output"], imatrix=True)
    path = paths[twin] = quantize_gguf(f16, matrix.with_name(gguf_name(row["kind"], row["output"], imatrix=True)),
                                       row["kind"], output_type=row["output"], imatrix=matrix)
    rows[twin] = {"kind": row["kind"], "output": row["output"], "output_type": row["output_type"], "imatrix": True,
                  "size": file_size(path), "relative_size": file_size(path) / file_size(before[gguf_key(row["kind"])]),
                  "tg128": row["tg128"], "tg128_ratio": row["tg128_ratio"], "timed_as": key}
    return twin


def selection_texts(kept: list[str]) -> dict[str, tuple[str, Corpus]]:
    """{"<lang> <source>": (lang, a corpus whose "evaluation" split is every SAMPLE_EVERY-th document of that
    source's "selection" sample)} for each kept language."""
    return {f"{lang} {source}": (lang, Corpus({lang: {"evaluation": corpus.texts[lang]["selection"][::SAMPLE_EVERY]}},
                                              corpus.source))
            for source, corpus in outside_corpora(kept).items() for lang in kept if lang in corpus.languages}


def _original_bits_per_byte(path: Path, tokenizer, texts: dict) -> dict[str, float]:
    """The original's bits per byte at one file type on each text, in one llama.cpp context and cached: the same for
    every export of the model (`path` is in the original's cached export, named by its fingerprint)."""
    digest = hashlib.sha256(json.dumps([str(path), {name: text.texts for name, (_, text) in texts.items()}]).encode())
    entry = cache_entry("auto-quant", (digest.hexdigest()[:16],),
                        (__name__, "langprune.data.evaluate", "langprune.measure.llamacpp"), ".json")

    def make(partial: Path) -> None:
        score = scorer(Artifact("llama.cpp", path.stem, path))
        partial.write_text(json.dumps({name: quality(score, tokenizer, text, [lang])[lang]["bits_per_byte"]
                                       for name, (lang, text) in texts.items()}))

    return cached(entry, make, lambda done: json.loads(done.read_text()))[0]
