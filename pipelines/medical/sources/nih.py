"""NIH ChestX-ray14, read from its publisher's exact on-disk format, and what every source shares.

NIH ChestX-ray14 (Wang et al., CVPR 2017): 112,120 frontal PNGs of 30,805 patients, 14
report-mined labels (`Data_Entry_2017_v2020.csv`), boxes for 8 of them on ~1,000 images
(`BBox_List_2017.csv`), and NIH's official patient-wise `train_val_list.txt` / `test_list.txt`.
Open data ("usage unrestricted"; cite the paper, link https://nihcc.app.box.com/v/ChestXray-NIHCC,
acknowledge the NIH Clinical Center). `pull_nih` fetches from any mirror, checks NIH's published
MD5s and streams the twelve images_XXX.tar.gz straight into tar shards (shards.py): 112,120 loose
files never touch data/; an archive expanding past the caps of components.fetch.Expansion is refused.
`pull_nih_folder` takes NIH's layout unpacked in a local folder (source nih_folder), refusing
symbolic links; an unset mirror or folder is named as the key to set, never read as the working
directory.

The 14 FINDINGS, the patient-wise split and the image decoder defined here are shared by the
other sources: mimic.py (MIMIC-CXR-JPG from PhysioNet, labels mapped onto these findings) and
demo.py (a generator writing NIH's format, so the offline profile runs these very readers).

Every reader checks the layout it depends on (headers, label vocabularies) and fails with the
file, line and value, because a silently shifted column or a misspelt label corrupts a whole run.
Heavy imports (monai, torch) stay out: this module runs in the data stage.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.medical.findings import BOXED_FINDINGS, FINDINGS, NO_FINDING  # noqa: F401  (re-exported)

log = logging.getLogger("scifolio.medical.sources")

# ---- vocabularies -----------------------------------------------------------------------------

BOX_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017.csv spells this one differently
NIH_BOX_SPACE = 1024  # NIH boxes are in the pixel space of the released 1024x1024 PNGs

# ---- NIH file formats -------------------------------------------------------------------------

ENTRIES_FILE = "Data_Entry_2017_v2020.csv"
BOXES_FILE = "BBox_List_2017.csv"
TRAIN_VAL_LIST = "train_val_list.txt"
TEST_LIST = "test_list.txt"
NIH_TABLES = (ENTRIES_FILE, BOXES_FILE, TRAIN_VAL_LIST, TEST_LIST)  # no published checksums

# The header line, verbatim: the bracketed names hold unquoted commas, so a CSV parser sees 11
# fields (`OriginalImage[Width`, `Height]`, ...). The 2017 release (and Kaggle's copy) ends the
# header and every row with one more comma; that variant is accepted too.
NIH_ENTRY_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
ENTRY_COLUMNS = (  # clean names for the 11 parsed fields, by position
    "image",
    "labels",
    "follow_up",
    "patient_id",
    "age",
    "sex",
    "view",
    "width",
    "height",
    "spacing_x",
    "spacing_y",
)
NIH_BOX_HEADER = "Image Index,Finding Label,Bbox [x,y,w,h],,,"  # 9 header fields, 6 per row
BOX_COLUMNS = ("image", "finding", "x", "y", "w", "h")
SEXES = ("M", "F")  # Patient Gender values in NIH's CSV
VIEWS = ("PA", "AP")  # View Position values in NIH's CSV (frontal films only)
IMAGE_NAME = re.compile(r"\d{8}_\d{3}\.png")  # NIH: <8-digit patient>_<3-digit follow-up>.png

# MD5s of the twelve image archives, from NIH's FAQ_CHESTXRAY.pdf (Q07: "We thank Utku Ozbulak
# for providing those MD5s"), in the dataset's Box folder; the same values appear in NIH's
# MD5 list and in independent loaders (torchxrayvision-style download scripts, PyHealth).
NIH_ARCHIVES = {
    "images_001.tar.gz": "md5:fe8ed0a6961412fddcbb3603c11b3698",
    "images_002.tar.gz": "md5:ab07a2d7cbe6f65ddd97b4ed7bde10bf",
    "images_003.tar.gz": "md5:2301d03bde4c246388bad3876965d574",
    "images_004.tar.gz": "md5:9f1b7f5aae01b13f4bc8e2c44a4b8ef6",
    "images_005.tar.gz": "md5:1861f3cd0ef7734df8104f2b0309023b",
    "images_006.tar.gz": "md5:456b53a8b351afd92a35bc41444c58c8",
    "images_007.tar.gz": "md5:1075121ea20a137b87f290d6a4a5965e",
    "images_008.tar.gz": "md5:b61f34cec3aa69f295fbb593cbd9d443",
    "images_009.tar.gz": "md5:442a3caa61ae9b64e61c561294d1e183",
    "images_010.tar.gz": "md5:09ec81c4c31e32858ad8cf965c494b74",
    "images_011.tar.gz": "md5:499aefc67207a5a97692424cf5dbeed5",
    "images_012.tar.gz": "md5:dc9fda1757c2de0032b63347a7d2895c",
}
# Where NIH's own batch_download_zips.py fetches each archive (Box shared links). They are
# not name-addressable, so they cannot serve as a `mirror`; kept to document the origin.
NIH_BOX_LINKS = {
    f"images_{i + 1:03d}.tar.gz": f"https://nihcc.box.com/shared/static/{key}.gz"
    for i, key in enumerate(
        (
            "vfk49d74nhbxq3nqjg0900w5nvkorp5c",
            "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1",
            "f1t00wrtdk94satdfb9olcolqx20z2jp",
            "0aowwzs5lhjrceb3qp67ahp0rd1l1etg",
            "v5e3goj22zr6h8tzualxfsqlqaygfbsn",
            "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
            "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n",
            "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j",
            "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj",
            "l6nilvfa9cg3s28tqv1qc1olm3gnz54p",
            "hhq8fkdgvcari67vfhs7ppg2w6ni4jze",
            "ioqwiy20ihqwyr8pf4c24eazhh281pbu",
        )
    )
}


# ---- NIH readers ------------------------------------------------------------------------------


def _header_line(path: Path) -> str:
    """The first line of a text file, without BOM or line ending; errors name the file."""
    try:
        with open(path, "rb") as f:
            head = f.readline()
    except OSError as e:
        raise ValueError(f"{path}: cannot open: {e.strerror or e}") from None
    if not head:
        raise ValueError(f"{path}: the file is empty (no header line)")
    if b"\x00" in head:
        raise ValueError(f"{path}: binary file, not CSV text")
    return head.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")


def _read_str_csv(path: Path) -> pd.DataFrame:
    """Every cell as a string ('' when empty); a row with too many fields names its line."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.ParserError as e:
        raise ValueError(f"{path}: malformed CSV: {e}") from None


