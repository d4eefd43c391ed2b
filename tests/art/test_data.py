"""The art data rules on demo images: validation names a bad file and refuses a one-modality pool, the split
is by source image with near-duplicates kept together, held-out images are the test split, blank tiles go."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from components.config import load_config
from components.validate import ValidationFailed, run_checks
from pipelines.art import data as art_data
from pipelines.art.demo import draw_fluorescence, draw_histology
from pipelines.art.project import ART

REPO = Path(__file__).resolve().parents[2]


def cfg(*overrides):
    return load_config("art", ART.section, REPO / "params.yaml", "demo", ["art.quality.encoder_epochs=1", *overrides])


def write_folder(root: Path, n_fluorescence: int, n_histology: int, seed: int = 0, side: int = 96) -> Path:
    """A user folder: fluorescence/ and histology/ PNGs (the folder names are the labels)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for folder, n, draw in (
        ("fluorescence", n_fluorescence, draw_fluorescence),
        ("histology", n_histology, draw_histology),
    ):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            Image.fromarray(draw(rng, side, side)).save(root / folder / f"{folder[:4]}{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("raw"), 10, 5)


def test_a_clean_folder_passes_validation(raw):
    result = run_checks(art_data.checks(raw, cfg().project.data))
    assert result.success, result.failures


def test_an_html_page_saved_as_png_fails_validation_naming_it(raw, tmp_path):
    bad = shutil.copytree(raw, tmp_path / "raw")
    (bad / "histology" / "error.png").write_text("<html><body>503 Service Unavailable</body></html>")
    with pytest.raises(ValidationFailed) as err:
        art_data.checks(bad, cfg().project.data)
    failure = err.value.result.failures[0]
    assert failure.file.endswith("error.png") and "error.png" in str(err.value)


def test_a_pool_of_one_modality_is_refused(tmp_path):
    only = write_folder(tmp_path / "raw", 6, 0)
    result = run_checks(art_data.checks(only, cfg().project.data))
    assert not result.success
    assert any(f.expectation == "expect_column_distinct_values_to_contain_set" for f in result.failures)


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory):
    """prepare on the pool plus a near-duplicate of one image and an empty field of view."""
    from PIL import Image

    pool = shutil.copytree(raw, tmp_path_factory.mktemp("pool") / "raw")
    original = np.asarray(Image.open(pool / "fluorescence" / "fluo03.png"))
    noisy = np.clip(original.astype(int) + np.random.default_rng(1).integers(-2, 3, original.shape), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(pool / "fluorescence" / "fluo03_copy.png")
    Image.fromarray(np.full((96, 96, 3), 5, np.uint8)).save(pool / "fluorescence" / "empty_field.png")
    out = tmp_path_factory.mktemp("prepared")
    return out, art_data.prepare(pool, cfg().project.data, cfg().project.quality, 0, out)


def test_the_split_is_by_source_image_and_keeps_near_duplicates_together(prepared):
    out, meta = prepared
    rows = {r["name"]: r for r in json.loads((out / "images.json").read_text())}
    assert rows["fluo03_copy"]["duplicate_of"] == "fluo03" and meta["duplicate_groups"] == 1
    assert rows["fluo03_copy"]["split"] == rows["fluo03"]["split"]
    sources = {s: set(np.load(out / f"{s}.npz")["sources"]) for s in art_data.SPLITS}
    assert not sources["train"] & (sources["val"] | sources["test"]) and not sources["val"] & sources["test"]
    for split in art_data.SPLITS:  # each modality in each split
        labels = set(np.load(out / f"{split}.npz")["labels"].tolist())
        assert labels == {0, 1}, split


def test_held_out_images_are_the_test_split(raw, tmp_path):
    pool = shutil.copytree(raw, tmp_path / "raw")
    write_folder(pool / art_data.HELDOUT, 3, 2, seed=5)
    for folder in ("fluorescence", "histology"):  # distinct names: the held-out set is another sample
        for f in (pool / art_data.HELDOUT / folder).iterdir():
            f.rename(f.with_name("held_" + f.name))
    out = tmp_path / "prepared"
    out.mkdir()
    meta = art_data.prepare(pool, cfg().project.data, cfg().project.quality, 0, out)
    assert meta["test_from"] == "test_dir"
    assert all(s.startswith("held_") for s in np.load(out / "test.npz")["sources"])
    assert not any(s.startswith("held_") for s in np.load(out / "train.npz")["sources"])


def test_background_tiles_are_dropped(prepared):
    out, meta = prepared
    assert "empty_field" in meta["images_without_tiles"]
    tiles = np.concatenate([np.load(out / f"{s}.npz")["images"] for s in art_data.SPLITS])
    assert tiles.reshape(len(tiles), -1).std(axis=1).min() > cfg().project.data.blank_std
