"""Where the art project's raw images come from: the DSB 2018 archive, the shared copy, or a user's folder.

    root = pull_dsb(Path("data/raw/art"), DSB_URL, checksum="sha256:...")   # -> data/raw/art/stage1_train/
    for path in image_files(root):                                          # images only, masks skipped
        decoded = read_image(path); label = label_of(path, decoded.pixels); group = source_id(path)

The archive is BBBC038's ``stage1_train.zip`` (the Kaggle Data Science Bowl 2018 stage-1 training set), laid out
``<ImageId>/images/<ImageId>.png`` with the segmentation masks in ``<ImageId>/masks/*.png``. It is fetched with
components.fetch (retries, resume, checksum, atomic rename; a local folder or file mirror works the same) and
unpacked with components.fetch.extract, which refuses members that leave the target ('../', absolute paths,
links) and archives that expand beyond its caps: the archive is untrusted input.

Three layouts are read alike: the DSB tree, the shared flattened copy (``<modality folder>/<ImageId>.png``) and
any user folder. A folder named after a class (``fluorescence_256x256``, ``histology_HE_320x256``, ``histology/``)
labels what is under it; elsewhere `images.modality_of` decides. `source_id` is what splits group by, so that
tiles of one image (and its near-duplicates, found by phash) never straddle train and test.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path, PurePosixPath

import numpy as np

from components.fetch import extract, fetch, resolve
from pipelines.art.images import CLASSES, IMAGE_SUFFIXES, modality_of

log = logging.getLogger("scifolio.art.sources")

DSB_URL = "https://data.broadinstitute.org/bbbc/BBBC038/stage1_train.zip"  # listed on the BBBC038 page
DSB_ARCHIVE = "stage1_train.zip"  # the name a mirror folder (or base URL) must hold the archive under
MASK_FOLDER = "masks"  # DSB segmentation masks: not images to learn from
LABEL_DEPTH = 3  # parent folders searched for a class name: <class>/<id>/images/<id>.png is three up


def _archive_url(url: str) -> str:
    """`url` itself when it names a .zip (URL or file), else the archive inside that mirror folder / base URL."""
    path = urllib.parse.urlsplit(str(url)).path if "://" in str(url) else str(url)
    if PurePosixPath(path).suffix.lower() == ".zip" or Path(str(url)).is_file():
        return str(url)
    return resolve(str(url), DSB_ARCHIVE)


def pull_dsb(out: Path, url: str = DSB_URL, checksum: str = "") -> Path:
    """Fetch stage1_train.zip into `out` and extract it safely into ``out/stage1_train/``; return that folder.

    `url` is the archive's URL (http(s), file://, or a local path) or a mirror holding ``stage1_train.zip``
    (a folder or a base URL). `checksum` ("sha256:<hex>") is verified when given: a mismatch raises
    components.fetch.FetchError and leaves no archive behind. An unsafe archive raises FetchError too,
    before anything is written.
    """
    out = Path(out)
    source = _archive_url(url)
    archive = fetch(source, out / DSB_ARCHIVE, checksum=checksum or None)
    target = out / "stage1_train"
    files = extract(archive, target)
    log.info("%s: %d files from %s", target, len(files), source)
    return target


def image_files(folder: Path) -> list[Path]:
    """Every image under `folder` (suffix in IMAGE_SUFFIXES, any case), sorted by relative path.

    Skips DSB ``masks/`` folders and hidden files and folders (``.DS_Store``, ``._x.png`` from macOS archives,
    ``.ipynb_checkpoints``); a missing folder is an error, not an empty list (a typo would train on nothing).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such image folder")
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).parts
        if any(part.startswith(".") for part in rel) or MASK_FOLDER in rel[:-1]:
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _class_of_folder(name: str) -> str | None:
    name = name.lower()
    return next((c for c in CLASSES if name.startswith(c)), None)


def label_of(path: Path, pixels: np.ndarray, root: Path | None = None) -> str:
    """The modality class: from the nearest parent folder whose name starts with a class name (only folders
    below `root` when given, else the nearest LABEL_DEPTH), else `modality_of(pixels)`."""
    path = Path(path)
    parents = list(path.parents)
    if root is not None:
        root = Path(root)
        parents = [p for p in parents if p != root and root in p.parents]
    else:
        parents = parents[:LABEL_DEPTH]
    for parent in parents:
        if (label := _class_of_folder(parent.name)) is not None:
            return label
    return modality_of(pixels)


def source_id(path: Path) -> str:
    """The image's id, what splits group by: the DSB ImageId (``<id>/images/<id>.png``), else the file stem."""
    return Path(path).stem  # DSB names the file after its ImageId folder; the shared copy kept the name
