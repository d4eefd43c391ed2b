"""Download and unpack raw data so that a half-finished or tampered file is never taken for data.

Every project's `pull` stage gets its inputs from a mirror: an http(s) server, a `file://` URL or a
plain local folder. Networks drop connections and servers have bad minutes, so `fetch` streams into
`<dest>.part`, retries with exponential backoff, resumes with an HTTP `Range` request, verifies a
sha256/md5 checksum and only then renames the file into place (atomic). Whatever fails, `dest` is
either absent or complete and verified; DVC and later stages can trust its presence.

`extract` unpacks tar/zip archives from those mirrors. Archives are untrusted input: a member named
`../../.bashrc`, an absolute path, or a symlink pointing out of the target could write anywhere, so
every member is checked before anything is written, tarfile's `data` filter runs as a second line
of defence, and the archive is unpacked into a staging folder that is renamed into place only when
all of it succeeded. A small archive can also expand without bound (a 51 kB zip of zeros is 52 MB,
a few more kB are terabytes): `Expansion` caps the total expanded size (`max_bytes`) and the ratio to
the archive's size (`max_ratio`), first on the sizes the headers declare, then on the bytes actually
written, counted as they stream.

A local mirror (a folder, or a file:// URL) is untrusted too: `resolve` refuses a name that resolves
outside the mirror folder (through '..' or a linked folder) and `fetch` never follows a symbolic link
when it copies a local file, so a link in a mirror cannot smuggle /etc/passwd into raw/.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

import requests
from tqdm import tqdm

log = logging.getLogger("scifolio.fetch")

HASHES = {"sha256": 64, "md5": 32}  # supported algorithms -> hex digest length
RETRY_STATUS = {408, 429} | set(range(500, 600))  # transient HTTP statuses worth retrying
RETRY_ERRORS = (  # transport failures worth retrying (ConnectionError covers read timeouts mid-body)
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


class FetchError(RuntimeError):
    """A download or extraction failed; the message names the URL (or archive and member) and why."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the HTTP status that ended the download (401: credentials refused)


class _Transient(Exception):
    """A failed attempt that a retry may fix (bad status, short body)."""


# ---- locations --------------------------------------------------------------------------------


def _is_url(s: str) -> bool:
    return urllib.parse.urlsplit(s).scheme.lower() in ("http", "https", "file")


def resolve(base: str, name: str) -> str:
    """Join a mirror base (http(s) URL, file:// URL or local folder) with a file name.

    For a local base (folder or file:// URL), a name that resolves outside the folder ('..', an
    absolute name, or a linked file or folder pointing elsewhere) is refused with a FetchError.
    """
    if _is_url(base):
        joined = base.rstrip("/") + "/" + urllib.parse.quote(name.lstrip("/"))
        if urllib.parse.urlsplit(base).scheme.lower() == "file":
            _inside_mirror(_local_source(base), name.lstrip("/"), joined)
        return joined
    _inside_mirror(Path(base), name, str(Path(base) / name))
    return str(Path(base) / name)


def _inside_mirror(root: Path, name: str, where: str) -> None:
    """Refuse `name` unless root/name, with every link followed, still lies inside root."""
    path = root / name
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if not _inside(real, real_root):
        link = next((p for p in [path, *path.parents] if p.is_symlink()), None)
        why = f"{link} is a symbolic link to {os.readlink(link)!r}" if link is not None else "the name leaves it"
        raise FetchError(f"{where}: resolves to {real}, outside the mirror folder {root} ({why}); refusing it")


