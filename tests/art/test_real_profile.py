"""The real-data profile on the 384 shared DSB2018 images, pulled as the DSB archive from a loopback mirror:
pull (checksummed, safely extracted) -> validate -> prepare -> train run for real with the full profile's data
rules; the networks are shrunk to one short epoch (the full recipe is the benchmark's: benchmarks/art.py)."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile

import pytest

from components import stages
from components.config import load_config
from components.project import Paths
from pipelines.art.project import ART

pytestmark = pytest.mark.slow
SHARED = "art/dsb2018_stage1_train"


def dsb_archive(shared_data, path):
    """The shared images as Kaggle's stage1_train.zip lays them out: <ImageId>/images/<ImageId>.png."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for image in sorted((shared_data / SHARED).glob("*/*.png")):
            zf.write(image, f"{image.stem}/images/{image.name}")
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shared_images_through_a_loopback_dsb_mirror(shared_data, loopback, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    checksum = dsb_archive(shared_data, mirror / "stage1_train.zip")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    cfg = load_config(
        "art",
        ART.section,
        overrides=[
            "profile=full",
            "art.data.source=dsb",
            f"art.data.dsb_url={loopback(mirror)}/stage1_train.zip",
            f"art.data.dsb_checksum={checksum}",
            "art.data.max_tiles_per_image=1",  # one tile per image: one short epoch over every source image
            "art.data.size=32",  # of the images at half size (the full recipe: 64 px tiles at full size)
            "art.data.scale=0.5",
            "art.diffusion.channels=[8,16,16]",
            "art.diffusion.layers_per_block=1",
            "art.gan.g_channels=8",
            "art.gan.d_channels=8",
            "art.train.max_epochs=1",
            "art.quality.encoder_epochs=1",
            "art.quality.val_samples=8",
            "art.quality.val_steps=2",
        ],
    )
    paths = Paths.of("art", tmp_path / "data")
    for stage in ("pull", "validate", "prepare", "train"):
        stages.run(ART, cfg, stage, paths)

    validation = json.loads((paths.validation / "validation.json").read_text())
    assert validation["success"], validation["failures"]
    meta = json.loads((paths.prepared / "meta.json").read_text())
    counts = meta["counts"]
    # the pixel rule labels the archive's images as the shared folders do: 334 fluorescence, 50 histology
    assert sum(c["images"] for c in counts.values()) == 384
    assert sum(c["histology"] for c in counts.values()) == 50  # one tile per image
    assert counts["test"]["images"] == pytest.approx(0.2 * 384, abs=3) and counts["val"]["histology"] >= 1
    images = json.loads((paths.prepared / "images.json").read_text())
    split_of = {}
    for row in images:  # every image in exactly one split
        assert split_of.setdefault(row["name"], row["split"]) == row["split"]
    run = json.loads((paths.model / "run.json").read_text())
    assert run["select_metric"] == "val/fid" and math.isfinite(run["best_score"])
    assert {"model.json", "unet.pt", "generator.pt"} <= {p.name for p in paths.model.iterdir()}
