"""Splits, MONAI transforms and the LightningDataModule of the chest X-ray project.

- `prepare` turns a validated NIH folder into `entries.parquet` (one row per image: split, patient,
  metadata, the 14 labels, the non-image `text` input) and `pos_weight.json` (from TRAIN rows
  only). test is NIH's official list; val is a seeded fraction of the other *patients*: the same
  person's follow-ups never straddle splits.
- images are read by name from shards (`shards.open_images`) and go through MONAI dictionary
  transforms: decode -> [0, 1] -> resize (deterministic, cacheable), then, for training only,
  light random affine / contrast / noise.
- `MedicalDataModule` yields dict batches: image float32 [B, 1, S, S], tokens int64 [B, max_len]
  (0 = padding), labels float32 [B, 14] (NaN = masked), meta (list of dicts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from monai.data import CacheDataset, DataLoader, Dataset, MetaTensor
from monai.transforms import (
    Compose,
    MapTransform,
    RandAdjustContrastd,
    RandAffined,
    RandGaussianNoised,
    Resized,
    ScaleIntensityd,
    ScaleIntensityRanged,
)

from components.io import atomic_write
from components.steps import SplitLoaders, loader_options
from pipelines.medical.sources import nih as S
from pipelines.medical.sources.shards import FolderImages, ShardReader, open_images
from pipelines.medical.text import metadata_text

__all__ = [
    "CACHE_MODES",
    "DecodeImaged",
    "MedicalDataModule",
    "POS_WEIGHT_CAP",
    "TEXT_MODES",
    "collate",
    "eval_transforms",
    "image_statistics",
    "prepare",
    "tokenizer_encoder",
    "train_transforms",
]

log = logging.getLogger("scifolio.medical.data")

ENTRIES_PARQUET = "entries.parquet"
POS_WEIGHT_JSON = "pos_weight.json"
POS_WEIGHT_CAP = 100.0  # n_neg / n_pos of a finding with (almost) no training positives is capped
TEXT_MODES = ("metadata", "none")  # NIH has no report text: its non-image input is its metadata
CACHE_MODES = ("none", "memory")
META_KEYS = ("image", "patient_id", "age", "sex", "view")


# ---- prepare ----------------------------------------------------------------------------------


def pos_weights(labels: pd.DataFrame, cap: float = POS_WEIGHT_CAP) -> dict[str, float]:
    """Per finding n_neg / n_pos over the given rows (NaN labels ignored), capped at `cap`;
    a finding without positives gets `cap`."""
    out = {}
    for f in S.FINDINGS:
        n_pos, n_neg = int((labels[f] == 1).sum()), int((labels[f] == 0).sum())
        out[f] = float(min(n_neg / n_pos, cap)) if n_pos else float(cap)
    return out


def prepare(validated: Path, out_dir: Path, val_fraction: float, seed: int, text_mode: str = "metadata") -> dict:
    """Split a validated NIH folder by patient and write out_dir/entries.parquet + pos_weight.json.

    entries.parquet: image, patient_id, split, age, sex, view, the 14 FINDINGS (float32; NaN would
    mean masked), text. Returns rows / patients / positives per finding, per split.
    """
    if text_mode not in TEXT_MODES:
        raise ValueError(f"text_mode {text_mode!r} is not one of {TEXT_MODES}")
    validated, out_dir = Path(validated), Path(out_dir)
    entries = S.read_nih_entries(validated / S.ENTRIES_FILE)
    test = S.read_split_list(validated / S.TEST_LIST)
    train_val = S.read_split_list(validated / S.TRAIN_VAL_LIST)
    if overlap := test & train_val:
        raise ValueError(f"{validated}: {len(overlap)} image(s) in both split lists, e.g. {sorted(overlap)[:5]}")
    if unlisted := set(entries["image"]) - test - train_val:
        raise ValueError(f"{validated}: {len(unlisted)} image(s) in neither split list, e.g. {sorted(unlisted)[:5]}")
    split = S.patient_split(entries, test, val_fraction, seed)
    S.assert_no_patient_leak(entries, split)

    table = pd.DataFrame(
        {
            "image": entries["image"],
            "patient_id": entries["patient_id"].astype("int64"),
            "split": split.astype(str),
            "age": entries["age"].astype("int64"),
            "sex": entries["sex"],
            "view": entries["view"],
        }
    )
    for f in S.FINDINGS:
        table[f] = entries[f].astype(np.float32)
    if text_mode == "metadata":
        table["text"] = [metadata_text(a, s, v) for a, s, v in zip(table["age"], table["sex"], table["view"])]
    else:
        table["text"] = ""
    table = table.reset_index(drop=True)

    weights = pos_weights(table[table["split"] == "train"])
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / ENTRIES_PARQUET, lambda p: table.to_parquet(p, index=False))
    atomic_write(
        out_dir / POS_WEIGHT_JSON, lambda p: p.write_text(json.dumps(weights, indent=2) + "\n", encoding="utf-8")
    )

    parts = {s: table[table["split"] == s] for s in S.SPLITS}
    summary = {
        "rows": {s: len(rows) for s, rows in parts.items()},
        "patients": {s: int(rows["patient_id"].nunique()) for s, rows in parts.items()},
        "positives": {s: {f: int((rows[f] == 1).sum()) for f in S.FINDINGS} for s, rows in parts.items()},
        "val_fraction": val_fraction,
        "seed": seed,
        "text_mode": text_mode,
    }
    log.info("prepared %s: rows %s, patients %s", out_dir, summary["rows"], summary["patients"])
    return summary


# ---- transforms -------------------------------------------------------------------------------


class DecodeImaged(MapTransform):
    """Image name -> float32 [1, H, W] array (uint8 gray values 0..255), read from `reader`.

    `reader` is a ShardReader / FolderImages or a folder path (opened with `open_images`). RGBA,
    RGB and 16-bit images collapse to one channel (`sources.decode_image`). Bytes are decoded as
    they are and arrays passed through, so the same pipeline serves uploaded images.
    """

    def __init__(
        self,
        keys: Sequence[str] | str = ("image",),
        reader: ShardReader | FolderImages | str | Path | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.reader = open_images(reader) if isinstance(reader, (str, Path)) else reader

    def _decode(self, value: Any) -> np.ndarray:
        if isinstance(value, str):
            if self.reader is None:
                raise ValueError(f"DecodeImaged: image name {value!r} given but no reader")
            pixels = S.decode_image(self.reader.read(value), value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            pixels = S.decode_image(bytes(value), "uploaded image")
        else:
            pixels = np.asarray(value)
        if pixels.ndim == 2:
            pixels = pixels[None]
        return pixels.astype(np.float32)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self._decode(d[key])
        return d


def eval_transforms(reader, size: int) -> Compose:
    """The deterministic part: what val/test/serving see, and what CacheDataset caches."""
    return Compose(
        [
            DecodeImaged(keys=["image"], reader=reader),  # name -> [1, H, W] float32, gray 0..255
            ScaleIntensityd(keys=["image"], minv=0.0, maxv=1.0),  # per-image min-max: exposure varies
            Resized(
                keys=["image"],
                spatial_size=(size, size),  # NIH is square: no crop, no padding
                mode="bilinear",  # smooth, no ringing (bicubic overshoots at rib edges)
                anti_aliasing=True,
            ),  # Gaussian pre-blur when shrinking 1024 -> 224: no aliasing
        ]
    )


def train_transforms(reader, size: int) -> Compose:
    """eval_transforms + light random augmentation (no flips: they move the heart to the right)."""
    return Compose(
        [
            *eval_transforms(reader, size).transforms,
            RandAffined(
                keys=["image"],
                prob=0.5,  # half the images keep their exact geometry
                rotate_range=(np.deg2rad(7.0),),  # +-7 deg: how the patient stood
                scale_range=(0.1, 0.1),  # +-10 %: patient size, source distance
                mode="bilinear",
                padding_mode="border",
            ),  # edge values, no artificial black wedges at corners
            RandAdjustContrastd(keys=["image"], prob=0.3, gamma=(0.8, 1.25)),  # exposure/processing
            RandGaussianNoised(keys=["image"], prob=0.3, mean=0.0, std=0.02),  # detector noise, faint
            ScaleIntensityRanged(
                keys=["image"], a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True
            ),  # back into [0, 1] after the noise
        ]
    )


# ---- batches ----------------------------------------------------------------------------------


def _plain(x: Any) -> torch.Tensor:
    t = x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)
    return t


def collate(items: list[dict]) -> dict:
    """Items -> {"image": [B,1,S,S] float32, "tokens": [B,L] int64, "labels": [B,14] float32,
    "meta": [dict, ...]}; MONAI's MetaTensor is dropped to a plain tensor."""
    return {
        "image": torch.stack([_plain(i["image"]) for i in items]).float(),
        "tokens": torch.stack([_plain(i["tokens"]) for i in items]).long(),
        "labels": torch.stack([_plain(i["labels"]) for i in items]).float(),
        "meta": [dict(i["meta"]) for i in items],
    }


