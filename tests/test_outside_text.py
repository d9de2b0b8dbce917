"""Text beyond the corpus: Debian's fortunes and manual pages, sampled evenly, roff stripped."""

import pytest

from toolchain.data.outside_text import CHARS, DOC_CHARS, SOURCES, outside_corpora, strip_roff
from toolchain.errors import UserError

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
    for source, corpus in corpora.items():
        assert set(corpus.languages) == {"en", "de", "ru"}  # no Arabic in either package
        for lang in corpus.languages:
            docs = corpus.texts[lang]["evaluation"]
            size = sum(map(len, docs))
            assert len(docs) >= 5 and len(set(docs)) == len(docs), (source, lang)
            assert CHARS <= size <= CHARS + 3 * DOC_CHARS, (source, lang, size)
            assert "\\f" not in corpus.text(lang, "evaluation") and "\n.SH" not in corpus.text(lang, "evaluation")
    assert outside_corpora(["en"])["fortunes"].texts == {"en": corpora["fortunes"].texts["en"]}  # deterministic
    for corpus in corpora.values():  # the sample the vocabulary is sized on is not the one the report scores
        for lang in corpus.languages:
            selection, evaluation = corpus.texts[lang]["selection"], corpus.texts[lang]["evaluation"]
            assert len(selection) >= 5 and not set(selection) & set(evaluation)


def test_a_missing_package_names_make_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("LANGPRUNE_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="make setup"):
        outside_corpora(["en"])
