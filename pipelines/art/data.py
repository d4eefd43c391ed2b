"""From raw image files to the tiles the generators train on: the image table, its checks, prepare, loaders.

Validation decodes every image (images.read_image: a file that does not decode fails validation, naming
it) and checks one row per image with Great Expectations: unique ids, sizes in range, the channel mode
(DSB fluorescence is RGBA with R=G=B and an unused alpha), a modality label from the folder that agrees
with the pixel rule, both modalities present; near-duplicates (pHash within `duplicate_bits`) and the
share of near-blank tiles are reported per image (a few are expected, many fail the check).

Prepare splits by SOURCE IMAGE, never by tile: all tiles of one image, and of every image that is a
near-duplicate of it, go to one split (a duplicate on both sides would be memorisation scored as
quality). Held-out images (data.test_dir) are the test split. Then it tiles each image at the training
size, drops background tiles, and fits the feature encoder on the training tiles only (quality.py):
the space that val/fid, the gate and the benchmark measure in.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from components.steps import SplitLoaders, loader_options
from pipelines.art.images import CLASSES, ImageError, hamming, is_blank, modality_of, phash, read_image, tiles
from pipelines.art.sources import image_files, label_of, source_id

HELDOUT = "heldout"  # raw/heldout/: the images of data.test_dir (never trained or selected on)
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class Image:
    file: Path
    name: str  # source id: what the split groups by
    label: str  # modality class
    pixels: np.ndarray  # H x W x 3 uint8
    row: dict  # the validation table's row


def raw_files(raw: Path) -> tuple[list[Path], list[Path]]:
    files = image_files(raw)
    held = [f for f in files if HELDOUT in f.relative_to(raw).parts[:-1]]
    return [f for f in files if f not in held], held


def read_images(files: list[Path], data, root: Path) -> list[Image]:
    """Decode every file (ImageError names a bad one) and describe it for the checks."""
    images = []
    for file in files:
        decoded = read_image(file)
        label = label_of(file, decoded.pixels, root=root)
        height, width = decoded.pixels.shape[:2]
        blank = [t for _, _, t in tiles(decoded.pixels, data.size)] if min(height, width) >= data.size else []
        images.append(
            Image(
                file,
                source_id(file),
                label,
                decoded.pixels,
                {
                    "name": source_id(file),
                    "file": str(file),
                    "width": width,
                    "height": height,
                    "mode": decoded.mode,
                    "bit_depth": decoded.bit_depth,
                    "alpha_used": bool(decoded.alpha_used),
                    "grey": bool(decoded.grey),
                    "label": label,
                    "label_agrees": modality_of(decoded.pixels) == label,
                    "mean": float(decoded.pixels.mean()),
                    "blank_share": float(np.mean([is_blank(t, min_std=data.blank_std) for t in blank]))
                    if blank
                    else 1.0,
                    "hash": phash(decoded.pixels),
                },
            )
        )
    mark_duplicates(images, data.duplicate_bits)
    return images


def mark_duplicates(images: list[Image], max_bits: int) -> None:
    """row["duplicate_of"]: the first earlier image within `max_bits` pHash bits (None: unique)."""
    for i, image in enumerate(images):
        image.row["duplicate_of"] = next(
            (other.name for other in images[:i] if hamming(other.row["hash"], image.row["hash"]) <= max_bits), None
        )


def image_frame(images: list[Image]):
    import pandas as pd

    return pd.DataFrame([im.row for im in images]).set_index("name", drop=False)


def checks(raw: Path, data) -> list:
    import great_expectations as gx

    from components.validate import Check, read_failure

    pool, held = raw_files(raw)
    if not pool:
        raise read_failure("art images", raw, f"no image ({', '.join(('png', 'jpeg', 'tiff'))}) under the folder")
    result = []
    for name, files in (("pool", pool), (HELDOUT, held)):
        if not files:
            continue
        try:
            images = read_images(files, data, raw)
        except ImageError as exc:
            raise read_failure(f"art {name} images", exc.path, exc.reason) from None
        expectations = [
            gx.expectations.ExpectColumnValuesToBeUnique(column="name"),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="width", min_value=data.min_side, max_value=data.max_side
            ),
            gx.expectations.ExpectColumnValuesToBeBetween(
                column="height", min_value=data.min_side, max_value=data.max_side
            ),
            gx.expectations.ExpectColumnValuesToBeInSet(
                column="mode", value_set=["RGB", "RGBA", "L", "P", "I;16", "I;16B", "I"]
            ),
            gx.expectations.ExpectColumnValuesToBeInSet(column="alpha_used", value_set=[False]),
            gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=list(CLASSES)),
            # a folder label the pixels contradict is a mislabelled folder, but a few odd images are real
            gx.expectations.ExpectColumnValuesToBeInSet(column="label_agrees", value_set=[True], mostly=0.9),
            gx.expectations.ExpectColumnValuesToBeNull(column="duplicate_of", mostly=0.9),
            gx.expectations.ExpectColumnValuesToBeBetween(column="blank_share", max_value=0.9, mostly=0.8),
        ]
        if name == "pool":  # the model is conditioned on both modalities: each needs training images
            expectations.append(
                gx.expectations.ExpectColumnDistinctValuesToContainSet(column="label", value_set=list(CLASSES))
            )
        suite = gx.ExpectationSuite(name=f"art-{name}-images", expectations=expectations)
        result.append(Check(f"art {name} images", raw, image_frame(images), suite))
    return result


# ---- prepare ----------------------------------------------------------------------------------


def duplicate_groups(images: list[Image]) -> dict[str, str]:
    """Image name -> the name of its near-duplicate group's first member (union of duplicate_of links)."""
    root = {im.name: im.name for im in images}

    def find(name: str) -> str:
        while root[name] != name:
            name = root[name]
        return name

    for im in images:
        if im.row["duplicate_of"]:
            root[find(im.name)] = find(im.row["duplicate_of"])
    return {name: find(name) for name in root}


