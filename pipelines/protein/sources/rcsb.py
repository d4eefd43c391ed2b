"""PDB entries from the RCSB download service (or a mirror of it), and entry ids from the RCSB Search API.

    ids = ids_from_pisces("cullpdb_pc40_...", max_resolution=1.8)       # or read_id_file(path), or a list
    paths = pull_entries(ids, Path("data/raw/protein/pdb"))            # {ID}.cif.gz, checked and recorded
    ids = search({"type": "terminal", "service": "text", "parameters": {...}})

Files come from https://files.rcsb.org/download/{ID}.cif.gz (mmCIF, the default: every entry has one) or
{ID}.pdb.gz (legacy PDB format, which large entries, > 62 chains or > 99,999 atoms, do not have), or from a
mirror with the same names: a folder, a file:// URL, or an http(s) URL. Remote requests go through
components.http.PoliteClient at a few requests per second, retried with backoff on 429/5xx.

RCSB publishes no checksums, so the pull writes its own: `manifest.json` (see pipelines.protein.sources)
records each file's pdb id, format, size, sha256 and URL. A pull is resumable: a file still matching its
recorded sha256 is not downloaded again (`refresh=True` downloads everything, to find entries the archive
has rewritten; a changed one is logged by id). Each body is checked before it is kept: a complete gzip file,
and for mmCIF one that starts with a data block, so that an HTML error page or a cut-off body is never
taken for an entry.

An entry the server does not have (HTTP 404: a typo, an obsolete id) stops the pull with an error naming
the id and URL; with `skip_missing=True` it is recorded in the manifest's `missing` list instead.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import zlib
from collections.abc import Iterable
from pathlib import Path

from components.fetch import FetchError
from components.http import PoliteClient
from components.io import atomic_write
from pipelines.protein.sources import Manifest, Mirror, PullError
from pipelines.protein.sources.pisces import PiscesChain, filter_pisces, pisces_entries, read_pisces

log = logging.getLogger("scifolio.protein.rcsb")

RCSB_DOWNLOAD = "https://files.rcsb.org/download/"
RCSB_SEARCH = "https://search.rcsb.org/rcsbsearch/v2/query"
RCSB_RATE = 4.0  # requests/s: RCSB states no limit; a few per second keeps a 15,000-entry pull polite
FORMATS = {"cif": ".cif.gz", "pdb": ".pdb.gz"}
PDB_ID = re.compile(r"[0-9][A-Z0-9]{3}")
SEARCH_ROWS = 1000  # results per Search API page: few requests, each answer a few tens of kB
SAVE_EVERY = 50  # files between manifest saves: a killed pull loses at most this many records (re-downloaded)


class RcsbError(PullError):
    """An RCSB download or search that cannot be used; the message names the id (or query) and the URL."""


# ---- ids -------------------------------------------------------------------------------------------


def check_pdb_id(value: str, where: str = "") -> str:
    """`value` as an upper-case PDB id (4 characters, letters and digits, the first a digit), else ValueError."""
    pdb_id = str(value).strip().upper()
    if not PDB_ID.fullmatch(pdb_id):
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}{value!r} is not a PDB id: 4 letters or digits, the first a digit (e.g. 1A12)")
    return pdb_id


def read_id_file(path: str | Path) -> list[str]:
    """PDB ids from a text file, one a line; blank lines and `#` comments (whole or trailing) are skipped."""
    path = Path(path)
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if text:
            ids.append(check_pdb_id(text, f"{path}:{number}"))
    return ids


def ids_from_pisces(
    source: str | Path | Iterable[PiscesChain],  # a PISCES list file, or chains already read
    max_resolution: float | None = None,
    max_r_factor: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
) -> list[str]:
    """The unique entries of a PISCES list's chains within the limits, in list order."""
    chains = read_pisces(source) if isinstance(source, str | Path) else source
    return pisces_entries(filter_pisces(chains, max_resolution, max_r_factor, min_length, max_length))


def _unique_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str | bytes | Path):  # iterating a string would pull one "id" per character
        raise TypeError(f"ids must be a list of PDB ids, not {type(ids).__name__} {ids!r} (a file: read_id_file)")
    return list(dict.fromkeys(check_pdb_id(i) for i in ids))


def entry_filename(pdb_id: str, fmt: str = "cif") -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: RCSB entries come as {' or '.join(map(repr, FORMATS))}")
    return check_pdb_id(pdb_id) + FORMATS[fmt]


# ---- downloads -------------------------------------------------------------------------------------


