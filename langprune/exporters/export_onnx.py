"""Export a (pruned) decoder to ONNX with a KV cache, and derive CPU and mobile variants of it.

The graph takes `input_ids`, `attention_mask` (past + new tokens), `position_ids` and
`past_key_values.{i}.key/value`, and returns `logits` and `present.{i}.key/value`; batch, new
tokens and past length are dynamic. Each layer's cache has the number of KV heads its `k_proj`
actually has, so pruned models with different head counts per layer export as they are.

Masks are built inside the graph from `attention_mask`: causal for full-attention layers, causal
and limited to the last `sliding_window` positions for sliding layers (Gemma 3, Qwen with
sliding windows). Every layer keeps its whole past (a sliding layer does not drop what has left
its window, it masks it), so logits equal PyTorch's at any length, at the cost of a cache that
grows by the full length in sliding layers too.

optimum-onnx is not used for the graph. It exports these families unpruned, but not a pruned
model: `main_export` reloads the checkpoint from config.json (whose head counts no longer fit the
weights), and `onnx_export_from_model` traces with a dummy cache of `num_key_value_heads` heads in
every layer. A small wrapper exported by `torch.onnx.export` takes each layer's shape.

The exporter is torch's `dynamo=True` one (torch.export, then onnxscript): it writes the weights to the external
data file straight from the model's tensors. A model whose weights rest in 16 bits (`model/rest.py`) is traced with
float32 stand-ins that are never written, and each weight is upcast a block of rows at a time as it is written
(`float32_stand_ins`, `upcast_when_written`): the file is the float32 model's, byte for byte, without a float32 copy of
the model (Gemma 3 270M: the export's peak 2.05 -> 1.37 GB, docs/benchmarks.md).

The TorchScript exporter the dynamo one replaced serialized the whole model in memory, twice, and stored a tied
embedding twice (once transposed for the output layer): for Gemma 3 270M its peak was 6.6 GB beside the model's
1.7 GB, against 1.8 GB, and its file 1.66 GB against 1.07 GB (docs/benchmarks.md).
"""

import contextlib
import functools
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch

from ..log import say
from ..model.heads import head_dim, kv_head_counts
from ..model.parts import HEADS
from ..model.rest import RESTING
from ..options import ONNX_QUANTS

OPSET = 18
ONNX_FILE = "model.onnx"
DATA_SUFFIX = ".data"
UPCAST_BLOCK = 64 << 20  # bytes of float32 rows upcast at a time as a 16-bit weight is written (`_Upcast`)


def past_names(n_layers: int, prefix: str = "past_key_values") -> list[str]:
    """Input (or, with prefix "present", output) names of the cache, key then value per layer."""
    return [f"{prefix}.{i}.{kind}" for i in range(n_layers) for kind in ("key", "value")]


def layer_masks(config, attention_mask: torch.Tensor, n_new: int, past_len, dtype=torch.float32):
    """Additive masks [batch, 1, new, past+new] per layer type: 0 where a query may look, very negative elsewhere.

    Query t (absolute index past_len + t) sees key j when j <= past_len + t, attention_mask[:, j] is 1,
    and, in sliding layers, when j > past_len + t - sliding_window (transformers' convention).
    """
    total = attention_mask.shape[1]
    keys = torch.arange(total, device=attention_mask.device)[None, None, None, :]
    queries = (torch.arange(n_new, device=attention_mask.device) + past_len)[None, None, :, None]
    visible = (keys <= queries) & attention_mask[:, None, None, :].bool()
    lowest = torch.finfo(dtype).min

    def additive(allowed):
        return (~allowed).to(dtype) * lowest

    layer_types = getattr(config, "layer_types", None)
    if not layer_types:  # Llama: one kind of layer, transformers takes the 4D mask as it is
        return additive(visible)
    masks = {"full_attention": additive(visible)}
    if "sliding_attention" in layer_types:
        masks["sliding_attention"] = additive(visible & (keys > queries - config.sliding_window))
    return masks


