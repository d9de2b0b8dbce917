import pytest

from toolchain.data.corpus import available_languages, folder_corpus, parse_udhr, udhr_corpus, udhr_dir
from toolchain.data.languages import LANGUAGES, parse_codes
from toolchain.errors import UserError


def test_every_table_language_has_its_udhr_text():
    assert available_languages() == sorted(LANGUAGES)
    assert len(LANGUAGES) >= 70


def test_udhr_parses_to_preamble_and_thirty_articles():
    units = parse_udhr((udhr_dir() / "eng.html").read_text())
    assert len(units) == 31
    assert units[1].startswith("Article 1\n")
    assert units[30].startswith("Article 30\n")


def test_splits_are_disjoint_fixed_and_by_article():
    corpus = udhr_corpus(["en", "zh", "ar"])
    for lang in corpus.languages:
        cal, ev = corpus.texts[lang]["calibration"], corpus.texts[lang]["evaluation"]
        assert len(cal) == 25 and len(ev) == 6
        assert not set(cal) & set(ev)
    titles = [doc.split("\n")[0] for doc in corpus.texts["en"]["evaluation"]]
    assert titles == [f"Article {n}" for n in (5, 10, 15, 20, 25, 30)]
    assert corpus.fingerprint() == udhr_corpus(["en", "zh", "ar"]).fingerprint()
    assert corpus.fingerprint() != udhr_corpus(["en", "zh"]).fingerprint()


def test_unknown_language_names_close_matches_and_the_available_ones():
    with pytest.raises(UserError) as err:
        parse_codes("en,dee")
    message = str(err.value)
    assert "'dee'" in message and "de" in message.split("Did you mean:")[1].split("?")[0]
    assert "Available: af, am, ar" in message
    with pytest.raises(UserError, match="Did you mean: de"):
        parse_codes("german")
    with pytest.raises(UserError, match="no language given"):
        parse_codes(" , ")
    assert parse_codes("EN, de,en") == ["en", "de"]


def test_user_text_folder(tmp_path):
    paragraphs = [f"Paragraph {i} in English." for i in range(1, 12)]
    (tmp_path / "en.txt").write_text("\n\n".join(paragraphs))
    (tmp_path / "xx.txt").write_text("one\n\ntwo")
    corpus = folder_corpus(tmp_path, ["en"])
    assert corpus.texts["en"]["evaluation"] == ["Paragraph 5 in English.", "Paragraph 10 in English."]
    assert len(corpus.texts["en"]["calibration"]) == 9
    assert available_languages(tmp_path) == ["en", "xx"]
    with pytest.raises(UserError, match="at least 5"):
        folder_corpus(tmp_path, ["xx"])
    with pytest.raises(UserError, match="unknown language code 'de'.*Available: en, xx"):
        folder_corpus(tmp_path, ["de"])
