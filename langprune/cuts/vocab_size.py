"""How many tokens the vocabulary keeps (`select_vocab`): a number asked for, or, for VOCAB=auto, the default
size grown until every kept language's text beyond the corpus holds the quality limits (`trim_vocab`), in
tokens and, scored by the model, in bits per byte."""

from dataclasses import dataclass, field

import torch

from ..data.corpus import encode
from ..data.evaluate import nll_from_logits, torch_scorer
from ..errors import UserError, option
from ..log import say, warn
from ..model.load import LoadedModel
from ..options import QUALITY_LIMITS
from .tolerance import outside_selection

VOCAB_GROWTH = 1.25  # VOCAB=auto: each try keeps this many times the tokens of the last (trim_vocab)


def select_vocab(loaded: LoadedModel, corpus, langs: list[str], vocab: bool | int, evidence=None):
    """(kept token ids, the trimmed vocabulary, how many tokens each step chose); `vocab`: True (auto) or at most
    that many tokens."""
    size = None if vocab is True else vocab
    return trim_vocab(*(evidence or vocab_evidence(loaded, corpus, langs)), corpus, langs, size, loaded.tokenizer,
                      loaded.model)


def vocab_evidence(loaded: LoadedModel, corpus, langs: list[str]):
    """(the source vocabulary, the model's predicted usage of each token on the kept languages' text)."""
    from .vocab import frequent_words, predicted_usage

    for lang in (lang for lang in langs if not frequent_words(lang, 1)):
        warn(f"   warning: wordfreq has no word frequencies for {lang}: its tokens come from the corpus and the "
             "model's own predictions only, and may not hold on other text")
    return source_vocab(loaded), predicted_usage(loaded.model, loaded.tokenizer, corpus, langs)


def trim_vocab(vocab, usage, corpus, langs: list[str], size: int | None, tokenizer=None, model=None):
    """`select_vocab` for one size, from `vocab_evidence`; or, for VOCAB=auto (size None), the default
    size grown by VOCAB_GROWTH until every kept language's text beyond the corpus takes at most
    QUALITY_LIMITS["outside_token_rise"] more tokens than with `tokenizer` (the original's) and, given the
    `model`, at most QUALITY_LIMITS["outside_bpb_rise"] more bits per byte, measured on each source's
    "selection" sample (the report scores the other, `outside_text`)."""
    from ..model.tokenizer import tokenizer_from_vocab
    from .trim import trimmed_vocab
    from .vocab import TOKENS_PER_LANGUAGE, select_tokens

    target = size or TOKENS_PER_LANGUAGE * len(langs)
    samples = outside_samples(tokenizer, langs) if size is None else []
    bit_samples = outside_bit_samples(tokenizer, langs) if size is None and model is not None else []
    previous = None
    while True:
        selection = select_tokens(vocab, corpus, langs, target, usage)
        kept, trimmed = len(selection.kept), trimmed_vocab(vocab, selection.keep)
        say(f"   vocabulary: {kept} of {len(vocab.tokens)} tokens ({selection.counts()})")
        if size is not None:
            if kept > size:  # steps 1-3 alone are more: their count, not the aligned one
                need = kept - len(selection.parts["alignment"])
                raise UserError(f"{option('vocab', size)}: the kept languages need at least {need} tokens (their "
                                "corpus's tokens, their scripts' characters, bytes and control tokens); raise it or "
                                f"say {option('vocab', 'on')}")
            return selection.keep, trimmed, selection.counts()
        trimmed_tokenizer = tokenizer_from_vocab(trimmed)
        worst = worst_outside_rise(samples, trimmed_tokenizer)
        what, limit = "tokens", QUALITY_LIMITS["outside_token_rise"]
        if worst is None or worst[2] <= limit:
            bits = (worst_outside_bits_rise(model, bit_samples, selection.keep, trimmed_tokenizer)
                    if bit_samples else None)
            if bits is None or bits[2] <= QUALITY_LIMITS["outside_bpb_rise"]:
                if worst:
                    say(f"   beyond the corpus: at most {worst[2]:+.2%} tokens ({worst[0]} {worst[1]})"
                        + (f", {bits[2]:+.2%} bits per byte ({bits[0]} {bits[1]})" if bits else "")
                        + ", selection sample")
                return selection.keep, trimmed, selection.counts()
            worst, what, limit = bits, "bits per byte", QUALITY_LIMITS["outside_bpb_rise"]
        lang, source, rise = worst
        # a larger size added nothing: every token of the scripts is in
        if kept == previous or kept >= len(vocab.tokens):
            raise UserError(f"{option('vocab', 'auto')}: {lang} takes {rise:+.2%} {what} on {source} beyond the corpus "
                            f"with {kept} of {len(vocab.tokens)} tokens kept (limit +{limit:.1%}); say "
                            f"{option('vocab', 'off')} to keep the whole vocabulary")
        previous, target = kept, min(len(vocab.tokens), int(target * VOCAB_GROWTH))
        say(f"   {lang} takes {rise:+.2%} {what} on {source} beyond the corpus (limit +{limit:.1%}): trying {target}")


