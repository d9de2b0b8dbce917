"""Which floating-point type this CPU multiplies fastest: measured once per process, or forced.

Measured with a matmul of this module (two threads) on a 2-core AMD EPYC with AVX512-BF16: float32 136-153
GFLOP/s, bfloat16 337-358 (2.2-2.6x faster); with `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`
(an AVX2-only CPU, where torch emulates bfloat16) float32 130-145, bfloat16 0.7 (~200x slower). So nothing assumes
either: a small matmul is timed in both types on this machine, and bfloat16 is chosen only when it
is clearly faster. `LANGPRUNE_PRECISION=float32|bfloat16` forces a path (to test both anywhere).
Only the analysis's largest matmul (the 262k-row output layer) uses this; measurements
(perplexity, parity, the tolerance search) are always float32.
"""

import functools
import os
import time
from dataclasses import dataclass

import torch

from ..errors import UserError

ENV = "LANGPRUNE_PRECISION"
CHOICES = ("auto", "float32", "bfloat16")
SPEEDUP_NEEDED = 1.5  # bfloat16 must beat float32 by this much to be worth its rounding


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


def matmul_gflops(dtypes: tuple[torch.dtype, ...], rows: int = 64, inner: int = 640, cols: int = 2048,
                  repeats: int = 20, seconds: float = 2.0) -> dict[torch.dtype, float]:
    """Best one-thread GFLOP/s of a [rows, inner] @ [inner, cols] matmul (small: bf16 may be emulated) in each type,
    over `repeats` rounds or `seconds`, whichever ends first, the types taking turns. One thread, because on a busy
    machine a two-thread matmul waits for its slower thread: best of 3, two threads, one type after the other,
    chose float32 in 3 of 5 fresh processes beside a busy CPU (and so missed the cached bfloat16 analysis)."""
    pairs = {dtype: (torch.randn(rows, inner, dtype=dtype), torch.randn(inner, cols, dtype=dtype)) for dtype in dtypes}
    best, threads = dict.fromkeys(dtypes, float("inf")), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for a, b in pairs.values():
            a @ b  # warm up (kernel selection)
        end = time.perf_counter() + seconds
        for _ in range(repeats):
            for dtype, (a, b) in pairs.items():
                start = time.perf_counter()
                a @ b
                best[dtype] = min(best[dtype], time.perf_counter() - start)
            if time.perf_counter() > end:
                break
    finally:
        torch.set_num_threads(threads)
    return {dtype: 2 * rows * inner * cols / took / 1e9 for dtype, took in best.items()}


@functools.cache
def output_layer_precision() -> Precision:
    """float32 or bfloat16 for the output layer's matmul, with the reason (printed by the analysis)."""
    forced = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if forced not in CHOICES:
        raise UserError(f"{ENV}={forced!r}: expected one of {', '.join(CHOICES)}")
    capability = torch.backends.cpu.get_cpu_capability()
    if forced != "auto":
        return Precision(getattr(torch, forced), f"forced by {ENV}; CPU capability {capability}")
    fp32, bf16 = matmul_gflops((torch.float32, torch.bfloat16)).values()
    chosen = torch.bfloat16 if bf16 > SPEEDUP_NEEDED * fp32 else torch.float32
    measured = f"measured float32 {fp32:.0f} GFLOP/s, bfloat16 {bf16:.1f} GFLOP/s; CPU capability {capability}"
    return Precision(chosen, measured)
