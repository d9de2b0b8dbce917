"""What each step holds per layer, bounded: the same export of one model at two depths, each step's peak compared
(issue 58: a 7B is 28 layers of the same shape, so what a step holds per layer decides whether it runs on a 24 GB
machine).

The model is a Llama of a 1,536-wide layer (25.2 M parameters, 48 MiB in bfloat16) and the tiny tokenizer, saved in
bfloat16 as Hugging Face checkpoints are published, exported whole (FFN cut, trimmed vocabulary, Q8_0, verify) in a
fresh interpreter for each depth. A step's growth is read in units of the added layers' bytes at rest (16 bits):
a step that holds each layer once grows by about 1 of them, and a float32 copy by 2 more. The report's peaks are
this process's; the speed runs and llama-bench measure their own in theirs.
"""

import json
import subprocess
import sys

import pytest
import torch

from tests.tiny import TINY, tiny_tokenizer

pytestmark = pytest.mark.slow

WIDE = dict(TINY, hidden_size=1536, intermediate_size=4096, num_attention_heads=12, num_key_value_heads=4,
            head_dim=128)
DEPTHS = (1, 3)
# What each step may add per added layer, in the layer's 16-bit bytes. Measured on a 2-core Xeon (7 December, after
# `timed` gave back freed memory), run alone: 0.02 (load: the checkpoint is memory-mapped, read later), 1.0-1.8 (the
# steps that compute with the weights, whose pages then count, and with per-layer activations), 1.7-2.4 (the rewrite:
# the cut FFN beside the original), 1.5-1.8 (either ONNX export, at rest plus one block of float32 rows), 3.3 (verify's
# quality: one ONNX Runtime session of the float32 model at a time). But export pruned read 2.94 inside `make test`
# and 2.82 alone the next run (quality pytorch 2.46 / 2.23, verify's quality 4.07 / 4.04): why it varies from 1.77
# to 2.94 between runs is not yet known, hence the margins. A float32 copy of the model beside both models (export
# pruned before `20dca0a`: 3.71) or two ONNX Runtime sessions open at once (verify: 6.99) cross them.
MODEL_STEPS_LIMIT, VERIFY_LIMIT = 3.5, 5.0

EXPORT = """import json, sys
import langprune
result = langprune.export(langs="en,de", model=sys.argv[1], out=sys.argv[2], analysis_langs=["en", "de", "ru"],
                          ffn=0.25, quant=["Q8_0"], reps=1, threads=[2], layout="free")
print(json.dumps(result.report["timings_s"]), file=sys.stderr)
print(json.dumps(result.report["peak_rss_mb"]))"""


def save_wide(depth: int, folder) -> int:
    """The model at `depth` layers in `folder`; its bytes per layer at rest."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.for_model("llama", **{**WIDE, "num_hidden_layers": depth})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return 2 * sum(p.numel() for p in model.model.layers[0].parameters())


def peaks(folder, out) -> dict[str, float]:
    """Each step's peak (MB) of the export of `folder`, run in a new interpreter: the suite's own process holds what
    earlier tests left with the allocator."""
    run = subprocess.run([sys.executable, "-c", EXPORT, str(folder), str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"{folder.name}: seconds {run.stderr.splitlines()[-1]}")
    return json.loads(run.stdout.splitlines()[-1])


def test_each_steps_memory_grows_with_depth_by_at_most_the_layers_own_bytes(tmp_path):
    shallow, deep = DEPTHS
    layer_bytes = save_wide(shallow, tmp_path / "shallow")
    assert save_wide(deep, tmp_path / "deep") == layer_bytes
    small, large = (peaks(tmp_path / name, tmp_path / f"out-{name}") for name in ("shallow", "deep"))
    assert set(small) == set(large) and {"load", "rewrite", "export pruned", "verify: quality"} <= set(small)
    added_mb = (deep - shallow) * layer_bytes / 2**20
    growth = {step: round((large[step] - small[step]) / added_mb, 2) for step in small}
    print(f"growth per added layer, in its 16-bit bytes ({added_mb:.0f} MB added): {growth}")
    assert all(growth[step] <= (VERIFY_LIMIT if step.startswith("verify") else MODEL_STEPS_LIMIT)
               for step in growth), growth
