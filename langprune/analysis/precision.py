"""Which floating-point type this CPU multiplies fastest: measured once per process, or forced.

Measured with this module's own matmul on a 2-core AMD EPYC with AVX512-BF16: float32 136-153
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


def matmul_gflops(dtype: torch.dtype, rows: int = 64, inner: int = 640, cols: int = 2048, repeats: int = 3) -> float:
    """Best-of-`repeats` GFLOP/s of a [rows, inner] @ [inner, cols] matmul (small: bf16 may be emulated)."""
    a, b = torch.randn(rows, inner, dtype=dtype), torch.randn(inner, cols, dtype=dtype)
    a @ b  # warm up (kernel selection, thread pool)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * rows * inner * cols / best / 1e9


@functools.cache
def output_layer_precision() -> Precision:
    """float32 or bfloat16 for the output layer's matmul, with the reason (printed by the analysis)."""
    forced = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if forced not in CHOICES:
        raise UserError(f"{ENV}={forced!r}: expected one of {', '.join(CHOICES)}")
    capability = torch.backends.cpu.get_cpu_capability()
    if forced != "auto":
        return Precision(getattr(torch, forced), f"forced by {ENV}; CPU capability {capability}")
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    chosen = torch.bfloat16 if bf16 > SPEEDUP_NEEDED * fp32 else torch.float32
    measured = f"measured float32 {fp32:.0f} GFLOP/s, bfloat16 {bf16:.1f} GFLOP/s; CPU capability {capability}"
    return Precision(chosen, measured)
