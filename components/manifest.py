"""What the validate stage hands on: a manifest of the raw files it checked, not a second copy of them.

At NIH scale (45 GB of images) a copy of raw/ doubles the disk and the stage time; at MIMIC scale
(over 500 GB) it cannot work. So validated/ holds MANIFEST.json (each file's relative path, size,
mtime and sha256) and DATA_VERSION (one sha256 over the names and bytes of every file, the data
version runs and models are tagged with). Later stages read the files from raw/ after
`verify(raw, manifest)` has confirmed that nothing was added, removed or changed since validation
(a stat per file; a file whose mtime moved, as after `dvc checkout`, is re-hashed).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST = "MANIFEST.json"
DATA_VERSION = "DATA_VERSION"
BLOCK = 1 << 20  # bytes read per update: constant memory for any file size


class StaleData(RuntimeError):
    """raw/ is not what the validate stage checked: run validate again."""


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def build(folder: Path) -> tuple[dict, str]:
    """(manifest, data version) of every file below `folder`, reading each byte once."""
    folder = Path(folder)
    version = hashlib.sha256()
    entries = {}
    for path in files_of(folder):
        name = path.relative_to(folder).as_posix()
        version.update(name.encode() + b"\0")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda f=f: f.read(BLOCK), b""):
                digest.update(block)
                version.update(block)
        stat = path.stat()
        entries[name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest.hexdigest()}
    return {"files": entries}, version.hexdigest()


def write(out_dir: Path, manifest: dict, version: str) -> None:
    (Path(out_dir) / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    (Path(out_dir) / DATA_VERSION).write_text(version + "\n")


def read(validated: Path) -> tuple[dict, str]:
    validated = Path(validated)
    try:
        manifest = json.loads((validated / MANIFEST).read_text())
        version = (validated / DATA_VERSION).read_text().strip()
    except FileNotFoundError:
        raise StaleData(f"{validated}: no manifest of validated data; run the validate stage first") from None
    except ValueError as err:
        raise StaleData(f"{validated / MANIFEST}: unreadable ({err}); run the validate stage again") from None
    return manifest, version


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _changed(path: Path, entry: dict) -> bool:
    """Size differs, or the mtime differs and so do the bytes (a `dvc checkout` restores files with new mtimes)."""
    stat = path.stat()
    if stat.st_size != entry["size"]:
        return True
    return stat.st_mtime_ns != entry["mtime_ns"] and sha256_of(path) != entry["sha256"]


def verify(raw: Path, validated: Path) -> str:
    """The data version, once raw/ is confirmed to be the set of files validate checked; else StaleData."""
    manifest, version = read(validated)
    expected = manifest.get("files", {})
    present = {p.relative_to(raw).as_posix(): p for p in files_of(raw)}
    added = sorted(set(present) - set(expected))
    removed = sorted(set(expected) - set(present))
    changed = sorted(name for name in set(present) & set(expected) if _changed(present[name], expected[name]))
    if added or removed or changed:
        parts = [
            f"{label} {names[:3]}{' ...' if len(names) > 3 else ''}"
            for label, names in (("added", added), ("removed", removed), ("changed", changed))
            if names
        ]
        raise StaleData(f"{raw}: differs from what validate checked ({'; '.join(parts)}); run the validate stage again")
    return version
