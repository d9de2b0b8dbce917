"""Vocabulary trimming: keep the tokens the kept languages use, shrink the embedding and output layer.

A multilingual vocabulary spends most of its rows on scripts a deployment never sees (Gemma 3:
262,144 tokens, two thirds of its weights). `kept_tokens` picks the rows to keep:

1. corpus: the calibration text of the kept languages, tokenized by a simulation of llama.cpp's
   algorithm that records every token formed on the way, not only the final ones. SentencePiece
   BPE ('llama') merges the adjacent pair whose merged token scores highest, leftmost first; a
   token is only reached if the tokens merged into it exist. When every formed token is kept, the
   trimmed tokenizer makes the same choices at every step (the pair chosen is always still there,
   and no pair the full vocabulary lacks can appear), so this text tokenizes exactly as before.
   Byte-level BPE ('gpt2'): the tokens used plus the merges that build them, recursively.
2. script: every single-character token of the languages' scripts (`languages.py`, recognised
   by the first word of the Unicode character name) and of punctuation, digits and symbols.
3. bytes (`<0xXX>`, or byte-level BPE's 256 byte symbols), so any text still tokenizes; named
   control tokens and bos/eos/unk/pad (not `<unusedN>`); user-defined tokens that are whitespace
   runs or made of kept characters.
4. fill-up, to generalise beyond the small corpus: multi-character tokens made of the scripts'
   characters, best first, each with the tokens its own merge path forms, up to the vocabulary
   size asked for. Best by the vocabulary's own rank (SentencePiece score, merge order) favours
   the languages that dominated the tokenizer's training (German trails English and code), so
   the pipeline ranks by `predicted_usage`: the model's own next-token probabilities on the kept
   languages' text, averaged, which spread over the words those languages use.
Every character of a kept token is kept as a token too: Hugging Face's BPE falls back to bytes
for a character outside the vocabulary before merging, llama.cpp only at the end.

`trimmed_vocab` renumbers the vocabulary (new id = position in the kept list), `trim_embeddings`
cuts the model's rows the same way, and `tokenization_agreement` measures how much of a text
still tokenizes as with the full vocabulary. Gemma 3 270M for en,de keeps 40,960 of 262,144
tokens (35,000 of them from the fill-up): the held-out UDHR articles tokenize as before to 100%
(filled up by the vocabulary's rank instead: en 97%, de 89%; without the fill-up: 80%).
"""

import difflib
import heapq
import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache

import torch

from .languages import LANGUAGES
from .rewrite import _rows
from .tokenizer import BYTE, CONTROL, NORMAL, USER_DEFINED, GGUFVocab, tokenizer_from_vocab

TOKENS_PER_LANGUAGE = 20480  # default vocabulary size: this many tokens per kept language
PRIOR_WEIGHT = 0.5  # ranking by usage: log usage - PRIOR_WEIGHT * log(rank in the vocabulary)