class CachedDecoder(torch.nn.Module):
    """The model with flat tensor inputs and outputs, as torch.onnx.export traces it."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.n_layers = len(HEADS.modules(model))

    def forward(self, input_ids, attention_mask, position_ids, *past):
        from transformers import DynamicCache

        # without a config, every layer is a plain growing DynamicLayer, sliding ones included
        cache = DynamicCache(ddp_cache_data=list(zip(past[0::2], past[1::2])))
        masks = layer_masks(self.model.config, attention_mask, input_ids.shape[1], past[0].shape[2])
        out = self.model(
            input_ids=input_ids,
            attention_mask=masks,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        present = out.past_key_values
        return (out.logits, *[t for layer in present.layers for t in (layer.keys, layer.values)])


def example_inputs(model, batch: int = 2, n_new: int = 3, past_len: int = 4) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with: sizes above 1 everywhere so that no dimension is taken for a constant."""
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (batch, n_new))
    mask = torch.ones(batch, past_len + n_new, dtype=torch.long)
    positions = torch.arange(past_len, past_len + n_new).repeat(batch, 1)
    dim = head_dim(model)
    past = []
    for n_kv in kv_head_counts(model):
        past += [torch.randn(batch, n_kv, past_len, dim), torch.randn(batch, n_kv, past_len, dim)]
    return (ids, mask, positions, *past)


def dynamic_shapes(n_layers: int) -> tuple:
    """torch.export's dynamic dimensions of the wrapper's inputs (input_ids, attention_mask, position_ids, *past)."""
    from torch.export import Dim

    batch, sequence, total, past = (Dim(name) for name in ("batch", "sequence", "total_sequence", "past_sequence"))
    return ({0: batch, 1: sequence}, {0: batch, 1: total}, {0: batch, 1: sequence},
            ({0: batch, 2: past},) * (2 * n_layers))


