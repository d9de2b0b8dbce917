"""Measure exported models in the real runtimes: quality per language, language fidelity, speed.

Quality and fidelity run in this process. Speed and peak memory run each measurement in a fresh
worker process (`python -m langprune.measure.verify <job.json>`), so one model's memory or warm caches
never leak into another's figures; repetitions interleave original and pruned.
"""

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.corpus import Corpus, encode
from ..data.evaluate import score_languages
from ..errors import UserError, failed
from ..llama_runtime import system_info
from ..timing import peak_rss_mb, timed


@dataclass(frozen=True)
class Artifact:
    runtime: str  # "onnxruntime" or "llama.cpp"
    variant: str  # "fp32", "int8", "int4", "F16", "Q8_0", "Q4_K_M"
    path: Path

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.variant}"


# -- runtimes behind one interface ----------------------------------------------------------
def scorer(artifact: Artifact):
    if artifact.runtime == "llama.cpp":
        from .llamacpp import llama_scorer, open_gguf

        return llama_scorer(open_gguf(artifact.path))
    from .onnxrt import open_session, ort_scorer

    return ort_scorer(open_session(artifact.path))


def greedy(artifact: Artifact):
    """generate(ids, n_new) -> new ids, greedy, with the runtime's KV cache."""
    if artifact.runtime == "llama.cpp":
        from .llamacpp import greedy as llama_greedy
        from .llamacpp import open_gguf

        llm = open_gguf(artifact.path, n_ctx=1024, logits_all=False)
        return lambda ids, n_new: llama_greedy(llm, ids, n_new)
    from .onnxrt import generate, open_session

    session = open_session(artifact.path)
    return lambda ids, n_new: generate(session, ids, n_new)


# -- quality ---------------------------------------------------------------------------------
def quality(score, tokenizer, corpus: Corpus, langs: list[str]) -> dict[str, dict]:
    """Perplexity and bits per byte per language on the evaluation split, by `score(ids) -> nll sum`
    (`scorer(artifact)` for a runtime, `evaluate.torch_scorer(model)` for PyTorch)."""
    scores = score_languages(score, tokenizer, corpus, "evaluation", langs)
    return {
        lang: {"perplexity": s.perplexity, "bits_per_byte": s.bits_per_byte, "tokens": s.tokens}
        for lang, s in scores.items()
    }


def fidelity_prompts(corpus: Corpus, lang: str, words: int = 10) -> list[str]:
    """The opening words of each evaluation article's body (after its title line)."""
    prompts = []
    for doc in corpus.texts[lang]["evaluation"]:
        body = doc.split("\n", 1)[-1]
        prompts.append(" ".join(body.split()[:words]) if " " in body else body[: words * 2])
    return prompts


def fidelity(artifact: Artifact, tokenizer, corpus: Corpus, langs: list[str], n_new: int = 24) -> dict[str, dict]:
    """Share of greedy continuations identified (py3langid) as the prompt's language."""
    import py3langid

    generate = greedy(artifact)
    out = {}
    for lang in langs:
        samples = []
        for prompt in fidelity_prompts(corpus, lang):
            text = tokenizer.decode(generate(encode(tokenizer, prompt), n_new), skip_special_tokens=True)
            samples.append({"prompt": prompt, "continuation": text, "language": py3langid.classify(text)[0]})
        out[lang] = {"share": sum(s["language"] == lang for s in samples) / len(samples), "samples": samples}
    return out


# -- speed -----------------------------------------------------------------------------------
DROPPED_DOCUMENTS = 3  # evaluation documents scored per dropped language (UDHR: articles 5, 10 and 15 of the 6)
PROMPT_TOKENS = 128  # prompt tokens (the original's) prefilled per run
DECODE_TOKENS = 32  # greedy tokens timed after the prompt, per run
# llama-bench rounds of every file at every thread count: LLAMA_BENCH_REPS, or as many as fit in LLAMA_BENCH_BUDGET_S
# (at least llama_bench.MIN_REPS), so that the measure costs what the budget says whatever the model's size
# (docs/benchmarks.md, "Memory and time per step")
LLAMA_BENCH_REPS = 10
LLAMA_BENCH_BUDGET_S = 240