# Script (languages.py) -> first words of the Unicode names of its letters. Default: the name upper-cased.
SCRIPT_NAMES = {
    "Han": {"CJK", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH"},
    "Japanese": {"CJK", "IDEOGRAPHIC", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "FULLWIDTH", "HALFWIDTH"},
    "Hangul": {"HANGUL", "FULLWIDTH", "HALFWIDTH"},
}
COMMON = "COMMON"  # punctuation, digits, symbols, spaces, combining marks: shared by all scripts
_UNUSED = re.compile(r"<unused\d+>")


PARTS = ("corpus", "script", "bytes", "special", "user_defined", "fill")


@dataclass
class Selection:
    """Kept token ids by the step that first added them (PARTS, the steps of the module docstring)."""

    parts: dict[str, set[int]] = field(default_factory=lambda: {part: set() for part in PARTS})

    def add(self, part: str, ids) -> set[int]:
        """Add ids to a part (those not already kept); returns them."""
        new = set(ids) - self.kept
        self.parts[part] |= new
        return new

    @property
    def kept(self) -> set[int]:
        return set().union(*self.parts.values())

    @property
    def keep(self) -> list[int]:
        return sorted(self.kept)

    def counts(self) -> dict[str, int]:
        return {part: len(ids) for part, ids in self.parts.items()} | {"total": len(self.kept)}


@lru_cache(maxsize=65536)
def char_class(ch: str) -> str:
    """COMMON, or the first word of the character's Unicode name (LATIN, CYRILLIC, CJK, ...)."""
    if unicodedata.category(ch)[0] not in "LM":
        return COMMON
    word = unicodedata.name(ch, "").split(" ", 1)[0]
    return COMMON if word in ("", "COMBINING") else word


def script_classes(langs) -> set[str]:
    names = {COMMON}
    for code in langs:
        script = LANGUAGES[code].script
        names |= SCRIPT_NAMES.get(script, {script.upper()})
    return names


def kept_tokens(vocab: GGUFVocab, corpus, langs, size: int | None = None, usage=None) -> list[int]:
    """Sorted ids of the original vocabulary to keep for `langs` (see `select_tokens`)."""
    return select_tokens(vocab, corpus, langs, size, usage).keep


def select_tokens(vocab: GGUFVocab, corpus, langs, size: int | None = None, usage=None) -> Selection:
    """The tokens to keep for `langs`, by the step that chose them (see the module docstring).

    size: how many at most (default TOKENS_PER_LANGUAGE per language); the steps before the
    filling-up are always kept. usage: a value per token (`predicted_usage`) that ranks the
    scripts' multi-character tokens for the filling-up; without it, their rank in the vocabulary.
    """
    size = TOKENS_PER_LANGUAGE * len(langs) if size is None else size
    merger = _Merger(vocab)
    classes = script_classes(langs)
    sel = Selection()
    sel.add("corpus", merger.used([doc for lang in langs for doc in corpus.texts[lang]["calibration"]]))
    chars, words = [], []
    for i, kind in enumerate(vocab.types):
        text = merger.text(i)
        if kind == NORMAL and text and all(char_class(c) in classes for c in text):
            if len(text) > 1:
                words.append(i)
            elif unicodedata.category(text) not in ("Co", "Cn", "Cs"):  # not private use or unassigned
                chars.append(i)
    sel.add("script", chars)
    sel.add("bytes", merger.byte_ids())
    named = {vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.pad_id} - {None}
    sel.add("special", named | {i for i, (t, k) in enumerate(zip(vocab.tokens, vocab.types))
                                if k == CONTROL and not _UNUSED.fullmatch(t)})
    sel.add("user_defined", [i for i, (t, k) in enumerate(zip(vocab.tokens, vocab.types)) if k == USER_DEFINED
                             and (not t.strip() or all(char_class(c) in classes for c in t))])
    sel.add("script", merger.characters(sel.kept))  # the characters of every kept token

    if usage is None:
        words.sort(key=merger.rank)
    else:  # the model's frequency estimate, leaning towards the vocabulary's generally frequent tokens
        usage = usage.tolist() if hasattr(usage, "tolist") else usage
        words.sort(key=lambda i: PRIOR_WEIGHT * math.log(merger.rank(i) + 2) - math.log(usage[i] + 1e-12))
    kept, fill = sel.kept, set()
    for i in words:  # fill up to `size`, best-ranked first, each with the tokens of its merge path
        if i not in kept:
            path = merger.path(i)
            new = (path | merger.characters(path)) - kept
            if len(kept) + len(new) > size:
                break
            fill |= new
            kept |= new
    sel.add("fill", fill)
    return sel


def predicted_usage(model, tokenizer, corpus, langs, tokens: int = 1024, stride: int = 2) -> torch.Tensor:
    """The model's mean next-token probability of every token over the kept languages' text.

    Per language, about `tokens` tokens of calibration text (chunks spread over the documents)
    go through the model; the predicted distributions at every `stride`-th position are averaged,
    and the languages weigh equally. The model spreads probability over the words that could come
    next in that language, so this ranks its vocabulary well beyond the words the text uses.
    """
    from .evaluate import chunks

    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)
    usage = torch.zeros(head.weight.shape[0], dtype=torch.float64)
    for lang in langs:
        items = chunks(tokenizer, corpus.texts[lang]["calibration"])
        step = max(1, round(sum(len(c.ids) for c in items) / tokens))
        hidden, n = [], 0
        with torch.inference_mode():
            for chunk in items[::step]:
                ids = chunk.ids[: tokens - n]
                if len(ids) > 1:
                    hidden.append(model.model(torch.tensor([ids])).last_hidden_state[0, ::stride])
                    n += len(ids)
            hidden = torch.cat(hidden)
            for block in hidden.split(256):
                logits = head(block).float()
                if cap:  # Gemma's final soft-capping, as its forward applies it
                    logits = torch.tanh(logits / cap) * cap
                usage += torch.softmax(logits, dim=-1).sum(0, dtype=torch.float64) / len(hidden) / len(langs)
    return usage


