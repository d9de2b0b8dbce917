"""Physically pruned == original with the same heads masked, for every family."""

import contextlib
import copy
from pathlib import Path

import pytest
import torch

from langprune.cuts.rewrite import keep_from_drop, load_pruned, save_pruned
from langprune.errors import UserError
from langprune.model import families
from langprune.model.heads import kv_head_counts
from langprune.model.parts import HEADS, mask_from_drop
from tests.tiny import tiny_model

FAMILIES = list(families.FAMILIES)
# tiny models: 3 layers, 4 query heads in 2 KV groups. Layer 0 keeps one head per group,
# layer 1 loses its second group whole, layer 2 keeps everything.
DROP = [(0, 1), (0, 2), (1, 2), (1, 3)]


def logits_prefill_and_decode(model, ids, steps=4, mask=None):
    """Logits for a prompt, then for `steps` tokens decoded one at a time with the KV cache."""
    ctx = HEADS.masked(model, mask) if mask is not None else contextlib.nullcontext()
    out = []
    with torch.no_grad(), ctx:
        result = model(ids, use_cache=True)
        out.append(result.logits)
        past = result.past_key_values
        for step in range(steps):
            token = ids[:, step : step + 1]
            result = model(token, past_key_values=past, use_cache=True)
            past = result.past_key_values
            out.append(result.logits)
    return out


