"""A resumable PubMed pull through NCBI E-utilities: one ESearch on the history server, then EFetch in batches.

    eutils = Eutils(email="me@example.org")                      # NCBI_API_KEY from the environment, if set
    result = pull("data/raw/pubmed", "alzheimer disease[mh]", eutils=eutils,
                  mindate="2020/01/01", maxdate="2020/12/31", max_records=2000)
    for record in read_pull("data/raw/pubmed"): ...               # pubmed.PubmedRecord, batch by batch

ESearch with usehistory=y leaves the result set on NCBI's history server and answers with its Count, WebEnv
and QueryKey; EFetch then pages through that set with retstart/retmax (rettype=abstract, retmode=xml).
Every request carries `tool` and `email` (NCBI's rule: they contact the address before blocking a client),
and the API key, when NCBI_API_KEY is set: 10 requests/s with a key, 3 without (NCBI's limits, enforced by
components.http.PoliteClient, which also retries 429/5xx with backoff and Retry-After).

The API key comes only from the environment: it is never an argument that could land in params.yaml, never
written to the pull folder, masked as *** in every message, and masked in urllib3's debug log too.

Resumable: each batch is checked (well-formed PubMed XML, no NCBI <ERROR>) and written atomically as
efetch_NNNNN.xml, then recorded in state.json (the search's WebEnv/QueryKey/Count, and per batch its
retstart, record count and md5). A pull stopped midway (a failure, a kill) fetches, when run again, only
the batches that are missing or whose file no longer matches its md5, from the same history set.
read_pull refuses a folder whose state does not say complete, so no stage takes a partial pull for data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from components.fetch import FetchError, verify
from components.http import PoliteClient
from components.io import atomic_write
from pipelines.literature.sources.pubmed import PubmedRecord, PubmedXMLError, iter_articles

log = logging.getLogger("scifolio.literature.eutils")

DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/"
API_KEY_ENV = "NCBI_API_KEY"
RATE_WITHOUT_KEY = 3.0  # requests/s: NCBI's limit for a client without an API key
RATE_WITH_KEY = 10.0  # requests/s: NCBI's limit with a key
HISTORY_LIMIT = 10_000  # NCBI serves only the first 10,000 records of a PubMed search (EFetch refuses retstart > 9998)
DEFAULT_RETMAX = 500  # records per EFetch: ~2-5 MB of XML, short enough to retry cheaply, few enough requests
DEFAULT_TOOL = "scifolio"  # the `tool` NCBI sees; NCBI asks each application to name itself
STATE = "state.json"
DATE = re.compile(r"\d{4}(/\d{2}(/\d{2})?)?")  # E-utilities dates: YYYY, YYYY/MM or YYYY/MM/DD


class EutilsError(RuntimeError):
    """E-utilities answered, but not with what a pull can use; the message says what and what to do."""


class _MaskApiKey(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included: mask the key there as well."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "api_key=" in message:
            record.msg, record.args = re.sub(r"api_key=[^&\s\"]+", "api_key=***", message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_MaskApiKey())


@dataclass
class Search:
    count: int  # records the query matches
    webenv: str  # the history server's session, valid for a limited time
    query_key: str  # the result set within that session
    translation: str  # how PubMed read the query (MeSH expansion), for the record
    warnings: list[str]  # phrases not found, ignored fields: PubMed's warnings, logged


@dataclass
class PullResult:
    folder: Path
    count: int  # records the search matched
    total: int  # records pulled: min(count, max_records)
    batches: list[Path]  # efetch_NNNNN.xml, in order
    records: int  # PubmedArticle records in the batches
    fetched: list[int]  # the batch numbers this call fetched (the others were on disk already)


def api_key_from_env() -> str | None:
    """The NCBI API key from NCBI_API_KEY, or None: the only place a key is taken from."""
    return os.environ.get(API_KEY_ENV, "").strip() or None


class Eutils:
    """An E-utilities client: the base URL, NCBI's `tool`/`email`, the API key and a polite HTTP client."""

    def __init__(
        self,
        email: str,  # NCBI's contact for this client; required so that NCBI can reach us before blocking
        tool: str = DEFAULT_TOOL,
        base_url: str = DEFAULT_BASE_URL,  # tests point it at 127.0.0.1
        retries: int = 5,  # attempts after the first, on 429/5xx and dropped connections
        backoff_s: float = 1.0,  # first wait before a retry; doubles each time
    ) -> None:
        if not email or "@" not in email:
            raise ValueError(f"E-utilities need a contact email (NCBI's rule), got {email!r}")
        self.email, self.tool, self.base_url = email, tool, base_url.rstrip("/") + "/"
        self._api_key = api_key_from_env()  # kept private and out of repr
        rate = RATE_WITH_KEY if self._api_key else RATE_WITHOUT_KEY
        self.client = PoliteClient(rate=rate, name="PubMed E-utilities", retries=retries, backoff_s=backoff_s)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "not set"
        return f"Eutils(base_url={self.base_url!r}, tool={self.tool!r}, email={self.email!r}, api key {key})"

    def _get(self, utility: str, params: dict) -> tuple[bytes, str]:
        """The body of one E-utility call and the URL as messages show it (key masked)."""
        params = {"db": "pubmed", **params, "tool": self.tool, "email": self.email}
        if self._api_key:
            params["api_key"] = self._api_key
        url = self.base_url + utility
        return self.client.get(url, params=params).content, self.client.shown(url, params)

    def esearch(self, query: str, mindate: str | None = None, maxdate: str | None = None) -> Search:
        """Run `query` on the history server (publication dates mindate..maxdate when given); no ids returned."""
        params = {"term": query, "usehistory": "y", "retmax": "0"}  # retmax=0: the ids stay on the server
        if mindate or maxdate:
            params.update(datetype="pdat", mindate=mindate, maxdate=maxdate)
        body, shown = self._get("esearch.fcgi", params)
        try:
            root = ET.fromstring(body)
        except ET.ParseError as err:
            raise EutilsError(f"ESearch {shown}: the answer is not XML ({err}): {body[:120]!r}") from None
        if root.tag != "eSearchResult":
            raise EutilsError(f"ESearch {shown}: answered <{root.tag}>, not <eSearchResult>: {body[:120]!r}")
        if (error := root.findtext("ERROR")) is not None:
            raise EutilsError(f"ESearch refused the search {query!r}: {error.strip()} ({shown})")
        warnings = [f"{e.tag}: {e.text}" for e in root.iterfind("ErrorList/*")] + [
            f"{e.tag}: {e.text}" for e in root.iterfind("WarningList/*")
        ]
        for warning in warnings:
            log.warning("ESearch %r: %s", query, warning)
        count, webenv, query_key = (root.findtext(t, "").strip() for t in ("Count", "WebEnv", "QueryKey"))
        if not count.isdigit():
            raise EutilsError(f"ESearch {shown}: no Count in the answer: {body[:200]!r}")
        if not webenv or not query_key:
            raise EutilsError(
                f"ESearch {shown}: the answer has no WebEnv/QueryKey, so the history server did not keep the "
                "result set (was usehistory=y dropped by a proxy?)"
            )
        translation = root.findtext("QueryTranslation", "").strip()
        return Search(int(count), webenv, query_key, translation, warnings)

    def efetch(self, search: Search, retstart: int, retmax: int) -> tuple[bytes, str]:
        """Records retstart..retstart+retmax-1 of the search's result set as PubMed XML, and the URL shown."""
        params = {"query_key": search.query_key, "WebEnv": search.webenv, "retstart": str(retstart)}
        params.update(retmax=str(retmax), rettype="abstract", retmode="xml")
        return self._get("efetch.fcgi", params)


