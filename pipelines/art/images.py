"""Reading microscopy images of any of the formats users bring, and describing them for the art project.

The generators train on 8-bit RGB arrays, but microscopy arrives as many things: the DSB 2018 set stores grey
fluorescence as RGBA with R=G=B (alpha 255), histology as RGBA colour, users bring 8/16-bit TIFF (sometimes
multi-page stacks), JPEG, palette PNG. `read_image` turns each into one `Decoded` record (H x W x 3 uint8 plus
what the file was), so later stages never branch on formats. A 16-bit fluorescence image typically uses a
few % of 0-65535 (a 12-bit camera, a dim stain): dividing by 256 would give an almost black image, so 16-bit
(and 32-bit) data is stretched between its own 0.1 and 99.9 percentiles, which also clips hot pixels.

Downloads go wrong in ways PIL reports badly (an HTML error page saved as .png, a cut-off body, zero bytes):
every such file raises `ImageError` naming the file and the reason, never a PIL traceback.

`modality_of` labels an image fluorescence or histology by the rule that built the shared set (SOURCE.md);
`phash`/`hamming` find near-duplicates (the DSB set has crops of the same field); `tiles`/`is_blank` cut
images into training patches and drop background-only ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

CLASSES = ("fluorescence", "histology")  # the modality classes; index = class id
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")  # what image_files picks up (lower-cased)

PERCENTILES = (0.1, 99.9)  # 16/32-bit stretch: ignores hot pixels and the darkest 0.1 % (camera offset)
GREY_SPREAD = 5.0  # mean max-min over RGB below this: a grey image (JPEG chroma noise stays below ~3)
FLUORESCENCE_MAX_MEAN = 100.0  # grey and darker than this: dark-field fluorescence (shared set: means 3-35)
BLANK_STD = 3.0  # grey levels: tiles flatter than this are background (no shared tile with a nucleus is)
BLANK_DELTA = 15.0  # grey levels from the tile's median that count a pixel as foreground (nucleus or stain)
BLANK_FOREGROUND = 0.01  # foreground share below which a tile is background (a 64 px tile: < 41 pixels)
_SIXTEEN = {"I;16", "I;16B", "I;16L", "I;16N", "I"}  # PIL modes of 16-bit data ("I": 16-bit PNG, int TIFF)
_MAX_PIXELS = 20_000 * 20_000  # a decompression bomb beyond this is refused, not decoded


class ImageError(ValueError):
    """A file that is not a usable image; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason


@dataclass(frozen=True)
class Decoded:
    """One decoded image: `pixels` H x W x 3 uint8 RGB, and what the file was."""

    pixels: np.ndarray  # H x W x 3 uint8, RGB
    mode: str  # PIL's mode of the file ("RGBA", "RGB", "L", "P", "I;16", ...)
    bit_depth: int  # 8, or 16 for 16-bit modes (32 for float "F" TIFF)
    grey: bool  # R = G = B everywhere (DSB fluorescence stored as RGBA, L, 16-bit)
    size: tuple[int, int]  # (w, h), PIL's order
    alpha_used: bool = False  # the file had an alpha channel that was not all 255 (dropped all the same)
    frames: int = 1  # pages in the file; only the first is read (a TIFF stack's first plane)


