"""GGUF export: llama.cpp loads what we write and computes what PyTorch computes.

Tiny random models get sharpened attention (scaled q/k) and larger logits, so that a wrong rope
layout, head mapping or norm convention shows in the logits. Their vocabulary is the tiny
byte-level BPE of tests/tiny.py, written from the Hugging Face tokenizer, or SmolLM2's, copied
from its GGUF.
"""

import copy
import math

import numpy as np
import pytest
import torch

from langprune.errors import UserError
from langprune.exporters.export_gguf import export_gguf
from langprune.exporters.quantize import quantize_gguf
from langprune.measure.llamacpp import open_gguf, tokenize, vocab_only
from langprune.model.parts import HEADS
from tests.tiny import TINY, tiny_model, tiny_tokenizer

TEXT = "All human beings are born free and equal in dignity and rights. They are endowed with reason and conscience"
# tiny models: 3 layers of 4 query heads in 2 KV groups
NON_UNIFORM = [[0, 3], [0, 1], [0, 1, 2, 3]]  # heads [2, 2, 4], KV heads [2, 1, 2]
UNIFORM = [[0, 2], [1, 3], [0, 3]]  # 2 heads, 2 KV heads everywhere


def sharpen(model):
    """Scale q/k (peaky attention, so rope and head order matter) and the output layer."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
            layer.self_attn.k_proj.weight.mul_(4.0)
        model.get_output_embeddings().weight.mul_(8.0)
    return model


def shrink_ffn(model, layer: int, width: int):
    """Keep the first `width` FFN channels of one layer (per-layer FFN widths, as deci allows)."""
    mlp = model.model.layers[layer].mlp
    with torch.no_grad():
        for proj in (mlp.gate_proj, mlp.up_proj):
            proj.weight = torch.nn.Parameter(proj.weight[:width].clone())
            proj.out_features = width
        mlp.down_proj.weight = torch.nn.Parameter(mlp.down_proj.weight[:, :width].clone())
        mlp.down_proj.in_features = width
    return model


def tiny_ids(tokenizer=None):
    tokenizer = tokenizer or tiny_tokenizer()
    return [tokenizer.bos_token_id] + tokenizer(TEXT, add_special_tokens=False)["input_ids"]


def token_nll(logits: np.ndarray, ids: list[int]) -> np.ndarray:
    logits = np.asarray(logits[: len(ids) - 1], dtype=np.float64)
    top = logits.max(-1, keepdims=True)
    logz = top[:, 0] + np.log(np.exp(logits - top).sum(-1))
    return logz - logits[np.arange(len(ids) - 1), ids[1:]]


def compare(path, model, ids) -> tuple[float, float]:
    """(relative perplexity gap, largest logit difference / logit std) of llama.cpp vs PyTorch."""
    llm = open_gguf(path, n_ctx=128)
    llm.eval(ids)
    theirs = np.array(llm.scores[: len(ids)])
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0].numpy()
    gap = math.exp(token_nll(theirs, ids).mean() - token_nll(ours, ids).mean()) - 1
    return gap, float(np.abs(theirs - ours).max() / ours.std())


def metadata(path) -> dict:
    from gguf import GGUFReader

    return {k: f.contents() for k, f in GGUFReader(str(path)).fields.items() if not k.startswith("GGUF.")}


def tensor_types(path) -> dict[str, str]:
    from gguf import GGUFReader

    return {t.name: t.tensor_type.name for t in GGUFReader(str(path)).tensors}


def test_per_layer_heads_export_as_deci_and_match_torch(tmp_path):
    model = sharpen(HEADS.prune(tiny_model("llama"), NON_UNIFORM))
    shrink_ffn(model, 1, 64)
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / "deci.gguf")

    meta = metadata(out)
    assert meta["general.architecture"] == "deci"
    assert meta["deci.attention.head_count"] == [2, 2, 4]
    assert meta["deci.attention.head_count_kv"] == [2, 1, 2]
    assert meta["deci.feed_forward_length"] == [96, 64, 96]
    assert meta["deci.attention.key_length"] == meta["deci.attention.value_length"] == 16
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "gpt-2"
    types = tensor_types(out)
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert "output.weight" in types  # untied output layer

    ids = tiny_ids()
    assert tokenize(vocab_only(out), TEXT, add_bos=False) == ids[1:]  # llama.cpp reads our tokenizer
    gap, logit_diff = compare(out, model, ids)
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


@pytest.mark.parametrize("rope_scaling", [None, {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64}])
def test_uniform_llama_exports_as_llama_and_matches_torch(tmp_path, rope_scaling):
    model = tiny_model("llama")
    model.config.rope_scaling = rope_scaling
    if rope_scaling:  # rebuild the rotary embedding from the changed config
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        model.model.rotary_emb = LlamaRotaryEmbedding(model.config)
    model = sharpen(HEADS.prune(model, UNIFORM))
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / "llama.gguf")

    meta = metadata(out)
    assert meta["general.architecture"] == "llama"
    assert meta["llama.attention.head_count"] == 2 and meta["llama.attention.head_count_kv"] == 2
    assert ("rope_freqs.weight" in tensor_types(out)) == bool(rope_scaling)
    gap, logit_diff = compare(out, model, tiny_ids())
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)
    # the same model also loads as deci when asked
    gap, logit_diff = compare(export_gguf(model, None, tiny_tokenizer(), tmp_path / "d.gguf", arch="deci"),
                              model, tiny_ids())
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


def test_parity_check_catches_a_wrong_rope_layout(tmp_path, monkeypatch):
    import langprune.exporters.export_gguf as export

    model = sharpen(HEADS.prune(tiny_model("llama"), NON_UNIFORM))
    monkeypatch.setattr(export, "interleave_rope_rows", lambda weight, head_dim: weight)
    _, logit_diff = compare(export_gguf(model, None, tiny_tokenizer(), tmp_path / "bad.gguf"), model, tiny_ids())
    assert logit_diff > 0.2


def tiny_gemma6():
    """A tiny Gemma 3 with the layer pattern llama.cpp's gemma3 graph assumes (every 6th global)."""
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    config = Gemma3TextConfig(**{**TINY, "num_hidden_layers": 6}, head_dim=16, query_pre_attn_scalar=16,
                              sliding_window=6)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
        model.model.embed_tokens.weight.mul_(8.0)  # tied: also sharpens the logits
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(4.0)
            layer.self_attn.k_proj.weight.mul_(4.0)
    return model


