"""Medical source folders against untrusted input: symbolic links in NIH folders and image folders,
and an unset medical.data.folder named instead of "no such file". (Decompression bombs in NIH's
archives and an unset medical.data.mirror are tested in test_sources.py, beside pull_nih's tests.)

Real NIH files from ../shared are copied into crafted folders in pytest's tmp_path.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines.medical.sources import nih as S
from pipelines.medical.sources.shards import FolderImages, ShardError, ShardReader, open_images, write_shards
from tests.medical.nih_sample import NIH


def _need_nih() -> Path:
    if not (NIH / S.ENTRIES_FILE).is_file():
        pytest.fail(f"NIH sample not found at {NIH}")
    return NIH


def _lists(folder: Path, names: list[str]) -> None:
    (folder / S.TEST_LIST).write_text(names[0] + "\n")
    (folder / S.TRAIN_VAL_LIST).write_text("".join(n + "\n" for n in names[1:]))


def _pngs(n: int = 3) -> list[Path]:
    return sorted((_need_nih() / "images").glob("*.png"))[:n]


# ---- unset config keys -------------------------------------------------------------------------


def test_unset_folder_says_which_key_to_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="medical.data.folder is empty: set medical.data.folder"):
        S.check_nih_folder("")
    with pytest.raises(ValueError, match="medical.data.folder is empty: set medical.data.folder"):
        S.pull_nih_folder("", tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match=r"no such folder \(set medical.data.folder"):
        S.check_nih_folder(tmp_path / "absent")


# ---- the nih_folder source and folder readers: symbolic links -----------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    """NIH's layout unpacked (source nih_folder): tables and three real PNGs, split lists apart."""
    nih = _need_nih()
    root = tmp_path / "nih"
    (root / "images").mkdir(parents=True)
    shutil.copyfile(nih / S.ENTRIES_FILE, root / S.ENTRIES_FILE)
    shutil.copyfile(nih / S.BOXES_FILE, root / S.BOXES_FILE)
    for p in _pngs(3):
        shutil.copyfile(p, root / "images" / p.name)
    lists = tmp_path / "lists"
    lists.mkdir()
    _lists(lists, sorted(p.name for p in (nih / "images").glob("*.png")))
    return root


def test_nih_folder_pull_of_real_files(folder, tmp_path):
    out = tmp_path / "raw"
    files = S.pull_nih_folder(folder, out, tmp_path / "lists", shard_size=2)
    assert {p.name for p in files} >= set(S.NIH_TABLES)
    assert (out / S.ENTRIES_FILE).read_bytes() == (folder / S.ENTRIES_FILE).read_bytes()
    reader = ShardReader(out / "images")
    assert sorted(reader.names()) == sorted(p.name for p in (folder / "images").iterdir())


def test_linked_table_in_a_folder_is_refused(folder, tmp_path):
    (folder / S.BOXES_FILE).unlink()
    (folder / S.BOXES_FILE).symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match=rf"{S.BOXES_FILE}: is a symbolic link to '/etc/passwd'"):
        S.pull_nih_folder(folder, tmp_path / "raw", tmp_path / "lists")
    assert not (tmp_path / "raw").exists()


def test_linked_image_in_a_folder_is_refused(folder, tmp_path):
    (folder / "images" / "00000002_000.png").symlink_to("/etc/passwd")
    with pytest.raises(ValueError, match=r"00000002_000\.png: is a symbolic link to '/etc/passwd'"):
        S.check_nih_folder(folder, tmp_path / "lists")
    with pytest.raises(ShardError, match=r"symbolic links, e\.g\. '00000002_000\.png' -> '/etc/passwd'"):
        FolderImages(folder / "images")
    with pytest.raises(ShardError, match="symbolic link"):
        open_images(folder / "images")
    # the shard writer, given the link's path (as the old nih_folder loop did), refuses it too
    with pytest.raises(ShardError, match=r"cannot read image '00000002_000\.png': is a symbolic link"):
        write_shards([("00000002_000.png", folder / "images" / "00000002_000.png")], tmp_path / "shards")
    assert not (tmp_path / "shards").exists()


def test_linked_images_folder_is_refused(folder, tmp_path):
    shutil.move(folder / "images", tmp_path / "elsewhere")
    (folder / "images").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="images: a symbolic link, refused"):
        S.check_nih_folder(folder, tmp_path / "lists")


def test_link_swapped_in_after_opening_is_not_followed(folder):
    images = FolderImages(folder / "images")
    name = images.names()[0]
    (folder / "images" / name).unlink()
    (folder / "images" / name).symlink_to("/etc/passwd")
    assert name not in images
    with pytest.raises(ShardError, match="is a symbolic link to '/etc/passwd'"):
        images.read(name)