# ---- the pull ---------------------------------------------------------------------------------


def _check_request(query: str, mindate: str | None, maxdate: str | None, max_records: int | None, retmax: int) -> None:
    if not query.strip():
        raise ValueError("the PubMed query is empty")
    if (mindate is None) != (maxdate is None):
        raise ValueError(f"mindate and maxdate go together (E-utilities ignore one alone): {mindate!r}, {maxdate!r}")
    for date in (mindate, maxdate):
        if date is not None and not DATE.fullmatch(date):
            raise ValueError(f"date {date!r}: E-utilities take YYYY, YYYY/MM or YYYY/MM/DD")
    if max_records is not None and max_records < 1:
        raise ValueError(f"max_records must be >= 1 or None (all), got {max_records}")
    if not 1 <= retmax <= HISTORY_LIMIT:
        raise ValueError(f"retmax must be within 1..{HISTORY_LIMIT}, got {retmax}")


def _batch_name(number: int) -> str:
    return f"efetch_{number:05d}.xml"  # 5 digits: up to 10,000 batches (the history limit at retmax=1)


def _load_state(folder: Path) -> dict | None:
    path = folder / STATE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise EutilsError(f"{path}: not readable JSON ({err}); delete {folder} to pull afresh") from None


def _save_state(folder: Path, state: dict) -> None:
    atomic_write(folder / STATE, json.dumps(state, indent=1) + "\n")


def _batch_ok(folder: Path, batch: dict | None) -> bool:
    """Whether a batch the state records is on disk and still matches its md5."""
    if batch is None:
        return False
    try:
        verify(folder / batch["file"], "md5:" + batch["md5"])
    except (FetchError, FileNotFoundError) as err:
        log.warning("%s: %s; fetching it again", folder, err)
        return False
    return True