def test_uniform_gemma_exports_as_gemma3_and_matches_torch(tmp_path):
    model = HEADS.prune(tiny_gemma6(), [[0, 3], [1, 2], [0, 2], [1, 3], [0, 3], [1, 2]])
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / "gemma3.gguf")
    meta = metadata(out)
    assert meta["general.architecture"] == "gemma3"
    assert meta["gemma3.attention.head_count"] == 2 and meta["gemma3.attention.sliding_window"] == 6
    assert "output.weight" not in tensor_types(out)  # tied
    ids = tiny_ids()
    assert len(ids) > 6 * 4  # long enough for the sliding window to matter
    gap, logit_diff = compare(out, model, ids)
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


def test_non_uniform_gemma_is_refused(tmp_path):
    model = HEADS.prune(tiny_model("gemma3"), NON_UNIFORM)
    with pytest.raises(UserError, match=r"query heads \[2, 2, 4\].*takes one head count"):
        export_gguf(model, None, tiny_tokenizer(), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()
    with pytest.raises(UserError, match="not 'deci'"):
        export_gguf(model, None, tiny_tokenizer(), tmp_path / "x.gguf", arch="deci")


@pytest.mark.parametrize("family, keep", [("qwen3", UNIFORM), ("qwen2", None)])
def test_qwen_families_export_uniform(tmp_path, family, keep):
    model = tiny_model(family)
    model = sharpen(HEADS.prune(model, keep) if keep else model)
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / f"{family}.gguf")
    assert metadata(out)["general.architecture"] == family
    gap, logit_diff = compare(out, model, tiny_ids())
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