def _local_source(url: str) -> Path:
    """The path behind a file:// URL or a plain local path."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise FetchError(f"{url}: file:// URLs on another host are not supported")
        return Path(urllib.request.url2pathname(parts.path))
    if len(parts.scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise FetchError(f"{url}: unsupported URL scheme {parts.scheme!r}")
    return Path(url)


# ---- checksums --------------------------------------------------------------------------------


def _parse_checksum(checksum: str) -> tuple[str, str]:
    """ "sha256:<hex>" -> ("sha256", "<hex>"); anything else is a ValueError (a config bug)."""
    algo, _, digest = checksum.partition(":")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in HASHES or not re.fullmatch(f"[0-9a-f]{{{HASHES[algo]}}}", digest):
        raise ValueError(f"malformed checksum {checksum!r}: expected 'sha256:<64 hex>' or 'md5:<32 hex>'")
    return algo, digest


def _digest(path: Path, algo: str, chunk_size: int = 1 << 20) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _mismatch(path: Path, checksum: str) -> str | None:
    """Why the file does not match `checksum`, or None when it does."""
    algo, expected = _parse_checksum(checksum)
    actual = _digest(path, algo)
    if actual == expected:
        return None
    return f"checksum mismatch: expected {algo}:{expected}, got {algo}:{actual}"


def verify(path: Path, checksum: str) -> None:
    """Raise FetchError unless the file's digest equals `checksum` ("sha256:<hex>" or "md5:<hex>")."""
    if why := _mismatch(Path(path), checksum):
        raise FetchError(f"{path}: {why}")


# ---- download ---------------------------------------------------------------------------------


def fetch(
    url: str,
    dest: str | Path,
    *,
    checksum: str | None = None,
    retries: int = 4,  # extra attempts after the first
    backoff: float = 0.5,  # seconds before the first retry; doubles each time
    timeout: float = 30.0,  # seconds to connect, and of silence while reading
    progress: bool | None = None,  # None: a bar only when stderr is a terminal
    chunk_size: int = 1 << 20,  # bytes per read/write; a dropped connection loses at most one
    auth: tuple[str, str] | None = None,  # (user, password): HTTP Basic, http(s) only; never logged
) -> Path:
    """Download (or copy, for a local mirror) `url` to `dest`, verified and atomically; return dest.

    A `dest` that already exists is trusted without network when it matches `checksum` (or when no
    checksum is given); one that does not match is deleted and downloaded again. A refusal (401,
    403, 404...) is not retried: the FetchError carries its `status`.
    """
    dest = Path(dest)
    if checksum is not None:
        _parse_checksum(checksum)  # a typo in the checksum fails before any network
    if dest.exists():
        if checksum is None:
            return dest
        if (why := _mismatch(dest, checksum)) is None:
            return dest
        log.warning("%s: %s; downloading it again", dest, why)
        dest.unlink()
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")  # a leftover from a killed run is started afresh
    try:
        if urllib.parse.urlsplit(url).scheme.lower() in ("http", "https"):
            _download(url, part, retries, backoff, timeout, progress, chunk_size, auth)
        else:
            _copy_local(url, _local_source(url), part)
        if checksum is not None and (why := _mismatch(part, checksum)):
            raise FetchError(f"{url}: {why}")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)  # never leave bytes that could pass for the file
        raise
    return dest


def open_regular(path: str | Path, where: str, error: type[Exception] = FetchError):
    """Open a regular file for reading (binary), never through a symbolic link.

    A link in a mirror or source folder could point anywhere (/etc/passwd): it is refused, not
    followed, also when it is swapped in after the check (O_NOFOLLOW). Errors are `error(message)`
    with the message starting with `where`.
    """
    path = Path(path)
    if path.is_symlink():
        raise error(
            f"{where}: is a symbolic link to {os.readlink(path)!r}; refusing to follow it (a mirror or "
            "source folder must hold the files themselves, not links to them)"
        )
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{where}: no such file") from None
    except OSError as e:  # ELOOP: a link after all
        raise error(f"{where}: cannot open: {e.strerror or e}") from None
    f = open(fd, "rb")  # noqa: SIM115  (the caller closes it)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise error(f"{where}: not a regular file")
    return f


def _copy_local(url: str, src: Path, part: Path) -> None:
    """Copy a local mirror's file, refusing a symbolic link."""
    with open_regular(src, url) as f, open(part, "wb") as out:
        shutil.copyfileobj(f, out, 1 << 20)


