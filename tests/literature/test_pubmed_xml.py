"""The PubMed XML parser on real records from ../shared/data/literature: each reader case on a record that has it.

Cases (file, PMID): labelled AbstractText with NlmCategory (pubmed5 28775130, medline16n0902 17942999), labels
without category (pubmed-29768149), no Abstract (pubmed1 12091962; Alzforum 11460100), inline markup in
abstracts and titles (pubmed4 27797938, Alzforum 29113975 and 24482835), XML escapes (pubmed5), missing MeSH
(pubmed2 11700088, pubmed5), Season and MedlineDate dates (pubmed1, Alzforum 12709467 and 10794848,
medline16n0902), non-English records (Alzforum 54472 in Russian, the 18 Italian records of medline16n0902),
the article's own DOI (Alzforum 37188781, whose 31 references carry DOIs too), and the whole Alzforum corpus
against the totals its SOURCE.md states. Broken bodies (truncated, HTML, NCBI <ERROR>) are cut from the real
files into tmp_path.
"""

from __future__ import annotations

import collections
import gzip
import re
import tracemalloc
from pathlib import Path

import pytest

from pipelines.literature.sources.pubmed import (
    Deletion,
    PubmedRecord,
    PubmedXMLError,
    iter_articles,
    iter_records,
    parse_medline_date,
)

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
XML = DATA / "pubmed_xml"
ALZ = DATA / "pubmed_efetch_alzforum"
MEDLINE_2016 = DATA / "medline_update_2016" / "medline16n0902.xml.gz"


@pytest.fixture(scope="module", autouse=True)
def _data_present():
    if not (XML.is_dir() and ALZ.is_dir() and MEDLINE_2016.is_file()):
        pytest.fail(f"the PubMed samples are not in {DATA}")


def one(path: Path, pmid: str) -> PubmedRecord:
    found = [r for r in iter_articles(path) if r.pmid == pmid]
    assert len(found) == 1, f"{path.name} should hold PMID {pmid} once"
    return found[0]


@pytest.fixture(scope="module")
def alzforum() -> list[PubmedRecord]:
    return [r for path in sorted(ALZ.glob("pubmed_*.xml.gz")) for r in iter_articles(path)]


# ---- abstracts ------------------------------------------------------------------------------------


