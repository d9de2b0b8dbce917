"""llama.cpp through llama-cpp-python: open a GGUF, score text, tokenize."""

import time
from pathlib import Path

import numpy as np

from ..data.evaluate import MAX_TOKENS, nll_from_logits
from ..log import quiet_llama_cpp


def open_gguf(path: str | Path, n_ctx: int = MAX_TOKENS, logits_all: bool = True, threads: int | None = None,
              flash_attn: bool = False):
    from llama_cpp import Llama

    quiet_llama_cpp()
    return Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        logits_all=logits_all,
        n_threads=threads,
        n_threads_batch=threads,
        flash_attn=flash_attn,
        verbose=False,
    )


def vocab_only(path: str | Path):
    from llama_cpp import Llama

    quiet_llama_cpp()
    return Llama(model_path=str(path), vocab_only=True, verbose=False)


def tokenize(llm, text: str, add_bos: bool = True) -> list[int]:
    return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False)


def llama_scorer(llm):
    def score(ids: list[int]) -> float:
        llm.reset()
        llm.eval(ids)
        return nll_from_logits(llm.scores[: len(ids)], ids)

    return score


def last_logits(llm) -> np.ndarray:
    """Logits of the last evaluated token (works without logits_all)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))


def greedy(llm, ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation with llama.cpp's KV cache: prefill, then one token per step."""
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(n_new):
        out.append(int(last_logits(llm).argmax()))
        llm.eval(out[-1:])
    return out


def timed_generation(path, prompt: list[int], n_decode: int, threads: int) -> tuple[float, float]:
    """Seconds to prefill `prompt` and to decode n_decode tokens greedily, after a warm-up."""
    llm = open_gguf(path, n_ctx=len(prompt) + n_decode + 8, logits_all=False, threads=threads)
    llm.eval(prompt[:8])  # warm-up: first-touch of the weights
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    prefill = time.perf_counter() - start
    token = int(last_logits(llm).argmax())
    start = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([token])
        token = int(last_logits(llm).argmax())
    return prefill, time.perf_counter() - start
