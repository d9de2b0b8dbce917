"""A GGUF of a large model's shapes with random weights, at any depth: what a 7B costs in memory and time, where no 7B
is reachable (no weights are downloaded, and none larger than 1.5B is on PyPI).

    python -m tests.shaped_gguf OUT.gguf [--layers 28] [--type Q4_K_M]

The default shapes are Qwen2.5-7B's (architecture qwen2): hidden 3,584, FFN 18,944, 28 query and 4 key-value heads of
128, 152,064 embedding rows, an output layer of its own. The tokenizer is the Qwen 0.5B recipe's (the same family's
151,936 tokens), padded to the embedding's rows as llama.cpp's converter pads (`[PAD<id>]`, unused). Weights are
normal with sd 0.02, so quality figures mean nothing: run it with options that need no quality (VOCAB=off, no cut)
and read the memory and time. Written as F16 one tensor at a time (gguf-py's writer, as `export_gguf`), then
quantized by llama.cpp's quantizer; the F16 file is removed.
"""

import argparse
import dataclasses
import math
from pathlib import Path

import gguf
import numpy as np

from langprune.exporters.export_gguf import _write_vocab
from langprune.exporters.quantize import quantize_gguf
from langprune.model.recipes import load_recipe
from langprune.model.tokenizer import GGUFVocab, read_vocab
from langprune.paths import written

ROWS_PER_DRAW = 8192  # rows of random values drawn at a time: the largest table is never held as float32


@dataclasses.dataclass(frozen=True)
class Shapes:
    hidden: int = 3584
    ffn: int = 18944
    heads: int = 28
    kv_heads: int = 4
    head_dim: int = 128
    vocab: int = 152064
    context: int = 32768


QWEN2_7B = Shapes()


def tensors(shapes: Shapes, layers: int) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> numpy shape (rows, columns), in the converter's order."""
    s = shapes
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    out = {"token_embd.weight": (s.vocab, s.hidden)}
    for i in range(layers):
        out |= {f"blk.{i}.attn_norm.weight": (s.hidden,),
                f"blk.{i}.attn_q.weight": (q, s.hidden), f"blk.{i}.attn_q.bias": (q,),
                f"blk.{i}.attn_k.weight": (kv, s.hidden), f"blk.{i}.attn_k.bias": (kv,),
                f"blk.{i}.attn_v.weight": (kv, s.hidden), f"blk.{i}.attn_v.bias": (kv,),
                f"blk.{i}.attn_output.weight": (s.hidden, q),
                f"blk.{i}.ffn_norm.weight": (s.hidden,),
                f"blk.{i}.ffn_gate.weight": (s.ffn, s.hidden), f"blk.{i}.ffn_up.weight": (s.ffn, s.hidden),
                f"blk.{i}.ffn_down.weight": (s.hidden, s.ffn)}
    return out | {"output_norm.weight": (s.hidden,), "output.weight": (s.vocab, s.hidden)}


def padded_vocab(rows: int) -> GGUFVocab:
    """The Qwen 0.5B recipe's vocabulary padded to `rows` tokens."""
    vocab = read_vocab(load_recipe("qwen2.5-coder-0.5b").source_path())
    missing = rows - len(vocab.tokens)
    if missing < 0:
        raise ValueError(f"{rows} rows hold fewer than the tokenizer's {len(vocab.tokens)} tokens")
    return dataclasses.replace(vocab, tokens=vocab.tokens + [f"[PAD{i}]" for i in range(len(vocab.tokens), rows)],
                               types=list(vocab.types) + [int(gguf.TokenType.UNUSED)] * missing,
                               scores=None if vocab.scores is None else list(vocab.scores) + [0.0] * missing)


def random_weight(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Norms are ones (F32), biases normal(0, 0.02) (F32), matrices normal(0, 0.02) (F16, drawn a block of rows at a
    time)."""
    if "norm" in name:
        return np.ones(shape, np.float32)
    if len(shape) == 1:
        return rng.standard_normal(shape, dtype=np.float32) * 0.02
    out = np.empty(shape, np.float16)
    for start in range(0, shape[0], ROWS_PER_DRAW):
        block = out[start:start + ROWS_PER_DRAW]
        block[...] = rng.standard_normal(block.shape, dtype=np.float32) * 0.02
    return out


def write_f16(path: Path, shapes: Shapes, layers: int, seed: int = 0) -> Path:
    rng, arch = np.random.default_rng(seed), "qwen2"
    with written(path) as partial:
        writer = gguf.GGUFWriter(partial, arch)
        writer.add_name(f"random qwen2, {layers} layers of hidden {shapes.hidden}")
        writer.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
        writer.add_context_length(shapes.context)
        writer.add_embedding_length(shapes.hidden)
        writer.add_block_count(layers)
        writer.add_feed_forward_length(shapes.ffn)
        writer.add_head_count(shapes.heads)
        writer.add_head_count_kv(shapes.kv_heads)
        writer.add_rope_freq_base(1_000_000.0)
        writer.add_layer_norm_rms_eps(1e-6)
        _write_vocab(writer, padded_vocab(shapes.vocab), settings=True)
        shaped = tensors(shapes, layers)
        for name, shape in shaped.items():
            dtype = np.dtype(np.float32 if len(shape) == 1 else np.float16)
            writer.add_tensor_info(name, shape, dtype, math.prod(shape) * dtype.itemsize)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for name, shape in shaped.items():
            writer.write_tensor_data(random_weight(name, shape, rng))
        writer.close()
    return path


def write_shaped(path: Path, layers: int, kind: str = "Q4_K_M", shapes: Shapes = QWEN2_7B) -> Path:
    """The shaped model at `layers` layers as a GGUF of file type `kind` (F16: no quantization)."""
    path = Path(path)
    if kind == "F16":
        return write_f16(path, shapes, layers)
    f16 = write_f16(path.with_name(path.stem + "-F16.gguf"), shapes, layers)
    try:
        return quantize_gguf(f16, path, kind)
    finally:
        f16.unlink()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--type", default="Q4_K_M", help="a llama.cpp file type, or F16")
    args = parser.parse_args()
    print(write_shaped(args.out, args.layers, args.type))
