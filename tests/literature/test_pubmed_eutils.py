"""The E-utilities pull against a loopback server that answers with NCBI's real saved responses.

ESearch is answered with pubmed_xml/esearch2.xml (a real usehistory=y answer: Count 42249, WebEnv
MCID_6927d6e7fee3e90f880ec190, QueryKey 1); EFetch with the real records of the first three Alzforum efetch
files (91 + 100 + 100 PubmedArticle), sliced by retstart/retmax byte for byte between the files' own header
and footer, as the history server pages through a result set. Faults (a 500, an HTML page, a cut body, an
NCBI <ERROR>) are injected per retstart. The <ERROR> bodies are crafted in NCBI's shape: ../shared holds no
saved error answer.
"""

from __future__ import annotations

import gzip
import http.server
import json
import logging
import re
import threading
import time
import urllib.parse
from pathlib import Path

import pytest

from components.fetch import FetchError
from pipelines.literature.sources.eutils import (
    RATE_WITH_KEY,
    RATE_WITHOUT_KEY,
    Eutils,
    EutilsError,
    pull,
    read_pull,
)
from pipelines.literature.sources.pubmed import iter_articles

DATA = Path(__file__).parents[2].parent / "shared" / "data" / "literature"
ESEARCH = DATA / "pubmed_xml" / "esearch2.xml"
EFETCH_FILES = [DATA / "pubmed_efetch_alzforum" / f"pubmed_{a}_to_{a + 99}.xml.gz" for a in (0, 100, 200)]
WEBENV = "MCID_6927d6e7fee3e90f880ec190"  # in esearch2.xml
KEY = "test-key-0123456789abcdef"  # made up; searched for in every output
QUERY = dict(query="alzheimer disease", mindate="2000/01/01", maxdate="2024/12/31")


@pytest.fixture(scope="module")
def corpus() -> tuple[bytes, list[bytes]]:
    """(the header up to <PubmedArticleSet>, each real <PubmedArticle>...</PubmedArticle> in file order)."""
    if not ESEARCH.is_file() or not all(p.is_file() for p in EFETCH_FILES):
        pytest.fail(f"the PubMed samples are not in {DATA}")
    texts = [gzip.decompress(p.read_bytes()) for p in EFETCH_FILES]
    header = texts[0][: texts[0].index(b"<PubmedArticleSet>") + len(b"<PubmedArticleSet>")]
    records = [m.group(0) for t in texts for m in re.finditer(rb"<PubmedArticle>.*?</PubmedArticle>", t, re.DOTALL)]
    assert len(records) == 291
    return header, records