def test_pruned_qwen2_exports_as_deci_and_matches_torch(tmp_path):
    """llama.cpp's qwen2 graph needs all query heads; a pruned Qwen2 (with q/k/v biases) goes to deci."""
    model = sharpen(HEADS.prune(tiny_model("qwen2"), UNIFORM))
    out = export_gguf(model, None, tiny_tokenizer(), tmp_path / "qwen2.gguf")
    assert metadata(out)["general.architecture"] == "deci"
    gap, logit_diff = compare(out, model, tiny_ids())
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


def test_source_gguf_metadata_is_copied(tmp_path):
    """A tiny Llama with SmolLM2's vocabulary: the tokenizer comes from SmolLM2's GGUF, verbatim."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from langprune.model.recipes import load_recipe

    source = load_recipe("smollm2-135m").source_path()
    torch.manual_seed(0)
    config = LlamaConfig(**{**TINY, "vocab_size": 49152}, head_dim=16, tie_word_embeddings=True)
    model = sharpen(HEADS.prune(AutoModelForCausalLM.from_config(config).eval(), NON_UNIFORM))
    out = export_gguf(model, source, None, tmp_path / "smol-deci.gguf")

    ours, theirs = metadata(out), metadata(source)
    tokenizer_keys = [k for k in theirs if k.startswith("tokenizer.")]
    assert "tokenizer.chat_template" in tokenizer_keys
    assert all(ours[k] == theirs[k] for k in tokenizer_keys)
    assert ours["general.name"] == theirs["general.name"] and ours["general.license"] == theirs["general.license"]
    assert ours["general.architecture"] == "deci" and not any(k.startswith("llama.") for k in ours)
    assert ours["deci.vocab_size"] == 49152 and ours["general.file_type"] == 1

    text = "Héllo wörld, 12345 times!\n  And Привет."
    assert tokenize(vocab_only(out), text) == tokenize(vocab_only(source), text)
    ids = tokenize(vocab_only(source), TEXT, add_bos=False)
    gap, logit_diff = compare(out, model, [theirs["tokenizer.ggml.bos_token_id"]] + ids)
    assert abs(gap) < 0.01 and logit_diff < 0.02, (gap, logit_diff)


def test_hf_tokenizer_of_a_real_vocabulary(tmp_path):
    """SmolLM2's vocabulary as a Hugging Face tokenizer, written by us: llama.cpp tokenizes as on the original."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from langprune.model.recipes import load_recipe
    from langprune.model.tokenizer import tokenizer_from_gguf

    source = load_recipe("smollm2-135m").source_path()
    config = LlamaConfig(**{**TINY, "vocab_size": 49152}, head_dim=16)
    out = export_gguf(AutoModelForCausalLM.from_config(config), None, tokenizer_from_gguf(source), tmp_path / "t.gguf")
    assert metadata(out)["tokenizer.ggml.pre"] == "smollm"
    text = "Héllo wörld, it's 12345 times x2!\n\n  And Привет, 世界. <|im_start|>"
    assert tokenize(vocab_only(out), text) == tokenize(vocab_only(source), text)


def test_source_vocabulary_must_fit(tmp_path):
    from langprune.model.recipes import load_recipe

    with pytest.raises(UserError, match="49152 tokens"):
        export_gguf(tiny_model("llama"), load_recipe("smollm2-135m").source_path(), None, tmp_path / "x.gguf")


def test_unsupported_tokenizer_is_refused(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="[UNK]")
    with pytest.raises(UserError, match="WordLevel tokenizer .* not supported"):
        export_gguf(tiny_model("llama"), None, tokenizer, tmp_path / "x.gguf")