def _numbers(path: Path, frame: pd.DataFrame, column: str, kind: type) -> pd.Series:
    """Parse one column as int or float; the first bad cell is reported with its file line."""
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype(float))
    if kind is int:
        bad |= values.fillna(0) % 1 != 0
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}, line {row + 2}: {column} {frame[column].iloc[row]!r} is not a valid {kind.__name__}")
    return values.astype("int64" if kind is int else "float64")


def parse_labels(text: str, where: str) -> list[str]:
    """'A|B' -> ['A', 'B']; 'No Finding' -> []; anything outside FINDINGS is an error at `where`."""
    parts = [p.strip() for p in text.split("|")]
    if parts == [NO_FINDING]:
        return []
    for p in parts:
        if p not in FINDINGS:
            why = "'No Finding' combined with findings" if p == NO_FINDING else "unknown label"
            raise ValueError(f"{where}: {why} {p!r} in {text!r} (expected {NO_FINDING!r} or {'|'.join(FINDINGS)})")
    return parts


def read_nih_entries(csv_path: str | Path) -> pd.DataFrame:
    """NIH's Data_Entry_2017_v2020.csv -> one row per image, clean columns + 14 0/1 label columns.

    Columns: image, labels (NIH's text), follow_up, patient_id, age, sex, view, width, height,
    spacing_x, spacing_y (original DICOM size and mm/pixel), then FINDINGS as int8 0/1.
    """
    path = Path(csv_path)
    header = _header_line(path)
    trailing = header == NIH_ENTRY_HEADER + ","  # the 2017 release's extra empty column
    if header != NIH_ENTRY_HEADER and not trailing:
        raise ValueError(f"{path}: not NIH's Data_Entry header.\n  expected: {NIH_ENTRY_HEADER}\n  found:    {header}")
    raw = _read_str_csv(path)
    expected = len(ENTRY_COLUMNS) + trailing
    if raw.shape[1] != expected:
        raise ValueError(f"{path}: {raw.shape[1]} columns, expected {expected}")
    if trailing:
        raw = raw.iloc[:, : len(ENTRY_COLUMNS)]
    raw.columns = list(ENTRY_COLUMNS)  # by position: the header's own names are broken by its commas
    if raw.empty:
        raise ValueError(f"{path}: no data rows")

    out = pd.DataFrame({"image": raw["image"], "labels": raw["labels"]})
    for col in ("follow_up", "patient_id", "age", "width", "height"):
        out[col] = _numbers(path, raw, col, int)
    for col, allowed in (("sex", SEXES), ("view", VIEWS)):
        if (bad := ~raw[col].isin(allowed)).any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{path}, line {row + 2}: {col} {raw[col].iloc[row]!r} is not one of {allowed}")
        out[col] = raw[col]
    for col in ("spacing_x", "spacing_y"):
        out[col] = _numbers(path, raw, col, float)
    out = out[list(ENTRY_COLUMNS)]

    for i, name in enumerate(out["image"]):
        if not IMAGE_NAME.fullmatch(name):
            raise ValueError(f"{path}, line {i + 2}: image name {name!r} is not <8 digits>_<3 digits>.png")
    if (dups := out["image"][out["image"].duplicated()]).any():
        raise ValueError(f"{path}: duplicate image rows: {sorted(set(dups))[:10]}")

    labels = np.zeros((len(out), len(FINDINGS)), dtype=np.int8)
    column = {f: j for j, f in enumerate(FINDINGS)}
    for i, text in enumerate(out["labels"]):
        for f in parse_labels(text, f"{path}, line {i + 2}"):
            labels[i, column[f]] = 1
    return pd.concat([out, pd.DataFrame(labels, columns=list(FINDINGS), index=out.index)], axis=1)