def export_onnx(model, tokenizer, folder: str | Path, weights: str = "fp32") -> Path:
    """Write folder/model.onnx (+ model.onnx.data, the weights), the tokenizer and config.json; return the .onnx path.

    weights "fp32": the float32 model; "int4" (a model resting in 16 bits): each Linear's weight in 4 bits as ONNX
    Runtime's MatMulNBits reads it (`matmuls_in_4_bits`), written without a float32 model in memory or on disk.
    Traced with eager attention (plain MatMul/Softmax, which every ONNX Runtime build has);
    the model's own attention implementation is restored afterwards.
    """
    if weights not in ("fp32", "int4"):
        raise ValueError(f"ONNX weights are fp32 or int4, not {weights!r}")
    if weights == "int4" and not any(p.dtype in RESTING for p in model.parameters()):
        raise ValueError("int4 ONNX weights are written from a model resting in 16 bits (model/rest.py)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = CachedDecoder(model).eval()
    n_layers = wrapper.n_layers
    config = model.config
    saved_impl = config._attn_implementation
    config._attn_implementation = "eager"
    target = folder / ONNX_FILE
    exporter_log = logging.getLogger("torch.onnx")  # "torchvision is not installed", on every export
    saved_level = exporter_log.level
    try:
        exporter_log.setLevel(logging.ERROR)
        # optimize=False: onnxscript's optimizer keeps the last graph it matched in module-level rules, and with it
        # every parameter of the model (2.4 GB of Gemma's held through verify); ONNX Runtime optimizes at load
        with torch.no_grad(), float32_stand_ins(model.parameters()) as resting, warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # torch.export's notes on the dimensions it renames and guards it adds
            program = torch.onnx.export(wrapper, example_inputs(model), dynamo=True,
                                        input_names=["input_ids", "attention_mask", "position_ids",
                                                     *past_names(n_layers)],
                                        output_names=["logits", *past_names(n_layers, "present")],
                                        dynamic_shapes=dynamic_shapes(n_layers), opset_version=OPSET, optimize=False)
            if weights == "int4":
                resting = matmuls_in_4_bits(program.model, resting)
            upcast_when_written(program.model.graph, resting)
        program.save(str(target), external_data=True)
    finally:
        config._attn_implementation = saved_impl
        exporter_log.setLevel(saved_level)
    tokenizer.save_pretrained(folder)
    config.save_pretrained(folder)
    write_genai_config(model, tokenizer, folder)
    return target


@contextlib.contextmanager
def float32_stand_ins(parameters):
    """For the exporter's trace, which reads shapes and types, never values: each 16-bit parameter's data swapped for
    an unwritten float32 tensor of its shape (not resident: the system maps a large block's pages once they are
    written), then back. Yields {a stand-in's address: the 16-bit tensor it stands for} (`upcast_when_written`)."""
    swapped = [(p, p.data) for p in parameters if p.dtype in RESTING and p.numel()]
    for parameter, _ in swapped:
        parameter.data = torch.empty(parameter.shape, dtype=torch.float32)
    try:
        yield {parameter.data_ptr(): data for parameter, data in swapped}
    finally:
        for parameter, data in swapped:
            parameter.data = data


def upcast_when_written(graph, resting: dict) -> None:
    """Each initializer of `graph` that holds a stand-in (`float32_stand_ins`) becomes its 16-bit tensor, upcast as it
    is written to the external data file (`_Upcast`): a block of rows' float32 copy at a time, never the model's.
    Refused where the exporter stored a copy of a stand-in (its values would be whatever the memory held)."""
    import onnx_ir as ir

    found = set()
    for value in graph.initializers.values():
        raw = getattr(value.const_value, "raw", None)
        address = raw.data_ptr() if isinstance(raw, torch.Tensor) else None
        if address in resting:
            value.const_value = ir.LazyTensor(functools.partial(_Upcast, resting[address]), dtype=ir.DataType.FLOAT,
                                              shape=value.const_value.shape, name=value.name)
            found.add(address)
    if len(found) < len(resting):
        raise RuntimeError(f"the ONNX exporter stored {len(resting) - len(found)} of the model's weights as copies: "
                           "their values would not be the model's")


class _Upcast:
    """A 16-bit tensor's float32 values as onnx_ir writes them: `tofile` in blocks of rows of at most UPCAST_BLOCK
    bytes (a 7B's embedding is 2.2 GB in float32)."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def tofile(self, file) -> None:  # a matrix: only they rest in 16 bits
        rows = max(1, UPCAST_BLOCK // (4 * self.tensor[0].numel()))
        for start in range(0, len(self.tensor), rows):
            file.write(self.tensor[start:start + rows].float().contiguous().numpy().data)

    def numpy(self):
        return self.tensor.float().numpy()

    def tobytes(self) -> bytes:
        return self.numpy().tobytes()


def matmuls_in_4_bits(model, resting: dict) -> dict:
    """In place: each MatMul of `model`'s graph that multiplies by a resting weight W (`float32_stand_ins`) through
    `Transpose(W)`, as the exporter writes a Linear, becomes ONNX Runtime's `MatMulNBits` (com.microsoft) of W in
    4 bits, blocks of 32 with a float32 scale and a 4-bit zero point each: the node and the blocks ONNX Runtime's own
    quantizer (`MatMulNBitsQuantizer(bits=4, block_size=32, is_symmetric=False)`, `quantize_onnx`) makes from the
    float32 file, here computed by its kernel from the 16-bit weight as the file is written (`_FourBitBlocks`).
    An embedding's Gather reads its table in the 16 bits it rests in, its rows then cast to float32 (the values the
    float32 table gives, in half its bytes). Returns `resting` without the weights no longer written in float32."""
    import numpy as np
    import onnx_ir as ir
    from onnx_ir.tensor_adapters import TorchTensor

    graph, blocks = model.graph, _FourBitBlocks()
    for node in list(graph):
        transpose = node.inputs[1].producer() if node.op_type == "MatMul" else None
        weight = transpose.inputs[0] if transpose is not None and transpose.op_type == "Transpose" else None
        raw = getattr(weight.const_value, "raw", None) if weight is not None else None
        if not isinstance(raw, torch.Tensor) or raw.data_ptr() not in resting:
            continue
        tensor = resting[raw.data_ptr()]
        n, k = tensor.shape
        inputs = []
        for part, (suffix, shape, dtype) in enumerate(_four_bit_parts(n, k)):
            name, dtype, shape = f"{weight.name}_{suffix}", ir.DataType.from_numpy(np.dtype(dtype)), ir.Shape(shape)
            value = ir.Value(name=name, shape=shape, type=ir.TensorType(dtype),
                             const_value=ir.LazyTensor(functools.partial(blocks.part, tensor, part), dtype=dtype,
                                                       shape=shape, name=name))
            graph.register_initializer(value)
            inputs.append(value)
        matmul = ir.Node("com.microsoft", "MatMulNBits", [node.inputs[0], *inputs],
                         [ir.AttrInt64("K", k), ir.AttrInt64("N", n), ir.AttrInt64("bits", 4),
                          ir.AttrInt64("block_size", 32)], name=f"{node.name}_Q4")
        matmul.outputs[0].shape, matmul.outputs[0].type = node.outputs[0].shape, node.outputs[0].type
        ir.convenience.replace_nodes_and_values(graph, node, [node], [matmul], node.outputs, matmul.outputs)
        if not transpose.outputs[0].uses():
            graph.remove(transpose, safe=True)
        if not weight.uses():
            del graph.initializers[weight.name]
            resting = {address: t for address, t in resting.items() if t is not tensor}
    for node in list(graph):
        table = node.inputs[0] if node.op_type == "Gather" else None
        raw = getattr(table.const_value, "raw", None) if table is not None else None
        if not isinstance(raw, torch.Tensor) or raw.data_ptr() not in resting or len(table.uses()) > 1:
            continue
        tensor = resting.pop(raw.data_ptr())
        table.const_value = TorchTensor(tensor, name=table.name)
        table.type = ir.TensorType(table.const_value.dtype)
        cast = ir.Node("", "Cast", [None], [ir.AttrInt64("to", ir.DataType.FLOAT)], name=f"{node.name}_float32")
        node.outputs[0].replace_all_uses_with(cast.outputs[0], replace_graph_outputs=True)
        cast.replace_input_with(0, node.outputs[0])
        cast.outputs[0].shape, cast.outputs[0].type = node.outputs[0].shape, node.outputs[0].type
        cast.outputs[0].name = f"{node.outputs[0].name}_float32"
        node.outputs[0].type = table.type
        graph.insert_after(node, cast)
    model.opset_imports["com.microsoft"] = 1
    return resting


class _FourBitBlocks:
    """A resting weight W [N, K] as MatMulNBits's three tensors (`_four_bit_parts`), by ONNX Runtime's
    `quantize_matmul_4bits` (the kernel its MatMulNBitsQuantizer calls), a block of rows of W (columns of the MatMul's
    B = W^T) at a time. Its three tensors are written one after the other: the last weight's are kept, no other."""

    def __init__(self):
        self.tensor, self.parts = None, None

    def part(self, tensor: torch.Tensor, index: int):
        import onnx_ir as ir

        if self.tensor is not tensor:
            self.parts = None  # the last weight's freed before the next one's are made
            self.tensor, self.parts = tensor, _four_bit_blocks(tensor)
        return ir.Tensor(self.parts[index])