def _download(
    url: str,
    part: Path,
    retries: int,
    backoff: float,
    timeout: float,
    progress: bool,
    chunk_size: int,
    auth: tuple[str, str] | None = None,
) -> None:
    """Stream `url` into `part`, retrying transient failures and resuming with Range."""
    part.write_bytes(b"")
    name = PurePosixPath(urllib.parse.urlsplit(url).path).name or url
    with (
        requests.Session() as session,
        tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress) as bar,
    ):
        session.auth = auth  # requests drops it on a redirect to another host
        for attempt in range(retries + 1):
            have = part.stat().st_size
            # identity: a transparently gunzipped body would break byte offsets and checksums
            headers = {"Accept-Encoding": "identity"}
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with session.get(url, headers=headers, stream=True, timeout=timeout) as r:
                    _receive(url, r, part, have, bar, chunk_size)
                return
            except (_Transient, *RETRY_ERRORS) as e:
                reason = f"{type(e).__name__}: {e}" if not isinstance(e, _Transient) else str(e)
            except requests.RequestException as e:  # bad URL, too many redirects: no retry
                raise FetchError(f"{url}: {type(e).__name__}: {e}") from e
            if attempt == retries:
                raise FetchError(f"{url}: giving up after {retries + 1} attempts: {reason}")
            delay = backoff * 2**attempt
            log.warning(
                "%s: %s; retry %d/%d in %.2fs from byte %d",
                url,
                reason,
                attempt + 1,
                retries,
                delay,
                part.stat().st_size,
            )
            time.sleep(delay)


def _receive(url: str, r: requests.Response, part: Path, have: int, bar: tqdm, chunk_size: int) -> None:
    """Append (206) or write (200) one response's body to `part`; raise _Transient if cut short."""
    if r.status_code in RETRY_STATUS:
        raise _Transient(f"HTTP {r.status_code} {r.reason}")
    if r.status_code == 416 and have:  # our offset is past the end: the .part is not of this file
        part.write_bytes(b"")
        raise _Transient(f"HTTP 416 for bytes={have}-; restarting from zero")
    if r.status_code >= 400:
        raise FetchError(f"{url}: HTTP {r.status_code} {r.reason}", status=r.status_code)

    length = r.headers.get("Content-Length")
    if r.status_code == 206:
        m = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", r.headers.get("Content-Range", "").strip())
        if not m or int(m.group(1)) != have:
            part.write_bytes(b"")
            raise _Transient(
                f"Content-Range {r.headers.get('Content-Range')!r} does not start at byte {have}; restarting from zero"
            )
        total = int(m.group(2)) if m.group(2) != "*" else None
        mode = "ab"
    else:  # 200: the whole body, also when the server ignored our Range
        if have:
            log.info("%s: server ignored Range; restarting from zero", url)
        have, mode = 0, "wb"
        total = int(length) if length is not None else None
    expected = have + int(length) if length is not None else total

    bar.reset(total=total)
    bar.update(have)
    with open(part, mode) as f:
        for chunk in r.iter_content(chunk_size):
            f.write(chunk)
            bar.update(len(chunk))
    size = part.stat().st_size
    if expected is not None and size != expected:  # urllib3 usually raises first; belt and braces
        raise _Transient(f"incomplete body: {size} of {expected} bytes")


# ---- extraction -------------------------------------------------------------------------------


def _unsafe_name(name: str) -> str | None:
    """Why a member name could escape the target, or None when it is safe."""
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' path component"
    return None


def _inside(path: str, root: str) -> bool:
    path, root = os.path.normpath(path), os.path.normpath(root)
    return path == root or path.startswith(root + os.sep)


# A 4 GB NIH archive expands to ~4.5 GB (PNGs barely compress), CSV and text 3 to 10 times; a bomb
# expands hundreds to millions of times. Ratios are judged only past RATIO_FLOOR: a tar.gz of a few
# tiny files (each padded to 512-byte blocks) has a large ratio and is harmless.
MAX_EXPANDED_BYTES = 16 * 2**30  # 16 GiB from one archive
MAX_RATIO = 100.0  # expanded bytes per byte of archive
RATIO_FLOOR = 2**20  # bytes expanded before the ratio counts


