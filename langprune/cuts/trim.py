"""The vocabulary cut applied: the trimmed GGUF vocabulary (`trimmed_vocab`), the embedding and output
rows (`trim_embeddings`), and how alike the trimmed tokenizer tokenizes text (`tokenization_agreement`)."""

import difflib
from dataclasses import replace

import torch

from ..model.parts import _rows
from ..model.tokenizer import GGUFVocab


def trimmed_vocab(vocab: GGUFVocab, keep: list[int]) -> GGUFVocab:
    """The vocabulary restricted to `keep` (sorted original ids); new id = position in `keep`."""
    new = {old: n for n, old in enumerate(keep)}
    tokens = [vocab.tokens[i] for i in keep]
    merges = None
    if vocab.merges is not None:
        kept = set(tokens)
        merges = [m for m in vocab.merges if _merge_kept(m, kept)]

    def remap(i):
        return new.get(i) if i is not None else None

    return replace(
        vocab, tokens=tokens, types=[vocab.types[i] for i in keep], merges=merges,
        scores=[vocab.scores[i] for i in keep] if vocab.scores is not None else None,
        bos_id=remap(vocab.bos_id), eos_id=remap(vocab.eos_id), unk_id=remap(vocab.unk_id), pad_id=remap(vocab.pad_id),
    )


def _merge_kept(merge: str, kept: set[str]) -> bool:
    left, right = merge.split(" ", 1)
    return left in kept and right in kept and left + right in kept


def trim_embeddings(model, keep: list[int]):
    """Keep only the rows `keep` of the input embedding and output layer (tied or not). In place.

    Sets config.vocab_size, remaps the bos/eos/pad ids (config and generation config) and records
    the original ids in config.kept_tokens (composed with an earlier trimming).
    """
    index = torch.tensor(keep, dtype=torch.long)
    new = {old: n for n, old in enumerate(keep)}
    embed, output = model.get_input_embeddings(), model.get_output_embeddings()
    tied = output is not None and output.weight is embed.weight
    embed.weight = torch.nn.Parameter(embed.weight.data[index].clone())
    embed.num_embeddings = len(keep)
    if getattr(embed, "padding_idx", None) is not None:
        embed.padding_idx = new.get(embed.padding_idx)
    if tied:
        output.weight = embed.weight
    elif output is not None:
        _rows(output, index)

    def remap(i):
        if isinstance(i, (list, tuple)):
            return [new[j] for j in i if j in new] or None
        return new.get(i) if i is not None else None

    for config in (model.config, getattr(model, "generation_config", None)):
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if config is not None and getattr(config, key, None) is not None:
                setattr(config, key, remap(getattr(config, key)))
    previous = getattr(model.config, "kept_tokens", None)
    model.config.kept_tokens = [previous[i] for i in keep] if previous else list(keep)
    model.config.vocab_size = len(keep)
    return model


def tokenization_agreement(before_tokenizer, after_tokenizer, keep: list[int], texts: list[str]) -> dict:
    """The share of the original tokens of `texts` that the trimmed tokenizer reproduces.

    Per text, the trimmed ids are mapped back to original ids and aligned with the original
    sequence (difflib); share = matched tokens / original tokens.
    """
    total = after_total = matched = same = 0
    for text in texts:
        a = before_tokenizer(text, add_special_tokens=False)["input_ids"]
        b = [keep[i] for i in after_tokenizer(text, add_special_tokens=False)["input_ids"]]
        blocks = difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks()
        matched += sum(block.size for block in blocks)
        total, after_total, same = total + len(a), after_total + len(b), same + (a == b)
    return {"share": matched / total if total else 1.0, "tokens": total, "tokens_after": after_total,
            "matched": matched, "texts": len(texts), "texts_identical": same}