def split_groups(images: list[Image], fractions: dict[str, float], seed: int) -> dict[str, str]:
    """Image name -> split, whole duplicate groups per split, stratified by modality (each class in each split)."""
    groups = duplicate_groups(images)
    label_of_group = {groups[im.name]: im.label for im in images}
    rng = np.random.default_rng(seed)
    split_of_group = {}
    for label in CLASSES:
        members = sorted(g for g, lab in label_of_group.items() if lab == label)
        rng.shuffle(members)
        n = len(members)
        counts = {s: max(1, int(round(f * n))) if n >= 3 else 0 for s, f in fractions.items()}
        k = 0
        for split, count in counts.items():
            for g in members[k : k + count]:
                split_of_group[g] = split
            k += count
        for g in members[k:]:
            split_of_group[g] = "train"
    return {im.name: split_of_group[groups[im.name]] for im in images}


def tile_image(image: Image, data, rng: np.random.Generator) -> list[np.ndarray]:
    """Non-blank tiles of `image` at the training size (after the scale), at most max_tiles_per_image."""
    from PIL import Image as PILImage

    pixels = image.pixels
    if data.scale != 1.0:
        h, w = pixels.shape[:2]
        pixels = np.asarray(
            PILImage.fromarray(pixels).resize((int(w * data.scale), int(h * data.scale)), PILImage.LANCZOS)
        )
    kept = [t for _, _, t in tiles(pixels, data.size) if not is_blank(t, min_std=data.blank_std)]
    if len(kept) > data.max_tiles_per_image:
        kept = [kept[i] for i in sorted(rng.choice(len(kept), data.max_tiles_per_image, replace=False))]
    return kept


