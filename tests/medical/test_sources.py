"""pipelines.medical.sources.nih, .mimic, .demo and .shards on the real NIH ChestX-ray14 sample, a
MIMIC-CXR-JPG fixture in PhysioNet's layout, the demo generator and tar shards.

The NIH sample lives in ../shared beside the repository and is never copied into it; broken
variants, split lists, mirrors and archives are written into pytest's tmp_path.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.fetch import FetchError
from pipelines.medical.sources import mimic as M
from pipelines.medical.sources import nih as S
from pipelines.medical.sources.demo import write_demo
from pipelines.medical.sources.shards import (
    INDEX,
    FolderImages,
    ShardError,
    ShardReader,
    iter_tar_members,
    open_images,
    shards_from_nih_archive,
    write_shards,
)
from tests.medical.nih_sample import NIH, OFFICIAL_TEST, RGBA

ENTRIES = NIH / "Data_Entry_2017_v2020.csv"
BOXES = NIH / "BBox_List_2017.csv"
IMAGES = NIH / "images"

# from SOURCE.md
LABEL_COUNTS = {
    "Atelectasis": 16,
    "Cardiomegaly": 9,
    "Consolidation": 12,
    "Edema": 5,
    "Effusion": 13,
    "Emphysema": 5,
    "Fibrosis": 9,
    "Hernia": 5,
    "Infiltration": 17,
    "Mass": 9,
    "Nodule": 16,
    "Pleural_Thickening": 7,
    "Pneumonia": 5,
    "Pneumothorax": 6,
}
NO_FINDING_COUNT = 11


@pytest.fixture(scope="module")
def nih() -> Path:
    if not ENTRIES.is_file():
        pytest.fail(f"NIH sample not found at {NIH}")
    return NIH


@pytest.fixture(scope="module")
def entries(nih) -> pd.DataFrame:
    return S.read_nih_entries(ENTRIES)


def _write_lists(folder: Path, names: list[str]) -> tuple[Path, Path]:
    test = sorted(n for n in names if n in OFFICIAL_TEST)
    train_val = sorted(n for n in names if n not in OFFICIAL_TEST)
    (folder / S.TEST_LIST).write_text("".join(n + "\n" for n in test))
    (folder / S.TRAIN_VAL_LIST).write_text("".join(n + "\n" for n in train_val))
    return folder / S.TEST_LIST, folder / S.TRAIN_VAL_LIST


# ---- NIH entries --------------------------------------------------------------------------------


def test_vocabularies():
    assert len(S.FINDINGS) == 14 and len(set(S.FINDINGS)) == 14
    assert S.FINDINGS[0] == "Atelectasis" and S.FINDINGS[-1] == "Hernia"
    assert S.BOXED_FINDINGS == (
        "Atelectasis",
        "Cardiomegaly",
        "Effusion",
        "Infiltration",
        "Mass",
        "Nodule",
        "Pneumonia",
        "Pneumothorax",
    )
    assert sorted(S.NIH_ARCHIVES) == [f"images_{i:03d}.tar.gz" for i in range(1, 13)]
    assert all(v.startswith("md5:") and len(v) == 36 for v in S.NIH_ARCHIVES.values())
    assert S.NIH_ARCHIVES["images_001.tar.gz"] == "md5:fe8ed0a6961412fddcbb3603c11b3698"


def test_entries_header_quirk_gives_clean_columns(nih, entries):
    assert ENTRIES.read_text().splitlines()[0] == S.NIH_ENTRY_HEADER
    raw = pd.read_csv(ENTRIES)  # what pandas makes of the header on its own
    assert raw.shape[1] == 11 and "OriginalImage[Width" in raw.columns and "y]" in raw.columns
    assert list(entries.columns) == list(S.ENTRY_COLUMNS) + list(S.FINDINGS)
    assert len(entries) == 92 and entries["image"].is_unique
    assert set(entries["image"]) == {p.name for p in IMAGES.glob("*.png")}
    first = entries.iloc[0]
    assert first[["image", "labels", "patient_id", "age", "sex", "view"]].tolist() == [
        "00000075_000.png",
        "Cardiomegaly",
        75,
        61,
        "F",
        "PA",
    ]
    assert (first["width"], first["height"]) == (2482, 2991)
    assert first["spacing_x"] == pytest.approx(0.143) and first["spacing_y"] == pytest.approx(0.143)
    for col in ("follow_up", "patient_id", "age", "width", "height"):
        assert entries[col].dtype == np.int64
    assert entries[list(S.FINDINGS)].isin([0, 1]).all().all()


def test_label_counts_match_source_md(entries):
    assert entries[list(S.FINDINGS)].sum().to_dict() == LABEL_COUNTS
    assert int((entries[list(S.FINDINGS)].sum(axis=1) == 0).sum()) == NO_FINDING_COUNT
    assert int((entries["labels"] == "No Finding").sum()) == NO_FINDING_COUNT
    assert int((entries[list(S.FINDINGS)].sum(axis=1) > 1).sum()) == 37  # multi-label rows
    assert entries["view"].value_counts().to_dict() == {"PA": 74, "AP": 18}
    assert entries["sex"].value_counts().to_dict() == {"F": 51, "M": 41}
    assert (entries["age"].min(), entries["age"].max(), entries["age"].median()) == (9, 86, 52)


def test_entries_errors_name_file_line_and_label(nih, tmp_path):
    lines = ENTRIES.read_text().splitlines(keepends=True)
    bad = tmp_path / "labels.csv"
    bad.write_text(
        "".join(lines[:5]) + lines[5].replace(lines[5].split(",")[1], "Atelectasis|Pneumonitis", 1) + "".join(lines[6:])
    )
    with pytest.raises(ValueError, match=r"labels\.csv, line 6: unknown label 'Pneumonitis'"):
        S.read_nih_entries(bad)

    header = tmp_path / "header.csv"
    header.write_text(lines[0].replace("OriginalImage[Width,Height]", "Width,Height") + "".join(lines[1:]))
    with pytest.raises(ValueError, match=r"header\.csv: not NIH's Data_Entry header"):
        S.read_nih_entries(header)

    shifted = tmp_path / "shifted.csv"  # a row missing its sex cell: the view lands in 'sex'
    cells = lines[3].rstrip("\n").split(",")
    shifted.write_text("".join(lines[:3]) + ",".join(cells[:5] + cells[6:]) + "\n" + "".join(lines[4:]))
    with pytest.raises(ValueError, match=r"shifted\.csv, line 4"):
        S.read_nih_entries(shifted)

    mixed = tmp_path / "mixed.csv"
    mixed.write_text(lines[0] + lines[1].replace("Cardiomegaly", "No Finding|Cardiomegaly"))
    with pytest.raises(ValueError, match=r"mixed\.csv, line 2: 'No Finding' combined"):
        S.read_nih_entries(mixed)

    legacy = tmp_path / "Data_Entry_2017.csv"  # the 2017 release: a trailing comma on every line
    legacy.write_text("".join(line.rstrip("\n") + ",\n" for line in lines))
    assert S.read_nih_entries(legacy).equals(S.read_nih_entries(ENTRIES))


# ---- NIH boxes ----------------------------------------------------------------------------------


def test_boxes_map_infiltrate(nih, entries):
    boxes = S.read_nih_boxes(BOXES)
    assert list(boxes.columns) == ["image", "finding", "x", "y", "w", "h"]
    assert len(boxes) == 8
    assert "Infiltrate" not in set(boxes["finding"])
    assert boxes.loc[boxes["image"] == "00026911_000.png", "finding"].tolist() == ["Infiltration"]
    assert set(boxes["finding"]) <= set(S.BOXED_FINDINGS)
    assert all(boxes[c].dtype == np.float64 for c in "xywh")
    assert ((boxes["x"] + boxes["w"] <= 1024) & (boxes["y"] + boxes["h"] <= 1024)).all()
    assert boxes.iloc[0]["x"] == pytest.approx(329.413756613757)
    labelled = entries.set_index("image")
    for image, finding in zip(boxes["image"], boxes["finding"]):  # every box is of a labelled finding
        assert labelled.loc[image, finding] == 1


def test_box_errors(nih, tmp_path):
    lines = BOXES.read_text().splitlines(keepends=True)
    bad = tmp_path / "boxes.csv"
    bad.write_text(lines[0] + lines[1] + lines[2].replace("Cardiomegaly", "Hernia"))
    with pytest.raises(ValueError, match=r"boxes\.csv, line 3: unknown box finding 'Hernia'"):
        S.read_nih_boxes(bad)
    header = tmp_path / "header.csv"
    header.write_text("Image Index,Finding Label,x,y,w,h\n" + "".join(lines[1:]))
    with pytest.raises(ValueError, match=r"header\.csv: not NIH's BBox header"):
        S.read_nih_boxes(header)


# ---- splits -------------------------------------------------------------------------------------


def test_official_split_lists_and_patient_split(entries, tmp_path):
    test_list, train_val_list = _write_lists(tmp_path, list(entries["image"]))
    test, train_val = S.read_split_list(test_list), S.read_split_list(train_val_list)
    assert (len(test), len(train_val)) == (16, 76) and test == OFFICIAL_TEST
    assert not test & train_val

    split = S.patient_split(entries, test, val_fraction=0.2, seed=7)
    assert split.index.equals(entries.index)
    assert split.value_counts().to_dict() == {"train": 61, "val": 15, "test": 16}  # round(0.2 * 76) patients
    assert set(entries.loc[split == "test", "image"]) == test
    S.assert_no_patient_leak(entries, split)
    assert split.equals(S.patient_split(entries, test, val_fraction=0.2, seed=7))  # deterministic
    shuffled = entries.sample(frac=1, random_state=0)  # row order does not matter
    assert S.patient_split(shuffled, test, 0.2, seed=7).sort_index().equals(split)
    assert not split.equals(S.patient_split(entries, test, val_fraction=0.2, seed=8))


def test_val_is_by_patient(tmp_path):
    write_demo(tmp_path, n_patients=30, images_per_patient=(2, 4), size=32, seed=3)
    entries = S.read_nih_entries(tmp_path / S.ENTRIES_FILE)
    split = S.patient_split(entries, S.read_split_list(tmp_path / S.TEST_LIST), val_fraction=0.3, seed=0)
    per_patient = split.groupby(entries["patient_id"]).nunique()
    assert (per_patient == 1).all()
    val_patients = entries.loc[split == "val", "patient_id"].nunique()
    assert val_patients == round(0.3 * entries.loc[split != "test", "patient_id"].nunique())


def test_patient_leak_is_named(entries):
    split = pd.Series("train", index=entries.index)
    split.iloc[:2] = "test"
    leaky = entries.copy()
    leaky.loc[leaky.index[2], "patient_id"] = leaky.loc[leaky.index[0], "patient_id"]  # same person
    with pytest.raises(ValueError, match=r"patient leak: 1 patient.*\[75\]"):
        S.assert_no_patient_leak(leaky, split)


def test_split_list_errors(tmp_path):
    html = tmp_path / "test_list.txt"
    html.write_text("<html><body>Sign in to Box</body></html>\n")
    with pytest.raises(ValueError, match=r"test_list\.txt, line 1"):
        S.read_split_list(html)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.txt: no image names"):
        S.read_split_list(empty)


# ---- images -------------------------------------------------------------------------------------


def test_rgba_images_load_as_2d_uint8(nih):
    for name in RGBA:
        assert Image.open(IMAGES / name).mode == "RGBA"
        arr = S.load_image(IMAGES / name)
        assert arr.shape == (1024, 1024) and arr.dtype == np.uint8
        assert np.array_equal(arr, np.asarray(Image.open(IMAGES / name))[..., 0])  # R = G = B: gray kept


def test_every_sample_image_loads(nih):
    for path in sorted(IMAGES.glob("*.png")):
        arr = S.load_image(path)
        assert arr.shape == (1024, 1024) and arr.dtype == np.uint8, path.name


def test_unreadable_images_name_the_file(nih, tmp_path):
    text = tmp_path / "00000001_000.png"
    text.write_text("not a PNG at all")
    with pytest.raises(ValueError, match=r"00000001_000\.png: not a decodable image"):
        S.load_image(text)
    empty = tmp_path / "00000002_000.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"00000002_000\.png: empty file"):
        S.load_image(empty)
    truncated = tmp_path / "00000003_000.png"
    truncated.write_bytes((IMAGES / "00000075_000.png").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"00000003_000\.png: not a decodable image"):
        S.load_image(truncated)
    with pytest.raises(ValueError, match=r"missing\.png: cannot read"):
        S.load_image(tmp_path / "missing.png")


# ---- MIMIC-CXR-JPG ------------------------------------------------------------------------------

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___M with fever and productive cough for three days.  // r/o
 pneumonia

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  None.

 FINDINGS:

 Patchy opacity in the right lower lobe.  Small right pleural effusion.  No pneumothorax.

 IMPRESSION:

 Right lower lobe pneumonia with a small parapneumonic effusion.
"""
DICOMS = {  # dicom_id -> (subject, study, view, split)
    "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014": (10000032, 50414267, "PA", "train"),
    "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962": (10000032, 50414267, "LATERAL", "train"),
    "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab": (10000032, 53189527, "AP", "validate"),
    "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714": (10000764, 57375967, "AP", "test"),
    "ffffffff-00000000-11111111-22222222-33333333": (10000898, 50771383, "PA", "train"),  # no labels
}
LABEL_ROWS = [  # subject, study, then values for CHEXPERT_LABELS; '' = blank
    # Atel Card Cons Edem ECM  Frac LLes LOpa NoF PEff POth Pneu Ptx  SupD
    (10000032, 50414267, "", "1.0", "-1.0", "", "", "", "", "1.0", "", "1.0", "", "", "-1.0", "0.0"),
    (10000032, 53189527, "-1.0", "", "", "0.0", "", "", "1.0", "", "", "", "", "", "", "1.0"),
    (10000764, 57375967, "", "", "", "", "", "", "", "", "1.0", "", "", "", "", ""),
]