def read_nih_boxes(csv_path: str | Path) -> pd.DataFrame:
    """NIH's BBox_List_2017.csv -> image, finding (FINDINGS spelling), x, y, w, h in 1024-px space."""
    path = Path(csv_path)
    header = _header_line(path)
    if header != NIH_BOX_HEADER:
        raise ValueError(f"{path}: not NIH's BBox header.\n  expected: {NIH_BOX_HEADER}\n  found:    {header}")
    raw = _read_str_csv(path)  # 9 columns from the header; rows have 6 fields, the rest are ''
    if (extra := raw.iloc[:, 6:].ne("").any(axis=1)).any():
        row = int(np.flatnonzero(extra.to_numpy())[0])
        raise ValueError(f"{path}, line {row + 2}: more than 6 fields")
    raw = raw.iloc[:, :6]
    raw.columns = list(BOX_COLUMNS)
    finding = raw["finding"].map(lambda f: BOX_ALIASES.get(f, f))
    out = pd.DataFrame({"image": raw["image"], "finding": finding})
    for i, f in enumerate(out["finding"]):
        if f not in BOXED_FINDINGS:
            raise ValueError(
                f"{path}, line {i + 2}: unknown box finding {raw['finding'].iloc[i]!r} "
                f"(expected one of {', '.join(BOXED_FINDINGS)} or Infiltrate)"
            )
    for col in ("x", "y", "w", "h"):
        out[col] = _numbers(path, raw, col, float)
    if (bad := (out["w"] <= 0) | (out["h"] <= 0)).any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{path}, line {row + 2}: box with zero or negative size")
    return out


