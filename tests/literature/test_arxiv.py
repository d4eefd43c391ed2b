"""arXiv sources against the real saved responses: the API feed and the 17 OAI-PMH pages served from a
loopback HTTP server (never a mock of requests), and the metadata-snapshot sample read from disk.

Where the real files lack a case (an error entry, a DOI in the feed, a deleted record, an OAI error),
the served body is the real response edited minimally, or the response arXiv documents, and says so.
"""

from __future__ import annotations

import collections
import gzip
import http.server
import json
import re
import threading
import time
import tracemalloc
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from components.fetch import FetchError
from pipelines.literature.sources import arxiv
from pipelines.literature.sources.arxiv import ArxivError, ArxivFormatError, OaiError

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
ATOM = DATA / "arxiv_api_atom" / "arxiv.xml"
OAI_DIR = DATA / "arxiv_oai_cs_2016"
SNAPSHOT = DATA / "arxiv_metadata" / "arxiv-metadata-oai-snapshot.json"
FAST = 200.0  # requests/s in tests; the default (one per 3 s) is checked on its own

if not DATA.is_dir():
    pytest.fail(f"real data samples not found at {DATA}", pytrace=False)


# ---- a loopback server answering from a routing function --------------------------------------------


class Server:
    """`route(query) -> (status, body)` answers each GET; `faults` (statuses) are served first, in order."""

    def __init__(self, route):
        self.route = route
        self.faults: list[int] = []
        self.queries: list[dict] = []  # parsed query string of every request, faults included

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def serve():
    servers = []

    def start(route) -> Server:
        server = Server(route)

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query, keep_blank_values=True).items()}
                server.queries.append(query)
                status, body = (server.faults.pop(0), b"") if server.faults else server.route(query)
                self.send_response(status)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(body)

        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        server.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return server

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def http_client():
    return arxiv.client(rate=FAST, backoff_s=0.01, retries=2)


# ---- the API ----------------------------------------------------------------------------------------

FEED = ATOM.read_bytes() if ATOM.exists() else b""
IDS = "1801.05533v1 0802.2137v3 1209.5181v1 math/0502287v1 0707.4595v1 1505.03319v1 1207.1944v1 0808.2097v1 1205.0922v1 math/0507289v1"  # (SOURCE.md)
# the error feed arXiv's API manual shows for a malformed id (answered with HTTP 200)
ERROR_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">ArXiv Query: search_query=&amp;id_list=1309.119&amp;start=0&amp;max_results=10</title>
  <id>http://arxiv.org/api/kvuntZ8c9a4Eq5CF7KY03nMug+Q</id>
  <updated>2007-10-12T00:00:00-04:00</updated>
  <opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">1</opensearch:totalResults>
  <opensearch:startIndex xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">0</opensearch:startIndex>
  <opensearch:itemsPerPage xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">1</opensearch:itemsPerPage>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1309.119</id>
    <title>Error</title>
    <summary>incorrect id format for 1309.119</summary>
    <updated>2007-10-12T00:00:00-04:00</updated>
    <link href="http://arxiv.org/api/errors#incorrect_id_format_for_1309.119" rel="alternate" type="text/html"/>
    <author>
      <name>arXiv api core</name>
    </author>
  </entry>
