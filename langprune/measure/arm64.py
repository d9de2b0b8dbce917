"""llama.cpp on arm64 (`make mobile-check`): an export's GGUF files run on a phone's CPU, emulated.

The llama.cpp that llama-cpp-python vendors (its source distribution: the same version as on the
host) is cross-built for aarch64 with Debian's g++-aarch64-linux-gnu, for a Cortex-A76 (armv8.2-a
with dot product and fp16: the big core of many phones), and linked statically with
`gguf_probe.cpp`, a small client that tokenizes, scores and generates as
`langprune/measure/llamacpp.py` does here. qemu-user runs it, emulating that CPU. For each GGUF
kind (Q4_K_M, Q8_0 and Q4_0, which llama.cpp repacks for ARM's dot product when it loads it), the
emulated run must give the host's tokens for each kept language's text, perplexity within 1% of
the host's (x86-64, llama-cpp-python) on the same tokens, and the host's greedy tokens up to a near
tie (NEAR_TIE), beside the host's own spread (flash attention on against off).

ONNX Runtime too (`ort_on_arm64`): PyPI's aarch64 onnxruntime, run by Debian's arm64 Python unpacked
into a sysroot for qemu-user, generates greedily with the export's ORT-format model.

Emulated speed says nothing about a phone and is not measured. What a phone cares about is
reported instead: file size, weight bytes read per generated token, KV cache bytes per 1k tokens
of context, and the host's peak memory. The cross build and the arm64 Python are made once and
cached, like the llama-cpp-python wheel, in `paths.cache_dir()` (~/.cache/langprune): `arm64_setup.py`.
"""

import math
import re
import subprocess
from pathlib import Path

from ..errors import UserError, failed
from ..log import say
from ..paths import PACKAGE_DIR
from .arm64_setup import ARM_ARCH, ARM_CPU, EMULATION_TIMEOUT, THREADS, arm64_python, build_probe, ensure_tools

ARM_QUANTS = ("Q4_K_M", "Q8_0", "Q4_0")
SCORED_TOKENS = 256  # the first of each kept language's evaluation split (emulated: ~4 tokens/s on Gemma 3 270M)
GREEDY_TOKENS = 16
PERPLEXITY_TOLERANCE = 0.01
# Greedy tokens may part where the host's top two logits are nearer than this: there llama.cpp's own numerics
# decide. Measured on Gemma 3 270M here: flash attention on or off parts the host's continuations where the margin is
# 0.13-0.16, and one margin reads 0.16 one token at a time and 0.23 in one batch; arm64 parted at 0.13, 0.16 and 0.23.
NEAR_TIE = 0.5


def ask(probe: Path, gguf: Path, requests: list[str]) -> tuple[list[str], str]:
    """The probe's answers to requests about a GGUF file under qemu-user, and its load log."""
    ensure_tools()
    command = ["qemu-aarch64", "-cpu", ARM_CPU, str(probe), str(gguf), str(THREADS)]
    result = subprocess.run(command, input="\n".join(requests) + "\n", capture_output=True, text=True,
                            timeout=EMULATION_TIMEOUT)
    answers = result.stdout.splitlines()
    if result.returncode != 0:
        raise UserError(failed(f"probe {gguf.name} under qemu-aarch64", command, result.returncode, result.stderr))
    if len(answers) != len(requests):
        raise RuntimeError(f"gguf_probe under qemu-aarch64 failed on {gguf.name}: {result.stderr[-2000:]}")
    return answers, result.stderr


def repacked_mib(log: str) -> float:
    """MiB of weights llama.cpp repacked at load for the CPU's instructions (0 when none)."""
    return sum(float(m) for m in re.findall(r"CPU_REPACK model buffer size\s*=\s*([\d.]+) MiB", log))


def kv_bytes_per_1k_tokens(gguf: Path) -> int:
    """KV cache bytes for 1,024 tokens of context in llama.cpp's default f16 cache: each layer's K and V
    widths (its KV heads x head size) read off the attn_k and attn_v tensors' shapes."""
    from ..model.gguf_file import read_header

    widths = [t.shape[1] for t in read_header(gguf).tensors if re.fullmatch(r"blk\.\d+\.attn_[kv]\.weight", t.name)]
    return 1024 * 2 * sum(widths)