def _check_body(body: bytes, pdb_id: str, fmt: str, url: str) -> None:
    """Refuse what is not a complete gzip file of the format: an error page, a truncated body."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as f:
            head = f.read(64)
            while f.read(1 << 20):  # read to the end: gzip checks its CRC and length only there
                pass
    except (OSError, EOFError, zlib.error) as err:
        raise RcsbError(f"{pdb_id}: {url} is not a complete gzip file ({err}); it starts {body[:60]!r}") from None
    if fmt == "cif" and not head.lstrip().startswith(b"data_"):
        raise RcsbError(f"{pdb_id}: {url} is not mmCIF (no data_ block); it starts {head[:60]!r}")


def _missing(pdb_id: str, fmt: str, url: str) -> RcsbError:
    hint = " (large entries have no legacy PDB file: try fmt='cif')" if fmt == "pdb" else ""
    return RcsbError(f"PDB entry {pdb_id}: not on the server ({url}: HTTP 404 or no such file){hint}")


def pull_entries(
    ids: Iterable[str],
    out: Path,
    *,
    mirror: str = RCSB_DOWNLOAD,  # an http(s) URL, a file:// URL or a folder holding {ID}.cif.gz / {ID}.pdb.gz
    fmt: str = "cif",  # "cif" (mmCIF) or "pdb" (legacy PDB format)
    skip_missing: bool = False,  # record entries the server lacks in the manifest instead of failing
    refresh: bool = False,  # download files that still match the manifest too, to detect changed entries
    rate: float = RCSB_RATE,
    client: PoliteClient | None = None,  # share one (and its request count); built from `rate` when None
) -> list[Path]:
    """Download the entries into `out` (resuming), record them in out/manifest.json; return their paths in order."""
    ids = _unique_ids(ids)
    names = {i: entry_filename(i, fmt) for i in ids}  # the format is checked before any network
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = Mirror(mirror, "RCSB PDB", rate, client)
    manifest = Manifest(out, "rcsb")
    paths, fetched = [], 0
    try:
        for pdb_id in ids:
            name = names[pdb_id]
            if not refresh and manifest.is_current(name):
                paths.append(out / name)
                continue
            url = source.url(name)
            body = source.get(name)
            if body is None:
                if not skip_missing:
                    raise _missing(pdb_id, fmt, url)
                log.warning("PDB entry %s: not on the server (%s); recorded as missing", pdb_id, url)
                manifest.record_missing(pdb_id, url)
                continue
            _check_body(body, pdb_id, fmt, url)
            atomic_write(out / name, body)  # never a half-written entry under its final name
            manifest.record(name, pdb_id, body, url, pdb_id=pdb_id, format=fmt)
            paths.append(out / name)
            fetched += 1
            if fetched % SAVE_EVERY == 0:
                manifest.save()
    finally:
        manifest.save()  # also after an error: what was pulled is recorded and will be skipped next time
    log.info("RCSB: %d entries in %s, %d downloaded, %d missing", len(paths), out, fetched, len(manifest.missing))
    return paths


# ---- the Search API ----------------------------------------------------------------------------------


def _request_body(query: dict) -> dict:
    """A full Search API request from a request (has "query") or a bare query node (has "type")."""
    if "query" in query:
        return dict(query)
    if "type" in query:  # a terminal or group node: ask for entry ids
        return {"query": query, "return_type": "entry"}
    raise ValueError(f"not a Search API request or query node (no 'query' or 'type' key): {query!r}")


def _page(client: PoliteClient, url: str, body: dict, start: int, rows: int) -> dict | None:
    """One page of results as JSON, or None when the search matched nothing (HTTP 204)."""
    body = {**body, "request_options": {**body.get("request_options", {}), "paginate": {"start": start, "rows": rows}}}
    where = f"RCSB search {url} (start={start}, rows={rows})"
    try:
        response = client.post(url, json=body)
    except FetchError as err:
        raise RcsbError(f"{where}: {err}") from None
    if response.status_code == 204:  # the Search API's answer to a query without hits
        return None
    try:
        page = response.json()
    except ValueError:
        raise RcsbError(f"{where}: the answer is not JSON; it starts {response.content[:120]!r}") from None
    if not isinstance(page, dict) or not isinstance(page.get("result_set"), list) or "total_count" not in page:
        raise RcsbError(f"{where}: no result_set/total_count in the answer: {str(page)[:200]}")
    return page


def search(
    query: dict,  # a Search API v2 request ({"query": ..., "return_type": ...}) or a bare query node
    url: str = RCSB_SEARCH,
    rows: int = SEARCH_ROWS,  # results per page
    *,
    max_results: int | None = None,  # stop after this many ids; None: all of total_count
    rate: float = RCSB_RATE,
    retries: int = 5,
    backoff_s: float = 1.0,
) -> list[str]:
    """The identifiers a Search API v2 query matches (entry ids for return_type "entry"), page by page."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    body = _request_body(query)
    body.pop("return_all_hits", None)  # pages keep each answer small and each retry cheap
    client = PoliteClient(rate=rate, name="RCSB Search API", retries=retries, backoff_s=backoff_s)
    found: dict[str, None] = {}  # ordered and unique: a weekly release between pages can shift results by one
    start, total = 0, None
    while total is None or start < total:
        page = _page(client, url, body, start, rows)
        if page is None:
            break
        total = page["total_count"] if max_results is None else min(page["total_count"], max_results)
        identifiers = [r["identifier"] for r in page["result_set"] if isinstance(r, dict) and "identifier" in r]
        if not identifiers:  # a short total_count would otherwise be asked for forever
            break
        found.update(dict.fromkeys(identifiers))
        start += rows
    ids = list(found)
    return ids if max_results is None else ids[:max_results]