def read_split_list(path: str | Path) -> set[str]:
    """NIH's train_val_list.txt / test_list.txt: one image name per line -> the set of names."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read split list: {e}") from None
    names = set()
    for i, line in enumerate(lines, start=1):
        if not (name := line.strip()):
            continue
        if not IMAGE_NAME.fullmatch(name):
            raise ValueError(f"{path}, line {i}: {name[:60]!r} is not an NIH image name")
        names.add(name)
    if not names:
        raise ValueError(f"{path}: no image names")
    return names


# ---- splits -----------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")


def patient_split(entries: pd.DataFrame, test_images: set[str], val_fraction: float, seed: int) -> pd.Series:
    """'train'/'val'/'test' per row of `entries` (same index).

    test is NIH's official list (patient-wise by construction); val is a seeded random
    `val_fraction` of the remaining *patients* (so of patients, not exactly of images), and every
    image of a val patient goes to val: follow-ups of one person must never straddle splits, or
    the model is scored on people it has already seen.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    split = pd.Series("train", index=entries.index, dtype=object, name="split")
    is_test = entries["image"].isin(test_images)
    split[is_test] = "test"
    pool = np.sort(entries.loc[~is_test, "patient_id"].unique())  # sorted: row order must not matter
    n_val = int(round(val_fraction * len(pool)))
    val_patients = np.random.default_rng(seed).permutation(pool)[:n_val]
    split[~is_test & entries["patient_id"].isin(val_patients)] = "val"
    assert_no_patient_leak(entries, split)
    return split


def assert_no_patient_leak(entries: pd.DataFrame, split: pd.Series) -> None:
    """Raise ValueError naming every patient whose images fall in more than one split."""
    frame = pd.DataFrame({"patient": entries["patient_id"], "split": split})
    leaked = frame.groupby("patient")["split"].nunique()
    leaked = leaked[leaked > 1]
    if len(leaked):
        ids = [int(p) if isinstance(p, (int, np.integer)) else p for p in leaked.index[:20]]
        raise ValueError(f"patient leak: {len(leaked)} patient(s) in more than one split, e.g. {ids}")


# ---- images -----------------------------------------------------------------------------------