def test_labelled_abstract_keeps_label_and_nlm_category_and_joins_the_text():
    record = one(XML / "pubmed5.xml", "28775130")
    assert [(label, category) for label, category, _ in record.abstract_parts] == [
        ("OBJECTIVES", "OBJECTIVE"),
        ("METHODS", "METHODS"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSIONS", "CONCLUSIONS"),
    ]
    assert record.abstract_parts[0][2].startswith("Animal studies suggest that exposure to pesticides may alter")
    assert record.abstract == "\n".join(text for _, _, text in record.abstract_parts)
    assert record.abstract.endswith("may alter thyroid function among male pesticide applicators.")
    assert (
        record.title
        == "Occupational pesticide exposure and subclinical hypothyroidism among male pesticide applicators."
    )


def test_labels_without_nlm_category_and_markup_inside_a_labelled_part():
    record = one(XML / "pubmed-29768149.xml", "29768149")
    assert [p[:2] for p in record.abstract_parts] == [
        ("BACKGROUND", None),
        ("METHODS", None),
        ("RESULTS", None),
        ("CONCLUSIONS", None),
    ]
    # "&#946;\n\t\t\t\t\t\t<sub>2</sub>-agonist": the entity decoded, the tag dropped, the file's indentation one space
    assert record.abstract_parts[0][2] == (
        "In patients with mild asthma, as-needed use of an inhaled glucocorticoid plus a fast-acting β 2-agonist "
        "may be an alternative to conventional treatment strategies."
    )
    assert "(200 μg of budesonide and 6 μg of formoterol)" in record.abstract
    assert (record.journal, record.year, record.month, record.doi) == (
        "The New England journal of medicine",
        2018,
        5,
        "10.1056/NEJMoa1715274",
    )


def test_record_without_abstract_element():
    record = one(XML / "pubmed1.xml", "12091962")
    assert record.abstract == "" and record.abstract_parts == []
    assert record.title == "The treatment of AIDS behind the walls of correctional facilities."
    assert record.publication_types == ["Journal Article", "Review"]
    assert record.doi is None
    news = one(ALZ / "pubmed_0_to_99.xml.gz", "11460100")  # a news item: no abstract and no MeSH (status Publisher)
    assert (news.abstract, news.mesh, news.status) == ("", [], "Publisher")
    assert news.title == "Referendum stalls Japanese nuclear power strategy."


def test_unlabelled_single_abstract_text():
    record = one(XML / "pubmed1.xml", "9997")
    assert len(record.abstract_parts) == 1 and record.abstract_parts[0][:2] == (None, None)
    assert record.abstract.startswith(
        "Electron paramagnetic resonance and magnetic susceptibility studies of Chromatium"
    )
    assert record.doi == "10.1016/0005-2795(76)90109-4"


# ---- inline markup and escapes --------------------------------------------------------------------


def test_inline_markup_is_dropped_and_its_text_kept():
    record = one(XML / "pubmed4.xml", "27797938")  # <i>TERT</i> in title and abstract, r<sup>2</sup>&lt;0.25
    assert record.title == (
        "Leucocyte telomere length, genetic variants at the TERT gene region and risk of pancreatic cancer."
    )
    assert "Three SNPs at TERT (linkage disequilibrium r2<0.25) were associated" in record.abstract
    assert "<i>" not in record.abstract and "<sup>" not in record.abstract
    assert [p[0] for p in record.abstract_parts] == ["OBJECTIVE", "DESIGN", "RESULTS", "CONCLUSIONS"]


def test_markup_in_titles_and_bold_in_abstracts_of_the_alzforum_files():
    title = one(ALZ / "pubmed_2800_to_2899.xml.gz", "29113975")  # three <i> in the title
    assert (
        title.title == "G-quadruplex-binding small molecules ameliorate C9orf72 FTD/ALS pathology in vitro and in vivo."
    )
    bold = one(ALZ / "pubmed_2200_to_2299.xml.gz", "24482835")  # <AbstractText><b>Francis S. Collins ...</b> discuss
    assert bold.abstract.startswith("Francis S. Collins and Lawrence A. Tabak discuss initiatives that the US National")


def test_xml_escapes_are_decoded():
    record = one(XML / "pubmed5.xml", "28775130")  # TSH &gt;4.5, OR<sub>Q4</sub>, p<sub>trend</sub> &lt;0.01
    assert "subclinical hypothyroidism (TSH >4.5 mIU/L)" in record.abstract
    assert "ORQ4=4.76, 95% CI 1.53 to 14.82, ptrend <0.01)" in record.abstract


# ---- MeSH, publication types, DOI --------------------------------------------------------------------


def test_missing_mesh_is_an_empty_list():
    not_medline = one(XML / "pubmed2.xml", "11700088")
    assert (not_medline.status, not_medline.mesh) == ("PubMed-not-MEDLINE", [])
    in_review = one(XML / "pubmed5.xml", "28775130")
    assert (in_review.status, in_review.mesh) == ("In-Data-Review", [])
    indexed = one(XML / "pubmed2.xml", "11748933")
    assert len(indexed.mesh) == 11 and indexed.mesh[0] == "Animals"
    assert indexed.publication_types == ["Journal Article", "Research Support, Non-U.S. Gov't"]


def test_doi_is_the_articles_own_not_a_references():
    record = one(ALZ / "pubmed_3600_to_3699.xml.gz", "37188781")  # 31 references with DOIs follow its own
    assert record.doi == "10.1038/s41591-023-02318-3"


# ---- dates ----------------------------------------------------------------------------------------


def test_year_with_season_and_year_with_month_name():
    spring = one(XML / "pubmed1.xml", "12091962")  # <Year>1990</Year><Season>Spring</Season>
    assert (spring.year, spring.month, spring.pub_date) == (1990, None, "1990 Spring")
    named = one(XML / "pubmed1.xml", "9997")  # <Year>1976</Year><Month>Sep</Month><Day>28</Day>
    assert (named.year, named.month, named.pub_date) == (1976, 9, "1976 Sep 28")
    two_months = one(ALZ / "pubmed_100_to_199.xml.gz", "10794848")  # <Season>Jan-Feb</Season>
    assert (two_months.year, two_months.month, two_months.pub_date) == (2000, 1, "2000 Jan-Feb")
    numeric = one(XML / "pubmed4.xml", "27797938")  # <Month>06</Month>, pretty-printed
    assert (numeric.year, numeric.month, numeric.pub_date) == (2017, 6, "2017 06")


def test_medline_date_gives_year_and_first_month():
    record = one(ALZ / "pubmed_0_to_99.xml.gz", "12709467")  # <MedlineDate>2003 Apr 23-30</MedlineDate>
    assert (record.year, record.month, record.pub_date) == (2003, 4, "2003 Apr 23-30")
    quarter = one(MEDLINE_2016, "26702167")  # <MedlineDate>2015 Oct-Dec</MedlineDate>
    assert (quarter.year, quarter.month) == (2015, 10)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1998 Dec-1999 Jan", (1998, 12)),  # NLM's documented forms: a range over the new year files under its start
        ("2000 Spring", (2000, None)),
        ("2000 Dec 21-28", (2000, 12)),  # in pubmed_0_to_99 (11140684)
        ("2015 Oct-Dec", (2015, 10)),  # 59 records of medline16n0902
        ("Winter 1987-1988", (1987, None)),
        ("", (None, None)),
    ],
)
def test_parse_medline_date(text, expected):
    assert parse_medline_date(text) == expected


