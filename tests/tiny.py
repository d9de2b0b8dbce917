"""Tiny random models of every supported family, built in-process (no downloads)."""

from functools import lru_cache
from pathlib import Path

import torch

TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    vocab_size=352,  # a trimmed count (a multiple of 32) stays under it: the dropped script has merges of its own
)


# One row per family record (langprune.families.FAMILIES): what its tiny config adds to TINY.
TINY_EXTRAS = {
    "llama": dict(head_dim=16),
    "qwen2": {},
    "qwen3": dict(head_dim=16),
    "gemma3": dict(head_dim=16, query_pre_attn_scalar=16, sliding_window=8,
                   layer_types=["sliding_attention", "sliding_attention", "full_attention"]),
}


def tiny_config(family: str):
    from transformers import AutoConfig

    from langprune.model.families import FAMILIES

    return AutoConfig.for_model(FAMILIES[family].model_type, **TINY, **TINY_EXTRAS[family])


def tiny_model(family: str, seed: int = 0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32).eval()
    with torch.no_grad():  # random norms and biases, so every parameter matters
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """A byte-level BPE with the tiny models' vocabulary size, trained on a few UDHR texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from langprune.data.corpus import udhr_corpus

    corpus = udhr_corpus(["en", "de", "ru"])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY["vocab_size"], special_tokens=["<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([corpus.text(lang, "calibration") for lang in corpus.languages], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>")


def save_tiny(family: str, folder: Path) -> Path:
    tiny_model(family).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