def gguf_for(folder: Path, kind: str) -> Path:
    """The export's GGUF of this kind, quantized from its F16 file where the export has none."""
    from ..exporters.quantize import quantize_gguf

    path, source = gguf_source(folder, kind)
    if path == source:
        return path
    say(f"   quantizing {source.relative_to(folder)} to {kind} for the arm64 check")
    return quantize_gguf(source, path, kind)


def gguf_source(folder: Path, kind: str) -> tuple[Path, Path]:
    """(the export's GGUF of this kind, the file it is or is made from); an error where the export has neither."""
    return made_from(folder, folder / "gguf" / f"model-{kind}.gguf", folder / "gguf" / "model-F16.gguf", "GGUF")


def made_from(folder: Path, path: Path, source: Path, kind: str) -> tuple[Path, Path]:
    """(path, path) where the export has path, else (path, source); an error where it has neither."""
    if path.exists():
        return path, path
    if not source.exists():
        raise UserError(f"{folder} has no {kind} model ({source.relative_to(folder)}): export it first, e.g. "
                        "`make export LANGS=en,de`")
    return path, source


def arm64_check(folder: Path, kept: list[str], corpus_folder=None, quants=ARM_QUANTS) -> dict:
    """The arm64 checks of one export folder, for each GGUF kind in quants (see the module's docstring)."""
    from ..data.corpus import load_corpus
    from .verify import fidelity_prompts, file_size
    from .weights import weights_read_per_token

    ggufs = {kind: gguf_for(folder, kind) for kind in quants}
    probe = build_probe()
    corpus = load_corpus(kept, corpus_folder)
    texts = {lang: ("\n\n".join(corpus.texts[lang]["evaluation"]), fidelity_prompts(corpus, lang)[0]) for lang in kept}
    out = {"cpu": ARM_CPU, "arch": ARM_ARCH, "threads": THREADS, "scored_tokens": SCORED_TOKENS,
           "greedy_tokens": GREEDY_TOKENS, "tolerance": PERPLEXITY_TOLERANCE, "near_tie": NEAR_TIE, "files": {}}
    for kind, path in ggufs.items():
        say(f"   {path.name} on {ARM_CPU} under qemu-aarch64")
        host = host_runs(path, texts)
        requests = [request for lang, (text, _) in texts.items() for request in (
            f"tokenize {text.encode().hex()}", "score " + " ".join(map(str, host[lang]["scored"])),
            f"greedy {GREEDY_TOKENS} " + " ".join(map(str, host[lang]["prompt"])))]
        answers, log = ask(probe, path, requests)
        languages = {lang: compared(host[lang], *answers[3 * i: 3 * i + 3]) for i, lang in enumerate(texts)}
        out["files"][kind] = {
            "file": str(path.relative_to(folder)), "bytes": file_size(path),
            "weights_read_per_token": sum(p["bytes"] for p in weights_read_per_token(path).values()),
            "kv_bytes_per_1k_tokens": kv_bytes_per_1k_tokens(path), "repacked_mib": repacked_mib(log),
            "languages": languages, "holds": all(r["holds"] for r in languages.values())}
    return out


def host_runs(path: Path, texts: dict[str, tuple[str, str]]) -> dict[str, dict]:
    """What llama.cpp gives here (llama-cpp-python) for each language's (scored text, prompt): tokens,
    NLL of the first SCORED_TOKENS with flash attention off (llama-cpp-python's default) and on (the
    host's own numerical spread), greedy tokens and the top-two logit margin at each of their steps."""
    from .llamacpp import greedy, llama_scorer, open_gguf, tokenize, vocab_only

    vocab = vocab_only(path)
    scorers = {flash: open_gguf(path, n_ctx=1024, flash_attn=flash) for flash in (False, True)}
    generator = open_gguf(path, n_ctx=1024, logits_all=False)
    out = {}
    for lang, (text, prompt_text) in texts.items():
        tokens, prompt = tokenize(vocab, text), tokenize(vocab, prompt_text)
        scored = tokens[:SCORED_TOKENS]
        nll = {flash: llama_scorer(llm)(scored) for flash, llm in scorers.items()}
        generated = greedy(generator, prompt, GREEDY_TOKENS)
        llm = scorers[False]
        llm.reset()
        llm.eval(prompt + generated[:-1])
        out[lang] = {"tokens": tokens, "scored": scored, "prompt": prompt, "greedy": generated,
                     "margins": top_two_margins(llm.scores[len(prompt) - 1: len(prompt) - 1 + GREEDY_TOKENS]),
                     "perplexity": math.exp(nll[False] / (len(scored) - 1)),
                     "perplexity_flash_attn": math.exp(nll[True] / (len(scored) - 1))}
    return out