def _gz_csv(path: Path, header: list[str], rows: list) -> None:
    with gzip.open(path, "wt", newline="") as f:
        f.write(",".join(header) + "\n")
        for row in rows:
            f.write(",".join(str(c) for c in row) + "\n")


@pytest.fixture
def mimic(tmp_path) -> Path:
    root = tmp_path / "mimic-cxr-jpg" / "2.0.0"
    root.mkdir(parents=True)
    _gz_csv(
        root / "mimic-cxr-2.0.0-metadata.csv.gz",
        [
            "dicom_id",
            "subject_id",
            "study_id",
            "PerformedProcedureStepDescription",
            "ViewPosition",
            "Rows",
            "Columns",
            "StudyDate",
            "StudyTime",
        ],
        [(d, p, s, "CHEST (PA AND LAT)", v, 3056, 2544, 21800506, "213014.531") for d, (p, s, v, _) in DICOMS.items()],
    )
    _gz_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *M.CHEXPERT_LABELS], LABEL_ROWS)
    _gz_csv(
        root / "mimic-cxr-2.0.0-split.csv.gz",
        ["dicom_id", "study_id", "subject_id", "split"],
        [(d, s, p, sp) for d, (p, s, _, sp) in DICOMS.items()],
    )
    for d, (p, s, _, _) in DICOMS.items():
        folder = root / "files" / f"p{str(p)[:2]}" / f"p{p}" / f"s{s}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("L", (64, 64), 128).save(folder / f"{d}.jpg", format="JPEG")
    (root / "files" / "p10" / "p10000032" / "s50414267.txt").write_text(REPORT)
    return root


