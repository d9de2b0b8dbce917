"""Text from outside the corpus: checks that a cut holds beyond the corpus it was chosen on.

Two sources of different kinds, both Debian packages that `make setup` downloads once (pinned
versions, `OUTSIDE_PACKAGES` in the Makefile) and unpacks into `.cache/outside/<package>/`:
- `fortunes`: fortune-cookie files (quotes, jokes, anecdotes, verse, dialogue);
- `manpages`: manual pages (commands, system calls, file formats), roff markup stripped.
Per language, documents are drawn evenly over the whole package (every k-th fortune or page,
in sorted order) up to about `CHARS` characters, so a sample is neither one file nor one topic.
The export scores the kept languages' text and counts the dropped languages' tokens
(`checks.verify_outside`) on one sample ("evaluation"); the vocabulary's size is checked on another,
disjoint one ("selection"). Nothing else reads them; software translation catalogs (gettext) are
not used anywhere.
"""

import gzip
import re
import shlex
from pathlib import Path

from ..errors import UserError
from ..paths import cache_dir
from .corpus import Corpus

CHARS = 8000  # characters per language and source
DOC_CHARS = 800  # at most this much of one manual page; fortunes are joined up to this size

# source -> language -> (package, folder inside it)
SOURCES = {
    "fortunes": {
        "en": ("fortunes", "usr/share/games/fortunes"),
        "de": ("fortunes-de", "usr/share/games/fortunes/de"),
        "es": ("fortunes-es", "usr/share/games/fortunes/es"),
        "it": ("fortunes-it", "usr/share/games/fortunes"),
        "ru": ("fortunes-ru", "usr/share/games/fortunes/ru"),
        "zh": ("fortunes-zh", "usr/share/games/fortunes"),
    },
    "manpages": {
        "en": ("manpages", "usr/share/man"),
        "de": ("manpages-de", "usr/share/man/de"),
        "fr": ("manpages-fr", "usr/share/man/fr"),
        "es": ("manpages-es", "usr/share/man/es"),
        "ru": ("manpages-ru", "usr/share/man/ru"),
        "ja": ("manpages-ja", "usr/share/man/ja"),
        "zh": ("manpages-zh", "usr/share/man/zh_CN"),
    },
}
KINDS = {"fortunes": "fortune cookies: quotes, jokes, verse, dialogue", "manpages": "manual pages: technical"}


def outside_dir() -> Path:
    return cache_dir() / "outside"


def outside_corpora(langs: list[str]) -> dict[str, Corpus]:
    """{source: Corpus} with two disjoint samples for each language the source has: "evaluation",
    which the report scores and nothing else reads, and "selection", the documents half-way between
    them, which the vocabulary's size may be checked on (`cuts.plan.trim_vocab`)."""
    out = {}
    for source, by_lang in SOURCES.items():
        texts = {}
        for lang in langs:
            if lang in by_lang:
                package, folder = by_lang[lang]
                root = outside_dir() / package / folder
                if not root.is_dir():
                    raise UserError(f"{root} is missing: run `make setup` (it unpacks Debian's {package})")
                docs = _fortunes(root) if source == "fortunes" else _manpages(root)
                stride = _stride(docs, CHARS)
                texts[lang] = {"evaluation": _spread(docs, CHARS, stride), "selection": _spread(docs[stride // 2:], CHARS, stride)}
        out[source] = Corpus(texts, f"debian:{source}")
    return out


def _stride(docs: list[str], chars: int) -> int:
    """k such that every k-th document gives about `chars` characters (at least 2: two disjoint samples)."""
    return max(2, sum(len(d) for d in docs) // chars)


def _spread(docs: list[str], chars: int, stride: int) -> list[str]:
    """Every stride-th document, up to about `chars` characters."""
    picked, size = [], 0
    for doc in docs[::stride]:
        if size >= chars:
            break
        picked.append(doc)
        size += len(doc)
    return picked


def _text_files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file() and p.suffix not in (".dat", ".u8"))


def _fortunes(root: Path) -> list[str]:
    """The package's own fortune files (not its offensive `off/` ones), each fortune a paragraph,
    joined into documents of about DOC_CHARS."""
    fortunes = []
    for path in _text_files(root, "*"):  # every file is UTF-8 (the .u8 names are links to them)
        text = path.read_text(encoding="utf-8")
        fortunes += [f.strip() for f in re.split(r"^%$", text, flags=re.M) if f.strip()]
    docs, current = [], ""
    for fortune in fortunes:
        current = f"{current}\n\n{fortune}" if current else fortune
        if len(current) >= DOC_CHARS:
            docs.append(current)
            current = ""
    return docs + ([current] if current else [])


def _manpages(root: Path) -> list[str]:
    pages = []
    for path in sorted(root.glob("man*/*.gz")):
        text = strip_roff(gzip.decompress(path.read_bytes()).decode("utf-8"))
        if len(text) > 200:  # not a stub that only includes another page
            pages.append(text[:DOC_CHARS].rsplit("\n", 1)[0])
    return pages


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
            line = " ".join(words) if name in ("SH", "SS", "B", "I", "SM", "SB") else "".join(words)  # BR etc. alternate fonts
        line = _OTHER.sub("", _ESCAPE.sub(lambda m: _ESCAPES[m.group()], _FONT.sub("", line)))
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