def compared(host: dict, tokens: str, nll: str, generated: str) -> dict:
    """The probe's answers for one language against the host's."""
    greedy = greedy_agreement([int(t) for t in generated.split()], host["greedy"], host["margins"])
    result = {"tokens_same": [int(t) for t in tokens.split()] == host["tokens"], **greedy,
              "perplexity_x86": host["perplexity"],
              "perplexity_arm64": math.exp(float(nll) / (len(host["scored"]) - 1)),
              "perplexity_x86_flash_attn": host["perplexity_flash_attn"]}
    result["perplexity_diff"] = result["perplexity_arm64"] / result["perplexity_x86"] - 1
    result["flash_attn_diff"] = result["perplexity_x86_flash_attn"] / result["perplexity_x86"] - 1
    result["holds"] = (result["tokens_same"] and abs(result["perplexity_diff"]) <= PERPLEXITY_TOLERANCE
                       and greedy["greedy_holds"])
    return result


def top_two_margins(logits) -> list[float]:
    """Per row of logits, how far the best token is ahead of the second."""
    import numpy as np

    top_two = np.partition(np.asarray(logits), -2, axis=1)[:, -2:]
    return np.abs(top_two[:, 1] - top_two[:, 0]).tolist()


def greedy_agreement(arm: list[int], host: list[int], margins: list[float]) -> dict:
    """arm64's greedy tokens against the host's: how many lead alike, and the host's top-two margin where they
    part (they may part at a near tie, below NEAR_TIE)."""
    agree = next((i for i, (a, b) in enumerate(zip(arm, host)) if a != b), len(host))
    margin = margins[agree] if agree < len(host) else None
    return {"greedy_same": arm == host, "greedy_agree": agree, "margin_at_divergence": margin,
            "greedy_holds": arm == host or (margin is not None and margin < NEAR_TIE),
            "greedy_x86": host, "greedy_arm64": arm}


def ort_on_arm64(model: Path, session, prompts: dict[str, list[int]], host: dict[str, list[int]]) -> dict[str, dict]:
    """Greedy tokens of an ONNX Runtime model after each prompt, aarch64 onnxruntime under qemu-user against the
    host's (`host`: {lang: tokens}; `session`: the host's session of `model`), with the host's top-two margins."""
    from .onnxrt import run

    arm = ort_greedy_on_arm64(model, prompts, len(next(iter(host.values()))))
    out = {}
    for lang, prompt in prompts.items():
        logits, _ = run(session, [prompt + host[lang][:-1]])
        out[lang] = greedy_agreement(arm[lang], host[lang], top_two_margins(logits[0, len(prompt) - 1:]))
    return out


def ort_greedy_on_arm64(model: Path, prompts: dict[str, list[int]], n_new: int) -> dict[str, list[int]]:
    """Greedy tokens of an ONNX Runtime model for each prompt, in aarch64 onnxruntime under qemu-user."""
    root, site = arm64_python()
    command = ["qemu-aarch64", "-cpu", ARM_CPU, "-L", str(root), "-E", f"PYTHONPATH={site}:{PACKAGE_DIR.parent}",
               str(root / "usr" / "bin" / "python3.11"), "-m", "langprune.measure.ort_greedy", str(model), str(n_new)]
    result = subprocess.run(command, input="".join(" ".join(map(str, ids)) + "\n" for ids in prompts.values()),
                            capture_output=True, text=True, timeout=EMULATION_TIMEOUT)
    answers = result.stdout.splitlines()
    if result.returncode != 0:
        raise UserError(failed(f"run {model.name} in onnxruntime under qemu-aarch64", command, result.returncode,
                               result.stderr))
    if len(answers) != len(prompts):
        raise RuntimeError(f"onnxruntime under qemu-aarch64 failed on {model.name}: {result.stderr[-2000:]}")
    return {lang: [int(t) for t in line.split()] for lang, line in zip(prompts, answers)}
