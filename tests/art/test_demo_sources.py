"""pipelines.art.demo writes real DSB-layout archives and user formats; pipelines.art.sources pulls and lists them."""

from __future__ import annotations

import hashlib
import re
import time
import zipfile

import pytest

from components.fetch import FetchError
from pipelines.art.demo import write_demo
from pipelines.art.images import modality_of, read_image
from pipelines.art.sources import DSB_URL, image_files, label_of, pull_dsb, source_id

HEX_ID = re.compile(r"[0-9a-f]{64}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("art_demo")
    start = time.perf_counter()
    files = write_demo(out, n_fluorescence=4, n_histology=2, seed=7)
    return out, files, time.perf_counter() - start


def test_demo_layout_and_formats(demo):
    out, files, seconds = demo
    assert seconds < 3
    archive = files[0]
    assert archive == out / "stage1_train.zip" and all(f.is_file() for f in files)
    names = zipfile.ZipFile(archive).namelist()
    images = [n for n in names if "/images/" in n]
    masks = [n for n in names if "/masks/" in n]
    assert len(images) == 6 and len(masks) == 6
    for name in images:
        image_id, folder, file = name.split("/")
        assert HEX_ID.fullmatch(image_id) and file == f"{image_id}.png"
    assert {f.suffix for f in files[1:]} == {".tif", ".jpg"}
    for f in files[1:]:
        d = read_image(f)
        assert modality_of(d.pixels) == ("fluorescence" if f.suffix == ".tif" else "histology")
        assert d.bit_depth == (16 if f.suffix == ".tif" else 8)


def test_demo_is_deterministic(demo, tmp_path):
    out, files, _ = demo
    again = write_demo(tmp_path, n_fluorescence=4, n_histology=2, seed=7)
    for a, b in zip(files, again, strict=True):
        assert a.name == b.name and a.read_bytes() == b.read_bytes()
    other = write_demo(tmp_path / "other", n_fluorescence=4, n_histology=2, seed=8)
    assert other[0].read_bytes() != files[0].read_bytes()


def test_demo_size_override(tmp_path):
    files = write_demo(tmp_path, n_fluorescence=1, n_histology=1, seed=0, size=(128, 96))
    for f in files[1:]:
        assert read_image(f).size == (128, 96)
    square = write_demo(tmp_path / "sq", n_fluorescence=1, n_histology=1, seed=0, side=64)
    assert {read_image(f).size for f in square[1:]} == {(64, 64)}
    with pytest.raises(ValueError):
        write_demo(tmp_path, n_fluorescence=0, n_histology=0, seed=0)


def test_pull_dsb_from_loopback_reads_images_and_skips_masks(demo, loopback, tmp_path):
    out, files, _ = demo
    assert DSB_URL.startswith("https://") and DSB_URL.endswith("/stage1_train.zip")
    digest = "sha256:" + hashlib.sha256(files[0].read_bytes()).hexdigest()
    root = pull_dsb(tmp_path / "raw", loopback(out), checksum=digest)  # a mirror base URL
    assert root == tmp_path / "raw" / "stage1_train"
    found = image_files(root)
    assert len(found) == 6 and all(p.parent.name == "images" for p in found)
    (root / ".hidden.png").write_bytes(b"x")
    assert image_files(root) == found
    labels = []
    for path in found:
        d = read_image(path)
        assert d.mode == "RGBA"
        assert d.size == ((256, 256) if d.grey else (320, 256))
        assert source_id(path) == path.parent.parent.name
        labels.append(label_of(path, d.pixels))
        assert labels[-1] == ("fluorescence" if d.grey else "histology")
    assert sorted(labels) == ["fluorescence"] * 4 + ["histology"] * 2

    again = pull_dsb(tmp_path / "raw2", loopback(out) + "/stage1_train.zip")  # the archive's own URL
    assert len(image_files(again)) == 6
    local = pull_dsb(tmp_path / "raw3", str(out))  # a local mirror folder
    assert len(image_files(local)) == 6


def test_label_of_folder_names(tmp_path, demo):
    out, files, _ = demo
    d = read_image(files[-1])  # histology pixels
    for folder, label in [("fluorescence_256x256", "fluorescence"), ("histology_HE_320x256", "histology"),
                          ("Fluorescence", "fluorescence"), ("mine", "histology")]:  # fmt: skip
        assert label_of(tmp_path / folder / "x.png", d.pixels) == label
    assert label_of(tmp_path / "fluorescence" / "abc" / "images" / "abc.png", d.pixels) == "fluorescence"
    user = image_files(out / "user")
    assert [p.suffix for p in user] == [".jpg", ".tif", ".tif"]
    assert [source_id(p) for p in user] == ["biopsy_00", "nuclei_00", "nuclei_01"]
    with pytest.raises(FileNotFoundError):
        image_files(tmp_path / "nowhere")


def test_pull_dsb_checksum_mismatch(demo, loopback, tmp_path):
    out, _, _ = demo
    with pytest.raises(FetchError, match="checksum mismatch"):
        pull_dsb(tmp_path / "raw", loopback(out), checksum="sha256:" + "0" * 64)
    assert not (tmp_path / "raw" / "stage1_train.zip").exists() and not (tmp_path / "raw" / "stage1_train").exists()


def test_pull_dsb_refuses_traversal(loopback, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "stage1_train.zip", "w") as zf:
        zf.writestr("abc/images/abc.png", b"png")
        zf.writestr("../escape.png", b"evil")
    with pytest.raises(FetchError):
        pull_dsb(tmp_path / "raw", loopback(mirror))
    assert not (tmp_path / "escape.png").exists() and not (tmp_path / "raw" / "stage1_train").exists()
