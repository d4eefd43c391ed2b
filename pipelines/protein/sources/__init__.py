"""Where the protein project's structures come from: the RCSB PDB archive, PISCES culled lists, AlphaFold DB.

`pisces` reads the chain lists that choose *what* to pull; `rcsb` and `afdb` pull entries and models. The two
archives share one door, kept here so that both behave the same:

* `Mirror`: an http(s) server, reached through components.http.PoliteClient (a few requests/s, retries with
  backoff on 429/5xx), or a local folder / file:// URL, read with components.fetch's mirror checks (no name
  leaving the folder, no symbolic link followed). Tests serve a folder on 127.0.0.1.
* `Manifest`: neither archive publishes checksums, so each pull folder gets a `manifest.json` with every
  file's size, sha256 and source URL. A re-pull skips files that still match it, a re-pull that receives
  different bytes for an id says so (PDB remediations and AFDB releases do rewrite files), and DVC sees
  the change in one small file. It holds no timestamps, so re-pulling the same bytes leaves it unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.parse
import urllib.request
from pathlib import Path

from components.fetch import FetchError, open_regular, resolve
from components.http import PoliteClient
from components.io import atomic_write

log = logging.getLogger("scifolio.protein.sources")

MANIFEST = "manifest.json"


class PullError(RuntimeError):
    """A pull got something it cannot use (a missing entry, a broken file); the message names the id and URL."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Mirror:
    """Files by name from an http(s) server (paced and retried) or a local folder or file:// URL."""

    def __init__(self, base: str, name: str, rate: float, client: PoliteClient | None = None) -> None:
        self.base, self.name = str(base), name
        self.remote = urllib.parse.urlsplit(self.base).scheme.lower() in ("http", "https")
        if self.remote and not self.base.endswith("/"):
            self.base += "/"
        self.client = client or (PoliteClient(rate=rate, name=name) if self.remote else None)

    def url(self, filename: str) -> str:
        return resolve(self.base, filename)

    def get(self, filename: str) -> bytes | None:
        """The file's bytes, or None when the mirror has no such file (HTTP 404/410, or absent from the folder)."""
        url = self.url(filename)
        if not self.remote:
            return self._read_local(url)
        try:
            # identity: the bytes as the archive stores them, so that the sha256 is that of the archive's file
            return self.client.get(url, headers={"Accept-Encoding": "identity"}).content
        except FetchError as err:
            if err.status in (404, 410):
                return None
            raise

    @staticmethod
    def _read_local(url: str) -> bytes | None:
        parts = urllib.parse.urlsplit(url)
        path = Path(urllib.request.url2pathname(parts.path)) if parts.scheme.lower() == "file" else Path(url)
        if not os.path.lexists(path):
            return None
        with open_regular(path, url) as f:  # refuses a symbolic link planted in the mirror
            return f.read()


class Manifest:
    """A pull folder's manifest.json: `files` (by file name) and `missing` (by id), for one `archive`."""

    def __init__(self, folder: Path, archive: str) -> None:
        self.folder, self.archive, self.path = Path(folder), archive, Path(folder) / MANIFEST
        self.files: dict[str, dict] = {}
        self.missing: dict[str, dict] = {}
        if self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError as err:
            raise PullError(f"{self.path}: not readable JSON ({err}); delete it to pull afresh") from None
        if data.get("archive") != self.archive:
            raise PullError(
                f"{self.path}: the folder holds a pull from {data.get('archive')!r}, not {self.archive!r}; "
                "pull into another folder"
            )
        self.files = {f["name"]: f for f in data.get("files", [])}
        self.missing = {m["id"]: m for m in data.get("missing", [])}

    def is_current(self, name: str) -> bool:
        """Whether `name` is in the folder with the sha256 the manifest recorded (then it needs no download)."""
        record, path = self.files.get(name), self.folder / name
        if record is None or not path.is_file():
            return False
        if sha256_of(path) == record["sha256"]:
            return True
        log.warning("%s: differs from its sha256 in %s (changed on disk); downloading it again", path, self.path)
        return False

    def record(self, name: str, ident: str, body: bytes, url: str, **fields) -> dict:
        """Record `body` as the file `name` of `ident` (with `fields`: the id, format...); a changed hash is logged."""
        digest = hashlib.sha256(body).hexdigest()
        old = self.files.get(name)
        if old is not None and old["sha256"] != digest:
            log.warning(
                "%s: %s changed on the server since the last pull (sha256 %s -> %s); recording the new hash",
                ident,
                name,
                old["sha256"],
                digest,
            )
        self.missing.pop(ident, None)
        entry = {"name": name, **fields, "size": len(body), "sha256": digest, "url": url}
        self.files[name] = entry
        return entry

    def record_missing(self, ident: str, url: str) -> None:
        self.missing[ident] = {"id": ident, "url": url}

    def save(self) -> None:
        # sorted, no timestamps: the same pull writes the same bytes, so DVC sees a change only when data change
        data = {
            "archive": self.archive,
            "files": [self.files[n] for n in sorted(self.files)],
            "missing": [self.missing[i] for i in sorted(self.missing)],
        }
        text = json.dumps(data, indent=1, sort_keys=True) + "\n"
        if not self.path.is_file() or self.path.read_text() != text:  # an unchanged pull leaves the file alone
            atomic_write(self.path, text)
