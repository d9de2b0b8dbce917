"""Vocabulary trimming: keep the tokens the kept languages use, shrink the embedding and output layer.

A multilingual vocabulary spends most of its rows on scripts a deployment never sees (Gemma 3:
262,144 tokens, two thirds of its weights). `kept_tokens` picks the rows to keep, from evidence
that holds beyond the corpus:

1. corpus: the calibration text of the kept languages, tokenized by a simulation of llama.cpp's
   algorithm that records every token formed on the way, not only the final ones. SentencePiece
   BPE ('llama') merges the adjacent pair whose merged token scores highest, leftmost first; a
   token is only reached if the tokens merged into it exist. When every formed token is kept, the
   trimmed tokenizer makes the same choices at every step (the pair chosen is always still there,
   and no pair the full vocabulary lacks can appear), so this text tokenizes exactly as before.
   Byte-level BPE ('gpt2'): the tokens used plus the merges that build them, recursively.
2. script: every single-character token of the languages' scripts (`languages.py`, recognised
   by the first word of the Unicode character name), of every other script their text is
   measured to write (`script_classes`: Latin inside Japanese, Chinese, Korean, Hindi, Russian),
   and of punctuation, digits and symbols.
3. bytes (`<0xXX>`, or byte-level BPE's 256 byte symbols), so any text still tokenizes; named
   control tokens and bos/eos/unk/pad (not `<unusedN>`); user-defined tokens that are whitespace
   runs or made of kept characters.
Then, while the vocabulary size asked for allows, each with the tokens its merge path forms:
4. symbols: every token without a letter (whitespace runs, punctuation, digits: any language's
   text and code use them), by the vocabulary's own rank;
5. words: the kept languages' most frequent words from `wordfreq` (web, subtitles, news, books,
   Wikipedia), up to WORDS per language, ranks interleaved across languages, each in lower case,
   capitalised and upper case, after a space and not: they tokenize as with the full vocabulary;
6. fill-up: multi-character tokens made of the scripts' characters, ranked by `predicted_usage`
   (the model's own next-token probabilities on the kept languages' text).
7. alignment: the next tokens of that ranking (each with its merge path), then where the scripts'
   tokens are all kept already the other scripts' by the same ranking, that make the count a
   multiple of ROW_MULTIPLE, so the output layer's rows are one too: llama.cpp's CPU backend takes
   its fastest path for a matrix only at the row counts of CPU_ROW_MULTIPLES, and else runs the
   plain dot product (docs/benchmarks.md measures what that costs). Tokens of the original
   vocabulary, any of them: the corpus still tokenizes exactly as before.
Every character of a kept token is kept as a token too: Hugging Face's BPE falls back to bytes
for a character outside the vocabulary before merging, llama.cpp only at the end.

`trimmed_vocab` renumbers the vocabulary (new id = position in the kept list), `trim_embeddings`
cuts the model's rows the same way, and `tokenization_agreement` measures how much of a text
still tokenizes as with the full vocabulary. Measured on Gemma 3 270M for en,de, original
tokenizer against trimmed, on text beyond the corpus (`outside_text`): with steps 1-3 and the
fill-up alone (40,960 tokens) English took +11.5% tokens on fortunes and +10.6% on manual pages;
with the default steps (131,071 tokens: 108,862 from words) +0.05% and +0.13%, German +0.00%
and +0.16%.
"""

import heapq
import math
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from ..data.languages import LANGUAGES
from ..model.tokenizer import CONTROL, NORMAL, USER_DEFINED, GGUFVocab
from .merges import Merger

TOKENS_PER_LANGUAGE = 65536  # default vocabulary size: this many tokens per kept language
WORDS = 100_000  # frequent words per kept language (wordfreq), in three casings
PRIOR_WEIGHT = 0.5  # ranking by usage: log usage - PRIOR_WEIGHT * log(rank in the vocabulary)
# The row counts at which llama.cpp's CPU backend takes a matrix into its fast paths, as llama-cpp-python 0.3.36 vendors
# it: AMX (ggml-cpu/amx/amx.cpp, supports_op: output rows % (TILE_N * 2), TILE_N = 16; Intel Xeons since Sapphire
# Rapids); the interleaved repacks (ggml-cpu/repack.cpp, ggml_repack_get_optimal_repack_type: rows % 8 on x86 AVX2
# for Q4_0, Q4_K, IQ4_NL; % 4 on Arm for Q4_0, IQ4_NL, Q8_0, % 8 for its K-quants; % 16 on RISC-V)
CPU_ROW_MULTIPLES = {"x86 AMX": 32, "x86 AVX2 repack": 8, "Arm repack": 8, "RISC-V repack": 16}
ROW_MULTIPLE = math.lcm(*CPU_ROW_MULTIPLES.values())  # the kept count is a multiple of every one (step 7): 32