def tokenizer_encoder(path: Path, max_len: int) -> Callable[[Sequence[str]], torch.Tensor]:
    """encode(texts) -> int64 [N, max_len] with a HF `tokenizers` file: [CLS] + the text's ids,
    truncated to max_len, 0-padded. The file's own special tokens, padding and truncation are not
    used, so the contract holds whatever the tokenizer was saved with; its [PAD] must be id 0."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    cls = tok.token_to_id("[CLS]")
    if cls is None:
        raise ValueError(f"{path}: the tokenizer has no [CLS] token")
    pad = tok.token_to_id("[PAD]")
    if pad not in (None, 0):
        raise ValueError(f"{path}: [PAD] has id {pad}; batches pad with 0")

    def encode(texts: Sequence[str]) -> torch.Tensor:
        out = torch.zeros((len(texts), max_len), dtype=torch.long)
        for i, enc in enumerate(tok.encode_batch(list(texts), add_special_tokens=False)):
            ids = [cls, *enc.ids][:max_len]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    return encode


def image_statistics(array: Any) -> dict:
    """Mean intensity, std (contrast), height and width of one image ([H,W] or [C,H,W], numpy or
    torch); the monitoring stage compares these between training and incoming images."""
    a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if a.ndim not in (2, 3):
        raise ValueError(f"image_statistics: expected [H, W] or [C, H, W], got shape {a.shape}")
    a = a.astype(np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "height": int(a.shape[-2]), "width": int(a.shape[-1])}


# ---- the LightningDataModule ------------------------------------------------------------------


class MedicalDataModule(SplitLoaders, pl.LightningDataModule):
    """Datasets per split from prepared/entries.parquet, images from the shard folder `images`.

    cache="memory": the deterministic part (decode, scale, resize) of every image of a split is
    computed once into RAM (monai CacheDataset: size*size*4 bytes per image), random augmentation
    still runs per epoch after it. Train: shuffled, last partial batch dropped when there is at
    least one full batch (a batch of one breaks BatchNorm); val/test: in order, nothing dropped.
    Tokens: `encode(texts)`, or a `tokenizers` file at tokenizer_path, or all zeros.
    Augmentation randomness follows torch's seed (monai's DataLoader seeds the transforms).
    With num_workers=0 the transforms run under torch's intra-op threads: on a busy 2-core box one
    thread (torch.set_num_threads(1)) ran a 64-px augmented epoch ~10x faster (tiny affine matmuls).
    """

    def __init__(
        self,
        prepared: Path,
        images: Path,
        size: int,
        batch_size: int,
        num_workers: int = 0,
        cache: str = "none",
        tokenizer_path: Path | None = None,
        max_len: int = 16,
        *,
        encode: Callable[[Sequence[str]], torch.Tensor] | None = None,
        augment: bool = True,
    ):
        super().__init__()
        if cache not in CACHE_MODES:
            raise ValueError(f"cache {cache!r} is not one of {CACHE_MODES}")
        if encode is not None and tokenizer_path is not None:
            raise ValueError("give either tokenizer_path or encode, not both")
        self.prepared, self.images = Path(prepared), Path(images)
        self.size, self.batch_size, self.num_workers = int(size), int(batch_size), int(num_workers)
        self.cache, self.max_len, self.augment = cache, int(max_len), augment
        self.tokenizer_path = None if tokenizer_path is None else Path(tokenizer_path)
        self._encode = encode
        self.entries: pd.DataFrame = pd.read_parquet(self.prepared / ENTRIES_PARQUET)
        weights = json.loads((self.prepared / POS_WEIGHT_JSON).read_text(encoding="utf-8"))
        self.findings: tuple[str, ...] = S.FINDINGS
        self.n_findings = len(self.findings)
        self.pos_weight: list[float] = [float(weights[f]) for f in self.findings]
        self.reader = open_images(self.images)
        self.datasets: dict[str, Dataset] = {}

    # tokens -----------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """int64 [N, max_len], 0 = padding."""
        if self._encode is None and self.tokenizer_path is not None:
            self._encode = tokenizer_encoder(self.tokenizer_path, self.max_len)
        if self._encode is None:
            return torch.zeros((len(texts), self.max_len), dtype=torch.long)
        ids = torch.as_tensor(self._encode(list(texts)), dtype=torch.long)
        if ids.ndim != 2 or ids.shape[0] != len(texts):
            raise ValueError(f"encode returned shape {tuple(ids.shape)} for {len(texts)} texts")
        if ids.shape[1] >= self.max_len:
            return ids[:, : self.max_len].contiguous()
        return torch.nn.functional.pad(ids, (0, self.max_len - ids.shape[1]))

    # datasets ---------------------------------------------------------------------------------

    def _items(self, rows: pd.DataFrame) -> list[dict]:
        tokens = self.encode(rows["text"].tolist()).numpy()
        labels = rows[list(self.findings)].to_numpy(np.float32)
        meta = rows[list(META_KEYS)].to_dict("records")
        for m in meta:  # plain Python values: they travel through workers and into JSON
            m["patient_id"], m["age"] = int(m["patient_id"]), int(m["age"])
        return [{"image": m["image"], "tokens": tokens[i], "labels": labels[i], "meta": m} for i, m in enumerate(meta)]

    def dataset(self, split: str) -> Dataset:
        if split not in S.SPLITS:
            raise ValueError(f"split {split!r} is not one of {S.SPLITS}")
        if split not in self.datasets:
            items = self._items(self.entries[self.entries["split"] == split])
            augment = self.augment and split == "train"
            transform = (train_transforms if augment else eval_transforms)(self.reader, self.size)
            if self.cache == "memory":
                self.datasets[split] = CacheDataset(
                    items, transform, progress=False, num_workers=max(1, self.num_workers)
                )
            else:
                self.datasets[split] = Dataset(items, transform)
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}.get(
            stage, S.SPLITS
        )
        for split in wanted:
            self.dataset(split)

    def loader(self, split: str, train: bool) -> DataLoader:
        ds = self.dataset(split)
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(ds) > self.batch_size,  # a tiny last batch is a noisy step; val/test keep all
            collate_fn=collate,
            **loader_options(self.num_workers),
        )