def max_diff(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_equals_masked(family):
    model = tiny_model(family)
    ids = torch.randint(0, 320, (2, 12))
    masked = logits_prefill_and_decode(model, ids, mask=mask_from_drop(HEADS.sizes(model), DROP))
    original = logits_prefill_and_decode(model, ids)
    pruned_model = HEADS.prune(copy.deepcopy(model), keep_from_drop(HEADS.sizes(model), DROP))
    pruned = logits_prefill_and_decode(pruned_model, ids)

    assert HEADS.sizes(pruned_model) == [2, 2, 4]
    assert kv_head_counts(pruned_model) == [2, 1, 2]
    assert max_diff(pruned, masked) <= 1e-4
    assert max_diff(original, masked) > 1e-3  # the masked heads did matter
    n_params = sum(p.numel() for p in pruned_model.parameters())
    assert n_params < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_pruned_model_reloads_without_the_original(family, tmp_path):
    from tests.tiny import tiny_tokenizer

    model = HEADS.prune(tiny_model(family), keep_from_drop([4, 4, 4], DROP))
    save_pruned(model, tiny_tokenizer(), tmp_path)
    reloaded, tokenizer = load_pruned(tmp_path)
    assert reloaded.config.kept_heads == [[0, 3], [0, 1], [0, 1, 2, 3]]
    ids = tokenizer("Alle Menschen sind frei", return_tensors="pt")["input_ids"]
    assert max_diff(logits_prefill_and_decode(reloaded, ids), logits_prefill_and_decode(model, ids)) == 0


def test_pruning_twice_records_original_indices():
    model = HEADS.prune(tiny_model("llama"), [[0, 1, 2, 3], [2, 3], [0, 1, 2, 3]])
    HEADS.prune(model, [[1, 2], [0, 1], [0, 1, 2, 3]])
    assert model.config.kept_heads == [[1, 2], [2, 3], [0, 1, 2, 3]]


def test_invalid_rewrites_are_refused():
    model = tiny_model("llama")
    with pytest.raises(UserError, match="KV groups keep different numbers"):
        HEADS.prune(copy.deepcopy(model), [[0, 1, 2], [0, 1, 2, 3], [0, 1, 2, 3]])
    with pytest.raises(UserError, match="every attention head"):
        HEADS.prune(copy.deepcopy(model), [[], [], []])
    with pytest.raises(UserError, match="layer 1 would keep no attention head"):
        HEADS.prune(copy.deepcopy(model), [[0], [], [0]])


@pytest.mark.real
def test_pruned_equals_masked_on_gemma(gemma):
    model = gemma.model
    counts = HEADS.sizes(model)
    drop = [(layer, (layer * 3) % 4) for layer in range(len(counts))]  # one head per layer
    ids = gemma.tokenizer("Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
                          return_tensors="pt")["input_ids"]
    # in float64: in float32 the two differ by up to ~1e-4 (of logits ~20), by how the CPU's kernels sum
    twin = copy.deepcopy(model).double()
    full = logits_prefill_and_decode(twin, ids)
    masked = logits_prefill_and_decode(twin, ids, mask=mask_from_drop(counts, drop))
    pruned_model = HEADS.prune(twin, keep_from_drop(counts, drop))
    pruned = logits_prefill_and_decode(pruned_model, ids)
    assert HEADS.sizes(pruned_model) == [3] * 18 and kv_head_counts(pruned_model) == [1] * 18
    assert max_diff(pruned, masked) <= 1e-6
    assert max_diff(pruned, full) > 1e-2  # the heads did matter


# every layer keeps one whole KV group of two query heads (not the same one) and 48 FFN neurons: one shape for all
# layers
UNIFORM_HEADS = [[0, 1], [2, 3], [0, 1]]
STOCK_LOAD = """import json, sys, torch
from transformers import AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1], local_files_only=True).eval()
assert "langprune" not in sys.modules
ids = torch.tensor([json.loads(sys.argv[2])])
with torch.no_grad():
    print(json.dumps(model(ids).logits[0].tolist()))"""


@pytest.mark.parametrize("family", FAMILIES)
def test_a_uniform_cut_is_a_standard_checkpoint_that_stock_transformers_loads(family, tmp_path):
    import json
    import subprocess
    import sys

    from langprune.model.parts import NEURONS
    from tests.tiny import tiny_tokenizer

    model = HEADS.prune(tiny_model(family), UNIFORM_HEADS)
    width = model.model.layers[0].mlp.up_proj.out_features
    model = NEURONS.prune(model, [list(range(layer % 2, width, 2)) for layer in range(3)])  # 48 of 96 each
    save_pruned(model, tiny_tokenizer(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (2, 1, 48)
    assert "kept_heads" not in config and config["langprune"]["kept_heads"] == UNIFORM_HEADS
    ids = [5, 17, 42, 99, 7, 3]
    stock = subprocess.run([sys.executable, "-c", STOCK_LOAD, str(tmp_path), json.dumps(ids)], capture_output=True,
                           text=True, cwd=tmp_path)  # not the repository: `import langprune` would fail there
    assert stock.returncode == 0, stock.stderr[-2000:]
    with torch.no_grad():
        ours = model(torch.tensor([ids])).logits[0]
    assert float((torch.tensor(json.loads(stock.stdout)) - ours).abs().max()) <= 1e-5
    reloaded, _ = load_pruned(tmp_path)  # and langprune's own loader reads it too
    assert HEADS.sizes(reloaded) == [2, 2, 2] and kv_head_counts(reloaded) == [1, 1, 1]


def test_per_layer_shapes_keep_the_kept_indices_for_load_pruned(tmp_path):
    import json

    from tests.tiny import tiny_tokenizer

    save_pruned(HEADS.prune(tiny_model("llama"), keep_from_drop([4, 4, 4], DROP)), tiny_tokenizer(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["num_attention_heads"] == 4 and config["kept_heads"] == [[0, 3], [0, 1], [0, 1, 2, 3]]


def test_an_uncut_model_keeps_the_config_transformers_wrote(tmp_path):
    import json

    from tests.tiny import tiny_tokenizer

    save_pruned(tiny_model("llama"), tiny_tokenizer(), tmp_path)
    assert "langprune" not in json.loads((tmp_path / "config.json").read_text())  # not rewritten


def test_the_cut_model_shares_what_the_cuts_leave_and_never_changes_the_original():
    """apply_cuts holds one copy of every tensor no cut touched (a second full model was the 1.5B export's peak), and
    the refit and HEAL, which write in place, write only the cut model's own copies."""
    from langprune.cuts.plan import apply_cuts
    from langprune.cuts.refit import part_grams
    from langprune.cuts.tolerance import Cuts
    from langprune.data.corpus import udhr_corpus
    from langprune.model.load import LoadedModel
    from langprune.model.parts import NEURONS, Selection
    from tests.tiny import tiny_tokenizer

    original, ids = tiny_model("llama"), torch.tensor([[5, 17, 3, 99, 42, 7]])
    before = logits_prefill_and_decode(original, ids)
    state = {name: t.clone() for name, t in original.state_dict().items()}
    heads = Selection(keep_from_drop(HEADS.sizes(original), DROP), HEADS.sizes(original), "free")
    neurons = Selection([list(range(0, n, 2)) for n in NEURONS.sizes(original)], NEURONS.sizes(original), "free")
    grams = part_grams(original, [ids[0].tolist()])[HEADS]
    loaded = LoadedModel(original, tiny_tokenizer(), families.FAMILIES["llama"], "tiny", Path("tiny"), "0")
    corpus = udhr_corpus(["en"])
    cut, _ = apply_cuts(loaded, Cuts(heads=heads, neurons=neurons), grams, heal_minutes=0.01, corpus=corpus,
                        langs=["en"])
    assert max_diff(logits_prefill_and_decode(original, ids), before) == 0.0  # the original computes as it did
    assert all(torch.equal(t, state[name]) for name, t in original.state_dict().items())
    mine = {name: p.data_ptr() for name, p in original.named_parameters()}
    shared = {name for name, p in cut.named_parameters() if mine.get(name) == p.data_ptr()}
    assert "model.embed_tokens.weight" in shared  # untouched: one copy for both models
    assert not any(name.endswith(("_proj.weight", "norm.weight")) for name in shared)  # cut, refit or trained
    plain, _ = apply_cuts(loaded, Cuts(neurons=neurons))  # no refit, no HEAL: attention and norms stay shared
    assert sum(p.data_ptr() == mine.get(name) for name, p in plain.named_parameters()) > len(mine) // 2