# ---- non-English records ----------------------------------------------------------------------------


def test_non_english_record_keeps_language_and_vernacular_title():
    record = one(ALZ / "pubmed_1800_to_1899.xml.gz", "54472")  # the one Russian record of the 3690
    assert record.languages == ["rus"]
    assert record.title == "[Method of determination of total 17-ketosteroids and their fractions]."
    assert record.vernacular_title == "K metodu opredeleniia summarnykh i po fraktsiiam 17-ketosteroidov."
    assert (record.journal, record.year, record.abstract) == ("Laboratornoe delo", 1975, "")


def test_italian_records_of_the_2016_medline_file():
    italian = [r for r in iter_articles(MEDLINE_2016) if "ita" in r.languages]
    assert len(italian) == 18  # SOURCE.md: 18 <Language>ita</Language>, 18 VernacularTitle
    assert all(r.vernacular_title for r in italian)
    first = italian[0]
    assert (first.pmid, first.title, first.vernacular_title) == (
        "26407462",
        "[Vaccines are drugs].",
        "I vaccini sono farmaci.",
    )


# ---- whole files ----------------------------------------------------------------------------------


def test_alzforum_corpus_matches_its_documented_totals(alzforum):
    assert len(alzforum) == 3690 and len({r.pmid for r in alzforum}) == 3690
    assert sum(bool(r.abstract) for r in alzforum) == 3579
    assert sum(bool(r.mesh) for r in alzforum) == 3633
    years = [r.year for r in alzforum]
    assert None not in years and (min(years), max(years)) == (1964, 2024)
    decades = collections.Counter(y // 10 * 10 for y in years)
    assert decades == {1960: 5, 1970: 12, 1980: 75, 1990: 147, 2000: 1573, 2010: 1293, 2020: 585}
    assert collections.Counter(lang for r in alzforum for lang in r.languages) == {"eng": 3689, "rus": 1}
    assert alzforum[0].pmid == "19622817" and alzforum[0].doi == "10.1001/jama.2009.1064"


def test_2016_medline_citation_set_format():
    items = list(iter_records(MEDLINE_2016))
    records = [r for r in items if isinstance(r, PubmedRecord)]
    assert [d for d in items if isinstance(d, Deletion)] == [Deletion(pmids=["26432306"])]
    assert isinstance(items[-1], Deletion)  # the DeleteCitation closes the file
    assert len(records) == 604
    assert sum(bool(r.abstract) for r in records) == 526 and sum(bool(r.mesh) for r in records) == 94
    assert collections.Counter(r.status for r in records) == {
        "MEDLINE": 94,
        "PubMed-not-MEDLINE": 254,
        "In-Process": 181,
        "In-Data-Review": 75,
    }
    assert (min(r.year for r in records), max(r.year for r in records)) == (2007, 2016)
    first = records[0]  # no PubmedData in this format; DOIs come from ELocationID
    assert (first.pmid, first.journal, first.doi) == ("17942999", "Restorative neurology and neuroscience", None)
    assert [p[:2] for p in first.abstract_parts] == [
        ("PURPOSE", "OBJECTIVE"),
        ("METHODS", "METHODS"),
        ("RESULTS", "RESULTS"),
        ("CONCLUSIONS", "CONCLUSIONS"),
    ]
    assert one(MEDLINE_2016, "18621939").doi == "10.1176/appi.psy.49.4.332"
    assert sum(r.doi is not None for r in records) == 579  # 579 ELocationID EIdType="doi"


def test_memory_stays_flat_on_a_large_file(tmp_path):
    """Five real files joined into one 18 MB document: the parser's peak stays that of a few records."""
    names = [
        "pubmed_3200_to_3299",
        "pubmed_3300_to_3399",
        "pubmed_3400_to_3499",
        "pubmed_3500_to_3599",
        "pubmed_3600_to_3699",
    ]
    texts = [gzip.decompress((ALZ / f"{n}.xml.gz").read_bytes()) for n in names]
    head = texts[0][: texts[0].index(b"<PubmedArticle>")]
    body = b"".join(t[t.index(b"<PubmedArticle>") : t.rindex(b"</PubmedArticleSet>")] for t in texts)
    big = tmp_path / "joined.xml.gz"
    big.write_bytes(gzip.compress(head + body + b"</PubmedArticleSet>\n", compresslevel=1))
    size = len(head) + len(body)
    del texts, body
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_articles(big))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 500 and size > 18_000_000
    assert peak < 8_000_000, f"peak {peak:,} bytes for a {size:,}-byte file: records are not being cleared"


