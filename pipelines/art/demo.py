"""A demo set of synthetic microscopy written in the real formats, for the offline profile and the tests.

The DSB 2018 archive (~80 MB) is not reachable offline, and arrays handed straight to the trainer would
only test themselves; so the demo writes what the pipeline meets in the wild, and every reader runs for real:

- ``stage1_train.zip`` in the Kaggle/BBBC038 layout, ``<id>/images/<id>.png`` with 64-hex ids, fluorescence
  as RGBA with R=G=B and alpha 255 at 256x256, histology as RGBA colour at 320x256 (as in the real set), and
  one ``<id>/masks/<id>.png`` per image (a binary nucleus mask) which the reader must skip;
- ``user/``: 16-bit TIFF fluorescence (values in a few % of 0-65535, as a 12-bit camera gives; one of them
  a two-page stack) and a JPEG histology image, the formats users bring.

What makes the images plausible rather than noise: fluorescence is a dark field with a slow illumination
gradient and 10-40 bright elliptical nuclei with soft edges and chromatin texture, blurred by a point spread
function, under shot (Poisson) noise; histology is Beer-Lambert mixing of eosin (pink: stroma with fibres along
two directions) and haematoxylin (purple nuclei) with the Ruifrok-Johnston stain vectors. Both pass
``images.modality_of`` as their class. Deterministic for a seed (numpy Generator); 28 images take ~1.3 s at
the DSB sizes, ~0.4 s at 128 px.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

FLUORESCENCE_SIZE = (256, 256)  # (w, h): the 334 shared fluorescence images
HISTOLOGY_SIZE = (320, 256)  # (w, h): the shared H&E images
NUCLEI = (10, 40)  # nuclei per fluorescence image (the DSB set ranges from a few to hundreds)
NUCLEUS_RADIUS = (5.0, 12.0)  # semi-axes in px at 256 px: DSB nuclei are ~10-25 px across
PHOTONS = 0.6  # photons per grey level: the shot noise of a dim stain (a few grey levels in the background)
HAEMATOXYLIN = np.array([0.650, 0.704, 0.286])  # optical density per unit stain (Ruifrok & Johnston 2001)
EOSIN = np.array([0.072, 0.990, 0.105])
ZIP_DATE = (2018, 1, 16, 0, 0, 0)  # fixed member timestamps: the same seed gives the same archive bytes
TIFF_OFFSET, TIFF_GAIN = 400, 12  # 16-bit values = offset + gain * grey: ~400-3500, a 12-bit camera's range
N_USER_TIFF = 2  # user 16-bit TIFFs (the second one a two-page stack)


def _ellipse(rng: np.random.Generator, h: int, w: int, scale: float, edge: float):
    """(slices, soft 0-1 mask of the patch) for one randomly placed, oriented ellipse."""
    a, b = rng.uniform(*NUCLEUS_RADIUS, size=2) * scale
    theta = rng.uniform(0, np.pi)
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    r = int(np.ceil(max(a, b) + 3 * edge))
    y0, y1, x0, x1 = max(0, int(cy) - r), min(h, int(cy) + r + 1), max(0, int(cx) - r), min(w, int(cx) + r + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
    dist = (np.sqrt(u * u + v * v) - 1.0) * min(a, b)  # ~ px outside the rim (negative: inside)
    soft = 1.0 / (1.0 + np.exp(np.clip(dist / edge, -30, 30)))
    return (slice(y0, y1), slice(x0, x1)), soft


def _texture(rng: np.random.Generator, h: int, w: int, sigma, amount: float) -> np.ndarray:
    """1 + amount * smooth unit-variance noise (chromatin, fibres)."""
    t = ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), sigma)
    return 1.0 + amount * t / (t.std() + 1e-6)


def _fluorescence(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(H x W uint8 image, H x W bool mask of the first nucleus)."""
    scale = min(h, w) / 256
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gy, gx = rng.uniform(-1, 1, size=2)
    signal = rng.uniform(4, 12) * (1 + 0.3 * (gy * yy / h + gx * xx / w))  # background with illumination tilt
    signal = signal.astype(np.float32)
    texture = _texture(rng, h, w, 1.2 * max(scale, 0.5), 0.25)
    first = np.zeros((h, w), bool)
    for i in range(int(rng.integers(NUCLEI[0], NUCLEI[1] + 1))):
        where, soft = _ellipse(rng, h, w, max(scale, 0.4), edge=1.2)
        signal[where] += rng.uniform(60, 200) * soft * texture[where]
        if i == 0:
            first[where] = soft > 0.5
    signal = ndimage.gaussian_filter(signal, 0.8)  # the optics' point spread
    noisy = rng.poisson(np.clip(signal, 0, None) * PHOTONS) / PHOTONS
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), first


