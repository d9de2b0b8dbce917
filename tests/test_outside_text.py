"""Text beyond the corpus: five kinds of registry text, sampled evenly, markup stripped, untranslated paragraphs
left out."""

import pytest

from langprune.data.languages import DEFAULT_ANALYSIS
from langprune.data.outside_text import CHARS, DOC_CHARS, SOURCES, _Paragraphs, documents, outside_corpora, strip_roff
from langprune.errors import UserError

ROFF = r""".\" a comment
.TH LS 1 "September 2022" "GNU coreutils 9.1"
.SH BEZEICHNUNG
ls \- Verzeichnisinhalte auflisten
.SH "SIEHE AUCH"
.PP
Mit \fB\-l\fP den Autor jeder Datei ausgeben, \(lqso\(rq \fI\,DATEI\/\fP\&.
.BR stat (1)
.TP
\fB\-\-block\-size\fP=\fI\,GRÖSSE\/\fP
"""


def test_roff_markup_is_stripped_to_running_text():
    assert strip_roff(ROFF) == (
        "BEZEICHNUNG\nls - Verzeichnisinhalte auflisten\nSIEHE AUCH\n"
        "Mit -l den Autor jeder Datei ausgeben, “so” DATEI.\nstat(1)\n--block-size=GRÖSSE"
    )


def test_each_source_gives_an_even_sample_per_language():
    corpora = outside_corpora(["en", "de", "ru", "ar"])
    assert set(corpora) == set(SOURCES)
    assert {source: set(c.languages) for source, c in corpora.items()} == {
        "fortunes": {"en", "de", "ru"}, "manpages": {"en", "de", "ru"}, "handbook": {"en", "de", "ru", "ar"},
        "help": {"en", "de", "ru"}, "scripture": {"ar"}}
    for source, corpus in corpora.items():
        for lang in corpus.languages:
            docs = corpus.texts[lang]["evaluation"]
            size = sum(map(len, docs))
            assert len(docs) >= 3 and len(set(docs)) == len(docs), (source, lang)
            assert CHARS <= size <= CHARS + 3 * DOC_CHARS, (source, lang, size)
            text = corpus.text(lang, "evaluation")
            assert "\\f" not in text and "\n.SH" not in text and "<p>" not in text and "class=\"" not in text
    assert outside_corpora(["en"])["fortunes"].texts == {"en": corpora["fortunes"].texts["en"]}  # deterministic
    for corpus in corpora.values():  # the sample the vocabulary is sized on is not the one the report scores
        for lang in corpus.languages:
            selection, evaluation = corpus.texts[lang]["selection"], corpus.texts[lang]["evaluation"]
            assert len(selection) >= 3 and not set(selection) & set(evaluation)


def test_every_analysis_language_has_text_beyond_the_corpus_from_two_sources_but_hindi():
    """Hindi has one: LibreOffice's help (GNOME's Hindi help is 13 translated paragraphs, the handbook has none)."""
    for lang in DEFAULT_ANALYSIS:
        sources = [source for source, by_lang in SOURCES.items() if lang in by_lang]
        assert len(sources) >= (1 if lang == "hi" else 2), (lang, sources)
        for source in sources:
            assert sum(map(len, documents(source, lang))) >= CHARS, (lang, source)  # the Korean handbook: 11k


def test_translated_pages_give_only_the_paragraphs_in_their_language():
    """A book's or help's translation keeps untranslated paragraphs in English: they are not Korean text."""
    ko = documents("handbook", "ko")
    assert 10_000 < sum(map(len, ko)) < 20_000  # 109 of the Korean handbook's 3,588 paragraphs are Korean
    letters = [ch for doc in ko for ch in doc if ch.isalpha()]
    assert sum("\uac00" <= ch <= "\ud7a3" for ch in letters) > 0.8 * len(letters)  # Hangul; the rest commands, names
    parser = _Paragraphs()
    parser.feed('<div class="para">Run <code class="command">apt</code> now.<pre>$ apt update</pre></div>'
                '<p>Second <em>one</em>.</p><h1>Title</h1>')
    assert parser.paragraphs == ["Run apt now.", "Second one."]


def test_a_missing_package_names_langprune_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="langprune prepare"):
        outside_corpora(["en"])
