"""A polite client for the APIs a pull talks to (PubMed E-utilities, arXiv, RCSB, AFDB): at most `rate`
requests per second, retries with exponential backoff (and the server's Retry-After) on 429/5xx and
transport errors, and secrets kept out of every message.

    client = PoliteClient(rate=3.0, name="PubMed")              # 3 requests/s without an API key
    response = client.get(url, params={"db": "pubmed", ...})     # a requests.Response with a 2xx status
    response = client.post(url, json=query)                      # the same pacing for a POSTed query

Every error names the URL (without query secrets) and the reason, and carries the HTTP status (FetchError.status)
so a caller can tell "no such entry" (404) from a failure; a 4xx other than 408/429 is not retried.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from components.fetch import RETRY_STATUS, FetchError

log = logging.getLogger("scifolio.http")


class PoliteClient:
    def __init__(
        self,
        rate: float,  # requests per second, e.g. 3 for E-utilities without a key, 1/3 for arXiv
        name: str = "server",  # named in messages
        retries: int = 5,  # attempts after the first
        backoff_s: float = 1.0,  # first wait; doubles each retry (capped at 60 s)
        timeout_s: float = 60.0,  # per request
        secret_params: Iterable[str] = ("api_key",),  # never shown in messages or logs
        session: Any = None,
    ) -> None:
        import requests

        if rate <= 0:
            raise ValueError(f"{name}: rate must be > 0 requests/s, got {rate}")
        self.interval, self.name, self.retries = 1.0 / rate, name, retries
        self.backoff_s, self.timeout_s = backoff_s, timeout_s
        self.secret_params = set(secret_params)
        self.session = session or requests.Session()
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next allowed request
        self.requests = 0  # sent, retries included (tests read it)

    def shown(self, url: str, params: dict | None) -> str:
        """The URL as messages show it: secret parameters replaced by ***."""
        shown = [f"{k}=***" if k in self.secret_params else urlencode({k: v}) for k, v in (params or {}).items()]
        return f"{url}?{'&'.join(shown)}" if shown else url

    def _wait_turn(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)

    def get(self, url: str, params: dict | None = None, **kwargs):
        return self.request("GET", url, params, **kwargs)

    def post(self, url: str, params: dict | None = None, **kwargs):
        return self.request("POST", url, params, **kwargs)

    def request(self, method: str, url: str, params: dict | None = None, **kwargs):
        import requests

        where = self.shown(url, params)
        wait = self.backoff_s
        for attempt in range(self.retries + 1):
            self._wait_turn()
            self.requests += 1
            try:
                response = self.session.request(method, url, params=params, timeout=self.timeout_s, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as err:
                reason, status = f"{type(err).__name__}", None
            else:
                if 200 <= response.status_code < 300:  # 204: a search with no hit is an answer, not an error
                    return response
                if response.status_code not in RETRY_STATUS:
                    status = response.status_code
                    raise FetchError(f"{self.name}: {where}: HTTP {status} {response.reason}", status=status)
                reason, status = f"HTTP {response.status_code}", response.status_code
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = max(wait, float(retry_after))
            if attempt == self.retries:
                raise FetchError(f"{self.name}: {where}: {reason} after {self.retries + 1} attempts", status=status)
            log.warning("%s: %s: %s; retrying in %.1f s", self.name, where, reason, wait)
            time.sleep(wait)
            wait = min(wait * 2, 60.0)
        raise AssertionError("unreachable")