def decode_image(data: bytes, name: str) -> np.ndarray:
    """PNG/JPEG bytes -> 2-D uint8 array. RGBA/RGB/LA/P collapse to one channel (PIL's luminance),
    16-bit grayscale is scaled by its own maximum; `name` is used in errors."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError(f"{name}: empty file, not an image")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # not NIH; 12/16-bit PNGs of other sets
                arr = np.clip(np.asarray(img, dtype=np.float64), 0, None)
                return np.round(arr * (255.0 / max(arr.max(), 1.0))).astype(np.uint8)
            if img.mode != "L":
                # the 4 RGBA PNGs in NIH's sample have R=G=B and alpha 255, so luminance == gray
                img = img.convert("L")
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{name}: not a decodable image: {e}") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read one chest X-ray file as a 2-D uint8 array (see decode_image); errors name the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(f"{path}: cannot read image: {e.strerror or e}") from None
    return decode_image(data, str(path))


# ---- NIH download -----------------------------------------------------------------------------


def pull_nih(
    mirror: str,
    out_dir: Path,
    archives: list[str] | None = None,
    *,
    shard_size: int | None = None,  # images per shard; None: shards.SHARD_SIZE (5000, ~2 GB)
    checksums: dict[str, str] | None = None,  # file -> "md5:<hex>"/"sha256:<hex>", over NIH_ARCHIVES
    keep_archives: bool = False,  # keep the downloaded tar.gz (resumable re-runs, +42 GB on disk)
    download_dir: Path | None = None,  # None: a hidden sibling of out_dir, outside DVC's output
    max_bytes: int | None = None,  # bytes one archive may expand to; None: fetch.MAX_EXPANDED_BYTES (16 GiB)
    max_ratio: float | None = None,  # expanded / compressed size of one archive; None: fetch.MAX_RATIO (100)
) -> dict:
    """Fetch NIH ChestX-ray14 from `mirror` (URL or folder holding NIH's file names) into out_dir.

    out_dir gets the two CSVs and two split lists (checked by the readers above) and `images/`,
    a shard folder (shards.py) built by streaming each archive's members: no loose PNGs ever land
    on disk. Archives are fetched one at a time, verified against NIH's MD5s, sharded, then deleted
    unless `keep_archives`, so peak extra disk is one archive (~4 GB). An archive expanding past
    `max_bytes` or `max_ratio` times its size is refused (NIH's: ~4 GB -> ~4.5 GB, a ratio near 1).
    A failure anywhere leaves no `images/` (an earlier complete one is kept) and no download folder
    (with `keep_archives`, the verified archives that were not refused stay in it for a re-run);
    `fetch` skips files already present and verified. `archives` defaults to all twelve; with a
    subset, entries outnumber images (filter by shard).
    """
    import shutil

    from components.fetch import fetch, resolve
    from pipelines.medical.sources.shards import SHARD_SIZE, ShardReader, iter_tar_members, write_shards

    if not str(mirror or "").strip():
        raise ValueError(
            "medical.data.mirror is empty: set medical.data.mirror to the folder or URL holding NIH's "
            f"{ENTRIES_FILE}, {BOXES_FILE}, the split lists and images_001.tar.gz ... images_012.tar.gz"
        )
    out_dir = Path(out_dir)
    sums = {**NIH_ARCHIVES, **(checksums or {})}
    archives = sorted(NIH_ARCHIVES) if archives is None else list(archives)
    if missing := [a for a in archives if not sums.get(a)]:
        raise ValueError(f"no checksum for archive(s) {missing}: pass checksums={{name: 'md5:<hex>'}}")
    out_dir.mkdir(parents=True, exist_ok=True)

    for name in NIH_TABLES:  # NIH publishes no checksums for these; the readers check their format
        fetch(resolve(mirror, name), out_dir / name, checksum=sums.get(name))
    entries = read_nih_entries(out_dir / ENTRIES_FILE)
    boxes = read_nih_boxes(out_dir / BOXES_FILE)
    test, train_val = read_split_list(out_dir / TEST_LIST), read_split_list(out_dir / TRAIN_VAL_LIST)
    if overlap := test & train_val:
        raise ValueError(f"{out_dir}: {len(overlap)} image(s) in both split lists, e.g. {sorted(overlap)[:5]}")

    download_dir = Path(download_dir or out_dir.parent / f".{out_dir.name}-archives")
    streaming: list[Path] = []  # the archive being streamed, if any: refused archives are never kept

    def members() -> Iterator[tuple[str, bytes]]:
        for name in archives:
            path = fetch(resolve(mirror, name), download_dir / name, checksum=sums[name])
            log.info("%s: verified; streaming into shards", name)
            streaming[:] = [path]
            yield from iter_tar_members(path, max_bytes=max_bytes, max_ratio=max_ratio)
            streaming.clear()
            if not keep_archives:
                path.unlink()

    try:
        shards = write_shards(members(), out_dir / "images", shard_size or SHARD_SIZE)
    except BaseException:
        if not keep_archives:
            shutil.rmtree(download_dir, ignore_errors=True)
        else:
            for path in streaming:
                path.unlink(missing_ok=True)
        raise
    finally:
        if download_dir.is_dir() and not any(download_dir.iterdir()):
            download_dir.rmdir()

    names = set(ShardReader(out_dir / "images").names())
    unlisted = names - set(entries["image"])
    if unlisted:
        log.warning("%d sharded image(s) have no Data_Entry row, e.g. %s", len(unlisted), sorted(unlisted)[:5])
    summary = {
        "entries": len(entries),
        "images": len(names),
        "shards": len(shards),
        "boxes": len(boxes),
        "test_list": len(test),
        "train_val_list": len(train_val),
        "archives": archives,
    }
    log.info("NIH ChestX-ray14 pulled into %s: %s", out_dir, summary)
    return summary


# ---- NIH's layout unpacked in a local folder (source nih_folder, and the demo) -------------------


def check_nih_folder(folder: str | Path, split_lists: str | Path = "", *, key: str = "medical.data.folder") -> dict:
    """Where each of NIH's files is in an unpacked folder: {table name: path, ..., "images": [PNG paths]}.

    The tables are taken from `folder`, the split lists from `split_lists` when `folder` lacks them.
    Refused, with a message naming the file and the key to set: an empty `folder` (it would read the
    working directory), a missing folder, table or images/, a folder without PNGs, and any table or
    image that is a symbolic link or resolves outside its folder (a link could copy /etc/passwd).
    """
    if not str(folder or "").strip():
        raise ValueError(
            f"{key} is empty: set {key} to a folder in NIH's layout ({ENTRIES_FILE}, {BOXES_FILE}, "
            f"images/*.png; {TRAIN_VAL_LIST} and {TEST_LIST} there or in medical.data.split_lists)"
        )
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (set {key} to a folder in NIH's layout)")
    found: dict = {}
    for name in NIH_TABLES:
        source = folder / name
        if not os.path.lexists(source) and str(split_lists or "").strip():
            source = Path(split_lists) / name
        if not os.path.lexists(source):
            raise FileNotFoundError(f"{folder / name}: missing (set medical.data.split_lists for the lists)")
        found[name] = _regular_inside(source, source.parent)
    images = folder / "images"
    if not images.is_dir() or images.is_symlink():
        why = "a symbolic link, refused" if images.is_symlink() else "missing"
        raise FileNotFoundError(f"{images}: {why} (NIH's layout keeps the PNGs in images/)")
    with os.scandir(images) as it:
        pngs = sorted((Path(e.path) for e in it if e.name.lower().endswith(".png")), key=lambda p: p.name)
    if not pngs:
        raise FileNotFoundError(f"{images}: no PNG images")
    found["images"] = [_regular_inside(p, images) for p in pngs]
    return found


def _regular_inside(path: Path, root: Path) -> Path:
    """`path` itself when it is a regular file, not a link, inside `root`; ValueError otherwise."""
    if path.is_symlink():
        raise ValueError(
            f"{path}: is a symbolic link to {os.readlink(path)!r}; refusing to follow it "
            "(a source folder must hold the files themselves)"
        )
    if not os.path.realpath(path).startswith(os.path.realpath(root) + os.sep):
        raise ValueError(f"{path}: resolves to {os.path.realpath(path)}, outside {root}; refusing it")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    return path


def pull_nih_folder(
    folder: str | Path,
    out_dir: Path,
    split_lists: str | Path = "",
    *,
    shard_size: int | None = None,  # images per shard; None: shards.SHARD_SIZE
    key: str = "medical.data.folder",  # the config key named when `folder` is unset
) -> list[Path]:
    """Copy NIH's tables from an unpacked folder (check_nih_folder) into out_dir and shard its PNGs
    into out_dir/images; links are refused, never followed. Returns the files written."""
    from components.io import atomic_write
    from pipelines.medical.sources.shards import SHARD_SIZE, read_regular, write_shards

    found = check_nih_folder(folder, split_lists, key=key)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in NIH_TABLES:
        # O_NOFOLLOW: a link swapped in since the check still fails
        atomic_write(out_dir / name, read_regular(found[name], "table"))
    shards = write_shards(((p.name, p) for p in found["images"]), out_dir / "images", shard_size or SHARD_SIZE)
    return [*(out_dir / n for n in NIH_TABLES), *shards, out_dir / "images" / "index.json"]