class _Merger:
    """llama.cpp's tokenization of one vocabulary, recording the tokens it forms."""

    def __init__(self, vocab: GGUFVocab):
        self.vocab = vocab
        self.spm = vocab.model == "llama"
        # as llama.cpp's and our tokenizer's lookups: the last id of a duplicate text; bytes never merge
        self.index = {t: i for i, (t, k) in enumerate(zip(vocab.tokens, vocab.types)) if k != BYTE}
        if self.spm:
            user = sorted((t for t, k in zip(vocab.tokens, vocab.types) if k == USER_DEFINED), key=len, reverse=True)
            self.split = re.compile("(" + "|".join(map(re.escape, user)) + ")") if user else None
        else:
            from tokenizers import decoders, pre_tokenizers

            self.byte_chars = pre_tokenizers.ByteLevel.alphabet()
            self.decoder = decoders.ByteLevel()
            self.made_by: dict[int, list[tuple[int, int]]] = {}
            self.merge_rank: dict[int, int] = {}
            for n, merge in enumerate(vocab.merges or []):
                left, right = merge.split(" ", 1)
                ids = [self.index.get(left), self.index.get(right), self.index.get(left + right)]
                if None not in ids:
                    self.made_by.setdefault(ids[2], []).append((ids[0], ids[1]))
                    self.merge_rank.setdefault(ids[2], n)

    def text(self, i: int) -> str | None:
        """The text a token stands for (None for a byte-level token that is not whole UTF-8)."""
        tok = self.vocab.tokens[i]
        if self.spm:
            return tok
        text = self.decoder.decode([tok])
        return None if "\ufffd" in text else text

    def rank(self, i: int) -> float:
        return -self.vocab.scores[i] if self.spm else self.merge_rank.get(i, float("inf"))

    def byte_ids(self) -> list[int]:
        if self.spm:
            return [i for i, k in enumerate(self.vocab.types) if k == BYTE]
        return [self.index[c] for c in self.byte_chars if c in self.index]

    def used(self, texts: list[str]) -> set[int]:
        """Every token formed (final or intermediate) when tokenizing `texts`."""
        if self.spm:
            return {i for text in texts for i in self._spm_formed(text)}
        tokenizer = tokenizer_from_vocab(self.vocab)
        used = {i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
        return {j for i in used for j in self.path(i)}

    def path(self, i: int) -> set[int]:
        """The token and the tokens its own merge path forms (SPM: tokenizing its text alone)."""
        if self.spm:
            formed = self._spm_formed(self.vocab.tokens[i], fragments=False)
            return formed if i in formed else set()
        out, todo = set(), [i]
        while todo:
            j = todo.pop()
            if j not in out:
                out.add(j)
                todo += [part for pair in self.made_by.get(j, []) for part in pair]
        return out

    def characters(self, keep: set[int]) -> set[int]:
        if not self.spm:
            return set()  # byte-level BPE starts from the 256 byte symbols, all kept
        chars = {c for i in keep if self.vocab.types[i] == NORMAL for c in self.vocab.tokens[i]}
        return {self.index[c] for c in chars if c in self.index}

    def _spm_formed(self, text: str, fragments: bool = True) -> set[int]:
        """Ids of every symbol llama.cpp's SPM tokenizer forms on `text` (initial characters included)."""
        parts = self.split.split(text) if fragments and self.split else [text]
        formed = {self.index[t] for t in parts[1::2]}  # user-defined tokens, split out first
        for part in parts[::2]:
            if part:
                part = ("▁" if self.vocab.add_space_prefix and fragments else "") + part.replace(" ", "▁")
                formed |= {self.index[s] for s in _spm_merge(part, self.index, self.vocab.scores) if s in self.index}
        return formed


def _spm_merge(text: str, index: dict[str, int], scores: list[float]) -> set[str]:
    """llama.cpp's llm_tokenizer_spm: merge the best-scoring adjacent pair (leftmost on ties) while
    the merged text is a token. Returns the text of every symbol that existed on the way."""
    syms = list(text)
    nbytes = [len(s.encode()) for s in syms]
    prev, nxt = list(range(-1, len(syms) - 1)), list(range(1, len(syms) + 1))
    queue: list[tuple[float, int, int, int]] = []

    def push(left: int, right: int) -> None:
        if left >= 0 and right < len(syms):
            i = index.get(syms[left] + syms[right])
            if i is not None:
                heapq.heappush(queue, (-scores[i], left, right, nbytes[left] + nbytes[right]))

    for k in range(1, len(syms)):
        push(k - 1, k)
    seen = set(syms)
    while queue:
        _, left, right, size = heapq.heappop(queue)
        if not nbytes[left] or not nbytes[right] or nbytes[left] + nbytes[right] != size:
            continue  # outdated: one side was merged since
        syms[left], nbytes[left], syms[right], nbytes[right] = syms[left] + syms[right], size, "", 0
        nxt[left] = nxt[right]
        if nxt[left] < len(syms):
            prev[nxt[left]] = left
        seen.add(syms[left])
        push(prev[left], left)
        push(left, nxt[left])
    return seen


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