class EutilsServer:
    """esearch.fcgi and efetch.fcgi on 127.0.0.1, every request recorded as (utility, params, monotonic time)."""

    def __init__(self, corpus):
        self.header, self.records = corpus
        self.esearch = ESEARCH.read_bytes()
        self.fail: dict[int, int] = {}  # retstart -> HTTP status, answered every time until removed
        self.body: dict[int, bytes] = {}  # retstart -> a 200 body in place of the records
        self.once: list[int] = []  # statuses answered to the next requests, whatever they ask
        self.requests: list[tuple[str, dict, float]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urllib.parse.urlsplit(self.path)
                params = dict(urllib.parse.parse_qsl(parts.query))
                utility = parts.path.rsplit("/", 1)[-1]
                server.requests.append((utility, params, time.monotonic()))
                status, body = server.answer(utility, params)
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/entrez/eutils/"
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def efetch_body(self, retstart: int, retmax: int) -> bytes:
        chosen = self.records[retstart : retstart + retmax]
        return self.header + b"\n" + b"\n".join(chosen) + b"\n</PubmedArticleSet>\n"

    def answer(self, utility: str, params: dict) -> tuple[int, bytes]:
        if self.once:
            return self.once.pop(0), b"<html><body>busy</body></html>"
        if utility == "esearch.fcgi":
            return 200, self.esearch
        if utility != "efetch.fcgi" or params.get("WebEnv") != WEBENV or params.get("query_key") != "1":
            return 400, b"bad request"
        retstart = int(params["retstart"])
        if retstart in self.fail:
            return self.fail[retstart], b"<html><body>server error</body></html>"
        if retstart in self.body:
            return 200, self.body[retstart]
        return 200, self.efetch_body(retstart, int(params["retmax"]))

    def asked(self, utility: str = "efetch.fcgi", key: str = "retstart") -> list[str]:
        return [params.get(key) for u, params, _ in self.requests if u == utility]

    def close(self):
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server(corpus):
    s = EutilsServer(corpus)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    """Most tests run with a key (10 requests/s keeps them fast); the no-key test removes it."""
    monkeypatch.setenv("NCBI_API_KEY", KEY)


def eutils(server) -> Eutils:
    return Eutils(email="pull-test@example.org", base_url=server.url, retries=1, backoff_s=0.01)


def real_pmids(corpus, n: int) -> list[str]:
    header, records = corpus
    body = header + b"".join(records[:n]) + b"</PubmedArticleSet>"
    return [r.pmid for r in iter_articles(body)]


# ---- the pull -------------------------------------------------------------------------------------


def test_pull_searches_once_then_pages_the_history_set(tmp_path, server, corpus):
    result = pull(tmp_path / "pubmed", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    utilities = [u for u, _, _ in server.requests]
    assert utilities == ["esearch.fcgi", "efetch.fcgi", "efetch.fcgi", "efetch.fcgi"]
    search = server.requests[0][1]
    assert search == {
        "db": "pubmed",
        "term": "alzheimer disease",
        "usehistory": "y",
        "retmax": "0",
        "datetype": "pdat",
        "mindate": "2000/01/01",
        "maxdate": "2024/12/31",
        "tool": "scifolio",
        "email": "pull-test@example.org",
        "api_key": KEY,
    }
    fetches = [params for u, params, _ in server.requests if u == "efetch.fcgi"]
    assert [(p["retstart"], p["retmax"]) for p in fetches] == [("0", "100"), ("100", "100"), ("200", "50")]
    assert all(p["WebEnv"] == WEBENV and p["query_key"] == "1" for p in fetches)
    assert all((p["rettype"], p["retmode"], p["db"]) == ("abstract", "xml", "pubmed") for p in fetches)
    assert all(p["tool"] == "scifolio" and p["email"] == "pull-test@example.org" for p in fetches)

    assert (result.count, result.total, result.records, result.fetched) == (42249, 250, 250, [0, 1, 2])
    assert [p.name for p in result.batches] == ["efetch_00000.xml", "efetch_00001.xml", "efetch_00002.xml"]
    records = list(read_pull(tmp_path / "pubmed"))
    assert [r.pmid for r in records] == real_pmids(corpus, 250)
    assert (
        records[0].pmid == "19622817"
        and records[0].title
        == "CSF biomarkers and incipient Alzheimer disease in patients with mild cognitive impairment."
    )
    state = json.loads((tmp_path / "pubmed" / "state.json").read_text())
    assert state["complete"] and state["search"]["webenv"] == WEBENV and state["search"]["count"] == 42249
    assert [b["records"] for b in state["batches"].values()] == [100, 100, 50]


def test_a_stopped_pull_continues_from_the_first_missing_batch(tmp_path, server):
    server.fail[100] = 500  # batch 1 fails on every attempt: the pull stops after batch 0
    with pytest.raises(FetchError, match="HTTP 500 after 2 attempts"):
        pull(tmp_path / "stopped", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    assert sorted(p.name for p in (tmp_path / "stopped").glob("efetch_*")) == ["efetch_00000.xml"]
    with pytest.raises(EutilsError, match=r"the pull is incomplete \(batches \[1, 2\] of 3 missing\)"):
        list(read_pull(tmp_path / "stopped"))

    del server.fail[100]
    server.requests.clear()
    resumed = pull(tmp_path / "stopped", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    assert server.asked("esearch.fcgi") == []  # the saved WebEnv/QueryKey are reused
    assert server.asked() == ["100", "200"]  # only the missing batches
    assert resumed.fetched == [1, 2] and resumed.records == 250

    whole = pull(tmp_path / "whole", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    for a, b in zip(resumed.batches, whole.batches, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert list(read_pull(tmp_path / "stopped")) == list(read_pull(tmp_path / "whole"))


def test_a_damaged_batch_is_fetched_again_alone(tmp_path, server):
    pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    batch = tmp_path / "p" / "efetch_00001.xml"
    batch.write_bytes(batch.read_bytes()[:1000])  # as a disk or a hand would leave it
    with pytest.raises(FetchError, match="efetch_00001.xml: checksum mismatch"):
        list(read_pull(tmp_path / "p"))
    server.requests.clear()
    again = pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    assert server.asked() == ["100"] and again.fetched == [1]
    assert len(list(read_pull(tmp_path / "p"))) == 250


def test_a_complete_pull_asks_nothing_again(tmp_path, server):
    pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=150, retmax=100)
    server.requests.clear()
    result = pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=150, retmax=100)
    assert server.requests == [] and result.fetched == [] and result.records == 150


def test_a_folder_holding_another_request_is_refused(tmp_path, server):
    pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=150, retmax=100)
    with pytest.raises(EutilsError, match="holds a pull of .* its batches cannot be mixed"):
        pull(tmp_path / "p", **{**QUERY, "maxdate": "2025/12/31"}, eutils=eutils(server), max_records=150, retmax=100)


def test_a_503_within_the_pull_is_retried(tmp_path, server):
    server.once = [503]  # the ESearch itself meets a busy server once
    result = pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=100, retmax=100)
    assert [u for u, _, _ in server.requests] == ["esearch.fcgi", "esearch.fcgi", "efetch.fcgi"]
    assert result.records == 100


# ---- API key and rate ---------------------------------------------------------------------------------


def test_api_key_comes_from_the_environment_and_is_never_shown_or_written(tmp_path, server, caplog):
    client = eutils(server)
    assert client.client.interval == pytest.approx(1 / RATE_WITH_KEY)
    assert KEY not in repr(client) and "api key set" in repr(client)
    with caplog.at_level(logging.DEBUG):  # urllib3 logs each request line, query string included
        pull(tmp_path / "p", **QUERY, eutils=client, max_records=150, retmax=100)
    assert all(params["api_key"] == KEY for _, params, _ in server.requests)  # sent on every request
    assert KEY not in caplog.text and "api_key=***" in caplog.text  # logged, masked
    for path in (tmp_path / "p").iterdir():
        assert KEY.encode() not in path.read_bytes(), path
    times = [t for _, _, t in server.requests]
    assert all(t - times[0] >= k / RATE_WITH_KEY - 0.01 for k, t in enumerate(times))  # 10 requests/s at most

    server.fail[0] = 404
    with pytest.raises(FetchError) as err:
        pull(tmp_path / "q", **QUERY, eutils=client, max_records=150, retmax=100)
    assert "HTTP 404" in str(err.value) and KEY not in str(err.value) and "api_key=" in str(err.value)


def test_without_a_key_three_requests_per_second_and_no_key_sent(tmp_path, server, monkeypatch):
    monkeypatch.delenv("NCBI_API_KEY")
    client = eutils(server)
    assert client.client.interval == pytest.approx(1 / RATE_WITHOUT_KEY) and "not set" in repr(client)
    pull(tmp_path / "p", **QUERY, eutils=client, max_records=300, retmax=100)  # 1 ESearch + 3 EFetch
    assert all("api_key" not in params for _, params, _ in server.requests)
    times = [t for _, _, t in server.requests]
    assert len(times) == 4
    assert all(t - times[0] >= k / RATE_WITHOUT_KEY - 0.01 for k, t in enumerate(times))


# ---- what E-utilities answer when they refuse ------------------------------------------------------------


def test_esearch_error_element_is_reported_clearly(tmp_path, server):
    server.esearch = (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eSearchResult PUBLIC "-//NLM//DTD esearch 20060628//EN" '
        b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20060628/esearch.dtd">\n'
        b"<eSearchResult><ERROR>Invalid query</ERROR></eSearchResult>\n"
    )
    with pytest.raises(EutilsError, match=r"ESearch refused the search 'alzheimer disease': Invalid query"):
        pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=100)
    assert not (tmp_path / "p").exists()  # nothing that could pass for a pull


def test_esearch_without_history_is_refused(tmp_path, server):
    server.esearch = (DATA / "pubmed_xml" / "esearch1.xml").read_bytes()  # real, made without usehistory=y
    with pytest.raises(EutilsError, match="no WebEnv/QueryKey"):
        pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=100)


