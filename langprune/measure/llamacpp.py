"""llama.cpp through llama-cpp-python: open a GGUF, score text, tokenize."""

from pathlib import Path

import numpy as np

from ..data.evaluate import MAX_TOKENS, nll_from_logits
from ..log import quiet_llama_cpp
from . import decode


def open_gguf(path: str | Path, n_ctx: int = MAX_TOKENS, logits_all: bool = True, threads: int | None = None,
              flash_attn: bool = False):
    quiet_llama_cpp()
    from llama_cpp import Llama

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
    quiet_llama_cpp()
    from llama_cpp import Llama

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


class LlamaDecoder:
    """A `decode` decoder on llama.cpp's KV cache."""

    def __init__(self, llm):
        self.llm = llm

    def prefill(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return last_logits(self.llm)

    def step(self, token: int) -> np.ndarray:
        self.llm.eval([token])
        return last_logits(self.llm)


def greedy(llm, ids: list[int], n_new: int) -> list[int]:
    """Greedy continuation with llama.cpp's KV cache."""
    return decode.greedy(LlamaDecoder(llm), ids, n_new)


SAMPLER = {"top_k": 40, "top_p": 0.95, "min_p": 0.05, "temp": 0.8}  # llama.cpp's default sampler chain


def timed_sampling(path, prompt: list[int], n_decode: int, threads: int) -> tuple[float, float]:
    """Seconds to prefill `prompt` (and sample the first token) and to sample n_decode more with llama.cpp's default
    sampler chain (SAMPLER, seed 0) as a Python user runs it, after a warm-up: the chain reads every token's logit,
    and llama-cpp-python copies them each step, where llama-bench's tg128 samples nothing."""
    import time

    llm = open_gguf(path, n_ctx=len(prompt) + n_decode + 8, logits_all=False, threads=threads)
    llm.eval(prompt[:8])  # the weights' first touch
    llm.reset()  # else generate() would reuse those 8 tokens' cache and prefill only the rest
    llm.set_seed(0)
    start = time.perf_counter()
    tokens = llm.generate(prompt, reset=True, **SAMPLER)
    next(tokens)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(n_decode):
        next(tokens)
    return prefill, time.perf_counter() - start
