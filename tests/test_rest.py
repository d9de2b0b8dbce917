"""Weights at rest in 16 bits, computed in float32 (`langprune.model.rest`)."""

import pytest
import torch

from langprune.errors import UserError
from langprune.model.families import FAMILIES
from langprune.model.load import load
from langprune.model.parts import HEADS
from langprune.model.rest import RestingLinear, as_float32, rest
from tests.tiny import save_tiny, tiny_model


def _rounded_float32(family: str, dtype: torch.dtype):
    """The tiny model in float32 with its matrices rounded to `dtype`: what its resting copy must compute."""
    model = tiny_model(family)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim >= 2:
                p.copy_(p.to(dtype).float())
    return model


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_resting_model_computes_what_float32_computes_of_its_rounded_weights(family, dtype):
    reference, resting = _rounded_float32(family, dtype), rest(tiny_model(family), dtype)
    assert {p.dtype for p in resting.parameters() if p.ndim >= 2} == {dtype}
    assert {p.dtype for p in resting.parameters() if p.ndim < 2} == {torch.float32}
    ids = torch.tensor([[5, 17, 300, 2, 17, 44, 1, 9]])
    with torch.no_grad():
        expected, got = reference(ids).logits, resting(ids).logits
    assert got.dtype == torch.float32 and torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    # a head-mask gradient (the analysis's backward pass) through the resting weights, no float32 copy kept for it
    grads = []
    for model in (reference, resting):
        mask = [torch.ones(n, requires_grad=True) for n in HEADS.sizes(model)]
        with HEADS.masked(model, mask):
            model(ids).logits.logsumexp(-1).sum().backward()
        grads.append(torch.cat([m.grad for m in mask]))
    assert torch.allclose(grads[1], grads[0], atol=1e-4, rtol=1e-4) and grads[0].abs().sum() > 0


def test_as_float32_gives_the_plain_model_and_then_the_same_16_bits_back():
    model = rest(tiny_model("llama"), torch.float16)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    with as_float32(model.parameters()):
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(torch.equal(p, before[name]) and p.dtype == before[name].dtype for name, p in model.named_parameters())


def test_a_model_loads_resting_with_its_norms_as_the_checkpoint_holds_them(tmp_path):
    folder = save_tiny("qwen2", tmp_path / "qwen2")  # a float32 checkpoint: matrices rest in float16
    loaded, original = load(folder).model, tiny_model("qwen2")
    params = dict(loaded.named_parameters())
    assert type(loaded.model.layers[0].mlp.down_proj) is RestingLinear
    for name, p in original.named_parameters():
        if p.ndim >= 2:
            assert params[name].dtype == torch.float16 and torch.equal(params[name].float(), p.half().float())
        else:  # norms and biases: the checkpoint's float32 values, not rounded through float16
            assert params[name].dtype == torch.float32 and torch.equal(params[name], p), name


def test_a_checkpoint_beyond_float16_is_refused_in_one_line(tmp_path):
    folder = save_tiny("llama", tmp_path / "llama")  # float32: it rests in float16, whose largest value is 65,504
    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] = 1e6
    model.save_pretrained(folder)
    with pytest.raises(UserError, match=r"model.layers.1.mlp.up_proj.weight holds values beyond float16's range"):
        load(folder)
