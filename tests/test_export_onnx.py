"""ONNX export with a KV cache: ONNX Runtime gives PyTorch's logits, pruned or not, in every family."""

import copy

import numpy as np
import pytest
import torch

from langprune.data.corpus import encode
from langprune.data.evaluate import torch_scorer
from langprune.exporters.export_onnx import export_onnx, quantize_onnx, to_ort_format
from langprune.measure.onnxrt import generate, open_session, ort_scorer, run
from langprune.model import families
from langprune.model.heads import kv_head_counts
from langprune.model.parts import HEADS
from tests.tiny import tiny_model, tiny_tokenizer

FAMILIES = list(families.FAMILIES)
# layer 0 keeps one head per KV group, layer 1 loses its second group whole, layer 2 keeps all
KEEP = [[0, 3], [0, 1], [0, 1, 2, 3]]
SENTENCE = "Alle Menschen sind frei und gleich an Würde und Rechten geboren."
STEPS = 8
TOL = 1e-3


def torch_steps(model, ids, steps=STEPS, attention_mask=None, position_ids=None) -> list[np.ndarray]:
    """Logits of a prompt, then of `steps` tokens (ids[:, :steps], fed back) decoded one by one with the cache."""
    mask = torch.ones_like(ids) if attention_mask is None else attention_mask
    positions = torch.arange(ids.shape[1]).expand_as(ids) if position_ids is None else position_ids
    out = []
    with torch.no_grad():
        result = model(ids, attention_mask=mask, position_ids=positions, use_cache=True)
        out.append(result.logits.numpy())
        for step in range(steps):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            positions = positions[:, -1:] + 1
            result = model(ids[:, step : step + 1], attention_mask=mask, position_ids=positions,
                           past_key_values=result.past_key_values, use_cache=True)
            out.append(result.logits.numpy())
    return out


def ort_steps(session, ids, steps=STEPS, attention_mask=None, position_ids=None) -> list[np.ndarray]:
    """The same as torch_steps, through ONNX Runtime with the cache it returns."""
    ids = ids.numpy()
    mask = np.ones_like(ids) if attention_mask is None else attention_mask.numpy()
    positions = np.broadcast_to(np.arange(ids.shape[1]), ids.shape) if position_ids is None else position_ids.numpy()
    logits, past = run(session, ids, mask, positions)
    out = [logits]
    for step in range(steps):
        mask = np.concatenate([mask, np.ones_like(mask[:, :1])], axis=1)
        positions = positions[:, -1:] + 1
        logits, past = run(session, ids[:, step : step + 1], mask, positions, past)
        out.append(logits)
    return out


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def sentence_ids(tokenizer) -> torch.Tensor:
    return torch.tensor([encode(tokenizer, SENTENCE)])


@pytest.fixture(scope="module", params=[(f, p) for f in FAMILIES for p in (False, True)],
                ids=lambda p: f"{p[0]}-{'pruned' if p[1] else 'full'}")
def exported(request, tmp_path_factory):
    """(model, ONNX path, session) for a tiny model of each family, unpruned and pruned per layer."""
    family, pruned = request.param
    model = tiny_model(family)
    if pruned:
        HEADS.prune(model, KEEP)
    path = export_onnx(model, tiny_tokenizer(), tmp_path_factory.mktemp("onnx") / family)
    return model, path, open_session(path, threads=1)


def test_export_writes_graph_tokenizer_and_config(exported):
    model, path, session = exported
    folder = path.parent
    assert path.name == "model.onnx" and (folder / "model.onnx.data").stat().st_size > 0
    assert (folder / "config.json").exists() and (folder / "tokenizer.json").exists()
    names = [i.name for i in session.get_inputs()]
    assert names[:3] == ["input_ids", "attention_mask", "position_ids"]
    assert [o.name for o in session.get_outputs()][:3] == ["logits", "present.0.key", "present.0.value"]
    # every layer's cache is shaped by its own KV heads, read from the graph
    kv_in_graph = [i.shape[1] for i in session.get_inputs() if i.name.endswith(".key")]
    assert kv_in_graph == kv_head_counts(model)
    assert kv_in_graph == ([2, 1, 2] if getattr(model.config, "kept_heads", None) else [2, 2, 2])


def test_prefill_and_cached_decoding_match_pytorch(exported):
    model, _, session = exported
    ids = sentence_ids(tiny_tokenizer())
    if model.config.model_type == "gemma3_text":  # the window is exceeded, so it is tested
        assert ids.shape[1] > model.config.sliding_window
    reference, ours = torch_steps(model, ids), ort_steps(session, ids)
    diff = max_diff(reference, ours)
    print(f"{model.config.model_type} heads {HEADS.sizes(model)}: max |ORT - PyTorch| = {diff:.2e}")
    assert diff <= TOL
    assert float(np.abs(reference[-1]).max()) > 100 * TOL  # logits are not all near zero


