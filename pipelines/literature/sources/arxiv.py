"""arXiv metadata through its three doors, all giving the same `ArxivRecord`:

- the search API (`search`): an Atom feed paged with `start`/`max_results` until `opensearch:totalResults`;
- OAI-PMH (`harvest_oai` to download, `read_oai` to parse saved pages): `ListRecords` in the "arXiv"
  metadata format, followed across `resumptionToken`s, each page saved atomically so that a stopped
  harvest resumes from its last saved token;
- the metadata snapshot (`read_snapshot`): Kaggle's JSON lines, streamed line by line in constant memory.

arXiv asks robots for one request every 3 seconds (https://info.arxiv.org/help/api/tou.html), so both
network doors default to `rate=ARXIV_RATE`; tests pass a faster rate against a loopback server.

    for record in search("all:Einstein", max_results=50):
        print(record.versioned_id, record.title)

`write_demo_snapshot` writes a small synthetic snapshot in exactly the real format for the demo profile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import gzip
import io
import json
import logging
import random
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from components.http import PoliteClient
from components.io import atomic_write

log = logging.getLogger("scifolio.literature.arxiv")

API_URL = "http://export.arxiv.org/api/query"  # the documented base URL; a mirror or test server replaces it
OAI_URL = "http://export.arxiv.org/oai2"
ARXIV_RATE = 1 / 3  # requests per second: arXiv's terms of use ask for one request every 3 s

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV_ATOM = "{http://arxiv.org/schemas/atom}"  # arxiv:primary_category, arxiv:doi, arxiv:journal_ref
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"  # totalResults, startIndex, itemsPerPage
OAI = "{http://www.openarchives.org/OAI/2.0/}"
ARXIV_OAI = "{http://arxiv.org/OAI/arXiv/}"  # the record body of metadataPrefix=arXiv

# An arXiv category code: "cs.CL", "math-ph", "q-bio.NC", "cmp-lg", "cond-mat.mtrl-sci". The API also lists
# MSC and ACM classes as <category> terms ("53D10, 53D15", "I.2.7"); they do not match and are left out.
CATEGORY = re.compile(r"[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?")


class ArxivError(RuntimeError):
    """arXiv answered, but with an error (the API's "Error" entry, an OAI-PMH <error>, a body that is no feed)."""


class OaiError(ArxivError):
    def __init__(self, code: str, message: str, where: str):
        super().__init__(f"{where}: OAI-PMH error {code}: {message}")
        self.code = code  # badArgument, badResumptionToken, cannotDisseminateFormat, ...


class ArxivFormatError(ValueError):
    """A saved file that is not what its format promises; the message names the file and line or record."""


@dataclass
class ArxivRecord:
    arxiv_id: str  # without version: "1801.05533", "math/0502287" (the key the three sources share)
    title: str  # whitespace normalised (the sources wrap lines)
    abstract: str  # whitespace normalised
    authors: list[str]  # "Forenames Keyname Suffix", in the paper's order
    categories: list[str]  # arXiv codes, primary first as arXiv lists them
    primary_category: str | None
    # date of version 1, YYYY-MM-DD: the OAI format has dates only, so no source keeps times. API and
    # snapshot dates are UTC, OAI's "created" is arXiv's local (US Eastern) date: they can differ by a day.
    published: str
    updated: str | None = None  # date of the latest version; None when there is only one
    version: str | None = None  # "v3" (API id, snapshot's latest); None from OAI, whose arXiv format has none
    doi: str | None = None
    journal_ref: str | None = None

    @property
    def versioned_id(self) -> str:
        return self.arxiv_id + (self.version or "")


def _clean(text: str | None) -> str | None:
    """Whitespace collapsed to single spaces; None for a missing or blank value."""
    if text is None:
        return None
    return " ".join(text.split()) or None


def _date(value: str | None) -> str | None:
    """YYYY-MM-DD from an ISO timestamp ("2018-01-17T03:05:51Z") or date."""
    return value.strip()[:10] if value and value.strip() else None


def _categories(terms: list[str]) -> list[str]:
    seen: list[str] = []
    for term in terms:
        for code in term.split():
            if CATEGORY.fullmatch(code) and code not in seen:
                seen.append(code)
    return seen


# ---- the search API (Atom) ---------------------------------------------------------------------------


def client(rate: float = ARXIV_RATE, name: str = "arXiv", **kwargs: Any) -> PoliteClient:
    """The polite HTTP client both network doors use (rate limit, retries with backoff on 429/5xx)."""
    return PoliteClient(rate=rate, name=name, **kwargs)


@dataclass
class AtomPage:
    records: list[ArxivRecord]
    total: int  # opensearch:totalResults: matches of the whole query
    start: int  # opensearch:startIndex


def parse_atom(content: bytes, where: str) -> AtomPage:
    """One API response. An error entry (id .../api/errors#..., title "Error") raises ArxivError with its message."""
    try:
        feed = ET.fromstring(content)
    except ET.ParseError as err:
        # when throttling, arXiv has answered a bare "Rate exceeded." instead of a feed
        raise ArxivError(f"{where}: not an Atom feed ({err}); the body starts {content[:80]!r}") from None
    if feed.tag != f"{ATOM}feed":
        raise ArxivError(f"{where}: expected an Atom <feed>, got <{feed.tag}>")
    records = []
    for entry in feed.iter(f"{ATOM}entry"):
        entry_id = entry.findtext(f"{ATOM}id", "").strip()
        if "/api/errors" in entry_id or entry.findtext(f"{ATOM}title", "").strip() == "Error":
            message = _clean(entry.findtext(f"{ATOM}summary")) or entry_id
            raise ArxivError(f"{where}: arXiv API error: {message}")
        records.append(_atom_entry(entry, where))
    total = feed.findtext(f"{OPENSEARCH}totalResults")
    if total is None or not total.strip().isdigit():
        raise ArxivError(f"{where}: no opensearch:totalResults in the feed")
    start = feed.findtext(f"{OPENSEARCH}startIndex", "0").strip()
    return AtomPage(records, int(total), int(start) if start.isdigit() else 0)


def _atom_entry(entry: ET.Element, where: str) -> ArxivRecord:
    entry_id = entry.findtext(f"{ATOM}id", "").strip()
    match = re.search(r"/abs/(.+?)(v\d+)?$", entry_id)  # http(s)://arxiv.org/abs/<id><version>
    if not match:
        raise ArxivError(f"{where}: entry id {entry_id!r} is not an arXiv abstract URL")
    primary = entry.find(f"{ARXIV_ATOM}primary_category")
    categories = _categories([c.get("term", "") for c in entry.iter(f"{ATOM}category")])
    published = _date(entry.findtext(f"{ATOM}published"))
    updated = _date(entry.findtext(f"{ATOM}updated"))
    return ArxivRecord(
        arxiv_id=match.group(1),
        version=match.group(2),
        title=_clean(entry.findtext(f"{ATOM}title")) or "",
        abstract=_clean(entry.findtext(f"{ATOM}summary")) or "",
        authors=[name for a in entry.iter(f"{ATOM}author") if (name := _clean(a.findtext(f"{ATOM}name")))],
        categories=categories,
        primary_category=primary.get("term") if primary is not None else (categories[0] if categories else None),
        published=published or "",
        updated=updated if updated != published else None,  # the API repeats published for a single version
        doi=_clean(entry.findtext(f"{ARXIV_ATOM}doi")),
        journal_ref=_clean(entry.findtext(f"{ARXIV_ATOM}journal_ref")),
    )


def search(
    query: str | None = None,  # search_query syntax: "all:Einstein", "cat:cs.CL AND ti:citation"
    id_list: list[str] | None = None,
    max_results: int | None = None,  # stop after this many records; None: all of totalResults
    page_size: int = 100,  # records per request; arXiv allows up to 2000, smaller pages fail less often
    start: int = 0,
    sort_by: str | None = None,  # relevance, lastUpdatedDate, submittedDate
    sort_order: str | None = None,  # ascending, descending
    base_url: str = API_URL,
    rate: float = ARXIV_RATE,
    http: Any = None,  # a PoliteClient to share; built from `rate` when None
    empty_page_retries: int = 3,  # arXiv sometimes serves an empty page mid-way (a known API quirk): ask again
) -> Iterator[ArxivRecord]:
    """Records matching `query` and/or `id_list`, paging until totalResults or `max_results`."""
    if not query and not id_list:
        raise ValueError("arXiv search: give a query or an id_list")
    http = http or client(rate)
    first, yielded, retries_left = start, 0, empty_page_retries
    while max_results is None or yielded < max_results:
        params = {"search_query": query or "", "id_list": ",".join(id_list or []), "start": start}
        params["max_results"] = page_size if max_results is None else min(page_size, max_results - yielded)
        if sort_by:
            params["sortBy"] = sort_by
        if sort_order:
            params["sortOrder"] = sort_order
        where = http.shown(base_url, params)
        page = parse_atom(http.get(base_url, params=params).content, where)
        end = page.total if max_results is None else min(page.total, first + max_results)
        if start >= end:
            return
        if not page.records:
            if retries_left == 0:
                raise ArxivError(f"{where}: still an empty page at start={start} of {page.total} after retries")
            retries_left -= 1
            log.warning("%s: empty page at start=%d of %d results; asking again", where, start, page.total)
            continue
        retries_left = empty_page_retries
        for record in page.records[: end - start]:
            yield record
            yielded += 1
        start += len(page.records)
        if start >= end:  # this page reached totalResults or max_results: no request for an empty page
            return


# ---- OAI-PMH ----------------------------------------------------------------------------------------


@dataclass
class OaiPage:
    records: list[ArxivRecord]
    token: str | None  # the resumptionToken to ask for next; None on the last page
    deleted: int = 0  # records whose header says status="deleted" (skipped)
    complete_list_size: int | None = None  # the whole list's size, when the server states it
    error: tuple[str, str] | None = None  # (code, message) of an OAI-PMH <error>


def parse_oai_page(source: IO[bytes], where: str) -> OaiPage:
    """One ListRecords response, streamed (each record element is freed once read)."""
    page = OaiPage([], None)
    try:
        for _, elem in ET.iterparse(source, events=("end",)):
            if elem.tag == f"{OAI}record":
                header = elem.find(f"{OAI}header")
                if header is not None and header.get("status") == "deleted":
                    page.deleted += 1
                else:
                    page.records.append(_oai_record(elem, where))
                elem.clear()
            elif elem.tag == f"{OAI}resumptionToken":
                page.token = (elem.text or "").strip() or None  # an empty token ends the list
                size = elem.get("completeListSize", "")
                page.complete_list_size = int(size) if size.isdigit() else None
            elif elem.tag == f"{OAI}error":
                page.error = (elem.get("code", "unknown"), _clean(elem.text) or "")
    except ET.ParseError as err:
        raise ArxivFormatError(f"{where}: malformed XML: {err}") from None
    return page


def _oai_record(elem: ET.Element, where: str) -> ArxivRecord:
    identifier = elem.findtext(f"{OAI}header/{OAI}identifier", "").strip()
    body = elem.find(f"{OAI}metadata/{ARXIV_OAI}arXiv")
    if body is None:
        raise ArxivFormatError(f"{where}: record {identifier or '?'} has no arXiv metadata (metadataPrefix=arXiv?)")

    def text(tag: str) -> str | None:
        return _clean(body.findtext(f"{ARXIV_OAI}{tag}"))

    arxiv_id = text("id") or identifier.removeprefix("oai:arXiv.org:")
    title, abstract, created = text("title"), text("abstract"), text("created")
    if not (arxiv_id and title and created):
        raise ArxivFormatError(f"{where}: record {identifier or '?'} lacks its id, title or created date")
    authors = []
    for author in body.iter(f"{ARXIV_OAI}author"):
        parts = [_clean(author.findtext(f"{ARXIV_OAI}{tag}")) for tag in ("forenames", "keyname", "suffix")]
        if name := " ".join(p for p in parts if p):
            authors.append(name)
    categories = _categories([text("categories") or ""])
    return ArxivRecord(
        arxiv_id=arxiv_id,
        title=title,
        abstract=abstract or "",
        authors=authors,
        categories=categories,
        primary_category=categories[0] if categories else None,
        published=_date(created) or "",
        updated=_date(text("updated")),
        doi=text("doi"),
        journal_ref=text("journal-ref"),
    )


STATE = "harvest.json"  # beside the pages: what was asked, how far it got, the token to resume from


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _page_files(path: Path) -> list[Path]:
    """A saved page or a folder of them (N.xml, N.xml.gz, page-NNNNN.xml), in page-number order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    pages = [p for p in path.iterdir() if p.name.endswith((".xml", ".xml.gz"))]
    if not pages and not (path / STATE).exists():  # a finished harvest with noRecordsMatch has no pages
        raise FileNotFoundError(f"{path}: no OAI-PMH pages (*.xml, *.xml.gz)")
    return sorted(pages, key=_page_number)


def _page_number(page: Path) -> tuple[int, str]:
    """Sort key: 2.xml before 10.xml (the first number in the name), then the name."""
    match = re.search(r"\d+", page.name)
    return (int(match.group()) if match else -1, page.name)


def read_oai(path: Path) -> Iterator[ArxivRecord]:
    """Records of saved ListRecords pages (a file or a folder), one page in memory at a time; deleted skipped."""
    for file in _page_files(path):
        with _open(file) as f:
            page = parse_oai_page(f, str(file))
        if page.error and page.error[0] != "noRecordsMatch":
            raise OaiError(*page.error, where=str(file))
        yield from page.records


def harvest_oai(
    folder: Path,
    set_spec: str | None = "cs",  # arXiv sets: cs, math, physics:hep-th, q-bio, stat, ...
    from_date: str | None = None,  # YYYY-MM-DD, on the record datestamp (last metadata change)
    until_date: str | None = None,
    metadata_prefix: str = "arXiv",  # the format with category codes and split author names
    base_url: str = OAI_URL,
    rate: float = ARXIV_RATE,
    http: Any = None,
    max_pages: int | None = None,  # stop after this many pages in this call (the harvest stays resumable)
) -> dict:
    """Download ListRecords pages into `folder` (page-00001.xml, ...) and return the harvest state.

    Each page is written atomically, then `harvest.json` with the next token: a harvest stopped by any
    error resumes from the last saved token when called again with the same arguments. A finished
    harvest is not asked again. noRecordsMatch is a finished, empty harvest. Read the pages with `read_oai`.
    Resumption tokens expire on the server (badResumptionToken): then delete the folder and harvest again.
    """
    if metadata_prefix != "arXiv":
        raise ValueError(
            f"metadataPrefix {metadata_prefix!r}: only 'arXiv' is parsed (oai_dc has subject names, not category codes)"
        )
    folder = Path(folder)
    request = {"verb": "ListRecords", "metadataPrefix": metadata_prefix}
    request |= {k: v for k, v in (("set", set_spec), ("from", from_date), ("until", until_date)) if v}
    state_path = folder / STATE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if state["request"] != request:
            raise ValueError(f"{folder}: holds a harvest of {state['request']}, not {request}; use another folder")
        if state["complete"]:
            return state
        log.info("%s: resuming after page %d", folder, state["pages"])
    else:
        state = {"request": request, "pages": 0, "records": 0, "deleted": 0, "token": None, "complete": False}
        state["complete_list_size"] = None
    http = http or client(rate)
    fetched = 0
    while max_pages is None or fetched < max_pages:
        # OAI-PMH: a continuation carries the token alone; the other arguments are the server's to remember
        params = {"verb": "ListRecords", "resumptionToken": state["token"]} if state["token"] else request
        where = http.shown(base_url, params)
        content = http.get(base_url, params=params).content
        page = parse_oai_page(io.BytesIO(content), where)
        if page.error:
            if page.error[0] == "noRecordsMatch" and state["pages"] == 0:
                state["complete"] = True
                atomic_write(state_path, json.dumps(state, indent=2))
                return state
            raise OaiError(*page.error, where=where)
        fetched += 1
        atomic_write(folder / f"page-{state['pages'] + 1:05d}.xml", content)
        state["pages"] += 1
        state["records"] += len(page.records)
        state["deleted"] += page.deleted
        state["token"] = page.token
        state["complete"] = page.token is None
        state["complete_list_size"] = page.complete_list_size or state["complete_list_size"]
        atomic_write(state_path, json.dumps(state, indent=2))
        if state["complete"]:
            break
    return state


# ---- the metadata snapshot (JSON lines) -------------------------------------------------------------


def _snapshot_date(value: str, where: str) -> str:
    """A version date as the snapshot writes it, "Mon, 2 Apr 2007 19:18:42 GMT", as "2007-04-02"."""
    try:
        return email.utils.parsedate_to_datetime(value).date().isoformat()
    except (TypeError, ValueError):
        raise ArxivFormatError(f"{where}: version date {value!r} is not an RFC 2822 date") from None


def _snapshot_record(row: Any, where: str) -> ArxivRecord:
    if not isinstance(row, dict):
        raise ArxivFormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("id", "title", "abstract", "categories", "versions"):
        if not row.get(key):
            raise ArxivFormatError(f"{where}: missing or empty field {key!r}")
    versions = row["versions"]
    if not isinstance(versions, list) or not all(isinstance(v, dict) and "created" in v for v in versions):
        raise ArxivFormatError(f"{where}: 'versions' must be a list of {{version, created}}")
    # authors_parsed holds [keyname, forenames, suffix, (affiliation)] in Unicode; "authors" keeps TeX escapes
    parsed = row.get("authors_parsed") or []
    if not isinstance(parsed, list) or not all(
        isinstance(p, list) and all(isinstance(x, str) for x in p) for p in parsed
    ):
        raise ArxivFormatError(f"{where}: 'authors_parsed' must be a list of [keyname, forenames, suffix] lists")
    authors = []
    for parts in parsed:
        if name := " ".join(p for p in (_clean(parts[1]) if len(parts) > 1 else None, _clean(parts[0])) if p):
            suffix = _clean(parts[2]) if len(parts) > 2 else None
            authors.append(f"{name} {suffix}" if suffix else name)
    categories = _categories([str(row["categories"])])
    return ArxivRecord(
        arxiv_id=str(row["id"]).strip(),
        title=_clean(row["title"]) or "",
        abstract=_clean(row["abstract"]) or "",
        authors=authors,
        categories=categories,
        primary_category=categories[0] if categories else None,
        published=_snapshot_date(versions[0]["created"], where),
        updated=_snapshot_date(versions[-1]["created"], where) if len(versions) > 1 else None,
        version=versions[-1].get("version"),
        doi=_clean(row.get("doi")),
        journal_ref=_clean(row.get("journal-ref")),
    )


SNAPSHOT_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")  # Kaggle ships .json; gzip saves 70 %


def read_snapshot(path: Path) -> Iterator[ArxivRecord]:
    """Records of a snapshot file (.json/.jsonl, optionally .gz) or a folder of them, one line at a time.

    Blank lines are skipped; a line that is not a JSON object with id, title, abstract, categories and
    versions raises ArxivFormatError naming the file and line number.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.name.endswith(SNAPSHOT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{path}: no snapshot files ({', '.join(SNAPSHOT_SUFFIXES)})")
    for file in files:
        with _open(file) as f:
            for number, raw in enumerate(io.TextIOWrapper(f, encoding="utf-8"), start=1):
                if not raw.strip():
                    continue
                where = f"{file}:{number}"
                try:
                    row = json.loads(raw)
                except json.JSONDecodeError as err:
                    raise ArxivFormatError(f"{where}: not JSON: {err.msg} at column {err.colno}") from None
                yield _snapshot_record(row, where)


# ---- demo -------------------------------------------------------------------------------------------

_WORDS = (
    "citation intent graph neural network transformer abstract corpus retrieval embedding topic model "
    "sequence labelling hedging speculation negation scope biomedical literature recommendation trend"
).split()
_PEOPLE = [("Ada", "Lovelace", ""), ("Alan M.", "Turing", ""), ("Grace", "Hopper", ""), ("Neal J.", "Evans", "II")]
_CATEGORIES = ["cs.CL", "cs.IR", "cs.LG", "stat.ML", "q-bio.QM", "physics.soc-ph"]


def write_demo_snapshot(
    path: Path,
    n: int = 20,  # two papers per year over ten years: a trend plot has points, the demo stays fast
    seed: int = 0,  # the same file every run
) -> list[ArxivRecord]:
    """Write `n` synthetic papers in the snapshot's exact line format; return the records `read_snapshot` gives."""
    rng = random.Random(seed)
    lines, records = [], []
    for i in range(n):
        year, month = 2015 + i % 10, 1 + rng.randrange(12)
        arxiv_id = f"{year % 100:02d}{month:02d}.{10000 + i:05d}"  # the YYMM.NNNNN scheme of 2015 on
        title = " ".join(rng.choice(_WORDS) for _ in range(6)).capitalize()
        abstract = ". ".join(" ".join(rng.choice(_WORDS) for _ in range(12)) for _ in range(3)) + "."
        people = rng.sample(_PEOPLE, rng.randint(1, 3))
        categories = rng.sample(_CATEGORIES, rng.randint(1, 3))
        days = sorted(rng.sample(range(1, 28), rng.randint(1, 3)))
        dates = [dt.date(year, month, d) for d in days]
        versions = [{"version": f"v{k + 1}", "created": _rfc2822(d)} for k, d in enumerate(dates)]
        doi = f"10.5555/demo.{i}" if rng.random() < 0.5 else None
        row = {
            "id": arxiv_id,
            "submitter": f"{people[0][0]} {people[0][1]}",
            "authors": ", ".join(f"{first} {last}" for first, last, _ in people),
            "title": _wrap(title),
            "comments": f"{rng.randint(4, 30)} pages",
            "journal-ref": "Demo J. 1 (2020) 1" if doi else None,
            "doi": doi,
            "report-no": None,
            "categories": " ".join(categories),
            "license": None,
            "abstract": "  " + _wrap(abstract) + "\n",  # the snapshot keeps arXiv's indent and line breaks
            "versions": versions,
            "update_date": dates[-1].isoformat(),
            "authors_parsed": [[last, first, suffix] for first, last, suffix in people],
        }
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
        records.append(
            ArxivRecord(
                arxiv_id=arxiv_id,
                title=title,
                abstract=abstract,
                authors=[" ".join(p for p in person if p) for person in people],
                categories=categories,
                primary_category=categories[0],
                published=dates[0].isoformat(),
                updated=dates[-1].isoformat() if len(dates) > 1 else None,
                version=versions[-1]["version"],
                doi=doi,
                journal_ref=row["journal-ref"],
            )
        )
    atomic_write(Path(path), "\n".join(lines) + "\n")
    return records


def _rfc2822(day: dt.date) -> str:
    """A date as the snapshot spells versions: "Mon, 2 Apr 2007 10:00:00 GMT" (day not zero-padded)."""
    weekday = "Mon Tue Wed Thu Fri Sat Sun".split()[day.weekday()]
    month = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()[day.month - 1]
    return f"{weekday}, {day.day} {month} {day.year} 10:00:00 GMT"


def _wrap(text: str, width: int = 60) -> str:
    """Break lines as arXiv stores titles and abstracts (the readers normalise the whitespace away)."""
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*out, line])


def as_dict(record: ArxivRecord) -> dict:
    """A plain dict (for JSON lines, DataFrames), with the versioned id beside the bare one."""
    return dataclasses.asdict(record) | {"versioned_id": record.versioned_id}
