"""pipelines.medical.checks on the real NIH ChestX-ray14 sample, a broken copy of it, and the demo.

The sample lives in ../shared beside the repository and is never copied into it: the tests write
its 92 images into tar shards in pytest's tmp_path, with the two CSVs and the official split
lists built from SOURCE.md's 16 test images. The broken copy carries one fault per line, so that
one validation run (decoding 92 1024 x 1024 PNGs takes a second or two) covers every fault.
"""

from __future__ import annotations

import io
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.validate import ValidationFailed, run_checks
from pipelines.medical.checks import medical_checks, read_entry_cells
from pipelines.medical.sources import nih as S
from pipelines.medical.sources.demo import write_demo
from pipelines.medical.sources.shards import write_shards
from tests.medical.nih_sample import NIH, OFFICIAL_TEST


def _need_nih() -> Path:
    if not (NIH / S.ENTRIES_FILE).is_file():
        pytest.fail(f"NIH sample not found at {NIH}")
    return NIH


def _png(size: int, mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (size, size), 128).save(buf, format="PNG")
    return buf.getvalue()


def _nih_folder(
    root: Path,
    entry_lines: list[str] | None = None,
    images: dict | None = None,
    box_lines: list[str] | None = None,
    extra_test: list[str] = (),
) -> Path:
    """An NIH folder in `root`: CSVs (given lines or the sample's), official lists, image shards."""
    root.mkdir(parents=True, exist_ok=True)
    entry_lines = entry_lines or (NIH / S.ENTRIES_FILE).read_text().splitlines(keepends=True)
    box_lines = box_lines or (NIH / S.BOXES_FILE).read_text().splitlines(keepends=True)
    (root / S.ENTRIES_FILE).write_text("".join(entry_lines))
    (root / S.BOXES_FILE).write_text("".join(box_lines))
    names = sorted(p.name for p in (NIH / "images").iterdir())
    test = sorted(n for n in names if n in OFFICIAL_TEST) + list(extra_test)
    (root / S.TEST_LIST).write_text("".join(n + "\n" for n in test))
    (root / S.TRAIN_VAL_LIST).write_text("".join(n + "\n" for n in names if n not in OFFICIAL_TEST))
    if images is None:
        images = {n: NIH / "images" / n for n in names}
    write_shards(images, root / "images")
    return root


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    _need_nih()
    return _nih_folder(tmp_path_factory.mktemp("nih") / "raw")


def test_real_sample_passes_at_1024(sample):
    start = time.perf_counter()
    checks = medical_checks(sample, image_size=1024)
    result = run_checks(checks)
    assert result.success, result.error_message()
    assert time.perf_counter() - start < 30
    by_name = {c.name: c.frame for c in checks}
    images = next(c.frame for c in checks if c.name.startswith("images"))
    assert len(images) == 92 and images["decodable"].all()
    assert (images["width"] == 1024).all() and (images["height"] == 1024).all()
    assert images["mode"].value_counts().to_dict() == {"L": 88, "RGBA": 4}
    assert list(images.index[:2]) == [2, 3]  # indexed by the line in Data_Entry (header = line 1)
    splits = by_name["Data_Entry_2017_v2020.csv splits"]
    assert splits["split"].value_counts().to_dict() == {"train_val": 76, "test": 16}


def test_entry_frame_is_the_readers_frame(sample):
    entries, labels = read_entry_cells(sample / S.ENTRIES_FILE)
    strict = S.read_nih_entries(sample / S.ENTRIES_FILE)
    assert list(entries.index) == list(range(2, 94))
    assert list(entries.columns) == list(S.ENTRY_COLUMNS)
    for col in S.ENTRY_COLUMNS:
        assert (entries[col].to_numpy() == strict[col].to_numpy()).all(), col
    assert (labels.to_numpy() == strict[list(S.FINDINGS)].to_numpy()).all()


def test_wrong_image_size_of_the_real_sample_is_flagged(sample):
    result = run_checks(medical_checks(sample, image_size=512, expected_modes=("L",)))
    failed = {(f.column, f.unexpected_count) for f in result.failures}
    assert failed == {("width", 92), ("height", 92), ("mode", 4)}


