"""Image sets stored as a few tar shards plus an index, instead of 100,000 loose files.

Why: DVC hashes, caches and pushes every file of a tracked folder one by one; 112,120 loose PNGs
make `dvc status`/`push` crawl and fill a remote with tiny objects. A handful of plain
(uncompressed: PNG/JPEG are already compressed) tar shards of a few thousand images each is a
few dozen DVC objects, and any tool can still list or unpack them with `tar`.

Layout of a shard folder:

    shard-00000.tar, shard-00001.tar, ...   members named by image name, flat, in write order
    index.json                              {"format": 1, "shards": [...],
                                             "members": {name: [shard, data_offset, size]}}

Reading uses each member's body offset, recorded in the index at write time (the value tarfile
reports as TarInfo.offset_data when it reads the shard back), with positional reads: random access
costs one pread and needs neither a walk over the tar headers (tarfile.open of a 2 GB shard reads
every header) nor a shared file position, so one ShardReader is safe in threads and in forked
DataLoader workers. `open_images` gives the same names()/read() over a plain folder of images
(the demo's images/), so loaders need not care which layout a source was pulled in.

A shard folder is written atomically: into a hidden temporary sibling, renamed into place only
when every shard and the index are complete, so a crash never leaves a folder that looks done.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from components.io import atomic_dir

log = logging.getLogger("scifolio.medical.shards")

INDEX = "index.json"
INDEX_FORMAT = 1  # bump when the index layout changes
SHARD_SIZE = 5000  # images per shard: NIH's 1024-px PNGs (~400 kB) give ~2 GB shards, 23 in all
MAX_MEMBER_BYTES = 256 * 2**20  # one archive member read into memory; NIH's PNGs are under 1 MB

__all__ = [
    "INDEX",
    "SHARD_SIZE",
    "FolderImages",
    "ShardError",
    "ShardReader",
    "iter_tar_members",
    "open_images",
    "read_regular",
    "shard_name",
    "shards_from_nih_archive",
    "write_shards",
]


class ShardError(RuntimeError):
    """A shard set cannot be written or read; the message names the file and the member."""


def shard_name(i: int) -> str:
    return f"shard-{i:05d}.tar"


def _check_name(name: str, where: str) -> str:
    """A member name must be a plain relative path with no '..' (it is also a file name on untar)."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ShardError(f"{where}: refusing member {name!r}: empty or absolute path")
    if ".." in re.split(r"[/\\]", name):
        raise ShardError(f"{where}: refusing member {name!r}: '..' path component")
    return name


# ---- writing ----------------------------------------------------------------------------------


def read_regular(path: Path, what: str = "image") -> bytes:
    """The bytes of a regular file, never read through a symbolic link (a link in a source folder
    could point anywhere, /etc/passwd included: components.fetch.open_regular); errors name the file."""
    from components.fetch import open_regular

    with open_regular(path, f"{path}: cannot read {what}", ShardError) as f:
        return f.read()


def _as_bytes(name: str, item: bytes | str | Path) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    return read_regular(Path(item), f"image {name!r}")


