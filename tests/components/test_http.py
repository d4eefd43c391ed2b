"""components.http.PoliteClient against a real HTTP server on 127.0.0.1 with scripted answers.

Covered: the rate limit (arrival times of N requests), 503 then 200 retried, Retry-After honoured, a dropped
connection retried, a 404 not retried, retries exhausted, and the API key absent from every message and log.
"""

from __future__ import annotations

import http.server
import logging
import re
import socket
import threading
import time

import pytest

from components.fetch import FetchError
from components.http import PoliteClient

SECRET = "key-0123456789abcdef"  # a made-up API key; the assertions look for it everywhere
MASKED = re.compile(r"api_key=\*\*\*")  # shown() puts *** in place of the key


class Loopback:
    """Answers come from `script` (one per request: a status, (status, headers) or "drop"), then 200 b"ok"."""

    def __init__(self) -> None:
        self.script: list = []
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.paths: list[str] = []
        lock = threading.Lock()
        loopback = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with lock:
                    loopback.arrivals.append(time.monotonic())
                    loopback.paths.append(self.path)
                    answer = loopback.script.pop(0) if loopback.script else 200
                if answer == "drop":  # close without answering: the client sees a dropped connection
                    self.close_connection = True
                    return
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                body = b"ok" if status == 200 else b"error page"
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback():
    server = Loopback()
    yield server
    server.close()


def test_rate_is_respected(loopback):
    client = PoliteClient(rate=10.0, name="test")  # one request per 100 ms
    start = time.monotonic()
    for _ in range(6):
        assert client.get(loopback.url).content == b"ok"
    assert time.monotonic() - start >= 5 * 0.1
    # the k-th request arrives at least k intervals after the first (10 ms allowed for the server's scheduling;
    # single gaps jitter both ways, the cumulative spacing cannot be undercut by more than one request's latency)
    since_first = [t - loopback.arrivals[0] for t in loopback.arrivals]
    assert all(t >= k * 0.1 - 0.01 for k, t in enumerate(since_first)), since_first


def test_503_then_200_is_retried(loopback):
    loopback.script = [503]
    client = PoliteClient(rate=100.0, name="test", backoff_s=0.01)
    response = client.get(loopback.url, params={"q": "x"})
    assert (response.status_code, response.content) == (200, b"ok")
    assert client.requests == 2 and loopback.paths == ["/api?q=x", "/api?q=x"]


def test_retry_after_is_honoured(loopback):
    loopback.script = [(429, {"Retry-After": "1"})]
    client = PoliteClient(rate=100.0, name="test", backoff_s=0.01)  # without Retry-After it would wait 10 ms
    assert client.get(loopback.url).status_code == 200
    assert loopback.arrivals[1] - loopback.arrivals[0] >= 1.0


def test_dropped_connection_is_retried(loopback):
    loopback.script = ["drop"]
    client = PoliteClient(rate=100.0, name="test", backoff_s=0.01)
    assert client.get(loopback.url).content == b"ok"
    assert len(loopback.arrivals) == 2


def test_404_is_not_retried(loopback):
    loopback.script = [404]
    client = PoliteClient(rate=100.0, name="test", backoff_s=0.01)
    with pytest.raises(FetchError, match=r"test: http://127.0.0.1:\d+/api: HTTP 404 Not Found"):
        client.get(loopback.url)
    assert len(loopback.arrivals) == 1


def test_retries_are_bounded(loopback):
    loopback.script = [503, 503, 503]
    client = PoliteClient(rate=100.0, name="test", retries=2, backoff_s=0.01)
    with pytest.raises(FetchError, match="HTTP 503 after 3 attempts"):
        client.get(loopback.url)
    assert len(loopback.arrivals) == 3


def _closed_port_url() -> str:
    with socket.socket() as s:  # bind, note the port, close: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/api"


@pytest.mark.parametrize("failure", ["404", "503 until the end", "connection refused"])
def test_api_key_never_appears_in_messages_or_logs(loopback, caplog, failure):
    url = loopback.url
    if failure == "404":
        loopback.script = [404]
    elif failure == "503 until the end":
        loopback.script = [503, 503]
    else:
        url = _closed_port_url()
    client = PoliteClient(rate=100.0, name="PubMed", retries=1, backoff_s=0.01)
    with caplog.at_level(logging.WARNING, logger="scifolio.http"), pytest.raises(FetchError) as err:
        client.get(url, params={"term": "cancer", "api_key": SECRET})
    message = str(err.value)
    assert SECRET not in message and MASKED.search(message) and "term=cancer" in message
    assert SECRET not in caplog.text
    if failure != "404":  # the retry was logged, masked
        assert MASKED.search(caplog.text)


def test_the_key_still_reaches_the_server(loopback):
    client = PoliteClient(rate=100.0, name="test")
    client.get(loopback.url, params={"api_key": SECRET})
    assert loopback.paths == [f"/api?api_key={SECRET}"]
    assert client.shown(loopback.url, {"api_key": SECRET}) == f"{loopback.url}?api_key=***"


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="rate must be > 0"):
        PoliteClient(rate=0, name="test")
