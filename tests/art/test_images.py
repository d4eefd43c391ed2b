"""pipelines.art.images on the 384 real DSB 2018 images and on files in every format users bring."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.art.demo import draw_fluorescence, draw_histology
from pipelines.art.images import (
    CLASSES,
    Decoded,
    ImageError,
    hamming,
    is_blank,
    modality_of,
    phash,
    read_image,
    tiles,
)

FOLDERS = {
    "fluorescence_256x256": ("fluorescence", (256, 256), 334),
    "histology_HE_320x256": ("histology", (320, 256), 50),
}


@pytest.fixture(scope="module")
def shared_images(shared_data):
    root = shared_data / "art" / "dsb2018_stage1_train"
    found = {name: sorted((root / name).glob("*.png")) for name in FOLDERS}
    return {name: [(p, read_image(p)) for p in paths] for name, paths in found.items()}


def test_all_shared_images_decode_with_their_folder_label(shared_images):
    assert sum(len(v) for v in shared_images.values()) == 384
    for folder, (label, size, count) in FOLDERS.items():
        decoded = shared_images[folder]
        assert len(decoded) == count
        for path, d in decoded:
            assert isinstance(d, Decoded)
            assert d.size == size and d.pixels.shape == (size[1], size[0], 3) and d.pixels.dtype == np.uint8
            assert d.mode == "RGBA" and d.bit_depth == 8 and not d.alpha_used
            assert d.grey == (label == "fluorescence"), path.name
            assert modality_of(d.pixels) == label, path.name
    assert CLASSES.index("fluorescence") == 0


def test_blank_tiles_on_shared_fluorescence(shared_images):
    flags = [is_blank(t) for _, d in shared_images["fluorescence_256x256"] for _, _, t in tiles(d.pixels, 64)]
    assert len(flags) == 334 * 16
    assert 0.2 < np.mean(flags) < 0.4  # many background-only tiles, most tiles kept (30.8 % measured)


def _save(array, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_sixteen_bit_tiff_is_stretched_by_percentiles(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(1000, 3001, size=(64, 80)).astype(np.uint16)
    (tmp_path / "a.tif").write_bytes(_save(values, "TIFF"))
    d = read_image(tmp_path / "a.tif")
    assert d.mode.startswith("I;16") and d.bit_depth == 16 and d.grey and d.size == (80, 64)
    assert d.pixels.min() == 0 and d.pixels.max() == 255  # not 1000/256 = 3 .. 3000/256 = 11
    assert abs(float(d.pixels.mean()) - 127.5) < 5


def test_multipage_tiff_reads_first_page(tmp_path):
    pages = [Image.fromarray(np.full((32, 32), v, np.uint8)) for v in (10, 200)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    d = read_image(tmp_path / "stack.tif")
    assert d.frames == 2 and d.mode == "L" and (d.pixels == 10).all()


def test_jpeg_l_p_and_translucent_rgba(tmp_path):
    rng = np.random.default_rng(1)
    he = draw_histology(rng, 64, 96)
    (tmp_path / "he.jpg").write_bytes(_save(he, "JPEG", quality=90))
    d = read_image(tmp_path / "he.jpg")
    assert d.mode == "RGB" and d.size == (96, 64) and not d.grey and modality_of(d.pixels) == "histology"

    grey = draw_fluorescence(rng, 64, 64)
    (tmp_path / "g.png").write_bytes(_save(grey, "PNG"))
    d = read_image(tmp_path / "g.png")
    assert d.mode == "L" and d.grey and (d.pixels[..., 1] == grey).all() and modality_of(d.pixels) == "fluorescence"

    Image.fromarray(he).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    d = read_image(tmp_path / "p.png")
    assert d.mode == "P" and d.pixels.shape == (64, 96, 3) and np.abs(d.pixels.astype(int) - he).mean() < 12

    rgba = np.dstack([he, np.full(he.shape[:2], 128, np.uint8)])
    (tmp_path / "a.png").write_bytes(_save(rgba, "PNG"))
    d = read_image(tmp_path / "a.png")
    assert d.mode == "RGBA" and d.alpha_used and (d.pixels == he).all()


def test_broken_files_raise_image_error_naming_the_file(tmp_path):
    good = _save(draw_histology(np.random.default_rng(2), 64, 64), "PNG")
    cases = {
        "truncated.png": (good[: len(good) // 2], "truncated"),
        "empty.png": (b"", "empty"),
        "error.png": (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "HTML"),
        "noise.tif": (bytes(range(256)) * 4, "not a readable image"),
    }
    for name, (data, why) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=why) as e:
            read_image(tmp_path / name)
        assert name in str(e.value) and e.value.__cause__ is None
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")


def test_tiles_cover_the_image_and_blank_keeps_nuclei():
    image = np.zeros((100, 130, 3), np.uint8)
    seen = np.zeros(image.shape[:2], int)
    crops = tiles(image, 32)
    for y, x, t in crops:
        assert t.shape == (32, 32, 3)
        seen[y : y + 32, x : x + 32] += 1
    assert (seen >= 1).all() and len(crops) == 4 * 5
    assert len(tiles(np.zeros((64, 64)), 32, stride=16)) == 9
    with pytest.raises(ValueError, match="smaller than"):
        tiles(image, 128)

    rng = np.random.default_rng(3)
    flat = rng.poisson(6, size=(64, 64)).astype(np.uint8)
    assert is_blank(flat)
    nucleus = flat.copy()
    yy, xx = np.mgrid[:64, :64]
    nucleus[(yy - 30) ** 2 / 64 + (xx - 34) ** 2 / 36 < 1] = 150
    assert not is_blank(nucleus)
    assert not is_blank(draw_histology(rng, 64, 64))


def test_phash_near_duplicates_and_different_images():
    rng = np.random.default_rng(4)
    a, b = draw_fluorescence(rng, 128, 128), draw_fluorescence(rng, 128, 128)
    noisy = np.clip(a + rng.normal(0, 3, a.shape), 0, 255).astype(np.uint8)
    ha, hn, hb = phash(a), phash(noisy), phash(b)
    assert len(ha) == 16 and hamming(ha, ha) == 0
    assert hamming(ha, hn) <= 6
    assert hamming(ha, hb) >= 16
    with pytest.raises(ValueError):
        hamming(ha, ha + "0")