class Expansion:
    """The bytes one archive expands to, against a total cap and a cap on the expansion ratio.

    `declare` adds the sizes the member headers announce (refusing before anything is written),
    `count` the bytes really written (headers can understate: sparse members, a forged zip entry).
    Both raise `error` naming the archive and the member at which the cap was passed.
    """

    def __init__(
        self,
        archive: Path,
        max_bytes: int = MAX_EXPANDED_BYTES,
        max_ratio: float = MAX_RATIO,
        error: type[Exception] = FetchError,
    ):
        if max_bytes <= 0 or max_ratio <= 0:
            raise ValueError(f"max_bytes ({max_bytes}) and max_ratio ({max_ratio}) must be positive")
        self.archive, self.max_bytes, self.max_ratio, self.error = Path(archive), max_bytes, max_ratio, error
        self.compressed = max(self.archive.stat().st_size, 1)
        self.declared = self.written = 0

    def _why(self, total: int) -> str | None:
        if total > self.max_bytes:
            return f"expands to more than max_bytes={self.max_bytes:,} bytes"
        if total > RATIO_FLOOR and total > self.max_ratio * self.compressed:
            return (
                f"expands to more than max_ratio={self.max_ratio:g} times its own {self.compressed:,} bytes "
                "(a decompression bomb?)"
            )
        return None

    def _refuse(self, member: str, what: str, total: int, why: str) -> None:
        raise self.error(
            f"{self.archive}: refusing member {member!r}: {what} {total:,} bytes so far; the archive {why}"
        )

    def declare(self, size: int, member: str) -> None:
        self.declared += max(size, 0)
        if why := self._why(self.declared):
            self._refuse(member, "the member headers declare", self.declared, why)

    def count(self, n: int, member: str) -> None:
        self.written += n
        if why := self._why(self.written):
            self._refuse(member, "unpacked", self.written, why)

    def copy(self, src, dst, member: str, chunk_size: int = 1 << 20) -> None:
        """Copy src to dst (file objects), counting each chunk before it is written."""
        while chunk := src.read(chunk_size):
            self.count(len(chunk), member)
            dst.write(chunk)


def _check_tar(archive: Path, tar: tarfile.TarFile, root: Path, budget: Expansion) -> list[tarfile.TarInfo]:
    """Every member's name, type, link target and declared size, read header by header: a bomb is
    refused at the first header past the caps, without decompressing the rest."""
    members = []
    while (m := tar.next()) is not None:
        why = _unsafe_name(m.name)
        if why is None and (m.ischr() or m.isblk() or m.isfifo()):
            why = "device or fifo"
        elif why is None and m.issym():
            link = os.path.join(root, os.path.dirname(m.name), m.linkname)
            if os.path.isabs(m.linkname) or not _inside(link, str(root)):
                why = f"symlink to {m.linkname!r} outside the target"
        elif why is None and m.islnk():
            if os.path.isabs(m.linkname) or not _inside(os.path.join(root, m.linkname), str(root)):
                why = f"hardlink to {m.linkname!r} outside the target"
        if why:
            raise FetchError(f"{archive}: refusing member {m.name!r}: {why}")
        if m.isreg():
            budget.declare(m.size, m.name)
        members.append(m)
    return members


def _unpack_tar(archive: Path, tar: tarfile.TarFile, out: Path, budget: Expansion) -> None:
    """Extract the checked members one by one; regular files are copied counting every byte."""
    members = _check_tar(archive, tar, out, budget)
    sizes = {os.path.normpath(m.name): m.size for m in members if m.isreg()}
    for m in members:
        if not m.isreg():  # folders and links carry no body
            if m.islnk():  # counted as a copy: tarfile copies the body when it cannot link
                budget.count(sizes.get(os.path.normpath(m.linkname), 0), m.name)
            tar.extract(m, out, filter="data")
            continue
        m = tarfile.data_filter(m, str(out))  # at extraction time: sees the links already on disk
        dest = out / m.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        src = tar.extractfile(m)
        assert src is not None  # a regular member always has a body
        with src, open(dest, "wb") as dst:
            budget.copy(src, dst, m.name)
        if m.mode is not None:
            os.chmod(dest, m.mode)