def test_no_match_is_an_empty_complete_pull(tmp_path, server):
    server.esearch = (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<eSearchResult><Count>0</Count><RetMax>0</RetMax><RetStart>0'
        b"</RetStart><QueryKey>1</QueryKey><WebEnv>" + WEBENV.encode() + b"</WebEnv><IdList/><TranslationSet/>"
        b"<QueryTranslation/><ErrorList><PhraseNotFound>zzxqv</PhraseNotFound></ErrorList></eSearchResult>\n"
    )
    result = pull(tmp_path / "p", query="zzxqv", eutils=eutils(server))
    assert (result.count, result.batches, server.asked()) == (0, [], [])
    assert list(read_pull(tmp_path / "p")) == []


def test_more_than_the_history_limit_is_refused_before_fetching(tmp_path, server):
    with pytest.raises(EutilsError, match=r"matches 42,249 records, but E-utilities serve only the first 10,000"):
        pull(tmp_path / "p", **QUERY, eutils=eutils(server))  # max_records=None: all 42,249
    assert server.asked() == []


def test_expired_webenv_says_what_to_do(tmp_path, server):
    server.body[100] = (
        b'<?xml version="1.0" encoding="UTF-8" ?>\n<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN" '
        b'"https://eutils.ncbi.nlm.nih.gov/eutils/dtd/20131226/efetch.dtd">\n<eFetchResult>\n\t<ERROR>Cannot retrieve '
        b"history data. query_key: 1, WebEnv: " + WEBENV.encode() + b", retstart: 100, retmax: 100</ERROR>\n"
        b"</eFetchResult>\n"
    )
    with pytest.raises(EutilsError) as err:
        pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    message = str(err.value)
    assert "EFetch batch 1" in message and "NCBI no longer has the search's result set" in message
    assert f"delete {tmp_path / 'p'} and pull again" in message and KEY not in message
    assert not (tmp_path / "p" / "efetch_00001.xml").exists()