def outside_samples(tokenizer, langs: list[str]) -> list[tuple[str, str, list[str], int]]:
    """(language, source, documents, their tokens with `tokenizer`) of each kept language's "selection"
    sample beyond the corpus: read and counted once, whatever the number of sizes tried."""
    from ..data.evaluate import scored_tokens

    return [(lang, source, docs, scored_tokens(tokenizer, docs)) for lang, source, docs in outside_selection(langs)]


def worst_outside_rise(samples, trimmed_tokenizer) -> tuple[str, str, float] | None:
    """(language, source, token count rise) of the `outside_samples` entry the trimmed vocabulary's tokenizer
    lengthens most; None where no kept language has text beyond the corpus."""
    from ..data.evaluate import scored_tokens

    rises = [(lang, source, scored_tokens(trimmed_tokenizer, docs) / tokens - 1)
             for lang, source, docs, tokens in samples]
    return max(rises, key=lambda r: r[2], default=None)


@dataclass
class BitSample:
    """A kept language's "selection" sample of one source beyond the corpus, as the bits check reads it."""

    lang: str
    source: str
    docs: list[tuple[str, list[int]]]  # each document and its ids with the original's tokenizer
    nll: dict[int, float] = field(default_factory=dict)  # the original's NLL of document i, once scored
    total: float | None = None  # the original's NLL of them all, once estimated (`_estimated_total`)


def outside_bit_samples(tokenizer, langs: list[str]) -> list[BitSample]:
    """Each kept language's "selection" sample beyond the corpus, whole, tokenized by the original. Nothing is
    scored until a tried vocabulary tokenizes a document differently (`worst_outside_bits_rise`): en,de's
    160,815 tokens change one document of 145."""
    return [BitSample(lang, source, [(doc, encode(tokenizer, doc)) for doc in docs])
            for lang, source, docs in outside_selection(langs)]


def worst_outside_bits_rise(model, samples: list[BitSample], keep: list[int], trimmed_tokenizer
                            ) -> tuple[str, str, float] | None:
    """(language, source, rise of the NLL, so of the bits per byte) of the `outside_bit_samples` entry the trimmed
    vocabulary costs most, scored as the trimmed model scores it: the original's logits of the kept tokens (a trimmed
    embedding and output layer are their rows). Documents it tokenizes as the original did count unchanged (their
    NLL can only fall, the softmax running over fewer tokens), so only the others are scored, before and after."""
    score, index, rises = torch_scorer(model), torch.tensor(keep), []
    with torch.inference_mode():
        for sample in samples:
            change, changed = 0.0, False
            for i, (doc, ids) in enumerate(sample.docs):
                after = encode(trimmed_tokenizer, doc)
                original_ids = [keep[t] for t in after]
                if original_ids != ids:
                    logits = model(torch.tensor([original_ids])).logits[0][:, index]
                    change += nll_from_logits(logits, after) - _original_nll(sample, i, score)
                    changed = True
            rises.append((sample.lang, sample.source, change / _estimated_total(sample, score) if changed else 0.0))
    return max(rises, key=lambda r: r[2], default=None)


def _original_nll(sample: BitSample, i: int, score) -> float:
    """The original's NLL of the sample's document i, scored once."""
    if i not in sample.nll:
        sample.nll[i] = score(sample.docs[i][1])
    return sample.nll[i]


def _estimated_total(sample: BitSample, score) -> float:
    """The original's NLL of the whole sample: its NLL per byte on the first CHARS characters times the sample's
    bytes (scoring all 16,000 characters through Gemma's 262,144-token output layer takes about 30 s a source on
    two cores, 1.5-1.7 s a document; a sample of CHARS characters alone is too few documents to hold a +1% limit:
    docs/benchmarks.md)."""
    from ..data.outside_text import CHARS

    if sample.total is None:
        chars = nll = scored_bytes = 0
        for i, (doc, _) in enumerate(sample.docs):
            if chars >= CHARS:
                break
            nll += _original_nll(sample, i, score)
            chars, scored_bytes = chars + len(doc), scored_bytes + len(doc.encode())
        sample.total = nll * sum(len(doc.encode()) for doc, _ in sample.docs) / scored_bytes
    return sample.total


def source_vocab(loaded: LoadedModel):
    """The model's vocabulary as llama.cpp sees it: from its GGUF, or converted from its tokenizer."""
    from ..model.hf_vocab import vocab_from_hf_tokenizer
    from ..model.tokenizer import read_vocab

    return read_vocab(loaded.gguf) if loaded.gguf else vocab_from_hf_tokenizer(loaded.tokenizer)
