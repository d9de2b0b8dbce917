"""Every file an export writes for one model: ONNX (and quantized copies) and GGUF (F16 and quantized).
The original model's files, the "before" of every comparison, are cached by its fingerprint."""

import json
from pathlib import Path

from ..log import say, warn
from ..model.load import LoadedModel
from ..options import GGUF_QUANTS, ONNX_QUANTS
from ..paths import cache_entry, cached

INDEX = "files.json"  # in a cached export: its files by key, relative to it
# Above ONNX_FLOAT32_LIMIT bytes of float32 weights, the ONNX model is written in 4 bits (`export_onnx(weights=
# "int4")`) and no float32 ONNX model is: ONNX Runtime holds a float32 model in about 1.3x its bytes, and it is written
# at twice the bytes the weights rest in (a 1.5B's: 7.1 GB; docs/benchmarks.md, "ONNX in 4 bits")
ONNX_FLOAT32_LIMIT = 4 << 30


def onnx_weights(model) -> str:
    """The weights of a model's ONNX files ("fp32" or "int4"; `ONNX_FLOAT32_LIMIT`), the same for the original and
    the pruned model: the original's decides."""
    return "fp32" if 4 * sum(p.numel() for p in model.parameters()) <= ONNX_FLOAT32_LIMIT else "int4"


def onnx_reference(files: dict) -> str:
    """The key of an export's ONNX model that the checks in ONNX Runtime run: 'onnx fp32', or 'onnx int4' above
    `ONNX_FLOAT32_LIMIT`."""
    return "onnx fp32" if "onnx fp32" in files else "onnx int4"


def gguf_key(kind: str, output: str | None = None, imatrix: bool = False) -> str:
    """An export's key for a GGUF file: 'gguf Q4_K_M', or 'gguf Q4_K_M, output IQ4_NL' where the output layer has
    another type than the file type gives it, 'gguf Q4_K_M, output IQ4_NL, imatrix' where it was quantized with an
    importance matrix (QUANT=auto's choices)."""
    return f"gguf {kind}" + (f", output {output}" if output else "") + (", imatrix" if imatrix else "")


def gguf_kind(key: str) -> str:
    """The file type of a GGUF file's key: 'gguf Q4_K_M, output IQ4_NL' -> 'Q4_K_M'."""
    return key.removeprefix("gguf ").split(",")[0]


def gguf_name(kind: str, output: str | None = None, imatrix: bool = False) -> str:
    """Its file name in an export's gguf/ folder."""
    return f"model-{kind}" + (f"-output-{output}" if output else "") + ("-imatrix" if imatrix else "") + ".gguf"


def export_all(model, tokenizer, source_gguf: Path | None, quant: list[str], folder: Path,
               onnx: str) -> dict[str, Path]:
    """ONNX in `onnx` weights ("fp32" or "int4", `onnx_weights`; + the quantized copies in `quant`, + ORT format) and
    GGUF F16 (+ quantized) into folder; `source_gguf`: the GGUF the model was loaded from, whose settings the GGUF
    keeps (None: from the config)."""
    from .export_gguf import export_gguf
    from .export_onnx import export_onnx, quantize_onnx, to_ort_format
    from .quantize import quantize_gguf

    files = {f"onnx {onnx}": export_onnx(model, tokenizer, folder / "onnx", weights=onnx)}
    for kind in (q for q in quant if q in ONNX_QUANTS):
        if onnx == "fp32":
            dst = folder / f"onnx-{kind}" / "model.onnx"
            files[f"onnx {kind}"] = quantize_onnx(files["onnx fp32"], dst, kind)
        elif kind != onnx:
            warn(f"no ONNX {kind} file: it is quantized from the float32 ONNX model, not written for a model of "
                f"over {ONNX_FLOAT32_LIMIT >> 30} GB of float32 weights")
            continue
        files[f"ort {kind}"] = to_ort_format(files[f"onnx {kind}"])
    gguf_dir = folder / "gguf"  # the writers make their folders
    files["gguf F16"] = export_gguf(model, source_gguf, tokenizer, gguf_dir / "model-F16.gguf")
    for kind in (q for q in quant if q in GGUF_QUANTS):
        files[gguf_key(kind)] = quantize_gguf(files["gguf F16"], gguf_dir / gguf_name(kind), kind)
    return files


def export_original(loaded: LoadedModel, quant: list[str]) -> dict[str, Path]:
    """The unpruned model through the same exporters: the fair 'before', its ONNX weights its own (`onnx_weights`).
    Cached by fingerprint, the quantizations, the ONNX weights and the exporters' code."""
    exporters = ("export_gguf", "gguf_arch", "quantize", "export_onnx")
    onnx = onnx_weights(loaded.model)
    entry = cache_entry("exports", (loaded.name, loaded.fingerprint, "-".join(sorted(quant)), onnx),
                        (__name__, *(f"langprune.exporters.{name}" for name in exporters)))

    def make(folder: Path) -> None:
        files = export_all(loaded.model, loaded.tokenizer, loaded.gguf, quant, folder, onnx)
        (folder / INDEX).write_text(json.dumps({k: str(p.relative_to(folder)) for k, p in files.items()}))

    def read(folder: Path) -> dict[str, Path]:
        return {k: folder / p for k, p in json.loads((folder / INDEX).read_text()).items()}

    files, reused = cached(entry, make, read)
    if reused:
        say("   original exports reused from cache")
    return files