def speed_once(artifact: Artifact, prompt: list[int], n_decode: int, threads: int) -> dict:
    """Prefill and decode tokens/s and peak RSS, measured in a fresh process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"runtime": artifact.runtime, "path": str(artifact.path), "prompt": prompt,
                   "n_decode": n_decode, "threads": threads}, f)
    command = [sys.executable, "-m", "langprune.measure.verify", f.name]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:  # the worker's input file stays, so that the command named reruns it
        raise UserError(failed(f"measure {artifact.label}'s speed", command, result.returncode, result.stderr))
    Path(f.name).unlink()
    return json.loads(result.stdout.strip().splitlines()[-1])


def speed(pairs: dict[str, tuple[Artifact, Artifact]], prompts: dict[str, list[int]], n_decode: int = DECODE_TOKENS,
          threads: tuple[int, ...] = (1, 2), reps: int = 3, progress=None) -> dict:
    """{label: {threads: {before/after medians and after/before ratios}}}, repetitions interleaved.

    prompts: the same text as each side's tokenizer encodes it (a trimmed vocabulary has its own ids)."""
    runs = {(label, t, side): [] for label in pairs for t in threads for side in ("before", "after")}
    for _ in range(reps):
        for label, (before, after) in pairs.items():
            for t in threads:
                for side, artifact in (("before", before), ("after", after)):
                    runs[(label, t, side)].append(speed_once(artifact, prompts[side], n_decode, t))
                    if progress:
                        progress.update(1)
    table = {}
    for label in pairs:
        for t in threads:
            row = {}
            for side in ("before", "after"):
                for key in ("prefill_tps", "decode_tps", "peak_rss_mb"):
                    row[f"{key}_{side}"] = statistics.median(r[key] for r in runs[(label, t, side)])
            for key in ("prefill_tps", "decode_tps"):
                row[f"{key}_ratio"] = row[f"{key}_after"] / row[f"{key}_before"]
            table.setdefault(label, {})[t] = row
    return table


# -- everything, for a set of exports ----------------------------------------------------------
def artifact(key: str, files: dict) -> Artifact:
    """'gguf Q4_K_M' or 'onnx fp32' in an export's file index -> the artifact to run."""
    runtime = "llama.cpp" if key.startswith("gguf") else "onnxruntime"
    return Artifact(runtime, key.split(" ", 1)[1], Path(files[key]))


def deployed_file(after: dict, gguf_quants: list[str]) -> str:
    """The file key a user deploys without QUANT=auto: the smallest pruned GGUF file of the quantizations asked for
    (whatever order they were typed in), else F16."""
    from ..exporters.files import gguf_key  # here: the speed worker imports this module, and needs neither
    from ..options import GGUF_QUANTS

    keys = [gguf_key(q) for q in gguf_quants if q in GGUF_QUANTS] or ["gguf F16"]
    return min(keys, key=lambda key: (file_size(Path(after[key])), key))


def measure_exports(tokenizers: dict, corpus: Corpus, kept: list[str], dropped: list[str], before: dict, after: dict,
                    deployed: str, reps: int = 3, threads: tuple[int, ...] = (1, 2), given: Path | None = None) -> dict:
    """Quality, fidelity and speed, original against pruned.

    tokenizers: {"before": ..., "after": ...}, each side's own (they differ once the vocabulary is
    trimmed; bits per byte stay comparable). Quality of the kept languages in ONNX Runtime (the
    export's ONNX model, `onnx_reference`: fp32, int4 for a large model) and llama.cpp (every GGUF file); of the
    dropped ones in the `deployed` file only, on their first
    DROPPED_DOCUMENTS evaluation documents: scoring is
    output-layer bound, and a trimmed vocabulary spells a language of another script in 3.9-6.6x
    the tokens (Gemma 3, en,de, evaluation split: zh 3.9x, ja 4.7x, ar 5.0x, ru 6.6x; the quality runs
    took 193 s with every language in every runtime, 74 s with the dropped ones in the deployed file,
    of which 42 s were the dropped languages on all 6 documents). Fidelity in the deployed file (the
    most quantized model, where a language's continuations are most at risk; ONNX fp32 computes what
    PyTorch does, tests/test_parity.py); speed in ONNX Runtime (that model, greedy) and of the deployed file sampling as
    llama.cpp does by default (`llamacpp.timed_sampling`), both in the Python worker, and of the deployed file in
    llama-bench (`llama_bench.py`: how llama.cpp users quote it, with each run's peak memory), beside the `given`
    model's GGUF file where there is one (results["given"]: its path, size and file type)."""
    from ..exporters.files import onnx_reference
    from ..log import progress
    from ..model.gguf_file import file_type
    from .llama_bench import bench as llama_bench
    from .weights import ceiling

    onnx = onnx_reference(after)
    quality_runs = [onnx] + [key for key in after if key.startswith("gguf ")]
    results = {"languages": {"kept": kept, "dropped": dropped, "dropped_documents": DROPPED_DOCUMENTS},
               "deployed": deployed, "quality": {}, "fidelity": {}, "seconds": {}, "peaks": {}}
    sides, seconds, peaks = (("before", before), ("after", after)), results["seconds"], results["peaks"]
    dropped_text = dropped_documents(corpus, dropped)
    kept_runs = {}  # by file: a deployed file of another output layer type has the original at its type as "before"
    with timed(seconds, "quality", peaks), progress(total=2 * len(quality_runs), desc="quality", unit="model") as bar:
        for key in quality_runs:
            for side, files in sides:
                path = Path(files[key])
                score = None  # the last file's runtime closes before the next opens
                score = scorer(artifact(key, files)) if path not in kept_runs or key == deployed else None
                if path not in kept_runs:
                    kept_runs[path] = quality(score, tokenizers[side], corpus, kept)
                runs = kept_runs[path]
                if key == deployed:
                    runs = runs | quality(score, tokenizers[side], dropped_text, dropped)
                results["quality"].setdefault(key, {})[side] = runs
                bar.update(1)
    with timed(seconds, "fidelity", peaks), progress(total=2, desc="language fidelity", unit="model") as bar:
        for side, files in sides:
            results["fidelity"].setdefault(deployed, {})[side] = fidelity(artifact(deployed, files), tokenizers[side],
                                                                          corpus, kept)
            bar.update(1)
    prompts = speed_prompts(tokenizers, corpus, kept[0])
    pairs = {key: (artifact(file, before), artifact(file, after))
             for key, file in ((onnx, onnx), (f"{deployed}, sampled", deployed))}
    runs = reps * len(pairs) * len(threads) * 2
    with timed(seconds, "speed", peaks), progress(total=runs, desc="speed (interleaved)", unit="run") as bar:
        results["speed"] = speed(pairs, prompts, threads=threads, reps=reps, progress=bar)
    results["speed_setup"] = {"prompt_tokens": {side: len(p) for side, p in prompts.items()},
                              "decode_tokens": DECODE_TOKENS, "reps": reps, "llama_cpp": system_info()}
    with timed(seconds, "llama-bench", peaks):
        results["llama_bench"] = {"file": deployed, **llama_bench({**({"given": Path(given)} if given else {}),
                                                                   "before": Path(before[deployed]),
                                                                   "after": Path(after[deployed])},
                                                                  threads, max(reps, LLAMA_BENCH_REPS),
                                                                  budget_s=LLAMA_BENCH_BUDGET_S)}
    if given:
        results["given"] = {"file": str(given), "type": file_type(given), "size": file_size(given)}
    results["sizes"] = {side: {k: file_size(p) for k, p in files.items()} for side, files in sides}
    results["ceiling"] = {"file": deployed, **ceiling(before[deployed], after[deployed])}
    return results


