"""An importance matrix for llama.cpp's quantizer (`quantize.quantize_gguf(..., imatrix=)`), in the GGUF format
llama-imatrix writes and llama-quantize reads: for each matrix of the F16 file a token multiplies, the sum over the
calibration tokens of each input column's square (`<tensor>.in_sum2`) and the number of tokens (`<tensor>.counts`).

It is collected with PyTorch hooks on the model the F16 file was written from, not by llama-imatrix on the file:
llama-imatrix collects nothing for a tied output layer (Gemma's `token_embd.weight`), the tensor whose type matters
most to a trimmed model's speed (QUANT=auto varies it). A matrix's input columns are the same in both (export_gguf
reorders only rows), and the tensor names are the file's own.
"""

from pathlib import Path

import gguf
import numpy as np
import torch

from ..data.corpus import Corpus, calibration_ids
from ..log import progress
from ..model.gguf_file import read_header
from ..options import IMATRIX_TOKENS
from ..paths import written
from .export_gguf import gguf_name_map

CHUNK_TOKENS = 512  # as llama-imatrix's default context


def calibration_matrix(model, f16: Path, tokenizer, corpus: Corpus, langs: list[str], out: Path) -> Path:
    """IMATRIX=on's importance matrix: `model`'s (the model `f16` was exported from) over the first IMATRIX_TOKENS
    calibration tokens of each of `langs`, written to `out`."""
    chunks = [ids for lang in langs for ids in calibration_ids(tokenizer, corpus, lang, IMATRIX_TOKENS, CHUNK_TOKENS)]
    return importance_matrix(model, f16, chunks, out, f"calibration text of {','.join(langs)}")


def importance_matrix(model, f16: Path, chunks: list[list[int]], out: Path, dataset: str) -> Path:
    """Write the importance matrix of `model` (the model `f16` was exported from) over `chunks` of token ids to
    `out`; `dataset` names the text in the file. Returns out."""
    header = read_header(f16)
    arch, file_tensors = header.fields["general.architecture"][0].decode(), {t.name for t in header.tensors}
    names = gguf_name_map(model, arch)
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str):
        def add(_module, args, _output):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        return add

    handles = []
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            name = names.get_name(f"{module_name}.weight", try_suffixes=(".weight",))
            if module_name == "lm_head" and name not in file_tensors:  # tied: the embedding table is the output
                name = "token_embd.weight"
            if name in file_tensors:
                handles.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad(), progress(total=len(chunks), desc="importance matrix", unit="chunk") as bar:
            for ids in chunks:
                model(torch.tensor([ids]))
                bar.update(1)
    finally:
        for handle in handles:
            handle.remove()
    with written(Path(out)) as partial:
        writer = gguf.GGUFWriter(partial, arch=None)
        writer.add_type("imatrix")
        writer.add_array("imatrix.datasets", [dataset])
        writer.add_uint32("imatrix.chunk_count", len(chunks))
        writer.add_uint32("imatrix.chunk_size", max(len(ids) for ids in chunks))
        for name in sorted(sums):
            writer.add_tensor(f"{name}.in_sum2", sums[name].float().numpy())
            writer.add_tensor(f"{name}.counts", np.array([counts[name]], dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return Path(out)
