"""pipelines.medical.data: prepare (patient-wise splits, pos_weight, text), the MONAI transforms and
the LightningDataModule, on a small 64-px demo in shards and on the real NIH sample's RGBA images.

Everything is written into pytest's tmp_path; the NIH sample in ../shared is only read.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from pipelines.medical.data import (
    DecodeImaged,
    MedicalDataModule,
    collate,
    eval_transforms,
    image_statistics,
    prepare,
)
from pipelines.medical.sources import nih as S
from pipelines.medical.sources.demo import write_demo
from pipelines.medical.sources.shards import open_images, write_shards
from pipelines.medical.text import metadata_text
from tests.medical.nih_sample import NIH, OFFICIAL_TEST, RGBA

COLUMNS = ["image", "patient_id", "split", "age", "sex", "view", *S.FINDINGS, "text"]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny tensors: a second intra-op thread only adds contention (the CI box has 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """A 60-patient, 64-px demo in the pipeline's layout: NIH's tables + images/ as shards."""
    base = tmp_path_factory.mktemp("demo")
    demo = write_demo(base / "demo", n_patients=60, size=64, seed=0)
    raw = base / "raw"
    raw.mkdir()
    for name in S.NIH_TABLES:
        shutil.copy(demo / name, raw / name)
    write_shards(sorted((p.name, p) for p in (demo / "images").iterdir()), raw / "images", shard_size=50)
    return raw


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared")
    return out, prepare(raw, out, val_fraction=0.25, seed=0, text_mode="metadata")


def _dm(raw: Path, prepared: Path, **kw) -> MedicalDataModule:
    kw = {"size": 64, "batch_size": 8, **kw}
    return MedicalDataModule(prepared, raw / "images", **kw)


# ---- prepare ------------------------------------------------------------------------------------


def test_prepare_splits_by_patient(raw, prepared):
    out, summary = prepared
    table = pd.read_parquet(out / "entries.parquet")
    assert list(table.columns) == COLUMNS
    assert table[list(S.FINDINGS)].dtypes.eq(np.float32).all()
    assert (table.groupby("patient_id")["split"].nunique() == 1).all()  # no patient in two splits
    S.assert_no_patient_leak(table, table["split"])
    assert set(table.loc[table["split"] == "test", "image"]) == S.read_split_list(raw / S.TEST_LIST)
    # val is a quarter of the non-test *patients*, with all their images
    pool = table.loc[table["split"] != "test", "patient_id"].unique()
    val = table.loc[table["split"] == "val", "patient_id"].unique()
    assert len(val) == round(0.25 * len(pool))
    entries = S.read_nih_entries(raw / S.ENTRIES_FILE)
    for pid in val:
        assert set(table.loc[table["patient_id"] == pid, "image"]) == set(
            entries.loc[entries["patient_id"] == pid, "image"]
        )
    for s in S.SPLITS:
        rows = table[table["split"] == s]
        assert summary["rows"][s] == len(rows) > 0
        assert summary["patients"][s] == rows["patient_id"].nunique()
        assert summary["positives"][s] == {f: int(rows[f].sum()) for f in S.FINDINGS}
    assert sum(summary["patients"].values()) == 60
    # the same seed gives the same split, another seed another one
    again = prepare(raw, out.parent / "again", val_fraction=0.25, seed=0, text_mode="metadata")
    other = prepare(raw, out.parent / "other", val_fraction=0.25, seed=1, text_mode="metadata")
    assert again == summary and other["positives"] != summary["positives"]


def test_pos_weight_from_train_rows_only(prepared):
    out, _ = prepared
    table = pd.read_parquet(out / "entries.parquet")
    weights = json.loads((out / "pos_weight.json").read_text())
    assert list(weights) == list(S.FINDINGS)
    train = table[table["split"] == "train"]
    for f in S.FINDINGS:
        n_pos, n_neg = int((train[f] == 1).sum()), int((train[f] == 0).sum())
        assert weights[f] == pytest.approx(min(n_neg / n_pos, 100.0) if n_pos else 100.0), f
    everything = {f: (table[f] == 0).sum() / max((table[f] == 1).sum(), 1) for f in S.FINDINGS}
    assert any(weights[f] != pytest.approx(min(everything[f], 100.0)) for f in S.FINDINGS)


def test_text_column(raw, prepared, tmp_path):
    assert metadata_text(55, "F", "PA") == "age_55 sex_f view_pa"
    assert metadata_text(59, "M", "AP") == "age_55 sex_m view_ap"
    assert metadata_text(4, "F", "AP") == "age_0 sex_f view_ap"
    assert metadata_text(None, "", float("nan")) == "age_unknown sex_unknown view_unknown"
    table = pd.read_parquet(prepared[0] / "entries.parquet")
    assert list(table["text"]) == [metadata_text(a, s, v) for a, s, v in zip(table["age"], table["sex"], table["view"])]
    prepare(raw, tmp_path / "none", 0.25, 0, text_mode="none")
    assert set(pd.read_parquet(tmp_path / "none" / "entries.parquet")["text"]) == {""}
    with pytest.raises(ValueError, match="text_mode"):
        prepare(raw, tmp_path / "x", 0.25, 0, text_mode="report")


def test_prepare_refuses_images_outside_the_lists(raw, tmp_path):
    bad = tmp_path / "raw"
    bad.mkdir()
    for name in S.NIH_TABLES:
        shutil.copy(raw / name, bad / name)
    lines = (bad / S.TEST_LIST).read_text().splitlines(keepends=True)
    (bad / S.TEST_LIST).write_text("".join(lines[1:]))
    with pytest.raises(ValueError, match="in neither split list"):
        prepare(bad, tmp_path / "out", 0.25, 0)


# ---- the datamodule -----------------------------------------------------------------------------


def test_batches_have_the_documented_shapes(raw, prepared):
    out, _ = prepared
    dm = _dm(raw, out)
    assert dm.n_findings == 14 and len(dm.pos_weight) == 14
    assert isinstance(dm.entries, pd.DataFrame) and list(dm.entries.columns) == COLUMNS
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "tokens", "labels", "meta"}
    assert batch["image"].shape == (8, 1, 64, 64) and batch["image"].dtype == torch.float32
    assert type(batch["image"]) is torch.Tensor  # MONAI's MetaTensor does not leak out
    assert batch["tokens"].shape == (8, 16) and batch["tokens"].dtype == torch.int64
    assert not batch["tokens"].any()  # no tokenizer: all padding
    assert batch["labels"].shape == (8, 14) and batch["labels"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1
    assert len(batch["meta"]) == 8
    rows = dm.entries.set_index("image")
    for m, labels in zip(batch["meta"], batch["labels"]):
        assert set(m) == {"image", "patient_id", "age", "sex", "view"}
        row = rows.loc[m["image"]]
        assert row["split"] == "train" and m["patient_id"] == row["patient_id"]
        assert (m["age"], m["sex"], m["view"]) == (row["age"], row["sex"], row["view"])
        assert labels.tolist() == row[list(S.FINDINGS)].tolist()
    n_train = int((dm.entries["split"] == "train").sum())
    assert sum(len(b["meta"]) for b in dm.train_dataloader()) == n_train // 8 * 8  # drop_last


def test_test_loader_yields_every_test_image(raw, prepared):
    out, _ = prepared
    dm = _dm(raw, out, batch_size=7)
    dm.setup("test")
    names = [m["image"] for b in dm.test_dataloader() for m in b["meta"]]
    expected = list(dm.entries.loc[dm.entries["split"] == "test", "image"])
    assert len(expected) % 7 and names == expected  # in order, the partial last batch kept


def test_memory_cache_gives_the_same_val_batch(raw, prepared):
    out, _ = prepared
    plain, cached = _dm(raw, out), _dm(raw, out, cache="memory")
    plain.setup("validate")
    cached.setup("validate")
    a, b = next(iter(plain.val_dataloader())), next(iter(cached.val_dataloader()))
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["labels"], b["labels"])
    assert a["meta"] == b["meta"]
    with pytest.raises(ValueError, match="cache"):
        _dm(raw, out, cache="disk")


def test_train_augmentation_is_random_val_is_not(raw, prepared):
    out, _ = prepared
    for cache in ("none", "memory"):
        dm = _dm(raw, out, cache=cache)
        train, val = dm.dataset("train"), dm.dataset("val")
        draws = [train[0]["image"] for _ in range(6)]
        assert any(not torch.equal(torch.as_tensor(draws[0]), torch.as_tensor(d)) for d in draws)
        assert all(0 <= float(d.min()) and float(d.max()) <= 1 for d in draws)
        assert torch.equal(torch.as_tensor(val[0]["image"]), torch.as_tensor(val[0]["image"]))
    unaugmented = _dm(raw, out, augment=False).dataset("train")
    assert torch.equal(torch.as_tensor(unaugmented[0]["image"]), torch.as_tensor(unaugmented[0]["image"]))


def test_a_worker_process_reads_the_shards(raw, prepared):
    out, _ = prepared
    dm = _dm(raw, out, num_workers=1, batch_size=16)
    dm.setup("validate")
    names = [m["image"] for b in dm.val_dataloader() for m in b["meta"]]
    assert names == list(dm.entries.loc[dm.entries["split"] == "val", "image"])


# ---- tokens -------------------------------------------------------------------------------------


def test_tokens_from_an_encode_callable(raw, prepared):
    out, _ = prepared

    def encode(texts):  # one id per word, +1 so that 0 stays padding; longer than max_len
        return torch.tensor([[len(w) + 1 for w in t.split()] * 3 for t in texts])

    dm = _dm(raw, out, encode=encode, max_len=6)
    batch = next(iter(dm.val_dataloader()))
    assert batch["tokens"].shape == (8, 6) and batch["tokens"].dtype == torch.int64
    assert batch["tokens"].all()  # 9 ids cut to 6
    dm = _dm(raw, out, encode=lambda texts: torch.ones(len(texts), 2, dtype=torch.long), max_len=5)
    assert dm.encode(["a", "b"]).tolist() == [[1, 1, 0, 0, 0]] * 2


def test_tokens_from_a_tokenizer_file(raw, prepared, tmp_path, monkeypatch):
    """The `tokenizers` wiring, against a stand-in module (the package is optional here)."""
    out, _ = prepared
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2}
    calls = []

    class Encoding:
        def __init__(self, ids):
            self.ids = ids

    class Tokenizer:
        @staticmethod
        def from_file(path):
            calls.append(("from_file", path))
            return Tokenizer()

        def no_padding(self):
            calls.append("no_padding")

        def no_truncation(self):
            calls.append("no_truncation")

        def token_to_id(self, token):
            return vocab.get(token)

        def encode_batch(self, texts, add_special_tokens=True):
            assert add_special_tokens is False  # [CLS] is ours to add, exactly once
            return [Encoding([vocab.setdefault(w, len(vocab)) for w in t.split()]) for t in texts]

    monkeypatch.setitem(sys.modules, "tokenizers", types.SimpleNamespace(Tokenizer=Tokenizer))
    path = tmp_path / "tokenizer.json"
    dm = _dm(raw, out, tokenizer_path=path, max_len=5)
    tokens = dm.encode(["age_55 sex_f view_pa", "age_55 sex_f view_pa x y z"])
    assert tokens[0, 0] == tokens[1, 0] == 2 and tokens[0, 4] == 0  # [CLS] first, 0-padded
    assert tokens[0, :4].tolist() == tokens[1, :4].tolist() and tokens[1].all()  # truncated
    assert ("from_file", str(path)) in calls and "no_padding" in calls
    vocab["[PAD]"] = 7
    with pytest.raises(ValueError, match=r"\[PAD\] has id 7"):
        _dm(raw, out, tokenizer_path=path).encode(["a"])


# ---- the real sample's RGBA PNGs, and helpers ----------------------------------------------------


def test_real_rgba_images_come_out_as_one_channel_in_0_1(tmp_path):
    if not (NIH / S.ENTRIES_FILE).is_file():
        pytest.fail(f"NIH sample not found at {NIH}")
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in (S.ENTRIES_FILE, S.BOXES_FILE):
        shutil.copy(NIH / name, raw / name)
    names = sorted(p.name for p in (NIH / "images").iterdir())
    (raw / S.TEST_LIST).write_text("".join(n + "\n" for n in names if n in OFFICIAL_TEST))
    (raw / S.TRAIN_VAL_LIST).write_text("".join(n + "\n" for n in names if n not in OFFICIAL_TEST))
    write_shards({n: NIH / "images" / n for n in names}, raw / "images")
    prepare(raw, tmp_path / "prepared", val_fraction=0.2, seed=0, text_mode="metadata")
    dm = MedicalDataModule(tmp_path / "prepared", raw / "images", size=64, batch_size=4, augment=False)
    items = []
    for name in RGBA:  # wherever the split put them
        split = dm.entries.loc[dm.entries["image"] == name, "split"].item()
        rows = list(dm.entries.loc[dm.entries["split"] == split, "image"])
        items.append(dm.dataset(split)[rows.index(name)])
    batch = collate(items)
    assert [m["image"] for m in batch["meta"]] == list(RGBA)
    assert batch["image"].shape == (4, 1, 64, 64) and batch["image"].dtype == torch.float32
    low, high = batch["image"].amin(dim=(1, 2, 3)), batch["image"].amax(dim=(1, 2, 3))
    assert (low >= 0).all() and (high <= 1).all()  # the anti-aliased 1024 -> 64 shrink is convex
    assert (low < 0.2).all() and (high > 0.8).all()  # and the [0, 1] range is still used
    # decoding: RGBA (R = G = B, alpha 255) gives exactly the gray values
    reader = open_images(raw / "images")
    decoded = DecodeImaged(keys=["image"], reader=reader)({"image": RGBA[0]})["image"]
    with Image.open(NIH / "images" / RGBA[0]) as img:
        assert img.mode == "RGBA"
        gray = np.asarray(img.convert("L"), dtype=np.float32)
    assert decoded.shape == (1, 1024, 1024) and decoded.dtype == np.float32
    assert np.array_equal(decoded[0], gray)
    full = eval_transforms(reader, 1024)({"image": RGBA[0]})["image"]
    assert tuple(full.shape) == (1, 1024, 1024)
    assert float(full.min()) == 0 and float(full.max()) == 1  # no resize at 1024: exact min-max


def test_image_statistics():
    image = np.zeros((1, 4, 6), dtype=np.float32)
    image[0, :2] = 1.0
    stats = image_statistics(image)
    assert stats == {"mean": 0.5, "std": 0.5, "height": 4, "width": 6}
    assert image_statistics(torch.from_numpy(image[0])) == stats
    with pytest.raises(ValueError, match="shape"):
        image_statistics(np.zeros(5))
