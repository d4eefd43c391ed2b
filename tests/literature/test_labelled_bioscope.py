"""BioScope XML: counts against the real files (recounted here from the raw XML as well as SOURCE.md's
table), cue and scope offsets checked against the elements' own text, bad input refused, demo read back."""

from __future__ import annotations

import collections
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipelines.literature.sources import bioscope
from pipelines.literature.sources.labelled import LabelledDataError

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
BIOSCOPE = DATA / "bioscope"

if not DATA.is_dir():
    pytest.fail(f"real data samples not found at {DATA}", pytrace=False)


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[bioscope.HedgeSentence]]:
    return {name: bioscope.read_bioscope(BIOSCOPE / f"{name}.xml") for name in ("abstracts", "full_papers")}


# (docs, sentences, speculation cues, negation cues, speculative sentences, negated sentences, scopes): SOURCE.md
EXPECTED = {
    "abstracts": (1273, 11871, 2694, 1757, 2101, 1597, 4378),
    "full_papers": (9, 2670, 682, 378, 519, 339, 1048),
}


@pytest.mark.parametrize("name", ["abstracts", "full_papers"])
def test_counts_match_the_files(corpus, name):
    records = corpus[name]
    cues = collections.Counter(c.kind for r in records for c in r.cues)
    counts = (
        len({r.doc_id for r in records}),
        len(records),
        cues["speculation"],
        cues["negation"],
        sum(r.speculative for r in records),
        sum(r.negated for r in records),
        sum(len(r.scopes) for r in records),
    )
    assert counts == EXPECTED[name]
    # the same numbers recounted from the raw XML with regular expressions, independently of the reader
    raw = (BIOSCOPE / f"{name}.xml").read_text(encoding="utf-8")
    assert len(re.findall(r"<sentence ", raw)) == len(records)
    assert len(re.findall(r'<cue type="speculation"', raw)) == cues["speculation"]
    assert len(re.findall(r"<xcope ", raw)) == counts[-1]
    speculative = sum('type="speculation"' in s for s in re.findall(r"<sentence .*?</sentence>", raw, re.S))
    assert speculative == counts[4]
    assert collections.Counter(r.label for r in records) == {
        "uncertain": counts[4],
        "certain": len(records) - counts[4],
    }


def test_speculative_share(corpus):
    share = {name: sum(r.speculative for r in records) / len(records) for name, records in corpus.items()}
    assert share == pytest.approx({"abstracts": 0.1770, "full_papers": 0.1944}, abs=5e-5)


def test_offsets_point_at_the_cue_and_scope_text(corpus):
    """Every span, for every sentence of both files, equals the text of its element in the XML."""
    for name, records in corpus.items():
        by_id = {r.sentence_id: r for r in records}
        for sentence in ET.parse(BIOSCOPE / f"{name}.xml").getroot().iter("sentence"):
            record = by_id[sentence.get("id")]
            assert record.text == "".join(sentence.itertext())
            assert [record.text[c.start : c.end] for c in record.cues] == [
                "".join(c.itertext()) for c in sentence.iter("cue")
            ]
            assert [record.text[s.start : s.end] for s in record.scopes] == [
                "".join(x.itertext()) for x in sentence.iter("xcope")
            ]


def test_one_sentence_in_detail(corpus):
    record = next(r for r in corpus["abstracts"] if r.sentence_id == "S1.6")
    assert (record.doc_id, record.doc_type, record.part) == ("91079577", "Biological_abstract", "AbstractText")
    assert (record.speculative, record.negated, record.label) == (True, True, "uncertain")
    assert [(c.kind, record.text[c.start : c.end], c.scope_id) for c in record.cues] == [
        ("negation", "no", "X1.6.3"),
        ("speculation", "suggesting", "X1.6.2"),
        ("negation", "not", "X1.6.1"),
    ]
    assert [(s.scope_id, s.kind, record.text[s.start : s.end]) for s in record.scopes] == [
        ("X1.6.3", "negation", "no induction of NF-KB factor was detected"),
        ("X1.6.2", "speculation", "suggesting that this factor was not required for viral replication"),
        ("X1.6.1", "negation", "not required for viral replication"),
    ]
    outer, inner = record.scopes[1], record.scopes[2]
    assert outer.start <= inner.start and inner.end <= outer.end  # nested scopes nest in offsets too
    entity = next(r for r in corpus["abstracts"] if r.sentence_id == "S2.2")
    assert "3' of E4" in entity.text  # &apos; decoded