def test_padded_batch_matches_pytorch(exported):
    """Two sequences, the shorter left-padded: every real position gives PyTorch's logits."""
    model, _, session = exported
    long = encode(tiny_tokenizer(), SENTENCE)
    short = encode(tiny_tokenizer(), "Jeder hat das Recht auf Leben.")
    pad = len(long) - len(short)
    assert pad > 0
    ids = torch.tensor([long, [0] * pad + short])
    mask = torch.tensor([[1] * len(long), [0] * pad + [1] * len(short)])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    reference = torch_steps(model, ids, attention_mask=mask, position_ids=positions)
    ours = ort_steps(session, ids, attention_mask=mask, position_ids=positions)
    real = mask.bool().numpy()
    diff = max(max_diff([reference[0][real]], [ours[0][real]]), max_diff(reference[1:], ours[1:]))
    print(f"{model.config.model_type} heads {HEADS.sizes(model)}, padded batch: max |ORT - PyTorch| = {diff:.2e}")
    assert diff <= TOL
    # and the padded row is what the short sentence gives alone
    alone = ort_steps(session, torch.tensor([short]), steps=0)[0][0]
    assert float(np.abs(alone - ours[0][1, pad:]).max()) <= TOL


def test_scorer_and_greedy_generation_match_pytorch(exported):
    model, _, session = exported
    ids = encode(tiny_tokenizer(), SENTENCE)
    ours, reference = ort_scorer(session)(ids), torch_scorer(model)(ids)
    assert ours == pytest.approx(reference, rel=1e-5) and reference > 0
    expected, context = [], torch.tensor([ids])
    with torch.no_grad():
        for _ in range(STEPS):
            token = int(model(context).logits[0, -1].argmax())
            expected.append(token)
            context = torch.cat([context, torch.tensor([[token]])], dim=1)
    assert generate(session, ids, STEPS) == expected


def test_sliding_window_matters_for_gemma():
    """The tiny Gemma's window (8) changes its logits on the test sentence: parity above is not by chance."""
    ids = sentence_ids(tiny_tokenizer())
    windowed = torch_steps(tiny_model("gemma3"), ids)
    unlimited = tiny_model("gemma3")  # the same weights (seeded), without the window
    unlimited.config.sliding_window = 4096
    assert max_diff(windowed, torch_steps(unlimited, ids)) > 100 * TOL


@pytest.mark.parametrize("family", FAMILIES)
def test_quantized_copies_run(family, tmp_path):
    """int8 and int4 copies of a pruned tiny model run in ONNX Runtime, as .onnx and as .ort."""
    model = HEADS.prune(tiny_model(family), KEEP)
    path = export_onnx(model, tiny_tokenizer(), tmp_path)
    ids = sentence_ids(tiny_tokenizer())
    full = ort_steps(open_session(path), ids, steps=2)
    spread = float(np.abs(full[0]).max())
    for kind in ("int8", "int4"):
        quantized = quantize_onnx(path, tmp_path / f"model_{kind}.onnx", kind)
        graph = _graph(quantized)
        ops = {n.op_type for n in graph.node}
        expected = {"MatMulInteger", "DynamicQuantizeLinear"} if kind == "int8" else {"MatMulNBits", "DequantizeLinear"}
        assert expected <= ops, ops
        weights = {t.name for t in graph.initializer}
        assert not [n.name for n in graph.node if n.op_type in ("MatMul", "Gather") and set(n.input) & weights
                    and _is_float_matrix(graph, set(n.input) & weights)]
        # every MatMul of a weight quantized, also one that reads it transposed or dequantized (the dynamo exporter's
        # output layer over a tied embedding: Transpose of the table the Gather reads)
        assert not [n.name for n in graph.node if n.op_type == "MatMul" and _constant(graph, n.input[1])]
        logits = ort_steps(open_session(quantized), ids, steps=2)
        diff = max_diff(full, logits)
        assert 0 < diff < 0.5 * spread, (kind, diff, spread)  # changed, yet still the same model
        ort_path = to_ort_format(quantized)
        assert ort_path.suffix == ".ort"
        assert max_diff(logits, ort_steps(open_session(ort_path), ids, steps=2)) <= TOL


