"""Every file an export writes for one model: ONNX (and quantized copies) and GGUF (F16 and quantized).
The original model's files, the "before" of every comparison, are cached by its fingerprint."""

import json
from pathlib import Path

from ..log import say
from ..model.load import LoadedModel
from ..options import GGUF_QUANTS, ONNX_QUANTS
from ..paths import cache_dir, code_version, written


def export_all(model, tokenizer, source_gguf: Path | None, quant: list[str], folder: Path) -> dict[str, Path]:
    """ONNX (+ the quantized copies in `quant`, + ORT format) and GGUF F16 (+ quantized) into folder;
    `source_gguf`: the GGUF the model was loaded from, whose settings the GGUF keeps (None: from the config)."""
    from .export_gguf import export_gguf
    from .export_onnx import export_onnx, quantize_onnx, to_ort_format
    from .quantize import quantize_gguf

    files = {"onnx fp32": export_onnx(model, tokenizer, folder / "onnx")}
    for kind in (q for q in quant if q in ONNX_QUANTS):
        dst = folder / f"onnx-{kind}" / "model.onnx"
        files[f"onnx {kind}"] = quantize_onnx(files["onnx fp32"], dst, kind)
        files[f"ort {kind}"] = to_ort_format(dst)
    gguf_dir = folder / "gguf"  # the writers make their folders
    files["gguf F16"] = export_gguf(model, source_gguf, tokenizer, gguf_dir / "model-F16.gguf")
    for kind in (q for q in quant if q in GGUF_QUANTS):
        files[f"gguf {kind}"] = quantize_gguf(files["gguf F16"], gguf_dir / f"model-{kind}.gguf", kind)
    return files


def export_original(loaded: LoadedModel, quant: list[str]) -> dict[str, Path]:
    """The unpruned model through the same exporters: the fair 'before'. Cached by fingerprint, the
    quantizations and the exporters' code."""
    exporters = ("export_gguf", "gguf_arch", "quantize", "export_onnx")
    code = code_version(__name__, *(f"langprune.exporters.{name}" for name in exporters))
    key = f"{loaded.name}-{loaded.fingerprint}-{'-'.join(sorted(quant))}-{code}"
    folder = cache_dir() / "exports" / key
    index = folder / "files.json"
    if index.exists():
        say("   original exports reused from cache")
        return {k: Path(v) for k, v in json.loads(index.read_text()).items()}
    with written(folder) as partial:
        files = export_all(loaded.model, loaded.tokenizer, loaded.gguf, quant, partial)
    files = {k: folder / p.relative_to(partial) for k, p in files.items()}
    index.write_text(json.dumps({k: str(v) for k, v in files.items()}))
    return files
