import pytest

from langprune.data.corpus import available_languages, folder_corpus, parse_udhr, udhr_corpus, udhr_dir
from langprune.data.languages import LANGUAGES, parse_codes
from langprune.errors import UserError


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


def test_a_language_outside_the_table_has_the_scripts_of_its_own_text(tmp_path):
    from langprune.cuts.vocab import script_classes

    text = "\n\n".join([f"Привет мир, это текст номер {i}." for i in range(800)] + ["one stray English word"])
    (tmp_path / "xx.txt").write_text(text)
    (tmp_path / "en.txt").write_text(text.replace("Привет мир, это текст", "Hello world, this is text"))
    corpus = folder_corpus(tmp_path, ["xx", "en"])
    assert script_classes(["xx"], corpus) == {"COMMON", "CYRILLIC"}  # the stray Latin word is under 0.2% of its letters
    assert script_classes(["en", "xx"], corpus) == {"COMMON", "LATIN", "CYRILLIC"}


def test_an_export_from_a_users_folder_of_only_the_kept_languages_and_one_outside_the_table(tmp_path):
    """`--corpus DIR`: the analysis languages are the folder's; with only the kept ones the report says there was
    nothing to contrast; a language outside the built-in table is an ordinary dropped (or kept) language."""
    import json

    from langprune.options import ExportOptions
    from langprune.pipeline import run_export
    from tests.tiny import save_tiny

    model = str(save_tiny("llama", tmp_path / "llama"))
    udhr = udhr_corpus(["en", "de"])
    for folder, files in (("two", {"en": udhr, "de": udhr}), ("three", {"en": udhr, "de": udhr, "eo": None})):
        (tmp_path / folder).mkdir()
        for code, source in files.items():
            docs = (source.texts[code]["calibration"] + source.texts[code]["evaluation"] if source else
                    parse_udhr((udhr_dir() / "epo.html").read_text()))
            (tmp_path / folder / f"{code}.txt").write_text("\n\n".join(d.replace("\n", " ") for d in docs))
    reports = {}
    for folder, kept in (("two", ["en", "de"]), ("three", ["en", "eo"])):
        options = ExportOptions(langs=kept, model=model, heads=0.25, layout="free", reps=1, threads=(1,),
                                quant=["Q4_K_M"], corpus=str(tmp_path / folder), out=tmp_path / f"out-{folder}")
        out = run_export(options)
        reports[folder] = json.loads((out / "report.json").read_text()), (out / "report.md").read_text()
    report, text = reports["two"]
    assert report["languages"]["dropped"] == [] and "The corpus has no other language" in text
    assert "dropped languages (mean)" not in text and "UDHR" not in text
    assert f"every fifth paragraph of each <lang>.txt in {tmp_path / 'two'}" in text
    report, text = reports["three"]
    assert report["languages"] == {"kept": ["en", "eo"], "dropped": ["de"], "dropped_documents": 3}
    assert set(report["quality"]["gguf Q4_K_M"]["after"]) == {"en", "eo", "de"}