def test_quantize_odd_shapes(tmp_path):
    """3 heads of 16 make 48-wide rows: llama.cpp falls back (F16 where 32-blocks do not fit)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(**{**TINY, "num_key_value_heads": 4}, head_dim=16)
    model = sharpen(HEADS.prune(AutoModelForCausalLM.from_config(config).eval(), [[0, 1, 2], [0, 1], [0, 1, 2, 3]]))
    f16 = export_gguf(model, None, tiny_tokenizer(), tmp_path / "odd.gguf")
    ids = tiny_ids()
    for kind, tolerance in (("Q8_0", 0.02), ("Q4_K_M", 0.1)):
        out = quantize_gguf(f16, tmp_path / f"odd-{kind}.gguf", kind)
        types = tensor_types(out)
        assert types["blk.0.attn_output.weight"] == "F16"  # 48 columns: no quantized block fits
        assert types["blk.1.attn_output.weight"] == ("Q8_0" if kind == "Q8_0" else "Q5_0")  # 32 columns
        assert metadata(out)["general.architecture"] == "deci"
        gap, _ = compare(out, model, ids)
        assert abs(gap) < tolerance, (kind, gap)
    assert out.stat().st_size < f16.stat().st_size


def test_quantize_refuses_unknown_kinds(tmp_path):
    with pytest.raises(UserError, match="Q8_0, Q6_K, Q5_K_M, Q4_K_M"):
        quantize_gguf(tmp_path / "a.gguf", tmp_path / "b.gguf", "Q2_K")
    with pytest.raises(UserError, match="output tensor type 'Q2_K' is not supported"):
        quantize_gguf(tmp_path / "a.gguf", tmp_path / "b.gguf", "Q4_K_M", output_type="Q2_K")


def test_quantize_failure_is_a_user_error(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(UserError, match="could not quantize broken.gguf to Q8_0:\n.*bad GGUF version"):  # its log
        quantize_gguf(broken, tmp_path / "out.gguf", "Q8_0")
    assert not (tmp_path / "out.gguf").exists()


# --- the real default model -----------------------------------------------------------------

LANGS = ["en", "de", "fr", "ru", "zh", "ar"]
QUANT_LANGS = ["en", "ru", "zh"]
PROMPTS = [
    "The Universal Declaration of Human Rights says that",
    "Alle Menschen sind frei und gleich an",
    "Tout individu a droit à la vie, à la liberté",
    "Все люди рождаются свободными и равными",
    "人人生而自由,在尊严和权利上一律平等。",
    "يولد جميع الناس أحراراً متساوين في",
]


@torch.inference_mode()
def torch_greedy(model, ids: list[int], steps: int) -> list[int]:
    result = model(torch.tensor([ids]), use_cache=True)
    out = []
    for _ in range(steps):
        out.append(int(result.logits[0, -1].argmax()))
        result = model(torch.tensor([out[-1:]]), past_key_values=result.past_key_values, use_cache=True)
    return out


def llama_greedy(llm, ids: list[int], steps: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out = []
    for _ in range(steps):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval(out[-1:])
    return out


def perplexity_shift(scores, reference) -> float:
    """Relative change of the perplexity over all languages together (token-weighted)."""
    nll = sum(s.nll for s in scores.values()) / sum(s.tokens for s in scores.values())
    ref = sum(reference[lang].nll for lang in scores) / sum(reference[lang].tokens for lang in scores)
    return math.exp(nll - ref) - 1


@pytest.mark.real
def test_pruned_gemma_gguf_matches_torch_and_quantizes(gemma, tmp_path):
    from langprune.data.corpus import encode, udhr_corpus
    from langprune.data.evaluate import score_languages, torch_scorer
    from langprune.measure.llamacpp import llama_scorer

    keep = [[h for h in range(4) if h != layer % 4] for layer in range(18)]
    model = HEADS.prune(copy.deepcopy(gemma.model), keep)
    f16 = export_gguf(model, gemma.source, gemma.tokenizer, tmp_path / "pruned-f16.gguf")
    meta = metadata(f16)
    assert meta["general.architecture"] == "gemma3"
    assert meta["gemma3.attention.head_count"] == 3 and meta["gemma3.attention.head_count_kv"] == 1
    assert meta["tokenizer.ggml.tokens"][:5] == ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]

    corpus = udhr_corpus(LANGS)
    ours = score_languages(torch_scorer(model), gemma.tokenizer, corpus, "evaluation")
    llm = open_gguf(f16)
    theirs = score_languages(llama_scorer(llm), gemma.tokenizer, corpus, "evaluation")
    gaps = {lang: theirs[lang].perplexity / ours[lang].perplexity - 1 for lang in LANGS}
    print("\nperplexity torch vs llama.cpp F16:",
          {lang: f"{ours[lang].perplexity:.2f} vs {theirs[lang].perplexity:.2f} ({gaps[lang]:+.3%})" for lang in LANGS})
    assert all(ours[lang].tokens == theirs[lang].tokens > 200 for lang in LANGS)
    assert all(abs(gap) < 0.01 for gap in gaps.values()), gaps

    same = 0
    for prompt in PROMPTS:
        ids = encode(gemma.tokenizer, prompt)
        a, b = torch_greedy(model, ids, 16), llama_greedy(llm, ids, 16)
        same += a == b
        print(f"{prompt!r}: torch {gemma.tokenizer.decode(a)!r} | llama.cpp {gemma.tokenizer.decode(b)!r}")
    print(f"greedy continuations identical: {same}/{len(PROMPTS)}")
    assert same >= len(PROMPTS) - 1
    del llm

    sizes = {"F16": f16.stat().st_size}
    for kind, bound in (("Q8_0", 0.05), ("Q4_K_M", 0.15)):
        quantized = quantize_gguf(f16, tmp_path / f"pruned-{kind}.gguf", kind)
        sizes[kind] = quantized.stat().st_size
        scores = score_languages(llama_scorer(open_gguf(quantized)), gemma.tokenizer, corpus, "evaluation", QUANT_LANGS)
        shifts = {lang: scores[lang].perplexity / theirs[lang].perplexity - 1 for lang in QUANT_LANGS}
        overall = perplexity_shift(scores, theirs)
        print(f"{kind}: perplexity shift vs F16 {overall:+.2%} overall,",
              {lang: f"{scores[lang].perplexity:.2f} ({shift:+.2%})" for lang, shift in shifts.items()})
        assert abs(overall) < bound and all(abs(s) < 2 * bound for s in shifts.values()), (kind, shifts)
    print("file sizes (MB):", {kind: round(size / 1e6, 1) for kind, size in sizes.items()})
    assert sizes["F16"] > sizes["Q8_0"] > sizes["Q4_K_M"]


@pytest.mark.parametrize("kind", ["Q6_K", "Q5_K_M", "Q3_K_M", "IQ4_NL"])
def test_every_file_type_users_pick_quantizes_and_runs(tmp_path, kind):
    """The file types beside Q8_0, Q4_K_M and Q4_0: smaller than F16, and llama.cpp's logits near torch's."""
    model = sharpen(tiny_model("llama"))
    f16 = export_gguf(model, None, tiny_tokenizer(), tmp_path / "tiny.gguf")
    out = quantize_gguf(f16, tmp_path / f"tiny-{kind}.gguf", kind)
    assert out.stat().st_size < f16.stat().st_size
    gap, _ = compare(out, model, tiny_ids())
    assert abs(gap) < 0.3, gap


@pytest.mark.parametrize("tied", [False, True])
def test_the_output_layer_takes_its_own_tensor_type(tmp_path, tied):
    """`output_type` sets the output layer's type, also where it is the tied embedding table (Gemma 3)."""
    model = tiny_gemma6() if tied else sharpen(tiny_model("llama"))
    name = "token_embd.weight" if tied else "output.weight"
    f16 = export_gguf(model, None, tiny_tokenizer(), tmp_path / "tiny.gguf")
    default = quantize_gguf(f16, tmp_path / "default.gguf", "Q4_K_M")
    smaller = quantize_gguf(f16, tmp_path / "output-q4_0.gguf", "Q4_K_M", output_type="Q4_0")
    assert tensor_types(default)[name] != "Q4_0" and tensor_types(smaller)[name] == "Q4_0"
    assert smaller.stat().st_size < default.stat().st_size
    assert {k: v for k, v in tensor_types(smaller).items() if k != name} == \
        {k: v for k, v in tensor_types(default).items() if k != name}  # only the output layer changed
    with pytest.raises(UserError, match="the output layer's rows do not fit Q6_K's blocks of 256"):  # rows of 64
        quantize_gguf(f16, tmp_path / "output-q6_k.gguf", "Q4_K_M", output_type="Q6_K")  # llama.cpp: a crash
    assert not (tmp_path / "output-q6_k.gguf").exists()