def test_quirks_of_the_real_files(corpus):
    def outside(records):  # cues that are not inside the scope they open
        return sum(
            1
            for r in records
            for c in r.cues
            for s in r.scopes
            if s.scope_id == c.scope_id and not s.start <= c.start < c.end <= s.end
        )

    assert (outside(corpus["abstracts"]), outside(corpus["full_papers"])) == (9, 4)
    unnamed = {name: sum(s.kind is None for r in records for s in r.scopes) for name, records in corpus.items()}
    assert unnamed == {"abstracts": 0, "full_papers": 4}
    shared_refs = sum(
        1 for r in corpus["abstracts"] for n in collections.Counter(c.scope_id for c in r.cues).values() if n > 1
    )
    assert shared_refs == 72  # "either ... or": several cue elements, one scope
    parts = collections.Counter(r.part for r in corpus["full_papers"])
    assert set(parts) == {"Title", "SectionTitle", "SubSectionTitle", "Text", "FigureLegend", "TableLegend"}
    assert collections.Counter(r.doc_type for r in corpus["full_papers"]) == {"Biological_full_article": 2670}
    both = bioscope.read_bioscope(BIOSCOPE)  # the folder: both files, BioScope.dtd ignored
    assert collections.Counter(r.split for r in both) == {"abstracts": 11871, "full_papers": 2670}


HEAD = '<?xml version="1.0" encoding="utf-8"?>\n<Annotation><DocumentSet><Document type="Biological_abstract">\n<DocID type="PMID">1</DocID><DocumentPart type="AbstractText">\n'
TAIL = "</DocumentPart></Document></DocumentSet></Annotation>\n"


@pytest.mark.parametrize(
    "body, message",
    [
        ('<sentence id="S1.1">Broken <xcope id="X1">scope</sentence>', r"bad\.xml:4: malformed XML"),
        (
            '<sentence id="S1.1">A <xcope id="X1"><cue type="hedge" ref="X1">may</cue> b</xcope>.</sentence>',
            r"sentence S1\.1: cue type 'hedge'",
        ),
        (
            '<sentence id="S1.1">A <xcope id="X1"><cue type="negation" ref="X9">not</cue> b</xcope>.</sentence>',
            r"cue 'negation' refers to scope 'X9', not in the sentence",
        ),
        ('<sentence id="S1.1">  </sentence>', r"document 1, sentence S1\.1: empty text"),
        ('<sentence id="S1.1">A <b>bold</b> claim.</sentence>', r"unexpected element <b>"),
        ('<sentence id="S1.1">A.</sentence><sentence id="S1.1">B.</sentence>', r"sentence id appears twice"),
        ("<sentence>No id.</sentence>", r"a sentence without an id"),
        (
            '<sentence id="S1.1">A <xcope id="X1"><cue type="negation" ref="X1"></cue>b</xcope>.</sentence>',
            r"an empty negation cue",
        ),
    ],
)
def test_bad_input_refused(tmp_path, body, message):
    (tmp_path / "bad.xml").write_text(HEAD + body + "\n" + TAIL)
    with pytest.raises(LabelledDataError, match=message):
        bioscope.read_bioscope(tmp_path / "bad.xml")


def test_demo_round_trip(tmp_path):
    written = bioscope.write_demo_bioscope(tmp_path / "abstracts.xml", n_docs=8, seed=6)
    assert bioscope.read_bioscope(tmp_path / "abstracts.xml") == written
    assert any(r.speculative for r in written) and any(not r.speculative for r in written)
    assert any(r.negated for r in written) and any(len(r.scopes) > 1 for r in written)
    assert any(n > 1 for r in written for n in collections.Counter(c.scope_id for c in r.cues).values())  # either/or
    xml = (tmp_path / "abstracts.xml").read_text()
    assert (
        "&apos;" in xml
        and "&lt;" in xml
        and xml.startswith('<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE Annotation')
    )
