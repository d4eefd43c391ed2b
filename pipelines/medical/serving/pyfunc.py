"""The registered medical model: chest X-rays (+ age, sex, view) in, 14 finding probabilities out.

Input: one row per image, the columns of `PAYLOAD` (components/payload.py conventions): `image` (base64
of PNG/JPEG bytes), optional `age` (years), `sex` (M/F), `view` (PA/AP). Output: one column per finding
with the probability. The image goes through the same deterministic MONAI transforms as validation/test,
and the metadata through the same tokenizer.

A request is held to the training data's rules (pipelines/medical/checks.py: age in [0, 120], sex M/F,
view among the views the model was trained on, NIH's PA/AP unless model.json lists `views`) and to the
image limits below, all checked from the file's header BEFORE any pixel is decoded.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from components.payload import Column, PayloadError, check_columns
from pipelines.medical.checks import MAX_AGE  # the validation suite's rules, applied to every request
from pipelines.medical.sources.nih import SEXES, VIEWS

ARTIFACTS = ("model_config", "weights", "tokenizer", "thresholds")
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a decoded file larger than this is refused before decoding its base64
# The smallest side a film may have: the model resamples every film to `size` (224 px; 64 on the demo)
# and a film of a few pixels carries no anatomy to resample; 32 px is the demo generator's own minimum.
MIN_SIDE = 32
# Decoding costs time and memory by pixels, not by file size (a 40 kB PNG can hold 6000 x 6000 = 36 M
# pixels, 14 s to score): the header's size is checked first, and PIL's decompression-bomb limit is set
# to the same cap. NIH films are 1024 x 1024; MIMIC-CXR JPEGs about 3000 x 2500.
MAX_PIXELS = 4096 * 4096
FORMATS = ("PNG", "JPEG")
MODES = ("L", "LA", "P", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L")  # what nih.decode_image turns into gray
KNOWN_VIEWS = VIEWS  # NIH's View Position values (PA, AP): a model.json without `views` was trained on them


class InputError(PayloadError):
    """A request the model cannot read; the message names the column and row and says what to fix."""


def _limit_pil() -> None:
    from PIL import Image

    if Image.MAX_IMAGE_PIXELS is None or Image.MAX_IMAGE_PIXELS > MAX_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # PIL warns above it and refuses above twice it


def payload_columns(views=KNOWN_VIEWS) -> list[Column]:
    """The request's columns: what the signature says and what `read_request` checks."""
    return [
        Column("image", "file", options={"max_bytes": MAX_IMAGE_BYTES, "kinds": ("png", "jpeg")}),
        Column("age", "number", required=False, options={"low": 0, "high": MAX_AGE}),
        Column("sex", "label", required=False, options={"labels": list(SEXES)}),
        Column("view", "label", required=False, options={"labels": list(views)}),
    ]


PAYLOAD = payload_columns()


def check_image_header(data: bytes, column: str | None = "image", row: int | None = None) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding pixels; InputError when the model refuses it."""
    from PIL import Image, UnidentifiedImageError

    _limit_pil()
    try:
        with Image.open(io.BytesIO(data)) as img:  # reads the header only (no .load())
            width, height, fmt, mode = img.width, img.height, img.format, img.mode
    except Image.DecompressionBombError:
        raise InputError(f"the image has more than {MAX_PIXELS} pixels", column, row) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError("not an image the model can read (PNG or JPEG)", column, row) from None
    if fmt not in FORMATS:
        raise InputError(f"the image is {fmt}; the model takes {' or '.join(FORMATS)}", column, row)
    if width * height > MAX_PIXELS:
        raise InputError(
            f"the image is {width}x{height} px ({width * height} pixels); at most {MAX_PIXELS} pixels "
            f"(e.g. {int(MAX_PIXELS**0.5)}x{int(MAX_PIXELS**0.5)}) are accepted",
            column,
            row,
        )
    if min(width, height) < MIN_SIDE:
        raise InputError(f"the image is {width}x{height} px; each side must be at least {MIN_SIDE} px", column, row)
    if mode not in MODES:
        raise InputError(f"the image's mode {mode!r} is not one of {list(MODES)}", column, row)
    return width, height


class ChestXrayClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        self.load(**{name: context.artifacts[name] for name in ARTIFACTS})

    def load(self, model_config: str, weights: str, tokenizer: str, thresholds: str) -> ChestXrayClassifier:
        from pipelines.medical.data import eval_transforms, tokenizer_encoder
        from pipelines.medical.models import build_model

        self.config = c = json.loads(Path(model_config).read_text())
        self.thresholds = json.loads(Path(thresholds).read_text())
        self.net = build_model(c["model"], len(c["findings"]), c["vocab_size"], **c["hparams"])
        self.net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net.eval()
        self.transform = eval_transforms(None, c["size"])
        self.encode = tokenizer_encoder(Path(tokenizer), c["max_len"])
        return self

    @classmethod
    def from_dir(cls, model_dir: Path, thresholds: Path) -> ChestXrayClassifier:
        return cls().load(**artifact_paths(model_dir, thresholds))

    def tensors(self, images: list, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw images (bytes or 2-D uint8 arrays) -> model inputs [B, 1, S, S] and tokens."""
        batch = torch.stack([torch.as_tensor(np.asarray(self.transform({"image": im})["image"])) for im in images])
        return batch.float(), self.encode(texts)

    def predict_proba(self, images: list, texts: list[str], batch_size: int = 32) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch_size):
                x, tokens = self.tensors(images[i : i + batch_size], texts[i : i + batch_size])
                out.append(torch.sigmoid(self.net(x, tokens)).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.config["findings"])), np.float32)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        images, texts = self.read_request(model_input)
        probs = self.predict_proba(images, texts)
        return pd.DataFrame(probs.astype(np.float64), columns=self.config["findings"])

    @property
    def payload(self) -> list[Column]:
        return payload_columns(self.config.get("views") or KNOWN_VIEWS)

    def read_request(self, frame: pd.DataFrame) -> tuple[list[bytes], list[str]]:
        """The request's images (checked header first, then decoded) and metadata texts; InputError otherwise."""
        from pipelines.medical.sources.nih import decode_image
        from pipelines.medical.text import metadata_text

        if not isinstance(frame, pd.DataFrame) or "image" not in frame.columns:
            raise InputError(
                "expected a DataFrame with an `image` column (base64 PNG/JPEG) and optional age, sex, view"
            )
        try:
            parsed = check_columns(frame, self.payload)
        except PayloadError as err:
            raise InputError(err.reason, err.column, err.row) from None
        for row, data in enumerate(parsed["image"]):  # every header first: no pixel is decoded before all pass
            check_image_header(data, "image", row)
        images, texts = [], []
        for row, data in enumerate(parsed["image"]):
            try:
                decode_image(data, "the image")
            except ValueError as err:
                raise InputError(str(err), "image", row) from None
            images.append(data)
            texts.append(metadata_text(parsed["age"][row], parsed["sex"][row], parsed["view"][row]))
        return images, texts


def artifact_paths(model_dir: Path, thresholds: Path) -> dict[str, str]:
    return {
        "model_config": str(model_dir / "model.json"),
        "weights": str(model_dir / "weights.pt"),
        "tokenizer": str(model_dir / "tokenizer.json"),
        "thresholds": str(thresholds),
    }


def encode_image(path_or_bytes) -> str:
    """A file (or bytes) as the base64 string the model's `image` column takes."""
    data = Path(path_or_bytes).read_bytes() if isinstance(path_or_bytes, (str, Path)) else bytes(path_or_bytes)
    return base64.b64encode(data).decode("ascii")