# Script (languages.py) -> first words of the Unicode names of its letters. Default: the name upper-cased.
SCRIPT_NAMES = {
    "Han": {"CJK", "IDEOGRAPHIC", "FULLWIDTH", "HALFWIDTH"},
    "Japanese": {"CJK", "IDEOGRAPHIC", "HIRAGANA", "KATAKANA", "KATAKANA-HIRAGANA", "FULLWIDTH", "HALFWIDTH"},
    "Hangul": {"HANGUL", "FULLWIDTH", "HALFWIDTH"},
}
COMMON = "COMMON"  # punctuation, digits, symbols, spaces, combining marks: shared by all scripts
# A language writes a script that is this share of the letters of its text (script_classes): in the gap
# between the foreign scripts measured in the 12 analysis languages' frequent words, 0.46% (Latin in Arabic)
# and more where a script is written, 0.076% and less where it is not (Han in Korean)
TEXT_SCRIPT_SHARE = 0.002
_UNUSED = re.compile(r"<unused\d+>")


PARTS = ("corpus", "script", "bytes", "special", "user_defined", "symbols", "words", "fill", "alignment")


@dataclass
class KeptTokens:
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


def script_classes(langs, corpus) -> set[str]:
    """The character classes the languages write: their script's (the table in `languages.py`), and
    every class that makes up at least TEXT_SCRIPT_SHARE of the letters of what text in the language
    contains: its calibration text, and its frequent words weighted by frequency (`wordfreq`: web,
    subtitles, news, books). Measured on wordfreq's 100,000 most frequent words: Latin is 4.2% of
    Korean letters, 3.7% of Japanese, 3.6% of Chinese, 1.9% of Hindi, 0.65% of Russian, 0.46% of
    Arabic (commands, names and loanwords: Arabic technical text, the Debian handbook, takes 18%
    more tokens without them); no other foreign script is above 0.08% of any of the 12 analysis
    languages (the most: Han, 0.076% of Korean)."""
    names = {COMMON}
    for code in langs:
        if code in LANGUAGES:
            script = LANGUAGES[code].script
            names |= SCRIPT_NAMES.get(script, {script.upper()})
        for counts in (_letter_classes(ch for doc in corpus.texts[code]["calibration"] for ch in doc),
                       _word_letter_classes(code)):
            total = sum(counts.values())
            names |= {name for name, n in counts.items() if n >= TEXT_SCRIPT_SHARE * total}
    return names


def _letter_classes(chars, weight: float = 1.0, counts: Counter | None = None) -> Counter:
    """Weight per character class of the letters among chars (COMMON left out)."""
    counts = Counter() if counts is None else counts
    for ch in chars:
        name = char_class(ch)
        if name != COMMON:
            counts[name] += weight
    return counts


@lru_cache(maxsize=32)
def _word_letter_classes(lang: str) -> Counter:
    """`_letter_classes` of a language's WORDS most frequent words, each weighted by its frequency."""
    import wordfreq

    if lang not in wordfreq.available_languages(wordlist="best"):
        return Counter()
    # the raw list: word_frequency() would tokenize, which needs jieba for Chinese
    frequencies = wordfreq.get_frequency_dict(lang, wordlist="best")
    counts = Counter()
    for word, frequency in heapq.nlargest(WORDS, frequencies.items(), key=lambda item: item[1]):
        _letter_classes(word, frequency, counts)
    return counts


def kept_tokens(vocab: GGUFVocab, corpus, langs, size: int | None = None, usage=None, words: int = WORDS,
                multiple: int = ROW_MULTIPLE) -> list[int]:
    """Sorted ids of the original vocabulary to keep for `langs` (see `select_tokens`)."""
    return select_tokens(vocab, corpus, langs, size, usage, words, multiple).keep


