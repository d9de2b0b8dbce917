import json

import numpy as np
import pytest
import torch

from toolchain.errors import UserError
from toolchain.model.load import load


def test_tiny_model_directory_loads_offline(tiny_dir):
    loaded = load(tiny_dir)
    assert loaded.family.name == tiny_dir.name
    assert loaded.model.dtype == torch.float32
    ids = loaded.tokenizer("Alle Menschen sind frei", return_tensors="pt")["input_ids"]
    logits = loaded.model(ids).logits
    assert logits.shape == (1, ids.shape[1], 320) and torch.isfinite(logits).all()
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
