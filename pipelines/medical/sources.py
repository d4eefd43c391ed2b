"""Chest X-ray sources for multi-label diagnosis, each read from its publisher's exact on-disk format.

- nih:   NIH ChestX-ray14 (Wang et al., CVPR 2017): 112,120 frontal PNGs of 30,805 patients,
         14 report-mined labels (`Data_Entry_2017_v2020.csv`), boxes for 8 of them on ~1,000
         images (`BBox_List_2017.csv`), and NIH's official patient-wise `train_val_list.txt` /
         `test_list.txt`. Open data ("usage unrestricted"; cite the paper, link
         https://nihcc.app.box.com/v/ChestXray-NIHCC, acknowledge the NIH Clinical Center).
         `pull_nih` fetches from any mirror, checks NIH's published MD5s and streams the twelve
         images_XXX.tar.gz straight into tar shards (shards.py): 112,120 loose files never touch data/.
- mimic: MIMIC-CXR-JPG 2.0.0 (PhysioNet, credentialed access): CheXpert-labelled studies, read
         from a local copy; labels mapped onto the NIH findings where they are the same finding.
- demo:  a generator writing NIH's on-disk format with synthetic chests whose findings are drawn
         into the pixels, so the offline profile runs the very same readers, and a model can learn.

Every reader checks the layout it depends on (headers, label vocabularies) and fails with the
file, line and value, because a silently shifted column or a misspelt label corrupts a whole run.
Heavy imports (monai, torch) stay out: this module runs in the data stage.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger("scifolio.medical.sources")

# ---- vocabularies -----------------------------------------------------------------------------

FINDINGS = (  # NIH's canonical order (the paper, the README, every CheXNet reimplementation)
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
BOXED_FINDINGS = FINDINGS[:8]  # the eight "ChestX-ray8" findings, the only ones NIH drew boxes for
NO_FINDING = "No Finding"  # NIH's label when none of the 14 applies (not the same as "normal")
BOX_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017.csv spells this one differently
BOX_SPELLING = {v: k for k, v in BOX_ALIASES.items()}  # ours -> NIH's, for writing the demo
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
    "image", "labels", "follow_up", "patient_id", "age", "sex", "view",
    "width", "height", "spacing_x", "spacing_y",
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
    for i, key in enumerate((
        "vfk49d74nhbxq3nqjg0900w5nvkorp5c", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1",
        "f1t00wrtdk94satdfb9olcolqx20z2jp", "0aowwzs5lhjrceb3qp67ahp0rd1l1etg",
        "v5e3goj22zr6h8tzualxfsqlqaygfbsn", "asi7ikud9jwnkrnkj99jnpfkjdes7l6l",
        "jn1b4mw4n6lnh74ovmcjb8y48h8xj07n", "tvpxmn7qyrgl0w8wfh9kqfjskv6nmm1j",
        "upyy3ml7qdumlgk2rfcvlb9k6gvqq2pj", "l6nilvfa9cg3s28tqv1qc1olm3gnz54p",
        "hhq8fkdgvcari67vfhs7ppg2w6ni4jze", "ioqwiy20ihqwyr8pf4c24eazhh281pbu",
    ))
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
        raise ValueError(
            f"{path}, line {row + 2}: {column} {frame[column].iloc[row]!r} is not a valid {kind.__name__}"
        )
    return values.astype("int64" if kind is int else "float64")


def parse_labels(text: str, where: str) -> list[str]:
    """'A|B' -> ['A', 'B']; 'No Finding' -> []; anything outside FINDINGS is an error at `where`."""
    parts = [p.strip() for p in text.split("|")]
    if parts == [NO_FINDING]:
        return []
    for p in parts:
        if p not in FINDINGS:
            why = "'No Finding' combined with findings" if p == NO_FINDING else "unknown label"
            raise ValueError(f"{where}: {why} {p!r} in {text!r} "
                             f"(expected {NO_FINDING!r} or {'|'.join(FINDINGS)})")
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
        raise ValueError(f"{path}: not NIH's Data_Entry header.\n"
                         f"  expected: {NIH_ENTRY_HEADER}\n  found:    {header}")
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
            raise ValueError(
                f"{path}, line {row + 2}: {col} {raw[col].iloc[row]!r} is not one of {allowed}")
        out[col] = raw[col]
    for col in ("spacing_x", "spacing_y"):
        out[col] = _numbers(path, raw, col, float)
    out = out[list(ENTRY_COLUMNS)]

    for i, name in enumerate(out["image"]):
        if not IMAGE_NAME.fullmatch(name):
            raise ValueError(
                f"{path}, line {i + 2}: image name {name!r} is not <8 digits>_<3 digits>.png")
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
        raise ValueError(f"{path}: not NIH's BBox header.\n"
                         f"  expected: {NIH_BOX_HEADER}\n  found:    {header}")
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
            raise ValueError(f"{path}, line {i + 2}: unknown box finding {raw['finding'].iloc[i]!r} "
                             f"(expected one of {', '.join(BOXED_FINDINGS)} or Infiltrate)")
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


def patient_split(
    entries: pd.DataFrame, test_images: set[str], val_fraction: float, seed: int
) -> pd.Series:
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
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError,
            ValueError) as e:
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
) -> dict:
    """Fetch NIH ChestX-ray14 from `mirror` (URL or folder holding NIH's file names) into out_dir.

    out_dir gets the two CSVs and two split lists (checked by the readers above) and `images/`,
    a shard folder (shards.py) built by streaming each archive's members: no loose PNGs ever land
    on disk. Archives are fetched one at a time, verified against NIH's MD5s, sharded, then deleted
    unless `keep_archives`, so peak extra disk is one archive (~4 GB). A failure anywhere leaves no
    `images/` (an earlier complete one is kept); `fetch` skips files already present and verified.
    `archives` defaults to all twelve; with a subset, entries outnumber images (filter by shard).
    """
    from components.fetch import fetch, resolve
    from pipelines.medical.shards import SHARD_SIZE, ShardReader, iter_tar_members, write_shards

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
        raise ValueError(
            f"{out_dir}: {len(overlap)} image(s) in both split lists, e.g. {sorted(overlap)[:5]}")

    download_dir = Path(download_dir or out_dir.parent / f".{out_dir.name}-archives")

    def members() -> Iterator[tuple[str, bytes]]:
        for name in archives:
            path = fetch(resolve(mirror, name), download_dir / name, checksum=sums[name])
            log.info("%s: verified; streaming into shards", name)
            yield from iter_tar_members(path)
            if not keep_archives:
                path.unlink()

    try:
        shards = write_shards(members(), out_dir / "images", shard_size or SHARD_SIZE)
    finally:
        if download_dir.is_dir() and not any(download_dir.iterdir()):
            download_dir.rmdir()

    names = set(ShardReader(out_dir / "images").names())
    unlisted = names - set(entries["image"])
    if unlisted:
        log.warning("%d sharded image(s) have no Data_Entry row, e.g. %s",
                    len(unlisted), sorted(unlisted)[:5])
    summary = {
        "entries": len(entries), "images": len(names), "shards": len(shards), "boxes": len(boxes),
        "test_list": len(test), "train_val_list": len(train_val), "archives": archives,
    }
    log.info("NIH ChestX-ray14 pulled into %s: %s", out_dir, summary)
    return summary


# ---- MIMIC-CXR-JPG ----------------------------------------------------------------------------

# CheXpert label -> NIH finding, only where both name the same radiological finding.
# Not mapped (and why): Lung Lesion (Mass and Nodule together), Lung Opacity (covers
# Infiltration, Consolidation, Pneumonia, Edema...), Pleural Other (thickening among other
# things), Enlarged Cardiomediastinum (mediastinum too), Fracture, Support Devices, No Finding.
# NIH findings with no CheXpert match (Infiltration, Mass, Nodule, Emphysema, Fibrosis,
# Pleural_Thickening, Hernia) are NaN for every MIMIC image: unknown, masked from the loss.
CHEXPERT_TO_NIH = {
    "Atelectasis": "Atelectasis",
    "Cardiomegaly": "Cardiomegaly",
    "Pleural Effusion": "Effusion",
    "Pneumonia": "Pneumonia",
    "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation",
    "Edema": "Edema",
}
CHEXPERT_LABELS = (  # the 14 label columns of mimic-cxr-2.0.0-chexpert.csv
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum",
    "Fracture", "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other",
    "Pneumonia", "Pneumothorax", "Support Devices",
)
MIMIC_FILES = {  # role -> file stem; each may be plain or gzipped (PhysioNet ships .csv.gz)
    "metadata": "mimic-cxr-2.0.0-metadata",
    "chexpert": "mimic-cxr-2.0.0-chexpert",
    "split": "mimic-cxr-2.0.0-split",
}
MIMIC_SPLITS = {"train": "train", "validate": "val", "test": "test"}  # theirs -> ours
UNCERTAIN_POLICIES = ("mask", "positive", "negative")  # U-Ignore, U-Ones, U-Zeros (Irvin 2019)


class PhysioNetAuth(tuple):
    """(username, password) for requests' `auth=`; repr/str never show either value."""

    def __new__(cls, username: str, password: str) -> PhysioNetAuth:
        return super().__new__(cls, (username, password))

    def __getnewargs__(self) -> tuple[str, str]:  # pickle rebuilds it through __new__
        return tuple(self)

    def __repr__(self) -> str:
        return "PhysioNetAuth(username=<set>, password=<redacted>)"

    __str__ = __repr__


def mimic_auth_from_env() -> PhysioNetAuth | None:
    """Credentials from PHYSIONET_USERNAME / PHYSIONET_PASSWORD, or None if either is unset/empty."""
    user = os.environ.get("PHYSIONET_USERNAME", "")
    password = os.environ.get("PHYSIONET_PASSWORD", "")
    if not user or not password:
        log.info("PhysioNet credentials not set (PHYSIONET_USERNAME / PHYSIONET_PASSWORD)")
        return None
    return PhysioNetAuth(user, password)


def _mimic_table(root: Path, role: str, columns: tuple[str, ...]) -> pd.DataFrame:
    stem = MIMIC_FILES[role]
    for path in (root / f"{stem}.csv.gz", root / f"{stem}.csv"):
        if path.is_file():
            break
    else:
        raise FileNotFoundError(f"{root}: neither {stem}.csv.gz nor {stem}.csv found")
    try:
        table = pd.read_csv(path, dtype={"dicom_id": str})
    except (OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot read: {e}") from None
    if missing := [c for c in columns if c not in table.columns]:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    table.attrs["path"] = path
    return table


def read_mimic(root: Path, uncertain: str = "mask") -> pd.DataFrame:
    """MIMIC-CXR-JPG metadata + CheXpert labels + official split -> one row per image.

    Columns: image (relative path files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg), dicom_id,
    subject_id, study_id, patient_id (= subject_id, for assert_no_patient_leak), view
    (ViewPosition), split (train/val/test; their "validate" is our "val"), then FINDINGS as float32.

    Labels are per study (a report), so every image of a study gets its study's labels. CheXpert
    values: 1 positive, 0 negative, -1 uncertain, blank = not mentioned in the report. Blank -> 0
    (the CheXpert convention: a finding the radiologist did not mention is taken as absent).
    Uncertain, by `uncertain`: "mask" -> NaN (excluded from the loss), "positive" -> 1,
    "negative" -> 0. Findings without a CheXpert counterpart (see CHEXPERT_TO_NIH) are NaN.
    Images whose study has no CheXpert row (a report with no labelled section) are dropped, logged.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain policy {uncertain!r} is not one of {UNCERTAIN_POLICIES}")
    root = Path(root)
    keys = ("subject_id", "study_id")
    meta = _mimic_table(root, "metadata", ("dicom_id", *keys, "ViewPosition"))
    labels = _mimic_table(root, "chexpert", (*keys, *CHEXPERT_TO_NIH))
    split = _mimic_table(root, "split", ("dicom_id", *keys, "split"))

    for name in CHEXPERT_TO_NIH:
        values = pd.to_numeric(labels[name], errors="coerce")
        bad = ~(values.isin([1, 0, -1]) | labels[name].isna())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ValueError(f"{labels.attrs['path']}, line {row + 2}: "
                             f"{name} = {labels[name].iloc[row]} (expected 1, 0, -1 or blank)")
    if (unknown := set(split["split"]) - set(MIMIC_SPLITS)):
        raise ValueError(f"{split.attrs['path']}: unknown split value(s) {sorted(unknown)}")
    if labels.duplicated(list(keys)).any():
        raise ValueError(f"{labels.attrs['path']}: more than one row for a study")

    table = meta[["dicom_id", *keys, "ViewPosition"]].merge(
        split[["dicom_id", *keys, "split"]], on=["dicom_id", *keys], how="left",
        validate="one_to_one")
    if (nosplit := table["split"].isna()).any():
        raise ValueError(f"{split.attrs['path']}: {int(nosplit.sum())} image(s) of the metadata "
                         f"have no split, e.g. {table.loc[nosplit, 'dicom_id'].iloc[0]}")
    table = table.merge(labels[[*keys, *CHEXPERT_TO_NIH]], on=list(keys), how="inner",
                        validate="many_to_one")
    if dropped := len(meta) - len(table):
        log.info("MIMIC-CXR: %d image(s) without CheXpert labels dropped (%d kept)",
                 dropped, len(table))

    subject, study = table["subject_id"].astype("int64"), table["study_id"].astype("int64")
    paths = [f"files/p{str(p)[:2]}/p{p}/s{s}/{d}.jpg"  # PhysioNet's layout: p + first 2 digits
             for p, s, d in zip(subject, study, table["dicom_id"])]
    out = pd.DataFrame({
        "image": paths, "dicom_id": table["dicom_id"], "subject_id": subject, "study_id": study,
        "patient_id": subject, "view": table["ViewPosition"].fillna(""),
        "split": table["split"].map(MIMIC_SPLITS),
    })
    uncertain_value = {"mask": np.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    nih = {v: k for k, v in CHEXPERT_TO_NIH.items()}
    for finding in FINDINGS:
        if finding not in nih:
            out[finding] = np.float32(np.nan)
            continue
        v = pd.to_numeric(table[nih[finding]], errors="coerce").fillna(0.0)  # blank: unmentioned -> 0
        out[finding] = v.replace(-1.0, uncertain_value).astype(np.float32)
    return out.reset_index(drop=True)


# Section headings of a MIMIC-CXR report written before the image is read (why it was ordered),
# matched by prefix: INDICATION(S), HISTORY, CLINICAL HISTORY / INFORMATION / INDICATION,
# "CLINICAL INFORMATION & QUESTIONS TO BE ANSWERED", REASON FOR EXAM(INATION)...
INDICATION_SECTIONS = ("INDICATION", "HISTORY", "CLINICAL", "REASON FOR")
_SECTION = re.compile(r"^[ \t]*([A-Z][A-Z /&()-]{1,60}?)[ \t]*:", re.MULTILINE)  # "HEADING:" opens a line
# the radiologist's reading, cut even when it follows on the same line as the indication
_READING = re.compile(r"\b(?:FINDINGS?|IMPRESSIONS?|CONCLUSIONS?|RECOMMENDATIONS?|WET READ|"
                      r"TECHNIQUE|COMPARISONS?|NOTIFICATION)\s*:")


def read_indication(report_text: str) -> str:
    """The INDICATION / HISTORY / CLINICAL INFORMATION text of a MIMIC-CXR report, or ''.

    Only what the clinician knew before the image was read: FINDINGS and IMPRESSION restate the
    labels (CheXpert mined them from there), so feeding them to a model would leak the answer.
    Several indication-like sections are joined with a space; whitespace is collapsed.
    """
    heads = list(_SECTION.finditer(report_text))
    parts = []
    for i, m in enumerate(heads):
        heading = " ".join(m.group(1).split())
        if not heading.startswith(INDICATION_SECTIONS) or _READING.search(heading + ":"):
            continue
        end = heads[i + 1].start() if i + 1 < len(heads) else len(report_text)
        body = report_text[m.end():end]
        if cut := _READING.search(body):
            body = body[: cut.start()]
        if body := " ".join(body.split()):
            parts.append(body)
    return " ".join(parts)


# ---- demo generator ---------------------------------------------------------------------------

DEMO_TEST_FRACTION = 0.2  # of patients; NIH's official test list holds 23% of its images
DEMO_RGBA_FRACTION = 0.04  # NIH's sample has 4 RGBA PNGs in 92: loaders must cope
DEMO_PREVALENCE = {  # per image (chronic: per patient); above NIH's so a small demo has positives
    "Atelectasis": 0.11, "Cardiomegaly": 0.08, "Effusion": 0.12, "Infiltration": 0.14,
    "Mass": 0.07, "Nodule": 0.08, "Pneumonia": 0.05, "Pneumothorax": 0.07, "Consolidation": 0.06,
    "Edema": 0.05, "Emphysema": 0.05, "Fibrosis": 0.05, "Pleural_Thickening": 0.05, "Hernia": 0.04,
}
CHRONIC = ("Cardiomegaly", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")  # kept at follow-up
AP_FINDINGS = ("Effusion", "Edema", "Pneumothorax", "Consolidation", "Pneumonia",
               "Atelectasis")  # inpatient findings, often on bedside (AP) films
ORIGINAL_SIZES = ((2500, 2048, 0.171), (2048, 2500, 0.171), (3056, 2544, 0.139),
                  (2992, 2991, 0.143), (2021, 2021, 0.194311))  # (width, height, mm/px) seen in NIH's CSV


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
             soft: float = 0.08, angle: float = 0.0) -> np.ndarray:
    """Soft ellipse mask in [0, 1]: 1 inside, 0 outside, a sigmoid edge `soft` of the radius wide."""
    dy, dx = yy - cy, xx - cx
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    r = np.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / soft, -50, 50)))


class _Chest:
    """One synthetic frontal chest film in normalised coordinates (x right, y down, 0..1)."""

    def __init__(self, size: int, rng: np.random.Generator, patient: dict, view: str):
        self.size, self.rng = size, rng
        g = (np.arange(size) + 0.5) / size
        self.yy, self.xx = np.meshgrid(g, g, indexing="ij")
        j = patient["jitter"]  # the same person keeps the same anatomy across follow-ups
        scale = 1.08 if patient["Emphysema"] else 1.0  # hyperinflated lungs
        self.lungs = [  # (cy, cx, ry, rx) of the image-left and image-right lung fields
            (0.45 + j[0], 0.31 + j[1], 0.27 * scale, 0.135),
            (0.45 + j[0], 0.69 + j[1], 0.27 * scale, 0.125),
        ]
        heart_rx = 0.19 if patient["Cardiomegaly"] else 0.115  # half-width: cardiothoracic ratio
        heart_rx *= 1.06 if view == "AP" else 1.0  # AP films magnify the heart
        self.heart = (0.63 + j[0], 0.53 + j[1], 0.11, heart_rx + j[2])
        img = np.full((size, size), 18.0)
        img += 140 * _ellipse(self.yy, self.xx, 0.56, 0.5 + j[1], 0.55, 0.47, soft=0.04)  # body
        lung_level = -85 - (25 if patient["Emphysema"] else 0)  # emphysema: darker, more air
        self.lung_mask = np.zeros_like(img)
        for cy, cx, ry, rx in self.lungs:
            lung = _ellipse(self.yy, self.xx, cy, cx, ry, rx, soft=0.05)
            self.lung_mask = np.maximum(self.lung_mask, lung)
        img += lung_level * self.lung_mask
        ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (self.yy * 11 + 0.8 * np.abs(self.xx - 0.5)))
        img += 12 * ribs * self.lung_mask  # faint rib shadows
        img += 30 * _ellipse(self.yy, self.xx, 0.5, 0.5 + j[1], 0.45, 0.035, soft=0.1)  # spine
        heart = _ellipse(self.yy, self.xx, *self.heart, soft=0.06)
        img = img * (1 - heart) + 172 * heart  # the heart hides the lung behind it: replace, not add
        self.img = img
        self.boxes: list[tuple[str, float, float, float, float]] = []  # finding, x, y, w, h (pixels)

    def add(self, mask: np.ndarray, level: float) -> None:
        self.img += level * mask

    def box(self, finding: str, mask: np.ndarray, threshold: float = 0.5) -> None:
        ys, xs = np.nonzero(mask > threshold)
        if len(xs):
            self.boxes.append((finding, float(xs.min()), float(ys.min()),
                               float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)))

    def lung_point(self, side: int, y_lo: float = 0.2, y_hi: float = 0.8, margin: float = 0.7):
        """A random point well inside one lung; y_lo/y_hi pick a zone (0 apex .. 1 base)."""
        cy, cx, ry, rx = self.lungs[side]
        t = self.rng.uniform(y_lo, y_hi) * 2 - 1
        half = rx * margin * np.sqrt(max(1 - t * t, 0.05))
        return cy + t * ry * margin, cx + self.rng.uniform(-half, half)

    def draw(self, finding: str) -> None:
        rng, yy, xx = self.rng, self.yy, self.xx
        side = int(rng.integers(2))
        cy, cx, ry, rx = self.lungs[side]
        if finding == "Emphysema":  # drawn in __init__: larger, darker lung fields
            return
        if finding == "Cardiomegaly":  # drawn by the wider heart in __init__; box it
            self.box(finding, _ellipse(yy, xx, *self.heart, soft=0.06))
        elif finding == "Effusion":  # dense band at the lung base with a concave meniscus
            top = cy + ry * rng.uniform(0.45, 0.65)
            lateral = np.clip((xx - cx) / rx * (1 if side else -1), 0, 1)  # 0 medial .. 1 chest wall
            meniscus = top - 0.06 * lateral**2  # fluid climbs the lateral wall
            below = 1 / (1 + np.exp(-(yy - meniscus) / 0.008))
            mask = _ellipse(yy, xx, cy, cx, ry, rx, soft=0.03) * below
            self.add(mask, 95)
            self.box(finding, mask)
        elif finding == "Nodule":  # a few small bright discs
            for _ in range(int(rng.integers(1, 4))):
                py, px = self.lung_point(int(rng.integers(2)))
                mask = _ellipse(yy, xx, py, px, r := rng.uniform(0.012, 0.02), r, soft=0.15)
                self.add(mask, 75)
                self.box(finding, mask)
        elif finding == "Mass":  # one larger disc, lobulated edge
            py, px = self.lung_point(side, 0.25, 0.7)
            r = rng.uniform(0.045, 0.07)
            mask = _ellipse(yy, xx, py, px, r, r * rng.uniform(0.8, 1.2), soft=0.12)
            self.add(mask, 80)
            self.box(finding, mask)
        elif finding == "Pneumothorax":  # apical-lateral air: darker than lung, no markings
            mask = _ellipse(yy, xx, cy - ry * 0.45, cx + (-1 if side == 0 else 1) * rx * 0.35,
                            ry * 0.5, rx * 0.55, soft=0.05) * self.lung_mask
            self.add(mask, -40)  # ribs stay (chest wall); the lung's own texture would vanish
            self.box(finding, mask)
        elif finding == "Atelectasis":  # plate-like band: thin tilted bright streak, lower zone
            py, px = self.lung_point(side, 0.55, 0.8)
            length, tilt = rng.uniform(0.07, 0.1), rng.uniform(-0.4, 0.4)
            mask = _ellipse(yy, xx, py, px, 0.012, length, soft=0.2, angle=tilt)
            self.add(mask, 70)
            self.box(finding, mask)
        elif finding == "Infiltration":  # patchy faint haze: a cluster of soft blobs
            py, px = self.lung_point(side, 0.3, 0.7)
            mask = np.zeros_like(self.img)
            for _ in range(int(rng.integers(5, 9))):
                r = rng.uniform(0.02, 0.04)
                by, bx = py + rng.normal(0, 0.04), px + rng.normal(0, 0.03)
                blob = _ellipse(yy, xx, by, bx, r, r, soft=0.35)
                mask = np.maximum(mask, blob)
            mask *= self.lung_mask
            self.add(mask, 38)
            self.box(finding, mask, 0.3)
        elif finding == "Pneumonia":  # dense fuzzy lower-zone patch with mottled texture
            py, px = self.lung_point(side, 0.55, 0.8)
            mask = _ellipse(yy, xx, py, px, rng.uniform(0.06, 0.09), rng.uniform(0.05, 0.08), soft=0.3)
            mask *= self.lung_mask * (0.75 + 0.25 * rng.random(mask.shape))
            self.add(mask, 70)
            self.box(finding, mask, 0.3)
        elif finding == "Consolidation":  # homogeneous, sharp-edged upper-zone opacity
            mask = _ellipse(yy, xx, cy - ry * 0.4, cx, ry * 0.3, rx * 0.7, soft=0.03)
            mask *= self.lung_mask
            self.add(mask, 65)
        elif finding == "Edema":  # bilateral perihilar "bat wing" haze
            for scy, scx, _, srx in self.lungs:
                hilum = scx + (0.05 if scx < 0.5 else -0.05)
                self.add(_ellipse(yy, xx, scy + 0.03, hilum, 0.12, srx * 0.6, soft=0.4) * self.lung_mask, 40)
        elif finding == "Fibrosis":  # fine reticular net in both lower zones
            net = ((np.abs(np.sin(2 * np.pi * 34 * xx + 3 * yy)) < 0.18)
                   | (np.abs(np.sin(2 * np.pi * 30 * yy)) < 0.18))
            lower = self.lung_mask / (1 + np.exp(-(yy - 0.5) / 0.04))
            self.add(net * lower, 35)
        elif finding == "Pleural_Thickening":  # bright rim along the lateral lung edges
            for scy, scx, sry, srx in self.lungs:
                rim = (_ellipse(yy, xx, scy, scx, sry, srx, soft=0.03)
                       - _ellipse(yy, xx, scy, scx, sry * 0.92, srx * 0.8, soft=0.03))
                lateral = (xx < scx) if scx < 0.5 else (xx > scx)
                self.add(np.clip(rim, 0, 1) * lateral, 70)
        elif finding == "Hernia":  # retrocardiac round opacity with an air-fluid level
            hy, hx = self.heart[0] + 0.06, self.heart[1]
            self.add(_ellipse(yy, xx, hy, hx, 0.05, 0.06, soft=0.08), 45)
            air = _ellipse(yy, xx, hy - 0.02, hx, 0.018, 0.04, soft=0.1) * (yy < hy - 0.015)
            self.add(air, -70)
        else:
            raise ValueError(f"no demo drawing for finding {finding!r}")

    def render(self) -> np.ndarray:
        from PIL import Image, ImageFilter

        img = self.img * self.rng.uniform(0.9, 1.1) + self.rng.uniform(-10, 10)  # exposure
        img += self.rng.normal(0, 5, img.shape)  # quantum noise
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))  # 2-D uint8: mode L
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(self.size / 512)))


def _fmt(x: float) -> str:
    return repr(float(x))  # shortest round-trip text, as NIH's own floats (0.14300000000000002)


def write_demo(
    out_dir: Path,
    n_patients: int = 200,  # NIH has 30,805
    images_per_patient: tuple[int, int] = (1, 3),  # inclusive range of follow-ups per patient
    size: int = 256,  # pixels per side; NIH's PNGs are 1024
    seed: int = 0,
) -> Path:
    """Synthetic chest X-rays in NIH ChestX-ray14's exact on-disk format, read by the NIH readers.

    Writes images/<8-digit patient>_<3-digit follow-up>.png (8-bit grayscale, a few RGBA like
    NIH's), Data_Entry_2017_v2020.csv (NIH's header line verbatim), BBox_List_2017.csv (NIH's
    header, `Infiltrate` spelling), train_val_list.txt and test_list.txt (split by patient).

    Findings are drawn into the pixels (see _Chest.draw), so a model can learn them; view carries
    weak signal (AP more often with bedside findings) and age rises with chronic disease. As in NIH,
    boxes exist only for images in the test list, one per drawn lesion of a BOXED finding
    (Consolidation etc. get none), and are stored in NIH's 1024-pixel convention: demo pixel
    coordinates multiplied by 1024 / size, so they line up with the image after any resize to 1024.
    Images of an earlier demo in out_dir/images are removed first (NIH-named PNGs only).
    """
    lo, hi = images_per_patient
    if n_patients < 2 or not 1 <= lo <= hi or size < 32:
        raise ValueError(f"write_demo: need n_patients >= 2, 1 <= images_per_patient[0] <= [1], "
                         f"size >= 32; got {n_patients}, {images_per_patient}, {size}")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for old in (out_dir / "images").iterdir():  # a smaller re-run must not inherit stale images
        if IMAGE_NAME.fullmatch(old.name.removesuffix(".part")):
            old.unlink()

    n_test = min(max(1, round(DEMO_TEST_FRACTION * n_patients)), n_patients - 1)
    test_patients = set(rng.choice(np.arange(1, n_patients + 1), n_test, replace=False).tolist())
    counts = rng.integers(lo, hi + 1, n_patients)
    n_images = int(counts.sum())
    n_rgba = max(1, round(DEMO_RGBA_FRACTION * n_images))
    rgba = set(rng.choice(n_images, n_rgba, replace=False).tolist())

    rows, box_rows, test_names, train_val_names = [], [], [], []
    k = 0
    for pid in range(1, n_patients + 1):
        patient = {f: rng.random() < DEMO_PREVALENCE[f] for f in CHRONIC}
        patient["jitter"] = rng.normal(0, [0.015, 0.012, 0.01])
        age = int(np.clip(rng.normal(46, 17) + 12 * any(patient[f] for f in CHRONIC), 1, 94))
        sex = "M" if rng.random() < 0.56 else "F"
        for fu in range(int(counts[pid - 1])):
            name = f"{pid:08d}_{fu:03d}.png"
            found = [f for f in FINDINGS
                     if (patient[f] if f in CHRONIC else rng.random() < DEMO_PREVALENCE[f])]
            view = "AP" if rng.random() < (0.6 if set(found) & set(AP_FINDINGS) else 0.3) else "PA"
            chest = _Chest(size, rng, patient, view)
            for f in found:
                chest.draw(f)
            pixels = chest.render()
            mode = "RGBA" if k in rgba else "L"
            _save_png(pixels, out_dir / "images" / name, mode)
            w, h, spacing = ORIGINAL_SIZES[int(rng.integers(len(ORIGINAL_SIZES)))]
            labels = "|".join(sorted(found)) or NO_FINDING  # NIH lists labels alphabetically
            rows.append(f"{name},{labels},{fu},{pid},{age + fu // 2},{sex},{view},{w},{h},"
                        f"{_fmt(spacing)},{_fmt(spacing)}")
            if pid in test_patients:
                test_names.append(name)
                scale = NIH_BOX_SPACE / size
                for finding, x, y, bw, bh in chest.boxes:
                    label = BOX_SPELLING.get(finding, finding)
                    coords = ",".join(_fmt(v * scale) for v in (x, y, bw, bh))
                    box_rows.append(f"{name},{label},{coords}")
            else:
                train_val_names.append(name)
            k += 1

    _write_text(out_dir / ENTRIES_FILE, [NIH_ENTRY_HEADER, *rows])
    _write_text(out_dir / BOXES_FILE, [NIH_BOX_HEADER, *box_rows])
    _write_text(out_dir / TEST_LIST, sorted(test_names))
    _write_text(out_dir / TRAIN_VAL_LIST, sorted(train_val_names))
    log.info("demo: %d images of %d patients (%d test), %d boxes, %dpx, in %s",
             n_images, n_patients, len(test_names), len(box_rows), size, out_dir)
    return out_dir


def _save_png(pixels: np.ndarray, path: Path, mode: str) -> None:
    from PIL import Image

    img = Image.fromarray(pixels)  # 2-D uint8: mode L
    if mode == "RGBA":  # as NIH's RGBA files: R = G = B = gray, alpha 255
        img = img.convert("RGBA")
    tmp = path.with_name(path.name + ".part")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def _write_text(path: Path, lines: list[str]) -> None:
    """LF line endings, a final newline, UTF-8: as NIH's files."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8", newline="\n")
    tmp.replace(path)
