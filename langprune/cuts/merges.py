"""The tokens llama.cpp's tokenizer forms on the way to its result, not only the final ones (`Merger`): what
the vocabulary's selection keeps so that kept text tokenizes as before. SentencePiece BPE is simulated in
pure Python (split over the cores), byte-level BPE reads its merges."""

import heapq
import itertools
import multiprocessing
import os
import re
import sys

from ..model.tokenizer import BYTE, NORMAL, USER_DEFINED, GGUFVocab, tokenizer_from_vocab


class Merger:
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

    def each_formed(self, groups, batch: int = 1024):
        """For each list of texts, every token formed tokenizing each text alone (a leading space
        stays a space, no prefix added), the merge paths included. Lazy, in batches."""
        if self.spm:  # pure Python, 1.2M texts for en,de, split over the cores (select_tokens 28.8 s on 1, 19.4 s on 2)
            cores = len(os.sched_getaffinity(0)) if sys.platform == "linux" else 1
            try:
                if cores == 1:
                    _set_worker_merger(self)
                    yield from map(_spm_group, groups)
                else:  # spawned, not forked: a fork of a process whose torch threads hold a lock can hang (seen once,
                    #    in the suite's export); the merger goes to each worker once, not per task
                    with multiprocessing.get_context("spawn").Pool(cores, _set_worker_merger, (self,)) as pool:
                        yield from pool.imap(_spm_group, groups, chunksize=512)
            finally:
                _set_worker_merger(None)  # not holding the vocabulary after the selection
            return
        tokenizer, groups = tokenizer_from_vocab(self.vocab), iter(groups)
        while chunk := list(itertools.islice(groups, batch)):
            encoded = iter(tokenizer([t for texts in chunk for t in texts], add_special_tokens=False)["input_ids"])
            for texts in chunk:
                ids = {i for _ in texts for i in next(encoded)}
                yield {j for i in ids for j in self.path(i)}

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


_WORKER_MERGER: "Merger | None" = None


def _set_worker_merger(merger: "Merger | None") -> None:
    global _WORKER_MERGER
    _WORKER_MERGER = merger


def _spm_group(texts: list[str]) -> set[int]:
    """`Merger.each_formed` of one group of texts, SentencePiece, with the merger the pool's parent gave."""
    return set().union(*(_WORKER_MERGER._spm_formed(t, fragments=False) for t in texts))


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
