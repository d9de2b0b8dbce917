"""The shaped random GGUF (`tests/shaped_gguf.py`) that stands in for a 7B: llama.cpp and langprune read it as the
shapes it was given."""

from langprune.measure.llamacpp import open_gguf
from langprune.model.gguf_file import read_header
from langprune.model.load import check_source
from tests.shaped_gguf import QWEN2_7B, Shapes, tensors, write_shaped


def test_a_shaped_gguf_has_its_shapes_and_the_qwen_tokenizer(tmp_path):
    shapes = Shapes(hidden=256, ffn=512, heads=4, kv_heads=2, head_dim=64)
    path = write_shaped(tmp_path / "shaped.gguf", 3, "Q4_K_M", shapes)
    assert [p.name for p in tmp_path.iterdir()] == ["shaped.gguf"]  # the F16 file it was quantized from is gone
    header = read_header(path)
    assert header.get("qwen2.block_count") == 3 and header.get("qwen2.embedding_length") == 256
    assert header.get("general.file_type") == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    _, _, family = check_source(path)
    llm = open_gguf(path, n_ctx=64, logits_all=True, threads=2)
    assert family.name == "qwen2" and llm.n_vocab() == shapes.vocab
    assert llm.tokenize(b"Hello world") == [9707, 1879]  # Qwen2.5's ids
    llm.eval(llm.tokenize(b"Hello world"))
    assert llm.scores[:2].shape == (2, shapes.vocab) and abs(llm.scores[:2]).max() > 0


def test_the_default_shapes_are_qwen2_5_7b():
    shaped = tensors(QWEN2_7B, 28)
    parameters = sum(rows * (cols[0] if cols else 1) for rows, *cols in shaped.values())
    assert parameters == 7_615_616_512  # llama-bench reads the 28-layer file as "7.62 B"
    assert shaped["blk.27.ffn_down.weight"] == (3584, 18944) and shaped["output.weight"] == (152064, 3584)