def select_tokens(vocab: GGUFVocab, corpus, langs, size: int | None = None, usage=None,
                  words: int = WORDS, multiple: int = ROW_MULTIPLE) -> KeptTokens:
    """The tokens to keep for `langs`, by the step that chose them (see the module docstring).

    size: how many at most (default TOKENS_PER_LANGUAGE per language); steps 1-3 are always kept, so
    the result is larger where they alone exceed it. usage: a value per token (`predicted_usage`)
    that ranks the fill-up; without it, the rank in the vocabulary. words: frequent words per
    language (0: none). multiple: step 7's (1: none); the fill-up stops at the multiple below
    `size`, and step 7 never takes a count within `size` past it.
    """
    asked = TOKENS_PER_LANGUAGE * len(langs) if size is None else size
    size = asked - asked % multiple
    merger = Merger(vocab)
    classes = script_classes(langs, corpus)
    sel = KeptTokens()
    sel.add("corpus", merger.used([doc for lang in langs for doc in corpus.texts[lang]["calibration"]]))
    chars, letters, symbols = [], [], []
    for i, kind in enumerate(vocab.types):
        text = merger.text(i)
        if kind == NORMAL and text and all(char_class(c) in classes for c in text):
            if len(text) == 1:
                if unicodedata.category(text) not in ("Co", "Cn", "Cs"):  # not private use or unassigned
                    chars.append(i)
            elif all(char_class(c) == COMMON for c in text):
                symbols.append(i)
            else:
                letters.append(i)
    sel.add("script", chars)
    sel.add("bytes", merger.byte_ids())
    named = {vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.pad_id} - {None}
    sel.add("special", named | {i for i, (t, k) in enumerate(zip(vocab.tokens, vocab.types))
                                if k == CONTROL and not _UNUSED.fullmatch(t)})
    sel.add("user_defined", [i for i, (t, k) in enumerate(zip(vocab.tokens, vocab.types)) if k == USER_DEFINED
                             and (not t.strip() or all(char_class(c) in classes for c in t))])
    sel.add("script", merger.characters(sel.kept))  # the characters of every kept token

    symbols.sort(key=merger.rank)
    if usage is None:
        ranking = merger.rank
    else:  # the model's frequency estimate, leaning towards the vocabulary's generally frequent tokens
        usage = usage.tolist() if hasattr(usage, "tolist") else usage

        def ranking(i):
            return PRIOR_WEIGHT * math.log(merger.rank(i) + 2) - math.log(usage[i] + 1e-12)
    letters.sort(key=ranking)
    kept, candidates = sel.kept, set(symbols) | set(letters)
    for part, groups in (("symbols", (merger.path(i) for i in symbols)),
                         ("words", merger.each_formed(word_forms(langs, words, classes))),
                         ("fill", (merger.path(i) for i in letters))):
        if candidates <= kept:
            break  # every token of the scripts is kept already (a small vocabulary)
        added = _fill(kept, groups, size, merger)
        sel.add(part, added)
        kept |= added
    if len(kept) % multiple:
        others = sorted((i for i, k in enumerate(vocab.types) if k == NORMAL and i not in candidates), key=ranking)
        sel.add("alignment", _align(kept, letters + symbols + others, asked, multiple, merger))
    return sel


def _fill(kept: set[int], groups, size: int, merger, skip: bool = False) -> set[int]:
    """Add each group (a token's or word's merge path, with its characters) while `size` allows; at the first that
    overshoots stop, or with `skip` pass over it."""
    added = set()
    for group in groups:
        if len(kept) + len(added) >= size:
            break
        new = (group | merger.characters(group)) - kept - added
        if len(kept) + len(added) + len(new) > size:
            if skip:
                continue
            break
        added |= new
    return added


def _align(kept: set[int], ranked: list[int], size: int, multiple: int, merger) -> set[int]:
    """The first of the `ranked` tokens (with their merge paths) that bring the count up to a multiple of `multiple`,
    those that overshoot passed over; none if they run out first, or where the count would pass a `size` it is
    within."""
    target = len(kept) + -len(kept) % multiple
    if len(kept) <= size < target:
        return set()
    added = _fill(kept, (merger.path(i) for i in ranked if i not in kept), target, merger, skip=True)
    return added if len(kept) + len(added) == target else set()


def frequent_words(lang: str, n: int) -> list[str]:
    """The n most frequent words of a language by `wordfreq` (empty if it has no data for it)."""
    import wordfreq

    if lang not in wordfreq.available_languages(wordlist="best"):
        return []
    return wordfreq.top_n_list(lang, n, wordlist="best")


def word_forms(langs, n: int, classes: set[str]):
    """Each frequent word in its casings, after a space and not, as texts to tokenize together:
    ranks interleaved across languages (the first word of each, then the second, ...). Words
    written in other scripts than the kept languages' (`script_classes`; web text quotes them) are
    left out."""
    lists = [[w for w in frequent_words(lang, n) if all(char_class(c) in classes for c in w)] for lang in langs]
    for rank in range(max(map(len, lists), default=0)):
        for words in lists:
            if rank < len(words):
                forms = dict.fromkeys((words[rank], words[rank].capitalize(), words[rank].upper()))
                yield [text for form in forms for text in (" " + form, form)]


def predicted_usage(model, tokenizer, corpus, langs, tokens: int = 1024, stride: int = 2) -> torch.Tensor:
    """The model's mean next-token probability of every token over the kept languages' text.

    Per language, about `tokens` tokens of calibration text (chunks spread over the documents)
    go through the model; the predicted distributions at every `stride`-th position are averaged,
    and the languages weigh equally. The model spreads probability over the words that could come
    next in that language, so this ranks its vocabulary well beyond the words the text uses.
    """
    from ..data.evaluate import chunks

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