def _count_records(body: bytes, where: str, search: Search, folder: Path) -> int:
    """Parse a whole EFetch body (so that only complete, well-formed batches are kept) and count its records."""
    try:
        return sum(1 for _ in iter_articles(body, where))
    except PubmedXMLError as err:
        text = (err.ncbi_error or "").lower()
        if err.ncbi_error is not None and any(k in text for k in ("history", "webenv", "query_key", "query #")):
            raise EutilsError(
                f"{where}: NCBI no longer has the search's result set (WebEnv {search.webenv}, QueryKey "
                f"{search.query_key}): {err.ncbi_error}. The history server keeps a search only for some hours and "
                f"a new search may count or order records differently, so the batches in {folder} cannot be "
                f"completed from it: delete {folder} and pull again."
            ) from None
        raise EutilsError(str(err)) from None


def pull(
    folder: str | Path,
    query: str,
    *,
    eutils: Eutils,
    mindate: str | None = None,  # publication date range (datetype=pdat), YYYY[/MM[/DD]]; both or neither
    maxdate: str | None = None,
    max_records: int | None = None,  # None: all the search matches (at most HISTORY_LIMIT)
    retmax: int = DEFAULT_RETMAX,
) -> PullResult:
    """Search PubMed and fetch the results into `folder` in batches, continuing a pull that stopped midway."""
    _check_request(query, mindate, maxdate, max_records, retmax)
    folder = Path(folder)
    request = {"query": query, "mindate": mindate, "maxdate": maxdate, "max_records": max_records, "retmax": retmax}
    state = _load_state(folder)
    if state is not None and state["request"] != request:
        raise EutilsError(
            f"{folder} holds a pull of {state['request']}, not of {request}: its batches cannot be mixed; "
            "delete the folder or pull into another one"
        )
    if state is None:
        search = eutils.esearch(query, mindate, maxdate)
        total = search.count if max_records is None else min(search.count, max_records)
        if total > HISTORY_LIMIT:
            raise EutilsError(
                f"the search {query!r} matches {search.count:,} records, but E-utilities serve only the first "
                f"{HISTORY_LIMIT:,} of a PubMed search: narrow the date range (pull one year at a time), set "
                f"max_records <= {HISTORY_LIMIT:,}, or read the baseline files instead"
            )
        state = {"request": request, "search": vars(search), "total": total, "batches": {}, "complete": False}
        folder.mkdir(parents=True, exist_ok=True)
        _save_state(folder, state)
        log.info("PubMed %r: %d records match, pulling %d (WebEnv %s)", query, search.count, total, search.webenv)
    search = Search(**state["search"])
    total, fetched = state["total"], []
    starts = list(range(0, total, retmax))
    for number, retstart in enumerate(starts):
        if _batch_ok(folder, state["batches"].get(str(number))):
            continue
        size = min(retmax, total - retstart)  # the last batch stops at max_records
        body, shown = eutils.efetch(search, retstart, size)
        where = f"EFetch batch {number} ({shown})"
        records = _count_records(body, where, search, folder)
        if records < size:  # withdrawn records and PubmedBookArticle entries leave gaps; NCBI still counts them
            log.warning("%s: %d of %d records", where, records, size)
        atomic_write(folder / _batch_name(number), body)
        state["batches"][str(number)] = {
            "file": _batch_name(number),
            "retstart": retstart,
            "records": records,
            "md5": hashlib.md5(body).hexdigest(),
        }
        _save_state(folder, state)
        fetched.append(number)
        log.info("PubMed batch %d/%d: %d records", number + 1, len(starts), records)
    if not state["complete"]:
        state["complete"] = True
        _save_state(folder, state)
    return PullResult(
        folder=folder,
        count=search.count,
        total=total,
        batches=[folder / _batch_name(n) for n in range(len(starts))],
        records=sum(b["records"] for b in state["batches"].values()),
        fetched=fetched,
    )


def read_pull(folder: str | Path) -> Iterator[PubmedRecord]:
    """The records of a complete pull, batch by batch; a pull that did not finish is refused, not read in part."""
    folder = Path(folder)
    state = _load_state(folder)
    if state is None:
        raise EutilsError(f"{folder}: no {STATE}: not a PubMed pull folder (run pull first)")
    batches = state["batches"]
    expected = len(range(0, state["total"], state["request"]["retmax"]))
    missing = [n for n in range(expected) if str(n) not in batches]
    if not state["complete"] or missing:
        raise EutilsError(f"{folder}: the pull is incomplete (batches {missing} of {expected} missing); run pull again")
    paths = [folder / batches[str(n)]["file"] for n in range(expected)]
    for number, path in enumerate(paths):  # every batch checked before the first record is yielded
        verify(path, "md5:" + batches[str(number)]["md5"])
    for path in paths:
        yield from iter_articles(path)