# ---- one broken copy, one fault per line ---------------------------------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A copy of the sample with faults on known lines; returns (folder, result, faults)."""
    _need_nih()
    lines = (NIH / S.ENTRIES_FILE).read_text().splitlines(keepends=True)
    line_of = {ln.split(",")[0]: i + 1 for i, ln in enumerate(lines)}  # image -> file line
    test_lines = sorted(line_of[n] for n in OFFICIAL_TEST)
    train_lines = [n for n in range(2, len(lines) + 1) if n not in test_lines]

    def cells(n: int) -> list[str]:
        return lines[n - 1].rstrip("\n").split(",")

    def put(n: int, col: int, value: str) -> None:
        c = cells(n)
        c[col] = value
        lines[n - 1] = ",".join(c) + "\n"

    age_line, sex_line, dup_line, both_line, missing_line, junk_line, small_line = train_lines[:7]
    test_line = test_lines[0]
    put(age_line, 4, "150")
    put(sex_line, 5, "X")
    put(both_line, 3, cells(test_line)[3])  # a train_val image given a test image's patient id
    lines.append(lines[dup_line - 1])  # the same image id again, on a new last line
    dup_again = len(lines)

    names = sorted(p.name for p in (NIH / "images").iterdir())
    images = {n: NIH / "images" / n for n in names}
    del images[cells(missing_line)[0]]  # an entry without a shard member
    images[cells(junk_line)[0]] = b"not a png"  # a member that is no image
    images[cells(small_line)[0]] = _png(512)  # an image of the wrong size

    boxes = (NIH / S.BOXES_FILE).read_text().splitlines(keepends=True)
    b = boxes[1].split(",")
    boxes[1] = ",".join([b[0], b[1], "700", b[3], "400", b[5]])  # x + w = 1100 > 1024
    b = boxes[2].split(",")
    boxes[2] = ",".join([b[0], "Fracture", *b[2:]])

    root = _nih_folder(
        tmp_path_factory.mktemp("broken") / "raw", lines, images, boxes, extra_test=["99999999_000.png"]
    )  # a listed image with no entry
    result = run_checks(medical_checks(root, image_size=1024))
    entries = root / S.ENTRIES_FILE
    faults = {  # (file, column) -> the lines that must be named
        (entries, "age"): [age_line],
        (entries, "sex"): [sex_line],
        (entries, "image"): [dup_line, dup_again],
        (entries, "present"): [missing_line],
        (entries, "decodable"): [junk_line],
        (entries, "width"): [small_line],
        (entries, "height"): [small_line],
        (entries, "patient_in_both_lists"): sorted([both_line, test_line]),
        (root / S.BOXES_FILE, "x_end"): [2],
        (root / S.BOXES_FILE, "finding"): [3],
        (root / S.TEST_LIST, "has_entry"): [17],
    }
    return root, result, faults


def test_broken_copy_fails_with_exactly_the_planted_faults(broken):
    _, result, faults = broken
    assert not result.success
    found = {(Path(f.file), f.column) for f in result.failures}
    assert found == set(faults), result.error_message()


@pytest.mark.parametrize(
    "column",
    [
        "age",
        "sex",
        "image",
        "present",
        "decodable",
        "width",
        "height",
        "patient_in_both_lists",
        "x_end",
        "finding",
        "has_entry",
    ],
)
def test_each_fault_names_file_column_and_line(broken, column):
    _, result, faults = broken
    ((path, lines),) = [(p, ln) for (p, c), ln in faults.items() if c == column]
    (failure,) = [f for f in result.failures if f.column == column]
    assert failure.file == str(path)
    assert sorted(ex["line"] for ex in failure.examples) == lines
    (paragraph,) = [p for p in result.error_message().split("\n\n") if f"column {column!r}" in p]
    assert paragraph.startswith(f"{path}: column {column!r}, line {lines[0]}")