def _four_bit_parts(n: int, k: int) -> list[tuple]:
    """(suffix, shape, numpy type) of MatMulNBits's tensors for a weight [N, K] in 4 bits, blocks of 32 (K padded to
    a whole block): the packed blocks, a float32 scale and a 4-bit zero point (two a byte) a block."""
    import numpy as np

    blocks = -(-k // 32)
    return [("Q4", (n, blocks, 16), np.uint8), ("scales", (n, blocks), np.float32),
            ("zero_points", (n, -(-blocks // 2)), np.uint8)]


def _four_bit_blocks(tensor: torch.Tensor):
    import numpy as np
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    n, k = tensor.shape
    parts = [np.zeros(shape, dtype) for _, shape, dtype in _four_bit_parts(n, k)]
    rows = max(1, UPCAST_BLOCK // (4 * k))
    for start in range(0, n, rows):
        b = np.zeros((parts[0].shape[1] * 32, min(rows, n - start)), np.float32)  # [K padded, rows]: a MatMul's B
        b[:k] = tensor[start:start + rows].float().numpy().T
        end = start + b.shape[1]
        packed, scales, zero_points = (part[start:end] for part in parts)  # written in place
        quantize_matmul_4bits(packed, b, scales, zero_points, 32, b.shape[1], k, False)
    return parts


# ONNX Runtime GenAI's model types for the families' transformers model types
GENAI_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3_text"}


def write_genai_config(model, tokenizer, folder: Path) -> Path | None:
    """folder/genai_config.json, so that `onnxruntime_genai.Model(folder)` loads the decoder and
    generates with it: our input/output names and KV layout ([batch, kv heads, sequence, head size]).
    GenAI takes one KV head count for all layers: a model whose layers differ gets none, said
    once on the console (the plain ONNX model is written all the same)."""
    config, kv = model.config, kv_head_counts(model)
    if len(set(kv)) > 1 or config.model_type not in GENAI_TYPES:
        why = f"its layers keep {kv} KV heads" if len(set(kv)) > 1 else f"model type {config.model_type} is not mapped"
        say(f"   no genai_config.json: ONNX Runtime GenAI takes one KV head count for all layers and {why}")
        return None
    attn = HEADS.modules(model)[0]
    names = {"past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"}
    genai = {
        "model": {
            "type": GENAI_TYPES[config.model_type], "vocab_size": model.get_input_embeddings().weight.shape[0],
            "context_length": config.max_position_embeddings, "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.eos_token_id if tokenizer.pad_token_id is None else tokenizer.pad_token_id,
            "decoder": {
                "filename": ONNX_FILE, "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "head_size": attn.head_dim, "hidden_size": config.hidden_size, "num_hidden_layers": len(kv),
                "num_attention_heads": attn.q_proj.out_features // attn.head_dim, "num_key_value_heads": kv[0],
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                           **names},
                "outputs": {"logits": "logits", **{k.replace("past", "present"): v.replace("past_key_values", "present")
                                                   for k, v in names.items()}},
            },
        },
        "search": {"do_sample": False, "num_beams": 1, "max_length": config.max_position_embeddings,
                   "past_present_share_buffer": False},
    }
    path = Path(folder) / "genai_config.json"
    path.write_text(json.dumps(genai, indent=1))
    return path


def save_with_external_data(src: str | Path, dst: str | Path) -> Path:
    """Re-save an ONNX model as dst (the graph) + dst.data (every weight, one file), whatever its size."""
    import onnx

    dst = Path(dst)
    model = onnx.load(str(src))
    data = dst.with_name(dst.name + DATA_SUFFIX)
    data.unlink(missing_ok=True)
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    return dst


def quantize_onnx(src: str | Path, dst: str | Path, kind: str) -> Path:
    """Quantize the weights of src into dst (+ dst.data) for ONNX Runtime on CPU.

    "int8": dynamic quantization, int8 weights (per output channel for MatMul, per tensor for the
    embedding's Gather) and activations quantized on the fly.
    "int4": weight-only MatMulNBits, blocks of 32 weights with a scale and a zero point each, computed
    in float; the embedding is stored in int8 (a 4-bit Gather needs int4 tensors, which the ORT format
    of ONNX Runtime Mobile cannot hold).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if kind not in ONNX_QUANTS:
        raise ValueError(f"unknown quantization {kind!r} (int8 or int4)")
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = untied_output_layer(src, Path(tmp) / "untied" / src.name)
        out = Path(tmp) / dst.name
        if kind == "int8":
            quantize_dynamic(src, out, weight_type=QuantType.QInt8, per_channel=True, use_external_data_format=True)
        else:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

            logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
            quantizer = MatMulNBitsQuantizer(str(src), bits=4, block_size=32, is_symmetric=False)
            quantizer.process()
            quantize_dynamic(quantizer.model.model, out, op_types_to_quantize=["Gather"],
                             weight_type=QuantType.QInt8, use_external_data_format=True)
        save_with_external_data(out, dst)
    return dst


def untied_output_layer(src: Path, dst: Path) -> Path:
    """src re-saved as dst where a MatMul reads a transposed weight (`Transpose(initializer)`: the dynamo exporter's
    output layer over a tied embedding) given that matrix, transposed, as its own initializer, which ONNX Runtime's
    quantizers need to quantize it; src itself when none does. The float32 file holds a tied table once, and a
    quantized copy holds it twice, at each use's precision (int8 for the embedding's Gather, 4 bits for the output
    layer), as the TorchScript exporter's files did."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_model

    model = onnx.load(str(src), load_external_data=False)  # the weights only where one is untied
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    reads = [(node, producers.get(node.input[1])) for node in graph.node if node.op_type == "MatMul"]
    reads = [(node, t) for node, t in reads if t is not None and t.op_type == "Transpose" and t.input[0] in weights]
    if not reads:
        return src
    load_external_data_for_model(model, str(src.parent))
    untied = {}  # a Transpose's output -> the initializer now read in its place
    for node, transpose in reads:
        if transpose.output[0] not in untied:
            perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
            matrix = np.ascontiguousarray(numpy_helper.to_array(weights[transpose.input[0]]).transpose(perm))
            untied[transpose.output[0]] = f"{transpose.input[0]}.transposed"
            graph.initializer.append(numpy_helper.from_array(matrix, untied[transpose.output[0]]))
        node.input[1] = untied[transpose.output[0]]
    read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    kept = [node for node in graph.node if node.op_type != "Transpose" or node.output[0] not in untied
            or node.output[0] in read]
    del graph.node[:]
    graph.node.extend(kept)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=dst.name + DATA_SUFFIX, size_threshold=1024)
    return dst


def to_ort_format(src: str | Path) -> Path:
    """An ORT-format copy (ONNX Runtime Mobile) next to src: model.onnx -> model.ort, with the
    `required_operators_and_types.config` a reduced ONNX Runtime build for it is made from; returns
    the .ort's path."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    src = Path(src)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        convert_onnx_models_to_ort(src, output_dir=Path(tmp), optimization_styles=[OptimizationStyle.Fixed],
                                   enable_type_reduction=True)
        made = next(Path(tmp).rglob(src.stem + ".ort"))
        target = src.with_suffix(".ort")
        shutil.move(made, target)
        shutil.move(next(Path(tmp).glob("*.required_operators_and_types*.config")),
                    src.parent / "required_operators_and_types.config")
    return target