def _graph(path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def _constant(graph, name: str) -> bool:
    """Whether a value is an initializer or computed from initializers only (a weight, however it is read)."""
    if name in {t.name for t in graph.initializer}:
        return True
    node = next((n for n in graph.node if name in n.output), None)
    return node is not None and all(_constant(graph, i) for i in node.input if i)


def _is_float_matrix(graph, names) -> bool:
    """Whether one of the named initializers is a float matrix (a weight left unquantized)."""
    from onnx import TensorProto

    return any(t.name in names and t.data_type == TensorProto.FLOAT and len(t.dims) == 2 for t in graph.initializer)


@pytest.mark.parametrize("family,dtype", [(f, torch.float16) for f in FAMILIES] + [("gemma3", torch.bfloat16)])
def test_a_model_resting_in_16_bits_exports_its_float32_values(family, dtype, tmp_path, monkeypatch):
    """The trace sees float32 stand-ins that are never written; the file holds each 16-bit weight upcast (a few rows
    at a time here), and the model keeps its 16-bit weights."""
    import onnx
    from onnx.numpy_helper import to_array

    from langprune.exporters import export_onnx as exporter
    from langprune.model.rest import rest

    monkeypatch.setattr(exporter, "UPCAST_BLOCK", 3 * 64 * 4)  # 3 rows of the tiny models' 64 columns
    model = rest(tiny_model(family), dtype)
    path = export_onnx(model, tiny_tokenizer(), tmp_path)
    stored = {i.name: to_array(i, str(tmp_path)) for i in onnx.load(str(path)).graph.initializer}
    names = {}  # a tied weight is stored once, under one of its names
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(parameter, []).append(f"model.{name}")
    for parameter, (name, *tied) in names.items():
        assert parameter.dtype == (dtype if parameter.ndim == 2 else torch.float32), name
        value = next(stored[n] for n in (name, *tied) if n in stored)
        assert np.array_equal(value, parameter.detach().float().numpy()), name
    ids = sentence_ids(tiny_tokenizer())
    assert max_diff(torch_steps(model, ids), ort_steps(open_session(path, threads=1), ids)) < TOL


def test_an_exported_models_weights_are_freed_with_it(tmp_path):
    """Nothing of the exporter's keeps the model's weights once export_onnx returns (onnxscript's optimizer, run by
    torch.onnx.export(optimize=True), kept the last graph it matched, and with it every parameter: the pruned Gemma's
    2.4 GB stayed through QUANT=auto's choice and verify)."""
    import gc
    import weakref

    model = tiny_model("qwen2")
    weights = [weakref.ref(p) for p in model.parameters()]
    export_onnx(model, tiny_tokenizer(), tmp_path)
    del model
    gc.collect()
    assert not [ref for ref in weights if ref() is not None]


def test_unknown_quantization_is_refused(tmp_path):
    with pytest.raises(ValueError, match="int8 or int4"):
        quantize_onnx(tmp_path / "model.onnx", tmp_path / "q.onnx", "int3")


def test_int4_weights_are_refused_for_a_float32_model(tmp_path):
    """A model not resting in 16 bits has no weight `matmuls_in_4_bits` quantizes: refused, never written in float32
    under int4's name."""
    with pytest.raises(ValueError, match="resting in 16 bits"):
        export_onnx(tiny_model("qwen2"), tiny_tokenizer(), tmp_path, weights="int4")
    with pytest.raises(ValueError, match="fp32 or int4"):
        export_onnx(tiny_model("qwen2"), tiny_tokenizer(), tmp_path, weights="int3")


@pytest.mark.real
def test_pruned_gemma_exports_quantizes_and_matches(gemma, tmp_path):
    model = copy.deepcopy(gemma.model)
    n_layers = len(HEADS.sizes(model))
    HEADS.prune(model, [[h for h in range(4) if h != layer % 4] for layer in range(n_layers)])
    path = export_onnx(model, gemma.tokenizer, tmp_path)
    session = open_session(path)
    assert [i.shape[1] for i in session.get_inputs() if i.name.endswith(".key")] == [1] * n_layers

    ids = sentence_ids(gemma.tokenizer)
    reference, ours = torch_steps(model, ids), ort_steps(session, ids)
    diff = max_diff(reference, ours)
    nll = ort_scorer(session)(ids[0].tolist())
    assert nll == pytest.approx(torch_scorer(model)(ids[0].tolist()), rel=1e-4)
    # the float32 file holds the tied table once; a quantized copy holds it once per reader (the Gather and the output
    # layer's MatMul each quantize their own), so a copy is about a quarter of the float32 bytes with the table twice
    table = model.get_input_embeddings().weight.numel() * 4
    del model, session
    sizes = {"float32": _size(path)}
    print(f"\npruned Gemma: max |ORT - PyTorch| = {diff:.2e} over prefill + {STEPS} steps; NLL {nll:.2f}")
    assert diff <= TOL

    for kind in ("int8", "int4"):
        quantized = quantize_onnx(path, tmp_path / f"model_{kind}.onnx", kind)
        sizes[kind] = _size(quantized)
        session = open_session(quantized)
        q_nll = ort_scorer(session)(ids[0].tolist())
        print(f"{kind}: NLL {q_nll:.2f}")
        assert nll < q_nll < 1.5 * nll, (kind, q_nll, nll)  # worse, yet the same model
        del session  # their .ort copies: test_quantized_copies_run (every family), the e2e's mobile check (this model)
    print("sizes (MB):", {k: round(v / 1e6) for k, v in sizes.items()})
    assert sizes["int8"] < 0.3 * (sizes["float32"] + table) and sizes["int4"] < sizes["int8"], table


def _size(onnx_path) -> int:
    """Bytes of an ONNX graph and its external data."""
    return sum(p.stat().st_size for p in onnx_path.parent.glob(onnx_path.name + "*"))


def _genai_greedy(folder, ids: list[int], n_new: int) -> list[int]:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + n_new, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(ids)
    out = []
    while not generator.is_done():
        generator.generate_next_token()
        out.append(int(generator.get_next_tokens()[0]))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_runtime_genai_generates_what_pytorch_does(family, tmp_path):
    """The exported folder loads in ONNX Runtime GenAI (its genai_config.json), pruned to one head per KV group."""
    model = HEADS.prune(tiny_model(family), [[0, 2]] * 3)
    path = export_onnx(model, tiny_tokenizer(), tmp_path)
    ids = encode(tiny_tokenizer(), SENTENCE)
    expected, context = [], list(ids)
    with torch.no_grad():
        for _ in range(STEPS):
            context.append(int(model(torch.tensor([context])).logits[0, -1].argmax()))
            expected.append(context[-1])
    assert _genai_greedy(path.parent, ids, STEPS) == expected == generate(open_session(path), ids, STEPS)


def test_no_genai_config_where_layers_keep_different_kv_heads(tmp_path, caplog):
    model = HEADS.prune(tiny_model("llama"), KEEP)  # layer 1 keeps one KV group of two
    with caplog.at_level("INFO", logger="langprune"):
        path = export_onnx(model, tiny_tokenizer(), tmp_path)
    assert path.exists() and not (tmp_path / "genai_config.json").exists()
    assert "ONNX Runtime GenAI takes one KV head count for all layers" in caplog.text


@pytest.mark.parametrize("family,dtype", [(f, torch.float16) for f in FAMILIES] + [("gemma3", torch.bfloat16)])
def test_int4_weights_from_a_resting_model_are_onnx_runtimes_own(family, dtype, tmp_path, monkeypatch):
    """export_onnx(weights="int4") writes each Linear as the MatMulNBits node and blocks ONNX Runtime's quantizer makes
    from the float32 file (a few rows at a time here, a 48-wide FFN padded to two blocks), tensor for tensor, and
    its logits are those of that quantizer's model; the embedding's table stays in its 16 bits."""
    import onnx
    from onnx.numpy_helper import to_array
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from langprune.exporters import export_onnx as exporter
    from langprune.exporters.export_onnx import untied_output_layer
    from langprune.model.parts import NEURONS
    from langprune.model.rest import rest

    monkeypatch.setattr(exporter, "UPCAST_BLOCK", 3 * 64 * 4)  # 3 rows of the tiny models' 64 columns
    model = rest(NEURONS.prune(tiny_model(family), [range(48)] * 3), dtype)
    path = export_onnx(model, tiny_tokenizer(), tmp_path / "int4", weights="int4")
    written = onnx.load(str(path))
    stored = {t.name: to_array(t, str(path.parent)) for t in written.graph.initializer}
    float32 = export_onnx(model, tiny_tokenizer(), tmp_path / "fp32")
    quantizer = MatMulNBitsQuantizer(str(untied_output_layer(float32, tmp_path / "untied" / "model.onnx")), bits=4,
                                     block_size=32, is_symmetric=False)
    quantizer.process()
    expected = {t.name.replace(".transposed", ""): to_array(t) for t in quantizer.model.model.graph.initializer
                if t.name.endswith(("_Q4", "_scales", "_zero_points"))}
    assert len(expected) == 3 * (7 * 3 + 1)  # every Linear and the output layer
    for name, blocks in expected.items():
        assert stored[name].shape == blocks.shape and np.array_equal(stored[name], blocks), name
    assert not [n.name for n in written.graph.node if n.op_type == "MatMul" and _constant(written.graph, n.input[1])]
    read = {name for node in written.graph.node for name in node.input}
    assert not set(stored) - read  # no float32 weight left behind unread
    (table,) = (n.input[0] for n in written.graph.node if n.op_type == "Gather" and n.input[0] in stored)
    assert str(stored[table].dtype) == str(dtype).removeprefix("torch.")  # a bfloat16 checkpoint's too
    onnx.save_model(quantizer.model.model, str(tmp_path / "quantizer.onnx"))
    ids = sentence_ids(tiny_tokenizer())
    assert max_diff(ort_steps(open_session(path), ids),
                    ort_steps(open_session(tmp_path / "quantizer.onnx"), ids)) == 0