def write_shards(
    images: dict[str, Path] | Iterable[tuple[str, bytes | str | Path]],
    out_dir: str | Path,
    shard_size: int = SHARD_SIZE,
) -> list[Path]:
    """Write `images` (name -> file path, or (name, path-or-bytes) pairs) as tar shards + index.json.

    Items are consumed one at a time (a generator streaming from an archive is fine). Duplicate or
    unsafe names are refused. Returns the shard paths inside `out_dir`. On any failure nothing is
    left behind: neither `out_dir` (an older complete set there is kept) nor the temporary folder.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    items = images.items() if isinstance(images, dict) else images
    shards: list[str] = []
    members: dict[str, list] = {}
    tar: tarfile.TarFile | None = None
    with atomic_dir(out_dir) as staging:  # renamed into place only once complete; an older set stays till then
        try:
            for name, item in items:
                _check_name(name, str(out_dir))
                if name in members:
                    raise ShardError(f"{out_dir}: duplicate image name {name!r}")
                if tar is None or len(members) % shard_size == 0:
                    if tar is not None:
                        tar.close()
                    shards.append(shard_name(len(shards)))
                    tar = tarfile.open(staging / shards[-1], "w", format=tarfile.PAX_FORMAT)
                data = _as_bytes(name, item)
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: same bytes, same hash
                tar.addfile(info, io.BytesIO(data))
                # the body ends tar.offset, padded to a 512-byte block; the header(s) came just before
                start = tar.offset - -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                members[name] = [len(shards) - 1, start, len(data)]
        finally:
            if tar is not None:
                tar.close()
        index = {"format": INDEX_FORMAT, "shards": shards, "members": members}
        (staging / INDEX).write_text(json.dumps(index, separators=(",", ":")), encoding="utf-8")
    log.info("%s: wrote %d images into %d shards", out_dir, len(members), len(shards))
    return [out_dir / s for s in shards]


def iter_tar_members(
    archive: str | Path,
    *,
    max_bytes: int | None = None,  # total bytes the archive may expand to; None: fetch.MAX_EXPANDED_BYTES
    max_ratio: float | None = None,  # expanded bytes per archive byte; None: fetch.MAX_RATIO
    max_member: int = MAX_MEMBER_BYTES,  # one member is held in memory: an image is far smaller
) -> Iterator[tuple[str, bytes]]:
    """Stream (image name, bytes) from a tar archive (any compression) without touching the disk.

    NIH's images_XXX.tar.gz hold `images/<name>.png`; the folder part is dropped, so names are flat.
    Folders are skipped; unsafe names ('..', absolute), links, devices and fifos are refused, and so
    is an archive expanding past `max_bytes` or `max_ratio` times its own size (components.fetch's
    Expansion: declared sizes are checked at each header, the bytes really read are counted).
    """
    from components.fetch import MAX_EXPANDED_BYTES, MAX_RATIO, Expansion

    archive = Path(archive)
    try:
        budget = Expansion(
            archive,
            MAX_EXPANDED_BYTES if max_bytes is None else max_bytes,
            MAX_RATIO if max_ratio is None else max_ratio,
            error=ShardError,
        )
    except FileNotFoundError:
        raise ShardError(f"{archive}: no such archive") from None
    try:
        with tarfile.open(archive, "r|*") as tar:  # stream mode: one pass, no seeking back
            for m in tar:
                _check_name(m.name, str(archive))
                if m.isdir():
                    continue
                if not m.isfile():
                    raise ShardError(f"{archive}: refusing member {m.name!r}: not a regular file")
                if m.size > max_member:
                    raise ShardError(
                        f"{archive}: refusing member {m.name!r}: {m.size:,} bytes, more than max_member="
                        f"{max_member:,} (an image is a few MB at most)"
                    )
                budget.declare(m.size, m.name)
                f = tar.extractfile(m)
                assert f is not None  # a regular file always has a body
                data = io.BytesIO()
                budget.copy(f, data, m.name)
                yield PurePosixPath(m.name.replace("\\", "/")).name, data.getvalue()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:  # truncated, bad gzip CRC...
        raise ShardError(f"{archive}: cannot read archive: {type(e).__name__}: {e}") from e


def shards_from_nih_archive(archive: str | Path, out_dir: str | Path, shard_size: int = SHARD_SIZE) -> list[Path]:
    """Turn one NIH images_XXX.tar.gz into a shard folder, streaming: no loose files on disk."""
    return write_shards(iter_tar_members(archive), out_dir, shard_size)


# ---- reading ----------------------------------------------------------------------------------


class ShardReader:
    """Random access to a shard folder by image name: `names()`, `read(name) -> bytes`, `in`, len.

    File descriptors are opened on first use and cached per process (a forked worker opens its
    own); reads are positional (os.pread), so threads and processes never share a file position.
    """

    def __init__(self, out_dir: str | Path):
        self.root = Path(out_dir)
        path = self.root / INDEX
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ShardError(f"{path}: no shard index (not a shard folder, or never finished)") from None
        except (OSError, ValueError) as e:
            raise ShardError(f"{path}: unreadable shard index: {e}") from e
        if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
            found = index.get("format") if isinstance(index, dict) else type(index).__name__
            raise ShardError(f"{path}: unknown index format {found!r}, expected {INDEX_FORMAT}")
        self.shards: list[str] = index["shards"]
        self._members: dict[str, list[int]] = index["members"]
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def names(self) -> list[str]:
        """Image names in write order."""
        return list(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def shard_of(self, name: str) -> Path:
        return self.root / self.shards[self._entry(name)[0]]

    def _entry(self, name: str) -> list[int]:
        try:
            return self._members[name]
        except KeyError:
            raise KeyError(f"{self.root}: no image {name!r} in the shard index") from None

    def _fd(self, shard: int) -> int:
        if self._pid != os.getpid():  # forked: close our copies of the parent's, open our own
            for fd in self._fds.values():
                os.close(fd)
            self._fds, self._pid = {}, os.getpid()
        if shard not in self._fds:
            flags = os.O_RDONLY | getattr(os, "O_BINARY", 0)  # O_BINARY: Windows only
            self._fds[shard] = os.open(self.root / self.shards[shard], flags)
        return self._fds[shard]

    def read(self, name: str) -> bytes:
        """The stored bytes of one image."""
        shard, offset, size = self._entry(name)
        fd = self._fd(shard)
        if hasattr(os, "pread"):
            data = os.pread(fd, size, offset)
        else:  # Windows: no pread; a per-reader descriptor with seek + read
            os.lseek(fd, offset, os.SEEK_SET)
            data = os.read(fd, size)
        if len(data) != size:
            shard_path = self.root / self.shards[shard]
            raise ShardError(f"{shard_path}: member {name!r} truncated ({len(data)} of {size} bytes)")
        return data

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:  # pickled into spawned workers: descriptors do not travel
        state = self.__dict__.copy()
        state["_fds"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid = os.getpid()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"ShardReader({str(self.root)!r}, {len(self)} images in {len(self.shards)} shards)"


class FolderImages:
    """The ShardReader interface over a plain folder of image files (the demo's loose PNGs).

    Symbolic links are refused, at opening and at every read: a link in an image folder could
    point anywhere (/etc/passwd) and its bytes would pass for an image's.
    """

    SUFFIXES = (".png", ".jpg", ".jpeg")  # what counts as an image in the folder

    def __init__(self, folder: str | Path):
        self.root = Path(folder)
        if not self.root.is_dir():
            raise ShardError(f"{self.root}: no such image folder")
        with os.scandir(self.root) as it:
            entries = [e for e in it if Path(e.name).suffix.lower() in self.SUFFIXES]
        if links := sorted(e.name for e in entries if e.is_symlink()):
            raise ShardError(
                f"{self.root}: {len(links)} image(s) are symbolic links, e.g. {links[0]!r} -> "
                f"{os.readlink(self.root / links[0])!r}; refusing to follow links out of the image folder"
            )
        self._names = sorted(e.name for e in entries)

    def names(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or "/" in name or "\\" in name:
            return False
        path = self.root / name
        return path.is_file() and not path.is_symlink()

    def read(self, name: str) -> bytes:
        _check_name(name, str(self.root))
        path = self.root / name
        if not os.path.lexists(path):
            raise KeyError(f"{self.root}: no image {name!r}")
        return read_regular(path)

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"FolderImages({str(self.root)!r}, {len(self)} images)"


def open_images(path: str | Path) -> ShardReader | FolderImages:
    """A shard folder (it has index.json) as a ShardReader, any other folder as FolderImages."""
    path = Path(path)
    return ShardReader(path) if (path / INDEX).is_file() else FolderImages(path)