def draw_fluorescence(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A synthetic nuclear-stain fluorescence field, H x W uint8 (bright nuclei on black)."""
    return _fluorescence(rng, h, w)[0]


def _histology(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 image, H x W bool mask of the first nucleus)."""
    scale = min(h, w) / 256
    fibres = 0.5 * (_texture(rng, h, w, (1.0, 7.0), 0.35) + _texture(rng, h, w, (6.0, 1.2), 0.35))
    eosin = rng.uniform(0.25, 0.5) * fibres * _texture(rng, h, w, 20, 0.3)
    haem = np.zeros((h, w), np.float32) + 0.05 * _texture(rng, h, w, 2, 0.5)
    chromatin = _texture(rng, h, w, 1.0, 0.2)
    first = np.zeros((h, w), bool)
    for i in range(int(rng.integers(15, 60))):
        where, soft = _ellipse(rng, h, w, max(scale, 0.4), edge=1.0)
        haem[where] += rng.uniform(0.8, 1.6) * soft * chromatin[where]
        if i == 0:
            first[where] = soft > 0.5
    od = np.clip(eosin, 0, None)[..., None] * EOSIN + np.clip(haem, 0, None)[..., None] * HAEMATOXYLIN
    rgb = 250.0 * np.exp(-od) + rng.normal(0, 2.0, (h, w, 1))  # slide background ~250, sensor noise
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), first


def draw_histology(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A synthetic H&E field, H x W x 3 uint8 (purple nuclei in pink fibrous stroma)."""
    return _histology(rng, h, w)[0]


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    im = Image.fromarray(array)
    (im.convert(mode) if mode else im).save(buf, format="PNG", compress_level=1)  # zlib's fastest: 5x faster
    return buf.getvalue()


def write_demo(
    out: Path,
    n_fluorescence: int = 20,  # enough for a train/val/test split grouped by image
    n_histology: int = 8,  # a minority class, as in the shared set (50 of 384)
    seed: int = 0,
    size: tuple[int, int] | None = None,  # (w, h) for every image, e.g. (128, 128) for speed; None: the DSB sizes
    side: int | None = None,  # shorthand for size=(side, side): square images (the project's demo_side setting)
) -> list[Path]:
    """Write ``out/stage1_train.zip`` (DSB layout, with masks) and ``out/user/`` (16-bit TIFF, JPEG); return
    the archive's path followed by the user files'. The same arguments give the same bytes."""
    if n_fluorescence < 0 or n_histology < 0 or n_fluorescence + n_histology < 1:
        raise ValueError(f"write_demo: need at least one image, got {n_fluorescence} + {n_histology}")
    if side is not None:
        if size is not None and tuple(size) != (side, side):
            raise ValueError(f"write_demo: give size or side, not both ({size}, {side})")
        size = (side, side)
    if size is not None and (len(size) != 2 or min(size) < 16):
        raise ValueError(f"write_demo: size must be (w, h) of at least 16 px, got {size}")
    out = Path(out)
    (out / "user").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fw, fh = size or FLUORESCENCE_SIZE
    hw, hh = size or HISTOLOGY_SIZE

    archive = out / "stage1_train.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:  # PNGs are compressed already
        for i in range(n_fluorescence + n_histology):
            image_id, mask_id = rng.bytes(32).hex(), rng.bytes(32).hex()
            if i < n_fluorescence:
                grey, mask = _fluorescence(rng, fh, fw)
                image = _png(np.repeat(grey[..., None], 3, axis=2), "RGBA")
            else:
                rgb, mask = _histology(rng, hh, hw)
                image = _png(rgb, "RGBA")
            for name, data in ((f"{image_id}/images/{image_id}.png", image),
                               (f"{image_id}/masks/{mask_id}.png", _png(mask.astype(np.uint8) * 255))):  # fmt: skip
                zf.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)

    written = [archive]
    for i in range(N_USER_TIFF):
        pages = [draw_fluorescence(rng, fh, fw) for _ in range(1 + i % 2)]
        frames = [Image.fromarray((TIFF_OFFSET + TIFF_GAIN * p.astype(np.uint16)).astype(np.uint16)) for p in pages]
        path = out / "user" / f"nuclei_{i:02d}.tif"
        frames[0].save(path, format="TIFF", save_all=len(frames) > 1, append_images=frames[1:])
        written.append(path)
    path = out / "user" / "biopsy_00.jpg"
    Image.fromarray(draw_histology(rng, hh, hw)).save(path, format="JPEG", quality=90)
    written.append(path)
    return written
