"""PubMed XML to plain records: E-utilities efetch answers, baseline/update files and the 2016 MEDLINE format.

    for record in iter_articles("efetch_00000.xml"):            # one PubmedRecord per PubmedArticle
        record.pmid, record.title, record.abstract, record.year, record.mesh, ...

    for record in read_files(sorted(Path("mirror").glob("pubmed25n*.xml.gz"))):   # md5 checked, deletions applied
        ...

Two layouts hold the same MedlineCitation element:
- efetch answers and today's baseline/update files: PubmedArticleSet/PubmedArticle/(MedlineCitation, PubmedData),
  the update files ending with DeleteCitation/PMID elements;
- the pre-2017 MEDLINE files (medline16n0902.xml.gz): MedlineCitationSet/MedlineCitation, then DeleteCitation.

Files are streamed with ElementTree's iterparse and each record is cleared once read, so memory stays flat
however large the file (a baseline file is ~30,000 records, ~150 MB of XML). gzip is recognised by its magic
bytes, not by the name: a proxy's HTML page saved as .xml.gz is reported as HTML, not as a gzip error. Text is
taken with itertext (inline <i>, <sup>, <b>... dropped, their text kept; entities decoded by the parser) and
every run of whitespace, the files' own indentation included, becomes one space. The DOCTYPE's DTD is never
fetched: expat does not load external entities.

Every failure is a PubmedXMLError (or components.fetch.FetchError for an md5 mismatch) naming the file, the
line and the last complete record: a truncated download, an HTML error page, an NCBI <ERROR> answer.
The readers are generators: a stage that writes what they yield must write it atomically
(components.io.atomic_write), so that an error midway leaves no output a later stage could take as complete.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from components.fetch import FetchError, fetch, resolve, verify
from components.http import PoliteClient

log = logging.getLogger("scifolio.literature.pubmed")

RECORD_SETS = ("PubmedArticleSet", "MedlineCitationSet")  # the roots that hold records
NCBI_ERROR_ROOTS = ("eFetchResult", "eSearchResult", "ERROR")  # NCBI's answer when it refuses a request
HEAD_BYTES = 200  # how much of a bad body an error message quotes
GZIP_MAGIC = b"\x1f\x8b"
EXPAT_ENDS_EARLY = (3, 5, 6)  # expat's "no element found", "unclosed token", "partial character": input cut short
MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
# NLM's update and baseline files: pubmed25n1275.xml.gz (2017 on), medline16n0902.xml.gz (before)
UPDATE_FILE = re.compile(r"(?:pubmed|medline)(\d{2})n(\d{4})\.xml\.gz")


class PubmedXMLError(ValueError):
    """A file or body that is not the PubMed XML it should be; the message names where and why."""

    def __init__(self, message: str, ncbi_error: str | None = None):
        super().__init__(message)
        self.ncbi_error = ncbi_error  # the text of NCBI's <ERROR> element, when that is what came back


@dataclass
class PubmedRecord:
    pmid: str
    title: str  # ArticleTitle, markup dropped; a translated title is in [brackets], as NLM writes it
    abstract: str  # the AbstractText parts joined by newlines (sections stay apart); "" when there is none
    abstract_parts: list[tuple[str | None, str | None, str]]  # (Label, NlmCategory, text) per AbstractText
    journal: str  # Journal/Title (full name), else MedlineTA
    year: int | None  # PubDate/Year, else the first year in MedlineDate ("1998 Dec-1999 Jan" -> 1998)
    month: int | None  # Month, else the first month name in Season/MedlineDate; None for Spring, Winter...
    pub_date: str  # the PubDate as written: "1990 Spring", "2000 Dec 21-28", "2017 06"
    languages: list[str]  # ISO 639-2 codes as NLM writes them: eng, rus, ita
    vernacular_title: str  # the title in the article's own language ("" for most English records)
    mesh: list[str]  # MeSH descriptor names; [] for records not yet indexed (status In-Process, ...)
    publication_types: list[str]
    doi: str | None
    status: str  # MedlineCitation Status: MEDLINE, PubMed-not-MEDLINE, In-Process, In-Data-Review, ...


@dataclass
class Deletion:
    """A DeleteCitation element: these PMIDs are withdrawn from everything read before it."""

    pmids: list[str]


# ---- streaming --------------------------------------------------------------------------------


class _Head:
    """A read-only stream that keeps its first bytes, so that an error can say what the body looked like."""

    def __init__(self, raw: BinaryIO):
        self.raw, self.head = raw, b""

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        return data


def _open(source: str | Path | bytes) -> BinaryIO:
    """A binary stream of the XML in a file (gzipped or not) or in bytes; gzip is known by its magic bytes."""
    if isinstance(source, bytes):
        return gzip.GzipFile(fileobj=io.BytesIO(source)) if source[:2] == GZIP_MAGIC else io.BytesIO(source)
    with open(source, "rb") as f:
        magic = f.read(2)
    return gzip.open(source, "rb") if magic == GZIP_MAGIC else open(source, "rb")  # noqa: SIM115 (caller closes)


def _what_it_is(head: bytes) -> str:
    """A hint for a body that is not PubMed XML, from its first bytes."""
    start = head.lstrip()[:HEAD_BYTES]
    if not start:
        return "it is empty"
    if b"<html" in start.lower() or b"<!doctype html" in start.lower():
        return f"it is an HTML page (an error page from a proxy or server?): {start[:120]!r}"
    if start[:1] in (b"{", b"["):
        return f"it is JSON, not XML: {start[:120]!r}"
    return f"it starts with {start[:120]!r}"


def _text(elem: ET.Element | None) -> str:
    """All text inside elem, inline markup (<i>, <sup>, <b>...) dropped, whitespace runs collapsed to one space."""
    return " ".join("".join(elem.itertext()).split()) if elem is not None else ""


def iter_records(source: str | Path | bytes, where: str | None = None) -> Iterator[PubmedRecord | Deletion]:
    """Stream a PubMed XML file or body: a PubmedRecord per article, a Deletion per DeleteCitation, in file order.

    `where` names the source in messages (default: the path). PubmedBookArticle records (NCBI Bookshelf
    chapters) have no MedlineCitation and are skipped with a log line.
    """
    where = where or (str(source) if not isinstance(source, bytes) else "<body>")
    records, last_pmid, books = 0, None, 0
    stream = _open(source)
    head = _Head(stream)
    try:
        root, depth = None, 0
        for event, elem in ET.iterparse(head, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = elem
                    if root.tag not in RECORD_SETS + NCBI_ERROR_ROOTS:
                        raise PubmedXMLError(
                            f"{where}: root element <{root.tag}>, not {' or '.join(RECORD_SETS)}; {_what_it_is(head.head)}"
                        )
                depth += 1
                continue
            depth -= 1
            if root.tag in NCBI_ERROR_ROOTS:  # read the (small) answer to its end, then report it
                if depth == 0:
                    errors = [_text(e) for e in root.iter("ERROR")] or [_text(root)]
                    message = "; ".join(e for e in errors if e)
                    raise PubmedXMLError(f"{where}: NCBI answered with an error: {message}", ncbi_error=message)
                continue
            if depth != 1:  # inside a record: wait for the record's own end
                continue
            if elem.tag == "PubmedArticle":
                record = _record(elem.find("MedlineCitation"), elem.find("PubmedData"), where, records + 1)
            elif elem.tag == "MedlineCitation":  # the pre-2017 MedlineCitationSet layout
                record = _record(elem, None, where, records + 1)
            elif elem.tag == "DeleteCitation":
                record = Deletion(pmids=[_text(p) for p in elem.findall("PMID")])
            elif elem.tag == "PubmedBookArticle":
                books, record = books + 1, None
            else:
                record = None  # anything else at the top level carries no record
            root.clear()  # the finished child (already turned into plain data) leaves memory
            if isinstance(record, PubmedRecord):
                records, last_pmid = records + 1, record.pmid
            if record is not None:
                yield record
    except ET.ParseError as err:
        line, column = err.position
        after = f"after record #{records} (PMID {last_pmid})" if records else "before the first record"
        truncated = " (the XML ends early: a truncated download?)" if err.code in EXPAT_ENDS_EARLY else ""
        hint = "" if records else f"; {_what_it_is(head.head)}"
        raise PubmedXMLError(
            f"{where}: not well-formed XML at line {line}, column {column}: {err.msg.split(':')[0]}{truncated}, {after}{hint}"
        ) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise PubmedXMLError(
            f"{where}: the gzip stream is truncated or corrupt ({err}), after record #{records} (PMID {last_pmid})"
        ) from None
    finally:
        stream.close()
    if books:
        log.info("%s: skipped %d PubmedBookArticle records (no MedlineCitation)", where, books)


def iter_articles(source: str | Path | bytes, where: str | None = None) -> Iterator[PubmedRecord]:
    """The records of one file or body (DeleteCitation ignored: read update files with read_files)."""
    for item in iter_records(source, where):
        if isinstance(item, PubmedRecord):
            yield item


def _record(citation: ET.Element | None, pubmed_data: ET.Element | None, where: str, number: int) -> PubmedRecord:
    article = citation.find("Article") if citation is not None else None
    pmid = _text(citation.find("PMID")) if citation is not None else ""
    if not pmid or article is None:
        raise PubmedXMLError(
            f"{where}: record #{number} (PMID {pmid or '?'}) has no {'PMID' if not pmid else 'Article'}"
        )
    parts = [(t.get("Label"), t.get("NlmCategory"), _text(t)) for t in article.findall("Abstract/AbstractText")]
    parts = [p for p in parts if p[2]]  # an empty AbstractText carries nothing
    year, month, pub_date = _pub_date(article.find("Journal/JournalIssue/PubDate"))
    return PubmedRecord(
        pmid=pmid,
        title=_text(article.find("ArticleTitle")),
        abstract="\n".join(text for _, _, text in parts),
        abstract_parts=parts,
        journal=_text(article.find("Journal/Title")) or _text(citation.find("MedlineJournalInfo/MedlineTA")),
        year=year,
        month=month,
        pub_date=pub_date,
        languages=[_text(e) for e in article.findall("Language") if _text(e)],
        vernacular_title=_text(article.find("VernacularTitle")),
        mesh=[_text(d) for d in citation.findall("MeshHeadingList/MeshHeading/DescriptorName")],
        publication_types=[_text(p) for p in article.findall("PublicationTypeList/PublicationType")],
        doi=_doi(article, pubmed_data),
        status=citation.get("Status", ""),
    )


def _doi(article: ET.Element, pubmed_data: ET.Element | None) -> str | None:
    """The article's own DOI: PubmedData's ArticleIdList (not the references' lists), else a valid ELocationID."""
    if pubmed_data is not None:
        for e in pubmed_data.findall("ArticleIdList/ArticleId[@IdType='doi']"):
            if _text(e):
                return _text(e)
    for e in article.findall("ELocationID[@EIdType='doi']"):
        if e.get("ValidYN", "Y") == "Y" and _text(e):
            return _text(e)
    return None


# ---- dates ------------------------------------------------------------------------------------


def _month(text: str | None) -> int | None:
    """'06' -> 6, 'Sep' / 'September' -> 9, a season or anything else -> None."""
    text = (text or "").strip().lower()
    if text.isdigit():
        return int(text) if 1 <= int(text) <= 12 else None
    return MONTHS.get(text[:3])


def parse_medline_date(text: str) -> tuple[int | None, int | None]:
    """(year, month) of a MedlineDate: '1998 Dec-1999 Jan' -> (1998, 12), '2000 Spring' -> (2000, None).

    The first year and the first month name count: an issue dated over a range is filed under its start.
    """
    year = re.search(r"\b(\d{4})\b", text)
    month = re.search(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", text, re.IGNORECASE)
    return (int(year.group(1)) if year else None), (_month(month.group(1)) if month else None)


def _pub_date(pub_date: ET.Element | None) -> tuple[int | None, int | None, str]:
    """(year, month, the date as written) of a PubDate: Year/Month/Day, Year/Season, or MedlineDate."""
    if pub_date is None:
        return None, None, ""
    written = " ".join(_text(e) for e in pub_date if _text(e))
    year_text = _text(pub_date.find("Year"))
    if year_text.isdigit():
        month = _month(pub_date.findtext("Month"))
        if month is None and pub_date.find("Season") is not None:  # "Jan-Feb" -> 1; "Spring" -> None
            month = parse_medline_date(_text(pub_date.find("Season")))[1]
        return int(year_text), month, written
    year, month = parse_medline_date(_text(pub_date.find("MedlineDate")))
    return year, month, written


# ---- baseline and update files ------------------------------------------------------------------


def read_md5(path: str | Path) -> str:
    """The "md5:<hex>" that the sibling `<name>.md5` gives for `path` (NLM's "MD5(name)= hex" or md5sum's "hex  name")."""
    path = Path(path)
    sibling = path.with_name(path.name + ".md5")
    if not sibling.is_file():
        raise FetchError(f"{path}: no {sibling.name} beside it to check it against")
    text = sibling.read_text(errors="replace")
    match = re.search(r"MD5\((?P<name>[^)]*)\)\s*=\s*(?P<hex>[0-9a-fA-F]{32})\b", text) or re.match(
        r"\s*(?P<hex>[0-9a-fA-F]{32})\s+\*?(?P<name>\S+)", text
    )
    if match is None:
        raise FetchError(f"{sibling}: no MD5 digest in it; {_what_it_is(text.encode())}")
    if Path(match["name"]).name != path.name:
        raise FetchError(f"{sibling}: gives the MD5 of {match['name']!r}, not of {path.name!r}")
    return "md5:" + match["hex"].lower()


@dataclass
class MergePlan:
    """Which version of each PMID a read of several files in order keeps (see read_files for the rule)."""

    files: list[Path]
    keep: dict[str, tuple[int, int]] = field(default_factory=dict)  # PMID -> (file index, record index in it)
    deleted: set[str] = field(default_factory=set)  # PMIDs a DeleteCitation withdrew (and no later file restored)
    removed: int = 0  # records read and then withdrawn by a later DeleteCitation
    replaced: int = 0  # records superseded by a later version of the same PMID


def plan_merge(paths: Iterable[str | Path]) -> MergePlan:
    """First pass of read_files: find the last version of every PMID and what DeleteCitation withdrew."""
    plan = MergePlan(files=[Path(p) for p in paths])
    for i, path in enumerate(plan.files):
        ordinal = 0
        for item in iter_records(path):
            if isinstance(item, Deletion):
                for pmid in item.pmids:
                    plan.removed += plan.keep.pop(pmid, None) is not None
                    plan.deleted.add(pmid)
                continue
            plan.replaced += item.pmid in plan.keep
            plan.keep[item.pmid] = (i, ordinal)
            plan.deleted.discard(item.pmid)
            ordinal += 1
    return plan


def read_files(paths: Iterable[str | Path], require_md5: bool = True) -> Iterator[PubmedRecord]:
    """The records of baseline/update files read in the given order (baseline first, then updates by number).

    Each file is first checked against its `.md5` sibling (a mismatch or, with require_md5, a missing
    sibling is refused naming the file). The rule, in document order across all files: a record replaces
    any earlier record with the same PMID (update files carry revised citations), and a DeleteCitation
    withdraws its PMIDs from everything read before it; a PMID that reappears after its deletion is back.
    Each surviving record is yielded once, at the place of its last version. Two streaming passes (one to
    plan, one to yield) keep memory to one small entry per PMID.
    """
    paths = [Path(p) for p in paths]
    for path in paths:  # all checksums before any parsing: a bad file stops the read before it starts
        if require_md5 or path.with_name(path.name + ".md5").is_file():
            verify(path, read_md5(path))
    plan = plan_merge(paths)
    log.info(
        "%d files: %d records kept, %d replaced by later versions, %d withdrawn by DeleteCitation",
        len(paths),
        len(plan.keep),
        plan.replaced,
        plan.removed,
    )
    for i, path in enumerate(paths):
        for ordinal, record in enumerate(iter_articles(path)):
            if plan.keep.get(record.pmid) == (i, ordinal):
                yield record


def list_update_files(base: str) -> list[str]:
    """The baseline/update file names (pubmedYYnNNNN.xml.gz, medlineYYnNNNN.xml.gz) in a mirror, in file order.

    `base` is a local folder, a file:// URL or an http(s) folder URL whose index page links the files
    (as https://ftp.ncbi.nlm.nih.gov/pubmed/updatefiles/ does).
    """
    scheme = urllib.parse.urlsplit(base).scheme.lower()
    if scheme in ("http", "https"):  # 3 requests/s: NCBI's courtesy limit holds for its file server too
        page = PoliteClient(rate=3.0, name="PubMed file mirror").get(base.rstrip("/") + "/").text
        names = [urllib.parse.unquote(h.rsplit("/", 1)[-1]) for h in re.findall(r'href="([^"?#]+)"', page)]
    else:
        folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(base).path)) if scheme == "file" else Path(base)
        names = os.listdir(folder)
    found = {n for n in names if UPDATE_FILE.fullmatch(n)}
    return sorted(found, key=lambda n: tuple(int(g) for g in UPDATE_FILE.fullmatch(n).groups()))


def fetch_update_files(base: str, dest: str | Path, names: Iterable[str] | None = None) -> list[Path]:
    """Fetch baseline/update files with their .md5 siblings from a mirror into `dest`, each verified; return the paths.

    `names` default to every file the mirror lists. components.fetch downloads atomically, resumes, and
    keeps a file already in `dest` that matches its md5 without fetching it again; an .md5 already in
    `dest` is kept as it is (NLM publishes each file once, under a new name for each year's baseline).
    """
    dest = Path(dest)
    paths = []
    for name in list_update_files(base) if names is None else names:
        if not UPDATE_FILE.fullmatch(name):
            raise ValueError(f"{name!r} is not a PubMed baseline/update file name (pubmedYYnNNNN.xml.gz)")
        fetch(resolve(base, name + ".md5"), dest / (name + ".md5"), progress=False)
        paths.append(fetch(resolve(base, name), dest / name, checksum=read_md5(dest / name), progress=False))
    return paths