def _unpack_zip(archive: Path, zf: zipfile.ZipFile, out: Path, budget: Expansion) -> None:
    infos = zf.infolist()
    for info in infos:
        if why := _unsafe_name(info.filename):
            raise FetchError(f"{archive}: refusing member {info.filename!r}: {why}")
        budget.declare(info.file_size, info.filename)
    for info in infos:  # zipfile never creates links or devices: a "link" entry is a small file
        dest = out / info.filename
        if info.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with zf.open(info) as src, open(dest, "wb") as dst:
            budget.copy(src, dst, info.filename)


def _unpack(archive: Path, out: Path, max_bytes: int, max_ratio: float) -> None:
    """Check every member, then extract all of them into the empty folder `out`."""
    budget = Expansion(archive, max_bytes, max_ratio)
    try:
        if tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                _unpack_tar(archive, tar, out, budget)
        elif zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _unpack_zip(archive, zf, out, budget)
        else:
            raise FetchError(f"{archive}: not a tar or zip archive")
    except tarfile.FilterError as e:  # the data filter caught something our checks did not
        raise FetchError(f"{archive}: refusing member {e.tarinfo.name!r}: {e}") from e
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as e:  # truncated, bad CRC...
        raise FetchError(f"{archive}: cannot extract: {type(e).__name__}: {e}") from e


def _listing(root: Path) -> list[Path]:
    """Relative paths of everything under root that is not a directory (files and symlinks)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            found.append(Path(dirpath, n).relative_to(root))
    return sorted(found)


def extract(
    archive: str | Path,
    target: str | Path,
    *,
    max_bytes: int = MAX_EXPANDED_BYTES,  # refuse an archive whose files add up to more
    max_ratio: float = MAX_RATIO,  # ... or to more than this many times the archive's size
) -> list[Path]:
    """Safely unpack a tar (any compression) or zip archive into `target`; return the files' paths.

    Nothing is written to `target` unless the whole archive is safe, within the expansion caps
    (`Expansion`) and unpacks cleanly. A new `target` appears in one rename. An existing `target` is
    merged into: archive files replace same-named files (each atomically), everything else there is kept.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise FetchError(f"{archive}: no such archive")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extract", dir=target.parent))
    try:
        out = staging / "out"
        out.mkdir()  # mkdir (not mkdtemp's 0700) so a renamed target gets the usual permissions
        _unpack(archive, out, max_bytes, max_ratio)
        files = _listing(out)
        if not target.exists():
            os.replace(out, target)
        else:
            _merge(archive, out, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("%s: extracted %d files into %s", archive, len(files), target)
    return [target / f for f in files]


def _merge(archive: Path, src: Path, target: Path) -> None:
    """Move everything under src into the existing folder target, keeping what is already there.

    Conflicts (a file where the archive has a folder, or the reverse) are found before anything
    moves, so a refused merge leaves target untouched.
    """
    mkdirs, moves = [], []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        for d in list(dirnames):
            if Path(dirpath, d).is_symlink():  # a link is moved as an entry, never descended into
                dirnames.remove(d)
                filenames.append(d)
            elif not (target / rel / d).is_dir():
                if os.path.lexists(target / rel / d):
                    raise FetchError(f"{archive}: member {str(rel / d)!r} is a folder, but {target / rel / d} is not")
                mkdirs.append(target / rel / d)
        for f in filenames:
            t = target / rel / f
            if t.is_dir() and not t.is_symlink():
                raise FetchError(f"{archive}: member {str(rel / f)!r} is a file, but {t} is a folder")
            moves.append((Path(dirpath, f), t))
    for d in mkdirs:  # os.walk is top-down, so parents come first
        d.mkdir()
    for s, t in moves:
        os.replace(s, t)