# ---- bad input ------------------------------------------------------------------------------------


def test_truncated_xml_names_file_line_and_last_record(tmp_path):
    text = (XML / "pubmed2.xml").read_bytes()
    cut = tmp_path / "pubmed2_cut.xml"
    cut.write_bytes(text[: text.index(b"<PMID", text.index(b"11700088") - 40) + 200])  # into the second record
    got = []
    with pytest.raises(PubmedXMLError) as err:
        got.extend(iter_articles(cut))
    message = str(err.value)
    assert str(cut) in message and "line 4" in message and "truncated" in message  # line 4 holds the records
    assert "after record #1 (PMID 11748933)" in message
    assert [r.pmid for r in got] == ["11748933"]  # what came before the cut: a writer must not keep it alone


def test_truncated_gzip_names_the_file(tmp_path):
    data = (ALZ / "pubmed_1800_to_1899.xml.gz").read_bytes()
    cut = tmp_path / "pubmed_1800_to_1899.xml.gz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(PubmedXMLError, match=re.escape(str(cut)) + ".*(gzip stream is truncated|truncated download)"):
        list(iter_articles(cut))


HTML_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)  # the shape of nginx's stock error page (its <hr> is not closed)


def test_html_error_page_is_not_taken_for_xml(tmp_path):
    page = tmp_path / "efetch_00000.xml"
    page.write_bytes(HTML_PAGE)
    with pytest.raises(PubmedXMLError, match=r"efetch_00000.xml: root element <html>, not PubmedArticleSet.*HTML page"):
        list(iter_articles(page))
    not_xml = b"<!DOCTYPE html>\n<html lang=en><body><h1>Service unavailable</h1></body></html>"  # unquoted attribute
    with pytest.raises(
        PubmedXMLError, match=r"<body>: not well-formed XML at line 2, .*first record; it is an HTML page"
    ):
        list(iter_articles(not_xml))
    with pytest.raises(PubmedXMLError, match="it is empty"):
        list(iter_articles(b""))


def test_ncbi_error_answer_is_reported_with_its_text():
    body = (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN" '
        b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n<eFetchResult>\n\t<ERROR>Cannot retrieve '
        b"history data. query_key: 1, WebEnv: MCID_6927d6e7fee3e90f880ec190, retstart: 0, retmax: 100</ERROR>\n</eFetchResult>\n"
    )  # crafted in NCBI's shape; no saved real one in ../shared
    with pytest.raises(PubmedXMLError, match="NCBI answered with an error: Cannot retrieve history data") as err:
        list(iter_articles(body, "efetch batch 0"))
    assert err.value.ncbi_error.startswith("Cannot retrieve history data. query_key: 1")


def test_a_gz_name_holding_plain_xml_is_read_by_its_content(tmp_path):
    plain = tmp_path / "pubmed1.xml.gz"  # not gzipped: recognised by the missing magic bytes
    plain.write_bytes((XML / "pubmed1.xml").read_bytes())
    assert [r.pmid for r in iter_articles(plain)] == ["12091962", "9997"]
