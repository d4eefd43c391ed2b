"""The registered medical model: chest X-rays (+ age, sex, view) in, 14 finding probabilities out.

Input DataFrame columns: `image` (base64 of PNG/JPEG bytes), optional `age` (years), `sex` (M/F),
`view` (PA/AP). Output: one column per finding with the probability. The image goes through the same
deterministic MONAI transforms as validation/test, and the metadata through the same tokenizer.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

ARTIFACTS = ("model_config", "weights", "tokenizer", "thresholds")


class InputError(ValueError):
    """A request the model cannot read; the message says what to fix."""


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

    def read_request(self, frame: pd.DataFrame) -> tuple[list[bytes], list[str]]:
        from pipelines.medical.sources.nih import decode_image
        from pipelines.medical.text import metadata_text

        if not isinstance(frame, pd.DataFrame) or "image" not in frame.columns:
            raise InputError(
                "expected a DataFrame with an `image` column (base64 PNG/JPEG) and optional age, sex, view"
            )
        if len(frame) == 0:
            raise InputError("no rows")
        images, texts = [], []
        for row, item in enumerate(frame.to_dict("records")):
            try:
                data = base64.b64decode(str(item["image"]), validate=True)
            except (binascii.Error, ValueError):
                raise InputError(f"row {row}: `image` is not base64") from None
            try:
                decode_image(data, f"row {row}")
            except ValueError as err:
                raise InputError(str(err)) from None
            images.append(data)
            texts.append(metadata_text(item.get("age"), item.get("sex"), item.get("view")))
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
