"""llama.cpp through llama-cpp-python: open a GGUF, score text, tokenize."""

from pathlib import Path

from .evaluate import MAX_TOKENS, nll_from_logits


def open_gguf(path: str | Path, n_ctx: int = MAX_TOKENS, logits_all: bool = True, threads: int | None = None):
    from llama_cpp import Llama

    return Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_batch=n_ctx,
        n_ubatch=n_ctx,
        logits_all=logits_all,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )


def vocab_only(path: str | Path):
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
