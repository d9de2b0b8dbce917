"""The fast GGUF header reader reads what gguf-py's GGUFReader reads: every key, every tensor."""

import pytest
from gguf import GGUFReader

from langprune.errors import UserError
from langprune.exporters.export_gguf import export_gguf
from langprune.exporters.quantize import quantize_gguf
from langprune.model.gguf_file import read_header
from langprune.model.recipes import load_recipe
from tests.tiny import tiny_model, tiny_tokenizer


def assert_same_as_gguf_py(path):
    header, reference = read_header(path), GGUFReader(str(path))
    keys = [k for k in reference.fields if not k.startswith("GGUF.")]
    assert list(header.fields) == keys
    for key in keys:
        assert header.get(key) == reference.fields[key].contents(), key
        assert header.fields[key][1] == reference.fields[key].types[0], key
    assert [(t.name, t.shape, t.type, t.n_bytes) for t in header.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type, int(t.n_bytes)) for t in reference.tensors]
    return header


def test_tiny_exports_and_a_real_vocabulary(tmp_path):
    f16 = export_gguf(tiny_model("llama"), None, tiny_tokenizer(), tmp_path / "tiny-F16.gguf")
    header = assert_same_as_gguf_py(f16)
    assert header.get("general.architecture") == "llama" and header.get("no.such.key", 7) == 7
    assert {t.type.name for t in header.tensors} == {"F16", "F32"}
    assert_same_as_gguf_py(quantize_gguf(f16, tmp_path / "tiny-Q8_0.gguf", "Q8_0"))
    smol = assert_same_as_gguf_py(load_recipe("smollm2-135m").source_path())  # 49,152 tokens and merges
    assert len(smol.get("tokenizer.ggml.tokens")) == 49152 and smol.get("tokenizer.ggml.merges")


def test_damaged_files_are_user_errors(tmp_path):
    good = export_gguf(tiny_model("llama"), None, tiny_tokenizer(), tmp_path / "good.gguf").read_bytes()
    for name, data in (("empty", b""), ("magic", b"GGML" + good[4:]), ("truncated", good[:2000])):
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        with pytest.raises(UserError, match="not a readable GGUF"):
            read_header(path)


@pytest.mark.real
def test_gemma_gguf(gemma):
    header = assert_same_as_gguf_py(gemma.gguf)  # 262,144 tokens: 10 s in GGUFReader
    assert len(header.get("tokenizer.ggml.tokens")) == 262144
