"""Great Expectations checks of an NIH ChestX-ray14 folder (raw/ or validated/), reported by line.

The folder holds NIH's files: Data_Entry_2017_v2020.csv, BBox_List_2017.csv, train_val_list.txt,
test_list.txt and images/ (a shard folder, shards.py, or a plain folder of PNGs). Checks, each on a
frame indexed by the 1-based line number of the file it names (the header is line 1):

* ``entries`` (Data_Entry): image names well formed and unique, patient_id a whole number >= 1,
  age in [0, 120] (the full NIH table has a handful of ages above 120: flagged, not clipped),
  sex M/F, view PA/AP, follow-up >= 0, original size and spacing positive. A label outside
  the 14 findings (or 'No Finding' mixed with findings) stops validation as a read failure
  naming file and line: the label columns cannot even be built then.
* ``images`` (one row per Data_Entry line): the entry's image is in the shard index, decodes
  (every image is fully decoded, streaming one at a time: the expensive part), is the format its
  name promises (magic bytes and PIL's format: a JPEG saved as .png is refused), has the expected
  size and a PIL mode among `expected_modes` (NIH ships 'L' and a few 'RGBA' PNGs).
* ``splits`` (one row per Data_Entry line): every image in exactly one official list, and no
  patient with images in both (patients must never straddle train and test).
* ``train_val_list.txt`` / ``test_list.txt`` (per list line): NIH image names, listed once,
  each naming an image of Data_Entry.
* ``boxes`` (BBox_List): findings among the eight boxed ones, boxes of positive size lying inside
  NIH's 1024 x 1024 pixel space, on images of Data_Entry.

A file that cannot be read at all raises :class:`components.validate.ValidationFailed` naming it.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from components.validate import Check, read_csv_cells, read_failure
from pipelines.medical.sources import nih as S

__all__ = ["MAX_AGE", "inspect_images", "medical_checks", "read_entry_cells", "read_list_lines"]

log = logging.getLogger("scifolio.medical.checks")

MAX_AGE = 120  # years; NIH's full table has a few rows like 148 or 412 (typing errors)
IMAGE_NAME_REGEX = r"^\d{8}_\d{3}\.png$"  # S.IMAGE_NAME, anchored for GX
INT_COLUMNS = ("follow_up", "patient_id", "age", "width", "height")
FLOAT_COLUMNS = ("spacing_x", "spacing_y")
SPLIT_VALUES = ("train_val", "test")  # the `split` column also holds "both" and "none" when wrong
IMAGES_DIR = "images"


# ---- reading (lenient: values are judged by the suites, only the layout is enforced) ---------


def _to_number(cells: pd.Series, whole: bool) -> pd.Series:
    """Parsed values as float64; NaN where the cell is not a (whole, when `whole`) finite number."""
    values = pd.to_numeric(cells.str.strip(), errors="coerce").astype("float64")
    values[~np.isfinite(values)] = np.nan
    if whole:
        values[values % 1 != 0] = np.nan
    return values


def read_entry_cells(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Data_Entry_2017_v2020.csv -> (entries, labels), both indexed by file line.

    entries: the columns of `sources.read_nih_entries` (image, labels, follow_up, patient_id, age,
    sex, view, width, height, spacing_x, spacing_y), numbers parsed leniently (NaN when a cell is
    not a valid number) so that the suite, not the reader, reports every bad cell with its line.
    labels: the 14 FINDINGS as int8 0/1. The header (NIH's quirky one, with or without the 2017
    trailing comma) and the label vocabulary are enforced: either failing is a read failure.
    """
    path = Path(path)
    check = f"{path.name} entries"
    try:
        header = S._header_line(path)
    except ValueError as e:
        raise read_failure(check, path, str(e).removeprefix(f"{path}: ")) from None
    trailing = header == S.NIH_ENTRY_HEADER + ","
    if header != S.NIH_ENTRY_HEADER and not trailing:
        raise read_failure(
            check, path, f"line 1: not NIH's Data_Entry header: found {header!r}, expected {S.NIH_ENTRY_HEADER!r}"
        )
    raw = read_csv_cells(check, path)
    expected = len(S.ENTRY_COLUMNS) + trailing
    if raw.shape[1] != expected:
        raise read_failure(check, path, f"{raw.shape[1]} columns, expected {expected}")
    raw = raw.iloc[:, : len(S.ENTRY_COLUMNS)]
    raw.columns = list(S.ENTRY_COLUMNS)  # by position: the header's names are broken by its commas

    entries = pd.DataFrame({"image": raw["image"], "labels": raw["labels"]}, index=raw.index)
    for col in (*INT_COLUMNS, *FLOAT_COLUMNS):
        entries[col] = _to_number(raw[col], whole=col in INT_COLUMNS)
    entries["sex"], entries["view"] = raw["sex"], raw["view"]
    entries = entries[list(S.ENTRY_COLUMNS)]

    labels = np.zeros((len(raw), len(S.FINDINGS)), dtype=np.int8)
    column = {f: j for j, f in enumerate(S.FINDINGS)}
    for i, (line, text) in enumerate(raw["labels"].items()):
        try:
            found = S.parse_labels(text, f"{path}, line {line}, column 'labels'")
        except ValueError as e:
            raise read_failure(check, path, str(e).removeprefix(f"{path}, ")) from None
        for f in found:
            labels[i, column[f]] = 1
    return entries, pd.DataFrame(labels, columns=list(S.FINDINGS), index=raw.index)