def prepare(raw: Path, data, quality, seed: int, out: Path) -> dict:
    from pipelines.art import quality as q

    pool_files, held_files = raw_files(raw)
    pool = read_images(pool_files, data, raw)
    held = read_images(held_files, data, raw) if held_files else []
    fractions = {"val": data.val_fraction} if held else {"val": data.val_fraction, "test": data.test_fraction}
    split_of = split_groups(pool, fractions, seed)
    split_of.update({im.name: "test" for im in held})  # an image in both counts as test only
    by_name = {im.name: im for im in pool} | {im.name: im for im in held}
    rng = np.random.default_rng(seed)
    arrays = {s: ([], [], []) for s in SPLITS}
    no_tile = []
    for name, image in by_name.items():
        kept = tile_image(image, data, rng)
        if not kept:
            no_tile.append(name)
        tiles_, labels, sources = arrays[split_of[name]]
        tiles_ += kept
        labels += [CLASSES.index(image.label)] * len(kept)
        sources += [name] * len(kept)
    counts = {}
    for split, (tiles_, labels, sources) in arrays.items():
        if not tiles_:
            raise ValueError(f"art prepare: the {split} split has no tile (too few images or all tiles blank)")
        images = np.stack(tiles_).transpose(0, 3, 1, 2)  # N x 3 x S x S, uint8
        np.savez_compressed(out / f"{split}.npz", images=images, labels=np.asarray(labels), sources=np.asarray(sources))
        counts[split] = {c: int((np.asarray(labels) == k).sum()) for k, c in enumerate(CLASSES)}
        counts[split]["images"] = len(set(sources))
    overlap = set(arrays["train"][2]) & (set(arrays["val"][2]) | set(arrays["test"][2]))
    assert not overlap, f"source images on both sides of the split: {sorted(overlap)[:5]}"

    import torch

    start = time.perf_counter()
    train = np.load(out / "train.npz")
    encoder, report = q.train_encoder(
        to_float(train["images"]), torch.as_tensor(train["labels"]), size=data.size, epochs=quality.encoder_epochs,
        seed=seed,
    )  # fmt: skip
    torch.save(encoder.state_dict(), out / "encoder.pt")
    encoder_config = {"size": data.size, "n_classes": len(CLASSES), "dim": encoder.num_features}
    val_labels = np.load(out / "val.npz")["labels"]
    meta = {
        "size": data.size,
        "classes": list(CLASSES),
        "counts": counts,
        "class_shares": [float((val_labels == k).mean()) for k in range(len(CLASSES))],
        "encoder": {**encoder_config, **report, "seconds": round(time.perf_counter() - start, 2)},
        "images_without_tiles": no_tile,
        "duplicate_groups": sum(1 for im in pool + held if im.row["duplicate_of"]),
        "test_from": "test_dir" if held else "source-image split",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    (out / "images.json").write_text(
        json.dumps([{**im.row, "split": split_of[im.name]} for im in by_name.values()], indent=1) + "\n"
    )
    return meta


def to_float(images: np.ndarray):
    """uint8 N x 3 x S x S -> float32 tensor in [-1, 1] (what every network here reads)."""
    import torch

    return torch.from_numpy(images).float().div(127.5).sub(1.0)


def load_encoder(prepared: Path):
    import torch

    from pipelines.art.quality import FeatureEncoder

    meta = json.loads((Path(prepared) / "meta.json").read_text())["encoder"]
    encoder = FeatureEncoder(size=meta["size"], n_classes=meta["n_classes"], dim=meta["dim"])
    encoder.load_state_dict(torch.load(Path(prepared) / "encoder.pt", map_location="cpu", weights_only=True))
    return encoder.eval()


class Tiles:
    """A split's tiles as a map-style dataset of (image in [-1, 1], label); training tiles flipped and rotated
    at random (microscopy has no up or left: the 8 symmetries of the square are free data) unless
    `data.symmetries` is off (ArtData passes augment=False then: the augmentation ablation)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool, seed: int):
        self.images, self.labels, self.augment = to_float(images), labels.astype(np.int64), augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        import torch

        x = self.images[i]
        if self.augment:
            x = torch.rot90(x, int(self.rng.integers(4)), dims=(1, 2))
            if self.rng.random() < 0.5:
                x = x.flip(2)
        return x, int(self.labels[i])


class ArtData(SplitLoaders):
    def __init__(self, prepared: Path, batch_size: int, seed: int, num_workers: int = 0, symmetries: bool = True):
        self.prepared, self.batch_size, self.seed, self.num_workers = Path(prepared), batch_size, seed, num_workers
        self.symmetries = symmetries  # data.symmetries: training tiles randomly rotated / flipped
        self.meta = json.loads((self.prepared / "meta.json").read_text())
        self.splits = {s: np.load(self.prepared / f"{s}.npz") for s in SPLITS}

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        return self.splits[split]["images"], self.splits[split]["labels"]

    def loader(self, split: str, train: bool):
        from torch.utils.data import DataLoader

        images, labels = self.arrays(split)
        dataset = Tiles(images, labels, augment=train and self.symmetries, seed=self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,  # equal batches for the GAN's statistics
            **loader_options(self.num_workers),
        )