def dropped_documents(corpus: Corpus, dropped: list[str]) -> Corpus:
    """The dropped languages' first DROPPED_DOCUMENTS evaluation documents: what they are scored on."""
    return Corpus({lang: {"evaluation": corpus.texts[lang]["evaluation"][:DROPPED_DOCUMENTS]} for lang in dropped},
                  corpus.source)


def outside_quality(corpora: dict[str, Corpus], tokenizers: dict, key: str, before: dict, after: dict,
                    langs: list[str], given: Path | None = None) -> dict:
    """{source: {side: {lang: quality}}} for `langs` on text from outside the corpus (`outside_text`),
    in one runtime; sources without any of `langs` are left out. Side "given": the `given` GGUF file (the model the
    user gave), with the original's tokenizer.

    Each side's scored token count is its tokenizer's count for the same text: with bits per byte,
    what a trimmed vocabulary costs beyond the corpus it was chosen from."""
    from ..log import progress

    corpora = {source: corpus for source, corpus in corpora.items() if set(corpus.languages) & set(langs)}
    out = {source: {} for source in corpora}
    runs = [("before", artifact(key, before)), ("after", artifact(key, after))]
    runs += [("given", Artifact("llama.cpp", "given", Path(given)))] if given else []
    with progress(total=len(runs) * len(corpora), desc=f"text beyond the corpus ({key})", unit="run") as bar:
        for side, run in runs:
            score = None  # the last file's runtime closes before the next opens
            score = scorer(run)  # each file opened once for every source
            for source, corpus in corpora.items():
                scored = [lang for lang in corpus.languages if lang in langs]
                out[source][side] = quality(score, tokenizers["before" if side == "given" else side], corpus, scored)
                bar.update(1)
    return out


def speed_prompts(tokenizers: dict, corpus: Corpus, lang: str, n: int = PROMPT_TOKENS) -> dict[str, list[int]]:
    """The text of the original's first n tokens, encoded by each side's tokenizer."""
    before = tokenizers["before"]
    ids = encode(before, corpus.text(lang, "evaluation") + "\n\n" + corpus.text(lang, "calibration"))[:n]
    text = before.decode(ids, skip_special_tokens=True)
    return {side: encode(tok, text) for side, tok in tokenizers.items()}


def file_size(path: Path) -> int:
    """Bytes of a model file, with its external-data file for ONNX."""
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _worker(job: dict) -> dict:
    prompt, n_decode, threads = job["prompt"], job["n_decode"], job["threads"]
    if job["runtime"] == "llama.cpp":
        from .llamacpp import timed_sampling

        prefill_s, decode_s = timed_sampling(job["path"], prompt, n_decode, threads)
    else:
        from .decode import timed_greedy
        from .onnxrt import Decoder, open_session

        decoder = Decoder(open_session(job["path"], threads=threads), max_len=len(prompt) + n_decode + 1)
        prefill_s, decode_s = timed_greedy(decoder, prompt, n_decode)
    return {"prefill_tps": len(prompt) / prefill_s, "decode_tps": n_decode / decode_s, "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    print(json.dumps(_worker(json.loads(Path(sys.argv[1]).read_text()))))
