"""Facts about the real NIH ChestX-ray14 sample in ../shared (its SOURCE.md), shared by the medical tests."""

from pathlib import Path

NIH = Path(__file__).parents[2].parent / "shared" / "data" / "medical" / "nih_chestxray14"
RGBA = ("00000100_000.png", "00001369_000.png", "00004934_000.png", "00005813_000.png")  # 4-channel PNGs
OFFICIAL_TEST = frozenset(  # the sample's images in NIH's official test_list.txt
    {
        "00001369_000.png",
        "00001933_000.png",
        "00007417_000.png",
        "00007498_000.png",
        "00009745_000.png",
        "00012609_000.png",
        "00013125_000.png",
        "00015192_000.png",
        "00015649_000.png",
        "00016587_000.png",
        "00017611_000.png",
        "00018999_000.png",
        "00022084_000.png",
        "00022178_000.png",
        "00022572_000.png",
        "00026911_000.png",
    }
)