@pytest.mark.parametrize("tied", [False, True])
def test_the_importance_matrix_weighs_every_matrix_a_token_multiplies(tmp_path, tied):
    """`importance_matrix`: for each matrix of the F16 file a token multiplies (the output layer too where it is the
    tied embedding table, which llama-imatrix skips), each input column's sum of squares over the tokens, and their
    count; llama-quantize reads it: the same tensor types as without it, other 4-bit values (the output layer's too)."""
    from gguf import GGUFReader

    from langprune.exporters.imatrix import importance_matrix
    from langprune.model.gguf_file import read_header

    model, tokenizer = (tiny_gemma6() if tied else sharpen(tiny_model("llama"))), tiny_tokenizer()
    f16 = export_gguf(model, None, tokenizer, tmp_path / "tiny.gguf")
    chunks = [tiny_ids(), tiny_ids()[:9]]
    matrix = importance_matrix(model, f16, chunks, tmp_path / "imatrix.gguf", "two sentences")
    entries = {t.name: np.array(t.data) for t in GGUFReader(str(matrix)).tensors}
    output = "token_embd.weight" if tied else "output.weight"
    multiplied = {t.name for t in read_header(f16).tensors if len(t.shape) == 2} - ({"token_embd.weight"} - {output})
    assert {name.removesuffix(".in_sum2") for name in entries if name.endswith(".in_sum2")} == multiplied
    assert all(entries[f"{name}.counts"].tolist() == [len(chunks[0]) + len(chunks[1])] for name in multiplied)
    with torch.no_grad():  # the output layer's input: the final norm's output
        final = torch.cat([model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0]
                           for ids in chunks])
    assert np.allclose(entries[f"{output}.in_sum2"], (final.double() ** 2).sum(0).numpy(), rtol=1e-4)
    plain = quantize_gguf(f16, tmp_path / "plain.gguf", "Q4_0", output_type="Q4_0")  # else Q8_0, which ignores it
    weighed = quantize_gguf(f16, tmp_path / "weighed.gguf", "Q4_0", output_type="Q4_0", imatrix=matrix)
    assert tensor_types(weighed) == tensor_types(plain)
    data = {path: {t.name: bytes(t.data) for t in GGUFReader(str(path)).tensors} for path in (plain, weighed)}
    assert {name for name in multiplied if data[plain][name] != data[weighed][name]} == multiplied
    gap, _ = compare(weighed, model, tiny_ids())
    assert abs(gap) < 0.3, gap


def test_the_gguf_writer_converts_one_tensor_at_a_time(tmp_path):
    """Memory per layer stays flat: a model 9 layers deeper costs the writer under one layer's F16 bytes more (numpy's
    allocations, as tracemalloc follows them; holding every converted tensor until the end cost 9 layers' bytes).
    Layers wider than the tiny models' make the weights outweigh the names gguf-py maps for every layer."""
    import tracemalloc

    from transformers import AutoModelForCausalLM

    from tests.tiny import tiny_config

    peaks, layer_bytes = [], 0
    for depth in (3, 12):
        config = tiny_config("llama")
        config.update(dict(num_hidden_layers=depth, hidden_size=256, intermediate_size=2048))
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        layer_bytes = sum(p.numel() * 2 for p in model.model.layers[0].parameters() if p.ndim >= 2)
        tracemalloc.start()
        export_gguf(model, None, tiny_tokenizer(), tmp_path / f"depth{depth}.gguf")
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] - peaks[0] < layer_bytes, (peaks, layer_bytes)