def read_list_lines(path: Path) -> pd.DataFrame:
    """An NIH split list -> frame (index = file line, column image); blank lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise read_failure(f"{path.name} read", path, f"cannot read the split list: {e}") from None
    rows = {i: line.strip() for i, line in enumerate(text.splitlines(), start=1) if line.strip()}
    frame = pd.DataFrame({"image": pd.Series(rows, dtype=object)})
    frame.index = pd.Index(list(rows), dtype="int64", name="line")
    return frame


def read_box_cells(path: Path) -> pd.DataFrame:
    """BBox_List_2017.csv -> frame (index = file line): image, finding (FINDINGS spelling), x, y, w,
    h (NaN when not a number), x_end = x + w, y_end = y + h. Header and field count are enforced."""
    path = Path(path)
    check = f"{path.name} boxes"
    try:
        header = S._header_line(path)
    except ValueError as e:
        raise read_failure(check, path, str(e).removeprefix(f"{path}: ")) from None
    if header != S.NIH_BOX_HEADER:
        raise read_failure(
            check, path, f"line 1: not NIH's BBox header: found {header!r}, expected {S.NIH_BOX_HEADER!r}"
        )
    raw = read_csv_cells(check, path)
    if raw.shape[1] > 6 and (extra := raw.iloc[:, 6:].ne("").any(axis=1)).any():
        line = int(raw.index[np.flatnonzero(extra.to_numpy())[0]])
        raise read_failure(check, path, f"line {line}: more than 6 fields")
    raw = raw.iloc[:, :6]
    raw.columns = list(S.BOX_COLUMNS)
    boxes = pd.DataFrame(
        {"image": raw["image"], "finding": raw["finding"].map(lambda f: S.BOX_ALIASES.get(f, f))}, index=raw.index
    )
    for col in ("x", "y", "w", "h"):
        boxes[col] = _to_number(raw[col], whole=False)
    boxes["x_end"], boxes["y_end"] = boxes["x"] + boxes["w"], boxes["y"] + boxes["h"]
    return boxes


# ---- images -----------------------------------------------------------------------------------


# The format an image's name promises, by suffix, as PIL names it; the bytes must match it.
FORMAT_OF_SUFFIX = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


def _sniff(data: bytes) -> str | None:
    """The format the leading (magic) bytes show: "PNG", "JPEG" or None."""
    if data.startswith(PNG_MAGIC):
        return "PNG"
    if data.startswith(JPEG_MAGIC):
        return "JPEG"
    return None


def _inspect_one(reader, name: str) -> tuple:
    """(present, decodable, width, height, mode, format_matches_name, error) of one image, decoding
    it fully. format_matches_name: the magic bytes and PIL's format both are the one the name's
    suffix promises (a JPEG saved as .png is False); None when the suffix promises none."""
    from PIL import Image

    if not isinstance(name, str) or name not in reader:
        return False, None, None, None, None, None, "not in the image index"
    try:
        data = reader.read(name)
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # the full decode: a truncated or corrupt stream fails here, not at open
            found = img.format
            size, mode = (img.width, img.height), img.mode
    except Exception as e:  # noqa: BLE001  PIL raises many types (OSError, SyntaxError, ...)
        return True, False, None, None, None, None, f"{type(e).__name__}: {e}"
    promised = FORMAT_OF_SUFFIX.get(Path(name).suffix.lower())
    if promised is None:
        return True, True, *size, mode, None, None
    sniffed = _sniff(data)
    if found == promised and sniffed == promised:
        return True, True, *size, mode, True, None
    what = sniffed or "unknown magic bytes"
    if found != sniffed:
        what += f", {found} to PIL"
    return True, True, *size, mode, False, f"the bytes are {what}, but the name promises {promised}"


def inspect_images(reader, names: Sequence[str], workers: int = 1) -> Iterator[tuple]:
    """Yield _inspect_one for each name, in order, decoding one image at a time per worker thread
    (Pillow releases the GIL while decoding); nothing but the small result tuples is kept."""
    if workers <= 1:
        for name in names:
            yield _inspect_one(reader, name)
        return
    with ThreadPoolExecutor(workers) as pool:
        chunk = 64 * workers  # bounded look-ahead: at most `chunk` images in flight
        for start in range(0, len(names), chunk):
            yield from pool.map(lambda n: _inspect_one(reader, n), names[start : start + chunk])


def _images_frame(root: Path, entries: pd.DataFrame, workers: int) -> pd.DataFrame:
    from pipelines.medical.sources.shards import ShardError, open_images

    folder = root / IMAGES_DIR
    try:
        reader = open_images(folder)
    except ShardError as e:
        raise read_failure("images", folder, str(e)) from None
    try:
        rows = list(inspect_images(reader, list(entries["image"]), workers))
    finally:
        reader.close()
    frame = pd.DataFrame(
        rows,
        index=entries.index,
        columns=["present", "decodable", "width", "height", "mode", "format_matches_name", "error"],
        dtype=object,
    )
    frame.insert(0, "image", entries["image"])
    for col in ("width", "height"):
        frame[col] = pd.to_numeric(frame[col]).astype("float64")
    bad = frame[frame["error"].notna()]
    for line, row in bad.head(10).iterrows():  # the suite names lines; the log names the images
        log.warning("%s, line %s: image %r: %s", S.ENTRIES_FILE, line, row["image"], row["error"])
    if n_unlisted := len(set(reader.names()) - set(entries["image"])):
        log.warning("%s: %d image(s) have no Data_Entry row (not used)", folder, n_unlisted)
    return frame


# ---- suites -----------------------------------------------------------------------------------


def medical_checks(
    root: Path,
    image_size: int | None,
    expected_modes: Sequence[str] = ("L", "RGBA", "RGB"),
    *,
    workers: int = 1,  # threads decoding images (1: strictly sequential)
) -> list[Check]:
    """The checks of one NIH folder (see the module docstring); `image_size` None skips the size
    check (NIH: 1024; the demo: its own size). Raises ValidationFailed for an unreadable file."""
    import great_expectations as gx

    gxe = gx.expectations
    root = Path(root)
    entries_path, boxes_path = root / S.ENTRIES_FILE, root / S.BOXES_FILE
    lists = {"train_val": root / S.TRAIN_VAL_LIST, "test": root / S.TEST_LIST}
    entries, _ = read_entry_cells(entries_path)
    listed = {k: read_list_lines(p) for k, p in lists.items()}
    boxes = read_box_cells(boxes_path)
    images = _images_frame(root, entries, workers)
    known = set(entries["image"])
    name = entries_path.name

    # entries
    exps: list = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
        gxe.ExpectColumnValuesToMatchRegex(
            column="image",
            regex=IMAGE_NAME_REGEX,
            description="not an NIH image name <8-digit patient>_<3-digit follow-up>.png",
        ),
        gxe.ExpectColumnValuesToBeUnique(column="image", description="an image listed on more than one line"),
    ]
    for col in INT_COLUMNS:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, description="the cell is not a whole number"))
    for col in FLOAT_COLUMNS:
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, description="the cell is not a number"))
    exps += [
        gxe.ExpectColumnValuesToBeBetween(column="patient_id", min_value=1, max_value=None),
        gxe.ExpectColumnValuesToBeBetween(
            column="age", min_value=0, max_value=MAX_AGE, description=f"age in years must lie in [0, {MAX_AGE}]"
        ),
        gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=list(S.SEXES)),
        gxe.ExpectColumnValuesToBeInSet(column="view", value_set=list(S.VIEWS)),
        gxe.ExpectColumnValuesToBeBetween(column="follow_up", min_value=0, max_value=None),
    ]
    for col in ("width", "height", *FLOAT_COLUMNS):
        exps.append(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=None, strict_min=True))
    checks = [
        Check(f"{name} entries", entries_path, entries, gx.ExpectationSuite(name=f"{name} entries", expectations=exps))
    ]

    # images, one row per entry line
    folder = root / IMAGES_DIR
    exps = [
        gxe.ExpectColumnValuesToBeInSet(
            column="present", value_set=[True], description=f"the image named on this line is not in {folder}"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="decodable",
            value_set=[True],
            description=f"the image named on this line cannot be decoded from {folder}",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="mode", value_set=list(expected_modes), description="unexpected PIL image mode"
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="format_matches_name",
            value_set=[True],
            description=(
                "the image's bytes (magic number and PIL format) are not the format its name promises, "
                "e.g. a JPEG saved as .png"
            ),
        ),
    ]
    if image_size is not None:
        for col in ("width", "height"):
            exps.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col, value_set=[image_size], description=f"images must be {image_size} x {image_size} pixels"
                )
            )
    checks.append(
        Check(
            f"images in {folder} of {name}",
            entries_path,
            images,
            gx.ExpectationSuite(name=f"{name} images", expectations=exps),
        )
    )

    # splits, one row per entry line
    in_list = {k: entries["image"].isin(set(f["image"])) for k, f in listed.items()}
    tv, te = in_list["train_val"], in_list["test"]
    split = np.select([tv & te, tv, te], ["both", "train_val", "test"], default="none")
    splits = pd.DataFrame(
        {"image": entries["image"], "patient_id": entries["patient_id"], "split": split}, index=entries.index
    )
    per_patient = pd.DataFrame({"patient": entries["patient_id"], **in_list})
    per_patient = per_patient.groupby("patient").any()
    both = set(per_patient.index[per_patient["train_val"] & per_patient["test"]])
    splits["patient_in_both_lists"] = entries["patient_id"].isin(both)
    exps = [
        gxe.ExpectColumnValuesToBeInSet(
            column="split",
            value_set=list(SPLIT_VALUES),
            description=(
                f"every image must be in exactly one of {S.TRAIN_VAL_LIST} and "
                f"{S.TEST_LIST} ('both': in both, 'none': in neither)"
            ),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="patient_in_both_lists",
            value_set=[False],
            description=(
                f"the patient on this line has images in both {S.TRAIN_VAL_LIST} and "
                f"{S.TEST_LIST}: a patient must never straddle the official split"
            ),
        ),
    ]
    checks.append(
        Check(f"{name} splits", entries_path, splits, gx.ExpectationSuite(name=f"{name} splits", expectations=exps))
    )

    # the two lists, per line
    for key, path in lists.items():
        frame = listed[key].copy()
        frame["has_entry"] = frame["image"].isin(known)
        exps = [
            gxe.ExpectTableRowCountToBeBetween(min_value=1, max_value=None),
            gxe.ExpectColumnValuesToMatchRegex(
                column="image", regex=IMAGE_NAME_REGEX, description="not an NIH image name"
            ),
            gxe.ExpectColumnValuesToBeUnique(column="image", description="an image listed on more than one line"),
            gxe.ExpectColumnValuesToBeInSet(
                column="has_entry",
                value_set=[True],
                description=f"the image on this line has no row in {S.ENTRIES_FILE}",
            ),
        ]
        checks.append(
            Check(f"{path.name} lines", path, frame, gx.ExpectationSuite(name=f"{path.name} lines", expectations=exps))
        )

    # boxes, per line
    boxes["has_entry"] = boxes["image"].isin(known)
    space = S.NIH_BOX_SPACE
    exps = [
        gxe.ExpectColumnValuesToBeInSet(
            column="finding",
            value_set=list(S.BOXED_FINDINGS),
            description="NIH boxed only the 8 ChestX-ray8 findings (Infiltrate = Infiltration)",
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="has_entry", value_set=[True], description=f"the boxed image has no row in {S.ENTRIES_FILE}"
        ),
    ]
    for col in ("x", "y", "w", "h"):
        exps.append(gxe.ExpectColumnValuesToNotBeNull(column=col, description="the cell is not a number"))
    for col in ("w", "h"):
        exps.append(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=0, max_value=space, strict_min=True))
    for col in ("x", "y", "x_end", "y_end"):
        exps.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=col,
                min_value=0,
                max_value=space,
                description=f"boxes must lie inside NIH's {space} x {space} pixel space",
            )
        )
    checks.append(
        Check(
            f"{boxes_path.name} boxes",
            boxes_path,
            boxes,
            gx.ExpectationSuite(name=f"{boxes_path.name} boxes", expectations=exps),
        )
    )
    return checks