def _sniff(path: Path, head: bytes) -> str:
    """Why a file PIL cannot open is not an image, from its first bytes."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or text.startswith(b"<"):
        return "an HTML/XML text page, not an image (an error page saved under an image name?)"
    if text.startswith((b"{", b"[")):
        return "a JSON text, not an image (an API error saved under an image name?)"
    return f"not a readable image (first bytes {head[:8]!r})"


def _stretch(a: np.ndarray) -> np.ndarray:
    """High-bit-depth values -> uint8 between the image's own PERCENTILES (a flat image becomes 0)."""
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, PERCENTILES)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip(np.rint((a - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _to_rgb(im: Image.Image) -> tuple[np.ndarray, int, bool]:
    """A loaded PIL image (first frame) -> (H x W x 3 uint8, bit depth, alpha_used)."""
    mode = im.mode
    if mode in _SIXTEEN or mode == "F":
        grey = _stretch(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2), 32 if mode == "F" else 16, False
    alpha_used = False
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        alpha = np.asarray(im.getchannel("A"))
        alpha_used = bool((alpha != 255).any())
        im = im.convert("RGB" if im.mode == "RGBA" else "L")
    if im.mode in ("L", "1"):
        grey = np.asarray(im.convert("L"))
        return np.repeat(grey[..., None], 3, axis=2), 8, alpha_used
    if im.mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX ...
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8)), 8, alpha_used


def read_image(path: str | Path) -> Decoded:
    """Decode an image file (PNG, JPEG, TIFF of 8/16 bit, first page of a stack) into a `Decoded`.

    RGBA -> alpha dropped (`alpha_used` says whether it carried anything); L and 16-bit -> replicated to 3
    channels; 16-bit -> scaled by the image's PERCENTILES; palette -> RGB. Raises ImageError for anything
    that is not a decodable image.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as e:
        raise ImageError(path, f"cannot read: {e.strerror or e}") from None
    if not head:
        raise ImageError(path, "empty file (0 bytes): an interrupted download?")
    try:
        with Image.open(path) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if im.width * im.height > _MAX_PIXELS:
                raise ImageError(path, f"{im.width} x {im.height} pixels: too large to be one microscopy image")
            im.load()
            mode, size = im.mode, im.size
            pixels, bit_depth, alpha_used = _to_rgb(im)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(path, _sniff(path, head)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, Image.DecompressionBombError) as e:
        reason = str(e) or type(e).__name__
        if "truncated" in reason or isinstance(e, EOFError):
            reason = f"truncated or corrupt image data ({reason}): a cut-off download?"
        raise ImageError(path, f"cannot decode: {reason}") from None
    grey = bool((pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all())
    return Decoded(pixels, mode, bit_depth, grey, size, alpha_used, frames)


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    if pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W or H x W x 3 pixels, got shape {pixels.shape}")
    return pixels[..., :3]


def modality_of(pixels: np.ndarray) -> str:
    """The modality class, "fluorescence" or "histology", by the rule that built the shared set (SOURCE.md).

    Colour (mean channel spread >= GREY_SPREAD) is stained histology. Grey and dark (mean < 100) is
    fluorescence: bright nuclei on a black field. Grey and bright is transmitted-light brightfield
    (dark objects on a light field, some of the DSB set): it is labelled "histology", the class of
    brightfield images, since its statistics (light background, dark nuclei) are those of H&E, not of
    fluorescence. Reproduces the folder labels of all 384 shared images (spreads 0 vs 12-109, grey means 3-35).
    """
    rgb = _as_rgb(pixels).astype(np.int16)
    spread = float((rgb.max(axis=2) - rgb.min(axis=2)).mean())
    if spread >= GREY_SPREAD:
        return "histology"
    return "fluorescence" if float(rgb.mean()) < FLUORESCENCE_MAX_MEAN else "histology"


def phash(pixels: np.ndarray) -> str:
    """Perceptual hash (imagehash.phash, 64 bits) of the greyscale image, as 16 hex digits."""
    return str(imagehash.phash(Image.fromarray(np.ascontiguousarray(_as_rgb(pixels).astype(np.uint8))).convert("L")))


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes of the same length (0: identical, ~32: unrelated)."""
    if len(a) != len(b):
        raise ValueError(f"hashes of different lengths: {a!r}, {b!r}")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:  # one last tile flush with the edge, so every pixel is covered
        starts.append(length - size)
    return starts


def tiles(pixels: np.ndarray, size: int, stride: int | None = None) -> list[tuple[int, int, np.ndarray]]:
    """Square crops (y, x, tile) of `size` pixels every `stride` (default `size`: non-overlapping).

    The crops cover every pixel: when `size` does not divide the image, a last row/column of tiles sits
    flush with the edge (overlapping its neighbour) instead of leaving a strip unseen. Tiles are views.
    An image smaller than `size` is refused (ValueError): padding would invent background.
    """
    pixels = np.asarray(pixels)
    h, w = pixels.shape[:2]
    stride = size if stride is None else stride
    if size < 1 or stride < 1:
        raise ValueError(f"tile size and stride must be >= 1, got {size}, {stride}")
    if h < size or w < size:
        raise ValueError(f"image of {w} x {h} pixels is smaller than the {size} px tile; refusing to pad it")
    return [
        (y, x, pixels[y : y + size, x : x + size]) for y in _starts(h, size, stride) for x in _starts(w, size, stride)
    ]


def is_blank(tile: np.ndarray, min_std: float = BLANK_STD, min_foreground: float = BLANK_FOREGROUND) -> bool:
    """True for a near-empty background tile: grey std below `min_std`, or under `min_foreground` of its
    pixels more than BLANK_DELTA grey levels from its median (no nucleus, only noise or a gradient).

    Measured on the 334 shared fluorescence images, 64 px tiles (5344): 30.8 % flagged; of the tiles with
    >= 1 % of pixels above their image's Otsu threshold (a nucleus), 1 of 3590 is flagged (an edge sliver).
    Tuned for fluorescence; on the 50 shared H&E images it flags 13.4 % of 64 px tiles (even stroma, bare slide).
    """
    grey = _as_rgb(tile).astype(np.float32).mean(axis=2)
    if float(grey.std()) < min_std:
        return True
    foreground = np.abs(grey - np.median(grey)) > BLANK_DELTA
    return float(foreground.mean()) < min_foreground
