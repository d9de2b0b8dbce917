"""Greedy decoding, written once for every runtime. A runtime's decoder keeps its KV cache inside and
has two methods, each returning the last position's logits: `prefill(ids)` (a new sequence) and
`step(token)` (one more token): `llamacpp.LlamaDecoder`, `onnxrt.Decoder`."""

import time


def greedy(decoder, ids: list[int], n_new: int) -> list[int]:
    """The n_new tokens that follow ids, each the most likely one."""
    if n_new <= 0:
        return []
    out = [int(decoder.prefill(ids).argmax())]
    while len(out) < n_new:
        out.append(int(decoder.step(out[-1]).argmax()))
    return out


def timed_greedy(decoder, prompt: list[int], n_decode: int) -> tuple[float, float]:
    """Seconds to prefill `prompt` and to decode n_decode tokens greedily, after a warm-up (the weights'
    first touch)."""
    decoder.prefill(prompt[:8])
    start = time.perf_counter()
    logits = decoder.prefill(prompt)
    prefill = time.perf_counter() - start
    token = int(logits.argmax())
    start = time.perf_counter()
    for _ in range(n_decode):
        token = int(decoder.step(token).argmax())
    return prefill, time.perf_counter() - start
