import json

import numpy as np
import pytest
import torch

from langprune.errors import UserError
from langprune.model.load import load
from tests.tiny import TINY


def test_tiny_model_directory_loads_offline(tiny_dir):
    loaded = load(tiny_dir)
    assert loaded.family.name == tiny_dir.name
    assert loaded.model.dtype == torch.float16  # its matrices rest in 16 bits (`rest.py`) and compute in float32
    ids = loaded.tokenizer("Alle Menschen sind frei", return_tensors="pt")["input_ids"]
    logits = loaded.model(ids).logits
    assert logits.dtype == torch.float32 and logits.shape == (1, ids.shape[1], TINY["vocab_size"])
    assert torch.isfinite(logits).all()
    assert load(tiny_dir).fingerprint == loaded.fingerprint


def test_unsupported_architecture_is_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="model type 'gpt2' is not supported.*llama, qwen2, qwen3, gemma3_text"):
        load(tmp_path)


def test_directory_without_config_or_weights(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="no weights"):
        load(tmp_path)


def test_missing_paths_and_hub_ids(tmp_path):
    with pytest.raises(UserError, match="neither a recipe .*gemma3-270m.* nor an existing file"):
        load(tmp_path / "nothing.gguf")
    with pytest.raises(UserError, match="looks like a model hub id.*works offline"):
        load("google/gemma-3-270m")
    with pytest.raises(UserError, match="neither a recipe"):
        load("gemma4")


def test_gguf_of_unsupported_architecture(tmp_path):
    from gguf import GGUFWriter

    path = tmp_path / "bert.gguf"
    writer = GGUFWriter(str(path), "bert")
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="GGUF architecture 'bert' is not supported"):
        load(path)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF not really")
    with pytest.raises(UserError, match="not a readable GGUF"):
        load(broken)


def test_a_recipe_of_parts_is_joined_once_and_checked_against_its_hash(tmp_path, monkeypatch):
    """Chunks shipped in several packages (as the Qwen2.5 GGUF is on PyPI): joined in order into the cache; a wrong
    hash is one line and leaves nothing there."""
    import hashlib

    from langprune.model.families import FAMILIES
    from langprune.model.recipes import Recipe

    for i, data in enumerate((b"GGUF first ", b"second")):
        (tmp_path / "site" / f"chunk_pkg{i}" / "data").mkdir(parents=True)
        (tmp_path / "site" / f"chunk_pkg{i}" / "__init__.py").write_text("")
        (tmp_path / "site" / f"chunk_pkg{i}" / "data" / "part.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path / "cache"))
    parts = ("chunk_pkg0/data/part.bin", "chunk_pkg1/data/part.bin")
    recipe = Recipe("chunks", FAMILIES["qwen2"], file="m.gguf", parts=parts, sha256="0" * 64)
    with pytest.raises(UserError, match="the joined parts' sha256 is .*, not 0000"):
        recipe.source_path()
    assert not (tmp_path / "cache").exists()  # nothing left, not even the folders made for it
    good = Recipe("chunks", FAMILIES["qwen2"], file="m.gguf", parts=parts,
                  sha256=hashlib.sha256(b"GGUF first second").hexdigest())
    assert good.source_path().read_bytes() == b"GGUF first second"


def test_the_vocabulary_tables_are_dequantized_a_block_of_rows_at_a_time(tmp_path, monkeypatch):
    """Qwen's tables in 1,000-row blocks, written into 1 MB files: every tensor as the whole tensor's dequantization
    gives it, in float16."""
    from gguf import GGUFReader, dequantize
    from safetensors.torch import load_file
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, GGUFTensor, TensorProcessor

    from langprune.model import load as loading
    from tests.shaped_gguf import Shapes, write_shaped

    path = write_shaped(tmp_path / "shaped.gguf", 1, "Q4_K_M", Shapes(hidden=256, ffn=512, heads=4, kv_heads=2,
                                                                       head_dim=64))
    monkeypatch.setattr(loading, "DEQUANTIZE_BLOCK", 1000 * 256 * 4)
    monkeypatch.setattr(loading, "SHARD_BYTES", 1 << 20)

    def checkpoint(folder):
        files = sorted(folder.glob("*.safetensors"))
        tensors = {(name, file.name): tensor for file in files for name, tensor in load_file(file).items()}
        index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        assert len(files) > 1 and set(index.items()) == set(tensors)  # the index names each tensor's file
        return {name: tensor for (name, _), tensor in tensors.items()}

    loading._dequantize_to(path, tmp_path / "hf")
    stored = checkpoint(tmp_path / "hf")
    whole = {t.name: dequantize(t.data, t.tensor_type) for t in GGUFReader(path).tensors}
    for gguf_name, name in (("token_embd.weight", "model.embed_tokens.weight"), ("output.weight", "lm_head.weight"),
                            ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight")):
        expected = torch.from_numpy(whole[gguf_name]).to(torch.float16)
        assert stored[name].shape == expected.shape and torch.equal(stored[name], expected), name

    class Doubling(TensorProcessor):  # an architecture whose processing changes a table: it is processed whole
        def process(self, weights, name, **kwargs):
            return GGUFTensor(weights * 2 if name == "token_embd.weight" else weights, name, {})

    monkeypatch.setitem(TENSOR_PROCESSORS, "qwen2", Doubling)
    loading._dequantize_to(path, tmp_path / "doubled")
    doubled = checkpoint(tmp_path / "doubled")["model.embed_tokens.weight"]
    assert torch.equal(doubled, torch.from_numpy(whole["token_embd.weight"] * 2).to(torch.float16))