def test_fault_messages_say_what_is_wrong(broken):
    root, result, _ = broken
    message = result.error_message()
    assert "value 150.0: outside the range [0.0, 120.0]" in message
    assert "value 'X': not one of ['M', 'F']" in message
    assert f"not in {root / 'images'}" in message  # the missing member
    assert "cannot be decoded" in message and "images must be 1024 x 1024 pixels" in message
    assert "value 'Fracture'" in message and "value 1100.0" in message
    assert "has images in both train_val_list.txt and test_list.txt" in message


def test_unknown_label_is_a_read_failure_naming_file_and_line(tmp_path):
    _need_nih()
    lines = (NIH / S.ENTRIES_FILE).read_text().splitlines(keepends=True)
    c = lines[5].split(",")
    c[1] = "Atelectasis|Pneumonitis"
    lines[5] = ",".join(c)
    root = tmp_path / "raw"
    root.mkdir()
    (root / S.ENTRIES_FILE).write_text("".join(lines))
    with pytest.raises(ValidationFailed) as err:  # raised before any image is touched
        medical_checks(root, 1024)
    message = str(err.value)
    assert message.startswith(str(root / S.ENTRIES_FILE))
    assert re.search(r"line 6, column 'labels': unknown label 'Pneumonitis'", message)


def test_unreadable_layouts_name_the_file(sample, tmp_path):
    root = tmp_path / "raw"
    shutil.copytree(sample, root)
    shutil.rmtree(root / "images")
    with pytest.raises(ValidationFailed, match=re.escape(str(root / "images"))):
        medical_checks(root, 1024)
    lines = (root / S.ENTRIES_FILE).read_text().splitlines(keepends=True)
    (root / S.ENTRIES_FILE).write_text(lines[0].replace("Patient Age", "Age") + "".join(lines[1:]))
    with pytest.raises(ValidationFailed, match=r"line 1: not NIH's Data_Entry header"):
        medical_checks(root, 1024)
    (root / S.ENTRIES_FILE).unlink()
    with pytest.raises(ValidationFailed, match=re.escape(str(root / S.ENTRIES_FILE))):
        medical_checks(root, 1024)


# ---- the demo ------------------------------------------------------------------------------------


def test_demo_in_shards_passes_at_its_size(tmp_path):
    demo = write_demo(tmp_path / "demo", n_patients=30, size=64, seed=3)
    root = tmp_path / "raw"
    root.mkdir()
    for name in S.NIH_TABLES:
        shutil.copy(demo / name, root / name)
    write_shards(sorted((p.name, p) for p in (demo / "images").iterdir()), root / "images", shard_size=20)
    checks = medical_checks(root, image_size=64, workers=2)
    result = run_checks(checks)
    assert result.success, result.error_message()
    images = next(c.frame for c in checks if c.name.startswith("images"))
    assert set(images["mode"]) == {"L", "RGBA"} and np.all(images["width"] == 64)


# ---- an image whose bytes are not the format its name promises ------------------------------------


def test_jpeg_saved_as_png_is_flagged_with_its_line(tmp_path):
    _need_nih()
    names = sorted(p.name for p in (NIH / "images").iterdir())
    victim = names[3]  # Data_Entry lists the sample's images in name order: line 5
    buf = io.BytesIO()
    with Image.open(NIH / "images" / victim) as img:
        img.convert("L").save(buf, format="JPEG", quality=90)  # decodes fine, same size and mode
    images = {n: NIH / "images" / n for n in names}
    images[victim] = buf.getvalue()
    root = _nih_folder(tmp_path / "raw", images=images)
    checks = medical_checks(root, image_size=1024)
    result = run_checks(checks)
    assert not result.success
    [failure] = result.failures
    assert failure.column == "format_matches_name" and failure.unexpected_count == 1
    frame = next(c.frame for c in checks if c.name.startswith("images"))
    line = int(frame.index[frame["image"] == victim][0])
    assert [ex["line"] for ex in failure.examples] == [line]
    assert frame.loc[line, "error"] == "the bytes are JPEG, but the name promises PNG"
    message = result.error_message()
    assert f"{root / S.ENTRIES_FILE}: column 'format_matches_name', line {line}" in message
    assert "e.g. a JPEG saved as .png" in message
    assert frame["decodable"].all()  # PIL decodes it: only the format check catches it
