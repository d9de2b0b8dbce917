"""GGUF quantization with llama.cpp's own quantizer (`quantize_gguf`), the one llama-cpp-python carries."""

import ctypes
import os
from pathlib import Path

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from ..errors import UserError, run_tool
from ..llama_tools import llama_tool
from ..log import llama_cpp_log
from ..model.gguf_file import read_header
from ..options import GGUF_QUANTS
from ..paths import written

QUANT_KINDS = {kind: f"LLAMA_FTYPE_MOSTLY_{kind}" for kind in GGUF_QUANTS}  # llama.cpp's file types
OUTPUT_TYPES = ("Q8_0", "Q6_K", "Q5_0", "Q4_0", "IQ4_NL")  # for the output layer (a tied embedding: that table)


def quantize_gguf(src: Path, dst: Path, kind: str, threads: int = 0, output_type: str | None = None,
                  imatrix: Path | None = None) -> Path:
    """Quantize an F16 GGUF with llama.cpp's own quantizer (kind: one of GGUF_QUANTS); returns dst. `output_type`
    sets the output layer's tensor type (a tied embedding table is the output layer) instead of the file type's;
    `imatrix` weighs each matrix's rounding by its inputs (`imatrix.py`), through llama-quantize, since
    llama-cpp-python's quantize parameters cannot carry one.

    llama.cpp picks fallbacks itself where a tensor's rows do not fit the block size (K-quants need
    rows of a multiple of 256, e.g. Q5_0 instead of Q4_K). Its log is kept and shown on failure.
    """
    from ..llama_runtime import import_llama_cpp

    llama_cpp = import_llama_cpp()
    if kind not in QUANT_KINDS:
        raise UserError(f"quantization {kind!r} is not supported (supported: {', '.join(QUANT_KINDS)})")
    if output_type is not None and output_type not in OUTPUT_TYPES:
        raise UserError(f"output tensor type {output_type!r} is not supported (supported: {', '.join(OUTPUT_TYPES)})")
    src, dst = Path(src), Path(dst)
    if output_type is not None and not output_type_fits(src, output_type):
        raise UserError(f"{src.name}: the output layer's rows do not fit {output_type}'s blocks of "
                        f"{block_size(output_type)} values")
    if imatrix is not None:
        return _quantize_with_imatrix(src, dst, kind, threads, output_type, Path(imatrix))
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_KINDS[kind])
    params.nthread = threads
    if output_type is not None:
        params.output_tensor_type = getattr(llama_cpp, f"GGML_TYPE_{output_type}")
    llama_cpp.llama_backend_init()
    with written(dst) as partial, llama_cpp_log() as log:
        status = llama_cpp.llama_model_quantize(str(src).encode(), str(partial).encode(), ctypes.byref(params))
        if status != 0:
            tail = "".join(log)[-2000:]
            raise UserError(f"llama.cpp could not quantize {src.name} to {kind}:\n{tail}")
    return dst


def _quantize_with_imatrix(src: Path, dst: Path, kind: str, threads: int, output_type: str | None,
                           imatrix: Path) -> Path:
    output = ["--output-tensor-type", output_type.lower()] if output_type else []
    with written(dst) as partial:
        run_tool([str(llama_tool("llama-quantize")), "--imatrix", str(imatrix), *output, str(src), str(partial), kind,
                  str(threads or os.cpu_count() or 1)], f"quantize {src.name} to {kind} with an importance matrix")
    return dst


def output_type_fits(src: Path, output_type: str) -> bool:
    """Whether the output layer's rows (a tied embedding table's, where it is the output layer) are a whole number of
    `output_type`'s blocks. llama.cpp falls back from a file type's own choice where they are not, but writes a type
    asked for by name as it is: rows of 640 in Q6_K's blocks of 256 make an invalid file, then a crash."""
    tensors = {t.name: t for t in read_header(src).tensors}
    output = tensors.get("output.weight", tensors["token_embd.weight"])
    return output.shape[0] % block_size(output_type) == 0


def block_size(tensor_type: str) -> int:
    """Values per block of a GGML tensor type: a row's length must be a multiple of it."""
    return GGML_QUANT_SIZES[GGMLQuantizationType[tensor_type]][0]
