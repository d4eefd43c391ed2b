"""Synthetic chest X-rays written in NIH ChestX-ray14's exact on-disk format (the offline profile).

The demo must exercise the very readers, checks and shards that real NIH data goes through, so it
writes NIH's files byte for byte in their format (header quirks, `Infiltrate` box spelling, 1024-px
box space, a few RGBA PNGs) instead of a friendlier one. The findings are drawn into the pixels
(see _Chest.draw) so that a model trained on a few minutes of CPU can learn something and the
evaluation and Grad-CAM stages have a signal to show.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from components.io import atomic_write
from pipelines.medical.sources.nih import (
    BOX_ALIASES,
    BOXES_FILE,
    ENTRIES_FILE,
    FINDINGS,
    IMAGE_NAME,
    NIH_BOX_HEADER,
    NIH_BOX_SPACE,
    NIH_ENTRY_HEADER,
    NO_FINDING,
    TEST_LIST,
    TRAIN_VAL_LIST,
)

log = logging.getLogger("scifolio.medical.demo")

BOX_SPELLING = {v: k for k, v in BOX_ALIASES.items()}  # ours -> NIH's (Infiltration -> Infiltrate)
DEMO_TEST_FRACTION = 0.2  # of patients; NIH's official test list holds 23% of its images
DEMO_RGBA_FRACTION = 0.04  # NIH's sample has 4 RGBA PNGs in 92: loaders must cope
DEMO_PREVALENCE = {  # per image (chronic: per patient); above NIH's so a small demo has positives
    "Atelectasis": 0.11,
    "Cardiomegaly": 0.08,
    "Effusion": 0.12,
    "Infiltration": 0.14,
    "Mass": 0.07,
    "Nodule": 0.08,
    "Pneumonia": 0.05,
    "Pneumothorax": 0.07,
    "Consolidation": 0.06,
    "Edema": 0.05,
    "Emphysema": 0.05,
    "Fibrosis": 0.05,
    "Pleural_Thickening": 0.05,
    "Hernia": 0.04,
}
CHRONIC = ("Cardiomegaly", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")  # kept at follow-up
AP_FINDINGS = (
    "Effusion",
    "Edema",
    "Pneumothorax",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
)  # inpatient findings, often on bedside (AP) films
ORIGINAL_SIZES = (
    (2500, 2048, 0.171),
    (2048, 2500, 0.171),
    (3056, 2544, 0.139),
    (2992, 2991, 0.143),
    (2021, 2021, 0.194311),
)  # (width, height, mm/px) seen in NIH's CSV


def _ellipse(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float, soft: float = 0.08, angle: float = 0.0
) -> np.ndarray:
    """Soft ellipse mask in [0, 1]: 1 inside, 0 outside, a sigmoid edge `soft` of the radius wide."""
    dy, dx = yy - cy, xx - cx
    if angle:
        c, s = np.cos(angle), np.sin(angle)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    r = np.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / soft, -50, 50)))


class _Chest:
    """One synthetic frontal chest film in normalised coordinates (x right, y down, 0..1)."""

    def __init__(self, size: int, rng: np.random.Generator, patient: dict, view: str):
        self.size, self.rng = size, rng
        g = (np.arange(size) + 0.5) / size
        self.yy, self.xx = np.meshgrid(g, g, indexing="ij")
        j = patient["jitter"]  # the same person keeps the same anatomy across follow-ups
        scale = 1.08 if patient["Emphysema"] else 1.0  # hyperinflated lungs
        self.lungs = [  # (cy, cx, ry, rx) of the image-left and image-right lung fields
            (0.45 + j[0], 0.31 + j[1], 0.27 * scale, 0.135),
            (0.45 + j[0], 0.69 + j[1], 0.27 * scale, 0.125),
        ]
        heart_rx = 0.19 if patient["Cardiomegaly"] else 0.115  # half-width: cardiothoracic ratio
        heart_rx *= 1.06 if view == "AP" else 1.0  # AP films magnify the heart
        self.heart = (0.63 + j[0], 0.53 + j[1], 0.11, heart_rx + j[2])
        img = np.full((size, size), 18.0)
        img += 140 * _ellipse(self.yy, self.xx, 0.56, 0.5 + j[1], 0.55, 0.47, soft=0.04)  # body
        lung_level = -85 - (25 if patient["Emphysema"] else 0)  # emphysema: darker, more air
        self.lung_mask = np.zeros_like(img)
        for cy, cx, ry, rx in self.lungs:
            lung = _ellipse(self.yy, self.xx, cy, cx, ry, rx, soft=0.05)
            self.lung_mask = np.maximum(self.lung_mask, lung)
        img += lung_level * self.lung_mask
        ribs = 0.5 + 0.5 * np.sin(2 * np.pi * (self.yy * 11 + 0.8 * np.abs(self.xx - 0.5)))
        img += 12 * ribs * self.lung_mask  # faint rib shadows
        img += 30 * _ellipse(self.yy, self.xx, 0.5, 0.5 + j[1], 0.45, 0.035, soft=0.1)  # spine
        heart = _ellipse(self.yy, self.xx, *self.heart, soft=0.06)
        img = img * (1 - heart) + 172 * heart  # the heart hides the lung behind it: replace, not add
        self.img = img
        self.boxes: list[tuple[str, float, float, float, float]] = []  # finding, x, y, w, h (pixels)

    def add(self, mask: np.ndarray, level: float) -> None:
        self.img += level * mask

    def box(self, finding: str, mask: np.ndarray, threshold: float = 0.5) -> None:
        ys, xs = np.nonzero(mask > threshold)
        if len(xs):
            self.boxes.append(
                (
                    finding,
                    float(xs.min()),
                    float(ys.min()),
                    float(xs.max() - xs.min() + 1),
                    float(ys.max() - ys.min() + 1),
                )
            )

    def lung_point(self, side: int, y_lo: float = 0.2, y_hi: float = 0.8, margin: float = 0.7):
        """A random point well inside one lung; y_lo/y_hi pick a zone (0 apex .. 1 base)."""
        cy, cx, ry, rx = self.lungs[side]
        t = self.rng.uniform(y_lo, y_hi) * 2 - 1
        half = rx * margin * np.sqrt(max(1 - t * t, 0.05))
        return cy + t * ry * margin, cx + self.rng.uniform(-half, half)

    def draw(self, finding: str) -> None:
        rng, yy, xx = self.rng, self.yy, self.xx
        side = int(rng.integers(2))
        cy, cx, ry, rx = self.lungs[side]
        if finding == "Emphysema":  # drawn in __init__: larger, darker lung fields
            return
        if finding == "Cardiomegaly":  # drawn by the wider heart in __init__; box it
            self.box(finding, _ellipse(yy, xx, *self.heart, soft=0.06))
        elif finding == "Effusion":  # dense band at the lung base with a concave meniscus
            top = cy + ry * rng.uniform(0.45, 0.65)
            lateral = np.clip((xx - cx) / rx * (1 if side else -1), 0, 1)  # 0 medial .. 1 chest wall
            meniscus = top - 0.06 * lateral**2  # fluid climbs the lateral wall
            below = 1 / (1 + np.exp(-(yy - meniscus) / 0.008))
            mask = _ellipse(yy, xx, cy, cx, ry, rx, soft=0.03) * below
            self.add(mask, 95)
            self.box(finding, mask)
        elif finding == "Nodule":  # a few small bright discs
            for _ in range(int(rng.integers(1, 4))):
                py, px = self.lung_point(int(rng.integers(2)))
                mask = _ellipse(yy, xx, py, px, r := rng.uniform(0.012, 0.02), r, soft=0.15)
                self.add(mask, 75)
                self.box(finding, mask)
        elif finding == "Mass":  # one larger disc, lobulated edge
            py, px = self.lung_point(side, 0.25, 0.7)
            r = rng.uniform(0.045, 0.07)
            mask = _ellipse(yy, xx, py, px, r, r * rng.uniform(0.8, 1.2), soft=0.12)
            self.add(mask, 80)
            self.box(finding, mask)
        elif finding == "Pneumothorax":  # apical-lateral air: darker than lung, no markings
            mask = (
                _ellipse(
                    yy, xx, cy - ry * 0.45, cx + (-1 if side == 0 else 1) * rx * 0.35, ry * 0.5, rx * 0.55, soft=0.05
                )
                * self.lung_mask
            )
            self.add(mask, -40)  # ribs stay (chest wall); the lung's own texture would vanish
            self.box(finding, mask)
        elif finding == "Atelectasis":  # plate-like band: thin tilted bright streak, lower zone
            py, px = self.lung_point(side, 0.55, 0.8)
            length, tilt = rng.uniform(0.07, 0.1), rng.uniform(-0.4, 0.4)
            mask = _ellipse(yy, xx, py, px, 0.012, length, soft=0.2, angle=tilt)
            self.add(mask, 70)
            self.box(finding, mask)
        elif finding == "Infiltration":  # patchy faint haze: a cluster of soft blobs
            py, px = self.lung_point(side, 0.3, 0.7)
            mask = np.zeros_like(self.img)
            for _ in range(int(rng.integers(5, 9))):
                r = rng.uniform(0.02, 0.04)
                by, bx = py + rng.normal(0, 0.04), px + rng.normal(0, 0.03)
                blob = _ellipse(yy, xx, by, bx, r, r, soft=0.35)
                mask = np.maximum(mask, blob)
            mask *= self.lung_mask
            self.add(mask, 38)
            self.box(finding, mask, 0.3)
        elif finding == "Pneumonia":  # dense fuzzy lower-zone patch with mottled texture
            py, px = self.lung_point(side, 0.55, 0.8)
            mask = _ellipse(yy, xx, py, px, rng.uniform(0.06, 0.09), rng.uniform(0.05, 0.08), soft=0.3)
            mask *= self.lung_mask * (0.75 + 0.25 * rng.random(mask.shape))
            self.add(mask, 70)
            self.box(finding, mask, 0.3)
        elif finding == "Consolidation":  # homogeneous, sharp-edged upper-zone opacity
            mask = _ellipse(yy, xx, cy - ry * 0.4, cx, ry * 0.3, rx * 0.7, soft=0.03)
            mask *= self.lung_mask
            self.add(mask, 65)
        elif finding == "Edema":  # bilateral perihilar "bat wing" haze
            for scy, scx, _, srx in self.lungs:
                hilum = scx + (0.05 if scx < 0.5 else -0.05)
                self.add(_ellipse(yy, xx, scy + 0.03, hilum, 0.12, srx * 0.6, soft=0.4) * self.lung_mask, 40)
        elif finding == "Fibrosis":  # fine reticular net in both lower zones
            net = (np.abs(np.sin(2 * np.pi * 34 * xx + 3 * yy)) < 0.18) | (np.abs(np.sin(2 * np.pi * 30 * yy)) < 0.18)
            lower = self.lung_mask / (1 + np.exp(-(yy - 0.5) / 0.04))
            self.add(net * lower, 35)
        elif finding == "Pleural_Thickening":  # bright rim along the lateral lung edges
            for scy, scx, sry, srx in self.lungs:
                rim = _ellipse(yy, xx, scy, scx, sry, srx, soft=0.03) - _ellipse(
                    yy, xx, scy, scx, sry * 0.92, srx * 0.8, soft=0.03
                )
                lateral = (xx < scx) if scx < 0.5 else (xx > scx)
                self.add(np.clip(rim, 0, 1) * lateral, 70)
        elif finding == "Hernia":  # retrocardiac round opacity with an air-fluid level
            hy, hx = self.heart[0] + 0.06, self.heart[1]
            self.add(_ellipse(yy, xx, hy, hx, 0.05, 0.06, soft=0.08), 45)
            air = _ellipse(yy, xx, hy - 0.02, hx, 0.018, 0.04, soft=0.1) * (yy < hy - 0.015)
            self.add(air, -70)
        else:
            raise ValueError(f"no demo drawing for finding {finding!r}")

    def render(self) -> np.ndarray:
        from PIL import Image, ImageFilter

        img = self.img * self.rng.uniform(0.9, 1.1) + self.rng.uniform(-10, 10)  # exposure
        img += self.rng.normal(0, 5, img.shape)  # quantum noise
        pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))  # 2-D uint8: mode L
        return np.asarray(pil.filter(ImageFilter.GaussianBlur(self.size / 512)))


def _fmt(x: float) -> str:
    return repr(float(x))  # shortest round-trip text, as NIH's own floats (0.14300000000000002)


def write_demo(
    out_dir: Path,
    n_patients: int = 200,  # NIH has 30,805
    images_per_patient: tuple[int, int] = (1, 3),  # inclusive range of follow-ups per patient
    size: int = 256,  # pixels per side; NIH's PNGs are 1024
    seed: int = 0,
) -> Path:
    """Synthetic chest X-rays in NIH ChestX-ray14's exact on-disk format, read by the NIH readers.

    Writes images/<8-digit patient>_<3-digit follow-up>.png (8-bit grayscale, a few RGBA like
    NIH's), Data_Entry_2017_v2020.csv (NIH's header line verbatim), BBox_List_2017.csv (NIH's
    header, `Infiltrate` spelling), train_val_list.txt and test_list.txt (split by patient).

    Findings are drawn into the pixels (see _Chest.draw), so a model can learn them; view carries
    weak signal (AP more often with bedside findings) and age rises with chronic disease. As in NIH,
    boxes exist only for images in the test list, one per drawn lesion of a BOXED finding
    (Consolidation etc. get none), and are stored in NIH's 1024-pixel convention: demo pixel
    coordinates multiplied by 1024 / size, so they line up with the image after any resize to 1024.
    Images of an earlier demo in out_dir/images are removed first (NIH-named PNGs only).
    """
    lo, hi = images_per_patient
    if n_patients < 2 or not 1 <= lo <= hi or size < 32:
        raise ValueError(
            f"write_demo: need n_patients >= 2, 1 <= images_per_patient[0] <= [1], "
            f"size >= 32; got {n_patients}, {images_per_patient}, {size}"
        )
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for old in (out_dir / "images").iterdir():  # a smaller re-run must not inherit stale images
        if IMAGE_NAME.fullmatch(old.name):
            old.unlink()

    n_test = min(max(1, round(DEMO_TEST_FRACTION * n_patients)), n_patients - 1)
    test_patients = set(rng.choice(np.arange(1, n_patients + 1), n_test, replace=False).tolist())
    counts = rng.integers(lo, hi + 1, n_patients)
    n_images = int(counts.sum())
    n_rgba = max(1, round(DEMO_RGBA_FRACTION * n_images))
    rgba = set(rng.choice(n_images, n_rgba, replace=False).tolist())

    rows, box_rows, test_names, train_val_names = [], [], [], []
    k = 0
    for pid in range(1, n_patients + 1):
        patient = {f: rng.random() < DEMO_PREVALENCE[f] for f in CHRONIC}
        patient["jitter"] = rng.normal(0, [0.015, 0.012, 0.01])
        age = int(np.clip(rng.normal(46, 17) + 12 * any(patient[f] for f in CHRONIC), 1, 94))
        sex = "M" if rng.random() < 0.56 else "F"
        for fu in range(int(counts[pid - 1])):
            name = f"{pid:08d}_{fu:03d}.png"
            found = [f for f in FINDINGS if (patient[f] if f in CHRONIC else rng.random() < DEMO_PREVALENCE[f])]
            view = "AP" if rng.random() < (0.6 if set(found) & set(AP_FINDINGS) else 0.3) else "PA"
            chest = _Chest(size, rng, patient, view)
            for f in found:
                chest.draw(f)
            pixels = chest.render()
            mode = "RGBA" if k in rgba else "L"
            _save_png(pixels, out_dir / "images" / name, mode)
            w, h, spacing = ORIGINAL_SIZES[int(rng.integers(len(ORIGINAL_SIZES)))]
            labels = "|".join(sorted(found)) or NO_FINDING  # NIH lists labels alphabetically
            rows.append(
                f"{name},{labels},{fu},{pid},{age + fu // 2},{sex},{view},{w},{h},{_fmt(spacing)},{_fmt(spacing)}"
            )
            if pid in test_patients:
                test_names.append(name)
                scale = NIH_BOX_SPACE / size
                for finding, x, y, bw, bh in chest.boxes:
                    label = BOX_SPELLING.get(finding, finding)
                    coords = ",".join(_fmt(v * scale) for v in (x, y, bw, bh))
                    box_rows.append(f"{name},{label},{coords}")
            else:
                train_val_names.append(name)
            k += 1

    _write_text(out_dir / ENTRIES_FILE, [NIH_ENTRY_HEADER, *rows])
    _write_text(out_dir / BOXES_FILE, [NIH_BOX_HEADER, *box_rows])
    _write_text(out_dir / TEST_LIST, sorted(test_names))
    _write_text(out_dir / TRAIN_VAL_LIST, sorted(train_val_names))
    log.info(
        "demo: %d images of %d patients (%d test), %d boxes, %dpx, in %s",
        n_images,
        n_patients,
        len(test_names),
        len(box_rows),
        size,
        out_dir,
    )
    return out_dir


def _save_png(pixels: np.ndarray, path: Path, mode: str) -> None:
    from PIL import Image

    img = Image.fromarray(pixels)  # 2-D uint8: mode L
    if mode == "RGBA":  # as NIH's RGBA files: R = G = B = gray, alpha 255
        img = img.convert("RGBA")
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def _write_text(path: Path, lines: list[str]) -> None:
    """LF line endings, a final newline, UTF-8: as NIH's files."""
    atomic_write(path, "".join(line + "\n" for line in lines))