def test_mimic_join_and_layout(mimic, caplog):
    caplog.set_level(logging.INFO, logger="scifolio.medical.mimic")
    table = M.read_mimic(mimic, uncertain="mask")
    assert len(table) == 4  # the unlabelled study's image is dropped, and logged
    assert "1 image(s) without CheXpert labels dropped" in caplog.text
    assert list(table.columns[:7]) == ["image", "dicom_id", "subject_id", "study_id", "patient_id", "view", "split"]
    assert list(table.columns[7:]) == list(S.FINDINGS)
    first = table.iloc[0]
    assert first["image"] == "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    assert all((mimic / p).is_file() for p in table["image"])
    assert table["split"].tolist() == ["train", "train", "val", "test"]
    assert table["view"].tolist() == ["PA", "LATERAL", "AP", "AP"]
    # both images of study 50414267 carry that study's labels
    assert table.iloc[0][list(S.FINDINGS)].equals(table.iloc[1][list(S.FINDINGS)])
    S.assert_no_patient_leak(table.iloc[:2], table["split"].iloc[:2])
    with pytest.raises(ValueError, match=r"patient leak.*10000032"):
        S.assert_no_patient_leak(table, table["split"])  # MIMIC's split is patient-wise; ours is not here


def test_mimic_uncertain_policies_and_blanks(mimic):
    by = {u: M.read_mimic(mimic, uncertain=u).set_index("dicom_id") for u in M.UNCERTAIN_POLICIES}
    pa = "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014"
    # study 50414267: Cardiomegaly 1, Consolidation -1, Pleural Effusion 1, Pneumothorax -1, Pneumonia blank
    for u, unsure in (("mask", np.nan), ("positive", 1.0), ("negative", 0.0)):
        row = by[u].loc[pa]
        assert row["Cardiomegaly"] == 1.0 and row["Effusion"] == 1.0
        np.testing.assert_equal([row["Consolidation"], row["Pneumothorax"]], [unsure, unsure])
        assert row["Pneumonia"] == 0.0 and row["Atelectasis"] == 0.0 and row["Edema"] == 0.0  # blanks
        for f in ("Infiltration", "Mass", "Nodule", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia"):
            assert np.isnan(row[f]), f  # no CheXpert counterpart: masked
    other = by["mask"].loc["2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab"]
    assert np.isnan(other["Atelectasis"]) and other["Edema"] == 0.0  # -1 masked, explicit 0 kept
    assert by["mask"]["Cardiomegaly"].dtype == np.float32
    with pytest.raises(ValueError, match="uncertain policy 'ignore'"):
        M.read_mimic(mimic, uncertain="ignore")


def test_mimic_accepts_plain_csv_and_names_bad_values(mimic):
    gz = mimic / "mimic-cxr-2.0.0-chexpert.csv.gz"
    plain = mimic / "mimic-cxr-2.0.0-chexpert.csv"
    plain.write_bytes(gzip.decompress(gz.read_bytes()).replace(b"-1.0", b"2.0", 1))
    gz.unlink()
    with pytest.raises(ValueError, match=r"chexpert\.csv, line 2: Consolidation = 2\.0"):
        M.read_mimic(mimic)
    (mimic / "mimic-cxr-2.0.0-split.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-split"):
        M.read_mimic(mimic)


def test_indication_excludes_findings_and_impression(mimic):
    report = (mimic / "files" / "p10" / "p10000032" / "s50414267.txt").read_text()
    text = M.read_indication(report)
    assert text == "___M with fever and productive cough for three days. // r/o pneumonia"
    for leak in ("opacity", "effusion", "lobe", "Chest PA", "None", "IMPRESSION", "FINDINGS"):
        assert leak not in text
    history = (
        "HISTORY: Fall, r/o fracture.\nCLINICAL INFORMATION: on warfarin FINDINGS: rib fracture.\nIMPRESSION: fracture"
    )
    assert M.read_indication(history) == "Fall, r/o fracture. on warfarin"
    assert M.read_indication("FINDINGS: clear lungs.\nIMPRESSION: normal.") == ""
    long_heading = "CLINICAL INFORMATION & QUESTIONS TO BE ANSWERED:  ___ with chest pain\n IMPRESSION:  Normal chest."
    assert M.read_indication(long_heading) == "___ with chest pain"
    assert M.read_indication("") == ""


def test_physionet_credentials_never_shown(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    monkeypatch.delenv("PHYSIONET_PASSWORD", raising=False)
    with pytest.raises(M.PhysioNetError, match="PHYSIONET_USERNAME and PHYSIONET_PASSWORD not set"):
        M.mimic_auth_from_env()
    monkeypatch.setenv("PHYSIONET_USERNAME", "dr-username-xyz")
    with pytest.raises(M.PhysioNetError, match="^PHYSIONET_PASSWORD not set") as missing:
        M.mimic_auth_from_env()  # half a credential is none
    assert "dr-username-xyz" not in str(missing.value)
    monkeypatch.setenv("PHYSIONET_PASSWORD", "s3cret-pa55word")
    auth = M.mimic_auth_from_env()
    assert auth == ("dr-username-xyz", "s3cret-pa55word") and len(auth) == 2  # what requests' auth= takes
    logging.getLogger("test").info("auth %s %r %s", auth, auth, f"{auth} {[auth]} {dict(a=auth)}")
    shown = repr(auth) + str(auth) + f"{auth!r}{auth!s}{[auth]}" + caplog.text
    assert "s3cret-pa55word" not in shown and "dr-username-xyz" not in shown
    assert pickle.loads(pickle.dumps(auth)) == auth


# ---- demo ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return write_demo(tmp_path_factory.mktemp("demo"), n_patients=40, images_per_patient=(1, 3), size=96, seed=1)


def test_demo_reads_back_through_nih_readers(demo):
    assert (demo / S.ENTRIES_FILE).read_text().splitlines()[0] == S.NIH_ENTRY_HEADER  # = the real one
    box_text = (demo / S.BOXES_FILE).read_text()
    assert box_text.splitlines()[0] == "Image Index,Finding Label,Bbox [x,y,w,h],,,"
    entries = S.read_nih_entries(demo / S.ENTRIES_FILE)
    boxes = S.read_nih_boxes(demo / S.BOXES_FILE)
    test, train_val = S.read_split_list(demo / S.TEST_LIST), S.read_split_list(demo / S.TRAIN_VAL_LIST)
    assert set(entries["image"]) == test | train_val and not test & train_val
    assert entries["patient_id"].nunique() == 40 and 40 <= len(entries) <= 120
    for pid, group in entries.groupby("patient_id"):  # <8-digit patient>_<3-digit follow-up>.png
        assert list(group["image"]) == [f"{pid:08d}_{fu:03d}.png" for fu in range(len(group))]
        assert list(group["follow_up"]) == list(range(len(group)))
    split = S.patient_split(entries, test, val_fraction=0.2, seed=0)
    S.assert_no_patient_leak(entries, split)
    assert set(entries["view"]) == {"AP", "PA"} and set(entries["sex"]) == {"M", "F"}
    assert entries[list(S.FINDINGS)].sum().gt(0).sum() >= 10  # most findings occur
    assert (entries[list(S.FINDINGS)].sum(axis=1) == 0).any()  # and No Finding rows
    # boxes: only for test images, only boxed findings, labelled on the image, in 1024 space
    assert len(boxes) and set(boxes["image"]) <= test
    assert ",Infiltration," not in box_text  # NIH's spelling on disk
    assert ("Infiltration" in set(boxes["finding"])) == (",Infiltrate," in box_text)
    labelled = entries.set_index("image")
    assert all(labelled.loc[i, f] == 1 for i, f in zip(boxes["image"], boxes["finding"]))
    assert (
        (boxes[["x", "y"]] >= 0).all().all()
        and (boxes["x"] + boxes["w"] <= 1024).all()
        and (boxes["y"] + boxes["h"] <= 1024).all()
    )


def test_demo_pngs(demo):
    entries = S.read_nih_entries(demo / S.ENTRIES_FILE)
    modes = {}
    for name in entries["image"]:
        with Image.open(demo / "images" / name) as img:
            assert img.format == "PNG" and img.size == (96, 96)
            modes[name] = img.mode
        arr = S.load_image(demo / "images" / name)
        assert arr.shape == (96, 96) and arr.dtype == np.uint8
    assert set(modes.values()) == {"L", "RGBA"} and list(modes.values()).count("RGBA") <= len(modes) // 10 + 1
    assert sorted(p.name for p in (demo / "images").iterdir()) == sorted(entries["image"])  # no .part left


def test_demo_findings_are_in_the_pixels(tmp_path):
    write_demo(tmp_path, n_patients=60, images_per_patient=(1, 1), size=64, seed=5)
    entries = S.read_nih_entries(tmp_path / S.ENTRIES_FILE)
    pixels = np.stack([S.load_image(tmp_path / "images" / n).astype(float) for n in entries["image"]])
    no_finding = entries[list(S.FINDINGS)].sum(axis=1).to_numpy() == 0
    assert no_finding.sum() >= 5
    # Cardiomegaly: the row through the heart is bright over a wider span
    heart_row = pixels[:, int(0.63 * 64), :]
    width = (heart_row > 150).sum(axis=1)
    cardio = entries["Cardiomegaly"].to_numpy() == 1
    assert cardio.any() and width[cardio].mean() > width[no_finding].mean() + 3
    # same seed, same bytes
    again = tmp_path / "again"
    write_demo(again, n_patients=60, images_per_patient=(1, 1), size=64, seed=5)
    first = entries["image"].iloc[0]
    assert (again / "images" / first).read_bytes() == (tmp_path / "images" / first).read_bytes()
    assert (again / S.ENTRIES_FILE).read_bytes() == (tmp_path / S.ENTRIES_FILE).read_bytes()
    write_demo(again, n_patients=3, images_per_patient=(1, 1), size=32, seed=5)  # smaller re-run
    assert sorted(p.name for p in (again / "images").iterdir()) == sorted(
        S.read_nih_entries(again / S.ENTRIES_FILE)["image"]
    )


# ---- shards -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def five(nih) -> dict[str, Path]:
    return {p.name: p for p in sorted(IMAGES.glob("*.png"))[:5]}


def test_shards_round_trip(five, tmp_path):
    out = tmp_path / "images"
    shards = write_shards(five, out, shard_size=2)
    assert [p.name for p in shards] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    assert sorted(p.name for p in out.iterdir()) == [INDEX, *[p.name for p in shards]]
    reader = ShardReader(out)
    assert reader.names() == list(five) and len(reader) == 5 and "nope.png" not in reader
    for name, path in five.items():
        assert reader.read(name) == path.read_bytes()
    assert reader.shard_of(list(five)[4]).name == "shard-00002.tar"
    rgba = next(n for n in five if n in RGBA) if any(n in RGBA for n in five) else list(five)[0]
    assert S.decode_image(reader.read(rgba), rgba).ndim == 2
    index = json.loads((out / INDEX).read_text())
    for shard_no, shard in enumerate(shards):  # plain tars: any tool lists them, at the indexed offsets
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                assert index["members"][m.name] == [shard_no, m.offset_data, m.size]
    with tarfile.open(shards[0]) as tar:
        assert tar.getnames() == list(five)[:2]
    with pytest.raises(KeyError, match="nope.png"):
        reader.read("nope.png")
    clone = pickle.loads(pickle.dumps(reader))  # a spawned DataLoader worker gets its own descriptors
    assert clone.read(list(five)[3]) == five[list(five)[3]].read_bytes()
    reader.close()
    if hasattr(os, "fork"):  # a forked DataLoader worker reuses the reader: own descriptors, no shared offset
        reader.read(list(five)[0])  # the parent has a descriptor open
        pid = os.fork()
        if pid == 0:
            ok = all(reader.read(n) == p.read_bytes() for n, p in reversed(five.items()))
            os._exit(0 if ok else 1)
        assert os.waitpid(pid, 0)[1] == 0
        assert reader.read(list(five)[1]) == five[list(five)[1]].read_bytes()
    # (name, bytes) pairs work too, and a rewrite replaces the set
    write_shards([("a.png", b"x" * 10), ("b.png", b"y")], out, shard_size=10)
    assert ShardReader(out).names() == ["a.png", "b.png"] and ShardReader(out).read("b.png") == b"y"


def test_shards_are_atomic(five, tmp_path):
    out = tmp_path / "images"

    def failing():
        yield from list(five.items())[:3]
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_shards(failing(), out, shard_size=2)
    assert list(tmp_path.iterdir()) == []  # no shard dir, no temp dir

    with pytest.raises(ShardError, match="cannot read image 'gone.png'"):
        write_shards({"a.png": next(iter(five.values())), "gone.png": tmp_path / "gone.png"}, out, 2)
    assert list(tmp_path.iterdir()) == []

    write_shards(five, out, shard_size=2)  # a complete set survives a failed rewrite
    with pytest.raises(ShardError, match="duplicate image name"):
        write_shards([("a.png", b"1"), ("a.png", b"2")], out, 2)
    assert ShardReader(out).names() == list(five)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def _tar_gz(path: Path, members: list[tuple[str, bytes]], link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


@pytest.mark.parametrize("bad", ["../escape.png", "images/../../escape.png", "/abs/escape.png"])
def test_unsafe_archive_member_refused(bad, tmp_path):
    archive = _tar_gz(tmp_path / "images_001.tar.gz", [("images/00000001_000.png", b"ok"), (bad, b"evil")])
    with pytest.raises(ShardError, match="refusing member"):
        shards_from_nih_archive(archive, tmp_path / "out", 10)
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape.png").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_001.tar.gz"]
    with pytest.raises(ShardError, match="refusing member"):
        write_shards([(bad, b"evil")], tmp_path / "out", 10)


def test_archive_links_refused_and_names_flattened(tmp_path):
    archive = _tar_gz(tmp_path / "a.tar.gz", [("images/00000001_000.png", b"ok")], link="images/passwd.png")
    with pytest.raises(ShardError, match="not a regular file"):
        shards_from_nih_archive(archive, tmp_path / "out", 10)
    good = _tar_gz(tmp_path / "b.tar.gz", [("images/00000001_000.png", b"one"), ("images/00000001_001.png", b"two")])
    assert list(iter_tar_members(good)) == [("00000001_000.png", b"one"), ("00000001_001.png", b"two")]
    broken = tmp_path / "c.tar.gz"
    broken.write_bytes(good.read_bytes()[:40])
    with pytest.raises(ShardError, match=r"c\.tar\.gz: cannot read archive"):
        shards_from_nih_archive(broken, tmp_path / "out", 10)
    assert not (tmp_path / "out").exists()


# ---- pull_nih -----------------------------------------------------------------------------------


@pytest.fixture
def mirror(nih, tmp_path) -> tuple[Path, list[Path], str]:
    """A folder mirror: NIH's two CSVs, split lists, and images_001.tar.gz of 3 real PNGs."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    shutil.copyfile(ENTRIES, folder / S.ENTRIES_FILE)
    shutil.copyfile(BOXES, folder / S.BOXES_FILE)
    _write_lists(folder, [p.name for p in IMAGES.glob("*.png")])
    pngs = [IMAGES / n for n in ("00000075_000.png", "00000100_000.png", "00001369_000.png")]
    archive = _tar_gz(folder / "images_001.tar.gz", [(f"images/{p.name}", p.read_bytes()) for p in pngs])
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    return folder, pngs, md5


def test_pull_nih_from_folder_mirror(mirror, tmp_path):
    folder, pngs, md5 = mirror
    out = tmp_path / "data" / "raw"
    summary = S.pull_nih(
        str(folder), out, archives=["images_001.tar.gz"], checksums={"images_001.tar.gz": f"md5:{md5}"}, shard_size=2
    )
    assert summary["images"] == 3 and summary["shards"] == 2 and summary["entries"] == 92
    assert (summary["test_list"], summary["train_val_list"], summary["boxes"]) == (16, 76, 8)
    assert sorted(p.name for p in out.iterdir()) == sorted([*S.NIH_TABLES, "images"])
    assert not any(p.suffix == ".png" for p in out.rglob("*"))  # no loose images anywhere
    reader = ShardReader(out / "images")
    assert sorted(reader.names()) == [p.name for p in pngs]
    for p in pngs:
        assert reader.read(p.name) == p.read_bytes()
    assert S.decode_image(reader.read("00001369_000.png"), "00001369_000.png").shape == (1024, 1024)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["raw"]  # archive deleted, its dir too


def test_pull_nih_checks_md5(mirror, tmp_path):
    folder, _, _ = mirror
    out = tmp_path / "raw"
    with pytest.raises(FetchError, match="checksum mismatch: expected md5:fe8ed0a6"):  # NIH's real MD5
        S.pull_nih(str(folder), out, archives=["images_001.tar.gz"])
    assert not (out / "images").exists()
    assert not any(p.name.endswith((".part", ".tmp")) for p in tmp_path.rglob("*"))
    with pytest.raises(FetchError, match="checksum mismatch"):
        S.pull_nih(str(folder), out, archives=["images_001.tar.gz"], checksums={"images_001.tar.gz": "md5:" + "0" * 32})
    with pytest.raises(ValueError, match="no checksum for archive"):
        S.pull_nih(str(folder), out, archives=["images_013.tar.gz"])


def test_open_images_over_shards_and_folders(five, tmp_path):
    folder = tmp_path / "loose"
    folder.mkdir()
    for name, path in five.items():
        shutil.copyfile(path, folder / name)
    (folder / "notes.txt").write_text("not an image")
    write_shards(five, tmp_path / "sharded", shard_size=3)
    loose, sharded = open_images(folder), open_images(tmp_path / "sharded")
    assert isinstance(loose, FolderImages) and isinstance(sharded, ShardReader)
    assert loose.names() == sorted(five) == sorted(sharded.names())
    for name in five:
        assert loose.read(name) == sharded.read(name) and name in loose and name in sharded
    with pytest.raises(KeyError):
        loose.read("00000000_000.png")
    with pytest.raises(ShardError, match="refusing member"):
        loose.read("../sharded/index.json")
    with pytest.raises(ShardError, match="no such image folder"):
        open_images(tmp_path / "missing")


# ---- decompression bombs: the NIH shard builder and pull_nih --------------------------------------

BOMB = 52 * 10**6  # bytes of zeros in one member: gzip squeezes them to about 51 kB


def test_bomb_archive_refused_by_the_shard_builder(nih, tmp_path):
    png = IMAGES / "00000075_000.png"
    archive = _tar_gz(
        tmp_path / "images_001.tar.gz",
        [(f"images/{png.name}", png.read_bytes()), ("images/00000002_000.png", bytes(BOMB))],
    )
    assert archive.stat().st_size < 600_000
    with pytest.raises(ShardError) as err:
        shards_from_nih_archive(archive, tmp_path / "out", 10)
    message = str(err.value)
    assert message.startswith(f"{archive}: refusing member 'images/00000002_000.png'")
    assert "max_ratio=100" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images_001.tar.gz"]  # no shards, no staging


def test_total_cap_and_member_cap_of_the_shard_builder(five, tmp_path):
    pngs = list(five.values())[:3]
    archive = _tar_gz(tmp_path / "a.tar.gz", [(f"images/{p.name}", p.read_bytes()) for p in pngs])
    total = sum(p.stat().st_size for p in pngs)
    assert len(list(iter_tar_members(archive))) == 3  # the real PNGs pass the defaults
    with pytest.raises(ShardError, match=rf"refusing member 'images/{pngs[-1].name}'.*max_bytes={total - 1:,}"):
        list(iter_tar_members(archive, max_bytes=total - 1))
    with pytest.raises(ShardError, match=rf"refusing member 'images/{pngs[0].name}'.*more than max_member=1,000"):
        list(iter_tar_members(archive, max_member=1000))


@pytest.mark.parametrize("keep_archives", [False, True])
def test_failed_nih_pull_leaves_no_staging_folder(mirror, tmp_path, keep_archives):
    folder, _, md5 = mirror
    bomb = _tar_gz(folder / "images_002.tar.gz", [("images/00000002_000.png", bytes(BOMB))])
    bomb_md5 = hashlib.md5(bomb.read_bytes()).hexdigest()
    sums = {"images_001.tar.gz": f"md5:{md5}", "images_002.tar.gz": f"md5:{bomb_md5}"}
    out = tmp_path / "data" / "raw"
    with pytest.raises(ShardError, match=r"images_002\.tar\.gz: refusing member"):
        S.pull_nih(str(folder), out, archives=sorted(sums), checksums=sums, shard_size=1, keep_archives=keep_archives)
    assert not (out / "images").exists()
    assert not any(p.name.startswith(".images") for p in out.iterdir())
    left = sorted(p.name for p in (tmp_path / "data").iterdir())
    if keep_archives:  # the verified good archive stays for a re-run; the refused one is gone
        assert left == [".raw-archives", "raw"]
        assert [p.name for p in (tmp_path / "data" / ".raw-archives").iterdir()] == ["images_001.tar.gz"]
    else:
        assert left == ["raw"]  # no .raw-archives left behind


def test_unset_nih_mirror_names_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty mirror must not read the working directory
    for value in ("", "  "):
        with pytest.raises(ValueError, match="medical.data.mirror is empty: set medical.data.mirror"):
            S.pull_nih(value, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