def test_an_html_page_instead_of_records_is_not_kept(tmp_path, server):
    server.body[100] = (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
        b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )  # a proxy's page with status 200
    with pytest.raises(EutilsError, match=r"EFetch batch 1 \(http://127.0.0.1.*root element <html>.*HTML page"):
        pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=250, retmax=100)
    assert not (tmp_path / "p" / "efetch_00001.xml").exists()
    assert not json.loads((tmp_path / "p" / "state.json").read_text())["complete"]


def test_a_cut_body_is_not_kept(tmp_path, server):
    whole = server.efetch_body(0, 100)
    server.body[0] = whole[: len(whole) // 2]
    with pytest.raises(EutilsError, match=r"EFetch batch 0 .* not well-formed XML at line \d+.*truncated download"):
        pull(tmp_path / "p", **QUERY, eutils=eutils(server), max_records=100, retmax=100)
    assert list((tmp_path / "p").glob("efetch_*")) == []


# ---- arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(query="x", mindate="2020"), "mindate and maxdate go together"),
        (dict(query="x", mindate="2020-01-01", maxdate="2020-12-31"), "E-utilities take YYYY"),
        (dict(query="  "), "query is empty"),
        (dict(query="x", max_records=0), "max_records must be >= 1"),
        (dict(query="x", retmax=20_000), "retmax must be within"),
    ],
)
def test_arguments_are_checked_before_any_request(tmp_path, server, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pull(tmp_path / "p", **kwargs, eutils=eutils(server))
    assert server.requests == []


def test_an_email_is_required():
    with pytest.raises(ValueError, match="contact email"):
        Eutils(email="")