</feed>
"""


def with_total(feed: bytes, total: int) -> bytes:
    return re.sub(rb"(<opensearch:totalResults[^>]*>)\d+", rb"\g<1>" + str(total).encode(), feed)


def without_entries(feed: bytes) -> bytes:
    return re.sub(rb"<entry>.*?</entry>\s*", b"", feed, flags=re.S)


def test_api_feed_parsed_with_namespaces(serve):
    server = serve(lambda q: (200, FEED))
    records = list(
        arxiv.search(
            "all:Einstein", max_results=10, page_size=10, base_url=server.url("/api/query"), http=http_client()
        )
    )
    assert [r.versioned_id for r in records] == IDS.split()
    assert server.queries == [{"search_query": "all:Einstein", "id_list": "", "start": "0", "max_results": "10"}]
    by_id = {r.arxiv_id: r for r in records}
    second = by_id["0802.2137"]
    assert (second.version, second.published, second.updated) == ("v3", "2008-02-15", "2008-04-01")
    assert by_id["1801.05533"].updated is None  # v1: the API repeats published as updated
    assert (
        by_id["1505.03319"].title
        == "Quasi-Einstein and Generalized Quasi-Einstein Warped Products with an Affine Connection"
    )
    first = by_id["1801.05533"]
    assert first.abstract.startswith(
        "In this article, we study the Einstein-Weyl structures on almost cosymplectic manifolds."
    )
    assert "\n" not in first.abstract and "  " not in first.abstract
    assert first.authors == ["Xiaomin Chen"]
    # the MSC classes the API lists as <category> terms ("53C25, 53A30 (Primary); ...") are not arXiv categories
    assert by_id["0808.2097"].categories == ["math.DG", "math-ph", "math.MP"]
    assert by_id["0808.2097"].authors == ["A. Rod Gover", "Felipe Leitner"]
    assert by_id["math/0507289"].authors == ["Alessandro Ghigi", "János Kollár"]
    assert by_id["1209.5181"].primary_category == "physics.hist-ph"
    assert collections.Counter(r.primary_category for r in records) == {"math.DG": 8, "physics.hist-ph": 2}
    assert all(r.doi is None and r.journal_ref is None for r in records)  # none in this feed: see the next test


def test_api_doi_and_journal_ref(serve):
    # the real feed with arxiv:doi and arxiv:journal_ref added to its first entry, as the API writes them
    extra = (
        b'<arxiv:doi xmlns:arxiv="http://arxiv.org/schemas/atom">10.1063/1.2779138</arxiv:doi>\n'
        b'<arxiv:journal_ref xmlns:arxiv="http://arxiv.org/schemas/atom">J. Math.\n  Phys. 48 (2007)</arxiv:journal_ref>\n'
    )
    feed = FEED.replace(b"<author>", extra + b"<author>", 1)
    server = serve(lambda q: (200, feed))
    first = next(arxiv.search("all:Einstein", max_results=1, base_url=server.url("/api/query"), http=http_client()))
    assert (first.doi, first.journal_ref) == ("10.1063/1.2779138", "J. Math. Phys. 48 (2007)")


def test_api_pages_until_total_results(serve):
    server = serve(lambda q: (200, with_total(FEED, 23)))  # the saved page stands for every page
    records = list(arxiv.search("all:Einstein", page_size=10, base_url=server.url("/api/query"), http=http_client()))
    assert len(records) == 23  # 10 + 10 + the first 3 of the last page
    assert [(q["start"], q["max_results"]) for q in server.queries] == [("0", "10"), ("10", "10"), ("20", "10")]


def test_api_stops_at_max_results(serve):
    server = serve(lambda q: (200, FEED))  # totalResults 28637
    records = list(
        arxiv.search(
            "all:Einstein", max_results=15, page_size=10, base_url=server.url("/api/query"), http=http_client()
        )
    )
    assert len(records) == 15
    assert [(q["start"], q["max_results"]) for q in server.queries] == [("0", "10"), ("10", "5")]


def test_api_error_entry_raised_with_its_message(serve):
    server = serve(lambda q: (200, ERROR_FEED))
    with pytest.raises(ArxivError, match="arXiv API error: incorrect id format for 1309.119"):
        list(arxiv.search(id_list=["1309.119"], base_url=server.url("/api/query"), http=http_client()))
    assert server.queries[0]["id_list"] == "1309.119"


def test_api_body_that_is_no_feed(serve):
    server = serve(lambda q: (200, b"Rate exceeded."))  # what arXiv has answered when throttling
    with pytest.raises(ArxivError, match=r"not an Atom feed.*Rate exceeded"):
        list(arxiv.search("all:Einstein", base_url=server.url("/api/query"), http=http_client()))


def test_api_empty_page_asked_again(serve):
    answers = {"10": [without_entries(FEED)]}  # arXiv's known quirk: an empty page mid-way, once

    def route(q):
        pending = answers.get(q["start"])
        return 200, pending.pop() if pending else with_total(FEED, 20)

    server = serve(route)
    records = list(arxiv.search("all:Einstein", page_size=10, base_url=server.url("/api/query"), http=http_client()))
    assert len(records) == 20
    assert [q["start"] for q in server.queries] == ["0", "10", "10"]


def test_api_empty_page_gives_up_after_retries(serve):
    server = serve(lambda q: (200, without_entries(FEED)))
    with pytest.raises(ArxivError, match="still an empty page at start=0"):
        list(arxiv.search("all:Einstein", base_url=server.url("/api/query"), http=http_client(), empty_page_retries=2))
    assert len(server.queries) == 3


def test_api_server_error_retried(serve):
    server = serve(lambda q: (200, FEED))
    server.faults = [503]
    records = list(arxiv.search("all:Einstein", max_results=10, base_url=server.url("/api/query"), http=http_client()))
    assert len(records) == 10 and len(server.queries) == 2


def test_api_rate_one_request_per_3_s_by_default(serve):
    assert arxiv.ARXIV_RATE == pytest.approx(1 / 3)
    assert arxiv.client().interval == pytest.approx(3.0)
    server = serve(lambda q: (200, with_total(FEED, 30)))
    began = time.monotonic()
    assert len(list(arxiv.search("all:Einstein", page_size=10, base_url=server.url("/q"), rate=10.0))) == 30
    assert time.monotonic() - began >= 0.2 - 0.02  # three requests 0.1 s apart: the rate parameter paces them


# ---- OAI-PMH ----------------------------------------------------------------------------------------

PAGE_NUMBERS = sorted(int(p.name.split(".")[0]) for p in OAI_DIR.glob("*.xml.gz"))


def page_bytes(number: int) -> bytes:
    return gzip.decompress((OAI_DIR / f"{number}.xml.gz").read_bytes())


def token_of(body: bytes) -> str:
    match = re.search(rb"<resumptionToken[^>]*>([^<]*)</resumptionToken>", body)
    return match.group(1).decode() if match else ""


def oai_route(numbers: list[int]):
    """The first ListRecords request gets the first saved page; each token, the next saved page."""
    pages = [page_bytes(n) for n in numbers]
    by_token = {token_of(body): pages[i + 1] for i, body in enumerate(pages[:-1])}

    def route(q):
        if "resumptionToken" in q:
            return (200, by_token[q["resumptionToken"]]) if q["resumptionToken"] in by_token else (404, b"")
        return 200, pages[0]

    return route


def test_oai_saved_pages_read(tmp_path):
    records = list(arxiv.read_oai(OAI_DIR))
    assert len(records) == 16538 and len({r.arxiv_id for r in records}) == 16538
    assert [r.arxiv_id for r in records[:1000]][0::999] == ["0704.0002", "0708.2571"]  # page 1 first (numeric order)
    years = collections.Counter(r.published[:4] for r in records)
    assert (years["1989"], years["1994"], years["2006"], years["2014"], years["2016"]) == (1, 252, 1895, 1279, 706)
    archives = collections.Counter(c.split(".")[0] for r in records for c in r.categories)
    assert (archives["cs"], archives["math"], archives["cmp-lg"], archives["q-fin"]) == (22697, 4670, 894, 50)
    first = records[0]
    assert first.title == "Sparsity-certifying Graph Decompositions"
    assert first.authors == ["Ileana Streinu", "Louis Theran"]
    assert (first.categories, first.primary_category) == (["math.CO", "cs.CG"], "math.CO")
    assert (first.published, first.updated, first.version) == ("2007-03-30", "2008-12-13", None)
    assert first.abstract.startswith("We describe a new algorithm, the $(k,\\ell)$-pebble game with colors")
    second = records[1]
    assert (second.doi, second.journal_ref) == ("10.1063/1.2779138", "J. Math. Phys. 48(2007), 092102.")
    wrapped = next(r for r in records if r.arxiv_id == "0708.2571")
    assert wrapped.title == "On the Security of the Cha-Ko-Lee-Han-Cheon Braid Group Public Key Cryptosystem"
    assert records[-1].arxiv_id == "quant-ph/9912100"
    assert sum(1 for r in records if r.doi) == 2024 and sum(1 for r in records if r.journal_ref) == 4729
    one_page = list(arxiv.read_oai(OAI_DIR / "103.xml.gz"))
    assert len(one_page) == 538 and one_page[0].arxiv_id == "math/0611918"


def test_oai_harvest_follows_resumption_tokens(serve, tmp_path):
    server = serve(oai_route(PAGE_NUMBERS))
    state = arxiv.harvest_oai(tmp_path / "cs", set_spec="cs", base_url=server.url("/oai2"), http=http_client())
    assert (state["pages"], state["records"], state["deleted"], state["complete"]) == (17, 16538, 0, True)
    assert state["token"] is None and state["complete_list_size"] == 102538
    assert server.queries[0] == {"verb": "ListRecords", "metadataPrefix": "arXiv", "set": "cs"}
    # a continuation carries the token alone (OAI-PMH: resumptionToken is an exclusive argument)
    assert server.queries[1] == {"verb": "ListRecords", "resumptionToken": "1122234|1001"}
    assert server.queries[-1] == {"verb": "ListRecords", "resumptionToken": "1122234|102001"}
    assert sorted(p.name for p in (tmp_path / "cs").iterdir())[:2] == ["harvest.json", "page-00001.xml"]
    assert (tmp_path / "cs" / "page-00017.xml").read_bytes() == page_bytes(103)  # saved as served
    assert [r.arxiv_id for r in arxiv.read_oai(tmp_path / "cs")] == [r.arxiv_id for r in arxiv.read_oai(OAI_DIR)]
    # a finished harvest is not asked again
    again = arxiv.harvest_oai(tmp_path / "cs", set_spec="cs", base_url=server.url("/oai2"), http=http_client())
    assert again == state and len(server.queries) == 17


def test_oai_harvest_resumes_from_last_saved_token(serve, tmp_path):
    server = serve(oai_route([101, 102, 103]))
    folder = tmp_path / "h"
    kwargs = dict(set_spec="cs", from_date="2001-01-01", until_date="2016-03-08", base_url=server.url("/oai2"))
    stopped = arxiv.harvest_oai(folder, max_pages=1, http=http_client(), **kwargs)
    assert (stopped["pages"], stopped["complete"], stopped["token"]) == (1, False, "1122234|101001")
    assert server.queries[0] == {
        "verb": "ListRecords",
        "metadataPrefix": "arXiv",
        "set": "cs",
        "from": "2001-01-01",
        "until": "2016-03-08",
    }
    server.faults = [404]  # the next request fails without retry: the harvest stops with an error
    with pytest.raises(FetchError, match="HTTP 404"):
        arxiv.harvest_oai(folder, http=http_client(), **kwargs)
    assert json.loads((folder / "harvest.json").read_text())["pages"] == 1
    done = arxiv.harvest_oai(folder, http=http_client(), **kwargs)
    assert server.queries[-2] == {"verb": "ListRecords", "resumptionToken": "1122234|101001"}  # resumed, not restarted
    assert (done["pages"], done["records"], done["complete"]) == (3, 2538, True)
    assert len(list(arxiv.read_oai(folder))) == 2538
    with pytest.raises(ValueError, match="holds a harvest of"):
        arxiv.harvest_oai(folder, set_spec="math", base_url=server.url("/oai2"), http=http_client())


OAI_ERROR = """<?xml version="1.0" encoding="UTF-8"?>
<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/ http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd">
<responseDate>2016-03-09T00:35:38Z</responseDate>
<request verb="ListRecords" metadataPrefix="arXiv" set="cs">http://export.arxiv.org/oai2</request>
<error code="{code}">{message}</error>
</OAI-PMH>
"""  # (the OAI-PMH 2.0 error response, with the saved pages' envelope)


def test_oai_no_records_match_is_an_empty_harvest(serve, tmp_path):
    message = (
        "The combination of the values of the from, until, set and metadataPrefix arguments results in an empty list."
    )
    server = serve(lambda q: (200, OAI_ERROR.format(code="noRecordsMatch", message=message).encode()))
    state = arxiv.harvest_oai(
        tmp_path / "none", from_date="2030-01-01", base_url=server.url("/oai2"), http=http_client()
    )
    assert (state["pages"], state["records"], state["complete"]) == (0, 0, True)
    assert list(arxiv.read_oai(tmp_path / "none")) == []


def test_oai_other_errors_raised_with_code(serve, tmp_path):
    server = serve(lambda q: (200, OAI_ERROR.format(code="badArgument", message="Illegal set name").encode()))
    with pytest.raises(OaiError, match="OAI-PMH error badArgument: Illegal set name") as err:
        arxiv.harvest_oai(tmp_path / "bad", set_spec="nope", base_url=server.url("/oai2"), http=http_client())
    assert err.value.code == "badArgument"
    assert not (tmp_path / "bad" / "harvest.json").exists()


def test_oai_deleted_records_skipped(tmp_path):
    # page 103 with its first record's header marked deleted and its metadata removed, as OAI-PMH sends it
    body = page_bytes(103).decode()
    first = re.search(r"<record>\s*<header>(.*?)</header>\s*<metadata>.*?</metadata>\s*</record>", body, re.S)
    body = body.replace(first.group(0), f'<record><header status="deleted">{first.group(1)}</header></record>', 1)
    (tmp_path / "103.xml").write_text(body)
    with open(tmp_path / "103.xml", "rb") as f:
        page = arxiv.parse_oai_page(f, "103.xml")
    assert (len(page.records), page.deleted, page.token) == (537, 1, None)
    assert "math/0611918" not in {r.arxiv_id for r in arxiv.read_oai(tmp_path)}


def test_oai_refuses_formats_it_does_not_parse(tmp_path):
    with pytest.raises(ValueError, match="only 'arXiv' is parsed"):
        arxiv.harvest_oai(tmp_path, metadata_prefix="oai_dc")


def test_oai_malformed_page_named(tmp_path):
    (tmp_path / "1.xml").write_bytes(page_bytes(103)[:5000])
    with pytest.raises(ArxivFormatError, match=r"1\.xml: malformed XML"):
        list(arxiv.read_oai(tmp_path))


# ---- the metadata snapshot --------------------------------------------------------------------------


def test_snapshot_read():
    records = list(arxiv.read_snapshot(SNAPSHOT))
    assert len(records) == 200 and (records[0].arxiv_id, records[-1].arxiv_id) == ("0704.0001", "0704.0200")
    first = records[0]
    assert first.title == "Calculation of prompt diphoton production cross sections at Tevatron and LHC energies"
    assert first.authors == ["C. Balázs", "E. L. Berger", "P. M. Nadolsky", "C. -P. Yuan"]  # Unicode, not TeX
    assert (first.published, first.updated, first.version) == ("2007-04-02", "2007-07-24", "v2")
    assert (first.doi, first.journal_ref) == ("10.1103/PhysRevD.76.013009", "Phys.Rev.D76:013009,2007")
    assert first.abstract.startswith(
        "A fully differential calculation in perturbative quantum chromodynamics is presented"
    )
    assert collections.Counter(r.version for r in records) == {"v1": 113, "v2": 59, "v3": 20, "v4": 5, "v5": 3}
    assert sum(1 for r in records if r.doi) == 117 and sum(1 for r in records if r.journal_ref) == 109
    evans = next(r for r in records for a in r.authors if a == "Neal J. Evans II")  # a suffix in authors_parsed
    assert evans.arxiv_id
    assert arxiv.as_dict(first)["versioned_id"] == "0704.0001v2"
    assert len(list(arxiv.read_snapshot(SNAPSHOT.parent))) == 200  # the folder reads the same


def test_snapshot_and_oai_give_the_same_record():
    oai = {r.arxiv_id: r for r in arxiv.read_oai(OAI_DIR / "1.xml.gz")}
    both = [r for r in arxiv.read_snapshot(SNAPSHOT) if r.arxiv_id in oai]
    assert [
        r.arxiv_id for r in both
    ] == "0704.0002 0704.0046 0704.0047 0704.0050 0704.0062 0704.0090 0704.0098 0704.0108".split()
    for snap in both:
        other = oai[snap.arxiv_id]
        for name in ("title", "abstract", "authors", "categories", "primary_category", "updated", "doi", "journal_ref"):
            assert getattr(snap, name) == getattr(other, name), (snap.arxiv_id, name)
    # one difference: OAI's created is arXiv's local (US Eastern) date, the snapshot's v1 time is GMT
    assert (oai["0704.0002"].published, both[0].published) == ("2007-03-30", "2007-03-31")


def test_snapshot_malformed_line_named(tmp_path):
    lines = SNAPSHOT.read_text().splitlines()[:3]
    bad = tmp_path / "part.json"
    bad.write_text("\n".join([*lines, '{"id": "0704.0004", "title": "cut', lines[0]]) + "\n")
    with pytest.raises(ArxivFormatError, match=r"part\.json:4: not JSON"):
        list(arxiv.read_snapshot(bad))
    missing = tmp_path / "missing.json"
    row = json.loads(lines[0])
    del row["versions"]
    missing.write_text(lines[1] + "\n" + json.dumps(row) + "\n")
    with pytest.raises(ArxivFormatError, match=r"missing\.json:2: missing or empty field 'versions'"):
        list(arxiv.read_snapshot(missing))


def test_snapshot_streams_in_constant_memory(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(SNAPSHOT.read_bytes() * 30)  # 8.6 MB
    tracemalloc.start()
    count = sum(1 for _ in arxiv.read_snapshot(big))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 6000
    assert peak < 1_000_000  # a few records' worth, not the file


def test_demo_snapshot_round_trip(tmp_path):
    written = arxiv.write_demo_snapshot(tmp_path / "demo.json", n=25, seed=3)
    assert list(arxiv.read_snapshot(tmp_path / "demo.json")) == written
    assert arxiv.write_demo_snapshot(tmp_path / "again.json", n=25, seed=3) == written  # seeded
    real_keys = set(json.loads(SNAPSHOT.read_text().splitlines()[0]))
    assert all(set(json.loads(line)) == real_keys for line in (tmp_path / "demo.json").read_text().splitlines())
    assert any(r.updated for r in written) and any(r.doi for r in written) and any(len(r.authors) > 1 for r in written)
